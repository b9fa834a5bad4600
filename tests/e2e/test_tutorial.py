"""docs/your-own-model.md, run exactly as written: its code blocks become files, its command
blocks run in order in one folder, through the real `tunelab` and `python`.

The page's promises are checked on what the commands leave: a student's loop tuned with at
most 10 added or changed lines, a classifier from arrays in at most 15; MLflow runs with their
true status, a pruned trial, a run killed mid-trial and rerun that resumes the cut trial from
its checkpoint, `tunelab trials`, `report` and `evaluate` working, from the CLI and from
Python. Cheap on purpose (digits, a few epochs, one worker)."""

from __future__ import annotations

import difflib
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from tunelab.search.scheduler import lineage

PAGE = Path(__file__).resolve().parents[2] / "docs" / "your-own-model.md"
INJECT = Path(__file__).resolve().parents[1] / "faults" / "inject"
"""sitecustomize that sends a `tunelab` process a signal after a chosen storage call."""
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.S | re.M)


def blocks() -> list[tuple[str, str, str]]:
    """(language, info after it, body) of every fenced block, in page order."""
    return [(m[1], m[2].strip(), m[3]) for m in FENCE.finditer(PAGE.read_text())]


def files() -> dict[str, str]:
    """The page's Python files: each block whose first line is `# NAME.py`."""
    found = {}
    for language, _, body in blocks():
        first = body.splitlines()[0]
        if language == "python" and re.fullmatch(r"# [\w.]+\.py", first):
            found[first[2:]] = body
    return found


def commands() -> list[list[str]]:
    """The page's command blocks (bash), each as its list of commands."""
    return [
        [line for line in body.splitlines() if line.strip() and not line.startswith("#")]
        for language, _, body in blocks()
        if language == "bash"
    ]


def changed_lines(original: str, tuned: str) -> list[int]:
    """Lines of `tuned` (numbered from 1, as the page's hl_lines) added or changed against
    `original`; the first line of each names its file and is left out."""
    a, b = original.splitlines()[1:], tuned.splitlines()[1:]
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    return [
        j + 2 for op, _, _, j1, j2 in matcher.get_opcodes() if op != "equal" for j in range(j1, j2)
    ]


def test_the_tuned_loop_adds_or_changes_at_most_ten_lines_and_highlights_them():
    page = files()
    changed = changed_lines(page["digits_loop.py"], page["digits_tuned.py"])
    assert 0 < len(changed) <= 10, changed
    assert len(page["digits_loop.py"].splitlines()) >= 30  # a real loop, not a toy
    (info,) = [i for lang, i, body in blocks() if body.startswith("# digits_tuned.py")]
    assert info == f'hl_lines="{" ".join(map(str, changed))}"'  # the page shows what changed


def test_the_classifier_from_arrays_is_at_most_fifteen_lines():
    code = [
        line
        for line in files()["digits_mlp.py"].splitlines()[1:]
        if line.strip() and not line.strip().startswith("#")
    ]
    assert len(code) <= 15, code
    assert any("tunelab.ClassifierTask" in line for line in code)


def _run(command: str, cwd: Path, cli, **env: str) -> subprocess.CompletedProcess:
    """One command of the page: `tunelab ...` (the real console script) or `python FILE`
    (this interpreter), with the storage and tracking left to their defaults in `cwd`."""
    args = shlex.split(command)
    if args[0] == "tunelab":
        return cli(args[1:], cwd, **env)
    assert args[0] == "python", command
    inherited = {
        k: v for k, v in os.environ.items() if not k.startswith(("TUNELAB_STORAGE", "MLFLOW_TRACK"))
    }
    return subprocess.run(
        [sys.executable, *args[1:]],
        cwd=cwd,
        env={**inherited, "MLFLOW_DISABLE_TELEMETRY": "true", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name, body in files().items():
        (tmp_path / name).write_text(body)
    return tmp_path


def _each_trial_has_its_run(folder: Path, study: optuna.Study) -> dict[int, list]:
    """Every trial's one MLflow run, with the trial's end as its status; the runs by trial."""
    by_trial = _runs(folder, study.study_name)
    status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
    for trial in study.trials:
        (mlflow_run,) = by_trial[trial.number]
        assert mlflow_run.info.status == status[trial.state.name], trial.number
    return by_trial


def _runs(folder: Path, experiment: str) -> dict[int, list]:
    client = MlflowClient(f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    runs = client.search_runs([found.experiment_id], "tags.`optuna.trial_number` != ''")
    by_trial: dict[int, list] = {}
    for run in runs:
        by_trial.setdefault(int(run.data.tags["optuna.trial_number"]), []).append(run)
    return by_trial


@pytest.mark.e2e
def test_keep_your_loop_from_the_cli_with_a_crash_and_from_python(folder, cli):
    run, trials, report, evaluate = commands()[0]
    # the run killed (SIGKILL) right after trial 1's second report reached the study (trial
    # 0, the default configuration, makes 4): mid-trial, its rung-2 checkpoint written
    killed = _run(
        run,
        folder,
        cli,
        TUNELAB_FAULT_POINT=f"set_trial_intermediate_value:6:{int(signal.SIGKILL)}",
        PYTHONPATH=str(INJECT),
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    again = _run(run, folder, cli)  # the same command, at once
    assert again.returncode == 0, again.stderr

    study = optuna.load_study(study_name="digits", storage=f"sqlite:///{folder / 'studies.db'}")
    assert len(study.get_trials(states=FINISHED)) == 6
    assert study.trials[1].state == TrialState.FAIL
    (retry,) = [t for t in study.trials if lineage.retry_of(t) == 1]
    assert lineage.resumed_from(retry) == 1 and retry.params == study.trials[1].params
    assert lineage.resumed_at(retry) == 2  # it went on after its second report
    assert study.get_trials(states=(TrialState.PRUNED,)), "the pruner stopped no trial"
    assert study.trials[0].params == {"lr": 1e-3, "hidden": 64}  # the default, first

    by_trial = _each_trial_has_its_run(folder, study)
    curve = MlflowClient(f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}").get_metric_history(
        by_trial[0][0].info.run_id, "train_loss"
    )
    assert [m.step for m in curve] == [1, 2, 3, 4]

    listed = _run(trials, folder, cli)
    assert listed.returncode == 0 and "pruned" in listed.stdout, listed.stderr
    made = _run(report, folder, cli)
    assert made.returncode == 0, made.stderr
    assert (folder / "reports" / "digits" / "report.html").is_file()
    evaluated = _run(evaluate, folder, cli)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "registered model digits-best version 1" in evaluated.stdout

    script = _run("python digits_tuned.py", folder, cli)
    assert script.returncode == 0, script.stderr
    assert "ExperimentalWarning" not in script.stderr  # as quiet as the command
    api = optuna.load_study(study_name="digits-api", storage=f"sqlite:///{folder / 'studies.db'}")
    assert len(api.get_trials(states=FINISHED)) == 4
    assert api.user_attrs["tunelab.task"] == "train"  # by the objective's name
    _each_trial_has_its_run(folder, api)


@pytest.mark.e2e
def test_a_classifier_from_arrays_from_the_cli_and_from_python(folder, cli):
    make, run, evaluate = commands()[1]
    (script,) = commands()[2]
    done = {command: _run(command, folder, cli) for command in (make, run, evaluate)}
    for command, result in done.items():
        assert result.returncode == 0, (command, result.stderr)
    said = done[run].stdout + done[run].stderr
    assert "file:digits.npz: 1078 train / 359 val / 360 test, 64 features" in said
    assert "registered model mlp-digits-best version 1" in done[evaluate].stdout
    study = optuna.load_study(study_name="mlp-digits", storage=f"sqlite:///{folder / 'studies.db'}")
    assert len(study.get_trials(states=FINISHED)) == 6
    best = MlflowClient(f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}").get_run(
        study.best_trial.user_attrs["tunelab.mlflow_run_id"]
    )
    assert {"val_precision", "val_recall", "val_f1"} <= set(best.data.metrics)
    assert "confusion_matrix.png" in {a.path for a in _artifacts(folder, best.info.run_id)}
    _each_trial_has_its_run(folder, study)
    # the commands the first tutorial shows work on a classifier's study as well
    listed = _run("tunelab trials mlp-digits", folder, cli)
    assert listed.returncode == 0 and "complete" in listed.stdout, listed.stderr
    made = _run("tunelab report mlp-digits", folder, cli)
    assert made.returncode == 0, made.stderr
    assert (folder / "reports" / "mlp-digits" / "report.html").is_file()

    python = _run(script, folder, cli)
    assert python.returncode == 0, python.stderr
    assert "ExperimentalWarning" not in python.stderr  # as quiet as the command
    assert "test_" in python.stdout and "'hidden'" in python.stdout
    api = optuna.load_study(study_name="mlp-api", storage=f"sqlite:///{folder / 'studies.db'}")
    assert len(api.get_trials(states=FINISHED)) == 4
    assert api.user_attrs["tunelab.dataset"].startswith("memory:arrays-")
    _each_trial_has_its_run(folder, api)


def _artifacts(folder: Path, run_id: str):
    return MlflowClient(f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}").list_artifacts(run_id)
