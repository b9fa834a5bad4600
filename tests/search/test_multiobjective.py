"""Objectives and constraints of a study, and the multi-objective pruning rule."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from tunelab.objectives import keys
from tunelab.objectives.metrics import MetricInfo
from tunelab.objectives.registry import get_task
from tunelab.search.multiobjective import Constraint, StudyObjectives, resolve_objectives
from tunelab.search.scheduler.policies import ParetoHalving
from tunelab.search.spec import SpecError, StudySpec, build_spec
from tunelab.search.study.pareto import front, front_csv, front_rows, hypervolume

ACC = MetricInfo("val_accuracy", "maximize")
PARAMS = MetricInfo("params", "minimize", static=True)


def spec(**changes) -> StudySpec:
    return StudySpec(**{"task": "cnn", **changes})


def test_objectives_and_constraints_come_from_flags_and_lists():
    built = build_spec(
        "cnn", None, {"objectives": ["val_accuracy,params"], "constraints": ["params<=1e5"]}
    )
    assert built.objectives == ("val_accuracy", "params")
    assert built.constraints == ("params<=1e5",)
    assert StudySpec.from_stored(built.to_json()).objectives == ("val_accuracy", "params")
    assert spec(objectives=["a", "b"]).objectives == ("a", "b")  # YAML lists


def test_a_study_stored_before_objectives_existed_resumes_unchanged():
    stored = spec().to_json().replace('"objectives": [], ', "").replace('"constraints": [], ', "")
    assert "objectives" not in stored
    assert spec().conflicts_with(stored) == []
    assert spec(objectives=("val_accuracy", "params")).conflicts_with(stored)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("params<=100000", Constraint("params", "<=", 100000)),
        (" val_accuracy >= 0.9 ", Constraint("val_accuracy", ">=", 0.9)),
        ("macs<=1e6", Constraint("macs", "<=", 1e6)),
    ],
)
def test_constraints_parse(text, parsed):
    assert Constraint.parse(text) == parsed


@pytest.mark.parametrize("text", ["params<100", "params", "<=5", "params<=abc", "params<=inf"])
def test_malformed_constraints_are_refused_in_one_line(text):
    with pytest.raises(SpecError, match="METRIC<=NUMBER"):
        Constraint.parse(text)


def test_constraint_values_follow_optuna_sign():
    assert Constraint("params", "<=", 100).violation(150) == 50
    assert Constraint("val_accuracy", ">=", 0.9).violation(0.95) == pytest.approx(-0.05)


def test_resolve_checks_names_against_the_task():
    task = get_task("cnn")
    resolved = resolve_objectives(spec(objectives=("val_accuracy", "params")), task)
    assert resolved.names == ("val_accuracy", "params") and resolved.multi
    assert resolved.directions == ("maximize", "minimize") and resolved.needs_static
    assert resolved.study_arguments() == {"directions": ["maximize", "minimize"]}
    single = resolve_objectives(spec(), get_task("cnn"))
    assert not single.active and single.study_arguments() == {"direction": "maximize"}
    with pytest.raises(SpecError, match="unknown objective 'size'.*known: val_accuracy"):
        resolve_objectives(spec(objectives=("val_accuracy", "size")), get_task("cnn"))
    with pytest.raises(SpecError, match="must be scored during training"):
        resolve_objectives(spec(objectives=("params", "val_accuracy")), get_task("cnn"))
    with pytest.raises(SpecError, match="unknown metric 'size'"):
        resolve_objectives(spec(constraints=("size<=3",)), get_task("cnn"))
    with pytest.raises(SpecError, match="--pruner median needs a single objective"):
        resolve_objectives(
            spec(objectives=("val_accuracy", "params"), pruner="median"), get_task("cnn")
        )


def test_the_primary_objective_becomes_the_loops_metric():
    task = get_task("vae")
    resolve_objectives(spec(task="vae", objectives=("val_recon", "val_kl")), task)
    assert (task.metric, task.direction) == ("val_recon", "minimize")
    assert task.better(1.0, 2.0)


# -- the pruning rule ---------------------------------------------------------------------------


def halving(*metrics: MetricInfo) -> ParetoHalving:
    return ParetoHalving(StudyObjectives(metrics=metrics), min_resource=100)


def point(acc: float, params: float) -> dict[str, float]:
    return {"val_accuracy": acc, "params": params}


def test_decisions_fall_on_the_halving_rungs():
    rule = halving(ACC, PARAMS)
    assert [s for s in range(100, 1000, 100) if rule.decides_at(s)] == [100, 300, 900]


def test_the_smallest_model_so_far_is_never_pruned():
    rule = halving(ACC, PARAMS)
    others = [point(0.99, 5000), point(0.98, 2000)]
    assert rule.prune(point(0.10, 1000), others) is None


def test_a_trial_on_the_rung_front_continues():
    rule = halving(ACC, PARAMS)
    assert rule.prune(point(0.97, 3000), [point(0.95, 2000), point(0.90, 1000)]) is None


def test_a_trial_dominated_by_a_smaller_better_one_is_pruned():
    rule = halving(ACC, PARAMS)
    reason = rule.prune(point(0.90, 3000), [point(0.95, 2000), point(0.99, 9000)])
    assert reason is not None and "dominated by 1 of the 1 trials" in reason


def test_among_many_peers_the_top_third_continue():
    rule = halving(ACC, PARAMS)
    peers = [point(0.90 + i / 100, 1000) for i in range(8)]  # 8 smaller trials
    # 9 with itself: the top 3 continue, i.e. at most 2 peers may beat it
    assert rule.prune(point(0.965, 5000), peers) is None  # beaten by 0.97 alone
    assert rule.prune(point(0.955, 5000), peers) is None  # beaten by 0.96, 0.97: 2
    assert rule.prune(point(0.945, 5000), peers) is not None  # beaten by 3


def test_with_one_objective_the_rule_is_successive_halving():
    rule = halving(ACC)
    others = [{"val_accuracy": v} for v in (0.1, 0.2, 0.3, 0.4, 0.5)]
    assert rule.prune({"val_accuracy": 0.45}, others) is None  # 2nd of 6: top third
    assert rule.prune({"val_accuracy": 0.35}, others) is not None  # 3rd of 6


def test_decide_reads_the_rung_scores_of_the_other_configurations():
    study = optuna.create_study(directions=["maximize", "minimize"])
    for acc, params in [(0.95, 2000), (0.99, 9000)]:
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.PRUNED,
                user_attrs={
                    keys.STATIC_METRICS: {"params": params},
                    keys.RUNG_SCORES: {"100": {"val_accuracy": acc}},
                },
            )
        )
    rule = halving(ACC, PARAMS)
    others = rule.others_at(study, 99, 100)
    assert rule.prune(point(0.90, 3000), others) is not None
    assert rule.prune(point(0.96, 3000), others) is None
    assert rule.others_at(study, 99, 300) == []  # nobody there yet
    assert rule.others_at(study, 0, 100) == [point(0.99, 9000)]  # its own chain is not a peer


# -- reading a front ----------------------------------------------------------------------------


def test_front_rows_and_csv():
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_metric_names(["val_accuracy", "params"])
    for values in ([0.9, 1000.0], [0.95, 5000.0], [0.8, 6000.0]):
        study.add_trial(
            optuna.trial.create_trial(
                values=values,
                params={"lr": 0.1},
                distributions={"lr": optuna.distributions.FloatDistribution(0.01, 1)},
            )
        )
    assert [t.number for t in front(study)] == [1, 0]  # the best primary first
    rows = front_rows(study)
    assert rows[0]["values"] == {"val_accuracy": 0.95, "params": 5000.0}
    text = front_csv(rows)
    assert text.splitlines()[0] == "trial,val_accuracy,params,best_step,mlflow_run_id,param.lr"


def test_hypervolume_in_two_dimensions():
    dirs = ("maximize", "minimize")
    assert hypervolume([(1.0, 0.0)], (0.0, 1.0), dirs) == 1.0
    assert hypervolume([(0.5, 0.0), (1.0, 0.5)], (0.0, 1.0), dirs) == pytest.approx(0.75)
    assert hypervolume([(-1.0, 0.0)], (0.0, 1.0), dirs) == 0.0  # beyond the reference
