"""`evaluate`: the best configuration retrained per seed, the test split scored once per seed,
one MLflow run with the test metrics, and the best seed's model in the Model Registry."""

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import torch
from mlflow import MlflowClient

from tunelab.search.analysis.evaluate import (
    EvaluationConfig,
    MetricSummary,
    as_test_metric,
    evaluate_study,
)
from tunelab.search.spec import SpecError, StudySpec
from tunelab.search.study.prepare import prepare
from tunelab.search.study.run import run_study

SMALL = {"base_width": 8, "fc_width": 32, "convs_per_block": 1}


def test_evaluate_scores_the_test_split_and_registers_the_best_seed(tmp_path, tracking_uri):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    spec = StudySpec(
        task="cnn",
        dataset="digits",
        study_name="ev",
        n_trials=2,
        max_epochs=2,
        storage=storage,
        tracking_uri=tracking_uri,
        params=SMALL,
        seed=1,
        pruner="none",
        device="cpu",
        checkpoint_dir=str(tmp_path / "ck"),
        quiet=True,
    )
    run_study(prepare(spec))
    best = optuna.load_study(study_name="ev", storage=storage).best_trial

    result = evaluate_study(EvaluationConfig("ev", storage, seeds=2), say=lambda text: None)
    assert result.trial == best.number and result.steps == best.user_attrs["tunelab.best_step"]
    assert result.unit == "images"
    assert result.objective == "test_accuracy" and len(result.seeds) == 2

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("ev")
    (run,) = client.search_runs([experiment.experiment_id], "tags.`tunelab.evaluation` = 'true'")
    assert run.info.run_id == result.run_id and run.info.status == "FINISHED"
    assert run.data.tags["tunelab.best_trial"] == str(best.number)
    assert run.data.tags["tunelab.best_trial_run_id"] == best.user_attrs["tunelab.mlflow_run_id"]
    assert run.data.params["eval_steps"] == str(best.user_attrs["tunelab.best_step"])
    metrics = run.data.metrics
    for name in ("test_accuracy", "test_precision", "test_recall", "test_f1"):
        assert 0.0 <= metrics[name] <= 1.0, name
    assert not [m for m in metrics if m.startswith("val_")]
    low, high = metrics["test_accuracy_ci95_low"], metrics["test_accuracy_ci95_high"]
    assert low <= metrics["test_accuracy"] <= high
    per_seed = client.get_metric_history(run.info.run_id, "seed/test_accuracy")
    assert sorted(m.step for m in per_seed) == [0, 1]
    assert metrics["test_accuracy"] == pytest.approx(sum(m.value for m in per_seed) / 2)

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "evaluation.json" in artifacts
    for seed in result.seeds:
        files = {a.path for a in client.list_artifacts(run.info.run_id, f"seed-{seed}")}
        assert f"seed-{seed}/confusion_matrix.png" in files
    local = client.download_artifacts(run.info.run_id, "evaluation.json", str(tmp_path))
    summary = json.loads(Path(local).read_text())
    assert summary["seeds"] == list(result.seeds)

    assert client.get_registered_model("ev-best").name == "ev-best"
    (version,) = client.search_model_versions("name = 'ev-best'")
    assert version.run_id == run.info.run_id and str(version.version) == result.model_version
    assert version.tags["tunelab.module"] == "classifier"
    model = client.get_logged_model(version.source.removeprefix("models:/"))
    assert model.experiment_id == experiment.experiment_id

    # A torch.export graph: it loads with torch alone, whatever tunelab's classes are called.
    load = (
        "import sys, mlflow.pytorch; "
        "m = mlflow.pytorch.load_model(sys.argv[1]); print(type(m).__module__, type(m).__name__)"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", load, f"models:/ev-best/{version.version}"],
        env={**os.environ, "MLFLOW_TRACKING_URI": tracking_uri},
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == ["torch.fx.graph_module", "GraphModule"]


def test_final_training_data_is_train_and_val_and_scores_test(digits):
    data = digits.for_final_training()
    assert len(data.train) == len(digits.train) + len(digits.val)
    assert torch.equal(data.val.x, digits.test.x) and torch.equal(data.test.y, digits.test.y)


def test_metric_names_and_interval():
    assert as_test_metric("val_accuracy", "val_accuracy", False) == "test_accuracy"
    assert as_test_metric("fd_classifier", "fd_classifier", False) == "test_fd_classifier"
    assert as_test_metric("final_fd_classifier", "fd_classifier", True) == "test_fd_classifier"
    assert as_test_metric("iwae_k", "val_elbo", True) is None  # a setting, kept as it is
    summary = MetricSummary("test_accuracy", (0.8, 0.9, 1.0))
    low, high = summary.interval
    # mean 0.9, sd 0.1, t(0.975, 2) = 4.303: half-width 0.1 * 4.303 / sqrt(3)
    assert (low, high) == pytest.approx((0.9 - 0.24843, 0.9 + 0.24843), abs=1e-4)


def test_unknown_study_and_no_complete_trial_are_one_line_errors(tmp_path):
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    optuna.create_study(study_name="empty", storage=storage)
    with pytest.raises(SpecError, match="no study 'nope'"):
        evaluate_study(EvaluationConfig("nope", storage))
    with pytest.raises(SpecError, match="has no complete trial yet"):
        evaluate_study(EvaluationConfig("empty", storage))
