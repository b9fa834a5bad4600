"""The real `tunelab` CLI as a subprocess, read back through Optuna's and MLflow's own clients."""

import json

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

pytestmark = pytest.mark.e2e

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
STATUS = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED", TrialState.FAIL: "FAILED"}
SEARCHED_CONFIG = """\
params:
  base_width: 8
  fc_width: 32
  convs_per_block: 1
  lr: {low: 1e-4, high: 3e-2}
"""


def test_run_cnn_tracks_every_trial_in_optuna_and_mlflow(cli, cnn_args, storage_url, tmp_path):
    extra = "--n-trials 6 --epochs 3 --seed 2 --pruner median --sampler random"
    args = cnn_args(storage_url, extra, config=SEARCHED_CONFIG)
    result = cli(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "best trial" in result.stdout and "optuna-dashboard" in result.stdout

    study = optuna.load_study(study_name="cnn-digits", storage=storage_url)
    assert len(study.get_trials(states=FINISHED)) == 6
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert pruned, "the median pruner stops some of six random trials"

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    for trial in study.trials:
        run = client.get_run(trial.user_attrs["tunelab.mlflow_run_id"])
        assert run.info.status == STATUS[trial.state]
        assert run.data.tags["optuna.state"] == trial.state.name
        for metric in ("train_loss", "train_accuracy", "rung/val_loss", "rung/val_accuracy"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, metric)]
            assert steps == sorted(trial.intermediate_values), metric
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        if trial.state == TrialState.COMPLETE:  # the best weights, scored on all of validation
            best_step = trial.user_attrs["tunelab.best_step"]
            judged = client.get_metric_history(run.info.run_id, "val_accuracy")
            assert (best_step, trial.value) in [(m.step, m.value) for m in judged]
            assert run.data.metrics["best_val_accuracy"] == trial.value
            assert {"config.json", "checkpoint", "confusion_matrix.png"} <= artifacts
            assert {"val_f1", "val_precision", "val_recall"} <= set(run.data.metrics)
    assert {client.get_run(t.user_attrs["tunelab.mlflow_run_id"]).info.status for t in pruned} == {
        "KILLED"
    }

    best = cli(["best", "cnn-digits", "--storage", storage_url, "--json"], cwd=tmp_path)
    assert best.returncode == 0, best.stderr
    info = json.loads(best.stdout)
    assert info["value"] == study.best_value and info["params"] == study.best_params
    listing = cli(["studies", "--storage", storage_url], cwd=tmp_path)
    assert listing.returncode == 0 and "cnn-digits" in listing.stdout


def test_same_seed_gives_the_same_parameters_and_values(cli, cnn_args, tmp_path):
    values = []
    for name in ("a", "b"):
        extra = f"--study-name {name} --n-trials 3 --epochs 1 --seed 11"
        args = cnn_args(f"sqlite:///{tmp_path / 'same.db'}", extra, config=SEARCHED_CONFIG)
        assert cli(args, cwd=tmp_path).returncode == 0
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'same.db'}")
        values.append([(t.params, t.value) for t in study.trials])
    assert values[0] == values[1]
