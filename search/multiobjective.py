"""Multi-objective studies and constraints: what a study optimizes, and how it still prunes.

`--objectives val_accuracy,params` makes a study search for a Pareto front; each task says in
`Task.metrics()` which metrics it offers, their directions and which are *static* (known from
the built model before training: parameters, MACs, latency). The first objective is the
primary: it must be scored during training, since the loop keeps the weights, stops early and
prunes on it. `--constraint 'params<=100000'` bounds a metric; every constraint value goes to
Optuna with `trial.set_constraint` (positive = broken), which its samplers (TPE, NSGA-II, GP)
read to learn where the feasible region is. A constraint on a static metric is checked before
training: a configuration that breaks it ends at once, PRUNED and untrained, with its reason
in `tunelab.fail_reason`, and its constraint values still tell the sampler it is infeasible.

Pruning (Optuna's `trial.report` raises in multi-objective studies, so this is tunelab's):
*successive halving among the trials that are at least as good on the other objectives*.
At the decision rungs of successive halving (min_resource * rf**k), let W be the trials that
reached the rung and are at least as good as this trial on every objective but the primary
(static objectives exactly, curve-based ones at the rung). Only trials of W can dominate this
trial on the front; it ends on the front exactly when its primary beats every one of them.
So the trial is compared on its primary with W alone, as successive halving compares with all:
it continues while it ranks in the top 1/rf of W and itself (at least first place counts), and
is pruned otherwise. In words: a trial is pruned when, at a rung, at least max(1, (|W|+1)//rf)
trials dominate it there. Consequences: a trial on the current front at its rung is never
pruned; the smallest configuration so far (W empty) is never pruned, so the cheap end of the
front is always trained out; with a single objective W is every trial and the rule is plain
successive halving; the task's default configuration and its anchors (a size objective's
ladder of sizes) are never pruned (the scheduler's rule): they are the front's reference points.
The rule is the scheduler's `ParetoHalving` policy (`tunelab.search.scheduler.policies`); this
module says what a study optimizes and how a trial's scores reach it (`StudyReports`).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from tunelab.objectives import keys
from tunelab.objectives.base import Task
from tunelab.objectives.metrics import MetricInfo
from tunelab.objectives.session import StopKind, TrialStopped
from tunelab.objectives.training import TrialTraining
from tunelab.search.spec import SpecError, StudySpec

MULTI_OBJECTIVE_PRUNERS = ("auto", "halving", "asha", "none")
"""--pruner values a multi-objective study accepts: Pareto successive halving, or none."""
SINGLE_OBJECTIVE_SAMPLERS = ("cmaes",)
"""Samplers that cannot search for several objectives."""
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w./-]*)\s*(<=|>=)\s*([-+0-9.eE_]+)\s*$")


@dataclass(frozen=True)
class Constraint:
    """`metric <= bound` or `metric >= bound`."""

    metric: str
    op: str
    bound: float

    @property
    def text(self) -> str:
        return f"{self.metric}{self.op}{self.bound:g}"

    def violation(self, value: float) -> float:
        """Optuna's constraint value: > 0 when broken, by how much."""
        return value - self.bound if self.op == "<=" else self.bound - value

    @classmethod
    def parse(cls, text: str) -> Constraint:
        match = _CONSTRAINT.match(text)
        bound = None
        if match:
            try:
                bound = float(match.group(3).replace("_", ""))
            except ValueError:
                bound = None
        if not match or bound is None or not math.isfinite(bound):
            raise SpecError(
                f"--constraint '{text}': write METRIC<=NUMBER or METRIC>=NUMBER, "
                "e.g. 'params<=100000'"
            )
        return cls(match.group(1), match.group(2), bound)


@dataclass(frozen=True)
class StudyObjectives:
    """What a study optimizes and the constraints it keeps, checked against its task."""

    metrics: tuple[MetricInfo, ...]
    """The objectives, the primary first."""
    constraints: tuple[Constraint, ...] = ()
    """The constraints, in the order given."""
    static_names: frozenset[str] = frozenset()
    """The task's static metrics (measured before training)."""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics)

    @property
    def directions(self) -> tuple[str, ...]:
        return tuple(m.direction for m in self.metrics)

    @property
    def primary(self) -> MetricInfo:
        return self.metrics[0]

    @property
    def multi(self) -> bool:
        return len(self.metrics) > 1

    @property
    def active(self) -> bool:
        """Whether the study needs more than Optuna's single-objective report and pruner."""
        return self.multi or bool(self.constraints)

    @property
    def used_metrics(self) -> frozenset[str]:
        """The metrics the study optimizes or constrains."""
        return frozenset(m.name for m in self.metrics) | {c.metric for c in self.constraints}

    @property
    def needs_static(self) -> bool:
        return bool(self.used_metrics & self.static_names)

    def study_arguments(self) -> dict[str, Any]:
        """`optuna.create_study`'s direction(s)."""
        if self.multi:
            return {"directions": list(self.directions)}
        return {"direction": self.primary.direction}


def resolve_objectives(spec: StudySpec, task: Task) -> StudyObjectives:
    """The spec's objectives and constraints checked against the task (SpecError with one
    line); makes the primary objective the task's metric, so the loop judges weights on it."""
    offered = {m.name: m for m in task.metrics()}
    known = ", ".join(offered)
    names = spec.objectives or (task.metric,)
    unknown = [n for n in names if n not in offered]
    if unknown:
        raise SpecError(f"unknown objective '{unknown[0]}' for task {task.name}; known: {known}")
    if len(set(names)) != len(names):
        raise SpecError(f"--objectives names a metric twice: {','.join(names)}")
    primary = offered[names[0]]
    if primary.static:
        scored = ", ".join(n for n, m in offered.items() if not m.static)
        raise SpecError(
            f"the first objective is the primary and must be scored during training "
            f"({scored}), not '{primary.name}' (known before training): list it later"
        )
    constraints = tuple(Constraint.parse(text) for text in spec.constraints)
    for c in constraints:
        if c.metric not in offered:
            raise SpecError(f"--constraint '{c.text}': unknown metric '{c.metric}'; known: {known}")
    if len(names) > 1 and spec.pruner not in MULTI_OBJECTIVE_PRUNERS:
        raise SpecError(
            f"--pruner {spec.pruner} needs a single objective; a multi-objective study prunes "
            "with auto (successive halving among the trials at least as good on the other "
            "objectives) or none"
        )
    if len(names) > 1 and spec.sampler in SINGLE_OBJECTIVE_SAMPLERS:
        raise SpecError(f"--sampler {spec.sampler} searches for a single objective only")
    if task.metric != primary.name:  # the loop judges, stops early and prunes on the primary
        task.metric = primary.name
        task.direction = primary.direction  # type: ignore[misc] (per instance, on purpose)
    return StudyObjectives(
        metrics=tuple(offered[n] for n in names),
        constraints=constraints,
        static_names=frozenset(n for n, m in offered.items() if m.static),
    )


# -- the loop's side ---------------------------------------------------------------------------


def rung_point(trial: FrozenTrial, step: int) -> dict[str, float] | None:
    """A trial's objectives at a rung: its static metrics and its scores there."""
    scores = trial.user_attrs.get(keys.RUNG_SCORES, {}).get(str(step))
    if scores is None:
        return None
    return {**trial.user_attrs.get(keys.STATIC_METRICS, {}), **scores}


def set_constraint(trial: optuna.trial.BaseTrial, constraint: Constraint, value: float) -> None:
    """Record a constraint value (Optuna keeps the first: a retry carries its source's)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "already set": the same value, kept
        trial.set_constraint(constraint.text, value)


class StudyReports:
    """How a trial's scores reach its study: with one objective, Optuna's `trial.report` of
    the metric; with several or with constraints, also the static metrics and constraints
    before training, the objectives at every rung (a trial user attribute: Optuna keeps
    intermediate values for one objective only), and the objectives' values at the end."""

    def __init__(self, metric: str, objectives: StudyObjectives | None = None) -> None:
        self.metric = metric
        """The primary objective (the task's metric)."""
        self.objectives = objectives
        self._static: dict[int, dict[str, float]] = {}
        self._rungs: dict[int, dict[str, dict[str, float]]] = {}

    @property
    def multi(self) -> bool:
        return self.objectives is not None and self.objectives.multi

    def start(self, trial, training: TrialTraining, recorder) -> None:
        """Before training: measure the built model's static metrics where the study uses
        them; raise TrialStopped (infeasible) when it breaks a constraint on them."""
        objectives = self.objectives
        if objectives is None or not objectives.needs_static:
            return
        static = {
            k: float(v)
            for k, v in training.task.static_metrics(training.parts, training.data).items()
        }
        self._static[trial.number] = static
        trial.set_user_attr(keys.STATIC_METRICS, static)
        recorder.log_metrics(static, step=0)
        broken = []
        for c in objectives.constraints:
            if c.metric in static:
                violation = c.violation(static[c.metric])
                set_constraint(trial, c, violation)
                if violation > 0:
                    broken.append(f"{c.text} ({c.metric} = {static[c.metric]:.6g})")
        if broken:
            reason = "infeasible before training: breaks " + "; ".join(broken)
            trial.set_user_attr(keys.INFEASIBLE, [b.split(" ")[0] for b in broken])
            raise TrialStopped(StopKind.INFEASIBLE, reason)

    def report(self, trial, step: int, scores: Mapping[str, float]) -> dict[str, float]:
        """Report the rung's scores; returns the trial's objectives there (static included)."""
        if not self.multi:
            trial.report(float(scores[self.metric]), step)
            return {self.metric: float(scores[self.metric])}
        assert self.objectives is not None
        rungs = self._rungs.setdefault(
            trial.number, dict(trial.user_attrs.get(keys.RUNG_SCORES, {}))
        )
        rungs[str(step)] = {n: float(scores[n]) for n in self.objectives.names if n in scores}
        trial.set_user_attr(keys.RUNG_SCORES, rungs)
        static = self._static.get(trial.number, trial.user_attrs.get(keys.STATIC_METRICS, {}))
        return {**static, **rungs[str(step)]}

    def result(self, trial, value: float, scores: Mapping[str, float], recorder):
        """What the trial returns to the study: its value, or its objectives' values; the
        constraints on what training measured are recorded."""
        static = self._static.pop(trial.number, trial.user_attrs.get(keys.STATIC_METRICS, {}))
        self._rungs.pop(trial.number, None)
        if self.objectives is None:
            return value
        known = {**scores, **static}
        for c in self.objectives.constraints:
            if c.metric not in static and c.metric in known:
                set_constraint(trial, c, c.violation(known[c.metric]))
        if not self.multi:
            return value
        values = [value] + [float(known[m.name]) for m in self.objectives.metrics[1:]]
        recorder.log_metrics(
            {
                f"best_{n}": v
                for n, v in zip(self.objectives.names, values, strict=True)
                if n not in static
            }
        )
        return tuple(values)


# -- the study's side --------------------------------------------------------------------------


def study_directions(objectives: StudyObjectives | None, task: Task) -> dict[str, Any]:
    """`optuna.create_study`'s direction, or directions for several objectives."""
    if objectives is None:
        return {"direction": task.direction}
    return objectives.study_arguments()


def name_objectives(study: optuna.Study, objectives: StudyObjectives | None) -> None:
    """Name a new multi-objective study's values (optuna-dashboard and plots show them)."""
    if objectives is not None and objectives.multi:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(objectives.names))
