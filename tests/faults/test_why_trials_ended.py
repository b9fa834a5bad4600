"""Why trials did not complete, through the real CLI on tasks that train in milliseconds: the
summary counts the reasons, a search whose every configuration diverged exits 3 and says so in
one line, and `tunelab trials` lists each trial with its reason (a table, or JSON)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tunelab.objectives.runner import Objective
from tunelab.search.cli.common import EXIT_DIVERGED

HERE = Path(__file__).resolve().parent
STORAGE = "sqlite:///s.db"


def _run(task: str, *extra: str) -> list[str]:
    return [
        *("run", task, "--dataset", "digits", "--study-name", "s", "--quiet"),
        *("--storage", STORAGE, "--tracking-uri", "sqlite:///m.db", "--workers", "1"),
        *("--max-epochs", "2", *extra),
    ]


def test_a_diverged_search_exits_3_and_says_why(tunelab):
    code, out, err = tunelab(*_run("nan_task:NanTask", "--n-trials", "2"))
    assert code == EXIT_DIVERGED, err
    assert "Traceback" not in out + err
    lines = out.splitlines()
    assert "  2 pruned: non-finite train_loss" in lines
    verdict = [line for line in lines if line.startswith("the search diverged")]
    assert len(verdict) == 1 and "all 2 configurations" in verdict[0], out
    assert "non-finite train_loss" in verdict[0]
    assert "no complete trial yet" not in out
    # --quiet keeps the data line and the budget, and says how each trial ended
    assert err.startswith("digits: 1257 train / 270 val / 270 test"), err
    assert "trial budget:" in err
    assert "trial 0 pruned" in err and "non-finite train_loss" in err

    # the table, and the same rows as JSON
    code, out, err = tunelab("trials", "s", "--storage", STORAGE)
    assert code == 0, err
    assert out.count("non-finite train_loss") == 2 and "pruned" in out
    code, out, err = tunelab("trials", "s", "--storage", STORAGE, "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["trial"] for r in rows] == [0, 1]
    assert {r["state"] for r in rows} == {"pruned"}
    assert all(r["reason"].startswith("non-finite train_loss") for r in rows)
    assert rows[0]["default"] and rows[0]["value"] is None
    assert set(rows[1]["params"]) == {"lr"} and rows[1]["duration_s"] > 0


def test_the_summary_counts_failures_by_reason_and_a_sound_search_exits_0(tunelab, monkeypatch):
    real = Objective._train

    def train(self, session, training):
        if session.trial.number in (1, 3):
            raise RuntimeError("boom")
        return real(self, session, training)

    monkeypatch.setattr(Objective, "_train", train)
    code, out, err = tunelab(*_run("tiny_task:TinyTask", "--n-trials", "3"))
    assert code == 0, err
    assert "  2 failed: RuntimeError: boom" in out.splitlines(), out
    assert "the search diverged" not in out
    # the best trial's line says what its step counts
    best = next(line for line in out.splitlines() if line.startswith("best trial"))
    assert re.search(r"best weights at [\d,]+ training images, MLflow run", best), best
    study = optuna.load_study(study_name="s", storage=STORAGE)
    assert [t.state for t in study.trials].count(TrialState.FAIL) == 2

    code, out, _ = tunelab("trials", "s", "--storage", STORAGE, "--json")
    rows = {r["trial"]: r for r in json.loads(out)}
    assert rows[1]["state"] == "failed" and rows[1]["reason"] == "RuntimeError: boom"
    assert rows[0]["state"] == "complete" and rows[0]["rung"] == rows[0]["max_rungs"] == 2
    code, out, _ = tunelab("studies", "--storage", STORAGE)
    assert code == 0
    header = next(line for line in out.splitlines() if "complete" in line)
    assert "pruned" in header and "finished" not in header


@pytest.mark.slow  # the console script as a shell or a CI job runs it
def test_the_console_script_exits_3_on_a_diverged_search(cli, tmp_path):
    args = ["run", "nan_task:NanTask", "--dataset", "digits", "--n-trials", "1"]
    args += ["--storage", f"sqlite:///{tmp_path / 's.db'}", "--workers", "1", "--quiet"]
    args += ["--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}", "--max-epochs", "1"]
    result = cli(args, cwd=tmp_path, PYTHONPATH=str(HERE))
    assert result.returncode == EXIT_DIVERGED, result.stderr
    assert "the search diverged: the one configuration" in result.stdout
