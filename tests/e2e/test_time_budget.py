"""A search with a time budget: trials planned for the time, rungs in images, successive
halving that pauses and resumes, the default configuration carried to the end, a summary."""

import json

import optuna
import pytest
from optuna.trial import TrialState

from tunelab.objectives import keys

pytestmark = pytest.mark.e2e

SEARCHED = """\
params:
  base_width: 8
  fc_width: 32
  convs_per_block: 1
  lr: {low: 1e-4, high: 3e-2}
"""


def test_a_timed_search_plans_its_trials_and_ends_with_a_summary(cli, cnn_args, tmp_path):
    storage = f"sqlite:///{tmp_path / 'timed.db'}"
    result = cli(cnn_args(storage, "--timeout 60 --workers 2", config=SEARCHED), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "configurations tried" in result.stdout

    study = optuna.load_study(study_name="cnn-digits", storage=storage)
    plan = json.loads(study.user_attrs[keys.BUDGET])
    assert plan["planned_for_s"] == 60 and plan["budget"]["unit"] == "images"
    rung, max_step = plan["budget"]["rung"], plan["budget"]["rung"] * plan["budget"]["max_rungs"]
    trials = study.get_trials()
    assert not [t for t in trials if t.state == TrialState.RUNNING], "every trial ended"
    assert all(step % rung == 0 for t in trials for step in t.intermediate_values)

    # the default configuration is never pruned once it reached a rung (on a loaded machine
    # the time budget may end before its first rung: then nothing has a score)
    default = [t for t in trials if t.user_attrs.get(keys.DEFAULT_TRIAL)][-1]
    if default.intermediate_values:
        assert default.state == TrialState.COMPLETE
    for t in trials:  # a continuation picks up its paused source's curve and goes further
        if keys.RESUME_OF in t.user_attrs:
            source = study.trials[t.user_attrs[keys.RESUME_OF]]
            assert source.user_attrs[keys.PAUSED_AT] in t.intermediate_values
            assert max(t.intermediate_values) <= max_step

    report = cli(
        ["report", "cnn-digits", "--storage", storage, "--out", str(tmp_path / "r")], cwd=tmp_path
    )
    assert report.returncode == 0, report.stderr
    assert "training images" in (tmp_path / "r" / "report.html").read_text()
