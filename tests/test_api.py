"""The Python API: the example task run, read, reported and evaluated from Python, with the
CLI's behaviour and plain Optuna / MLflow objects back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

import tunelab

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.slow  # a fresh interpreter
def test_import_tunelab_loads_nothing_heavy():
    code = (
        "import sys, tunelab; tunelab.Task; "
        "heavy = {'optuna', 'mlflow', 'torch'} & {m.split('.')[0] for m in sys.modules}; "
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # tunelab.Task is the contract (torch, Optuna); a bare import loads nothing
    bare = subprocess.run(
        [sys.executable, "-c", "import sys, tunelab; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert bare.stdout.strip() == "False"
    assert "mlflow" not in out.stdout


def test_bad_options_raise_the_clis_one_line_error(tmp_path):
    with pytest.raises(tunelab.SpecError, match="unknown task 'rnn'"):
        tunelab.spec("rnn")
    with pytest.raises(tunelab.SpecError, match="--n-trials must be at least 1"):
        tunelab.spec("cnn", n_trials=0)


def test_a_task_that_is_no_task_or_cannot_be_found_again_is_refused_in_one_line(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(tunelab.SpecError, match="decorate it with @tunelab.objective") as error:
        tunelab.run(lambda trial: 0.0, n_trials=1)
    assert "\n" not in str(error.value)

    class Local(tunelab.ClassifierTask):  # workers, `report` and `evaluate` import it by name
        params: list = []

        def model(self, hp, data):
            return None

    with pytest.raises(tunelab.SpecError, match="defined in a function, cannot be found"):
        tunelab.run(Local, dataset="digits", n_trials=1)
    assert list(tmp_path.iterdir()) == []  # refused before anything is written


def test_the_example_task_runs_end_to_end_from_python(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLES))
    monkeypatch.chdir(tmp_path)
    from shapes import make_shapes

    data = make_shapes(tmp_path / "shapes", per_class=12)
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    tracking = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    spec = tunelab.spec(
        "shapes:ShapesTask",
        dataset=f"folder:{data}",
        study_name="api-shapes",
        n_trials=3,
        max_epochs=1,
        workers=1,
        quiet=True,
        storage=storage,
        tracking_uri=tracking,
    )
    study = tunelab.run(spec)
    assert isinstance(study, optuna.Study) and len(study.trials) == 3

    loaded = tunelab.load("api-shapes", storage=storage)
    best = tunelab.best_trial("api-shapes", storage=storage)
    assert isinstance(best, optuna.trial.FrozenTrial) and best.number == loaded.best_trial.number
    front = tunelab.best_trials(loaded)  # single objective: the trials tied at the best value
    assert best.number in [t.number for t in front] and {t.value for t in front} == {best.value}
    run = MlflowClient(tracking).get_run(best.user_attrs["tunelab.mlflow_run_id"])
    assert run.data.metrics["val_accuracy"] == pytest.approx(best.value)

    # a rerun with the same spec resumes the finished study: nothing more to do
    assert len(tunelab.run(spec).trials) == 3

    files = tunelab.report(loaded, out=str(tmp_path / "report"))
    assert files.html.is_file()
    evaluation = tunelab.evaluate("api-shapes", seeds=1, storage=storage)
    assert evaluation.model_name == "api-shapes-best"
    assert MlflowClient(tracking).get_run(evaluation.run_id).info.status == "FINISHED"
    assert tunelab.tasks()["cnn"].endswith(":ClassificationTask")
