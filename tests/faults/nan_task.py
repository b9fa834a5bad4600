"""A task whose loss is NaN from its first step: every configuration diverges.

TinyTask's training (milliseconds per trial) with a training loss multiplied by NaN, so that
the loop's finiteness check ends each trial as pruned with `tunelab.fail_reason`
"non-finite train_loss (nan) in epoch 1". Named `nan_task:NanTask` with this folder on the path.
"""

from __future__ import annotations

from tiny_task import TinyTask


class NanTask(TinyTask):
    """TinyTask whose training loss is NaN."""

    name = "nan"

    def train_step(self, parts, hp, x, y, ctx):
        metrics = super().train_step(parts, hp, x, y, ctx)
        return {"train_loss": metrics["train_loss"] * float("nan")}
