"""The shared trial loop, driven by a scripted task so every branch is deterministic."""

import math
import time
from dataclasses import dataclass

import optuna
import pytest
import torch

from tunelab.objectives import keys
from tunelab.objectives.base import Finalization, Parts, Task
from tunelab.objectives.budget import TrialBudget
from tunelab.objectives.checkpoints import LocalCheckpoints, TrialCheckpoint
from tunelab.objectives.data import DataBundle, Split
from tunelab.objectives.runner import Objective
from tunelab.objectives.space import Param, space_from
from tunelab.objectives.training import LoopConfig

BATCH = 4


@dataclass(frozen=True)
class ScriptHP:
    """Hyperparameters of the scripted task."""

    x: float = 0.5
    """An unused tunable value."""


def tiny_data(train: int = 8, val: int = 6) -> DataBundle:
    def split(n: int, offset: int) -> Split:
        x = torch.arange(offset, offset + n, dtype=torch.float32).view(n, 1, 1, 1)
        return Split(x.expand(n, 1, 2, 2).contiguous(), torch.arange(n) % 2)

    return DataBundle("tiny", split(train, 0), split(val, 100), split(val, 200), 2, ("a", "b"))


class ScriptedTask(Task):
    """Its one weight holds the number of steps trained; a rung's value is scripted by that
    number, so the best weights, restored, score exactly the best rung's value."""

    name = "scripted"
    metric = "val_score"
    direction = "maximize"
    hparams_type = ScriptHP

    def __init__(self, values_by_step, losses=None, interrupt_at_step=None):
        self.values, self.losses = values_by_step, losses or {}
        self.interrupt_at_step = interrupt_at_step
        self.steps_trained: list[int] = []
        self.images: list[float] = []
        self.scored: list[int] = []
        self.finalized_weight = None

    def search_space(self):
        return space_from(ScriptHP, [Param("x", "float", 0.0, 1.0)])

    def batch_size(self, hp):
        return BATCH

    def build(self, hp, data, device, budget):
        module = torch.nn.Linear(1, 1)
        return Parts(
            modules={"m": module}, optimizers={"o": torch.optim.SGD(module.parameters(), lr=0.1)}
        )

    def train_step(self, parts, hp, x, y, ctx):
        if ctx.step == self.interrupt_at_step:
            raise KeyboardInterrupt
        self.steps_trained.append(ctx.step)
        self.images.extend(x.flatten(1)[:, 0].tolist())
        with torch.no_grad():
            parts.modules["m"].weight.fill_(ctx.step)
        return {"train_loss": torch.tensor(self.losses.get(ctx.step, 1.0 / ctx.step))}

    def evaluate(self, parts, hp, data, split, ctx):
        self.scored.append(len(split))
        return {"val_score": self.values[int(parts.modules["m"].weight.item())]}

    def finalize(self, parts, hp, data):
        self.finalized_weight = parts.modules["m"].weight.item()
        return Finalization(metrics={"val_final": 1.0}, artifacts={"note.txt": b"done"})


def budget(rungs: int, rung: int = BATCH, train: int = 8) -> TrialBudget:
    return TrialBudget(unit="images", rung=rung, max_rungs=rungs, train_size=train)


def objective(task, recorder=None, checkpoints=None, data=None, sources=(), **loop):
    """The loop run on its own, as study.optimize would call it: trial -> value."""
    config = LoopConfig(**{"rung_val_images": None, **loop})
    run = Objective(task, data or tiny_data(), task.search_space(), config)

    def one(trial):
        checkpoint = None
        if checkpoints is not None:
            checkpoint = TrialCheckpoint(checkpoints, trial.number, sources)
        return run(trial, recorder, checkpoint)

    return one


def trial(number: int = 0):
    return optuna.trial.FixedTrial({"x": 0.1}, number=number)


def test_rungs_every_n_images_and_the_value_of_the_best_weights(recorder):
    # 8 training images, batches of 4: a rung (4 images) after every step, 2 per epoch
    task = ScriptedTask({1: 0.2, 2: 0.7, 3: 0.5, 4: 0.6})
    value = objective(task, recorder, budget=budget(4), patience=5)(trial())
    assert value == 0.7
    assert task.finalized_weight == 2.0  # weights of the best rung, not of the last
    assert recorder.steps("rung/val_score") == {4: 0.2, 8: 0.7, 12: 0.5, 16: 0.6}
    assert recorder.steps("epoch") == {4: 0.5, 8: 1.0, 12: 1.5, 16: 2.0}
    final = recorder.history[-1]
    assert final[0] == 8 and final[1]["best_val_score"] == 0.7 and final[1]["best_step"] == 8
    assert {"config.json", "checkpoint/best.pt", "note.txt"} <= set(recorder.artifacts)
    assert recorder.status == "FINISHED" and recorder.params == {"x": 0.1}


def test_each_epoch_sees_every_image_once_in_a_fresh_order():
    task = ScriptedTask({s: 0.5 for s in range(1, 5)})
    objective(task, budget=budget(4))(trial())
    first, second = sorted(task.images[:8]), sorted(task.images[8:])
    assert first == second == [float(i) for i in range(8)]
    assert task.images[:8] != task.images[8:]  # reshuffled


def test_rungs_score_the_rung_split_and_the_end_scores_all_of_validation():
    task = ScriptedTask({s: 0.5 for s in range(1, 3)})
    objective(task, data=tiny_data(val=4), budget=budget(2), rung_val_images=2)(trial())
    # two rungs on 2 images, the epoch's end on all 4, the best weights again on all 4
    assert task.scored == [2, 2, 4, 4]


def test_a_validation_split_large_against_training_is_scored_whole_only_for_the_best(recorder):
    # 8 training images, 20 validation: scoring all of validation at each epoch's end would
    # cost more than the training; the rung scores choose the best weights instead
    task = ScriptedTask({1: 0.2, 2: 0.7, 3: 0.5, 4: 0.6})
    value = objective(
        task, recorder, data=tiny_data(val=20), budget=budget(4), patience=5, rung_val_images=4
    )(trial())
    # four rungs on 4 images; the last weights and the best on all 20
    assert task.scored == [4, 4, 4, 4, 20, 20]
    assert value == 0.7 and task.finalized_weight == 2.0
    # no epoch was scored on all of validation: the only val_score is the best weights'
    assert recorder.steps("val_score") == {8: 0.7}


class SplitDependentTask(ScriptedTask):
    """Scores on all of validation (20 images) differ from the rung split's."""

    def __init__(self, values_by_step, whole_values_by_step):
        super().__init__(values_by_step)
        self.whole = whole_values_by_step

    def evaluate(self, parts, hp, data, split, ctx):
        if len(split) < 20:
            return super().evaluate(parts, hp, data, split, ctx)
        self.scored.append(len(split))
        return {"val_score": self.whole[int(parts.modules["m"].weight.item())]}


def test_weights_chosen_on_a_part_of_validation_give_way_to_the_last_if_they_score_as_well():
    # the rung split prefers step 2; all of validation scores the last weights as well
    task = SplitDependentTask({1: 0.2, 2: 0.7, 3: 0.5, 4: 0.6}, {2: 0.8, 4: 0.8})
    t = trial()
    value = objective(task, data=tiny_data(val=20), budget=budget(4), rung_val_images=4)(t)
    assert value == 0.8 and task.finalized_weight == 4.0
    assert t.user_attrs[keys.BEST_STEP] == 16
    # and the best weights stay when the last score worse on all of validation
    task = SplitDependentTask({1: 0.2, 2: 0.7, 3: 0.5, 4: 0.6}, {2: 0.8, 4: 0.79})
    value = objective(task, data=tiny_data(val=20), budget=budget(4), rung_val_images=4)(trial())
    assert value == 0.8 and task.finalized_weight == 2.0


def test_early_stopping_after_patience_epochs_without_improvement(recorder):
    values = {1: 0.5, 2: 0.9, 3: 0.8, 4: 0.8, 5: 0.8, 6: 0.8, 7: 0.99, 8: 1.0}
    task = ScriptedTask(values)
    t = trial()
    assert objective(task, recorder, budget=budget(8), patience=2)(t) == 0.9
    assert task.steps_trained == [1, 2, 3, 4, 5, 6]  # 2 epochs (4 steps) after the best
    assert t.user_attrs[keys.EARLY_STOPPED] is True and t.user_attrs[keys.STEPS_RUN] == 24


def test_non_finite_loss_prunes_with_the_reason_recorded(recorder):
    task = ScriptedTask({1: 0.5, 2: 0.6, 3: 0.7}, losses={2: math.nan})
    t = trial()
    with pytest.raises(optuna.TrialPruned, match="non-finite train_loss"):
        objective(task, recorder, budget=budget(3))(t)
    assert "non-finite train_loss" in t.user_attrs[keys.FAIL_REASON]
    assert recorder.status == "KILLED" and "epoch 1" in recorder.tags[keys.FAIL_REASON]


def test_pruner_decision_ends_the_run_as_killed(recorder):
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.55)
    )
    task = ScriptedTask({1: 0.5, 2: 0.9})
    study.optimize(objective(task, recorder, budget=budget(2)), n_trials=1)
    assert study.trials[0].state == optuna.trial.TrialState.PRUNED
    assert study.trials[0].intermediate_values == {4: 0.5}
    assert recorder.status == "KILLED" and task.steps_trained == [1]


def test_a_deadline_ends_the_trial_complete_at_its_next_rung(recorder):
    task = ScriptedTask({1: 0.3, 2: 0.4})
    t = trial()
    value = objective(task, recorder, budget=budget(2), deadline=time.time() - 1)(t)
    assert value == 0.3 and task.steps_trained == [1]
    assert t.user_attrs[keys.STOPPED_AT_DEADLINE] is True
    assert recorder.status == "FINISHED" and recorder.tags[keys.STOPPED_TAG] == "deadline"


def test_an_interrupted_trial_resumes_exactly_where_its_last_rung_left_it(tmp_path, recorder):
    values = {s: s / 10 for s in range(1, 7)}
    rungs = budget(3, rung=8, train=8)  # a rung per epoch of 2 steps

    uninterrupted = ScriptedTask(values)
    expected = objective(uninterrupted, budget=rungs)(trial(number=3))

    checkpoints = LocalCheckpoints(tmp_path)
    first = trial(number=3)
    with pytest.raises(KeyboardInterrupt):  # in epoch 2, after the first rung
        objective(ScriptedTask(values, interrupt_at_step=4), recorder, checkpoints, budget=rungs)(
            first
        )
    assert recorder.status == "FAILED" and first.user_attrs[keys.FAIL_REASON] == "interrupted"
    assert checkpoints.path(3).exists()

    retry = trial(number=7)  # the retry of trial 3 resumes from its checkpoint
    resumed = ScriptedTask(values)
    assert objective(resumed, recorder, checkpoints, sources=(3,), budget=rungs)(retry) == expected
    assert resumed.steps_trained == [3, 4, 5, 6]  # from the second epoch on
    assert resumed.images == uninterrupted.images[8:]  # the same shuffles
    assert not checkpoints.path(3).exists()  # superseded by the retry's own at its first rung
    assert not checkpoints.path(7).exists()  # removed once the trial completed


def test_an_unreadable_checkpoint_is_no_checkpoint(tmp_path, recorder):
    """A torn or truncated checkpoint (a kill mid-write where renames are not atomic) is
    logged and skipped: the trial starts from the next candidate, or from scratch."""
    values = {s: s / 10 for s in range(1, 7)}
    rungs = budget(3, rung=8, train=8)
    checkpoints = LocalCheckpoints(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        objective(ScriptedTask(values, interrupt_at_step=4), recorder, checkpoints, budget=rungs)(
            trial(number=3)
        )
    whole = checkpoints.path(3).read_bytes()
    checkpoints.path(3).write_bytes(whole[: len(whole) // 2])  # torn
    fresh = ScriptedTask(values)
    value = objective(fresh, recorder, checkpoints, sources=(3,), budget=rungs)(trial(number=7))
    assert value == 0.6 and fresh.steps_trained == [1, 2, 3, 4, 5, 6]  # from scratch


class LibraryError(Exception):
    """What a database library raises when its clean-up after a KeyboardInterrupt fails."""


def test_an_interruption_a_library_renamed_still_ends_the_trial_as_interrupted(recorder):
    class RenamingTask(ScriptedTask):
        def train_step(self, parts, hp, x, y, ctx):
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt:
                raise LibraryError("database is locked")  # noqa: B904 (as the library does)

    t = trial()
    with pytest.raises(KeyboardInterrupt):  # the worker stops, not just this trial
        objective(RenamingTask({1: 0.5}), recorder, budget=budget(2))(t)
    assert t.user_attrs[keys.FAIL_REASON] == "interrupted"
    assert recorder.status == "FAILED" and recorder.tags[keys.FAIL_REASON] == "interrupted"


def test_an_ordinary_error_fails_the_trial_with_its_own_reason(recorder):
    class FailingTask(ScriptedTask):
        def train_step(self, parts, hp, x, y, ctx):
            raise LibraryError("disk full")

    t = trial()
    with pytest.raises(LibraryError):
        objective(FailingTask({1: 0.5}), recorder, budget=budget(2))(t)
    assert t.user_attrs[keys.FAIL_REASON] == "LibraryError: disk full"


def test_studies_counted_in_epochs_report_once_per_epoch(recorder):
    task = ScriptedTask({s: s / 10 for s in range(1, 7)})
    epochs = TrialBudget(unit="epochs", rung=8, max_rungs=3, train_size=8)
    study = optuna.create_study(direction="maximize")
    study.optimize(objective(task, recorder, budget=epochs), n_trials=1)
    assert study.trials[0].intermediate_values == {1: 0.2, 2: 0.4, 3: 0.6}


def test_a_deadline_before_the_first_rung_prunes_the_trial(recorder):
    task = ScriptedTask({1: 0.3, 2: 0.4})
    with pytest.raises(optuna.TrialPruned, match="before its first rung"):
        objective(task, recorder, budget=budget(1, rung=8), deadline=time.time() - 1)(trial())
    assert task.steps_trained == [1] and recorder.status == "KILLED"
