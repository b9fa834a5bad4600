"""Shared fixtures: storages (SQLite and the local PostgreSQL), tiny data, the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault(
    "TUNELAB_CACHE", str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "tunelab")
)

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
    from objectives.data import DataSpec, load_data

    return load_data(DataSpec("digits"))


class RecordingRecorder:
    """A TrialRecorder that keeps everything it is given, for unit tests of the loop."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.history: list[tuple[int | None, dict[str, float]]] = []
        self.artifacts: dict[str, bytes] = {}
        self.tags: dict[str, str] = {}
        self.status: str | None = None
        self.reason: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.history.append((step, dict(metrics)))

    def log_artifacts(self, files: Mapping[str, bytes]) -> None:
        self.artifacts.update(files)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.tags.update(tags)

    def end(self, status: str, reason: str | None = None) -> None:
        self.status, self.reason = status, reason

    def steps(self, name: str) -> dict[int, float]:
        return {step: m[name] for step, m in self.history if step is not None and name in m}


@pytest.fixture
def recorder() -> RecordingRecorder:
    return RecordingRecorder()


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
        [str(TUNELAB), *args], cwd=cwd, env=cli_env(**env), capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


@pytest.fixture
def cli():
    """Run the real `tunelab` console script: cli(args, cwd, timeout=..., **env)."""
    return run_cli


@pytest.fixture(scope="session")
def shared_mnist_dir() -> Path:
    """The full MNIST in torchvision's layout, from ../shared/data (skipped where absent)."""
    root = Path(
        os.environ.get(
            "TUNELAB_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"
        )
    )
    if not (root / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip(f"full MNIST not found under {root} (set TUNELAB_SHARED_DATA)")
    return root


@pytest.fixture
def cli_popen():
    """Start the real `tunelab` in the background: cli_popen(args, cwd, **env) -> Popen."""

    def start(args: list[str], cwd: Path, **env: str) -> subprocess.Popen:
        return subprocess.Popen(
            [str(TUNELAB), *args], cwd=cwd, env=cli_env(**env),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    return start
