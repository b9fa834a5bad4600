"""The two servers: `dashboard` (optuna-dashboard) and `ui` (the MLflow UI).

Both bind 127.0.0.1 unless told otherwise, print their URL and run until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from tunelab.search.cli.common import StorageOpt
from tunelab.search.spec import DEFAULT_TRACKING_URI, TRACKING_ENV, SpecError, storage_url
from tunelab.search.spec import tracking_uri as resolve_tracking_uri

LOCALHOST = "127.0.0.1"
STOP_TIMEOUT_S = 10
"""How long a stopped server may take to exit before it is killed."""
EXPERIMENT_LINKS = 10
"""Studies `tunelab ui` prints a link to."""

HostOpt = Annotated[str, typer.Option("--host", help="Interface to bind (0.0.0.0 = every one).")]
PortOpt = Annotated[int, typer.Option("--port", min=1, max=65535, help="Port.")]


def dashboard(
    storage: StorageOpt = None,
    port: PortOpt = 8080,
    host: HostOpt = LOCALHOST,
) -> None:
    """Serve optuna-dashboard on the study storage until Ctrl-C."""
    import optuna_dashboard

    from tunelab.search.adapters.storage import check_database, open_storage, parse_url, sqlite_path

    url = storage_url(storage)
    path = sqlite_path(parse_url(url))
    if path is not None and not path.is_file():
        raise SpecError(f"no study storage at {path}: pass --storage")
    check_database(url)
    _check_port(host, port)
    _announce("optuna-dashboard", url, f"http://{_browser_host(host)}:{port}/dashboard")
    try:
        optuna_dashboard.run_server(open_storage(url), host=host, port=port)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the normal way to stop a server
        print("stopped", file=sys.stderr)
    except OSError as exc:
        raise SpecError(f"optuna-dashboard on {host}:{port}: {exc.strerror or exc}") from None


def ui(
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            "--tracking-uri",
            help="MLflow tracking URI.",
            show_default=f"${TRACKING_ENV} or {DEFAULT_TRACKING_URI}",
        ),
    ] = None,
    port: PortOpt = 5000,
    host: HostOpt = LOCALHOST,
) -> None:
    """Serve the MLflow UI on the tracking store until Ctrl-C."""
    from tunelab.search.adapters.tracking import (
        is_server,
        local_artifact_root,
        open_tracking,
        telemetry_env,
    )

    uri = resolve_tracking_uri(tracking_uri)
    if is_server(uri):
        print(f"{uri} is an MLflow server already: open it in a browser")
        return
    client = open_tracking(uri)  # one line if the store is missing or unreachable
    _check_port(host, port)
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    root = local_artifact_root(uri)
    if root is not None:
        # Runs logged here keep their own absolute artifact locations; this folder is only
        # for experiments created through the UI, beside the database like ours.
        command += ["--artifacts-destination", root]
    # the store URL (a database password, maybe) in the environment, not in `ps`
    env = {**os.environ, **telemetry_env(), "MLFLOW_BACKEND_STORE_URI": uri}
    # MLflow 3's background job consumers: a pool of processes this local UI does not need.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    _announce("MLflow UI", uri, f"http://{_browser_host(host)}:{port}")
    _experiment_links(client, f"http://{_browser_host(host)}:{port}")
    # Its own process group, so Ctrl-C / SIGTERM here stop the server and its workers with it.
    server = subprocess.Popen(command, env=env, start_new_session=True)
    code = None
    try:
        code = server.wait()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        _stop_group(server)
    if code:
        raise SpecError(f"mlflow server exited with code {code}")


def _announce(what: str, source: str, url: str) -> None:
    from tunelab.search.adapters.storage import shown_url

    # the source may be a database URL with its password: never print it (container logs)
    print(f"{what} for {shown_url(source)}: {url}  (Ctrl-C to stop)", flush=True)


def _experiment_links(client, base: str) -> None:
    """A link per recent study, opening its experiment in MLflow's model-training view."""
    from tunelab.search.adapters.tracking import experiment_url

    recent = client.search_experiments(max_results=EXPERIMENT_LINKS + 1, order_by=["name ASC"])
    studies = [e for e in recent if e.name != "Default"][:EXPERIMENT_LINKS]
    for experiment in studies:
        print(f"  {experiment.name}: {experiment_url(base, experiment.experiment_id)}")


def _browser_host(host: str) -> str:
    return LOCALHOST if host in ("0.0.0.0", "::", "") else host


def _check_port(host: str, port: int) -> None:
    """SpecError unless (host, port) can be bound now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise SpecError(
                    f"port {port} on {host} is in use: pick another with --port"
                ) from None
            raise SpecError(f"cannot bind {host}:{port}: {exc.strerror or exc}") from None


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the process's group; SIGKILL whatever is left after STOP_TIMEOUT_S."""
    group = process.pid  # start_new_session: the leader's pid is the group id
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        process.wait()
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(STOP_TIMEOUT_S)
    while time.monotonic() < deadline and _group_alive(group):  # the workers, too
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)
    process.wait()


def _group_alive(group: int) -> bool:
    """Whether a live (not zombie) process remains in the group."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: zombies count as alive there
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:  # "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after ")"
            state, _, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError):
            continue
        if int(pgrp) == group and state != "Z":
            return True
    return False
