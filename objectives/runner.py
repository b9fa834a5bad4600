"""The one shared trial loop, for every task.

`Objective.run(session)` trains one configuration (`training.TrialTraining` owns the batches):
at every rung (a fixed number of training images, see `budget.py`) it scores the model on the
rung split, logs the rung in one call, saves a checkpoint and asks its session what to do next
(continue, pause, stop); it keeps the best weights, judged on the whole validation split at
every epoch's end, stops early when they stall and ends at the study's deadline. At the end it
scores the best weights on the whole validation split: that is the trial's value, and the
task's final metrics and artifacts follow. A non-finite loss or metric, or a configuration too
big for its device, ends the trial as diverged with its reason; the study goes on.

The loop decides nothing about the trial's life: the session does (the scheduler's, in
`tunelab.search.scheduler`, or `OptunaSession` for a trial on its own), and the runner that
called it ends the trial's run once the study has stored how the trial ended. A trial that
takes up a checkpoint (a retry, or a paused trial's continuation) resumes exactly where its
source's last rung left it: weights, optimizer and scheduler states, random streams, epoch
order and position in it.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any

import optuna
import torch

from tunelab.objectives import keys
from tunelab.objectives.base import Parts, Task
from tunelab.objectives.budget import JUDGE_VAL_PER_TRAIN
from tunelab.objectives.checkpoints import TrialCheckpoint
from tunelab.objectives.data import DataBundle, Split
from tunelab.objectives.interruptions import interruption_in
from tunelab.objectives.recorders import NullRecorder, RunStatus, TrialRecorder
from tunelab.objectives.session import (
    OptunaSession,
    StopKind,
    TrialResult,
    TrialSession,
    TrialStopped,
    Verdict,
)
from tunelab.objectives.space import SearchSpace
from tunelab.objectives.training import (
    OUT_OF_MEMORY,
    Diverged,
    LoopConfig,
    TrainingState,
    TrialTraining,
    check_finite,
    trial_seed,
)

RUNG_PREFIX = "rung/"
"""MLflow name prefix of the metrics scored on the rung split at every rung."""
INTERRUPTED = "interrupted"
"""The reason of a trial ended by Ctrl-C or SIGTERM."""


class Objective:
    """One task's trials on one data set: `run(session)` trains one, start to finish."""

    def __init__(self, task: Task, data: DataBundle, space: SearchSpace, loop: LoopConfig) -> None:
        self.task = task
        self.data = data.channels_last()
        self.space = space
        self.loop = loop
        self._rung_split: Split | None = None

    @property
    def rung_split(self) -> Split:
        """The part of the validation split scored at every rung (fixed for the study)."""
        if self._rung_split is None:
            size = self.loop.rung_val_images
            val = self.data.val
            self._rung_split = val if size is None else val.head(size)
        return self._rung_split

    @property
    def judges_on_rungs(self) -> bool:
        """Whether the rung scores choose the best weights: when the rung split is all of
        validation, or when scoring all of it at every epoch's end would cost too much."""
        val = self.data.val
        return self._rungs_see_val or len(val) > JUDGE_VAL_PER_TRAIN * len(self.data.train)

    @property
    def judges_on_subset(self) -> bool:
        """Whether the best weights are chosen on the rung split, a part of validation only."""
        return self.judges_on_rungs and not self._rungs_see_val

    @property
    def _rungs_see_val(self) -> bool:
        """Whether a rung scores all of validation (then its scores are logged as such)."""
        return self.rung_split is self.data.val

    # -- one trial -----------------------------------------------------------------------

    def run(self, session: TrialSession) -> TrialResult:
        """Train the session's trial to its end. Raises TrialStopped when it does not complete
        (pruned, paused, diverged, infeasible); any other exception is the trial's failure."""
        task, trial, recorder = self.task, session.trial, session.recorder
        hp = task.suggest(trial, self.space)
        training = TrialTraining(
            task, hp, self.data, self.loop, trial_seed(self.loop.seed, trial.number)
        )
        try:
            recorder.log_params(flat_params(hp))
            session.started(training)
            tags = task.trial_tags(self.data)
            if tags:
                recorder.set_tags(tags)
            self._resume(session, training)
            return self._train(session, training)
        except (Diverged, *OUT_OF_MEMORY) as error:
            # the configuration's own doing (diverged, or too big for the device): it ends as
            # pruned, so the sampler learns from it, and it is no failure of the worker
            reason = "out_of_memory" if isinstance(error, OUT_OF_MEMORY) else str(error)
        finally:
            task.release(training.parts)  # however it ended (a function's thread stops)
        del training
        _free_device_memory()
        raise TrialStopped(StopKind.DIVERGED, reason)

    def __call__(
        self,
        trial: optuna.trial.BaseTrial,
        recorder: TrialRecorder | None = None,
        checkpoint: TrialCheckpoint | None = None,
    ) -> float | tuple[float, ...]:
        """One trial on its own (unit tests, notebooks): pruned by its study's Optuna pruner,
        its run ended here with the status of its outcome."""
        recorder = recorder or NullRecorder()
        session = OptunaSession(trial, self.task.metric, recorder, checkpoint)
        try:
            result = self.run(session)
        except BaseException as error:
            ending = ending_of(error)
            if ending.fail_reason:
                trial.set_user_attr(keys.FAIL_REASON, ending.fail_reason)
                recorder.set_tags({keys.FAIL_REASON: ending.fail_reason})
            recorder.end(ending.status, ending.reason)
            if checkpoint is not None and not ending.keeps_checkpoint:
                checkpoint.drop()
            interruption = interruption_in(error)
            if interruption is not None and interruption is not error:
                raise interruption from None  # a library renamed it: still an interruption
            raise
        for key, value in result_attrs(result).items():
            trial.set_user_attr(key, value)
        recorder.end("FINISHED")
        if checkpoint is not None:
            checkpoint.drop()
        return result.values

    # -- training, rung by rung ----------------------------------------------------------

    def _train(self, session: TrialSession, training: TrialTraining) -> TrialResult:
        task, loop, state, recorder = self.task, self.loop, training.state, session.recorder
        budget = loop.budget
        if state.rungs < budget.max_rungs and state.stopped is None:
            for epoch_end in training.steps():
                if training.rung_due():
                    self._rung(session, training)
                if epoch_end:
                    if not self.judges_on_rungs:
                        self._judge(training, recorder)
                    files = task.epoch_artifacts(
                        training.parts, training.hp, self.data, training.context()
                    )
                    if files:
                        recorder.log_artifacts(files)
                if state.stopped is None and training.progress - state.best_progress >= (
                    loop.patience
                ):
                    state.stopped = "early-stopped"
                if state.stopped or state.rungs >= budget.max_rungs:
                    break
                if loop.deadline is not None and time.time() >= loop.deadline:
                    # the time budget is spent: end now, with the best weights so far
                    if state.rungs == 0:
                        raise TrialStopped(
                            StopKind.PRUNED, "the time budget ended before its first rung"
                        )
                    state.stopped = "deadline"
                    break
        if state.judged_images != state.images:  # the last weights have not been judged yet
            if self.judges_on_rungs:  # on the split the others were judged on
                self._judge(training, recorder, self.rung_scores(training), self._rungs_see_val)
            else:
                self._judge(training, recorder)
        return self._finish(session, training)

    def _rung(self, session: TrialSession, training: TrialTraining) -> None:
        """Score the rung split, log, checkpoint; then ask the session what comes next."""
        loop, state, recorder = self.loop, training.state, session.recorder
        state.rungs += 1
        step = loop.budget.step(state.rungs)
        train_metrics = training.means.pop()
        check_finite(train_metrics, state.epoch)
        scores = self.rung_scores(training)
        recorder.log_metrics(
            {
                **train_metrics,
                **{RUNG_PREFIX + name: v for name, v in scores.items()},
                "epoch": training.progress,
            },
            step=step,
        )
        if self.judges_on_rungs:
            self._judge(training, recorder, scores, logged=self._rungs_see_val)
        if session.checkpoint is not None:  # before the report: a report has its checkpoint
            session.checkpoint.save(_checkpoint_payload(training, scores))
        ruling = session.rung(step, scores)
        if ruling.verdict is Verdict.PAUSE:
            raise TrialStopped(StopKind.PAUSED, ruling.reason or f"paused at step {step}", step)
        if ruling.verdict is Verdict.STOP:
            raise TrialStopped(StopKind.PRUNED, ruling.reason or f"pruned at step {step}", step)

    def rung_scores(self, training: TrialTraining) -> dict[str, float]:
        """The training's current weights scored on the rung split."""
        # scores on all of validation judge the weights: float32 (LoopConfig.precision)
        arithmetic = nullcontext() if self._rungs_see_val else training.rung_arithmetic()
        with arithmetic:
            scores = self.task.evaluate(
                training.parts, training.hp, self.data, self.rung_split, training.context()
            )
        check_finite(scores, training.state.epoch)
        return scores

    def _judge(
        self,
        training: TrialTraining,
        recorder: TrialRecorder,
        scores: dict[str, float] | None = None,
        logged: bool = True,
    ) -> None:
        """Score the current weights on all of validation (at epoch ends and at the end), or
        take the given `scores`, and keep the weights if they are the best so far. A tie goes
        to the later weights: they trained longer."""
        task, state = self.task, training.state
        if scores is None:
            scores = task.evaluate(
                training.parts, training.hp, self.data, self.data.val, training.context()
            )
            check_finite(scores, state.epoch)
        step = training.step_now()
        if logged:
            recorder.log_metrics(scores, step=step)
        value = float(scores[task.metric])
        state.judged_images = state.images
        if state.best_value is None or not task.better(state.best_value, value):
            state.best_value, state.best_step = value, step
            state.best_progress = training.progress
            state.best_weights = training.parts.module_state()

    def _finish(self, session: TrialSession, training: TrialTraining) -> TrialResult:
        """The best weights scored on the whole validation split, then the task's final
        metrics and artifacts."""
        task, state, recorder = self.task, training.state, session.recorder
        parts, hp = training.parts, training.hp
        best_step = state.best_step
        last = None
        if self.judges_on_subset and best_step != training.step_now():
            # a part of validation chose the best weights: the last ones, at the end of the
            # schedule, are scored on all of it too, and kept if they score at least as well
            last = (parts.module_state(), training.step_now(), training.progress)
            last_scores = task.evaluate(parts, hp, self.data, self.data.val, training.context())
        parts.load_module_state(state.best_weights)
        scores = task.evaluate(parts, hp, self.data, self.data.val, training.context())
        check_finite(scores, state.epoch)
        value = float(scores[task.metric])
        if last is not None and not task.better(value, float(last_scores[task.metric])):
            state.best_weights, state.best_step, state.best_progress = last
            best_step = state.best_step
            parts.load_module_state(state.best_weights)
            scores, value = last_scores, float(last_scores[task.metric])
        if self.judges_on_subset:
            recorder.log_metrics(scores, step=best_step)  # no epoch scored all of validation
        final = task.finalize(parts, hp, self.data)
        check_finite(final.metrics, state.epoch)
        summary = {
            f"best_{task.metric}": value,
            "best_step": best_step,
            "best_epoch": state.best_progress,
        }
        recorder.log_metrics({**summary, **final.metrics}, step=best_step)
        recorder.log_artifacts(
            {
                "config.json": json.dumps(flat_params(hp), indent=2).encode(),
                "checkpoint/best.pt": _best_checkpoint(task, hp, parts, state, value, best_step),
                **final.artifacts,
            }
        )
        if state.stopped:
            recorder.set_tags({keys.STOPPED_TAG: state.stopped})
        values = session.result(value, {**scores, **final.metrics})
        return TrialResult(
            values=values,
            best_step=best_step,
            steps_run=training.step_now(),
            stopped=state.stopped,
        )

    # -- resuming from a checkpoint ------------------------------------------------------

    def _resume(self, session: TrialSession, training: TrialTraining) -> None:
        """Continue from the checkpoint of the trial taken up here, when there is one."""
        if session.checkpoint is None:
            return
        payload = session.checkpoint.load(self.loop.device)
        if payload is None:
            return
        training.parts.load_state_dict(payload["parts"])
        training.generator.set_state(payload["generator"].to("cpu"))
        torch.set_rng_state(payload["torch_rng"].to("cpu"))
        training.state = TrainingState(**payload["loop"])
        session.resumed(self.loop.budget.step(training.state.rungs), payload.get("rung_scores"))


@dataclass(frozen=True)
class Ending:
    """How a trial that raised ends: its run's status, why, and whether its checkpoint stays."""

    status: RunStatus
    """Its MLflow run's status: KILLED (pruned) or FAILED."""
    reason: str
    """Why it ended (the run's end reason)."""
    fail_reason: str | None
    """Recorded as the trial's fail reason (None: a pruning decision needs none)."""
    keeps_checkpoint: bool
    """A paused, interrupted or failed trial keeps it: a continuation or a retry resumes it."""
    stop: TrialStopped | None = None
    """The stop, when the trial was stopped."""


def ending_of(error: BaseException) -> Ending:
    """How the trial ends, given what its run raised."""
    if isinstance(error, TrialStopped):
        kept = error.kind is StopKind.PAUSED
        recorded = error.kind in (StopKind.DIVERGED, StopKind.INFEASIBLE)
        return Ending("KILLED", error.reason, error.reason if recorded else None, kept, error)
    if isinstance(error, optuna.TrialPruned):  # an Optuna pruner's, outside the scheduler
        return Ending("KILLED", str(error) or "pruned", None, False)
    reason = INTERRUPTED if interruption_in(error) is not None else failure_reason(error)
    return Ending("FAILED", reason, reason, True)


def result_attrs(result: TrialResult) -> dict[str, Any]:
    """The user attributes a complete trial records (keys.py)."""
    attrs = {
        keys.BEST_STEP: result.best_step,
        keys.STEPS_RUN: result.steps_run,
        keys.EARLY_STOPPED: result.stopped == "early-stopped",
    }
    if result.stopped == "deadline":
        attrs[keys.STOPPED_AT_DEADLINE] = True
    return attrs


def _checkpoint_payload(
    training: TrialTraining, rung_scores: Mapping[str, float]
) -> dict[str, Any]:
    return {
        "rung_scores": dict(rung_scores),  # reported by a resume that finds them missing
        "parts": training.parts.state_dict(),
        "loop": training.state.as_payload(),
        "generator": training.generator.get_state(),
        "torch_rng": torch.get_rng_state(),
    }


def _free_device_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def failure_reason(error: BaseException) -> str:
    """A failed trial's reason: the error's type and first line."""
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}"[:500]


def flat_params(hp: Any) -> dict[str, Any]:
    """A configuration's parameters as a flat mapping."""
    return asdict(hp) if is_dataclass(hp) else dict(hp)


def _best_checkpoint(
    task: Task, hp: Any, parts: Parts, state: TrainingState, value: float, step: int
) -> bytes:
    """Best weights with everything needed to rebuild the model; loads with weights_only=True."""
    model_configs = {
        name: asdict(module.config)
        for name, module in parts.modules.items()
        if is_dataclass(getattr(module, "config", None))
    }
    payload = {
        "task": task.name,
        "hparams": flat_params(hp),
        "model_configs": model_configs,
        "state_dict": state.best_weights,
        "step": step,
        "epoch": state.best_progress,
        "metric": {task.metric: value},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()
