"""What a search found: configurations tried, how they ended, the best, the default beside it."""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from tunelab.objectives import keys
from tunelab.search.study.pareto import best_primary, primary_direction, primary_value


def _state(last: FrozenTrial) -> str:
    """How a configuration stands, by the last trial of its chain."""
    if last.state in (TrialState.RUNNING, TrialState.WAITING):
        return "running"
    if last.state == TrialState.PRUNED and last.user_attrs.get(keys.PAUSED_AT) is not None:
        return "paused"
    return {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}.get(last.state, "failed")


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

    @classmethod
    def of(cls, study: optuna.Study) -> SearchSummary:
        chains: dict[int, list[FrozenTrial]] = {}
        for t in study.get_trials(deepcopy=False):
            root = int(t.user_attrs.get(keys.ORIGINAL_TRIAL, t.number))
            chains.setdefault(root, []).append(t)
        lasts = [max(chain, key=lambda t: t.number) for chain in chains.values()]
        states = [_state(t) for t in lasts]
        best = best_primary(study)  # in a multi-objective study: the front's best primary
        default_root = next(
            (root for root, chain in chains.items() if chain[0].user_attrs.get(keys.DEFAULT_TRIAL)),
            0 if 0 in chains else None,  # studies of tunelab 0.1 enqueued it first, unmarked
        )
        default = None
        if default_root is not None:
            default = max(chains[default_root], key=lambda t: t.number)
        return cls(
            configurations=len(lasts),
            past_first_rung=sum(
                any(t.intermediate_values for t in chains[root]) for root in chains
            ),
            complete=states.count("complete"),
            pruned=states.count("pruned"),
            paused=states.count("paused"),
            failed=states.count("failed"),
            running=states.count("running"),
            at_deadline=sum(bool(t.user_attrs.get(keys.STOPPED_AT_DEADLINE)) for t in lasts),
            best=best,
            default=default,
            direction=primary_direction(study),
        )

    def counts(self) -> str:
        deadline = f" ({self.at_deadline} ended by the time budget)" if self.at_deadline else ""
        paused = f", {self.paused} paused" if self.paused else ""
        running = f", {self.running} running" if self.running else ""
        return (
            f"{self.configurations} configurations tried ({self.past_first_rung} past their "
            f"first rung): {self.complete} complete{deadline}, {self.pruned} pruned{paused}, "
            f"{self.failed} failed{running}"
        )

    def against_default(self, metric: str) -> str | None:
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
            f"{default.state.name.lower()} at step {step:,} with {metric} {theirs:.6g}; "
            f"the best trial had {mine:.6g} there"
        )
