"""The two servers: `dashboard` (optuna-dashboard) and `ui` (the MLflow UI).

Both bind 127.0.0.1 unless told otherwise, print their URL and run until Ctrl-C or SIGTERM.
The MLflow server takes many seconds to start (about 25 s on two loaded cores): `ui` says it
is starting, and says again, with the URL, once the server answers.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from tunelab.search.adapters.signals import STOP_SIGNALS, interrupt_once
from tunelab.search.cli.common import StorageOpt
from tunelab.search.spec import DEFAULT_TRACKING_URI, TRACKING_ENV, SpecError, storage_url
from tunelab.search.spec import tracking_uri as resolve_tracking_uri

LOCALHOST = "127.0.0.1"
STOP_TIMEOUT_S = 10
"""How long a stopped server may take to exit before it is killed."""
EXPERIMENT_LINKS = 10
"""Studies `tunelab ui` prints a link to."""
READY_POLL_S = 0.25
"""How often `ui` asks a starting MLflow server whether it answers."""


def _port(value: int) -> int:
    # checked here, not with typer's min/max: those print "<int range> [1<=x<=65535]" in the
    # type column, which squeezed the help column until defaults were cut off
    if not 1 <= value <= 65535:
        raise typer.BadParameter(f"{value} is not a port (1 to 65535)", param_hint="'--port'")
    return value


HostOpt = Annotated[
    str,
    typer.Option("--host", metavar="HOST", help="Interface to bind (0.0.0.0 = every one)."),
]
PortOpt = Annotated[
    int, typer.Option("--port", metavar="PORT", callback=_port, help="Port (1 to 65535).")
]


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
        with _stopped_at_once():
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
            metavar="URI",
            help="MLflow tracking URI.",
            show_default=f"${TRACKING_ENV} or {DEFAULT_TRACKING_URI}",
        ),
    ] = None,
    port: PortOpt = 5000,
    host: HostOpt = LOCALHOST,
) -> None:
    """Serve the MLflow UI on the tracking store until Ctrl-C."""
    from tunelab.search.adapters.storage import shown_url
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
    base = f"http://{_url_host(_browser_host(host))}:{port}"
    # the URL before it answers would be a dead link for half a minute: say it is starting
    print(f"MLflow UI for {shown_url(uri)}: starting at {base} ...", flush=True)
    _experiment_links(client, base)
    # Its own process group, so Ctrl-C / SIGTERM here stop the server and its workers with it.
    server = subprocess.Popen(
        command, env=env, start_new_session=True, preexec_fn=_ends_with_its_parent
    )
    code = None
    ready = _say_when_ready(f"{base}/health", f"MLflow UI ready: {base}  (Ctrl-C to stop)")
    try:
        with _stopped_at_once():
            code = server.wait()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        ready.set()  # the server ended: nothing more to wait for
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


@contextlib.contextmanager
def _stopped_at_once() -> Iterator[None]:
    """SIGTERM stops a server at once: it has no rung to stop at, and the stop at the next
    rung that `main` sets up for workers would leave it serving for STOP_GRACE_S (a
    container's or a test's stop then ended in SIGKILL, with the MLflow server, in a session
    of its own, left running). The handlers before are put back."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return
    before = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    interrupt_once()
    try:
        yield
    finally:
        for stop, handler in before.items():
            signal.signal(stop, handler)


def _say_when_ready(url: str, line: str) -> threading.Event:
    """Print `line` once `url` answers, from a thread, while this one waits on the server
    (so that Ctrl-C stops it as before); setting the returned event ends the wait."""
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            try:
                with urllib.request.urlopen(url, timeout=2):
                    pass
            except (urllib.error.URLError, OSError):
                done.wait(READY_POLL_S)
                continue
            if not done.is_set():
                print(line, flush=True)
            return

    threading.Thread(target=watch, name="ui-ready", daemon=True).start()
    return done


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host  # an IPv6 address in a URL


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


def _ends_with_its_parent() -> None:
    """In the server's process, before it runs: on Linux, SIGTERM when this process dies,
    however it dies (a SIGKILL leaves it no time to stop the server, which, in a session of
    its own, would go on serving)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


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
