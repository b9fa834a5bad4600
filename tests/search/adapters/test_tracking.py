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


def test_close_writes_its_exit_again_when_another_worker_wrote_it_at_the_same_moment(
    storage_url, tracking_uri, monkeypatch
):
    from mlflow.exceptions import MlflowException

    study = optuna.create_study(study_name="s", storage=storage_url)
    tracker = StudyTracker(tracking_uri, "s")
    tracker.attach_parent(study, {})
    set_tag, calls = tracker.client.set_tag, []

    def losing_the_race_once(*args):
        calls.append(args)
        if len(calls) == 1:  # as a tracking server answers the second of two inserts
            raise MlflowException("duplicate key value violates unique constraint tag_pk")
        return set_tag(*args)

    monkeypatch.setattr(tracker.client, "set_tag", losing_the_race_once)
    tracker.close("KILLED", "interrupted")
    parent = MlflowClient(tracking_uri).get_run(tracker.parent_run_id)
    assert len(calls) == 2 and parent.data.tags[keys.LAST_EXIT_TAG] == "interrupted"
    assert parent.info.status == "KILLED"


def test_the_front_is_logged_again_when_another_worker_logged_it_at_the_same_moment(
    storage_url, tracking_uri, monkeypatch
):
    # Two workers ending a multi-objective study log the front on the parent run at once:
    # MLflow's log_table reads the run's logged-artifacts tag, then inserts it, and the second
    # insert fails (UNIQUE constraint failed: tags.key, tags.run_uuid; a worker exited 1).
    from mlflow.exceptions import MlflowException

    from tunelab.search.study.pareto import log_front

    study = optuna.create_study(
        study_name="s", storage=storage_url, directions=["maximize", "minimize"]
    )
    study.set_metric_names(["val_accuracy", "params"])
    study.tell(study.ask(), [0.9, 1000.0])
    tracker = StudyTracker(tracking_uri, "s")
    tracker.attach_parent(study, {})
    set_tag, calls = MlflowClient.set_tag, []

    def losing_the_race_once(self, *args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise MlflowException("UNIQUE constraint failed: tags.key, tags.run_uuid")
        return set_tag(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "set_tag", losing_the_race_once)  # log_table's own call
    assert tracker.write_parent(lambda client, run_id: log_front(study, client, run_id)) == 1
    assert len(calls) == 2
    client = MlflowClient(tracking_uri)
    logged = {a.path for a in client.list_artifacts(tracker.parent_run_id)}
    assert {"pareto_front.json", "pareto_front.csv"} <= logged
    assert (
        "pareto_front.json"
        in client.get_run(tracker.parent_run_id).data.tags["mlflow.loggedArtifacts"]
    )


def test_a_dead_trials_run_is_failed_and_marked_recovered(storage_url, tracking_uri):
    study = optuna.create_study(study_name="s", storage=storage_url)
    tracker = StudyTracker(tracking_uri, "s")
    tracker.attach_parent(study, {})
    run_id = tracker.recorder(study.ask(), {}).run_id
    StudyTracker(tracking_uri, "s").fail_dead_run(run_id)  # as another worker does
    run = MlflowClient(tracking_uri).get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags[keys.RECOVERED_TAG] == "true"
    StudyTracker(tracking_uri, "s").fail_dead_run("no-such-run")  # nothing to close: no error


def test_links_open_the_model_training_view():
    from tunelab.search.adapters.tracking import experiment_url, run_url, ui_base

    assert ui_base("sqlite:///mlruns/mlflow.db") == "http://127.0.0.1:5000"
    assert ui_base("http://mlflow:5000/") == "http://mlflow:5000"
    assert ui_base("http://mlflow:5000", "https://ml.example.org/") == "https://ml.example.org"
    base = "http://mlflow:5000"
    assert experiment_url(base, "3") == (
        f"{base}/#/experiments/3/runs?viewStateShareKey=tunelab&workflowType=machine_learning"
    )
    assert run_url(base, "3", "abc") == (
        f"{base}/#/experiments/3/runs/abc?workflowType=machine_learning"
    )


def test_trials_and_runs_link_each_other_and_the_parent_keeps_the_best(tmp_path, tracking_uri):
    import optuna_dashboard

    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    tracker = StudyTracker(
        tracking_uri, "s", ui_url="http://mlflow.test", dashboard_url="http://dash.test/"
    )
    parent = tracker.attach_parent(study, {})
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment(tracker.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    log_best = tracker.best_so_far("val_accuracy")
    for value in (0.5, 0.8, 0.6):
        trial = study.ask()
        run = tracker.recorder(trial, {})
        run.end("FINISHED")
        study.tell(trial, value)
        log_best(study, study.trials[-1])
        run_id = trial.user_attrs[keys.MLFLOW_RUN_ID]
        note = optuna_dashboard.get_note(trial)
        assert tracker.run_url(run_id) in note and "workflowType=machine_learning" in note
        tags = client.get_run(run_id).data.tags
        assert tags[keys.STUDY_NAME_TAG] == "s" and tags[keys.TRIAL_NUMBER_TAG] == str(trial.number)
        assert tags[keys.DASHBOARD_URL_TAG] == (
            f"http://dash.test/dashboard/studies/{study._study_id}/trials?numbers={trial.number}"
        )
    history = client.get_metric_history(parent, "best_val_accuracy")
    assert [(m.step, m.value) for m in history] == [(0, 0.5), (1, 0.8), (2, 0.8)]


def test_system_metrics_go_to_the_trial_run_when_asked(tmp_path, tracking_uri, monkeypatch):
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'st.db'}")
    tracker = StudyTracker(tracking_uri, "s", system_metrics=True)
    tracker.attach_parent(study, {})
    trial = study.ask()
    run = tracker.recorder(trial, {})
    import time

    time.sleep(1.5)
    run.end("FINISHED")
    metrics = MlflowClient(tracking_uri).get_run(trial.user_attrs[keys.MLFLOW_RUN_ID]).data.metrics
    assert "system/cpu_utilization_percentage" in metrics
    assert "system/system_memory_usage_megabytes" in metrics
    assert not tracker._monitors  # its thread is stopped with the run


def test_runs_left_open_by_a_dead_process_follow_their_trials_end(tmp_path):
    """A worker died, and closing its run failed (the tracking server was down): the next
    worker closes every RUNNING run whose trial Optuna has ended, in that trial's state."""
    import optuna
    from mlflow import MlflowClient

    from tunelab.search.adapters.tracking import StudyTracker

    study = optuna.create_study(study_name="stray")
    done = study.ask()
    study.tell(done, 0.5)
    alive = study.ask()
    tracker = StudyTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "stray")
    client = MlflowClient(tracker.tracking_uri)
    runs = {
        t.number: client.create_run(
            tracker.experiment_id, tags={"optuna.trial_number": str(t.number)}
        ).info.run_id
        for t in (done, alive)
    }
    assert tracker.close_stray_runs(study) == [runs[done.number]]
    assert client.get_run(runs[done.number]).info.status == "FINISHED"
    assert client.get_run(runs[alive.number]).info.status == "RUNNING"  # still training
