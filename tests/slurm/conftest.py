"""The `slurm_cluster` fixture: one real one-node Slurm cluster per test run (cluster.py).

It starts at the first test that asks for it and stops right after the last test of this
folder that asks for it (in collected order), not at the end of the session: pytest would
tear a session fixture down inside the last test of the whole run, and tests/conftest.py
fails an unmarked test that starts a process (stop() runs squeue and scancel). Stopping is
also done at the end of the session, and at exit, should a run end early (-x, Ctrl-C).

It skips, with the reason, only where the machine cannot run a cluster at all (not root, or
packages missing and no apt-get); every other failure to start is an error.
"""

from __future__ import annotations

import atexit
import importlib.util
import sys
from pathlib import Path

import pytest

CLUSTER_PY = Path(__file__).with_name("cluster.py")
FIXTURE = "slurm_cluster"


def load_cluster_module():
    """tests/slurm/cluster.py as a module (one per process, also for benchmarks)."""
    name = "tunelab_slurm_cluster"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, CLUSTER_PY)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before exec: its dataclasses look themselves up there
        spec.loader.exec_module(module)
    return sys.modules[name]


_state: dict = {"cluster": None, "last": None}


def _stop() -> None:
    cluster = _state["cluster"]
    if cluster is not None:
        cluster.stop()


@pytest.fixture(scope="session")
def slurm_cluster():
    """A running one-node Slurm cluster (cluster.SlurmCluster): partitions debug (default)
    and urgent (preempts debug, REQUEUE), accounting on (sacct), KillWait 5 s."""
    module = load_cluster_module()
    cluster = module.SlurmCluster()
    _state["cluster"] = cluster
    atexit.register(_stop)
    try:
        cluster.start()
    except module.SlurmUnavailable as error:
        pytest.skip(f"no Slurm cluster on this machine: {error}")
    return cluster


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items) -> None:
    users = [item.nodeid for item in items if FIXTURE in getattr(item, "fixturenames", ())]
    _state["last"] = users[-1] if users else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    try:
        return (yield)
    finally:
        if item.nodeid == _state["last"]:
            _stop()


def pytest_sessionfinish(session) -> None:
    _stop()


def pytest_terminal_summary(terminalreporter) -> None:
    cluster = _state["cluster"]
    if cluster is not None and cluster.timings:
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in cluster.timings.items())
        terminalreporter.write_line(f"slurm cluster: {phases}")
