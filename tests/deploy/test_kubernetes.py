"""deploy/kubernetes: valid Kubernetes objects, safe by construction, and every container's own
command working as a local process against the local PostgreSQL (no cluster needed).

The manifests are rendered by `kubectl kustomize` from a temporary copy of the folder, with a
secrets.env made up here, so what is checked and run is what a cluster would receive.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

pytestmark = pytest.mark.slow  # kubectl kustomize and the containers' commands run as processes

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "kubernetes"
TARGETS = ("base", "overlays/gpu", "overlays/external-db")
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
"""The oldest Kubernetes whose schema knows everything used here, and the newest bundled."""
KUBECTL = shutil.which("kubectl")
VENV_BIN = Path(sys.executable).parent
PG_ADMIN_URL = os.environ.get("TUNELAB_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
SECRET_NAME = "tunelab-secrets"
SENSITIVE = re.compile("URL|URI|PASSWORD|SECRET|TOKEN|STORAGE")
"""Names of variables that hold (or may hold) credentials: TUNELAB_STORAGE is a URL too."""
PLACEHOLDERS = ("change-me", "PASSWORD")
"""The only passwords the committed files may show."""
POD_OWNERS = ("Deployment", "StatefulSet", "Job", "DaemonSet", "ReplicaSet", "CronJob", "Pod")

needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")


# -- rendering -----------------------------------------------------------------------------


def example_secrets() -> dict[str, str]:
    """secrets.env.example's KEY=VALUE lines."""
    return read_env_file(DEPLOY / "base" / "secrets.env.example")


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def deploy_copy(
    root: Path,
    secrets: Mapping[str, str] | None,
    study: Mapping[str, str] | None = None,
    study_yaml: str | None = None,
) -> Path:
    """A copy of deploy/kubernetes with the given secrets.env (none: no such file), and the
    study's settings replaced where given. The repository's own copy is never written."""
    tree = root / "kubernetes"
    shutil.copytree(DEPLOY, tree, ignore=shutil.ignore_patterns("secrets.env", "__pycache__"))
    base = tree / "base"
    if secrets is not None:
        (base / "secrets.env").write_text("".join(f"{k}={v}\n" for k, v in secrets.items()))
    if study is not None:
        (base / "study.env").write_text("".join(f"{k}={v}\n" for k, v in study.items()))
    if study_yaml is not None:
        (base / "study.yaml").write_text(study_yaml)
    return tree


def kustomize(tree: Path, target: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [KUBECTL, "kustomize", str(tree / target)], capture_output=True, text=True, timeout=60
    )


def render(tree: Path, target: str) -> list[dict]:
    result = kustomize(tree, target)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def new_password(tag: str = "") -> str:
    return f"pw-{tag}{uuid.uuid4().hex}"


def secrets_with(
    password: str, user: str = "tunelab", optuna_db: str = "optuna", mlflow_db: str = "mlflow"
) -> dict[str, str]:
    """secrets.env's values, for this password, user and databases."""
    url = f"postgresql+psycopg://{user}:{password}@postgres:5432"
    return {
        "POSTGRES_USER": user,
        "POSTGRES_PASSWORD": password,
        "TUNELAB_STORAGE": f"{url}/{optuna_db}",
        "MLFLOW_BACKEND_STORE_URI": f"{url}/{mlflow_db}",
        "MLFLOW_TRACKING_URI": "http://mlflow:5000",
    }


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> dict[str, Any]:
    """Every target rendered once, with a fresh password: {"password", "secrets", target: docs}."""
    password = new_password()
    secrets = secrets_with(password)
    tree = deploy_copy(tmp_path_factory.mktemp("k8s"), secrets)
    return {"password": password, "secrets": secrets} | {t: render(tree, t) for t in TARGETS}


# -- walking the rendered objects ----------------------------------------------------------


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [doc for doc in docs if doc["kind"] == kind]


def image_uid() -> int:
    """The uid the Dockerfile gives the image's user `tunelab` (CPU and GPU variants alike)."""
    match = re.search(r"useradd --uid (\d+)", (REPO / "Dockerfile").read_text())
    assert match, "the Dockerfile creates its user with a fixed uid"
    return int(match.group(1))


def find(docs: list[dict], kind: str, name: str) -> dict:
    (doc,) = [d for d in by_kind(docs, kind) if d["metadata"]["name"] == name]
    return doc


def pod_template(doc: dict) -> dict | None:
    """The pod template of a workload ({metadata, spec}), None for other objects."""
    if doc["kind"] not in POD_OWNERS:
        return None
    if doc["kind"] == "Pod":
        return doc
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]
    return doc["spec"]["template"]


def pods(docs: list[dict]) -> Iterator[tuple[str, dict]]:
    """("Kind/name", pod template) of every workload."""
    for doc in docs:
        template = pod_template(doc)
        if template is not None:
            yield f"{doc['kind']}/{doc['metadata']['name']}", template


def containers(pod_spec: dict) -> list[dict]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def all_containers(docs: list[dict]) -> Iterator[tuple[str, dict]]:
    for owner, template in pods(docs):
        for container in containers(template["spec"]):
            yield f"{owner}/{container['name']}", container


def secret_values(docs: list[dict]) -> dict[str, dict[str, str]]:
    """{Secret name: {key: decoded value}}."""
    found = {}
    for secret in by_kind(docs, "Secret"):
        data = {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
        found[secret["metadata"]["name"]] = data | secret.get("stringData", {})
    return found


def configmap_values(docs: list[dict]) -> dict[str, dict[str, str]]:
    return {cm["metadata"]["name"]: cm.get("data", {}) for cm in by_kind(docs, "ConfigMap")}


def uses_tunelab_image(container: dict) -> bool:
    return container["image"].split(":")[0].rsplit("/", 1)[-1] == "tunelab"


def labels_match(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


# -- (1) the objects are valid ----------------------------------------------------------


@needs_kubectl
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_rendered_object_is_valid_kubernetes(rendered, target, version):
    docs = rendered[target]
    errors = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = "/".join(str(p) for p in error.path)
            errors.append(f"{doc['kind']}/{doc['metadata']['name']} {path}: {error.message}")
    assert not errors, "\n".join(errors)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    expected = {("Deployment", "mlflow"), ("Deployment", "dashboard"), ("Job", "create")}
    expected |= {("Job", "worker"), ("Secret", SECRET_NAME), ("Namespace", "tunelab")}
    expected |= {("NetworkPolicy", "mlflow"), ("NetworkPolicy", "dashboard")}
    with_db = {("StatefulSet", "postgres"), ("Service", "postgres"), ("NetworkPolicy", "postgres")}
    assert expected <= names
    if target == "overlays/external-db":
        assert not with_db & names
    else:
        assert with_db <= names
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {"tunelab"}


@needs_kubectl
def test_nothing_renders_without_a_secrets_file(tmp_path):
    """No secrets.env: kustomize refuses, instead of deploying an empty or default password."""
    tree = deploy_copy(tmp_path, secrets=None)
    result = kustomize(tree, "base")
    assert result.returncode != 0 and "secrets.env" in result.stderr
    assert "secrets.env" in (DEPLOY / ".gitignore").read_text().split()
    assert set(example_secrets()) == set(secrets_with("x"))


# -- (2) nothing is exposed beyond the cluster ----------------------------------------------


@needs_kubectl
@pytest.mark.parametrize("target", TARGETS)
def test_no_exposure_outside_the_cluster(rendered, target):
    docs = rendered[target]
    assert not [d for d in docs if d["kind"] in ("Ingress", "IngressClass", "Gateway")]
    for service in by_kind(docs, "Service"):
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", service["metadata"]
        assert not service["spec"].get("externalIPs"), service["metadata"]
    for owner, template in pods(docs):
        spec = template["spec"]
        for field in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(field), f"{owner}: {field}"
        assert not [v for v in spec.get("volumes", []) if "hostPath" in v], owner
        for container in containers(spec):
            assert not [p for p in container.get("ports", []) if "hostPort" in p], owner


@needs_kubectl
@pytest.mark.parametrize("target", ["base", "overlays/gpu"])
def test_only_tunelab_pods_reach_the_database_on_5432(rendered, target):
    docs = rendered[target]
    spec = find(docs, "NetworkPolicy", "postgres")["spec"]
    database = find(docs, "StatefulSet", "postgres")["spec"]["template"]
    assert labels_match(spec["podSelector"]["matchLabels"], database["metadata"]["labels"])
    assert "Ingress" in spec["policyTypes"]
    assert spec["ingress"], "an empty ingress list would admit nobody: say who"
    for rule in spec["ingress"]:
        assert rule["ports"] == [{"protocol": "TCP", "port": 5432}]
        for peer in rule["from"]:
            # Pods of this namespace only: no namespaceSelector, no IP blocks.
            assert set(peer) == {"podSelector"}, peer
            assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/part-of": "tunelab"}
    # Every other pod of tunelab is admitted; a pod without the label would not be.
    selector = spec["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    for owner, template in pods(docs):
        labels = template["metadata"]["labels"]
        assert labels_match(selector, labels), owner
        assert labels["app.kubernetes.io/name"] and labels["app.kubernetes.io/component"], owner
    assert not labels_match(selector, {"app.kubernetes.io/name": "something-else"})


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a label selector (matchLabels and matchExpressions, as Kubernetes evaluates
    them) selects a pod with `labels`."""
    if not labels_match(selector.get("matchLabels", {}), labels):
        return False
    for rule in selector.get("matchExpressions", []):
        key, operator, values = rule["key"], rule["operator"], rule.get("values", [])
        present = key in labels
        holds = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]
        if not holds:
            return False
    return True


def test_selects_follows_kubernetes_rules():
    rule = {"key": "c", "operator": "In", "values": ["x", "y"]}
    selector = {"matchLabels": {"a": "1"}, "matchExpressions": [rule]}
    assert selects(selector, {"a": "1", "c": "y"})
    assert not selects(selector, {"a": "1", "c": "z"}) and not selects(selector, {"a": "1"})
    assert not selects(selector, {"a": "2", "c": "x"})
    assert selects({}, {"any": "pod"})  # an empty selector selects every pod


def admitted(policy: dict, pod_labels: Mapping[str, str], port: int) -> bool:
    """Whether an ingress policy lets a pod of this namespace with `pod_labels` reach `port`."""
    for rule in policy["spec"].get("ingress") or []:
        ports = [p["port"] for p in rule.get("ports", [])]
        if ports and port not in ports:
            continue
        for peer in rule.get("from", []):
            if set(peer) == {"podSelector"} and selects(peer["podSelector"], pod_labels):
                return True
    return False


def tracking_clients(docs: list[dict]) -> set[str]:
    """The workloads whose containers talk to the MLflow server: they get its URL."""
    found = set()
    for owner, template in pods(docs):
        for container in containers(template["spec"]):
            if any(e["name"] == "MLFLOW_TRACKING_URI" for e in container.get("env", [])):
                found.add(owner)
    return found


@needs_kubectl
@pytest.mark.parametrize("target", TARGETS)
def test_only_the_studys_own_pods_reach_mlflow_and_no_pod_the_dashboard(rendered, target):
    """The MLflow server (it serves checkpoints and takes writes) admits the pods that track
    to it, on 5000, and no other; optuna-dashboard (no login, write endpoints) admits no pod:
    the user comes in through `kubectl port-forward`, which no policy governs."""
    docs = rendered[target]
    servers = {
        "mlflow": (find(docs, "Deployment", "mlflow"), 5000),
        "dashboard": (find(docs, "Deployment", "dashboard"), 8080),
    }
    clients = tracking_clients(docs)
    assert clients == {"Job/create", "Job/worker"}, clients
    for name, (server, port) in servers.items():
        policy = find(docs, "NetworkPolicy", name)
        spec = policy["spec"]
        assert spec["policyTypes"] == ["Ingress"]
        template = server["spec"]["template"]
        assert selects(spec["podSelector"], template["metadata"]["labels"]), name
        (container,) = template["spec"]["containers"]
        assert port in [p["containerPort"] for p in container["ports"]], name
        for rule in spec.get("ingress") or []:
            for peer in rule["from"]:
                # this namespace's pods only: no namespaceSelector, no IP blocks
                assert set(peer) == {"podSelector"}, peer
            assert rule["ports"] == [{"protocol": "TCP", "port": port}], rule
        for owner, pod in pods(docs):
            labels = pod["metadata"]["labels"]
            expected = name == "mlflow" and owner in clients
            assert admitted(policy, labels, port) is expected, f"{name} <- {owner}"
        # a pod from elsewhere, even one that copies the part-of label, is not admitted
        stranger = {"app.kubernetes.io/part-of": "tunelab", "app.kubernetes.io/name": "x"}
        assert not admitted(policy, stranger, port)
    assert find(docs, "NetworkPolicy", "dashboard")["spec"]["ingress"] == []
    # port-forward is the way in: the Services stay ClusterIP, the README says how
    guide = (DEPLOY / "README.md").read_text()
    assert "port-forward svc/mlflow" in guide and "port-forward svc/dashboard" in guide


# -- (3) no secret in the files or in any process's arguments ------------------------------


def test_committed_files_hold_no_password():
    files = [
        p
        for p in DEPLOY.rglob("*")
        if p.is_file() and p.name != "secrets.env" and "__pycache__" not in p.parts
    ]
    assert files
    for path in files:
        text = path.read_text()
        for password in re.findall(r"://[^/\s:@\"']+:([^@\s\"']+)@", text):
            assert password in PLACEHOLDERS, f"{path}: {password}"
        # KEY=VALUE or KEY: VALUE: a placeholder, or a shell substitution in the guide.
        for key, value in re.findall(r"(\w*PASSWORD)\s*[=:][ \t]*([^\s\"']+)", text):
            assert value in PLACEHOLDERS or value.startswith("$"), f"{path}: {key}={value}"
    example = example_secrets()
    assert example["POSTGRES_PASSWORD"] == "change-me"
    for key in ("TUNELAB_STORAGE", "MLFLOW_BACKEND_STORE_URI"):
        assert ":change-me@postgres:5432/" in example[key]


@needs_kubectl
@pytest.mark.parametrize("target", TARGETS)
def test_secrets_reach_processes_only_through_the_secret(rendered, target):
    docs, password = rendered[target], rendered["password"]
    secrets = secret_values(docs)
    assert secrets[SECRET_NAME] == rendered["secrets"]
    for doc in docs:  # Secret data is base64: the password is nowhere in plain text
        assert password not in json.dumps(doc), f"{doc['kind']}/{doc['metadata']['name']}"
    configmaps = configmap_values(docs)
    hidden = [v for k, v in secrets[SECRET_NAME].items() if SENSITIVE.search(k)]
    for where, container in all_containers(docs):
        from_secret = set()
        for source in container.get("envFrom", []):
            assert "secretRef" not in source, f"{where}: all keys of a Secret, give each"
            keys = configmaps[source["configMapRef"]["name"]]
            assert not [k for k in keys if SENSITIVE.search(k)], f"{where}: secrets in a ConfigMap"
        for item in container.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if SENSITIVE.search(item["name"]):
                assert ref and "value" not in item, f"{where}: {item['name']} not from a Secret"
            if ref:
                assert ref["key"] in secrets[ref["name"]], f"{where}: {ref}"
                from_secret.add(item["name"])
        argv = [*container.get("command", []), *container.get("args", [])]
        for arg in argv:
            assert not re.search(r"postgres(ql)?(\+\w+)?://", arg), f"{where}: {arg}"
            assert not any(value in arg for value in hidden), where
            # $(NAME) in arguments is filled in by Kubernetes: never with a secret.
            referenced = set(re.findall(r"(?<!\$)\$\((\w+)\)", arg))
            assert not referenced & from_secret, f"{where}: {arg}"


# -- (4) workers, resources, images, security ----------------------------------------------


def failure_rules(job: dict) -> list[dict]:
    return job["spec"]["podFailurePolicy"]["rules"]


def action_for_exit_code(job: dict, code: int) -> str | None:
    """The action of the first rule that matches a container exit code (as the Job
    controller evaluates them: in order, first match wins)."""
    for rule in failure_rules(job):
        codes = rule.get("onExitCodes")
        if codes and (code in codes["values"]) == (codes["operator"] == "In"):
            return rule["action"]
    return None


@needs_kubectl
@pytest.mark.parametrize("target", TARGETS)
def test_workers_are_an_indexed_job_that_fails_fast_on_bad_input(rendered, target):
    docs = rendered[target]
    worker = find(docs, "Job", "worker")
    spec = worker["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["parallelism"] == spec["completions"] >= 1
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # podFailurePolicy requires it
    assert pod["terminationGracePeriodSeconds"] >= 90  # the SIGTERM path has time to finish
    for job in (worker, find(docs, "Job", "create")):
        assert action_for_exit_code(job, 2) == "FailJob", job["metadata"]["name"]
        assert action_for_exit_code(job, 1) is None  # a crash counts against the backoff
        disruption = [r for r in failure_rules(job) if r.get("onPodConditions")]
        assert [r["action"] for r in disruption] == ["Ignore"]
        assert disruption[0]["onPodConditions"][0]["type"] == "DisruptionTarget"
        assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert action_for_exit_code(worker, 143) == "Ignore"  # SIGTERM: trial recorded, resumed
    (main,) = pod["containers"]
    assert main["command"] + main["args"][:2] == ["tunelab", "worker", "$(TUNELAB_STUDY)"]
    create = find(docs, "Job", "create")["spec"]["template"]["spec"]["containers"][0]
    argv = create["args"]
    assert argv[argv.index("--checkpoint-dir") + 1] == "mlflow-artifacts:/tunelab-checkpoints"


@needs_kubectl
@pytest.mark.parametrize("target", TARGETS)
def test_every_container_has_requests_limits_and_no_privilege(rendered, target):
    """Non-root, unprivileged, bounded; tunelab's pods run as the image's own user."""
    docs = rendered[target]
    for owner, template in pods(docs):
        security = template["spec"]["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] > 0, owner
        assert template["spec"]["automountServiceAccountToken"] is False, owner
        assert template["spec"]["enableServiceLinks"] is False, owner
    for where, container in all_containers(docs):
        resources = container["resources"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(kind, {})), f"{where}: {kind}"
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False, where
        assert context["capabilities"]["drop"] == ["ALL"], where
        if uses_tunelab_image(container):
            pod = pod_template(find(docs, *where.split("/")[:2]))["spec"]
            assert pod["securityContext"]["runAsUser"] == image_uid(), f"{where}: the image's user"
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            assert env.get("MLFLOW_DISABLE_TELEMETRY") == "true", where
            assert container["imagePullPolicy"] == "IfNotPresent", where
            # Checked by the local run: tunelab writes only to its mounted folders.
            assert context["readOnlyRootFilesystem"] is True, where


@needs_kubectl
def test_gpu_overlay_gives_each_worker_one_gpu_and_the_gpu_image(rendered):
    base, gpu = rendered["base"], rendered["overlays/gpu"]
    worker = find(gpu, "Job", "worker")["spec"]["template"]["spec"]
    (main,) = worker["containers"]
    assert main["image"] == "tunelab:gpu"
    assert str(main["resources"]["limits"]["nvidia.com/gpu"]) == "1"
    assert main["args"][-2:] == ["--device", "cuda"]
    assert worker["securityContext"]["runAsUser"] == image_uid()  # both variants' `tunelab`
    for where, container in all_containers(gpu):
        if not where.startswith("Job/worker/"):
            assert container["image"] != "tunelab:gpu", where
            assert "nvidia.com/gpu" not in container["resources"]["limits"], where
    assert "nvidia.com/gpu" not in json.dumps(base)
    images = {c["image"] for _, c in all_containers(base)}
    assert images == {"tunelab:latest", "postgres:17"}


@needs_kubectl
def test_servers_database_and_telemetry_settings(rendered):
    docs = rendered["base"]
    mlflow = find(docs, "Deployment", "mlflow")["spec"]["template"]["spec"]
    (server,) = mlflow["containers"]
    argv = server["command"] + server["args"]
    assert argv[:2] == ["mlflow", "server"] and "--serve-artifacts" in argv
    assert "--backend-store-uri" not in argv  # read from MLFLOW_BACKEND_STORE_URI instead
    assert argv[argv.index("--workers") + 1] == "1"
    assert "mlflow:*" in argv[argv.index("--allowed-hosts") + 1].split(",")
    env = {e["name"]: e for e in server["env"]}
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"]["value"] == "false"
    assert "secretKeyRef" in env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]
    artifacts = argv[argv.index("--artifacts-destination") + 1]
    mounts = {m["mountPath"]: m["name"] for m in server["volumeMounts"]}
    volumes = {v["name"]: v for v in mlflow["volumes"]}
    assert "persistentVolumeClaim" in volumes[mounts[artifacts]]

    postgres = find(docs, "StatefulSet", "postgres")["spec"]
    assert postgres["template"]["spec"]["containers"][0]["image"] == "postgres:17"
    assert postgres["volumeClaimTemplates"][0]["metadata"]["name"] == "data"

    dashboard = find(docs, "Deployment", "dashboard")["spec"]["template"]["spec"]
    (main,) = dashboard["containers"]
    assert main["command"] + main["args"][:1] == ["tunelab", "dashboard"]


@needs_kubectl
def test_study_settings_are_defined_and_valid(rendered):
    """Every $(NAME) in a command is defined for its container (Kubernetes would pass an
    undefined one on literally), and study.yaml is a config file tunelab accepts."""
    from tunelab.search.spec import load_config_file

    docs = rendered["base"]
    configmaps = configmap_values(docs)
    for where, container in all_containers(docs):
        defined = {item["name"] for item in container.get("env", [])}
        for source in container.get("envFrom", []):
            defined |= set(configmaps[source["configMapRef"]["name"]])
        for arg in [*container.get("command", []), *container.get("args", [])]:
            used = set(re.findall(r"(?<!\$)\$\((\w+)\)", arg))
            assert used <= defined, f"{where}: {arg}"
    assert set(read_env_file(DEPLOY / "base" / "study.env")) == {
        "TUNELAB_TASK",
        "TUNELAB_DATASET",
        "TUNELAB_STUDY",
        "TUNELAB_TRIALS",
        "TUNELAB_EPOCHS",
    }
    assert isinstance(load_config_file(DEPLOY / "base" / "study.yaml"), dict)


# -- (5) every container's command as a local process ---------------------------------------

SMALL_STUDY = """\
sampler: random
pruner: none
params:
  base_width: 8
  fc_width: 32
  convs_per_block: 1
"""
_VARIABLE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(NAME) expansion in command, args and env values: $$ is a literal $,
    an undefined $(NAME) stays as it is."""

    def replace(match: re.Match) -> str:
        if match[0] == "$$":
            return "$"
        return env.get(match[1], match[0])

    return _VARIABLE.sub(replace, text)


def test_expand_follows_kubernetes_rules():
    env = {"A": "x", "B": "y"}
    assert expand("$(A)-$(B)/$(C)", env) == "x-y/$(C)"
    assert expand("$$(A) $$ $(A)$(A)", env) == "$(A) $ xx"


def cpu_cores(quantity: str) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


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


class LocalPods:
    """The rendered containers as local processes: env resolved from the rendered Secret and
    ConfigMaps, in-cluster host:port pairs mapped to local ones, listening ports and mount
    paths mapped to free ports and folders under `root`, the image's /app to `root/app`.
    Each process runs in its own process group, its output in root/logs/<label>.log."""

    def __init__(self, docs: list[dict], root: Path, addresses: Mapping[str, str]) -> None:
        self.docs, self.root, self.addresses = docs, root, dict(addresses)
        self.secrets, self.configmaps = secret_values(docs), configmap_values(docs)
        self.ports: dict[int, int] = {}  # containerPort -> local port
        self.app = root / "app"  # the image's working directory, with the project's docker/
        self.app.mkdir(parents=True)
        (self.app / "docker").symlink_to(REPO / "docker")
        (root / "logs").mkdir()
        self.processes: dict[str, subprocess.Popen] = {}
        self.outputs: dict[str, str] = {}

    def container(self, owner: str, name: str) -> tuple[dict, dict]:
        kind, _, workload = owner.partition("/")
        template = pod_template(find(self.docs, kind, workload))
        (container,) = [c for c in containers(template["spec"]) if c["name"] == name]
        return template["spec"], container

    def mounts(self, owner: str, pod: dict, container: dict) -> dict[str, str]:
        """mountPath -> local folder; a ConfigMap volume's files are written there."""
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        mapped = {}
        for mount in container.get("volumeMounts", []):
            local = self.root / "volumes" / owner.replace("/", "-") / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            source = volumes.get(mount["name"], {})
            if "configMap" in source:
                for key, text in self.configmaps[source["configMap"]["name"]].items():
                    (local / key).write_text(text)
            mapped[mount["mountPath"]] = str(local)
        return mapped

    def local(self, text: str, mounts: Mapping[str, str]) -> str:
        for address, local in self.addresses.items():
            text = text.replace(address, local)
        for path, local in mounts.items():
            if text == path or text.startswith(path + "/"):
                return local + text[len(path) :]
        return text

    def resolve_env(self, container: dict, mounts: Mapping[str, str]) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            env.update(self.configmaps[source["configMapRef"]["name"]])
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = expand(item["value"], env)
                continue
            ref = item["valueFrom"]
            if "secretKeyRef" in ref or "configMapKeyRef" in ref:
                key = ref.get("secretKeyRef") or ref["configMapKeyRef"]
                source = self.secrets if "secretKeyRef" in ref else self.configmaps
                value = source[key["name"]][key["key"]]
            else:  # resourceFieldRef: limits.cpu in whole cores, rounded up, as Kubernetes does
                field = ref["resourceFieldRef"]["resource"]
                assert field == "limits.cpu", field
                value = str(math.ceil(cpu_cores(container["resources"]["limits"]["cpu"])))
            env[item["name"]] = value
        return {key: self.local(value, mounts) for key, value in env.items()}

    def prepare(
        self, owner: str, name: str, replace: Mapping[str, str] | None = None, **extra: str
    ) -> tuple[list[str], dict[str, str]]:
        """(argv, env) of a container as a local process; `replace` swaps the value after an
        option (e.g. {"--host": "127.0.0.1"})."""
        pod, container = self.container(owner, name)
        mounts = self.mounts(owner, pod, container)
        own = self.resolve_env(container, mounts) | extra
        argv = [expand(a, own) for a in [*container.get("command", []), *container.get("args", [])]]
        argv = [self.local(a, mounts) for a in argv]
        for port in container.get("ports", []):
            self.ports.setdefault(port["containerPort"], _free_port())
        replace = {"--host": "127.0.0.1", **(replace or {})}  # never listen beyond this machine
        for index, arg in enumerate(argv[:-1]):
            if arg == "--port":
                argv[index + 1] = str(self.ports[int(argv[index + 1])])
            elif arg in replace:
                argv[index + 1] = replace[arg]
        # The image's environment: its venv first on PATH; nothing of this machine's own
        # storage or tracking settings.
        inherited = {
            k: v for k, v in os.environ.items() if not k.startswith(("TUNELAB_", "MLFLOW_", "OMP_"))
        }
        env = inherited | {"PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        return argv, env | {"PYTHONUNBUFFERED": "1"} | own

    def run(self, owner: str, name: str, timeout: float = 300, **extra: str):
        argv, env = self.prepare(owner, name, **extra)
        result = subprocess.run(
            argv, cwd=self.app, env=env, capture_output=True, text=True, timeout=timeout
        )
        self.outputs[f"{owner}/{name}#{len(self.outputs)}"] = result.stdout + result.stderr
        return result

    def start(self, owner: str, name: str, **options: Any) -> subprocess.Popen:
        argv, env = self.prepare(owner, name, **options)
        with open(self.root / "logs" / f"{name}.log", "wb") as log:
            process = subprocess.Popen(
                argv,
                cwd=self.app,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes[name] = process
        return process

    def log(self, name: str, tail: int | None = 4000) -> str:
        text = (self.root / "logs" / f"{name}.log").read_text(errors="replace")
        return text if tail is None else text[-tail:]

    def wait_for(self, name: str, url: str, timeout: float = 120) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            assert self.processes[name].poll() is None, f"{name} exited:\n{self.log(name)}"
            with contextlib.suppress(urllib.error.URLError, OSError):
                status, body = _get(url)
                if status == 200:
                    return body
            assert time.monotonic() < deadline, f"{name} does not answer:\n{self.log(name)}"
            time.sleep(1)

    def stop_all(self) -> None:
        """SIGTERM every process group, then SIGKILL what is left after 10 s."""
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def load_wait_script():
    path = DEPLOY / "base" / "wait_for.py"
    spec = importlib.util.spec_from_file_location("wait_for", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_wait_script_names_tunelabs_attribute_and_refuses_bad_input(capsys):
    from tunelab.objectives import keys

    wait_for = load_wait_script()
    assert wait_for.PARENT_RUN_ID == keys.PARENT_RUN_ID  # copied to keep torch out of it
    assert wait_for.main([], {}) == 2
    assert wait_for.main(["study"], {"TUNELAB_STUDY": "s"}) == 2
    assert "TUNELAB_STORAGE" in capsys.readouterr().err
    unreachable = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{_free_port()}", "TUNELAB_WAIT": "0"}
    assert wait_for.main(["tracking"], unreachable) == 1


@needs_kubectl
@pytest.mark.e2e
def test_every_container_command_runs_locally_against_postgres(postgres, tmp_path):
    from sqlalchemy.engine import make_url

    suffix = uuid.uuid4().hex[:10]
    admin = make_url(PG_ADMIN_URL)
    password = new_password("e2e-")  # trust authentication: sent, never checked
    dbs = {"optuna_db": f"tunelab_k8s_optuna_{suffix}", "mlflow_db": f"tunelab_k8s_mlflow_{suffix}"}
    postgres.created += list(dbs.values())  # dropped at the end of the session, even on failure
    secrets = secrets_with(password, user=admin.username or "postgres", **dbs)
    study_name = f"k8s-e2e-{suffix}"
    study = {
        "TUNELAB_TASK": "cnn",
        "TUNELAB_DATASET": "digits",
        "TUNELAB_STUDY": study_name,
        "TUNELAB_TRIALS": "2",
        "TUNELAB_EPOCHS": "1",
    }
    tree = deploy_copy(tmp_path, secrets, study=study, study_yaml=SMALL_STUDY)
    docs = render(tree, "base")
    mlflow_port = _free_port()
    addresses = {
        "@postgres:5432/": f"@{admin.host or '127.0.0.1'}:{admin.port or 5432}/",
        "//mlflow:5000": f"//127.0.0.1:{mlflow_port}",
    }
    cluster = LocalPods(docs, tmp_path / "local", addresses)
    cluster.ports[5000] = mlflow_port
    tracking = f"http://127.0.0.1:{mlflow_port}"
    try:
        # The `postgres` StatefulSet: the local server stands in for it (the fixture's).
        # mlflow pod: its database first (idempotent), then the server.
        for expected in ("created", "exists"):
            init = cluster.run("Deployment/mlflow", "create-database", timeout=120)
            assert init.returncode == 0 and expected in init.stdout, init.stderr
        cluster.start("Deployment/mlflow", "mlflow")
        cluster.wait_for("mlflow", f"{tracking}/health")
        # The workers call it "mlflow"; a stranger's Host header is still refused.
        search = f"{tracking}/api/2.0/mlflow/experiments/search?max_results=1"
        assert _get(search, host=f"mlflow:{mlflow_port}")[0] == 200
        assert _get(search, host=f"attacker.example:{mlflow_port}")[0] == 403

        # Before the study exists, a worker's init container waits (here: gives up at once).
        early = cluster.run("Job/worker", "wait-for-study", timeout=120, TUNELAB_WAIT="0")
        assert early.returncode == 1, early.stderr

        # create Job: its database, the tracking server, then the study, twice (idempotent).
        for name in ("create-database", "wait-for-tracking"):
            init = cluster.run("Job/create", name, timeout=120)
            assert init.returncode == 0, f"{name}: {init.stderr}"
        for _ in range(2):
            create = cluster.run("Job/create", "create")
            assert create.returncode == 0, create.stderr

        # worker Job, index 0: waits for the study (ready now), runs it to its target.
        ready = cluster.run("Job/worker", "wait-for-study", timeout=120)
        assert ready.returncode == 0, ready.stderr
        worker = cluster.start("Job/worker", "worker", JOB_COMPLETION_INDEX="0")

        # The dashboard, beside the worker, as in the cluster.
        ready = cluster.run("Deployment/dashboard", "wait-for-study", timeout=120)
        assert ready.returncode == 0, ready.stderr
        cluster.start("Deployment/dashboard", "dashboard")
        dashboard = f"http://127.0.0.1:{cluster.ports[8080]}"
        meta = json.loads(cluster.wait_for("dashboard", f"{dashboard}/api/meta", timeout=90))
        assert isinstance(meta, dict)
        studies = json.loads(_get(f"{dashboard}/api/studies")[1])["study_summaries"]
        assert study_name in [s["study_name"] for s in studies]

        try:
            code = worker.wait(timeout=300)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker is still running:\n{cluster.log('worker')}")
        assert code == 0, cluster.log("worker")

        import optuna
        from mlflow import MlflowClient
        from optuna.trial import TrialState

        storage = cluster.resolve_env(cluster.container("Job/worker", "worker")[1], {})
        study_now = optuna.load_study(study_name=study_name, storage=storage["TUNELAB_STORAGE"])
        finished = [
            t for t in study_now.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        ]
        assert len(finished) >= 2
        experiment = MlflowClient(tracking).get_experiment_by_name(study_name)
        runs = MlflowClient(tracking).search_runs([experiment.experiment_id])
        assert len(runs) >= 3  # the study's parent run and a run per trial
        # The checkpoints went to MLflow's artifact store (the Job's --checkpoint-dir, stored
        # on the study), not to a folder of the pod; the study done, they are cleaned up.
        assert study_now.user_attrs["tunelab.spec"].count("mlflow-artifacts:/tunelab-checkpoints")
        leftover = [
            p
            for p in cluster.root.rglob("*.pt")
            if "tunelab-checkpoints" in p.parts or p.name.startswith("trial-")
        ]
        assert not leftover, "checkpoints left behind or went local"

        # The image's /app is read-only in the cluster (readOnlyRootFilesystem): nothing may
        # be written into the working directory but its mounted data folder.
        written = {p.name for p in cluster.app.iterdir()} - {"docker", "data"}
        assert not written, f"written outside the mounted folders: {sorted(written)}"

        outputs = dict(cluster.outputs)
        outputs |= {name: cluster.log(name, tail=None) for name in cluster.processes}
        leaks = sorted(label for label, text in outputs.items() if password in text)
        assert not leaks, f"the database password is printed by: {', '.join(leaks)}"
    finally:
        cluster.stop_all()
