"""Rung policies: what a trial does at a rung, and which paused trials go on between trials.

One protocol, four policies, chosen by `--pruner` (see `make_policy`):

- `OptunaPruning`: an Optuna pruner decides (median, Hyperband, ASHA, patient); a pruned trial
  stops for good.
- `Halving`: successive halving that pauses, ASHA as its paper states it, thanks to checkpoints.
  Optuna's asynchronous version cannot suspend a trial, so it decides at once against the
  trials that reached the rung so far, and the first trials to arrive, having no competitors,
  are promoted to the end unchallenged: under a short time budget those few take most of it.
  At every decision rung (min_resource * rf**k steps) a trial continues only while it ranks in
  the top 1/rf of the configurations that reached the rung; otherwise it is *paused* (PRUNED,
  its checkpoint kept) and continued, exactly once across workers, when it ranks in the top
  1/rf again ("promote when possible"). Under a time budget a trial is promoted only if, at the
  speed it trained so far, it can finish its whole budget before the deadline; and once a new
  configuration could no longer finish either, a free worker continues the best paused trial
  that still can (the deepest rung first, from the better half of its rung) instead of
  starting configurations that can only be paused.
- `ParetoHalving`: several objectives (Optuna cannot prune there): successive halving among
  the trials that are at least as good on the other objectives, see `tunelab.search
  .multiobjective`; a trial is pruned when at least max(1, (|W|+1)//rf) of those W dominate it.
- `NoPruning`: every trial trains its whole budget.

The scheduler never asks a policy about a reference trial (the default configuration, the
anchors): those always continue.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from tunelab.objectives.budget import TrialBudget
from tunelab.objectives.checkpoints import CheckpointStore
from tunelab.objectives.session import CONTINUE, Ruling, Verdict
from tunelab.search.adapters.transient import retrying
from tunelab.search.multiobjective import StudyObjectives, rung_point
from tunelab.search.scheduler import lineage
from tunelab.search.strategies import REDUCTION_FACTOR

KEPT_PAUSED = 20
"""Paused trials whose checkpoints are kept per rung, the best first; the others are given
up (they would need many more competitors to rank in the top third)."""


@dataclass(frozen=True)
class RungReport:
    """A running trial at a rung, as a policy sees it."""

    trial: optuna.trial.BaseTrial
    """The live trial (an Optuna pruner reads its reports)."""
    root: int
    """Its configuration's root trial."""
    step: int
    """The rung's step."""
    point: Mapping[str, float]
    """Its objectives at the rung (static metrics included)."""
    value: float
    """Its primary objective at the rung."""
    trained_s: float
    """Seconds it has trained in this run."""
    trained_steps: int
    """Steps it has trained in this run (from where it resumed)."""


class RungPolicy(Protocol):
    """What a study's pruning does at a rung and between trials."""

    def decide(self, study: optuna.Study, report: RungReport) -> Ruling:
        """Continue, pause or stop the reporting trial."""

    def promote(self, study: optuna.Study, checkpoints: CheckpointStore | None) -> list[int]:
        """Queue continuations of paused trials that may go on now; returns their sources."""


class NoPruning:
    """Every trial trains its whole budget."""

    def decide(self, study: optuna.Study, report: RungReport) -> Ruling:
        return CONTINUE

    def promote(self, study: optuna.Study, checkpoints: CheckpointStore | None) -> list[int]:
        return []


class OptunaPruning(NoPruning):
    """The study's Optuna pruner decides (the trial reported its value already)."""

    def decide(self, study: optuna.Study, report: RungReport) -> Ruling:
        if report.trial.should_prune():
            return Ruling(Verdict.STOP, f"pruned at step {report.step} (value {report.value:.5g})")
        return CONTINUE


def decision_level(step: int, min_resource: int, reduction_factor: int) -> int | None:
    """The decision level of a step (0 for min_resource), None between levels."""
    ratio = step / min_resource
    level = round(math.log(ratio, reduction_factor)) if ratio >= 1 else -1
    return level if level >= 0 and min_resource * reduction_factor**level == step else None


def _better(a: float, b: float, direction: StudyDirection) -> bool:
    return a > b if direction == StudyDirection.MAXIMIZE else a < b


def rank_at(value: float, values: Sequence[float], direction: StudyDirection) -> int:
    """1 for the best of `values` (which holds `value` itself)."""
    return 1 + sum(_better(v, value, direction) for v in values)


@dataclass
class Halving:
    """Successive halving that pauses (see the module)."""

    min_resource: int
    """The first decision rung's step."""
    reduction_factor: int = REDUCTION_FACTOR
    max_step: int | None = None
    """The step at which a trial's budget ends."""
    deadline: float | None = None
    """Wall-clock end of the trials' time (time.time()), if any."""
    full_trial_s: float | None = None
    """Estimated seconds a new configuration needs for its whole budget (None: unknown)."""
    fastest_images_per_s: float | None = None
    """The fastest training seen in the study's finished trials (read by `promote`)."""

    def decide(self, study: optuna.Study, report: RungReport) -> Ruling:
        if decision_level(report.step, self.min_resource, self.reduction_factor) is None:
            return CONTINUE
        if not math.isfinite(report.value):
            return Ruling(Verdict.STOP, f"non-finite value at step {report.step}")
        values = retrying(lambda: lineage.rung_values(study, report.step))
        values[report.root] = report.value
        rank = rank_at(report.value, list(values.values()), study.direction)
        promoted = rank <= len(values) // self.reduction_factor
        # when no new configuration could finish either, a promoted trial trains on to the
        # deadline (it ends complete with its best weights): pausing it would free its worker
        # only for configurations that can never count
        if promoted and (
            self._finishes(report.trained_steps, report.trained_s, report.step)
            or self.hopeless(time.time())
        ):
            return CONTINUE
        return Ruling(
            Verdict.PAUSE,
            f"paused at step {report.step}: rank {rank} of {len(values)} "
            f"(value {report.value:.5g})",
        )

    def _finishes(self, trained_steps: int, seconds: float, step: int) -> bool:
        """Whether, at the speed it trained, a trial at `step` reaches the end of its budget
        before the deadline (True without a deadline)."""
        if self.deadline is None or self.max_step is None or trained_steps <= 0 or seconds <= 0:
            return True
        return time.time() + (self.max_step - step) * seconds / trained_steps <= self.deadline

    def can_finish(self, trial: FrozenTrial, step: int, now: float) -> bool:
        """`_finishes` for a paused trial, at the speed it trained from its start to `step`."""
        if trial.datetime_start is None:
            return True
        return self._finishes(*_trained(trial, step, now), step)

    def in_endgame(self, now: float) -> bool:
        """Whether a configuration started now could no longer finish before the deadline."""
        if self.deadline is None or self.full_trial_s is None:
            return False
        return now + self.full_trial_s > self.deadline

    def hopeless(self, now: float) -> bool:
        """Whether even a configuration as fast as the fastest seen could no longer finish
        before the deadline (the endgame's end: the default configuration's speed plans
        `in_endgame`, and smaller models finish in less)."""
        if self.deadline is None or self.max_step is None or not self.fastest_images_per_s:
            return False
        return now + self.max_step / self.fastest_images_per_s > self.deadline

    def promote(self, study: optuna.Study, checkpoints: CheckpointStore | None) -> list[int]:
        """Queue a continuation of every paused trial that now ranks in the top 1/rf of its
        rung (each exactly once, whichever worker gets there first); give up the checkpoints of
        paused trials ranked below the best KEPT_PAUSED of their rung; in the endgame, continue
        the best paused trial that can still finish. Returns the trials continued."""
        trials = study.get_trials(deepcopy=False)
        self.fastest_images_per_s = _fastest(trials)
        continued = lineage.successors(trials, lineage.CONTINUATION)
        by_step: dict[int, list[FrozenTrial]] = {}
        for trial in trials:
            if lineage.is_paused(trial) and trial.number not in continued:
                by_step.setdefault(lineage.paused_at(trial), []).append(trial)
        resumed: list[int] = []
        # step -> (configurations at the rung, [(rank, paused trial) kept, best first])
        kept: dict[int, tuple[int, list[tuple[int, FrozenTrial]]]] = {}
        now = time.time()
        for step, waiting in by_step.items():
            values = _values_at(trials, step)
            promotable = len(values) // self.reduction_factor
            ranked = sorted(
                (
                    (rank_at(t.intermediate_values[step], values, study.direction), t)
                    for t in waiting
                ),
                key=lambda pair: pair[0],
            )
            kept[step] = (len(values), [])
            for place, (rank, trial) in enumerate(ranked):
                if (
                    rank <= promotable
                    and self.can_finish(trial, step, now)
                    and lineage.queue_successor(study, trial, lineage.CONTINUATION)
                ):
                    resumed.append(trial.number)
                elif place >= KEPT_PAUSED and checkpoints is not None:
                    checkpoints.remove(trial.number)
                elif place < KEPT_PAUSED:
                    kept[step][1].append((rank, trial))
        if not resumed and self.in_endgame(now):
            endgame = self._endgame_pick(study, trials, kept, now)
            if endgame is not None:
                resumed.append(endgame)
        return resumed

    def _endgame_pick(
        self,
        study: optuna.Study,
        trials: Sequence[FrozenTrial],
        kept: dict[int, tuple[int, list[tuple[int, FrozenTrial]]]],
        now: float,
    ) -> int | None:
        """Continue the best paused trial that can still finish (deepest rung first), unless a
        queued trial already waits for the next free worker. Once no new configuration could
        finish (`hopeless`), the best paused trial even if it cannot: it trains to the deadline
        and ends complete with its best weights, where a new configuration could only be
        paused at its first rung and never count."""
        if any(t.state == TrialState.WAITING for t in trials):
            return None
        contenders = list(_contenders(kept))
        for step, trial in contenders:
            if self.can_finish(trial, step, now) and lineage.queue_successor(
                study, trial, lineage.CONTINUATION
            ):
                return trial.number
        if self.hopeless(now):
            for _, trial in contenders:
                if lineage.queue_successor(study, trial, lineage.CONTINUATION):
                    return trial.number
        return None


def _contenders(kept: dict[int, tuple[int, list[tuple[int, FrozenTrial]]]]):
    """(step, paused trial) of the better half of each rung's kept trials, the deepest rung
    first, best first: a trial behind most of its rung is unlikely to be the answer."""
    for step in sorted(kept, reverse=True):
        size, candidates = kept[step]
        contenders = max(1, (size + 1) // 2)
        for rank, trial in candidates:
            if rank > contenders:
                break
            yield step, trial


def _trained(trial: FrozenTrial, step: int, now: float) -> tuple[int, float]:
    """Steps a started trial trained from where it resumed to `step`, and the seconds from its
    start to its end (to `now` while it runs)."""
    ended = trial.datetime_complete.timestamp() if trial.datetime_complete else now
    return step - lineage.resumed_at(trial), ended - trial.datetime_start.timestamp()


def _fastest(trials: Sequence[FrozenTrial]) -> float | None:
    """The most training images per second any finished trial trained at (start-up and
    scoring included), None before any."""
    fastest = None
    for t in trials:
        if t.datetime_start is None or t.datetime_complete is None or not t.intermediate_values:
            continue
        trained, seconds = _trained(t, max(t.intermediate_values), t.datetime_complete.timestamp())
        if seconds > 0 and trained > 0:
            fastest = max(fastest or 0.0, trained / seconds)
    return fastest


def _values_at(trials: Sequence[FrozenTrial], step: int) -> list[float]:
    """The values every configuration reported at `step` (each counted once)."""
    seen: dict[int, float] = {}
    for t in trials:
        if step in t.intermediate_values:
            seen[lineage.root(t)] = t.intermediate_values[step]
    return list(seen.values())


def _better_by(a: float, b: float, direction: str) -> bool:
    return a > b if direction == "maximize" else a < b


@dataclass
class ParetoHalving(NoPruning):
    """Successive halving among the trials at least as good on the other objectives."""

    objectives: StudyObjectives
    min_resource: int
    """The first decision rung's step."""
    reduction_factor: int = REDUCTION_FACTOR

    def decides_at(self, step: int) -> bool:
        """Decision rungs: min_resource * rf**k."""
        return decision_level(step, self.min_resource, self.reduction_factor) is not None

    def prune(self, mine: Mapping[str, float], others: Sequence[Mapping[str, float]]) -> str | None:
        """Why a trial whose objectives at a rung are `mine` stops against `others` (their
        objectives at the same rung), or None if it continues."""
        primary, rest = self.objectives.primary, self.objectives.metrics[1:]
        peers = [
            o
            for o in others
            if all(not _better_by(mine[m.name], o[m.name], m.direction) for m in rest)
        ]
        beaten_by = sum(
            _better_by(o[primary.name], mine[primary.name], primary.direction) for o in peers
        )
        allowed = max(1, (len(peers) + 1) // self.reduction_factor)
        if beaten_by < allowed:
            return None
        return (
            f"dominated by {beaten_by} of the {len(peers)} trials at least as good on "
            f"{', '.join(m.name for m in rest)} ({primary.name} {mine[primary.name]:.5g})"
        )

    def others_at(self, study: optuna.Study, me: int, step: int) -> list[dict[str, float]]:
        """The objectives at `step` of every other configuration that reached it (once each)."""
        others: dict[int, dict[str, float]] = {}
        for trial in study.get_trials(deepcopy=False):
            if lineage.root(trial) == me:
                continue
            point = rung_point(trial, step)
            if point is not None and all(n in point for n in self.objectives.names):
                others[lineage.root(trial)] = point
        return list(others.values())

    def decide(self, study: optuna.Study, report: RungReport) -> Ruling:
        if not self.decides_at(report.step):
            return CONTINUE
        others = retrying(lambda: self.others_at(study, report.root, report.step))
        reason = self.prune(report.point, others)
        return CONTINUE if reason is None else Ruling(Verdict.STOP, reason)


def make_policy(
    name: str,
    budget: TrialBudget,
    objectives: StudyObjectives | None,
    timed: bool,
    deadline: float | None = None,
    full_trial_s: float | None = None,
) -> RungPolicy:
    """The rung policy of `--pruner name` for this study (see strategies.py for the names).
    `auto` is Hyperband, except in a study planned for a time budget, where it is `halving`:
    with the few trials a time budget affords, Hyperband's brackets each hold too few trials
    to compare. With several objectives, every pruning name but `none` is Pareto halving."""
    if name == "none":
        return NoPruning()
    if objectives is not None and objectives.multi:
        return ParetoHalving(objectives, budget.step(1))
    if name == "halving" or (name == "auto" and timed):
        return Halving(
            budget.step(1),
            REDUCTION_FACTOR,
            max_step=budget.max_step,
            deadline=deadline,
            full_trial_s=full_trial_s,
        )
    return OptunaPruning()


def pauses(policy: RungPolicy) -> bool:
    """Whether the policy pauses trials (their checkpoints must then be kept)."""
    return isinstance(policy, Halving)
