"""Throwaway servers for benchmarks: a PostgreSQL cluster and an MLflow tracking server, each
started in a temporary folder on free 127.0.0.1 ports and stopped afterwards (the machine's own
PostgreSQL is never touched). Used by chaos.py and scale.py."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import sqlalchemy

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, wait_s: float = 20) -> None:
    """Signal a process's whole group (its children too), then SIGKILL what outlives wait_s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # children that ignored the leader's end (none expected) go with the group
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


class Postgres:
    """A throwaway cluster in `folder`: trust auth, 127.0.0.1 only, its socket in the folder;
    `settings` are server settings (`-c name=value`), e.g. max_connections."""

    def __init__(self, folder: Path, settings: dict[str, str] | None = None) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb")]
        if not found[-1]:
            raise SystemExit("no initdb found (install PostgreSQL's server binaries)")
        self.bin = Path(found[-1]).parent
        self.folder, self.data, self.port = folder, folder / "data", free_port()
        self.settings = dict(settings or {})
        # initdb refuses root: run the server binaries as the postgres user, owning the folder
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        folder.mkdir()
        if self.as_user:
            shutil.chown(folder, "postgres")
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "--no-sync")
        self.start()

    def _run(self, tool: str, *args) -> None:
        command = [*self.as_user, str(self.bin / tool), *map(str, args)]
        subprocess.run(command, check=True, capture_output=True, cwd=self.folder)

    def _ctl(self, action: str, *args) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        options += "".join(f" -c {name}={value}" for name, value in self.settings.items())
        log = self.folder / "server.log"
        self._run("pg_ctl", action, "-D", self.data, "-l", log, "-w", "-o", options, *args)

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        # fast: every open connection is cut, as a crash or a failover would cut it
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "stop", "-D", self.data, "-m", "immediate", "-w")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        engine = sqlalchemy.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url(name)


class MlflowServer:
    """`mlflow server --serve-artifacts` on a SQLite store in `folder` (or `backend`, e.g. a
    PostgreSQL database), on one fixed port so a restarted server is the same URI to the
    workers; `workers` gunicorn processes; `env`, more of its environment."""

    def __init__(
        self,
        folder: Path,
        backend: str | None = None,
        workers: int = 1,
        env: dict[str, str] | None = None,
    ) -> None:
        self.folder, self.port = folder, free_port()
        self.backend = backend or f"sqlite:///{folder / 'mlflow.db'}"
        self.workers, self.env = workers, dict(env or {})
        folder.mkdir()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.start()
        self.wait_ready()

    def start(self) -> None:
        command = [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            self.backend,
            "--serve-artifacts",
            "--artifacts-destination",
            str(self.folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        with open(self.folder / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                command,
                cwd=self.folder,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={
                    **os.environ,
                    "MLFLOW_DISABLE_TELEMETRY": "true",
                    # its job consumers: a dozen processes and GBs this benchmark does not need
                    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                    **self.env,
                },
            )

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def wait_ready(self, timeout_s: float = 180) -> None:
        end = time.monotonic() + timeout_s
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > end:
                raise SystemExit(f"the MLflow server did not start (see {self.folder})")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, wait_s=10)
