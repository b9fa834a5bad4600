"""Trial budgets: planned for a time budget, stored on the study, kept on resume."""

from __future__ import annotations

from types import SimpleNamespace

import optuna
import pytest
import torch

from tunelab.objectives import keys
from tunelab.objectives.budget import epoch_budget
from tunelab.search.spec import SpecError, StudySpec
from tunelab.search.study import budget as budget_module
from tunelab.search.study.budget import (
    BudgetPlan,
    Throughput,
    check_same_budget,
    plan_budget,
    recorded_budget,
    resolve_precision,
    stored_plan,
)

TRAIN = 50_000


def _plan(
    monkeypatch, images_per_s=1000.0, objectives=None, rung_eval_s=0.0, epoch_end_s=0.0, **spec
):
    measured = Throughput(images_per_s, rung_eval_s, epoch_end_s, finish_s=5.0)
    monkeypatch.setattr(budget_module, "measure_throughput", lambda *a: measured)
    prepared = SimpleNamespace(spec=StudySpec(task="cnn", **spec), objectives=objectives)
    return plan_budget(prepared, workers=2, threads=1, train_size=TRAIN)


def test_without_a_time_budget_a_trial_trains_its_epochs(monkeypatch):
    plan = _plan(monkeypatch, max_epochs=4)
    assert plan.budget == epoch_budget(4, TRAIN)
    assert plan.planned_for_s is None and plan.budget.epochs == pytest.approx(4, rel=0.05)


def test_a_time_budget_cuts_a_full_trial_to_a_share_of_one_workers_time(monkeypatch):
    plan = _plan(monkeypatch, timeout=300)
    rung = plan.budget.rung
    assert rung == round(1000 * budget_module.FIRST_RUNG_S)  # first decision after seconds
    usable = (300 - budget_module.STARTUP_S - 5.0) * 1000 * budget_module.FULL_TRIAL_SHARE
    assert plan.budget.max_rungs == int(usable // rung)
    assert (plan.planned_for_s, plan.workers, plan.images_per_s) == (300, 2, 1000.0)


def test_a_rung_pays_its_scoring_in_the_plan(monkeypatch):
    # the planned rung trains 2.5 s and is scored in 1 s: 3.5 s a rung, not 2.5
    plan = _plan(monkeypatch, timeout=300, rung_eval_s=1.0)
    rung = round(1000 * budget_module.FIRST_RUNG_S)
    assert plan.budget.rung == rung
    assert plan.images_per_s == pytest.approx(rung / (budget_module.FIRST_RUNG_S + 1.0))
    assert plan.rung_seconds() == pytest.approx(budget_module.FIRST_RUNG_S + 1.0)
    unscored = _plan(monkeypatch, timeout=300)
    assert plan.budget.max_rungs == pytest.approx(unscored.budget.max_rungs * 2.5 / 3.5, abs=1)
    # an epoch's end (all of validation scored) is paid once per TRAIN images
    ended = _plan(monkeypatch, timeout=300, rung_eval_s=1.0, epoch_end_s=20.0)
    per_rung = budget_module.FIRST_RUNG_S + 1.0 + 20.0 * rung / TRAIN
    assert ended.rung_seconds() == pytest.approx(per_rung)


def test_a_multi_objective_study_plans_shorter_trials_for_a_front(monkeypatch):
    single = _plan(monkeypatch, timeout=300)
    multi = _plan(monkeypatch, timeout=300, objectives=SimpleNamespace(multi=True))
    share = budget_module.FRONT_TRIAL_SHARE / budget_module.FULL_TRIAL_SHARE
    assert multi.budget.rung == single.budget.rung
    assert multi.budget.max_rungs == pytest.approx(single.budget.max_rungs * share, abs=1)


def test_a_fast_machine_is_capped_at_the_epoch_limit(monkeypatch):
    capped = _plan(monkeypatch, images_per_s=1e6, timeout=300)
    assert capped.budget.epochs <= budget_module.MAX_PLANNED_EPOCHS + capped.budget.rung / TRAIN
    explicit = _plan(monkeypatch, images_per_s=1e6, timeout=300, max_epochs=2)
    assert explicit.budget.epochs == pytest.approx(2, abs=explicit.budget.rung / TRAIN)


def test_a_trial_target_keeps_the_epoch_budget_even_with_a_timeout(monkeypatch):
    assert _plan(monkeypatch, timeout=300, n_trials=5).planned_for_s is None


def test_the_plan_round_trips_through_the_study():
    plan = BudgetPlan(budget=epoch_budget(3, TRAIN), max_epochs=3, planned_for_s=60.0)
    study = optuna.create_study()
    study.set_user_attr(keys.BUDGET, plan.to_json())
    spec = StudySpec(task="cnn")
    assert stored_plan(study, spec, TRAIN) == plan
    assert recorded_budget(study) == ("images", plan.budget.max_step)


def test_a_study_of_tunelab_0_1_keeps_one_rung_per_epoch():
    study = optuna.create_study()
    study.set_user_attr(keys.SPEC, StudySpec(task="cnn", max_epochs=6).to_json())
    plan = stored_plan(study, StudySpec(task="cnn"), TRAIN)
    assert (plan.budget.unit, plan.budget.max_step) == ("epochs", 6)
    assert recorded_budget(study) == ("epochs", 6)
    assert stored_plan(optuna.create_study(), StudySpec(task="cnn"), TRAIN) is None


def test_a_resumed_study_refuses_another_epoch_budget():
    plan = BudgetPlan(budget=epoch_budget(3, TRAIN), max_epochs=3)
    check_same_budget(plan, StudySpec(task="cnn"))  # not asked: kept
    check_same_budget(plan, StudySpec(task="cnn", max_epochs=3))
    with pytest.raises(SpecError, match="--max-epochs 3"):
        check_same_budget(plan, StudySpec(task="cnn", max_epochs=5))


def test_patience_grows_with_a_long_trial_budget():
    assert StudySpec(task="cnn").patience_for(3) == 3
    assert StudySpec(task="cnn").patience_for(30) == 10
    assert StudySpec(task="cnn", patience=2).patience_for(30) == 2


@pytest.mark.parametrize("native_cpu", [False, True])
def test_auto_precision_is_bfloat16_only_on_a_cpu_that_computes_it(monkeypatch, native_cpu):
    monkeypatch.setattr(budget_module, "_cpu_has_native_bf16", lambda: native_cpu)
    assert resolve_precision("auto", torch.device("cpu")) == ("bf16" if native_cpu else "fp32")
    # launch-bound small models ran slower under autocast on a GPU (benchmarks/steps.py)
    assert resolve_precision("auto", torch.device("cuda")) == "fp32"
    assert resolve_precision("bf16", torch.device("cuda")) == "bf16"
