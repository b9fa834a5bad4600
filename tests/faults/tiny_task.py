"""A task that trains in milliseconds, for fault tests: logistic regression on flat images.

It goes through the whole trial loop (rungs, checkpoints, the scheduler, MLflow) like any task;
only its training is cheap, so that a fault test can run dozens of crashed and resumed studies.
Named `tiny_task:TinyTask` with this folder on the path (PYTHONPATH for a CLI process).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

import tunelab
from tunelab import Finalization, Param, Parts, space_from

STEP_S_ENV = "TINY_TASK_STEP_S"
"""Seconds each training step sleeps besides (default 0)."""


@dataclass(frozen=True)
class TinyHParams:
    """One tunable value."""

    lr: float = 0.05
    """SGD's learning rate."""
    batch_size: int = 128
    """Images per step."""


class TinyTask(tunelab.Task):
    """Logistic regression; maximise validation accuracy."""

    name = "tiny"
    metric = "val_accuracy"
    direction = "maximize"
    hparams_type = TinyHParams

    def search_space(self):
        return space_from(TinyHParams, [Param("lr", "float", 1e-3, 0.5, log=True)])

    def build(self, hp, data, device, budget) -> Parts:
        height, width = data.image_size
        features = data.channels * height * width
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(features, data.num_classes))
        optimizer = torch.optim.SGD(model.to(device).parameters(), lr=hp.lr)
        return Parts(modules={"model": model}, optimizers={"optimizer": optimizer})

    def train_step(self, parts, hp, x, y, ctx):
        # a test that must find the trial still running, whatever the machine's speed
        time.sleep(float(os.environ.get(STEP_S_ENV, "0")))
        model, optimizer = parts.modules["model"], parts.optimizers["optimizer"]
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"train_loss": loss.detach()}

    def evaluate(self, parts, hp, data, split, ctx):
        with torch.inference_mode():
            logits = parts.modules["model"](split.x)
        return {
            "val_loss": F.cross_entropy(logits, split.y).item(),
            "val_accuracy": (logits.argmax(dim=1) == split.y).float().mean().item(),
        }

    def finalize(self, parts, hp, data) -> Finalization:
        return Finalization()
