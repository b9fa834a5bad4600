"""What a search found: configurations tried, how they ended and why, the best, the default
beside it, and whether the whole search diverged."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from tunelab.objectives import keys
from tunelab.search.scheduler import lineage
from tunelab.search.study.pareto import best_primary, primary_direction, primary_value

BY_THE_PRUNER = "by the pruner"
"""The reason of a configuration pruned at a rung by the study's pruning policy (such a trial
records no fail reason of its own: the decision is the pruner's, not the configuration's)."""
DIVERGED_PREFIXES = ("non-finite", "mode collapse")
"""Reasons that mean a configuration's training diverged (objectives/training.py's
`check_finite`, the scheduler's non-finite rung value, the GAN's mode collapse)."""
INTERRUPTED = "interrupted"
"""The fail reason of an interrupted trial: `tunelab.objectives.runner.INTERRUPTED`, repeated
here because importing the trial loop imports torch, which reading a study does not need
(tests/search/study/test_summary.py checks they agree)."""
_PARENTHESES = re.compile(r"\s*\([^()]*\)")
_POSITION = re.compile(r"\s+(?:in epoch|at step|at epoch|at rung)\s+[\d,]+\s*$")


def counted(n: int, singular: str, plural: str | None = None) -> str:
    """'1 epoch', '2 epochs': a count with its noun in the right number."""
    return f"{n:,} {singular if n == 1 else plural or singular + 's'}"


def position(step: int | None, unit: str) -> str:
    """Where a trial stood, in the study's unit: '1,257 training images' or 'epoch 3' (a
    step counts training images, or epochs in studies of tunelab 0.1)."""
    if step is None:
        return "?"
    return f"epoch {step}" if unit == "epochs" else counted(int(step), "training image")


def reason_kind(reason: str) -> str:
    """A fail reason without what varies between trials (the value, the epoch, the step), so
    that trials that ended for the same reason count together: 'non-finite train_loss (nan)
    in epoch 3' -> 'non-finite train_loss'."""
    text = " ".join(reason.split())
    for fixed in ("mode collapse", "infeasible before training"):
        if text.startswith(fixed):  # the rest names this trial's numbers
            return fixed
    text = _POSITION.sub("", _PARENTHESES.sub("", text)).strip()
    return text[:120] + ("..." if len(text) > 120 else "")


def is_divergence(reason: str | None) -> bool:
    return bool(reason) and reason_kind(reason).startswith(DIVERGED_PREFIXES)


def _state(last: FrozenTrial) -> str:
    """How a configuration stands, by the last trial of its chain."""
    if last.state in (TrialState.RUNNING, TrialState.WAITING):
        return "running"
    if lineage.is_paused(last):
        return "paused"
    if last.state == TrialState.FAIL and keys.trial_attr(last, keys.FAIL_REASON) == INTERRUPTED:
        return "interrupted"
    return {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}.get(last.state, "failed")


def ending_reason(trial: FrozenTrial) -> str | None:
    """Why a trial did not complete, as the summary groups it (None: it completed or runs)."""
    state = _state(trial)
    if state in ("complete", "running"):
        return None
    if state == "paused":
        return "paused by successive halving"
    if state == "interrupted":
        return INTERRUPTED
    reason = keys.trial_attr(trial, keys.FAIL_REASON)
    if reason:
        return reason_kind(str(reason))
    return BY_THE_PRUNER if state == "pruned" else "no reason recorded"


@dataclass(frozen=True)
class SearchSummary:
    """A study's configurations, counted, with its best and its default configuration.

    A configuration is a trial with every retry and continuation that took it up again (one
    chain); it counts once, in the state its last trial ended in.
    """

    configurations: int
    """Configurations that trained."""
    past_first_rung: int
    """Configurations that reached their first rung (reported at least once)."""
    complete: int
    pruned: int
    paused: int
    """Paused by successive halving and not taken up again (so far): pruned, in effect."""
    failed: int
    """Failed, interrupted ones included."""
    running: int
    """Running, or queued to be taken up again."""
    at_deadline: int
    """Complete configurations the time budget ended early (valued at their best so far)."""
    best: FrozenTrial | None
    """The best complete trial."""
    default: FrozenTrial | None
    """The last trial of the task's default configuration."""
    direction: str
    """maximize or minimize."""
    reasons: tuple[tuple[str, str, int], ...] = ()
    """Why configurations did not complete: (state, reason, configurations), most first;
    state is pruned, paused, failed or interrupted."""
    diverged_count: int = 0
    """Configurations whose training diverged (a non-finite loss or metric, a collapse)."""

    @classmethod
    def of(cls, study: optuna.Study) -> SearchSummary:
        chains = lineage.chains(study.get_trials(deepcopy=False))
        lasts = [max(chain, key=lambda t: t.number) for chain in chains.values()]
        states = [_state(t) for t in lasts]
        best = best_primary(study)  # in a multi-objective study: the front's best primary
        default_root = next(
            (root for root, chain in chains.items() if lineage.is_default(chain[0])),
            0 if 0 in chains else None,  # studies of tunelab 0.1 enqueued it first, unmarked
        )
        default = None
        if default_root is not None:
            default = max(chains[default_root], key=lambda t: t.number)
        why = Counter(
            (state, ending_reason(t))
            for t, state in zip(lasts, states, strict=True)
            if state not in ("complete", "running")
        )
        return cls(
            configurations=len(lasts),
            past_first_rung=sum(
                any(t.intermediate_values for t in chains[root]) for root in chains
            ),
            complete=states.count("complete"),
            pruned=states.count("pruned"),
            paused=states.count("paused"),
            failed=states.count("failed") + states.count("interrupted"),
            running=states.count("running"),
            at_deadline=sum(bool(t.user_attrs.get(keys.STOPPED_AT_DEADLINE)) for t in lasts),
            best=best,
            default=default,
            direction=primary_direction(study),
            reasons=tuple(
                (state, str(reason), n)
                for (state, reason), n in sorted(why.items(), key=lambda kv: (-kv[1], kv[0]))
            ),
            diverged_count=sum(
                state == "pruned" and is_divergence(keys.trial_attr(t, keys.FAIL_REASON))
                for t, state in zip(lasts, states, strict=True)
            ),
        )

    def counts(self) -> str:
        deadline = f" ({self.at_deadline} ended by the time budget)" if self.at_deadline else ""
        paused = f", {self.paused} paused" if self.paused else ""
        running = f", {self.running} running" if self.running else ""
        return (
            f"{counted(self.configurations, 'configuration')} tried ({self.past_first_rung} "
            f"past their first rung): {self.complete} complete{deadline}, {self.pruned} "
            f"pruned{paused}, {self.failed} failed{running}"
        )

    def reason_lines(self) -> list[str]:
        """One line per reason configurations did not complete: '2 pruned: non-finite
        train_loss', '1 pruned by the pruner', '3 failed: RuntimeError: boom'."""
        lines = []
        for state, reason, n in self.reasons:
            if state in ("paused", "interrupted"):
                lines.append(f"{n} {reason}")
            elif reason == BY_THE_PRUNER:
                lines.append(f"{n} pruned {reason}")
            else:
                lines.append(f"{n} {state}: {reason}")
        return lines

    @property
    def diverged(self) -> bool:
        """The search diverged: no configuration completed, and every one that ended other
        than by an error (those say why themselves) diverged."""
        ended = self.configurations - self.running - self.failed
        return self.complete == 0 and self.diverged_count > 0 and self.diverged_count == ended

    def diverged_line(self) -> str:
        """The one line that says a search diverged, with what to try."""
        kinds = sorted({r for s, r, _ in self.reasons if s == "pruned" and is_divergence(r)})
        n = self.diverged_count
        every = "the one configuration" if n == 1 else f"all {n} configurations"
        return (
            f"the search diverged: {every} that ended stopped on {' / '.join(kinds)}, "
            "none completed; check the loss, or narrow the learning rate's range "
            "(`params:` in --config)"
        )

    def against_default(self, metric: str, unit: str = "images") -> str | None:
        """How the best trial compares with the default configuration, in one line."""
        best, default = self.best, self.default
        if best is None or default is None:
            return None
        sign = 1 if self.direction == "maximize" else -1
        if best.number == default.number:
            return f"the best is the default configuration (trial {default.number})"
        if default.state == TrialState.COMPLETE and primary_value(default) is not None:
            gain = sign * (primary_value(best) - primary_value(default))
            return (
                f"{'+' if gain >= 0 else '-'}{abs(gain):.4g} {metric} over the default "
                f"configuration (trial {default.number}: {primary_value(default):.6g})"
            )
        steps = sorted(set(default.intermediate_values) & set(best.intermediate_values))
        if not steps:
            return f"the default configuration (trial {default.number}) has no score to compare"
        step = steps[-1]
        mine, theirs = best.intermediate_values[step], default.intermediate_values[step]
        return (
            f"the default configuration (trial {default.number}) was "
            f"{default.state.name.lower()} at {position(step, unit)} with {metric} {theirs:.6g}; "
            f"the best trial had {mine:.6g} there"
        )
