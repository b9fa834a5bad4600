"""A task from outside the package, end to end through the real CLI: the example in
examples/shapes.py, registered by a (fake) installed distribution under `tunelab.tasks`,
listed, run, resumed by a worker-less rerun, reported and evaluated; and the output stays
tunelab's own."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LIBRARY_LINES = ("Creating initial MLflow database tables", "alembic", "Updating database tables")


def _example():
    """examples/shapes.py, imported from its file (it is not a package module)."""
    spec = importlib.util.spec_from_file_location("shapes_example", EXAMPLES / "shapes.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def plugin_env(tmp_path) -> dict[str, str]:
    """PYTHONPATH with the example module and a distribution registering it as `shapes`."""
    site = tmp_path / "site"
    info = site / "tunelab_shapes-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tunelab-shapes\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[tunelab.tasks]\nshapes = shapes:ShapesTask\n")
    path = os.pathsep.join([str(site), str(EXAMPLES)])
    return {"PYTHONPATH": path}


def test_a_plugin_task_runs_reports_and_evaluates_through_the_cli(cli, tmp_path, plugin_env):
    data = _example().make_shapes(tmp_path / "shapes", per_class=12)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    tracking = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    listed = cli(["tasks"], cwd=tmp_path, **plugin_env)
    assert listed.returncode == 0, listed.stderr
    assert "shapes:ShapesTask" in listed.stdout and "tunelab-shapes 0.1" in listed.stdout

    common = ["--storage", storage, "--tracking-uri", tracking]
    args = ["run", "shapes", "--dataset", f"folder:{data}", "--study-name", "shapes", *common]
    args += ["--workers", "1"]
    result = cli([*args, "--n-trials", "3", "--max-epochs", "1", "--quiet"], tmp_path, **plugin_env)
    assert result.returncode == 0, result.stderr
    assert "best trial" in result.stdout
    # quiet: neither MLflow's migrations nor Optuna's per-trial lines
    for line in (*LIBRARY_LINES, "Trial 0 finished"):
        assert line not in result.stderr + result.stdout

    study = optuna.load_study(study_name="shapes", storage=storage)
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 3
    assert study.user_attrs["tunelab.task"] == "shapes"
    client = MlflowClient(tracking)
    run = client.get_run(study.best_trial.user_attrs["tunelab.mlflow_run_id"])
    assert "val_accuracy" in run.data.metrics and "parameters" in run.data.metrics

    # --verbose shows the libraries' own lines (one more trial, same stored task)
    verbose = cli([*args, "--n-trials", "4", "--quiet", "--verbose"], tmp_path, **plugin_env)
    assert verbose.returncode == 0, verbose.stderr
    assert "Trial 3 finished" in verbose.stderr

    report = cli(["report", "shapes", *common], tmp_path, **plugin_env)
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "reports" / "shapes" / "report.html").is_file()

    evaluated = cli(["evaluate", "shapes", "--seeds", "1", *common], tmp_path, **plugin_env)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "registered model shapes-best version 1" in evaluated.stdout
