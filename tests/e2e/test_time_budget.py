"""A search with a time budget: trials planned for the time, rungs in images, successive
halving that pauses and resumes (asserted, not hoped for), the default configuration carried
to the end, a summary."""

import json

import optuna
import pytest
from optuna.trial import TrialState

from tunelab.objectives import keys
from tunelab.search.scheduler import lineage

pytestmark = pytest.mark.e2e

SEARCHED = """\
params:
  base_width: 8
  fc_width: 32
  convs_per_block: 1
  lr: {low: 1e-4, high: 3e-2}
"""


def test_a_timed_search_plans_its_trials_pauses_resumes_and_ends_with_a_summary(
    cli, cnn_args, tmp_path
):
    """One worker and a random sampler with a fixed seed, so the configurations come in one
    order: the second configuration to reach the first decision rung is always paused (it
    cannot rank in the top third of two), and the endgame continues the best paused trial
    that can still finish once a new one could not. Trials of at most 4 epochs: a paused one
    can still finish in what is left of the budget however loaded the machine is (with 15
    planned rungs, a loaded run once continued none). 60 s, not 45: with the suite's three
    workers on two cores, preparing (imports, data, the timing) once took the whole 45 and
    left the default configuration queued, untrained."""
    storage = f"sqlite:///{tmp_path / 'timed.db'}"
    args = "--timeout 60 --max-epochs 4 --workers 1 --sampler random --seed 1"
    result = cli(cnn_args(storage, args, config=SEARCHED), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "configurations tried" in result.stdout

    study = optuna.load_study(study_name="cnn-digits", storage=storage)
    plan = json.loads(study.user_attrs[keys.BUDGET])
    assert plan["planned_for_s"] == 60 and plan["budget"]["unit"] == "images"
    rung, max_step = plan["budget"]["rung"], plan["budget"]["rung"] * plan["budget"]["max_rungs"]
    trials = study.get_trials()
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert all(step % rung == 0 for t in trials for step in t.intermediate_values)

    # the default configuration trains to its end, never paused or pruned
    (default,) = [t for t in trials if lineage.is_default(t) and lineage.source(t) is None]
    assert default.number == 0 and default.state == TrialState.COMPLETE
    seen = [(t.number, t.state.name, len(t.intermediate_values)) for t in trials]
    paused = [t for t in trials if lineage.is_paused(t)]
    assert paused, f"successive halving paused no trial: {seen}"
    continuations = [t for t in trials if lineage.resume_of(t) is not None]
    assert continuations, f"no paused trial was continued: {seen}"
    went_further = []
    for t in continuations:  # each picks up its paused source's curve and goes further
        source = study.trials[lineage.resume_of(t)]
        step = lineage.paused_at(source)
        assert t.intermediate_values[step] == source.intermediate_values[step]
        assert max(t.intermediate_values) <= max_step
        assert lineage.resumed_at(t) == step  # from its source's checkpoint at the pause
        if max(t.intermediate_values) > step:
            went_further.append(t.number)
        else:  # only the end of the budget, or early stopping, ends one before its next rung
            ended_early = t.user_attrs.get(keys.STOPPED_AT_DEADLINE) or t.user_attrs.get(
                keys.EARLY_STOPPED
            )
            assert ended_early, (t.number, t.user_attrs, seen)
    assert went_further, f"no continuation trained past its pause: {seen}"
    sources = [lineage.resume_of(t) for t in continuations]
    assert len(sources) == len(set(sources)), "a paused trial was continued twice"

    report = cli(
        ["report", "cnn-digits", "--storage", storage, "--out", str(tmp_path / "r")], cwd=tmp_path
    )
    assert report.returncode == 0, report.stderr
    assert "training images" in (tmp_path / "r" / "report.html").read_text()
