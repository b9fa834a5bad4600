"""A worker killed (SIGKILL) or stopped (SIGTERM) right after a storage call, at each kind of
call a trial's life makes, then the study run again: the target is met exactly, nothing stays
RUNNING, each configuration finishes once, every dead or stopped trial is retried once, and each
trial has one MLflow run whose status is the trial's. On SQLite, and the points where the
databases differ on PostgreSQL.

The calls are those a clean run makes (`crashpoints.probe`), in the order of a trial's life: the
study's creation, taking the queued default, its parameters, its first and a later rung, its
end, a new trial taken, its end. `benchmarks/chaos.py` gives restarted workers random crash
points among every storage call."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import crashpoints  # noqa: E402  (tests/faults, imported by path)

pytestmark = pytest.mark.slow  # worker processes

POINTS = (
    ("set_study_user_attr", 1),  # creating the study
    ("_create_new_trial", 1),  # queueing the default configuration
    ("take_waiting", 1),  # taking it: born RUNNING, owned, with its heartbeat
    ("_set_trial_param", 1),  # its first parameter
    ("set_trial_user_attr", 1),  # its MLflow run id
    ("set_trial_intermediate_value", 1),  # its first rung
    ("set_trial_intermediate_value", 2),  # a later rung, after a checkpoint
    ("save", 2),  # a checkpoint written, its rung not yet reported
    ("set_trial_state_values", 1),  # its end (tell)
    ("take_new", 1),  # a new trial under the target's lock
    ("state_counts", 2),  # between trials
)
SIGNALS = (signal.SIGKILL, signal.SIGTERM)
TARGET = 2


def _spec(storage: str, tracking: str, name: str, checkpoints: Path) -> dict:
    return {
        "task": "tiny_task:TinyTask",
        "dataset": "digits",
        "study_name": name,
        "n_trials": TARGET,
        "max_epochs": 3,
        "pruner": "none",
        "storage": storage,
        "tracking_uri": tracking,
        "checkpoint_dir": str(checkpoints),
        "heartbeat_interval": 1,
        "grace_period": 2,
        "device": "cpu",
        "quiet": True,
    }


@pytest.fixture(scope="module")
def tracking(tmp_path_factory) -> str:
    """One MLflow store for every scenario (a study each): its schema is made once."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def calls(tmp_path_factory, tracking) -> list[tuple[str, int]]:
    """The storage calls of a clean run."""
    folder = tmp_path_factory.mktemp("probe")
    spec = _spec(f"sqlite:///{folder / 's.db'}", tracking, "probe", folder / "ck")
    made = crashpoints.probe(spec, folder / "calls.log")
    assert crashpoints.check_study(spec["storage"], tracking, "probe", TARGET) == []
    return made


ON_POSTGRES = (
    ("set_study_user_attr", 1),  # the study's attribute written once, under its row lock
    ("take_waiting", 1),
    ("set_trial_state_values", 1),
    ("take_new", 1),
)
"""The points run on PostgreSQL too: where its transactions and row locks, not SQLite's file
lock, decide (the others are the same code on both; `benchmarks/chaos.py` crashes workers at
random storage calls on PostgreSQL)."""
CASES = [("sqlite", *point) for point in POINTS] + [("postgresql", *p) for p in ON_POSTGRES]


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: signal.Signals(s).name)
@pytest.mark.parametrize(
    "backend,method,occurrence", CASES, ids=[f"{b}-{m}#{n}" for b, m, n in CASES]
)
def test_a_worker_stopped_after_a_storage_call_leaves_a_study_a_rerun_finishes_exactly(
    request, tracking, tmp_path, calls, backend, method, occurrence, signum
):
    assert (method, occurrence) in calls, f"a clean run makes no {method} #{occurrence}"
    storage_url = (
        f"sqlite:///{tmp_path / 'studies.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres").new()
    )
    point = crashpoints.Point(method, occurrence, signum)
    name = f"crash-{backend}-{method.strip('_')}-{occurrence}-{signum}"  # one MLflow store
    spec = _spec(storage_url, tracking, name, tmp_path / "ck")

    code = crashpoints.run_worker(spec, point)
    assert code == (-signal.SIGKILL if signum == signal.SIGKILL else 143), f"{point}: exit {code}"
    assert crashpoints.run_worker(spec) == 0, f"the rerun after {point} failed"
    assert crashpoints.check_study(storage_url, tracking, name, TARGET) == [], str(point)
