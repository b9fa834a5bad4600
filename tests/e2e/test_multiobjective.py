"""Multi-objective studies and constraints through the real CLI: run, best, report,
evaluate --trial and resume, read back through Optuna's and MLflow's own clients."""

import json

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

pytestmark = pytest.mark.e2e

VARIED_CNN = """\
params:
  fc_width: 32
  convs_per_block: 1
  batch_norm: false
"""
"""Small networks whose size still varies (base width, blocks) so a front has a span."""
BOUND = 60000


def test_two_objective_cnn_study_with_a_constraint(cli, cnn_args, tmp_path):
    storage = f"sqlite:///{tmp_path / 'mo.db'}"
    extra = (
        "--n-trials 6 --epochs 2 --seed 4 --sampler random "
        f"--objectives val_accuracy,params --constraint params<={BOUND}"
    )
    result = cli(cnn_args(storage, extra, config=VARIED_CNN), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Pareto front:" in result.stdout

    study = optuna.load_study(study_name="cnn-digits", storage=storage)
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert study.metric_names == ["val_accuracy", "params"]
    trials = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(trials) == 6
    for t in trials:
        static = t.user_attrs["tunelab.static_metrics"]
        assert {"params", "macs", "latency_ms"} <= set(static)
        violation = t.constraints[f"params<={BOUND}"]
        assert violation == static["params"] - BOUND
        if violation > 0:  # ended at once, untrained, its reason kept
            assert t.state == TrialState.PRUNED
            assert t.user_attrs["tunelab.fail_reason"].startswith("infeasible before training")
            assert "tunelab.rung_scores" not in t.user_attrs
        elif t.state == TrialState.COMPLETE:
            assert t.values[1] == static["params"]
            assert sorted(map(int, t.user_attrs["tunelab.rung_scores"])) == sorted(
                int(s) for s in t.user_attrs["tunelab.rung_scores"]
            )
    front = {t.number for t in study.best_trials}
    assert front and all(t.constraints[f"params<={BOUND}"] <= 0 for t in study.best_trials)

    # best: the front, the best primary first
    best = cli(["best", "cnn-digits", "--storage", storage, "--json"], cwd=tmp_path)
    assert best.returncode == 0, best.stderr
    info = json.loads(best.stdout)
    assert {r["trial"] for r in info["front"]} == front
    assert info["trial"] == info["front"][0]["trial"]
    assert info["value"] == max(t.values[0] for t in study.best_trials)

    # MLflow: every objective on each trial's run, the front as a table on the parent run
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    parent = study.user_attrs["tunelab.mlflow_parent_run_id"]
    assert {"pareto_front.json", "pareto_front.csv"} <= {
        a.path for a in client.list_artifacts(parent)
    }
    for t in study.best_trials:
        metrics = client.get_run(t.user_attrs["tunelab.mlflow_run_id"]).data.metrics
        assert metrics["params"] == t.values[1] and metrics["best_val_accuracy"] == t.values[0]

    # report: the front figure and table
    report = cli(["report", "cnn-digits", "--storage", storage, "--out", "rep"], cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    # adding to the front's table downloads it: MLflow's progress bar stays off
    assert "Downloading artifacts" not in report.stderr
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "Pareto front" in page and (tmp_path / "rep" / "figures" / "pareto.json").exists()

    # evaluate a chosen point of the front
    chosen = info["front"][-1]["trial"]
    evaluate = cli(
        ["evaluate", "cnn-digits", "--storage", storage, "--trial", str(chosen), "--seeds", "1"],
        cwd=tmp_path,
    )
    assert evaluate.returncode == 0, evaluate.stderr
    assert f"cnn-digits-trial-{chosen}" in evaluate.stdout
    not_complete = [t.number for t in study.trials if t.state != TrialState.COMPLETE]
    if not_complete:
        refused = cli(
            ["evaluate", "cnn-digits", "--storage", storage, "--trial", str(not_complete[0])],
            cwd=tmp_path,
        )
        assert refused.returncode == 2 and "not complete" in refused.stderr

    # resume: the same objectives go on; other objectives are refused with one line
    changed = extra.replace("val_accuracy,params", "val_accuracy,macs")
    again = cli(cnn_args(storage, changed, config=VARIED_CNN), cwd=tmp_path)
    assert again.returncode == 2
    assert "objectives: stored" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    dropped = extra.replace(f" --constraint params<={BOUND}", "")
    again = cli(cnn_args(storage, dropped, config=VARIED_CNN), cwd=tmp_path)
    assert again.returncode == 2 and "constraints: stored" in again.stderr
    more = extra.replace("--n-trials 6", "--n-trials 7")
    resumed = cli(cnn_args(storage, more, config=VARIED_CNN), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    study = optuna.load_study(study_name="cnn-digits", storage=storage)
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 7


def test_bad_objectives_are_refused_in_one_line(cli, cnn_args, tmp_path):
    storage = f"sqlite:///{tmp_path / 'bad.db'}"
    for extra, message in (
        ("--objectives val_accuracy,size", "unknown objective 'size'"),
        ("--objectives params,val_accuracy", "must be scored during training"),
        ("--constraint params<100", "METRIC<=NUMBER"),
        ("--objectives val_accuracy,params --pruner median", "needs a single objective"),
    ):
        result = cli(cnn_args(storage, extra), cwd=tmp_path)
        assert result.returncode == 2, (extra, result.stderr)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_vae_rate_distortion_front(cli, tmp_path):
    (tmp_path / "vae.yaml").write_text("params:\n  base_width: 8\n  depth: 1\n  fc_width: 0\n")
    storage = f"sqlite:///{tmp_path / 'vae.db'}"
    args = [
        *("run", "vae", "--dataset", "digits", "--config", "vae.yaml", "--quiet"),
        *("--storage", storage, "--tracking-uri", f"sqlite:///{tmp_path / 'mlruns' / 'm.db'}"),
        *("--n-trials", "4", "--epochs", "2", "--sampler", "random", "--workers", "1"),
        *("--objectives", "val_recon,val_kl"),
    ]
    result = cli(args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="vae-digits", storage=storage)
    assert study.metric_names == ["val_recon", "val_kl"]
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE"]
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert complete and all(len(t.values) == 2 and t.values[1] >= 0 for t in complete)
    for t in complete:  # both terms recorded at every rung; no static metric was needed
        assert all(
            set(s) == {"val_recon", "val_kl"} for s in t.user_attrs["tunelab.rung_scores"].values()
        )
        assert "tunelab.static_metrics" not in t.user_attrs
    assert study.best_trials
