"""Function-style objectives: a user's own loop, driven by the one shared loop through
FunctionTask (its function on a thread, in turns with the loop), with a scripted function
whose reports are known in advance."""

from __future__ import annotations

import io
import threading

import optuna
import pytest
import torch

import tunelab
from tunelab.objectives import keys
from tunelab.objectives.budget import epoch_budget
from tunelab.objectives.checkpoints import LocalCheckpoints, TrialCheckpoint
from tunelab.objectives.functional import (
    FunctionTask,
    TrialEnded,
    default_value,
    function_task,
    own_data,
)
from tunelab.objectives.runner import Objective
from tunelab.objectives.space import Param
from tunelab.objectives.training import LoopConfig, retrain

SCORES = [0.2, 0.6, 0.5, 0.9, 0.7]
"""What the scripted function reports, epoch by epoch."""


class Log:
    """What one call of the scripted function did."""

    def __init__(self) -> None:
        self.started_at: int | None = None
        self.reported: list[int] = []
        self.unwound = False
        self.weights: list[float] = []


def scripted(log: Log, epochs: int = 5, fail_at: int | None = None, report_metric: bool = True):
    @tunelab.objective(metric="val_score", direction="maximize")
    def loop(trial: tunelab.TrialHandle):
        x = trial.suggest_float("x", 0.0, 1.0, default=0.25)
        kind = trial.suggest_categorical("kind", ["a", "b"])
        model = torch.nn.Linear(1, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        start = trial.resume(model, optimizer)
        log.started_at = start
        try:
            for epoch in range(start, epochs):
                if epoch == fail_at:
                    raise ValueError("the user's own bug")
                with torch.no_grad():
                    model.weight.fill_(epoch + 1)  # the weights say which epoch made them
                model(torch.ones(3, 1))  # a forward pass, as training does
                log.reported.append(epoch)
                metrics = {"train_loss": 1.0 / (epoch + 1), "x_seen": x + (kind == "b")}
                if report_metric:
                    metrics["val_score"] = SCORES[epoch]
                trial.report(metrics)
        except TrialEnded:
            log.unwound = True
            raise
        log.weights.append(model.weight.item())

    return loop


def loop_config(reports: int, **changes) -> LoopConfig:
    return LoopConfig(budget=epoch_budget(reports, 1, 1), rung_val_images=None, **changes)


def run(function, trial, recorder=None, checkpoint=None, reports: int = 5, **changes):
    task = function_task(function)()
    space = task.search_space()
    return Objective(task, own_data(), space, loop_config(reports, **changes))(
        trial, recorder, checkpoint
    )


def fixed(number: int = 0, **params):
    return optuna.trial.FixedTrial({"x": 0.25, "kind": "a", **params}, number=number)


def test_the_space_is_learned_from_the_suggestions_with_their_defaults():
    task = function_task(scripted(Log()))()
    space = task.search_space()
    assert [p.name for p in space.params] == ["x", "kind"]
    assert space.defaults == {"x": 0.25, "kind": "a"}  # the default, else the first choice
    assert space.default_trial_params() == {"x": 0.25, "kind": "a"}
    assert isinstance(task, FunctionTask) and task.name == "loop" and task.metric == "val_score"


def test_a_trial_is_the_loop_s_rungs_and_its_value_the_best_report(recorder):
    log = Log()
    threads = threading.active_count()
    value = run(scripted(log), fixed(kind="b"), recorder)
    assert value == 0.9  # the best report's, not the last
    assert recorder.steps("rung/val_score") == dict(enumerate(SCORES, start=1))
    assert recorder.steps("train_loss")[2] == pytest.approx(0.5)  # train_* are the curves
    assert recorder.steps("x_seen")[1] == pytest.approx(1.25)
    assert recorder.history[-1][1]["best_val_score"] == 0.9
    assert recorder.params == {"x": 0.25, "kind": "b"} and recorder.status == "FINISHED"
    best = torch.load(io.BytesIO(recorder.artifacts["checkpoint/best.pt"]), weights_only=True)
    assert best["state_dict"]["model"]["weight"].item() == 4.0  # the weights of report 4
    assert log.unwound and threading.active_count() == threads  # the thread has ended


def test_the_budget_ends_the_function_at_its_last_report():
    log = Log()
    assert run(scripted(log, epochs=20), fixed(), reports=3) == 0.6
    assert log.reported == [0, 1, 2] and log.unwound and log.weights == []


def test_a_function_whose_loop_ends_first_completes_there(recorder):
    log = Log()
    trial = fixed()
    assert run(scripted(log, epochs=2), trial, recorder, reports=5) == 0.6
    assert log.weights == [2.0] and not log.unwound  # it returned by itself
    assert trial.user_attrs[keys.STEPS_RUN] == 2


def test_a_pruned_trial_unwinds_the_function(recorder):
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.3)
    )
    log = Log()
    function = scripted(log)
    study.enqueue_trial({"x": 0.25, "kind": "a"})
    task = function_task(function)()
    objective = Objective(task, own_data(), task.search_space(), loop_config(5))
    study.optimize(lambda t: objective(t, recorder), n_trials=1)
    assert study.trials[0].state == optuna.trial.TrialState.PRUNED
    assert log.reported == [0] and log.unwound and recorder.status == "KILLED"


def test_the_function_s_own_error_fails_the_trial_with_its_reason(recorder):
    trial = fixed()
    with pytest.raises(ValueError, match="the user's own bug"):
        run(scripted(Log(), fail_at=2), trial, recorder)
    assert trial.user_attrs[keys.FAIL_REASON] == "ValueError: the user's own bug"
    assert recorder.status == "FAILED"


def test_a_report_without_the_metric_is_the_function_s_error():
    with pytest.raises(KeyError, match="got no 'val_score'"):
        run(scripted(Log(), report_metric=False), fixed())


def test_a_retry_resumes_where_the_last_report_left_it(tmp_path, recorder):
    checkpoints = LocalCheckpoints(tmp_path)
    first = Log()
    with pytest.raises(ValueError):  # dies in its third epoch, after two reports
        run(scripted(first, fail_at=2), fixed(number=3), None, TrialCheckpoint(checkpoints, 3))
    assert checkpoints.path(3).exists()

    again = Log()
    value = run(scripted(again), fixed(number=7), recorder, TrialCheckpoint(checkpoints, 7, (3,)))
    assert again.started_at == 2 and again.reported == [2, 3, 4]  # resume() said 2
    assert value == 0.9 and recorder.steps("rung/val_score") == {3: 0.5, 4: 0.9, 5: 0.7}
    assert not checkpoints.path(3).exists() and not checkpoints.path(7).exists()


def test_the_best_weights_of_a_resumed_trial_may_be_from_before_the_crash(tmp_path):
    checkpoints = LocalCheckpoints(tmp_path)
    with pytest.raises(ValueError):  # dies after report 4 (the best, 0.9)
        run(scripted(Log(), fail_at=4), fixed(number=1), None, TrialCheckpoint(checkpoints, 1))
    recorder = tunelab.objectives.MemoryRecorder()
    value = run(scripted(Log()), fixed(number=2), recorder, TrialCheckpoint(checkpoints, 2, (1,)))
    assert value == 0.9  # report 4's scores, known from the checkpointed reports
    best = torch.load(io.BytesIO(recorder.artifacts["checkpoint/best.pt"]), weights_only=True)
    assert best["state_dict"]["model"]["weight"].item() == 4.0


def test_evaluate_retrains_by_calling_the_function_again_to_the_best_step():
    log = Log()
    function = scripted(log)
    task = function_task(function)()
    space = task.search_space()
    hp = task.suggest(fixed(), space)
    data = own_data().for_final_training()
    training = retrain(task, hp, data, loop_config(5), step=4, seed=1)
    assert log.reported == [0, 1, 2, 3]
    assert task.evaluate(training.parts, hp, data, data.val, training.context())["val_score"] == 0.9
    task.finalize(training.parts, hp, data)
    serving = task.serving_model(training.parts, data, seed=1)
    assert serving.example.shape == (3, 1) and log.unwound
    assert "validation split" in task.trial_tags(data)["tunelab.function_scores"]


def test_declared_parameters_come_as_keyword_arguments_with_the_signature_s_defaults():
    seen = []

    @tunelab.objective("val_score", "maximize", space=[Param("width", "int", 1, 8)])
    def declared(trial, width=4, epochs=1):
        model = torch.nn.Linear(1, width)
        trial.resume(model)
        seen.append((width, trial.params))
        trial.report({"val_score": width / 8})

    task = function_task(declared)()
    space = task.search_space()
    assert space.defaults == {"width": 4}
    value = Objective(task, own_data(), space, loop_config(1))(
        optuna.trial.FixedTrial({"width": 6})
    )
    assert value == 0.75 and seen == [(6, {"width": 6})]


def test_a_declared_param_must_name_a_parameter_with_a_default():
    with pytest.raises(TypeError, match="'widht' names no parameter of <lambda>"):
        tunelab.objective("m", "maximize", space=[Param("widht", "int", 1, 8)])(
            lambda trial, width=4: None
        )
    with pytest.raises(TypeError, match="width of g need a default"):

        def g(trial, width):
            pass

        tunelab.objective("m", "maximize", space=[Param("width", "int", 1, 8)])(g)


def test_the_middle_of_a_range_is_the_default_without_one():
    assert default_value(Param("lr", "float", 1e-4, 1e-2, log=True)) == pytest.approx(1e-3)
    assert default_value(Param("n", "int", 2, 10, step=2)) == 6
    with pytest.raises(ValueError, match="outside its range"):
        default_value(Param("p", "float", 0.0, 1.0), 2.0)


def test_artifacts_the_function_logs_reach_its_run(recorder):
    @tunelab.objective("val_score", "maximize")
    def drawing(trial):
        trial.resume(torch.nn.Linear(1, 1))
        trial.log_artifacts({"plots/first.txt": b"one"})
        trial.report({"val_score": 0.5})
        trial.log_artifacts({"plots/second.txt": b"two"})
        trial.report({"val_score": 0.6})

    task = function_task(drawing)()
    Objective(task, own_data(), task.search_space(), loop_config(2))(fixed(), recorder)
    assert recorder.artifacts["plots/first.txt"] == b"one"
    assert recorder.artifacts["plots/second.txt"] == b"two"
