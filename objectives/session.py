"""The loop's side of a running trial: what it asks whoever runs it, and what it hands back.

The loop (`runner.Objective.run`) trains a configuration; it decides nothing about the trial's
life. At every rung it hands the rung's scores to its `TrialSession` and gets a `Ruling`:
continue, pause (end now, the checkpoint kept: the scheduler may continue the trial later) or
stop (pruned). The session is the scheduler's (`tunelab.search.scheduler`): it reports to the
study, applies the study's pruning policy and knows which trials are never pruned.
`OptunaSession` is a session of plain Optuna, for a trial run on its own (unit tests,
notebooks): it reports through `trial.report` and asks the study's pruner.

A trial that does not complete ends with `TrialStopped` (pruned, paused, diverged or
infeasible, with its reason); any other exception is the trial's failure.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import optuna

if TYPE_CHECKING:
    from tunelab.objectives.checkpoints import TrialCheckpoint
    from tunelab.objectives.recorders import TrialRecorder
    from tunelab.objectives.training import TrialTraining


class Verdict(enum.Enum):
    """What a trial does after a rung."""

    CONTINUE = "continue"
    PAUSE = "pause"
    """End now with the checkpoint kept: a later continuation may take the trial up again."""
    STOP = "stop"
    """End now, pruned for good."""


@dataclass(frozen=True)
class Ruling:
    """A verdict and why."""

    verdict: Verdict
    """What the trial does."""
    reason: str = ""
    """Why, in words (recorded on the trial's run)."""


CONTINUE = Ruling(Verdict.CONTINUE)


class StopKind(enum.Enum):
    """How a trial that did not complete ended (its Optuna state is PRUNED in every case)."""

    PRUNED = "pruned"
    """The study's pruning policy stopped it at a rung."""
    PAUSED = "paused"
    """Stopped at a rung with its checkpoint kept, for a continuation."""
    DIVERGED = "diverged"
    """Its loss or a metric became non-finite, or it ran out of memory: the configuration's
    own doing, recorded as its reason."""
    INFEASIBLE = "infeasible"
    """It breaks a constraint known before training: ended untrained."""


class TrialStopped(optuna.TrialPruned):
    """The trial ends before completing (see StopKind); Optuna's own loop counts it pruned."""

    def __init__(self, kind: StopKind, reason: str, step: int | None = None) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.step = step
        """The step it stopped at (None before its first rung)."""


@dataclass(frozen=True)
class TrialResult:
    """What a complete trial hands back."""

    values: float | tuple[float, ...]
    """Its value, or its objectives' values (several objectives)."""
    best_step: int
    """The step whose weights it kept."""
    steps_run: int
    """The last step it trained to."""
    stopped: str | None = None
    """Why it ended before its budget: early-stopped, or deadline (None: its whole budget)."""


class TrialSession(Protocol):
    """What the loop needs from whoever runs its trial."""

    trial: optuna.trial.BaseTrial
    """The trial the task's parameters are suggested from."""
    recorder: TrialRecorder
    """Where the trial's run is recorded (its end is the runner's, not the loop's)."""
    checkpoint: TrialCheckpoint | None
    """The trial's checkpoints: saved at every rung, the one it resumes from (None: none)."""

    def started(self, training: TrialTraining) -> None:
        """The model is built, nothing trained: may raise TrialStopped (INFEASIBLE)."""

    def resumed(self, step: int, scores: Mapping[str, float] | None) -> None:
        """Training took up a checkpoint at `step`, saved with its rung's `scores` (None in a
        checkpoint of an older tunelab): a source killed between the checkpoint and its report
        left its curve without `step`, which the trial reports then."""

    def rung(self, step: int, scores: Mapping[str, float]) -> Ruling:
        """The rung's scores (the rung split's) at `step`: what the trial does next."""

    def result(self, value: float, scores: Mapping[str, float]) -> float | tuple[float, ...]:
        """What the trial returns to the study: `value`, the objective of its best weights
        (`scores`: every metric of those weights)."""


class OptunaSession:
    """A trial on its own, pruned by its study's Optuna pruner (no pause, no scheduler)."""

    def __init__(
        self,
        trial: optuna.trial.BaseTrial,
        metric: str,
        recorder: TrialRecorder,
        checkpoint: TrialCheckpoint | None = None,
    ) -> None:
        self.trial, self.metric = trial, metric
        self.recorder, self.checkpoint = recorder, checkpoint

    def started(self, training: TrialTraining) -> None:
        pass

    def resumed(self, step: int, scores: Mapping[str, float] | None) -> None:
        pass  # no checkpoints outside a study's scheduler

    def rung(self, step: int, scores: Mapping[str, float]) -> Ruling:
        value = float(scores[self.metric])
        self.trial.report(value, step)
        if self.trial.should_prune():
            return Ruling(Verdict.STOP, f"pruned at step {step} ({self.metric}={value:.5g})")
        return CONTINUE

    def result(self, value: float, scores: Mapping[str, float]) -> float:
        return value
