"""Task `cnn`: image classification with a configurable CNN; maximise validation accuracy."""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from tunelab.models.cnn import CNN, CNNArchitecture, CNNConfig
from tunelab.objectives.augment import AugmentConfig, augment_batch
from tunelab.objectives.base import (
    EXAMPLE_ROWS,
    Finalization,
    Parts,
    ServingModel,
    StepContext,
    Task,
)
from tunelab.objectives.budget import TrialBudget
from tunelab.objectives.data import DataBundle, Split
from tunelab.objectives.graphs import GraphStep
from tunelab.objectives.images import png_bytes
from tunelab.objectives.metrics import LATENCY_BATCH, MetricInfo, module_metrics
from tunelab.objectives.optim import (
    OptimizerHParams,
    is_capturable,
    make_scheduler,
    optimizer_for,
    optimizer_params,
)
from tunelab.objectives.space import Bounds, Param, SearchSpace, fields_of, fraction, space_from

EVAL_BATCH = 256
"""Images per inference batch on a CPU (larger batches run slower there: they leave the cache)."""
GPU_EVAL_BATCH = 2048
"""Images per inference batch on a GPU, where a batch costs its kernel launches more than its
arithmetic."""
SIZE_METRICS = frozenset({"params", "macs", "latency_ms"})
"""Objectives that reward a smaller or faster model."""
SMALL_MODELS: Mapping[str, Any] = {
    "base_width": {"choices": [2, 4, 6, 8, 12, 16, 24, 32, 48]},
    "fc_width": {"choices": [0, 16, 32, 64, 128, 256]},
}
"""The space's narrowing in a study that optimizes or bounds a size metric: the widths searched
for accuracy alone build nothing under ~20,000 parameters; these reach ~1,100, the cheap end of
a front (or a tight constraint's feasible region), with more sizes between (base widths 6 and
12) where accuracy still climbs with size."""
SIZE_LADDER: tuple[Mapping[str, Any], ...] = tuple(
    {"conv_blocks": 3, "convs_per_block": 1, "base_width": width, "fc_width": 0}
    for width in (2, 4, 6, 8, 12, 16, 32)
)
"""Networks a study with a size objective trains right after the default, smallest first:
three blocks of one convolution and no hidden layer, at base widths 2 to 32. On 28x28 images
about 1,100 parameters (the smallest `SMALL_MODELS` builds), 3,000, 5,500, 8,800, 17,600,
29,000 and 104,000, below the default's 468,000; each 1.6 to 3.6 times the last, densest where
accuracy still climbs with size (trained 3 epochs on mnist5k at the default learning rate:
0.85, 0.93-0.96, 0.95, 0.96-0.97, 0.97-0.98, 0.97-0.98, 0.98). The front spans the sizes
from the start (400x) instead of waiting for the sampler to draw the rare small shapes; the
search then improves on its rungs."""


@dataclass(frozen=True)
class ClassifierHParams(OptimizerHParams, CNNArchitecture):
    """Hyperparameters of one classification trial: the optimizer's, the network's, and these."""

    # this task's defaults for fields of OptimizerHParams and CNNArchitecture: measured on
    # full MNIST, they reach a better accuracy in the few epochs a time budget affords
    lr: float = 3e-3
    optimizer: str = "adamw"
    nesterov: bool = True
    weight_decay: float = 1e-4
    dropout: float = 0.1

    lr_schedule: str = "cosine"
    """Learning-rate schedule over the epoch budget: constant or cosine."""
    rotation: float = 10.0
    """Augmentation: maximum rotation in degrees (0 = off)."""
    hflip: float = 0.0
    """Augmentation: horizontal-flip probability (off by default: digits are not symmetric)."""
    crop_padding: int = 2
    """Augmentation: random-crop padding in pixels (0 = off)."""
    label_smoothing: float = 0.1
    """Label smoothing of the cross-entropy loss."""


def _learn(
    parts: Parts, hp: ClassifierHParams, x: torch.Tensor, y: torch.Tensor, generator
) -> dict[str, torch.Tensor]:
    """One optimizer step on one batch, on the device alone (no schedule: the caller's)."""
    model, optimizer = parts.modules["model"], parts.optimizers["optimizer"]
    model.train()
    x = augment_batch(x, AugmentConfig(hp.rotation, hp.hflip, hp.crop_padding), generator)
    logits = model(x)
    loss = F.cross_entropy(logits, y, label_smoothing=hp.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    correct = (logits.detach().argmax(dim=1) == y).float().mean()
    return {"train_loss": loss.detach(), "train_accuracy": correct}


def _accuracy_and_loss(model: CNN, split: Split, smoothing: float = 0.0):
    """Loss, accuracy and predictions over a whole split, in inference batches; the sums stay
    on the device (one synchronisation per split, not per batch)."""
    model.eval()
    total_loss = torch.zeros((), device=split.x.device)
    predictions = []
    with torch.inference_mode():
        batch = EVAL_BATCH if split.x.device.type == "cpu" else GPU_EVAL_BATCH
        for x, y in split.batches(batch):
            logits = model(x)
            total_loss += F.cross_entropy(logits, y, reduction="sum", label_smoothing=smoothing)
            predictions.append(logits.argmax(dim=1))
    pred = torch.cat(predictions)
    n = len(split)
    return total_loss.item() / n, (pred == split.y).sum().item() / n, pred


class ClassificationTask(Task):
    name = "cnn"
    metric = "val_accuracy"
    direction = "maximize"
    hparams_type = ClassifierHParams

    def search_space(self) -> SearchSpace:
        return space_from(
            ClassifierHParams,
            [
                *optimizer_params(lr=(1e-4, 3e-2), weight_decay=(1e-6, 1e-2)),
                Param("lr_schedule", "categorical", choices=("constant", "cosine")),
                Param("conv_blocks", "int", 1, 3, supported=Bounds(1, 6)),
                Param("convs_per_block", "int", 1, 2, supported=Bounds(1, 4)),
                Param(
                    "base_width",
                    "categorical",
                    choices=(16, 24, 32, 48),
                    allowed=(2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128),
                ),
                Param("kernel_size", "categorical", choices=(3, 5)),
                Param("batch_norm", "categorical", choices=(False, True)),
                Param("pooling", "categorical", choices=("max", "avg")),
                Param(
                    "fc_width",
                    "categorical",
                    choices=(0, 64, 128, 256),
                    allowed=(0, 16, 32, 64, 128, 256, 512),
                ),
                Param("dropout", "float", 0.0, 0.5, supported=fraction()),
                Param("rotation", "float", 0.0, 20.0, supported=Bounds(0.0, 180.0)),
                Param("hflip", "float", 0.0, 0.5, supported=fraction(high_open=False)),
                Param("crop_padding", "int", 0, 4, supported=Bounds(0, 16)),
                Param("label_smoothing", "float", 0.0, 0.2, supported=fraction()),
            ],
        )

    def space_for_metrics(self, metrics: Collection[str]) -> Mapping[str, Any]:
        return SMALL_MODELS if SIZE_METRICS.intersection(metrics) else {}

    def anchor_configurations(self, objectives: Sequence[str]) -> list[Mapping[str, Any]]:
        return list(SIZE_LADDER) if SIZE_METRICS.intersection(objectives) else []

    def build(
        self, hp: ClassifierHParams, data: DataBundle, device: torch.device, budget: TrialBudget
    ) -> Parts:
        x = data.train.x
        dims = [0, 2, 3]
        config = CNNConfig(
            **fields_of(CNNArchitecture, hp),
            in_channels=data.channels,
            image_size=data.image_size,
            num_classes=data.num_classes,
            input_mean=tuple(x.mean(dim=dims).tolist()),
            input_std=tuple(x.std(dim=dims).clamp_min(1e-6).tolist()),
        )
        model = CNN(config).to(device)
        optimizer = optimizer_for(hp, model.parameters(), capturable=device.type == "cuda")
        scheduler = make_scheduler(optimizer, hp.lr_schedule, budget.steps(hp.batch_size))
        return Parts(
            modules={"model": model},
            optimizers={"optimizer": optimizer},
            schedulers={"lr": scheduler},
        )

    def serving_model(self, parts: Parts, data: DataBundle, seed: int) -> ServingModel:
        model = parts.modules["model"].to("cpu").eval()
        return ServingModel(model, data.test.x[:EXAMPLE_ROWS].to("cpu"), "classifier")

    def metrics(self) -> tuple[MetricInfo, ...]:
        return (
            MetricInfo("val_accuracy", "maximize", description="validation accuracy"),
            MetricInfo("val_loss", "minimize", description="validation cross-entropy"),
            MetricInfo("params", "minimize", static=True, description="parameter count"),
            MetricInfo("macs", "minimize", static=True, description="multiply-accumulates/image"),
            MetricInfo(
                "latency_ms", "minimize", static=True, description="inference ms/image, measured"
            ),
        )

    def static_metrics(self, parts: Parts, data: DataBundle) -> dict[str, float]:
        return module_metrics(parts.modules["model"], data.val.x[:LATENCY_BATCH])

    def train_step(
        self,
        parts: Parts,
        hp: ClassifierHParams,
        x: torch.Tensor,
        y: torch.Tensor,
        ctx: StepContext,
    ) -> dict[str, torch.Tensor]:
        metrics = _learn(parts, hp, x, y, ctx.generator)
        parts.schedulers["lr"].step()
        return metrics

    def graph_step(self, parts: Parts, hp: ClassifierHParams) -> GraphStep | None:
        if not is_capturable(parts.optimizers["optimizer"]):
            return None  # SGD, or built for a CPU
        return functools.partial(_learn, parts, hp)

    def evaluate(
        self,
        parts: Parts,
        hp: ClassifierHParams,
        data: DataBundle,
        split: Split,
        ctx: StepContext,
    ) -> dict[str, float]:
        loss, accuracy, predictions = _accuracy_and_loss(parts.modules["model"], split)
        # finalize, called next on the same weights, reuses these for its report
        parts.extra["predictions"] = (split, predictions)
        return {"val_loss": loss, "val_accuracy": accuracy}

    def finalize(self, parts: Parts, hp: ClassifierHParams, data: DataBundle) -> Finalization:
        split, predictions = parts.extra.pop("predictions", (None, None))
        known = predictions if split is data.val else None
        metrics, matrix = classification_report(parts.modules["model"], data.val, data, known)
        # accuracy and loss of the best weights are logged beside these; add what is new
        final = {f"val_{k}": metrics[k] for k in ("precision", "recall", "f1")}
        return Finalization(
            metrics=final,
            artifacts={"confusion_matrix.png": confusion_matrix_png(matrix, data.class_names)},
        )


def classification_report(
    model: CNN, split: Split, data: DataBundle, predictions: torch.Tensor | None = None
) -> tuple[dict[str, float], torch.Tensor]:
    """Macro precision / recall / F1 (torchmetrics) and the confusion matrix of the model's
    predictions on a split (`predictions` when the caller has them already)."""
    from torchmetrics.functional.classification import (
        multiclass_confusion_matrix,
        multiclass_f1_score,
        multiclass_precision,
        multiclass_recall,
    )

    pred = predictions if predictions is not None else _accuracy_and_loss(model, split)[2]
    k = data.num_classes
    target = split.y
    metrics = {
        "precision": multiclass_precision(pred, target, k, average="macro").item(),
        "recall": multiclass_recall(pred, target, k, average="macro").item(),
        "f1": multiclass_f1_score(pred, target, k, average="macro").item(),
    }
    return metrics, multiclass_confusion_matrix(pred, target, k).cpu()


def confusion_matrix_png(matrix: torch.Tensor, class_names: Any) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.45 * k, 0.8 + 0.45 * k))
    ax.imshow(matrix.numpy(), cmap="Blues")
    ax.set_xticks(range(k), class_names, rotation=90 if k > 12 else 0)
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = matrix.max().item() / 2
    for i in range(k):
        for j in range(k):
            v = int(matrix[i, j])
            if v:
                ax.text(
                    j,
                    i,
                    v,
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if v > threshold else "black",
                )
    ax.set_title("validation confusion matrix")
    return png_bytes(fig)
