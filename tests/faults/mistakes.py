"""A newcomer's mistakes, one task each, for tests/faults/test_dry_run.py: a parameter whose
name the hyperparameters do not have, a model whose first layer has the wrong input size, a
model that raises in forward, and a function-style objective whose choices come from the
environment (MISTAKES_CHOICES), so that a rerun can edit its search space. Named
`mistakes:Typo` etc. with this folder on the path."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

import tunelab


@dataclass(frozen=True)
class HP(tunelab.OptimizerHParams):
    """The optimizer's hyperparameters and one width."""

    hidden: int = 16
    """Width of the hidden layer."""


def mlp(inputs: int, hidden: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, 10))


class Typo(tunelab.ClassifierTask):
    """Searches `hiden`, which HP does not have."""

    hparams_type = HP
    params = [tunelab.Param("hiden", "int", 8, 32)]

    def model(self, hp, data):
        return mlp(64, hp.hidden)


class WrongSize(tunelab.ClassifierTask):
    """A first layer of 50 inputs for 8x8 digits (64)."""

    hparams_type = HP
    params = [tunelab.Param("hidden", "int", 8, 32)]

    def model(self, hp, data):
        return mlp(50, hp.hidden)


class Broken(nn.Linear):
    def forward(self, x):
        raise RuntimeError("this forward is broken")


class RaisesInForward(tunelab.ClassifierTask):
    """A model whose forward raises."""

    hparams_type = HP
    params = [tunelab.Param("hidden", "int", 8, 32)]

    def model(self, hp, data):
        return Broken(64, 10)


@tunelab.objective(metric="val_accuracy", direction="maximize")
def editable(trial):
    """Reports a made-up accuracy three times; its one choice is MISTAKES_CHOICES."""
    choices = os.environ.get("MISTAKES_CHOICES", "a,b").split(",")
    trial.suggest_categorical("c", choices, default=choices[0])
    for step in range(trial.resume(torch.nn.Linear(1, 1)), 3):
        trial.report({"val_accuracy": 0.5 + step / 10})
