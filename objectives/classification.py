"""Task `cnn`: image classification with a configurable CNN; maximise validation accuracy.

A `ClassifierTask` (classifier.py) like a user's own: its model is the CNN of `models/cnn.py`,
its search space the CNN's architecture, the optimizer and batched augmentation; the training
step, evaluation, final metrics and registered model are the base's.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from tunelab.models.cnn import CNN, CNNArchitecture, CNNConfig
from tunelab.objectives.augment import AugmentConfig, augment_batch
from tunelab.objectives.classifier import ClassifierTask
from tunelab.objectives.data import DataBundle
from tunelab.objectives.optim import OptimizerHParams, optimizer_params
from tunelab.objectives.space import Bounds, Param, SearchSpace, fields_of, fraction, space_from

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


class ClassificationTask(ClassifierTask):
    name = "cnn"
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

    def model(self, hp: ClassifierHParams, data: DataBundle) -> CNN:
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
        return CNN(config)

    def augment(
        self, x: torch.Tensor, hp: ClassifierHParams, generator: torch.Generator
    ) -> torch.Tensor:
        return augment_batch(x, AugmentConfig(hp.rotation, hp.hflip, hp.crop_padding), generator)
