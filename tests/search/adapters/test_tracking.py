"""The MLflow adapter: one parent run per study, one child run per trial, true statuses."""

import optuna
import pytest
from mlflow import MlflowClient

from tunelab.objectives import keys
from tunelab.search.adapters.tracking import (
    StudyTracker,
    check_tracking_uri,
    local_artifact_root,
    open_tracking,
)
from tunelab.search.spec import SpecError


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("mlruns", "unsupported tracking URI"),
        ("file:///tmp/mlruns", "unsupported tracking URI"),
        ("http://127.0.0.1:1", "cannot reach MLflow tracking server"),
    ],
)
def test_unusable_tracking_uris_are_one_line(uri, message):
    with pytest.raises(SpecError, match=message):
        check_tracking_uri(uri)


def test_reading_commands_never_create_a_tracking_store(tmp_path):
    with pytest.raises(SpecError, match="no MLflow tracking database"):
        open_tracking(f"sqlite:///{tmp_path}/mlflow.db")
    assert not (tmp_path / "mlflow.db").exists()


def test_artifacts_of_a_local_store_live_beside_it(tmp_path):
    root = local_artifact_root(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    assert root == (tmp_path / "mlruns" / "artifacts").as_uri()
    assert local_artifact_root("http://mlflow:5000") is None


def test_parent_and_child_runs_with_their_true_status(storage_url, tracking_uri):
    study = optuna.create_study(study_name="s", storage=storage_url, direction="maximize")
    tracker = StudyTracker(tracking_uri, "s")
    parent = tracker.attach_parent(study, {keys.TASK: "cnn"})
    assert StudyTracker(tracking_uri, "s").attach_parent(study, {}) == parent  # one per study
    assert study.user_attrs[keys.PARENT_RUN_ID] == parent

    ended = {}
    for status in ("FINISHED", "KILLED", "FAILED"):
        trial = study.ask()
        run = tracker.recorder(trial, {keys.TASK: "cnn"})
        run.log_params({"lr": 0.1})
        run.log_metrics({"val_accuracy": 0.5}, step=1)
        run.log_artifacts({"sub/note.txt": b"hi"})
        run.end(status, None if status == "FINISHED" else "why")
        ended[status] = trial.user_attrs[keys.MLFLOW_RUN_ID]

    client = MlflowClient(tracking_uri)
    states = {"FINISHED": "COMPLETE", "KILLED": "PRUNED", "FAILED": "FAIL"}
    for status, run_id in ended.items():
        run = client.get_run(run_id)
        assert run.info.status == status
        assert run.data.tags[keys.STATE_TAG] == states[status]
        assert run.data.tags["mlflow.parentRunId"] == parent
        assert run.data.params == {"lr": "0.1"}
        assert [a.path for a in client.list_artifacts(run_id)] == ["sub"]
    assert client.get_run(ended["KILLED"]).data.tags[keys.END_REASON_TAG] == "why"


def test_close_ends_what_the_process_left_open(storage_url, tracking_uri):
    study = optuna.create_study(study_name="s", storage=storage_url)
    tracker = StudyTracker(tracking_uri, "s")
    tracker.attach_parent(study, {})
    trial = study.ask()
    open_run = tracker.recorder(trial, {}).run_id
    tracker.close("KILLED", "interrupted")
    client = MlflowClient(tracking_uri)
    assert client.get_run(open_run).info.status == "FAILED"
    parent = client.get_run(tracker.parent_run_id)
    assert parent.info.status == "KILLED" and parent.data.tags[keys.LAST_EXIT_TAG] == "interrupted"


def test_a_dead_trials_run_is_failed_and_marked_recovered(storage_url, tracking_uri):
    study = optuna.create_study(study_name="s", storage=storage_url)
    tracker = StudyTracker(tracking_uri, "s")
    tracker.attach_parent(study, {})
    run_id = tracker.recorder(study.ask(), {}).run_id
    StudyTracker(tracking_uri, "s").fail_dead_run(run_id)  # as another worker does
    run = MlflowClient(tracking_uri).get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags[keys.RECOVERED_TAG] == "true"
    StudyTracker(tracking_uri, "s").fail_dead_run("no-such-run")  # nothing to close: no error
