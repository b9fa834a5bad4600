"""A worker: takes trials, runs them through the shared loop, stores how they ended.

The one loop every worker runs, whatever started it (`tunelab run`, `tunelab worker`, a
container, an array task):

    while the scheduler says run (or wait):
        take a trial          queued first (a retry, a continuation), else a new one; it is
                              born RUNNING, owned by this process and with a heartbeat, in one
                              transaction, so no crash leaves a trial nobody can tell is dead
        run it                the objective's loop, with a heartbeat thread and a session that
                              asks the scheduler at every rung
        store its end         attributes first, then the state (tell); only then close its
                              MLflow run and drop its checkpoint: a kill in between leaves the
                              trial RUNNING with its checkpoint, and its retry resumes it

What it survives, and how (the README's fault model):
- a database outage at any call: reads and idempotent writes retry with backoff, non-idempotent
  steps (taking a trial, queueing a retry) are retried whole after checking what exists; the
  heartbeat skips beats and goes on;
- SIGINT / SIGTERM: the running trial (or one the signal caught while it was being taken) ends
  FAIL `interrupted`, its checkpoint kept, its run closed; the worker exits 130 / 143;
- its trial failed by another worker (its heartbeat was late): it stops the trial at the next
  rung, or when it stores its end, quietly: no crash, the other worker's retry resumes it;
- a trial's own error: that trial fails with its reason, the worker goes on; three in a row
  stop the worker (a systematic error).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tunelab.objectives import keys
from tunelab.objectives.checkpoints import CheckpointStore, TrialCheckpoint
from tunelab.objectives.interruptions import interruption_in
from tunelab.objectives.recorders import NullRecorder, TrialRecorder
from tunelab.objectives.runner import INTERRUPTED, Objective, ending_of, result_attrs
from tunelab.objectives.session import Ruling, StopKind, TrialResult, Verdict
from tunelab.objectives.training import TrialTraining
from tunelab.search.adapters.signals import sleep_unless_stopped, stop_if_requested
from tunelab.search.adapters.storage import TargetReached, rdb_of
from tunelab.search.adapters.transient import retrying
from tunelab.search.scheduler import lineage
from tunelab.search.scheduler.heartbeat import Heartbeat
from tunelab.search.scheduler.hosts import new_owner
from tunelab.search.scheduler.scheduler import TrialScheduler

CONSECUTIVE_FAILURES = 3
"""A worker whose last this many trials failed stops: a sign of a systematic error."""
TAKEN_OVER = (
    "ended by another worker while this one ran it (its heartbeat was late): its retry resumes it"
)
_log = logging.getLogger(__name__)

STATUS_OF = {
    TrialState.COMPLETE: "FINISHED",
    TrialState.PRUNED: "KILLED",
    TrialState.FAIL: "FAILED",
    TrialState.RUNNING: "FAILED",
}
"""The MLflow run status of a stored trial state."""
RecorderFor = Callable[[optuna.Trial, Mapping[str, str]], TrialRecorder]


class WorkerGaveUp(RuntimeError):
    """Several trials in a row failed in this worker; the message says why."""


class TakenOver(Exception):
    """The trial was ended by another worker while this one ran it."""


class ScheduledTrial:
    """The loop's session of one trial: the scheduler decides at its rungs."""

    def __init__(
        self,
        scheduler: TrialScheduler,
        trial: optuna.Trial,
        recorder: TrialRecorder,
        checkpoint: TrialCheckpoint | None,
        heartbeat: Heartbeat,
    ) -> None:
        self.scheduler, self.trial, self.recorder = scheduler, trial, recorder
        self.checkpoint, self.heartbeat = checkpoint, heartbeat
        frozen = trial.study._storage.get_trial(trial._trial_id)
        self.root = lineage.root(frozen)
        self.reference = lineage.is_reference(frozen)
        self.resumed_at = 0
        self.started_at = time.monotonic()

    def started(self, training: TrialTraining) -> None:
        self.scheduler.on_trial_start(self.trial, training, self.recorder)

    def resumed(self, step: int, scores: Mapping[str, float] | None) -> None:
        assert self.checkpoint is not None and self.checkpoint.loaded_from is not None
        self.resumed_at = step
        self.recorder.set_tags(lineage.record_resume(self.trial, self.checkpoint.loaded_from, step))
        if scores is not None and step > 0:
            stored = self.trial.study._storage.get_trial(self.trial._trial_id)
            if step not in stored.intermediate_values:  # the source died before reporting it
                self.scheduler.reports.report(self.trial, step, scores)

    def rung(self, step: int, scores: Mapping[str, float]) -> Ruling:
        if self.heartbeat.ended_elsewhere:
            raise TakenOver(TAKEN_OVER)
        ruling = self.scheduler.on_trial_result(
            self.trial,
            step,
            scores,
            root=self.root,
            reference=self.reference,
            trained_s=time.monotonic() - self.started_at,
            trained_steps=step - self.resumed_at,
        )
        if ruling.verdict is Verdict.CONTINUE:
            stop_if_requested()  # a SIGTERM asked for a stop: now, this rung's checkpoint kept
        return ruling

    def result(self, value: float, scores: Mapping[str, float]):
        return self.scheduler.on_trial_complete(self.trial, value, scores, self.recorder)


class Worker:
    """Runs a study's trials until its scheduler says stop (see the module)."""

    def __init__(
        self,
        study: optuna.Study,
        scheduler: TrialScheduler,
        objective: Objective,
        recorder_for: RecorderFor,
        checkpoints: CheckpointStore | None = None,
        heartbeat_interval: float = 10.0,
        after_trial: Callable[[FrozenTrial], None] = lambda trial: None,
        failures_allowed: int = CONSECUTIVE_FAILURES,
        owner: str | None = None,
    ) -> None:
        self.study, self.scheduler, self.objective = study, scheduler, objective
        self.recorder_for = recorder_for
        self.checkpoints = checkpoints
        self.heartbeat_interval = heartbeat_interval
        self.after_trial = after_trial
        """Called with every trial once its end is stored (e.g. the study's best so far)."""
        self.failures_allowed = failures_allowed
        self.storage = rdb_of(study)
        self.owner = owner or new_owner()
        """This worker (hosts.py): the owner of the trials it takes."""
        self._failures: list[str] = []

    # -- the loop ------------------------------------------------------------------------

    def work(self) -> str:
        """Run trials until the scheduler says stop; returns why. Raises WorkerGaveUp after
        `failures_allowed` failed trials in a row, KeyboardInterrupt on a signal."""
        waits = None
        while True:
            stop_if_requested()
            health = None if self.storage is None else self.storage.health
            next_ = retrying(self.scheduler.choose_trial_to_run, health)
            if next_.action == "stop":
                return next_.reason
            if next_.action == "wait":
                waits = waits or self.scheduler.poll_waits(self.heartbeat_interval)
                sleep_unless_stopped(next(waits))
                continue
            waits = None
            self.run_one()
            if len(self._failures) >= self.failures_allowed:
                raise WorkerGaveUp(
                    f"{len(self._failures)} trials in a row failed (the last: "
                    f"{self._failures[-1]}); this worker stops: see the trials' "
                    "tunelab.fail_reason"
                )

    def run_one(self) -> None:
        """Take one trial and run it to its stored end (nothing when another worker took the
        last one first)."""
        try:
            trial = retrying(self._take)
        except BaseException as error:
            interruption = interruption_in(error)
            if interruption is None:
                raise
            self._end_taken()  # a signal caught a trial while it was being taken
            raise interruption from None
        if trial is not None:
            self._run(trial)

    def _take(self) -> optuna.Trial | None:
        """A trial made RUNNING for this process: a queued one (oldest first), else a new one
        (None: the study holds its target)."""
        storage, study = self.storage, self.study
        if storage is None:  # an in-memory study: one process, nothing to guard
            return study.ask()
        attrs = lineage.owner_attrs(self.owner)
        waiting = storage.waiting_trial_ids(study._study_id)  # narrow: not every trial's record
        trial_id = next((i for i in waiting if storage.take_waiting(i, attrs)), None)
        if trial_id is None:
            try:
                trial_id = storage.take_new(study, attrs)
            except TargetReached:
                return None
        trial = optuna.Trial(study, trial_id)
        storage.taken.clear()  # owned from here: a signal now ends it through _run
        return trial

    def _run(self, trial: optuna.Trial) -> None:
        frozen = trial.study._storage.get_trial(trial._trial_id)
        recorder: TrialRecorder = NullRecorder()  # until its run exists
        checkpoint = None
        if self.checkpoints is not None:
            sources = lineage.checkpoint_sources(frozen)
            checkpoint = TrialCheckpoint(self.checkpoints, trial.number, sources)
        try:
            with Heartbeat(self.storage, trial._trial_id, self.heartbeat_interval) as heartbeat:
                try:
                    recorder = self.recorder_for(trial, lineage.run_tags(frozen))
                    session = ScheduledTrial(self.scheduler, trial, recorder, checkpoint, heartbeat)
                    result = self.objective.run(session)
                except BaseException as error:
                    if interruption_in(error) is not None:
                        raise
                    # the trial's own failure, or one of its writes found it ended elsewhere
                    self._store_end(trial, recorder, checkpoint, error=error)
                else:
                    self._store_end(trial, recorder, checkpoint, result=result)
        except BaseException as error:
            interruption = interruption_in(error)
            if interruption is None:
                raise
            self._end_interrupted(trial, recorder)
            raise interruption from None

    # -- storing a trial's end -----------------------------------------------------------

    def _store_end(
        self,
        trial: optuna.Trial,
        recorder: TrialRecorder,
        checkpoint: TrialCheckpoint | None,
        result: TrialResult | None = None,
        error: BaseException | None = None,
    ) -> None:
        """Attributes, then the state; then the run and the checkpoint follow."""
        if error is None:
            assert result is not None
            state, values, attrs, tags = (
                TrialState.COMPLETE,
                result.values,
                result_attrs(result),
                {},
            )
            status, reason, keep = "FINISHED", None, False
        elif isinstance(error, (TakenOver, optuna.exceptions.UpdateFinishedTrialError)):
            self._taken_over(trial, recorder)
            return
        else:
            ending = ending_of(error)
            state = TrialState.PRUNED if ending.status == "KILLED" else TrialState.FAIL
            values, attrs, tags = None, {}, {}
            status, reason, keep = ending.status, ending.reason, ending.keeps_checkpoint
            if ending.fail_reason:
                attrs[keys.FAIL_REASON] = ending.fail_reason
                tags[keys.FAIL_REASON] = ending.fail_reason
            if ending.stop is not None and ending.stop.kind is StopKind.PAUSED:
                tags.update(lineage.record_pause(trial, ending.stop.step))
            if state == TrialState.FAIL:
                _log.warning("trial %s failed: %s", trial.number, reason)
        try:
            for key, value in attrs.items():
                trial.set_user_attr(key, value)
            told = self._tell(trial, state, values)
        except optuna.exceptions.UpdateFinishedTrialError:
            told = False
        if not told:
            self._taken_over(trial, recorder)
            return
        if tags:
            recorder.set_tags(tags)
        recorder.end(status, reason)
        if checkpoint is not None and not keep:
            checkpoint.drop()
        self._count(state, reason)
        self.after_trial(self.study._storage.get_trial(trial._trial_id))

    def _tell(self, trial: optuna.Trial, state: TrialState, values: Any) -> bool:
        """Store the trial's end; False when another process ended it first. A retried tell
        whose first attempt committed finds the trial ended as it said: True."""
        stored = retrying(
            lambda: self.study.tell(trial, values, state=state, skip_if_finished=True)
        )
        # Optuna's own per-trial line, which its optimize loop (not tell) writes: --verbose
        if stored.state == state == TrialState.COMPLETE:
            self.study._log_completed_trial(stored.values, stored.number, stored.params)
        elif stored.state == state == TrialState.PRUNED:
            optuna.logging.get_logger("optuna").info("Trial %d pruned.", stored.number)
        return stored.state == state

    def _taken_over(self, trial: optuna.Trial, recorder: TrialRecorder) -> None:
        """Another worker ended the trial (and queued its retry): close the run as what the
        trial is, FAILED, saying this worker was alive; keep the checkpoint for the retry."""
        _log.warning("trial %s %s", trial.number, TAKEN_OVER)
        recorder.set_tags({keys.RECOVERED_TAG: "false", keys.END_REASON_TAG: TAKEN_OVER})
        recorder.end("FAILED", TAKEN_OVER)

    def _count(self, state: TrialState, reason: str | None) -> None:
        if state == TrialState.FAIL:
            self._failures.append(reason or "unknown")
        else:
            self._failures.clear()

    def _end_interrupted(self, trial: optuna.Trial, recorder: TrialRecorder) -> None:
        """A signal stopped the worker while it ran `trial`: a trial still RUNNING ends FAIL
        `interrupted`, its checkpoint kept (the next sweep queues its retry, which resumes
        it); its run is closed as what the stored trial is. With the database down, the
        trial stays RUNNING: its owner is gone, so the next worker's sweep ends and retries it."""
        try:
            if self.storage is not None:
                self.storage.end_running(
                    trial._trial_id, TrialState.FAIL, {keys.FAIL_REASON: INTERRUPTED}
                )
                state = self.storage.trial_state(trial._trial_id)
            else:
                state = self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True).state
        except Exception as error:  # the process is ending: one line, not a second traceback
            _log.warning("trial %s: its interruption is not stored (%s)", trial.number, error)
            state = TrialState.RUNNING
        status = STATUS_OF[state]
        if status == "FAILED":
            recorder.set_tags({keys.FAIL_REASON: INTERRUPTED})
        recorder.end(status, INTERRUPTED if status == "FAILED" else None)

    def _end_taken(self) -> None:
        """End FAIL `interrupted` the trials a signal caught as they were being taken."""
        if self.storage is None:
            return
        for trial_id in self.storage.taken:
            try:
                self.storage.end_running(trial_id, TrialState.FAIL, {keys.FAIL_REASON: INTERRUPTED})
            except Exception as error:  # left RUNNING, owned by this ended process: swept
                _log.warning("a trial's interruption is not stored (%s)", error)
        self.storage.taken.clear()
