"""Real-browser checks: `tunelab dashboard` and `tunelab ui` served as subprocesses and opened
in headless Chromium, which renders the single-page apps; assertions are on the rendered DOM,
and a screenshot of each page is kept (pytest's tmp dir and .pytest_cache/screenshots/)."""

from __future__ import annotations

import contextlib
import html
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
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from tunelab.search.spec import StudySpec
from tunelab.search.study.prepare import prepare
from tunelab.search.study.run import run_study

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (see .ci/run)"),
]

REPO = Path(__file__).resolve().parents[2]
TUNELAB = Path(sys.executable).with_name("tunelab")
SCREENSHOTS = REPO / ".pytest_cache" / "screenshots"
SMALL = {"base_width": 8, "fc_width": 32, "convs_per_block": 1}
N_TRIALS = 4
START_TIMEOUT_S = 120
"""A server's start-up on two loaded cores (the MLflow server imports a lot)."""
BROWSER_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> dict:
    """A small finished study, tracked in MLflow."""
    root = tmp_path_factory.mktemp("browser-study")
    spec = StudySpec(
        task="cnn",
        dataset="digits",
        study_name="browser-study",
        n_trials=N_TRIALS,
        max_epochs=1,
        storage=f"sqlite:///{root / 'studies.db'}",
        tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
        params=SMALL,
        seed=3,
        pruner="none",
        sampler="random",
        device="cpu",
        checkpoint_dir=str(root / "ck"),
        quiet=True,
    )
    run_study(prepare(spec))
    study = optuna.load_study(study_name=spec.name, storage=spec.storage)
    return {"spec": spec, "root": root, "study": study}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TUNELAB_STORAGE", "MLFLOW_TRACKING"))
    }
    env.update(
        MLFLOW_DISABLE_TELEMETRY="true",
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        PYTHONUNBUFFERED="1",
    )
    return env


@contextlib.contextmanager
def serve(args: list[str], ready_url: str, log: Path) -> Iterator[subprocess.Popen]:
    """`tunelab ARGS` in its own process group until `ready_url` answers; stopped afterwards."""
    with log.open("w") as out:
        server = subprocess.Popen(
            [str(TUNELAB), *args],
            env=_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert server.poll() is None, f"server exited: {log.read_text()[-2000:]}"
            if _answers(ready_url):
                break
            assert time.monotonic() < deadline, f"no answer at {ready_url}: {log.read_text()}"
            time.sleep(0.5)
        yield server
    finally:
        # SIGTERM as a user's Ctrl-C would: tunelab stops the server it started, then exits
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except (urllib.error.URLError, OSError):
        return False


def _port_closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def browse(url: str, screenshot: Path, expected: list[str], budget_ms: int = 15000) -> str:
    """The page's rendered text once every `expected` string shows (up to three loads)."""
    text = ""
    for attempt in range(3):
        profile = screenshot.parent / f"chromium-profile-{screenshot.stem}-{attempt}"
        command = [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms * (attempt + 1)}",
            "--window-size=1400,1000",
            f"--screenshot={screenshot}",
            "--dump-dom",
            url,
        ]
        result = subprocess.run(command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S)
        text = _text(result.stdout)
        if all(e in text for e in expected):
            break
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(screenshot, SCREENSHOTS / screenshot.name)
    missing = [e for e in expected if e not in text]
    assert not missing, f"{missing} not rendered at {url}; page text: {text[:3000]}"
    return text


def _text(dom: str) -> str:
    """Visible text of a DOM dump, whitespace collapsed."""
    dom = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", dom)).split())


def test_optuna_dashboard_renders_the_study(finished, tmp_path):
    spec, study = finished["spec"], finished["study"]
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    args = ["dashboard", "--storage", spec.storage, "--port", str(port)]
    with serve(args, f"{base}/api/studies", tmp_path / "dashboard.log"):
        study_id = optuna.storages.get_storage(spec.storage).get_study_id_from_name(spec.name)
        page = browse(
            f"{base}/dashboard/studies/{study_id}",
            tmp_path / "dashboard-study.png",
            [
                f"{spec.name} (id={study_id})",
                "Hyperparameter Importance",
                "History",
                f"Best Trial (number={study.best_trial.number})",
            ],
        )
        # the importance chart names the searched parameters (plotly renders them as text)
        assert sum(name in page for name in study.best_params) >= 3
        trials = browse(
            f"{base}/dashboard/studies/{study_id}/trials",
            tmp_path / "dashboard-trials.png",
            [f"{N_TRIALS} Trials", "Trial 0", f"Trial {N_TRIALS - 1}"],
        )
        assert "Complete" in trials
    assert _port_closed(port)


def test_mlflow_ui_renders_the_experiment_runs(finished, tmp_path):
    spec, study = finished["spec"], finished["study"]
    client = MlflowClient(spec.tracking_uri)
    experiment = client.get_experiment_by_name(spec.name)
    best_run = client.get_run(study.best_trial.user_attrs["tunelab.mlflow_run_id"])
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    args = ["ui", "--tracking-uri", spec.tracking_uri, "--port", str(port)]
    with serve(args, f"{base}/health", tmp_path / "ui.log"):
        # the parent run of the study, with its N_TRIALS nested trial runs
        browse(
            f"{base}/#/experiments/{experiment.experiment_id}/runs",
            tmp_path / "mlflow-runs.png",
            [spec.name, "Training runs", f"{N_TRIALS + 1} matching runs"],
        )
        # one trial's run page: its name, parameters and metrics, read from the store
        browse(
            f"{base}/#/experiments/{experiment.experiment_id}/runs/{best_run.info.run_id}",
            tmp_path / "mlflow-best-trial.png",
            [best_run.info.run_name, "val_accuracy", "weight_decay", spec.name],
        )
    assert _port_closed(port)


def test_report_renders_offline_in_the_browser(finished, tmp_path):
    from tunelab.search.analysis.report import FIGURE_TITLES, write_report

    name = finished["spec"].name
    files = write_report(finished["study"], tmp_path / "report")
    # plotly.js draws each title as SVG text: seen in the DOM only if the inlined script ran
    titles = [f"{title}: {name}" for title in FIGURE_TITLES.values()]
    browse(
        files.html.as_uri(),
        tmp_path / "report.png",
        [f"tunelab report: {name}", "Best val_accuracy", "fANOVA", *titles],
    )


def test_optuna_dashboard_shows_the_front_of_a_multi_objective_study(tmp_path):
    root = tmp_path / "mo"
    spec = StudySpec(
        task="cnn",
        dataset="digits",
        study_name="front-study",
        n_trials=3,
        max_epochs=1,
        storage=f"sqlite:///{root / 'studies.db'}",
        tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
        params={"fc_width": 32, "convs_per_block": 1},
        objectives=("val_accuracy", "params"),
        seed=3,
        pruner="none",
        sampler="random",
        device="cpu",
        checkpoint_dir=str(root / "ck"),
        quiet=True,
    )
    root.mkdir()
    run_study(prepare(spec))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    args = ["dashboard", "--storage", spec.storage, "--port", str(port)]
    with serve(args, f"{base}/api/studies", tmp_path / "dashboard.log"):
        study_id = optuna.storages.get_storage(spec.storage).get_study_id_from_name(spec.name)
        browse(
            f"{base}/dashboard/studies/{study_id}",
            tmp_path / "dashboard-front.png",
            [f"{spec.name} (id={study_id})", "Pareto Front", "val_accuracy", "params"],
        )
    assert _port_closed(port)


@pytest.fixture(scope="module")
def linked(tmp_path_factory) -> dict:
    """A small study whose runs and trials link the MLflow UI and optuna-dashboard, on the
    ports the tests below serve them on."""
    root = tmp_path_factory.mktemp("linked-study")
    ports = {"ui": _free_port(), "dashboard": _free_port()}
    spec = StudySpec(
        task="cnn",
        dataset="digits",
        study_name="linked-study",
        n_trials=2,
        max_epochs=1,
        storage=f"sqlite:///{root / 'studies.db'}",
        tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
        mlflow_ui_url=f"http://127.0.0.1:{ports['ui']}",
        dashboard_url=f"http://127.0.0.1:{ports['dashboard']}",
        params=SMALL,
        pruner="none",
        sampler="random",
        device="cpu",
        checkpoint_dir=str(root / "ck"),
        quiet=True,
    )
    run_study(prepare(spec))
    study = optuna.load_study(study_name=spec.name, storage=spec.storage)
    return {"spec": spec, "study": study, "ports": ports}


def test_links_open_the_mlflow_experiment_and_both_uis_point_at_each_other(linked, tmp_path):
    spec, study, ports = linked["spec"], linked["study"], linked["ports"]
    ui, dash = (f"http://127.0.0.1:{ports[k]}" for k in ("ui", "dashboard"))
    ui_args = ["ui", "--tracking-uri", spec.tracking_uri, "--port", str(ports["ui"])]
    dash_args = ["dashboard", "--storage", spec.storage, "--port", str(ports["dashboard"])]
    with (
        serve(ui_args, f"{ui}/health", tmp_path / "ui.log"),
        serve(dash_args, f"{dash}/api/studies", tmp_path / "dashboard.log"),
    ):
        # `tunelab ui` prints the study's link: the model-training view, the trials listed
        printed = re.search(rf"{spec.name}: (\S+)", (tmp_path / "ui.log").read_text())
        assert printed and "workflowType=machine_learning" in printed.group(1)
        browse(
            printed.group(1),
            tmp_path / "mlflow-experiment-link.png",
            [spec.name, "trial-0", "trial-1", "best_val_accuracy"],
        )
        # optuna-dashboard: trial 0's note links its MLflow run ...
        trial = study.trials[0]
        run_id = trial.user_attrs["tunelab.mlflow_run_id"]
        experiment = MlflowClient(spec.tracking_uri).get_experiment_by_name(spec.name)
        run_link = f"{ui}/#/experiments/{experiment.experiment_id}/runs/{run_id}"
        study_id = optuna.storages.get_storage(spec.storage).get_study_id_from_name(spec.name)
        trial_link = f"{dash}/dashboard/studies/{study_id}/trials?numbers=0"
        browse(
            trial_link, tmp_path / "dashboard-trial-note.png", ["MLflow run of trial 0", run_link]
        )
        # ... and that run's page in the MLflow UI carries the study, the trial and the way back
        browse(
            f"{run_link}?workflowType=machine_learning",
            tmp_path / "mlflow-trial-run.png",
            ["trial-0", "optuna.study_name", spec.name, "optuna.trial_number", trial_link],
        )
