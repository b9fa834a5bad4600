"""Shared fixtures: storages (SQLite and the local PostgreSQL), tiny data, the real CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault(
    "TUNELAB_CACHE", str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "tunelab")
)

# -- the two tiers ----------------------------------------------------------------------------
# `make test-fast` runs the tests not marked slow; a test that starts a process, a server or a
# browser must be marked slow (or e2e, which implies it). The split is enforced, not trusted:
# an audit hook fails an unmarked test at the moment it starts a process or binds a socket.

SPAWN_EVENTS = frozenset(
    {
        "subprocess.Popen",
        "os.system",
        "os.posix_spawn",
        "os.spawn",
        "os.exec",
        "os.fork",
        "os.forkpty",
        "pty.spawn",
        "socket.bind",
    }
)
"""Audit events (PEP 578) of starting a process or a server."""


class SpawnGuard:
    """An audit hook: while an unmarked test runs, starting a process or a server fails it."""

    def __init__(self) -> None:
        self.test: str | None = None
        """The node id of the running test that is not marked slow (None: no check)."""

    def __call__(self, event: str, args: tuple) -> None:
        if self.test is None or event not in SPAWN_EVENTS:
            return
        test, self.test = self.test, None  # one failure per test, not one per retry
        raise RuntimeError(
            f"{test} is not marked slow but it starts a process or a server ({event}): "
            "mark it @pytest.mark.slow (see tests/conftest.py)"
        )


_GUARD = pytest.StashKey[SpawnGuard]()


def pytest_configure(config: pytest.Config) -> None:
    # torch's first import runs `ldconfig -p` (the CUDA build looks for its libraries): done
    # here, before any test, so it is no test's process
    import torch  # noqa: F401

    guard = SpawnGuard()
    sys.addaudithook(guard)  # hooks cannot be removed: a guard with no test checks nothing
    config.stash[_GUARD] = guard


LONG_GROUPS = (
    "slurm",
    "tests/faults/test_crash_points.py",
    "tests/benchmarks/",
    "tests/e2e/test_workers.py",
    "tests/e2e/test_tutorial.py",
    "tests/faults/test_outages.py",
)
"""The groups that take longest (`group_of`), handed to pytest-xdist's workers first: the
suite then ends with short groups, not with one long group on one worker."""


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("e2e") and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)

    def rank(item: pytest.Item) -> int:
        group = group_of(item.nodeid)
        return next((i for i, p in enumerate(LONG_GROUPS) if group.startswith(p)), len(LONG_GROUPS))

    items.sort(key=rank)  # stable: each module keeps its order


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`make test` runs in pytest-xdist workers, a group of tests (`group_of`) to a worker."""
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return ByGroup(config, log)


def group_of(nodeid: str) -> str:
    """A test's group, run by one worker: its module's tests (its module fixtures are made
    once); every test of a Slurm cluster (one cluster at a time, benchmarks/slurm.py's own
    too); a slow module's storage-parametrized tests, split by storage."""
    path = nodeid.split("::", 1)[0]
    if "slurm" in path:
        return "slurm"
    for backend in ("sqlite", "postgresql"):
        if path.startswith("tests/faults/") and f"[{backend}" in nodeid:
            return f"{path}[{backend}]"
    return path


@pytest.fixture(autouse=True)
def _signal_handlers_put_back():
    """Signal handlers are process state: a test that runs `tunelab` in-process (its `main`
    arms SIGINT, SIGTERM and a stop's SIGALRM) must not leave them to the next test, where a
    stop asked for long ago would interrupt pytest itself."""
    import signal

    from tunelab.search.adapters import signals

    kinds = (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)
    before = {kind: signal.getsignal(kind) for kind in kinds}
    yield
    if signal.getsignal(signal.SIGALRM) is signals._interrupt_by_alarm:
        signal.alarm(0)  # a stop's deadline, not pytest-timeout's
    for kind, handler in before.items():
        signal.signal(kind, handler)
    signals._STOP_REQUESTED.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    guard = item.config.stash[_GUARD]
    guard.test = None if item.get_closest_marker("slow") else item.nodeid
    try:
        return (yield)
    finally:
        guard.test = None


PG_ADMIN_URL = os.environ.get("TUNELAB_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
"""Server of the PostgreSQL tests (trust auth); each test session makes its own database."""
TUNELAB = Path(sys.executable).with_name("tunelab")


def _admin_connect():
    import psycopg

    url = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    return psycopg.connect(f"{url}/postgres", autocommit=True, connect_timeout=10)


class PostgresDatabases:
    """Creates throw-away databases on the local server and drops them afterwards."""

    def __init__(self) -> None:
        self.created: list[str] = []

    def new(self, prefix: str = "tunelab_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with _admin_connect() as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return f"{PG_ADMIN_URL}/{name}"

    def drop_all(self) -> None:
        with _admin_connect() as connection:
            for name in self.created:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresDatabases]:
    """The local PostgreSQL (required: these tests fail, not skip, when it is down)."""
    databases = PostgresDatabases()
    yield databases
    databases.drop_all()


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request, tmp_path: Path) -> str:
    """An empty Optuna storage, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'studies.db'}"
    return request.getfixturevalue("postgres").new()


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"


@pytest.fixture(scope="session")
def digits():
    from tunelab.objectives.data import DataSpec, load_data

    return load_data(DataSpec("digits"))


@pytest.fixture
def loop_for():
    """loop_for(data, max_epochs=1, **changes): a LoopConfig of `max_epochs` epochs in
    automatic rungs, for driving a task through the shared loop."""
    from tunelab.objectives.budget import epoch_budget
    from tunelab.objectives.training import LoopConfig

    def make(data, max_epochs: int = 1, **changes):
        return LoopConfig(budget=epoch_budget(max_epochs, len(data.train)), **changes)

    return make


@pytest.fixture
def step_context():
    """step_context(data, epoch=1, step=1, progress=1.0, max_epochs=1, seed=0): what a task's
    train_step / evaluate receive from the loop."""
    import torch

    from tunelab.objectives.base import StepContext
    from tunelab.objectives.budget import epoch_budget

    def make(data, epoch=1, step=1, progress=1.0, max_epochs=1, seed=0):
        return StepContext(
            epoch=epoch,
            step=step,
            progress=progress,
            budget=epoch_budget(max_epochs, len(data.train)),
            generator=torch.Generator().manual_seed(seed),
        )

    return make


@pytest.fixture
def recorder():
    from tunelab.objectives.recorders import MemoryRecorder

    return MemoryRecorder()


def cli_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TUNELAB_STORAGE", "MLFLOW_TRACKING"))
    }
    env.update({"MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"}, **extra)
    return env


def run_cli(
    args: list[str], cwd: Path, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess:
    """The real `tunelab` console script, as a user runs it."""
    return subprocess.run(
        [str(TUNELAB), *args],
        cwd=cwd,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def cli():
    """Run the real `tunelab` console script: cli(args, cwd, timeout=..., **env)."""
    return run_cli


def shared_data_root() -> Path:
    """The real test data beside the checkout (../shared/data), or $TUNELAB_SHARED_DATA."""
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    return Path(os.environ.get("TUNELAB_SHARED_DATA", default))


@pytest.fixture(scope="session")
def shared_mnist_dir() -> Path:
    """The full MNIST in torchvision's layout (skipped where absent)."""
    root = shared_data_root()
    if not (root / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip(f"full MNIST not found under {root} (set TUNELAB_SHARED_DATA)")
    return root


@pytest.fixture(scope="session")
def inception_weights() -> Path:
    """Converted Inception-v3 FID weights (skipped, with the reason, where absent)."""
    path = shared_data_root() / "inception" / "inception-v3-fid-2015-12-05.pth"
    if not path.is_file():
        pytest.skip(f"Inception weights not found at {path} (set TUNELAB_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """A private cache folder for models trained once per data set (the fd_classifier)."""
    return tmp_path_factory.mktemp("tunelab-cache")


@pytest.fixture
def cli_popen():
    """Start the real `tunelab` in the background: cli_popen(args, cwd, own_group=False,
    **env) -> Popen; with own_group, in a process group of its own, as a terminal starts a
    command (os.killpg then reaches it and its workers, like Ctrl-C)."""

    def start(args: list[str], cwd: Path, own_group: bool = False, **env: str) -> subprocess.Popen:
        return subprocess.Popen(
            [str(TUNELAB), *args],
            cwd=cwd,
            env=cli_env(**env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=own_group,
        )

    return start


class RunningTrials:
    """Polls a study that a background `tunelab` runs until its RUNNING trials are as a test
    needs them. Fails in one line if the process ends first (its trials were too short for
    the poll) or the time runs out (then the process, and its group if it leads one, is
    killed)."""

    def __init__(self, storage: str, study_name: str, process: subprocess.Popen) -> None:
        self.storage, self.study_name, self.process = storage, study_name, process

    def until(self, ready, what: str, timeout: float = 180.0) -> list:
        """The RUNNING trials (oldest first) once `ready(them)` holds; `what` names it."""
        import optuna
        from optuna.trial import TrialState

        # One engine for every poll: load_study(url) per poll made an engine each time, and
        # their connections once filled PostgreSQL's 100 before the garbage collector came.
        storage = optuna.storages.RDBStorage(self.storage)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and self.process.poll() is None:
                time.sleep(0.25)
                try:
                    study = optuna.load_study(study_name=self.study_name, storage=storage)
                    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                except KeyError:  # not created yet
                    continue
                if ready(running):
                    return running
        finally:
            storage.engine.dispose()
        if self.process.poll() is not None:
            pytest.fail(
                f"the study ended (exit {self.process.returncode}) before {what} was seen: "
                "its trials are too short for the poll"
            )
        if os.getpgid(self.process.pid) == self.process.pid:
            os.killpg(self.process.pid, signal.SIGKILL)
        else:
            self.process.kill()
        pytest.fail(f"{what} was not seen within {timeout:g} s")

    def at_rung(self, rung: int, timeout: float = 180.0) -> int:
        """The number of a RUNNING trial that has reported rung `rung` (1 = its first)."""
        (trial, *_) = self.until(
            lambda running: running and len(running[0].intermediate_values) >= rung,
            f"a trial running at rung {rung}",
            timeout,
        )
        return trial.number


@pytest.fixture
def running_trials():
    """running_trials(storage, study_name, process) -> RunningTrials: poll a background
    study (see RunningTrials)."""
    return RunningTrials


SMALL_CNN = "params:\n  base_width: 8\n  fc_width: 32\n  convs_per_block: 1\n"
"""Search-space narrowing that keeps CLI tests fast: a small network, fixed."""


@pytest.fixture
def cnn_args(tmp_path: Path):
    """Arguments of `tunelab run cnn` on digits with a small network, tracked under tmp_path:
    cnn_args(storage, "--n-trials 2 --epochs 3", config=SMALL_CNN, command="run")."""

    def make(storage: str, extra: str = "", config: str = SMALL_CNN, command: str = "run"):
        (tmp_path / "small.yaml").write_text(config)
        tracking = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
        # one worker unless a test asks for more: one process, reproducible trial order
        workers = [] if "--workers" in extra else ["--workers", "1"]
        return [
            *(command, "cnn", "--dataset", "digits", "--config", "small.yaml"),
            *("--storage", storage, "--tracking-uri", tracking, "--quiet", *extra.split()),
            *workers,
        ]

    return make
