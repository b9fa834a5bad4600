"""The shared trial loop, driven by a scripted task so every branch is deterministic."""

import math
from dataclasses import dataclass

import optuna
import pytest
import torch

from tunelab.objectives import keys
from tunelab.objectives.base import Finalization, Parts, Task
from tunelab.objectives.checkpoints import LocalCheckpoints
from tunelab.objectives.runner import LoopConfig, Objective
from tunelab.objectives.space import Param, space_from


@dataclass(frozen=True)
class ScriptHP:
    """Hyperparameters of the scripted task."""

    x: float = 0.5
    """An unused tunable value."""


class ScriptedTask(Task):
    """Reports a scripted objective per epoch; its one weight records the epoch it was set in."""

    name = "scripted"
    metric = "val_score"
    direction = "maximize"
    hparams_type = ScriptHP

    def __init__(self, values, losses=None, interrupt_at=None):
        self.values, self.losses, self.interrupt_at = values, losses or {}, interrupt_at
        self.finalized_weight = None
        self.epochs_trained = []

    def search_space(self):
        return space_from(ScriptHP, [Param("x", "float", 0.0, 1.0)])

    def build(self, hp, data, device, max_epochs):
        module = torch.nn.Linear(1, 1)
        return Parts(
            modules={"m": module}, optimizers={"o": torch.optim.SGD(module.parameters(), lr=0.1)}
        )

    def train_epoch(self, parts, hp, data, ctx):
        if ctx.epoch == self.interrupt_at:
            raise KeyboardInterrupt
        self.epochs_trained.append(ctx.epoch)
        with torch.no_grad():
            parts.modules["m"].weight.fill_(ctx.epoch)
        return {"train_loss": self.losses.get(ctx.epoch, 1.0 / ctx.epoch)}

    def evaluate(self, parts, hp, data, ctx):
        return {"val_score": self.values[ctx.epoch - 1]}

    def finalize(self, parts, hp, data):
        self.finalized_weight = parts.modules["m"].weight.item()
        return Finalization(metrics={"val_final": 1.0}, artifacts={"note.txt": b"done"})


def _objective(task, recorder, checkpoints=None, **loop):
    space = task.search_space()
    return Objective(task, None, space, LoopConfig(**loop), lambda t: recorder, checkpoints)


def test_value_is_the_best_epoch_and_its_weights_are_restored(recorder):
    task = ScriptedTask([0.2, 0.7, 0.5, 0.6])
    value = _objective(task, recorder, max_epochs=4, patience=5)(
        optuna.trial.FixedTrial({"x": 0.1})
    )
    assert value == 0.7
    assert task.finalized_weight == 2.0  # weights of epoch 2, not of the last epoch
    assert recorder.steps("val_score") == {1: 0.2, 2: 0.7, 3: 0.5, 4: 0.6}
    assert recorder.history[-1][1]["best_val_score"] == 0.7
    assert {"config.json", "checkpoint/best.pt", "note.txt"} <= set(recorder.artifacts)
    assert recorder.status == "FINISHED" and recorder.params == {"x": 0.1}


def test_early_stopping_after_patience_epochs_without_improvement(recorder):
    task = ScriptedTask([0.5, 0.9, 0.8, 0.8, 0.8, 0.99, 1.0])
    trial = optuna.trial.FixedTrial({"x": 0.1})
    assert _objective(task, recorder, max_epochs=7, patience=2)(trial) == 0.9
    assert task.epochs_trained == [1, 2, 3, 4]
    assert (
        trial.user_attrs["tunelab.early_stopped"] is True
        and trial.user_attrs["tunelab.epochs_run"] == 4
    )


def test_non_finite_loss_prunes_with_the_reason_recorded(recorder):
    task = ScriptedTask([0.5, 0.6, 0.7], losses={2: math.nan})
    trial = optuna.trial.FixedTrial({"x": 0.1})
    with pytest.raises(optuna.TrialPruned, match="non-finite train_loss"):
        _objective(task, recorder, max_epochs=3)(trial)
    assert "non-finite train_loss" in trial.user_attrs["tunelab.fail_reason"]
    assert recorder.status == "KILLED" and "epoch 2" in recorder.tags["tunelab.fail_reason"]


def test_pruner_decision_ends_the_run_as_killed(recorder):
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.55)
    )
    task = ScriptedTask([0.5, 0.9])
    study.optimize(_objective(task, recorder, max_epochs=2), n_trials=1)
    assert study.trials[0].state == optuna.trial.TrialState.PRUNED
    assert recorder.status == "KILLED" and task.epochs_trained == [1]


def test_interrupted_trial_resumes_from_its_last_epoch_checkpoint(tmp_path, recorder):
    loop = {"max_epochs": 5, "patience": 5, "checkpoints": LocalCheckpoints(tmp_path)}
    values = [0.1, 0.2, 0.3, 0.4, 0.5]
    first = optuna.trial.FixedTrial({"x": 0.1}, number=3)
    with pytest.raises(KeyboardInterrupt):
        _objective(ScriptedTask(values, interrupt_at=3), recorder, **loop)(first)
    assert recorder.status == "FAILED" and first.user_attrs["tunelab.fail_reason"] == "interrupted"
    assert (tmp_path / "trial-3.pt").exists()

    retry = optuna.trial.FixedTrial({"x": 0.1}, number=7)
    retry.set_user_attr(keys.TRIAL_NUMBER, 3)  # what Optuna copies into a retried trial
    task = ScriptedTask(values)
    assert _objective(task, recorder, **loop)(retry) == 0.5
    assert task.epochs_trained == [3, 4, 5]
    assert retry.user_attrs["tunelab.resumed_from_trial"] == 3
    assert not (tmp_path / "trial-7.pt").exists()  # removed once the trial completed
