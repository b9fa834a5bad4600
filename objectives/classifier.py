"""A classifier of one's own: the model and the search space are the user's, the rest comes.

    @dataclass(frozen=True)
    class MLPHParams(tunelab.OptimizerHParams):
        hidden: int = 64
        \"\"\"Hidden units.\"\"\"

    class MLPTask(tunelab.ClassifierTask):
        name = "mlp"
        hparams_type = MLPHParams
        params = [Param("lr", "float", 1e-4, 1e-1, log=True), Param("hidden", "int", 16, 256)]

        def model(self, hp, data):
            return nn.Sequential(
                nn.Flatten(), nn.Linear(math.prod(data.input_shape), hp.hidden), nn.ReLU(),
                nn.Linear(hp.hidden, data.num_classes),
            )

`ClassifierTask` brings the rest of the task contract: the optimizer and learning-rate
schedule the hyperparameters name (`OptimizerHParams`; `lr_schedule` and `label_smoothing`
fields are used where the dataclass has them), the training step (cross-entropy, optional
batched augmentation in `augment`), evaluation (loss and accuracy at every rung; macro
precision, recall, F1 and the confusion matrix of the best weights), the static metrics
(parameters, MACs, latency) and the model `tunelab evaluate` registers. The built-in `cnn`
(`classification.py`) is one.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

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
)
from tunelab.objectives.space import Param, SearchSpace, space_from

EVAL_BATCH = 256
"""Images per inference batch on a CPU (larger batches run slower there: they leave the cache)."""
GPU_EVAL_BATCH = 2048
"""Images per inference batch on a GPU, where a batch costs its kernel launches more than its
arithmetic."""


class ClassifierTask(Task):
    """Classification with a model of one's own; maximise validation accuracy. Give
    `hparams_type` (a frozen dataclass, usually a subclass of `OptimizerHParams`), `params`
    (its search space) and `model`, and `name` unless the class's name will do (`MLPTask` is
    `mlp`); override any other step."""

    metric = "val_accuracy"
    direction = "maximize"
    hparams_type: ClassVar[type] = OptimizerHParams
    params: ClassVar[Sequence[Param]] = ()
    """The search space over `hparams_type`'s fields; their defaults are the default
    configuration (trial 0)."""

    @abc.abstractmethod
    def model(self, hp: Any, data: DataBundle) -> torch.nn.Module:
        """The network of this configuration: inputs shaped `data.input_shape` (a batch
        dimension first), `data.num_classes` logits out."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not hasattr(cls, "name"):
            cls.name = cls.__name__.removesuffix("Task").lower() or cls.__name__.lower()

    def search_space(self) -> SearchSpace:
        return space_from(self.hparams_type, list(self.params))

    def optimizer(self, hp: Any, model: torch.nn.Module, device: torch.device):
        """The optimizer `hp` names (OptimizerHParams' fields). On a GPU, built so that a
        CUDA graph can capture its step."""
        return optimizer_for(hp, model.parameters(), capturable=device.type == "cuda")

    def augment(self, x: torch.Tensor, hp: Any, generator: torch.Generator) -> torch.Tensor:
        """A training batch augmented on the device (unchanged by default); the same tensor
        operations at every step, so that a CUDA graph may replay it."""
        return x

    def loss(self, logits: torch.Tensor, y: torch.Tensor, hp: Any) -> torch.Tensor:
        """Cross-entropy, label-smoothed by `hp.label_smoothing` where the dataclass has it."""
        return F.cross_entropy(logits, y, label_smoothing=getattr(hp, "label_smoothing", 0.0))

    def build(self, hp: Any, data: DataBundle, device: torch.device, budget: TrialBudget) -> Parts:
        model = self.model(hp, data).to(device)
        optimizer = self.optimizer(hp, model, device)
        schedule = getattr(hp, "lr_schedule", "constant")
        scheduler = make_scheduler(optimizer, schedule, budget.steps(self.batch_size(hp)))
        return Parts(
            modules={"model": model},
            optimizers={"optimizer": optimizer},
            schedulers={"lr": scheduler},
        )

    def learn(
        self, parts: Parts, hp: Any, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        """One optimizer step on one batch, on the device alone (no schedule: the caller's)."""
        model, optimizer = parts.modules["model"], parts.optimizers["optimizer"]
        model.train()
        logits = model(self.augment(x, hp, generator))
        loss = self.loss(logits, y, hp)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        correct = (logits.detach().argmax(dim=1) == y).float().mean()
        return {"train_loss": loss.detach(), "train_accuracy": correct}

    def train_step(
        self, parts: Parts, hp: Any, x: torch.Tensor, y: torch.Tensor, ctx: StepContext
    ) -> dict[str, torch.Tensor]:
        metrics = self.learn(parts, hp, x, y, ctx.generator)
        parts.schedulers["lr"].step()
        return metrics

    def graph_step(self, parts: Parts, hp: Any) -> GraphStep | None:
        if not is_capturable(parts.optimizers["optimizer"]):
            return None  # SGD, or built for a CPU
        return functools.partial(self.learn, parts, hp)

    def evaluate(
        self, parts: Parts, hp: Any, data: DataBundle, split: Split, ctx: StepContext
    ) -> dict[str, float]:
        loss, accuracy, predictions = accuracy_and_loss(parts.modules["model"], split)
        # finalize, called next on the same weights, reuses these for its report
        parts.extra["predictions"] = (split, predictions)
        return {"val_loss": loss, "val_accuracy": accuracy}

    def finalize(self, parts: Parts, hp: Any, data: DataBundle) -> Finalization:
        split, predictions = parts.extra.pop("predictions", (None, None))
        known = predictions if split is data.val else None
        metrics, matrix = classification_report(parts.modules["model"], data.val, data, known)
        # accuracy and loss of the best weights are logged beside these; add what is new
        final = {f"val_{k}": metrics[k] for k in ("precision", "recall", "f1")}
        return Finalization(
            metrics=final,
            artifacts={"confusion_matrix.png": confusion_matrix_png(matrix, data.class_names)},
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


def accuracy_and_loss(model: torch.nn.Module, split: Split, smoothing: float = 0.0):
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


def classification_report(
    model: torch.nn.Module, split: Split, data: DataBundle, predictions: torch.Tensor | None = None
) -> tuple[dict[str, float], torch.Tensor]:
    """Macro precision / recall / F1 (torchmetrics) and the confusion matrix of the model's
    predictions on a split (`predictions` when the caller has them already)."""
    from torchmetrics.functional.classification import (
        multiclass_confusion_matrix,
        multiclass_f1_score,
        multiclass_precision,
        multiclass_recall,
    )

    pred = predictions if predictions is not None else accuracy_and_loss(model, split)[2]
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
