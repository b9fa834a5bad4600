"""One trial's failure is that trial's failure: recorded with its reason in Optuna and MLflow,
and the worker goes on; several failures in a row stop the worker with one line.

Before the fix, study.optimize ran without `catch`: any exception in one trial ended the
worker with a traceback (and, under docker compose, restarted it forever)."""

from __future__ import annotations

import signal

import optuna
import pytest
import torch
from mlflow import MlflowClient
from optuna.trial import TrialState

from tunelab.objectives import keys
from tunelab.objectives.runner import Objective
from tunelab.search.cli import main

SMALL = "params:\n  base_width: 8\n  fc_width: 32\n  convs_per_block: 1\n"


@pytest.fixture
def run_in_process(tmp_path, monkeypatch, capsys):
    """main([...]) on digits in tmp_path; the signal handlers it installs are put back."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small.yaml").write_text(SMALL)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def run(*extra: str) -> tuple[int, str]:
        code = main(
            [
                *("run", "cnn", "--dataset", "digits", "--config", "small.yaml", "--quiet"),
                *("--storage", "sqlite:///s.db", "--tracking-uri", "sqlite:///m.db"),
                *("--workers", "1", "--epochs", "1", *extra),
            ]
        )
        return code, capsys.readouterr().err

    yield run
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def _failing(monkeypatch, error: BaseException, numbers=None):
    real = Objective._train

    def train(self, session, training):
        if numbers is None or session.trial.number in numbers:
            raise error
        return real(self, session, training)

    monkeypatch.setattr(Objective, "_train", train)


def _run_of(trial):
    return MlflowClient("sqlite:///m.db").get_run(trial.user_attrs[keys.MLFLOW_RUN_ID])


def test_a_failing_trial_fails_alone_and_the_study_meets_its_target(run_in_process, monkeypatch):
    _failing(monkeypatch, RuntimeError("boom"), numbers={1})
    code, err = run_in_process("--n-trials", "3")
    assert code == 0, err
    study = optuna.load_study(study_name="cnn-digits", storage="sqlite:///s.db")
    failed = study.trials[1]
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs[keys.FAIL_REASON] == "RuntimeError: boom"
    assert _run_of(failed).info.status == "FAILED"
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 3


def test_out_of_memory_prunes_the_configuration(run_in_process, monkeypatch):
    _failing(monkeypatch, torch.OutOfMemoryError("CUDA out of memory"), numbers={1})
    code, err = run_in_process("--n-trials", "2")
    assert code == 0, err
    trial = optuna.load_study(study_name="cnn-digits", storage="sqlite:///s.db").trials[1]
    assert trial.state == TrialState.PRUNED
    assert trial.user_attrs[keys.FAIL_REASON] == "out_of_memory"
    assert _run_of(trial).info.status == "KILLED"


def test_failures_in_a_row_stop_the_worker_with_one_line(run_in_process, monkeypatch):
    _failing(monkeypatch, ValueError("systematic"))
    code, err = run_in_process("--n-trials", "10")
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("tunelab: error: 3 trials in a row failed")
    assert "Traceback" not in err
    study = optuna.load_study(study_name="cnn-digits", storage="sqlite:///s.db")
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 3
    assert not [t for t in study.trials if _run_of(t).info.status == "RUNNING"]
