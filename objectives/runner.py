"""The one shared trial loop, for every task.

The loop owns the batches: it shuffles each epoch with the trial's generator, hands one batch
at a time to `task.train_step`, and at every rung (a fixed number of training images, see
`budget.py`) scores the model on the rung split, logs the rung in one call, reports to Optuna,
prunes, stops early, keeps the best weights and saves a checkpoint. At the end it scores the
best weights on the whole validation split: that is the trial's value. A non-finite loss or
metric prunes the trial with its reason recorded; the study goes on.

A retried trial (Optuna's heartbeat retry, or one interrupted by a signal) resumes exactly where
its source's last rung left it: same weights, optimizer and scheduler states, random streams,
epoch order and position in it.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any, Literal

import optuna
import torch

from tunelab.objectives import keys
from tunelab.objectives.base import Parts, StepContext, Task
from tunelab.objectives.budget import AUTO_RUNG_VAL_IMAGES, JUDGE_VAL_PER_TRAIN, TrialBudget
from tunelab.objectives.checkpoints import CheckpointStore
from tunelab.objectives.data import DataBundle, Split
from tunelab.objectives.graphs import WARM_UP_STEPS, GraphStep, StepGraph, warm_up_stream
from tunelab.objectives.interruptions import interruption_in
from tunelab.objectives.recorders import NullRecorder, TrialRecorder
from tunelab.objectives.space import SearchSpace

RecorderFactory = Callable[[optuna.trial.BaseTrial], TrialRecorder]
Precision = Literal["fp32", "bf16"]
SEED_STRIDE = 1_000_003
"""Trial seeds are base_seed * SEED_STRIDE + trial number: a prime above any trial count, so
the streams of two base seeds never share a trial seed."""
CHECKPOINT_FORMAT = 2
"""Version of the checkpoint payload; a checkpoint of another version is not resumed."""
RUNG_PREFIX = "rung/"
"""MLflow name prefix of the metrics scored on the rung split at every rung."""


def mark_trial_start(trial: optuna.trial.BaseTrial) -> int | None:
    """Record the trial's own number; returns the dead trial it retries, if any."""
    source = trial.user_attrs.get(keys.TRIAL_NUMBER)
    if source is not None and source != trial.number:
        trial.set_user_attr(keys.ORIGINAL_TRIAL, trial.user_attrs.get(keys.ORIGINAL_TRIAL, source))
    else:
        source = None
    trial.set_user_attr(keys.TRIAL_NUMBER, trial.number)
    return source


@dataclass(frozen=True)
class LoopConfig:
    """How each trial trains, whatever its hyperparameters."""

    budget: TrialBudget
    """The trial's rungs and budget."""
    patience: float = 3
    """Stop a trial after this many epochs without better weights."""
    seed: int = 0
    """Base seed; a trial's seed is derived from it and the trial number."""
    device: str = "cpu"
    """Torch device the data and models live on."""
    precision: Precision = "fp32"
    """Training steps in float32, or under bfloat16 autocast (evaluation is always float32)."""
    rung_val_images: int | None = AUTO_RUNG_VAL_IMAGES
    """Validation images scored at every rung (None = the whole validation split)."""
    deadline: float | None = None
    """Wall-clock time (time.time()) at which a trial stops training and ends complete with
    the value of its best weights so far (pruned if it has not reached a rung yet)."""
    cuda_graphs: bool = True
    """Replay each training step as one captured CUDA graph where the task offers one
    (`Task.graph_step`; on a CUDA device, in float32)."""


class Diverged(Exception):
    """Training produced a non-finite loss or metric."""


def trial_seed(base_seed: int, trial_number: int) -> int:
    return (base_seed * SEED_STRIDE + trial_number) % (2**31)


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """Image batches in channels-last memory order (faster convolutions on CPUs and GPUs)."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# -- training -----------------------------------------------------------------------------------


@dataclass
class TrainingState:
    """Where a trial's training stands; saved whole in every checkpoint."""

    epoch: int = 0
    """Current epoch (from 1; 0 before the first)."""
    position: int = 0
    """Index into the epoch's order of the next batch's first image."""
    order: torch.Tensor | None = None
    """The current epoch's shuffled image order."""
    images: int = 0
    """Training images seen."""
    steps: int = 0
    """Optimizer steps taken."""
    rungs: int = 0
    """Rungs reached."""
    best_value: float | None = None
    """Best value on all of validation so far."""
    best_step: int = 0
    """The step of the best value."""
    best_progress: float = 0.0
    """Epochs trained at the best value."""
    best_weights: dict[str, Any] | None = None
    """CPU copy of the modules' weights at the best value."""
    judged_images: int = -1
    """Training images seen when all of validation last scored the weights."""
    stopped: str | None = None
    """Why training ended before the budget: early-stopped or deadline."""

    def as_payload(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class RunningMeans:
    """Sums of per-step training metrics on the device, averaged at a rung (one sync)."""

    sums: dict[str, torch.Tensor] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        for name, value in metrics.items():
            value = value.detach().float()
            # a copy: a CUDA graph's outputs are overwritten by its next replay
            self.sums[name] = self.sums[name] + value if name in self.sums else value.clone()
            self.counts[name] = self.counts.get(name, 0) + 1

    def pop(self) -> dict[str, float]:
        means = {k: v.item() / self.counts[k] for k, v in self.sums.items()}
        self.sums, self.counts = {}, {}
        return means


class TrialTraining:
    """One trial's model trained batch by batch, rung by rung: the loop without judging."""

    def __init__(
        self,
        task: Task,
        hp: Any,
        data: DataBundle,
        loop: LoopConfig,
        seed: int,
    ) -> None:
        self.task, self.hp, self.data, self.loop = task, hp, data, loop
        self.device = torch.device(loop.device)
        torch.manual_seed(seed)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.parts = task.build(hp, data, self.device, loop.budget)
        for module in self.parts.modules.values():
            module.to(memory_format=torch.channels_last)
        self.state = TrainingState()
        self.means = RunningMeans()
        self.batch = min(task.batch_size(hp), len(data.train))
        self.batches_per_epoch = max(1, len(data.train) // self.batch)
        self.graph_step = self._graph_step()
        """The task's step as a CUDA graph may capture it, or None: steps run eagerly."""
        self._graph: StepGraph | None = None
        self._eager_steps = 0

    def _graph_step(self) -> GraphStep | None:
        loop = self.loop
        if not loop.cuda_graphs or self.device.type != "cuda" or loop.precision != "fp32":
            return None  # autocast's weight cache must not be captured: bf16 steps stay eager
        return self.task.graph_step(self.parts, self.hp)

    @property
    def progress(self) -> float:
        """Epochs of training done."""
        done = self.state.position / (self.batches_per_epoch * self.batch)
        return max(0, self.state.epoch - 1) + done if self.state.position else self.state.epoch

    def context(self) -> StepContext:
        return StepContext(
            epoch=max(1, self.state.epoch),
            step=self.state.steps,
            progress=self.progress,
            budget=self.loop.budget,
            generator=self.generator,
        )

    def steps(self) -> Iterator[bool]:
        """Train one batch per iteration; yields whether that batch ended an epoch."""
        state, train = self.state, self.data.train
        while True:
            if state.position == 0:
                state.epoch += 1
                state.order = torch.randperm(
                    len(train), generator=self.generator, device=self.generator.device
                ).to(train.x.device)
            index = state.order[state.position : state.position + self.batch]
            state.position += self.batch
            epoch_end = state.position + self.batch > self.batches_per_epoch * self.batch
            ctx = StepContext(
                epoch=state.epoch,
                step=state.steps + 1,
                progress=(state.epoch - 1) + state.position / (self.batches_per_epoch * self.batch),
                budget=self.loop.budget,
                generator=self.generator,
            )
            self.means.add(self._train_step(index, ctx))
            state.steps += 1
            state.images += len(index)
            if epoch_end:
                state.position = 0
            yield epoch_end

    def _batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        train = self.data.train
        return channels_last(train.x[index]), train.y[index]

    def _eager_step(self, index: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        with autocast(self.device, self.loop.precision):
            return self.task.train_step(self.parts, self.hp, *self._batch(index), ctx)

    def _train_step(self, index: torch.Tensor, ctx: StepContext) -> dict[str, torch.Tensor]:
        """One step: the task's `train_step`, or a replay of its captured `graph_step`
        followed by the schedulers' steps (which `train_step` takes itself)."""
        if self.graph_step is None:
            return self._eager_step(index, ctx)
        if self._graph is None:
            if self._eager_steps < WARM_UP_STEPS:  # this run's first steps: warm-up, eager
                self._eager_steps += 1
                side = warm_up_stream(self.device)
                with torch.cuda.stream(side):
                    metrics = self._eager_step(index, ctx)
                torch.cuda.current_stream(self.device).wait_stream(side)
                return metrics
            # Captured only now, after any resume: the graph keeps the tensors it saw.
            self._graph = StepGraph(self.graph_step, self._batch, self.batch, self.generator)
        metrics = self._graph.replay(index)
        for scheduler in self.parts.schedulers.values():
            scheduler.step()
        return metrics

    def step_now(self) -> int:
        """Where training stands, in the budget's unit (training images, or epochs)."""
        budget = self.loop.budget
        if budget.unit == "epochs":
            return round(self.progress)
        return round(self.progress * budget.train_size)

    def rung_due(self) -> bool:
        """Whether the next rung is reached. Rungs are fractions of an epoch (rung / training
        split size), counted in batches, so that every trial reports at the same steps
        whatever its batch size, and a rung as large as the split falls on each epoch's end."""
        budget = self.loop.budget
        return self.progress >= (self.state.rungs + 1) * budget.rung / budget.train_size - 1e-9

    def train_until(self, step: int) -> None:
        """Train without scoring until `step` (in the budget's unit; final evaluation
        retrains a chosen configuration this way)."""
        budget = self.loop.budget
        target = step if budget.unit == "epochs" else step / budget.train_size
        if self.progress >= target - 1e-9:
            return
        for _ in self.steps():
            if self.progress >= target - 1e-9:
                break
        _check_finite(self.means.pop(), self.state.epoch)


def retrain(
    task: Task, hp: Any, data: DataBundle, loop: LoopConfig, step: int, seed: int
) -> TrialTraining:
    """Build and train a configuration up to `step` (the budget's unit), as its trial did
    (same budget, so the learning rate follows the same schedule), without scoring anything.
    Raises Diverged."""
    training = TrialTraining(task, hp, data.channels_last(), loop, seed)
    training.train_until(step)
    return training


# -- the objective ------------------------------------------------------------------------------


class RungReports:
    """How a trial's scores reach its study: Optuna's `trial.report` and the study's pruner
    (a single objective). Multi-objective studies and constraints use a subclass
    (`tunelab.search.multiobjective.ParetoReports`): Optuna cannot report there."""

    def start(self, trial: optuna.trial.BaseTrial, training: TrialTraining, recorder) -> None:
        """Before training: a subclass may measure the built model and end the trial
        (raise optuna.TrialPruned) if it breaks a constraint known before training."""

    def report(self, trial: optuna.trial.BaseTrial, step: int, scores: dict[str, float]) -> None:
        """The rung's scores (the rung split's), at `step`."""
        trial.report(float(scores[self.metric]), step)

    def should_prune(self, trial: optuna.trial.BaseTrial, step: int) -> bool:
        """Whether the trial stops at this rung (after its checkpoint is saved)."""
        return trial.should_prune()

    def result(
        self, trial: optuna.trial.BaseTrial, value: float, scores: dict[str, float], recorder
    ) -> float | tuple[float, ...]:
        """What the trial returns to the study: `value`, its objective for the best weights
        (`scores`: every metric of those weights)."""
        return value

    metric: str = ""
    """The metric reported (set by the Objective: the task's)."""


class Objective:
    """The callable handed to `study.optimize`: one trial of one task, start to finish."""

    def __init__(
        self,
        task: Task,
        data: DataBundle,
        space: SearchSpace,
        loop: LoopConfig,
        recorder_factory: RecorderFactory | None = None,
        checkpoints: CheckpointStore | None = None,
        paused_at: Callable[[int], int | None] | None = None,
        reports: RungReports | None = None,
        end_after_tell: bool = False,
    ) -> None:
        self.task = task
        self.data = data.channels_last()
        self.space = space
        self.loop = loop
        self.recorder_factory = recorder_factory or (lambda trial: NullRecorder())
        self.checkpoints = checkpoints
        """Per-rung checkpoints for resuming a retried trial (None = no checkpoints)."""
        self.paused_at = paused_at or (lambda number: None)
        """Trial number -> the step the pruner paused it at, when its prune is a pause (the
        trial ends, but its checkpoint stays for a continuation)."""
        self.reports = reports or RungReports()
        """Reports and pruning: Optuna's, or a multi-objective study's."""
        self.reports.metric = task.metric
        self._rung_split: Split | None = None
        self._resumed_from: dict[int, int] = {}
        self.end_after_tell = end_after_tell
        """Close a trial's MLflow run and drop its checkpoint only once Optuna has stored the
        trial's end (`after_tell`, a study.optimize callback): a kill before that leaves the
        trial RUNNING with its run open and its checkpoint in place, so the retry resumes it and
        the trial never has two finished runs. Off: ended at once (a trial run on its own)."""
        self._endings: dict[int, tuple[TrialRecorder, str, str | None, bool]] = {}

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

    def __call__(self, trial: optuna.trial.BaseTrial) -> float | tuple[float, ...]:
        task = self.task
        retry_of = mark_trial_start(trial)
        hp = task.suggest(trial, self.space)
        training = TrialTraining(
            task, hp, self.data, self.loop, trial_seed(self.loop.seed, trial.number)
        )
        recorder = self.recorder_factory(trial)
        try:
            recorder.log_params(_flat_params(hp))
            self.reports.start(trial, training, recorder)
            tags = task.trial_tags(self.data)
            if tags:
                recorder.set_tags(tags)
            self._resume(trial, retry_of, training, recorder)
            value = self._train(trial, training, recorder)
        except optuna.TrialPruned as pruned:
            paused = self.paused_at(trial.number)
            if paused is not None:
                trial.set_user_attr(keys.PAUSED_AT, paused)
                recorder.set_tags({keys.PAUSED_AT: str(paused)})
                self._end(trial.number, recorder, "KILLED", f"paused at step {paused}", False)
                raise
            self._end(trial.number, recorder, "KILLED", str(pruned) or "pruned", True)
            raise
        except (Diverged, *OUT_OF_MEMORY) as error:
            # the configuration's own doing (diverged, or too big for the device): pruned, so
            # the sampler learns from it, and not a failure of the worker
            reason = "out_of_memory" if isinstance(error, OUT_OF_MEMORY) else str(error)
            del training
            _free_device_memory()
            trial.set_user_attr(keys.FAIL_REASON, reason)
            recorder.set_tags({keys.FAIL_REASON: reason})
            self._end(trial.number, recorder, "KILLED", reason, True)
            raise optuna.TrialPruned(reason) from None
        except BaseException as error:
            interruption = interruption_in(error)
            reason = "interrupted" if interruption is not None else _failure_reason(error)
            trial.set_user_attr(keys.FAIL_REASON, reason)
            recorder.set_tags({keys.FAIL_REASON: reason})
            recorder.end("FAILED", reason)  # its checkpoint stays: a retry may resume it
            if interruption is not None and interruption is not error:
                raise interruption from None  # the worker stops, as for a plain Ctrl-C
            raise
        self._end(trial.number, recorder, "FINISHED", None, True)
        return value

    def _end(
        self, number: int, recorder: TrialRecorder, status: str, reason: str | None, drop: bool
    ) -> None:
        """End the trial's run (and `drop` its checkpoint), now or after Optuna's tell."""
        if self.end_after_tell:
            self._endings[number] = (recorder, status, reason, drop)
        else:
            self._settle(number, recorder, status, reason, drop)

    def _settle(
        self, number: int, recorder: TrialRecorder, status: str, reason: str | None, drop: bool
    ) -> None:
        recorder.end(status, reason)
        if drop:
            self._remove_checkpoint(number)

    def after_tell(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """study.optimize callback: Optuna has stored the trial's end; close its run."""
        ending = self._endings.pop(trial.number, None)
        if ending is not None:
            self._settle(trial.number, *ending)

    def _train(
        self, trial: optuna.trial.BaseTrial, training: TrialTraining, recorder: TrialRecorder
    ) -> float | tuple[float, ...]:
        task, loop, state = self.task, self.loop, training.state
        budget = loop.budget
        if state.rungs < budget.max_rungs and state.stopped is None:
            for epoch_end in training.steps():
                if training.rung_due():
                    self._rung(trial, training, recorder)
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
                        raise optuna.TrialPruned("the time budget ended before its first rung")
                    state.stopped = "deadline"
                    break
        if state.judged_images != state.images:  # the last weights have not been judged yet
            if self.judges_on_rungs:  # on the split the others were judged on
                self._judge(training, recorder, self._rung_scores(training), self._rungs_see_val)
            else:
                self._judge(training, recorder)
        return self._finish(trial, training, recorder)

    def _rung(
        self, trial: optuna.trial.BaseTrial, training: TrialTraining, recorder: TrialRecorder
    ) -> None:
        """Score the rung split, log, report, checkpoint; then prune (or pause)."""
        task, loop, state = self.task, self.loop, training.state
        state.rungs += 1
        step = loop.budget.step(state.rungs)
        train_metrics = training.means.pop()
        _check_finite(train_metrics, state.epoch)
        scores = self._rung_scores(training)
        value = float(scores[task.metric])
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
        self.reports.report(trial, step, scores)
        self._save_checkpoint(trial.number, training)
        if self.reports.should_prune(trial, step):
            if not _is_reference(trial):
                raise optuna.TrialPruned(f"pruned at step {step} ({task.metric}={value:.5g})")
            self.paused_at(trial.number)

    def _rung_scores(self, training: TrialTraining) -> dict[str, float]:
        scores = self.task.evaluate(
            training.parts, training.hp, self.data, self.rung_split, training.context()
        )
        _check_finite(scores, training.state.epoch)
        return scores

    @property
    def _rungs_see_val(self) -> bool:
        """Whether a rung scores all of validation (then its scores are logged as such)."""
        return self.rung_split is self.data.val

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
            _check_finite(scores, state.epoch)
        step = training.step_now()
        if logged:
            recorder.log_metrics(scores, step=step)
        value = float(scores[task.metric])
        state.judged_images = state.images
        if state.best_value is None or not task.better(state.best_value, value):
            state.best_value, state.best_step = value, step
            state.best_progress = training.progress
            state.best_weights = training.parts.module_state()

    def _finish(
        self, trial: optuna.trial.BaseTrial, training: TrialTraining, recorder: TrialRecorder
    ) -> float | tuple[float, ...]:
        """The best weights scored on the whole validation split, then the task's final
        metrics and artifacts."""
        task, state = self.task, training.state
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
        _check_finite(scores, state.epoch)
        value = float(scores[task.metric])
        if last is not None and not task.better(value, float(last_scores[task.metric])):
            state.best_weights, state.best_step, state.best_progress = last
            best_step = state.best_step
            parts.load_module_state(state.best_weights)
            scores, value = last_scores, float(last_scores[task.metric])
        if self.judges_on_subset:
            recorder.log_metrics(scores, step=best_step)  # no epoch scored all of validation
        final = task.finalize(parts, hp, self.data)
        _check_finite(final.metrics, state.epoch)
        summary = {
            f"best_{task.metric}": value,
            "best_step": best_step,
            "best_epoch": state.best_progress,
        }
        recorder.log_metrics({**summary, **final.metrics}, step=best_step)
        recorder.log_artifacts(
            {
                "config.json": json.dumps(_flat_params(hp), indent=2).encode(),
                "checkpoint/best.pt": _best_checkpoint(task, hp, parts, state, value, best_step),
                **final.artifacts,
            }
        )
        if state.stopped:
            recorder.set_tags({keys.STOPPED_TAG: state.stopped})
        trial.set_user_attr(keys.BEST_STEP, best_step)
        trial.set_user_attr(keys.STEPS_RUN, training.step_now())
        trial.set_user_attr(keys.EARLY_STOPPED, state.stopped == "early-stopped")
        if state.stopped == "deadline":
            trial.set_user_attr(keys.STOPPED_AT_DEADLINE, True)
        return self.reports.result(trial, value, {**scores, **final.metrics}, recorder)

    # -- per-rung checkpoints (crash recovery) --------------------------------------------

    def _save_checkpoint(self, number: int, training: TrialTraining) -> None:
        if self.checkpoints is not None:
            payload = {
                "format": CHECKPOINT_FORMAT,
                "parts": training.parts.state_dict(),
                "loop": training.state.as_payload(),
                "generator": training.generator.get_state(),
                "torch_rng": torch.get_rng_state(),
            }
            self.checkpoints.save(number, payload)
            source = self._resumed_from.pop(number, None)
            if source is not None:  # this trial's own checkpoint now supersedes its source's
                self.checkpoints.remove(source)

    def _remove_checkpoint(self, number: int) -> None:
        """The trial ended for good: its checkpoint, and its source's, are of no more use."""
        if self.checkpoints is not None:
            self.checkpoints.remove(number)
            source = self._resumed_from.pop(number, None)
            if source is not None:
                self.checkpoints.remove(source)

    def _resume(
        self,
        trial: optuna.trial.BaseTrial,
        source: int | None,
        training: TrialTraining,
        recorder: TrialRecorder,
    ) -> None:
        """Continue from the last rung of the trial retried here, when it left a checkpoint."""
        if source is None or self.checkpoints is None:
            return
        # The source's own checkpoint; if it died before saving one, the checkpoint it had
        # resumed from (its attributes came over with it).
        payload = None
        for candidate in (source, trial.user_attrs.get(keys.RESUMED_FROM_TRIAL)):
            if candidate is not None:
                payload = self.checkpoints.load(int(candidate), self.loop.device)
                if payload is not None and payload.get("format") == CHECKPOINT_FORMAT:
                    source = int(candidate)
                    break
                payload = None
        if payload is None:
            return
        training.parts.load_state_dict(payload["parts"])
        training.generator.set_state(payload["generator"].to("cpu"))
        torch.set_rng_state(payload["torch_rng"].to("cpu"))
        training.state = TrainingState(**payload["loop"])
        self._resumed_from[trial.number] = source
        # The source's curve came over with the retry (inherit_intermediate_values).
        trial.set_user_attr(keys.RESUMED_FROM_TRIAL, int(source))
        trial.set_user_attr(keys.RESUMED_AT_STEP, self.loop.budget.step(training.state.rungs))
        recorder.set_tags(
            {
                keys.RESUMED_FROM_TRIAL: str(source),
                keys.RESUMED_AT_STEP_TAG: str(self.loop.budget.step(training.state.rungs)),
            }
        )


def _is_reference(trial: optuna.trial.BaseTrial) -> bool:
    """Whether the trial trains its whole budget whatever the pruner says: the task's default
    configuration (the search's baseline, so that a search never ends worse than the defaults)
    and its anchors (e.g. a size objective's ladder: the front's reference points, whose
    accuracy after a few hundred images says little about where they end)."""
    attrs = trial.user_attrs
    return bool(attrs.get(keys.DEFAULT_TRIAL) or attrs.get(keys.ANCHOR_TRIAL))


def _check_finite(metrics: dict[str, float], epoch: int) -> None:
    for name, value in metrics.items():
        if not math.isfinite(float(value)):
            raise Diverged(f"non-finite {name} ({value}) in epoch {epoch}")


OUT_OF_MEMORY: tuple[type[BaseException], ...] = (torch.OutOfMemoryError, MemoryError)


def _free_device_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _failure_reason(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}"[:500]


def _flat_params(hp: Any) -> dict[str, Any]:
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
        "hparams": _flat_params(hp),
        "model_configs": model_configs,
        "state_dict": state.best_weights,
        "step": step,
        "epoch": state.best_progress,
        "metric": {task.metric: value},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()
