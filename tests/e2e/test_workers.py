"""Several workers on one study, crash recovery and signals, through the real CLI."""

import signal
import time

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

pytestmark = pytest.mark.e2e

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _tracking(tmp_path):
    return f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"


def _runs(tmp_path, study_name):
    client = MlflowClient(_tracking(tmp_path))
    experiment = client.get_experiment_by_name(study_name)
    return client, client.search_runs([experiment.experiment_id], max_results=1000)


def test_two_workers_share_one_study_and_one_parent_run(cli, cnn_args, storage_url, tmp_path):
    result = cli(
        cnn_args(storage_url, "--workers 2 --n-trials 6 --epochs 2"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "database is locked" not in result.stderr

    study = optuna.load_study(study_name="cnn-digits", storage=storage_url)
    # the exact target (no overshoot by two workers finishing together), nothing left running
    assert len(study.get_trials(states=FINISHED)) == 6
    assert not study.get_trials(states=(TrialState.RUNNING,))

    client, runs = _runs(tmp_path, "cnn-digits")
    parents = [r for r in runs if r.data.tags.get("tunelab.role") == "study"]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    by_trial = {}
    for run in children:
        by_trial.setdefault(int(run.data.tags["optuna.trial_number"]), []).append(run)
    # one MLflow run per attempt (a retry is a trial of its own), and it is the trial's run
    started = [t for t in study.trials if t.state != TrialState.WAITING]
    assert sorted(by_trial) == sorted(t.number for t in started)
    assert all(len(runs) == 1 for runs in by_trial.values()), by_trial
    for trial in started:
        assert by_trial[trial.number][0].info.run_id == trial.user_attrs["tunelab.mlflow_run_id"]
    assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]


def test_sigkill_then_restart_resumes_the_dead_trial_from_its_checkpoint(
    cli, cli_popen, cnn_args, running_trials, tmp_path
):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    # Many short epochs: the kill lands mid-trial however fast this machine is.
    args = cnn_args(
        storage,
        "--n-trials 1 --epochs 25 --patience 25 --pruner none "
        "--heartbeat-interval 1 --grace-period 2",
    )
    process = cli_popen(args, cwd=tmp_path)
    killed = running_trials(storage, "cnn-digits", process).at_rung(2)  # an epoch each
    process.send_signal(signal.SIGKILL)
    process.wait()
    time.sleep(2.5)  # past the grace period: the next worker sees the trial as dead

    result = cli(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="cnn-digits", storage=storage)
    assert len(study.get_trials(states=FINISHED)) == 1  # the retry: no new configuration
    assert study.trials[killed].state == TrialState.FAIL
    assert not study.get_trials(states=(TrialState.RUNNING,))

    retry = next(
        t for t in study.trials if t.user_attrs.get("tunelab.resumed_from_trial") == killed
    )
    rung = 1257  # digits: one rung per epoch of 1,257 training images
    assert {rung, 2 * rung} <= set(retry.intermediate_values), "the dead trial's curve came over"
    client, runs = _runs(tmp_path, "cnn-digits")
    dead_run = client.get_run(study.trials[killed].user_attrs["tunelab.mlflow_run_id"])
    assert dead_run.info.status == "FAILED"
    assert dead_run.data.tags["tunelab.recovered"] == "true"
    retry_run = client.get_run(retry.user_attrs["tunelab.mlflow_run_id"])
    assert retry_run.data.tags["tunelab.retry_of_trial"] == str(killed)
    resumed_at = int(retry_run.data.tags["tunelab.resumed_at_step"])
    assert resumed_at >= 2 * rung
    history = client.get_metric_history(retry_run.info.run_id, "rung/val_accuracy")
    steps = [m.step for m in history]
    expected = list(range(resumed_at + rung, 25 * rung + 1, rung))
    assert steps == expected, "the retry continued after its checkpoint"
    assert not [r for r in runs if client.get_run(r.info.run_id).info.status == "RUNNING"]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_ends_the_trial_as_failed_and_the_same_command_finishes(
    cli, cli_popen, cnn_args, running_trials, tmp_path, sig, code
):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    args = cnn_args(storage, "--n-trials 1 --epochs 20 --patience 20 --pruner none")
    process = cli_popen(args, cwd=tmp_path)
    stopped = running_trials(storage, "cnn-digits", process).at_rung(1)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr

    study = optuna.load_study(study_name="cnn-digits", storage=storage)
    trial = study.trials[stopped]
    assert (
        trial.state == TrialState.FAIL and trial.user_attrs["tunelab.fail_reason"] == "interrupted"
    )
    assert not study.get_trials(states=(TrialState.RUNNING,))
    client, runs = _runs(tmp_path, "cnn-digits")
    assert not [r for r in runs if r.info.status == "RUNNING"]
    # the study's folder: its name, then its own id (another study of that name has another)
    assert list((tmp_path / "checkpoints").glob(f"cnn-digits-*/trial-{stopped}.pt"))

    result = cli(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="cnn-digits", storage=storage)
    assert len(study.get_trials(states=FINISHED)) == 1
    assert any(t.user_attrs.get("tunelab.resumed_from_trial") == stopped for t in study.trials)


def test_worker_fails_fast_when_its_database_or_tracking_server_is_unreachable(
    cli, cnn_args, tmp_path
):
    unreachable = "postgresql+psycopg://postgres@127.0.0.1:1/nothing"
    result = cli(
        ["worker", "s", "--storage", unreachable], cwd=tmp_path, TUNELAB_CONNECT_ATTEMPTS="2"
    )
    assert result.returncode == 2
    assert result.stderr.startswith("tunelab: error: cannot reach storage database")
    assert result.stderr.count("\n") == 1

    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    create = cnn_args(storage, "--n-trials 2", command="create")
    assert cli(create, cwd=tmp_path).returncode == 0
    result = cli(
        ["worker", "cnn-digits", "--storage", storage, "--tracking-uri", "http://127.0.0.1:1"],
        cwd=tmp_path,
        TUNELAB_CONNECT_ATTEMPTS="2",
    )
    assert result.returncode == 2
    assert "cannot reach MLflow tracking server" in result.stderr
    study = optuna.load_study(study_name="cnn-digits", storage=storage)
    assert [t.state for t in study.trials] == [TrialState.WAITING]  # the enqueued defaults only
