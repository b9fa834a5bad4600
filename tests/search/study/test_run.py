"""Studies end to end in-process, on SQLite and on the local PostgreSQL."""

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from tunelab.objectives.classification import ClassificationTask
from tunelab.search.spec import SpecError, StudySpec
from tunelab.search.study.prepare import prepare
from tunelab.search.study.queries import best_trial_info, study_rows
from tunelab.search.study.run import run_study

SMALL = {"base_width": 8, "fc_width": 32, "convs_per_block": 1}
STATUS = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED", TrialState.FAIL: "FAILED"}


def _spec(storage_url, tracking_uri, tmp_path, **changes):
    values = {
        "task": "cnn",
        "dataset": "digits",
        "study_name": "s",
        "n_trials": 3,
        "max_epochs": 2,
        "storage": storage_url,
        "tracking_uri": tracking_uri,
        "params": SMALL,
        "seed": 1,
        "checkpoint_dir": str(tmp_path / "ck"),
        "device": "cpu",
    }
    return StudySpec(**{**values, **changes})


def test_study_reaches_its_target_resumes_and_tracks_every_trial(
    storage_url, tracking_uri, tmp_path
):
    spec = _spec(storage_url, tracking_uri, tmp_path)
    outcome = run_study(prepare(spec))
    assert outcome.finished == 3

    study = optuna.load_study(study_name="s", storage=storage_url)
    first = study.trials[0]
    assert first.params == prepare(spec).space.default_trial_params()  # defaults enqueued
    assert study.user_attrs["tunelab.metric"] == "val_accuracy"

    # The same command with a higher target finishes the rest, never repeating the defaults.
    run_study(prepare(_spec(storage_url, tracking_uri, tmp_path, n_trials=5)))
    study = optuna.load_study(study_name="s", storage=storage_url)
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == 5

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("s")
    parents = client.search_runs([experiment.experiment_id], "tags.`tunelab.role` = 'study'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    for trial in study.trials:
        run = client.get_run(trial.user_attrs["tunelab.mlflow_run_id"])
        assert run.info.status == STATUS[trial.state]
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert run.data.tags["optuna.trial_number"] == str(trial.number)
        assert run.info.run_name == f"trial-{trial.number}"
        assert run.data.params["lr"] == str(trial.params["lr"])
        history = client.get_metric_history(run.info.run_id, "rung/val_accuracy")
        assert [m.step for m in history] == sorted(trial.intermediate_values)


def test_resuming_with_another_data_set_is_refused(storage_url, tracking_uri, tmp_path):
    run_study(prepare(_spec(storage_url, tracking_uri, tmp_path, n_trials=1, max_epochs=1)))
    with pytest.raises(SpecError, match="exists with other settings"):
        run_study(prepare(_spec(storage_url, tracking_uri, tmp_path, limit_train=300)))


def _choices(prepared, name):
    return next(p.choices for p in prepared.space.params if p.name == name)


def test_a_size_objective_reshapes_the_space_and_a_resumed_study_keeps_its_own(
    storage_url, tracking_uri, tmp_path, monkeypatch
):
    pareto = {"objectives": ("val_accuracy", "params"), "params": {"convs_per_block": 1}}
    new = prepare(_spec(storage_url, tracking_uri, tmp_path, n_trials=1, max_epochs=1, **pareto))
    assert 8 in _choices(new, "base_width")  # the small end of the widths
    assert new.metrics_space

    # A study created by a tunelab that did not reshape the space (and so recorded none)...
    monkeypatch.setattr(ClassificationTask, "space_for_metrics", lambda self, metrics: {})
    old = prepare(_spec(storage_url, tracking_uri, tmp_path, n_trials=2, max_epochs=1, **pareto))
    run_study(old)
    study = optuna.load_study(study_name="s", storage=storage_url)
    assert study.user_attrs["tunelab.metrics_space"] == {}
    # the front's cheap end follows the default, as far as the space allows (base_width 2
    # is not among the old choices: the sampler picked one)
    anchor = study.trials[1]
    assert anchor.user_attrs["tunelab.anchor_trial"] and anchor.state == TrialState.COMPLETE
    assert anchor.params["conv_blocks"] == 3 and anchor.params["fc_width"] == 0
    # ... keeps its space when this one resumes it: Optuna refuses a parameter's categorical
    # choices that change within a study, so every new trial would fail.
    monkeypatch.undo()
    resumed = prepare(
        _spec(storage_url, tracking_uri, tmp_path, n_trials=4, max_epochs=1, **pareto)
    )
    run_study(resumed)
    assert _choices(resumed, "base_width") == _choices(old, "base_width")
    study = optuna.load_study(study_name="s", storage=storage_url)
    finished = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == 4  # the rest of the size ladder waits for a larger target
    assert {tuple(t.distributions["base_width"].choices) for t in finished[1:]} == {
        _choices(old, "base_width")
    }


def test_summaries_and_best(storage_url, tracking_uri, tmp_path):
    run_study(prepare(_spec(storage_url, tracking_uri, tmp_path, n_trials=2, max_epochs=1)))
    (row,) = study_rows(storage_url)
    assert (row["name"], row["task"], row["dataset"], row["direction"]) == (
        "s",
        "cnn",
        "digits",
        "maximize",
    )
    assert row["complete"] + row["pruned"] == 2 and row["target"] == 2
    info = best_trial_info(optuna.load_study(study_name="s", storage=storage_url))
    assert info["value"] == row["best"] and info["mlflow_run_id"]
