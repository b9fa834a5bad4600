"""Two workers, two working folders, one shared checkpoint store: a trial killed on one resumes
on the other from the shared copy, through the real CLI, on SQLite and PostgreSQL.

The stores: a `file://` URL (a folder both machines mount) and `mlflow-artifacts:` (the
artifact store of an MLflow tracking server started here with --serve-artifacts).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from tunelab.objectives import keys
from tunelab.search.scheduler import lineage

pytestmark = pytest.mark.e2e

TUNELAB = Path(sys.executable).with_name("tunelab")
EPOCHS = 6
KILL_AFTER = 2
"""Epochs the first worker reports before it is killed: the retry must not train them again."""
RUNG = 256
"""Training images (--limit-train): one rung per epoch."""
SMALL_CNN = "params:\n  base_width: 8\n  fc_width: 32\n  convs_per_block: 1\n"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUNELAB_", "MLFLOW_"))}
    return env | {"MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """An MLflow tracking server proxying its artifact store: (URL, artifacts folder)."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    env = _env() | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    command = [
        *(sys.executable, "-m", "mlflow", "server", "--workers", "1"),
        *("--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"),
        *("--serve-artifacts", "--artifacts-destination", str(root / "artifacts")),
        *("--host", "127.0.0.1", "--port", str(port)),
    ]
    with open(root / "server.log", "wb") as log:
        server = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (root / "server.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the MLflow server does not answer"
                time.sleep(0.5)
        yield url, root / "artifacts"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    """A worker in its own process group (so that SIGKILL takes it whole), as on a machine."""
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [str(TUNELAB), *args],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=open(cwd / "stderr.log", "w"),  # noqa: SIM115 - closed with the process
        start_new_session=True,
    )


# each store once, each storage once: the four pairs cost minutes and test nothing more
@pytest.mark.parametrize(
    ("store", "backend"), [("file", "sqlite"), ("mlflow-artifacts", "postgresql")]
)
def test_a_trial_killed_on_one_worker_resumes_on_another_from_the_shared_store(
    store, backend, running_trials, tmp_path, request
):
    storage_url = (
        f"sqlite:///{tmp_path / 'studies.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres").new()
    )
    study_name = f"shared-{uuid.uuid4().hex[:8]}"
    if store == "file":
        tracking = f"sqlite:///{tmp_path / 'shared' / 'mlflow.db'}"
        checkpoint_dir = (tmp_path / "shared" / "checkpoints").as_uri()
        store_root = tmp_path / "shared" / "checkpoints"
    else:
        tracking, artifacts = request.getfixturevalue("mlflow_server")
        prefix = f"ck-{uuid.uuid4().hex[:8]}"
        checkpoint_dir = f"mlflow-artifacts:/{prefix}"
        store_root = artifacts / prefix
    first, second = tmp_path / "machine-a", tmp_path / "machine-b"
    first.mkdir()
    (first / "small.yaml").write_text(SMALL_CNN)
    run = [
        *(
            "run",
            "cnn",
            "--dataset",
            "digits",
            "--limit-train",
            str(RUNG),
            "--config",
            "small.yaml",
        ),
        *("--study-name", study_name, "--storage", storage_url, "--tracking-uri", tracking),
        *("--checkpoint-dir", checkpoint_dir, "--n-trials", "1", "--pruner", "none"),
        *("--epochs", str(EPOCHS), "--patience", str(EPOCHS), "--workers", "1", "--quiet"),
        *("--heartbeat-interval", "1", "--grace-period", "2"),
    ]
    worker_a = _start(run, first)
    killed = running_trials(storage_url, study_name, worker_a).at_rung(KILL_AFTER, timeout=240)
    os.killpg(worker_a.pid, signal.SIGKILL)
    worker_a.wait()
    saved = sorted(p.relative_to(store_root) for p in store_root.rglob("*.pt"))
    assert saved and all(f"trial-{killed}" in str(p) for p in saved), saved
    time.sleep(2.5)  # past the grace period: the second worker sees the trial as dead

    # Machine B: its own empty folder; the store and tracking server come from the study.
    worker_b = _start(["worker", study_name, "--storage", storage_url, "--quiet"], second)
    assert worker_b.wait(timeout=300) == 0, (second / "stderr.log").read_text()[-3000:]

    study = optuna.load_study(study_name=study_name, storage=storage_url)
    assert study.trials[killed].state == TrialState.FAIL
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))
    (retry,) = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert lineage.resumed_from(retry) == killed
    resumed_at = lineage.resumed_at(retry)
    assert resumed_at >= KILL_AFTER * RUNG, "the epochs trained on machine A carried over"
    assert set(retry.intermediate_values) == {RUNG * e for e in range(1, EPOCHS + 1)}

    # One MLflow run per attempt: the dead one closed as recovered, the retry's finished.
    client = MlflowClient(tracking)
    experiment = client.get_experiment_by_name(study_name)
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    by_trial: dict[int, list] = {}
    for r in runs:
        if keys.TRIAL_NUMBER_TAG in r.data.tags:
            by_trial.setdefault(int(r.data.tags[keys.TRIAL_NUMBER_TAG]), []).append(r)
    assert sorted(by_trial) == sorted(t.number for t in study.trials)
    assert all(len(attempts) == 1 for attempts in by_trial.values())
    (dead_run,), (retry_run,) = by_trial[killed], by_trial[retry.number]
    assert dead_run.info.status == "FAILED" and dead_run.data.tags[keys.RECOVERED_TAG] == "true"
    assert retry_run.info.status == "FINISHED"
    assert retry_run.data.tags[lineage.RETRY_OF_TRIAL_TAG] == str(killed)
    assert int(retry_run.data.tags[lineage.RESUMED_AT_STEP_TAG]) == resumed_at
    steps = [m.step for m in client.get_metric_history(retry_run.info.run_id, "rung/val_accuracy")]
    assert steps == list(range(resumed_at + RUNG, EPOCHS * RUNG + 1, RUNG))
    assert not [r for r in runs if r.info.status == "RUNNING"]

    # The study reached its target: its checkpoints are gone; nothing went to a local folder.
    assert not list(store_root.rglob("*.pt"))
    for machine in (first, second):
        assert not list(machine.rglob("*.pt")), machine
