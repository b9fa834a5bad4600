"""Kill a worker, run the same command again at once: the study meets its target exactly,
resuming the dead trial from its checkpoint, with nothing left RUNNING (SQLite and PostgreSQL).

Before the fix the rerun stopped with "2/3 finished trials" (the dead trial counted as running
until its heartbeat went stale) or, with one trial, started a new configuration instead."""

import json
import signal

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from tunelab.search.scheduler import lineage

pytestmark = pytest.mark.e2e

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
GRACE = 300  # far longer than the test: a reclaim cannot be the heartbeat's doing


@pytest.mark.parametrize(("n_trials", "backend"), [(2, "sqlite"), (1, "postgresql")])
def test_a_rerun_after_sigkill_resumes_the_dead_trial_and_meets_the_target(
    cli, cli_popen, cnn_args, running_trials, tmp_path, request, n_trials, backend
):
    storage_url = (
        f"sqlite:///{tmp_path / 'studies.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres").new()
    )
    args = cnn_args(
        storage_url,
        # 15 epochs of digits: a fresh-clone run once saw an 8-epoch trial end between two
        # polls, after its second rung
        f"--n-trials {n_trials} --epochs 15 --patience 15 --pruner none "
        f"--heartbeat-interval 10 --grace-period {GRACE}",
    )
    process = cli_popen(args, cwd=tmp_path)
    killed = running_trials(storage_url, "cnn-digits", process).at_rung(2)
    process.send_signal(signal.SIGKILL)
    process.wait()

    result = cli(args, cwd=tmp_path)  # at once: the dead trial's heartbeat is still fresh
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="cnn-digits", storage=storage_url)
    assert len(study.get_trials(states=FINISHED)) == n_trials
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    assert study.trials[killed].state == TrialState.FAIL
    (retry,) = [t for t in study.trials if lineage.retry_of(t) == killed]
    assert retry.state == TrialState.COMPLETE and retry.params == study.trials[killed].params
    assert lineage.resumed_from(retry) == killed  # from its checkpoint
    # no configuration beyond the target was started
    assert len(study.trials) == n_trials + 1

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("cnn-digits")
    runs = client.search_runs([experiment.experiment_id], "tags.`optuna.trial_number` != ''")
    by_trial = {}
    for run in runs:
        by_trial.setdefault(int(run.data.tags["optuna.trial_number"]), []).append(run)
    assert all(len(attempt) == 1 for attempt in by_trial.values())  # one run per attempt
    assert by_trial[killed][0].info.status == "FAILED"
    assert not [r for r in runs if r.info.status == "RUNNING"]
    summary = json.loads(
        cli(["best", "cnn-digits", "--storage", storage_url, "--json"], cwd=tmp_path).stdout
    )
    assert summary["trial"] in {t.number for t in study.get_trials(states=(TrialState.COMPLETE,))}
