"""How much one trial trains, and when it reports to the pruner: its rungs.

A trial's training is cut into rungs of a fixed number of training images. At every rung the
loop scores the model (on the rung split, a fixed part of the validation split), reports the
value to Optuna at step = images trained, and the pruner decides. The trial's budget is a
whole number of rungs. Rungs finer than an epoch let a search on a large data set judge a
configuration after seconds instead of after a whole epoch.

Studies made before rungs existed (tunelab 0.1) count in epochs: one rung per epoch, step =
epoch number. They resume in that unit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

RungUnit = Literal["images", "epochs"]

AUTO_RUNG_IMAGES = 8192
"""Automatic rungs cut an epoch into equal parts of at most this many images."""
AUTO_RUNG_VAL_IMAGES = 1000
"""Automatic rung split: at most this many validation images (the whole split if smaller)."""
JUDGE_VAL_PER_TRAIN = 0.5
"""Scoring all of validation at an epoch's end costs about len(val) / 3 training images: it is
done only when the validation split is at most this share of an epoch (so it costs at most a
sixth of the epoch). Otherwise the rung scores choose the best weights, and only those are
scored on all of validation (on a 1,000-image training split with 5,000 validation images,
epoch-end scoring cost four times the training itself)."""


@dataclass(frozen=True)
class TrialBudget:
    """A trial's rungs: their size and how many make a full trial."""

    unit: RungUnit
    """What a pruner step counts: training images, or epochs (studies of tunelab 0.1)."""
    rung: int
    """Training images per rung (unit images); the training split's size (unit epochs)."""
    max_rungs: int
    """Rungs in a full trial: the trial's budget."""
    train_size: int
    """Images in one epoch of the training split."""

    def __post_init__(self) -> None:
        if self.rung < 1 or self.max_rungs < 1 or self.train_size < 1:
            raise ValueError(f"a trial budget needs positive sizes, not {self}")

    @property
    def max_step(self) -> int:
        """The step of the last rung."""
        return self.step(self.max_rungs)

    @property
    def images(self) -> int:
        """Training images of a full trial."""
        return self.max_rungs * self.rung

    @property
    def epochs(self) -> float:
        """A full trial in epochs of the training split."""
        return self.images / self.train_size

    def step(self, rung: int) -> int:
        """The pruner step of rung `rung` (from 1)."""
        return rung * self.rung if self.unit == "images" else rung

    def steps(self, batch_size: int) -> int:
        """Optimizer steps of a full trial at this batch size (for learning-rate schedules)."""
        per_epoch = max(1, self.train_size // batch_size)
        if self.unit == "epochs":
            return self.max_rungs * per_epoch
        return max(1, math.ceil(self.images / min(batch_size, self.train_size)))

    def describe(self) -> str:
        if self.unit == "epochs":
            return f"{self.max_rungs} epochs, one rung per epoch"
        return (
            f"{self.images:,} training images ({self.epochs:.3g} epochs) in {self.max_rungs} "
            f"rungs of {self.rung:,}"
        )


def auto_rung_images(train_size: int) -> int:
    """Rung size cutting an epoch into equal parts of at most AUTO_RUNG_IMAGES images."""
    parts = math.ceil(train_size / AUTO_RUNG_IMAGES)
    return math.ceil(train_size / parts)


def epoch_budget(max_epochs: int, train_size: int, rung: int | None = None) -> TrialBudget:
    """A budget of `max_epochs` epochs in rungs of `rung` images (automatic when None)."""
    size = rung or auto_rung_images(train_size)
    return TrialBudget(
        unit="images",
        rung=size,
        max_rungs=max(1, math.ceil(max_epochs * train_size / size)),
        train_size=train_size,
    )
