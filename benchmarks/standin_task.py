"""A stand-in task that trains nothing, for benchmarks of the machinery around trials.

Each trial sleeps through its budget in one step per rung (the seconds per rung come from the
environment, TUNELAB_STANDIN_RUNG_S) and reports a synthetic curve that rises with its
training and depends on its one parameter, so the pruners and samplers have something to rank.
Everything else is the real trial loop: rungs, checkpoints, the scheduler, Optuna, MLflow.
Named `standin_task:StandinTask` with benchmarks/ on the path.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import torch

import tunelab
from tunelab import Finalization, Param, Parts, space_from

RUNG_S_ENV = "TUNELAB_STANDIN_RUNG_S"


@dataclass(frozen=True)
class StandinHParams:
    """One tunable value: where the synthetic curve levels off."""

    x: float = 0.5
    """The configuration (the best is 0.7)."""


class StandinTask(tunelab.Task):
    """Sleeps instead of training; maximises a synthetic score."""

    name = "standin"
    metric = "val_score"
    direction = "maximize"
    hparams_type = StandinHParams

    def search_space(self):
        return space_from(StandinHParams, [Param("x", "float", 0.0, 1.0)])

    def batch_size(self, hp) -> int:
        return 1 << 30  # the whole split: one step per epoch, one epoch per rung

    def build(self, hp, data, device, budget) -> Parts:
        model = torch.nn.Linear(1, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        return Parts(modules={"model": model}, optimizers={"sgd": optimizer})

    def train_step(self, parts, hp, x, y, ctx):
        time.sleep(float(os.environ.get(RUNG_S_ENV, "1")))
        return {"train_loss": torch.tensor(1.0 / ctx.step)}

    def evaluate(self, parts, hp, data, split, ctx):
        level = 1.0 - (hp.x - 0.7) ** 2
        return {"val_score": level * (1.0 - math.exp(-(ctx.progress + 1.0)))}

    def finalize(self, parts, hp, data) -> Finalization:
        return Finalization()
