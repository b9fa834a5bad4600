"""docker-compose.yml: valid Compose, safe by construction, and every service's own command
working as a local process against the local PostgreSQL (no Docker engine needed).

The commands are taken from the file itself, after Compose's variable interpolation with
values that point at local servers, so what runs here is what the containers run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import optuna
import pytest
import yaml
from mlflow import MlflowClient
from optuna.trial import TrialState

pytestmark = pytest.mark.slow  # docker compose config, scripts and services run as processes

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
SCHEMA_FILE = Path(__file__).with_name("compose-spec.json")
"""A vendored copy of the Compose specification's JSON schema."""
VENV_BIN = Path(sys.executable).parent
PG_ADMIN_URL = os.environ.get("TUNELAB_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
OUR_IMAGE_SERVICES = ("init", "mlflow", "create", "worker", "worker-gpu", "dashboard")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
RUN_STATUS = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED"}


# -- Compose's variable interpolation -------------------------------------------------------

_REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


class InterpolationError(ValueError):
    """A required variable (${NAME:?message} or ${NAME?message}) is missing."""


def interpolate(value: Any, variables: Mapping[str, str]) -> Any:
    """Compose's interpolation on every string of a loaded file: $$, $NAME, ${NAME},
    ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}, ${NAME:+alt}, ${NAME+alt}.
    The forms with a colon treat an empty value as unset."""
    if isinstance(value, dict):
        return {key: interpolate(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, variables) for item in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        name, op, arg = match["braced"] or match["named"], match["op"], match["arg"]
        current = variables.get(name)
        present = bool(current) if op and op.startswith(":") else current is not None
        if op is None:
            return current or ""
        if op.endswith("-"):
            return current if present else arg
        if op.endswith("?"):
            if not present:
                raise InterpolationError(f"{name}: {arg}")
            return current
        return arg if present else ""  # "+"

    return _REFERENCE.sub(replace, value)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file (comments and blank lines skipped)."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def load_compose(variables: Mapping[str, str] | None = None) -> dict:
    """The compose file as loaded (anchors and merge keys resolved), interpolated if asked."""
    model = yaml.safe_load(COMPOSE_FILE.read_text())
    return model if variables is None else interpolate(model, variables)


def service_argv(service: Mapping[str, Any]) -> list[str]:
    parts = []
    for key in ("entrypoint", "command"):
        value = service.get(key) or []
        parts += shlex.split(value) if isinstance(value, str) else [str(v) for v in value]
    return parts


def service_environment(service: Mapping[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.partition("=")[::2] for item in environment)
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def healthcheck_argv(service: Mapping[str, Any]) -> list[str]:
    test = service["healthcheck"]["test"]
    if isinstance(test, str):
        return ["sh", "-c", test]
    if test[0] == "CMD-SHELL":
        return ["sh", "-c", test[1]]
    assert test[0] == "CMD", test
    return list(test[1:])


def test_interpolate_follows_compose_rules():
    env = {"SET": "x", "EMPTY": ""}
    cases = {
        "${SET}": "x",
        "$SET/$$SET": "x/$SET",
        "${UNSET}": "",
        "${UNSET:-d}": "d",
        "${EMPTY:-d}": "d",
        "${EMPTY-d}": "",
        "${SET:+alt}": "alt",
        "${EMPTY:+alt}": "",
        "${EMPTY+alt}": "alt",
        "a${SET:-d}b${UNSET-c}": "axbc",
        "${SET:?msg}": "x",
    }
    assert {text: interpolate(text, env) for text in cases} == cases
    for required in ("${UNSET:?set it}", "${EMPTY:?set it}", "${UNSET?set it}"):
        with pytest.raises(InterpolationError, match="set it"):
            interpolate({"k": [required]}, env)


# -- (a) the file itself -------------------------------------------------------------------


def test_compose_file_is_valid_under_the_compose_specification():
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA_FILE.read_text()))
    example = read_env_file(ENV_EXAMPLE)
    for model in (load_compose(), load_compose(example)):
        errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(model)]
        assert not errors, "\n".join(errors)
    services = load_compose(example)["services"]
    assert set(OUR_IMAGE_SERVICES) | {"postgres"} <= set(services)


def test_every_required_variable_is_in_env_example():
    """Each ${VAR} without a default must be set in .env.example (with no real secret)."""
    text = COMPOSE_FILE.read_text()
    example = read_env_file(ENV_EXAMPLE)
    required = {
        m["braced"] or m["named"]
        for m in _REFERENCE.finditer(text)
        if not m["escaped"] and (m["op"] is None or m["op"].endswith("?"))
    }
    assert required and required <= set(example), required - set(example)
    assert example["POSTGRES_PASSWORD"] == "change-me"
    assert example["MLFLOW_DISABLE_TELEMETRY"] == "true"
    for name in (
        "POSTGRES_USER",
        "TUNELAB_TASK",
        "TUNELAB_DATASET",
        "TUNELAB_STUDY",
        "TUNELAB_TRIALS",
        "TUNELAB_EPOCHS",
    ):
        assert name in example
    with pytest.raises(InterpolationError, match="POSTGRES_PASSWORD"):
        load_compose({})  # no .env: compose refuses instead of using an empty password


def test_ports_bind_loopback_and_no_password_is_written_out():
    model = load_compose(read_env_file(ENV_EXAMPLE))
    published = 0
    for name, service in model["services"].items():
        for port in service.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else port.rsplit(":", 2)[0]
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond this machine"
            published += 1
    assert published >= 2
    raw = load_compose()
    for name, service in raw["services"].items():
        for key, value in service_environment(service).items():
            if re.search("PASSWORD|SECRET|TOKEN", key):
                assert re.fullmatch(r"\$\{\w+(:?[-?][^}]*)?\}", value), (name, key, value)
    # Credentials inside URLs are interpolated, never literal.
    for password in re.findall(r"://[^/\s:@\"]+:([^@\s\"]+)@", COMPOSE_FILE.read_text()):
        assert password.startswith("${") and password.endswith("}"), password


def test_database_urls_reach_processes_through_their_environment():
    """A command line shows in `ps` to every user of the host: a URL holding the password goes
    in the environment only."""
    example = read_env_file(ENV_EXAMPLE)
    for name, service in load_compose(example)["services"].items():
        argv = service_argv(service)
        assert not [arg for arg in argv if example["POSTGRES_PASSWORD"] in arg], name
        assert not [arg for arg in argv if re.search(r"://[^/\s]*@", arg)], name


def test_gpu_worker_volumes_and_telemetry():
    model = load_compose(read_env_file(ENV_EXAMPLE))
    services = model["services"]
    gpu = services["worker-gpu"]
    assert gpu["profiles"] == ["gpu"] and "profiles" not in services["worker"]
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert gpu["build"]["args"]["VARIANT"] == "gpu"
    assert service_argv(gpu) == service_argv(services["worker"])
    assert services["worker"]["restart"] == "on-failure"
    assert services["worker"]["stop_grace_period"]

    named = set(model["volumes"])
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.get("source") if isinstance(volume, dict) else volume.split(":")[0]
            assert source in named, f"{name}: volume {volume} is not a named volume"
    assert services["postgres"]["volumes"] and services["mlflow"]["volumes"]

    for name in OUR_IMAGE_SERVICES:
        assert service_environment(services[name])["MLFLOW_DISABLE_TELEMETRY"] == "true", name
    mlflow = services["mlflow"]
    assert service_environment(mlflow)["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    argv = service_argv(mlflow)
    assert argv[argv.index("--workers") + 1] == "1"
    assert "pg_isready" in healthcheck_argv(services["postgres"])


def test_image_files_keep_secrets_out_and_choose_torch_by_build_argument():
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".env", ".venv", ".git", "mlruns", "studies.db*", "data", "checkpoints"} <= ignored
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "python:3.11-slim" in dockerfile
    assert re.search(r"^ARG TORCH_INDEX_URL=$", dockerfile, re.MULTILINE)
    assert re.search(r"^ARG VARIANT=cpu$", dockerfile, re.MULTILINE)
    assert re.search(r"^USER \w+", dockerfile, re.MULTILINE), "the image runs as root"
    assert re.search(r"useradd --uid 10001\b", dockerfile), "a fixed uid for volume owners"


def test_image_build_fails_on_a_torchvision_that_does_not_match_its_torch():
    # A torchvision built for another torch (or a CUDA one beside a CPU-only torch) imports,
    # then fails at its first operator: `operator torchvision::nms does not exist`. The image
    # build runs one such operator after the install, so a mismatched pair fails the build.
    dockerfile = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    install = next(
        line
        for line in dockerfile.splitlines()
        if line.startswith("RUN pip install") and " . " in line
    )
    check = re.search(r'python -c "([^"]+)"', install)
    assert check and "torchvision.ops.nms" in check.group(1), install
    # The check itself holds on a matched pair (this environment's).
    result = subprocess.run(
        [sys.executable, "-c", check.group(1)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_compose_e2e_removes_its_images_and_their_build_cache(monkeypatch):
    # The real run left 14 GB of build cache behind after removing its images: the torch
    # layers stay in the builder's cache until it is pruned too.
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "compose_e2e", REPO / "scripts" / "compose_e2e.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    calls = []
    monkeypatch.setattr(script, "run", lambda argv, **kwargs: calls.append(argv))
    script.remove_images(["tunelab:latest", "tunelab-base:bookworm"], own_engine=True)
    assert calls[:2] == [
        ["docker", "image", "rm", "tunelab:latest"],
        ["docker", "image", "rm", "tunelab-base:bookworm"],
    ]
    assert ["docker", "builder", "prune", "-f"] in calls
    assert not any("-a" in argv or "--all" in argv for argv in calls), "only what is unused"
    calls.clear()  # a user's own engine keeps its build cache
    script.remove_images(["tunelab:latest"], own_engine=False)
    assert ["docker", "builder", "prune", "-f"] not in calls


def _commented_example(text: str) -> str:
    """The YAML that a config file's comments show after its "# Examples" line, uncommented."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# Examples"))
    return "\n".join(line.removeprefix("#").removeprefix(" ") for line in lines[start + 1 :])


def test_default_study_config_is_a_valid_tunelab_config(tmp_path):
    """docker/study.yaml is the file the create service's --config reads, it builds a valid
    study with that service's other flags, and so do the examples its comments give."""
    from tunelab.objectives.registry import get_task
    from tunelab.search.spec import SpecError, build_spec, load_config_file
    from tunelab.search.study.prepare import study_space

    study_file = REPO / "docker" / "study.yaml"
    model = load_compose(read_env_file(ENV_EXAMPLE))
    create = model["services"]["create"]
    (mounted,) = create["configs"]
    assert (REPO / model["configs"][mounted["source"]]["file"]).resolve() == study_file
    argv = service_argv(create)
    assert argv[:2] == ["tunelab", "create"]

    def flag(name: str) -> str:
        return argv[argv.index(name) + 1]

    assert flag("--config") == mounted["target"]
    task = argv[2]
    flags = {
        "study_name": flag("--study-name"),
        "dataset": flag("--dataset"),
        "n_trials": int(flag("--n-trials")),
        "max_epochs": int(flag("--max-epochs")),
        "checkpoint_dir": flag("--checkpoint-dir"),
        "tracking_uri": flag("--tracking-uri"),
        "quiet": "--quiet" in argv,
    }

    def study(config: Path):
        spec = build_spec(task, str(config), flags)
        return spec, study_space(get_task(spec.task, spec.task_options), {}, spec.params)

    spec, _ = study(study_file)  # as shipped
    assert (spec.task, spec.dataset, spec.n_trials, spec.max_epochs) == ("cnn", "mnist5k", 30, 10)
    assert spec.name == "cnn-mnist5k"

    example = yaml.safe_load(_commented_example(study_file.read_text()))
    assert {"sampler", "pruner", "params"} <= set(example), example
    uncommented = tmp_path / "study.yaml"
    uncommented.write_text(_commented_example(study_file.read_text()))
    assert load_config_file(uncommented) == example
    spec, space = study(uncommented)
    assert (spec.sampler, spec.pruner) == (example["sampler"], example["pruner"])
    assert spec.patience == example["patience"]
    for name, narrowing in example["params"].items():
        if isinstance(narrowing, dict):  # a narrower range
            (param,) = [p for p in space.params if p.name == name]
            assert (param.low, param.high) == (narrowing["low"], narrowing["high"])
        else:  # a fixed value: no longer searched
            assert space.fixed[name] == narrowing
            assert name not in {p.name for p in space.params}

    uncommented.write_text("pruner: hyperbnd\n")  # and a wrong one is refused
    with pytest.raises(SpecError, match="pruner"):
        study(uncommented)


def _create_databases(**env: str) -> subprocess.CompletedProcess:
    """The init service's script as a local process, with only the given URL variables."""
    urls = ("TUNELAB_STORAGE", "MLFLOW_BACKEND_STORE_URI")
    inherited = {k: v for k, v in os.environ.items() if k not in urls}
    script = REPO / "docker" / "create_databases.py"
    return subprocess.run(
        [sys.executable, str(script)],
        env={**inherited, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "env",
    [{}, {"TUNELAB_STORAGE": "sqlite:///studies.db"}, {"MLFLOW_BACKEND_STORE_URI": "not a url"}],
)
def test_init_script_refuses_bad_input_in_one_line(env):
    result = _create_databases(**env)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and "error" in result.stderr


def test_init_script_gives_up_on_an_unreachable_server():
    url = f"postgresql+psycopg://postgres:secret-{uuid.uuid4().hex}@127.0.0.1:{_free_port()}/x"
    result = _create_databases(TUNELAB_STORAGE=url, TUNELAB_DB_WAIT="0")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("create_databases: error: database 'x'")
    assert "secret-" not in result.stdout + result.stderr


# -- (b) every service's command as a local process ---------------------------------------

SMALL_CONFIG = """\
sampler: random
pruner: none
params:
  base_width: 8
  fc_width: 32
  convs_per_block: 1
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str, host: str | None = None, timeout: float = 5) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class LocalServices:
    """Runs compose services' commands as local processes, each in its own process group,
    with its output in <logs>/<name>.log."""

    def __init__(self, model: dict, cwd: Path, logs: Path) -> None:
        self.services = model["services"]
        self.cwd, self.logs = cwd, logs
        self.processes: dict[str, subprocess.Popen] = {}
        logs.mkdir(parents=True, exist_ok=True)

    def env(self, name: str) -> dict[str, str]:
        local = ("TUNELAB_STORAGE", "MLFLOW_TRACKING", "MLFLOW_BACKEND")  # the file's, not ours
        env = {k: v for k, v in os.environ.items() if not k.startswith(local)}
        env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"  # as the image's venv
        env["PYTHONUNBUFFERED"] = "1"
        env.update(service_environment(self.services[name]))
        return env

    def run(self, name: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            service_argv(self.services[name]),
            cwd=self.cwd,
            env=self.env(name),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self, name: str, label: str | None = None) -> subprocess.Popen:
        label = label or name
        with open(self.logs / f"{label}.log", "wb") as log:
            process = subprocess.Popen(
                service_argv(self.services[name]),
                cwd=self.cwd,
                env=self.env(name),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[label] = process
        return process

    def healthy(self, name: str, extra_env: Mapping[str, str] | None = None) -> bool:
        env = {**self.env(name), **(extra_env or {})}
        check = subprocess.run(
            healthcheck_argv(self.services[name]),
            cwd=self.cwd,
            env=env,
            capture_output=True,
            timeout=30,
        )
        return check.returncode == 0

    def wait_healthy(self, name: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy(name):
            assert self.processes[name].poll() is None, f"{name} exited:\n{self.log(name)}"
            assert time.monotonic() < deadline, f"{name} not healthy:\n{self.log(name)}"
            time.sleep(1)

    def log(self, label: str, tail: int | None = 4000) -> str:
        path = self.logs / f"{label}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return text[-tail:] if tail else text

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):  # the group: server workers too
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _local_variables(tmp_path: Path, suffix: str) -> dict[str, str]:
    """Values for the compose file's variables that point every service at this machine."""
    from sqlalchemy.engine import make_url

    admin = make_url(PG_ADMIN_URL)
    config = tmp_path / "small.yaml"
    config.write_text(SMALL_CONFIG)
    return {
        "POSTGRES_USER": admin.username or "postgres",
        "POSTGRES_PASSWORD": admin.password or f"unused-by-trust-auth-{suffix}",
        "POSTGRES_HOST": admin.host or "127.0.0.1",
        "POSTGRES_PORT": str(admin.port or 5432),
        "OPTUNA_DB": f"tunelab_compose_optuna_{suffix}",
        "MLFLOW_DB": f"tunelab_compose_mlflow_{suffix}",
        "MLFLOW_HOST": "127.0.0.1",
        "MLFLOW_SERVICE_HOST": "127.0.0.1",
        "MLFLOW_PORT": str(_free_port()),
        "MLFLOW_ARTIFACTS": str(tmp_path / "mlartifacts"),
        "DASHBOARD_HOST": "127.0.0.1",
        "DASHBOARD_PORT": str(_free_port()),
        "TUNELAB_TASK": "cnn",
        "TUNELAB_DATASET": "digits",
        "TUNELAB_STUDY": "compose-e2e",
        "TUNELAB_TRIALS": "4",
        "TUNELAB_EPOCHS": "2",
        "TUNELAB_CONFIG": str(config),
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }


def _wait_for_dashboard(base: str, study_name: str, services: LocalServices) -> dict:
    deadline = time.monotonic() + 90
    while True:
        assert services.processes["dashboard"].poll() is None, services.log("dashboard")
        try:
            status, body = _get(f"{base}/api/studies")
            if status == 200:
                studies = json.loads(body)["study_summaries"]
                match = [s for s in studies if s["study_name"] == study_name]
                if match:
                    return match[0]
        except (urllib.error.URLError, OSError):
            pass
        assert time.monotonic() < deadline, f"no answer:\n{services.log('dashboard')}"
        time.sleep(1)


def _parent_runs(client, experiment) -> list:
    return client.search_runs(
        [experiment.experiment_id], filter_string="tags.`tunelab.role` = 'study'"
    )


@pytest.mark.e2e
def test_every_service_command_runs_locally_against_postgres(postgres, tmp_path):
    values = _local_variables(tmp_path, uuid.uuid4().hex[:10])
    postgres.created += [values["OPTUNA_DB"], values["MLFLOW_DB"]]  # dropped at session end
    model = load_compose(values)
    study_name = values["TUNELAB_STUDY"]
    tracking_uri = f"http://127.0.0.1:{values['MLFLOW_PORT']}"
    storage = service_environment(model["services"]["init"])["TUNELAB_STORAGE"]  # the file's URL
    app = tmp_path / "app"  # the image's working directory: the project's docker/ folder in it
    app.mkdir()
    (app / "docker").symlink_to(REPO / "docker")
    services = LocalServices(model, app, tmp_path / "logs")
    try:
        assert services.healthy("postgres", {"PGPORT": values["POSTGRES_PORT"]})

        for attempt in ("creates", "finds"):  # init is idempotent
            init = services.run("init", timeout=120)
            assert init.returncode == 0, init.stderr
            assert init.stdout.count("created" if attempt == "creates" else "exists") == 2

        services.start("mlflow")
        services.wait_healthy("mlflow")
        # The workers address the server by its service name; a stranger is still refused.
        port = values["MLFLOW_PORT"]
        search = f"{tracking_uri}/api/2.0/mlflow/experiments/search?max_results=1"
        assert _get(search, host=f"mlflow:{port}")[0] == 200
        assert _get(search, host=f"attacker.example:{port}")[0] == 403

        for _ in range(2):  # create is idempotent
            create = services.run("create", timeout=300)
            assert create.returncode == 0, create.stderr
        study = optuna.load_study(study_name=study_name, storage=storage)
        assert study.user_attrs["tunelab.spec"] and len(study.trials) == 1  # the default trial
        client = MlflowClient(tracking_uri)  # everything read back through the server
        experiment = client.get_experiment_by_name(study_name)
        # create makes the parent run, so workers starting together cannot make one each.
        parents_after_create = 0 if experiment is None else len(_parent_runs(client, experiment))

        started = time.monotonic()
        workers = [services.start("worker", label=f"worker-{i}") for i in range(2)]
        services.start("dashboard")
        services.wait_healthy("dashboard", timeout=90)
        dashboard = f"http://127.0.0.1:{values['DASHBOARD_PORT']}"
        summary = _wait_for_dashboard(dashboard, study_name, services)
        for index, worker in enumerate(workers):
            try:
                code = worker.wait(timeout=400)
            except subprocess.TimeoutExpired:
                pytest.fail(f"worker-{index} still running:\n{services.log(f'worker-{index}')}")
            assert code == 0, services.log(f"worker-{index}")
        print(f"two workers reached the target in {time.monotonic() - started:.1f} s")

        study = optuna.load_study(study_name=study_name, storage=storage)
        trials = study.get_trials()
        finished = [t for t in trials if t.state in FINISHED]
        # the exact target: workers that overshoot waste trials, ones that stop short fail it
        assert len(finished) == int(values["TUNELAB_TRIALS"])
        assert not [t.number for t in trials if t.state == TrialState.RUNNING]

        status, body = _get(f"{dashboard}/api/studies/{summary['study_id']}")
        assert status == 200
        detail = json.loads(body)
        assert detail["name"] == study_name and len(detail["trials"]) == len(trials)

        experiment = client.get_experiment_by_name(study_name)
        runs = client.search_runs([experiment.experiment_id], max_results=1000)
        parents = _parent_runs(client, experiment)
        assert len(parents) == 1, [r.info.run_name for r in parents]
        assert parents[0].info.status == "FINISHED"
        children = {
            r.info.run_id: r
            for r in runs
            if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id
        }
        numbers = [r.data.tags["optuna.trial_number"] for r in children.values()]
        assert len(numbers) == len(set(numbers)) == len(trials)  # one run per attempt
        assert not [r.info.run_name for r in runs if r.info.status == "RUNNING"]
        for trial in finished:
            run = children[trial.user_attrs["tunelab.mlflow_run_id"]]
            assert run.info.status == RUN_STATUS[trial.state]
        complete = next(t for t in finished if t.state == TrialState.COMPLETE)
        artifacts = client.list_artifacts(complete.user_attrs["tunelab.mlflow_run_id"])
        assert artifacts, "no artifact reached the server"
        served = [p for p in (tmp_path / "mlartifacts").rglob("*") if p.is_file()]
        assert served, "the server stored no artifact in its --artifacts-destination"

        assert parents_after_create == 1, "tunelab create made no MLflow parent run"
        password = values["POSTGRES_PASSWORD"]
        outputs = {"init": init.stdout + init.stderr, "create": create.stdout + create.stderr}
        outputs.update({label: services.log(label, tail=None) for label in services.processes})
        leaks = sorted(label for label, text in outputs.items() if password in text)
        assert not leaks, f"the database password is printed by: {', '.join(leaks)}"
    finally:
        services.stop_all()
