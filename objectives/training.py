"""A trial's training, batch by batch and rung by rung: the mechanics under the shared loop.

`TrialTraining` owns the batches: it shuffles each epoch with the trial's generator, hands one
batch at a time to `task.train_step` (or replays the task's captured CUDA graph), keeps the
running means of the step metrics and knows when a rung is due. It judges nothing and decides
nothing: the loop (`runner.Objective`) scores, keeps the best weights and asks its session.
`retrain` trains a chosen configuration again the same way (`tunelab evaluate`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from tunelab.objectives.base import StepContext, Task
from tunelab.objectives.budget import AUTO_RUNG_VAL_IMAGES, TrialBudget
from tunelab.objectives.data import DataBundle
from tunelab.objectives.graphs import WARM_UP_STEPS, GraphStep, StepGraph, warm_up_stream

Precision = Literal["fp32", "bf16"]
SEED_STRIDE = 1_000_003
"""Trial seeds are base_seed * SEED_STRIDE + trial number: a prime above any trial count, so
the streams of two base seeds never share a trial seed."""


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
    """Training steps and rung scores in float32, or under bfloat16 autocast (scores on all
    of validation, which judge a trial's weights, are always float32)."""
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


class EndOfTraining(Exception):
    """Raised by a task's `train_step` when its training has ended by itself before the
    budget (a function-style objective whose own loop returned): no step was taken, and the
    loop ends the trial there as it ends one at its budget."""


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

    def rung_arithmetic(self) -> contextlib.AbstractContextManager:
        """The arithmetic a rung split is scored in: the training's. A rung score only ranks
        a trial among its rung's, all scored alike (bfloat16 scored the default CNN's 1,000
        rung images 2.3x faster than float32 on an AVX-512 BF16 CPU, to the same accuracy)."""
        return autocast(self.device, self.loop.precision)

    def steps(self) -> Iterator[bool]:
        """Train one batch per iteration; yields whether that batch ended an epoch."""
        state, train = self.state, self.data.train
        while True:
            starts_epoch = state.position == 0
            if starts_epoch:
                state.epoch += 1
                state.order = torch.randperm(
                    len(train), generator=self.generator, device=self.generator.device
                ).to(train.x.device)
            index = state.order[state.position : state.position + self.batch]
            position = state.position + self.batch
            epoch_end = position + self.batch > self.batches_per_epoch * self.batch
            ctx = StepContext(
                epoch=state.epoch,
                step=state.steps + 1,
                progress=(state.epoch - 1) + position / (self.batches_per_epoch * self.batch),
                budget=self.loop.budget,
                generator=self.generator,
            )
            try:
                metrics = self._train_step(index, ctx)
            except EndOfTraining:  # nothing trained: where training stands is unchanged
                if starts_epoch:
                    state.epoch -= 1
                return
            state.position = position
            self.means.add(metrics)
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
        check_finite(self.means.pop(), self.state.epoch)


def retrain(
    task: Task, hp: Any, data: DataBundle, loop: LoopConfig, step: int, seed: int
) -> TrialTraining:
    """Build and train a configuration up to `step` (the budget's unit), as its trial did
    (same budget, so the learning rate follows the same schedule), without scoring anything.
    Raises Diverged."""
    training = TrialTraining(task, hp, data.channels_last(), loop, seed)
    try:
        training.train_until(step)
    except BaseException:
        task.release(training.parts)
        raise
    return training


OUT_OF_MEMORY: tuple[type[BaseException], ...] = (torch.OutOfMemoryError, MemoryError)
"""What a configuration too big for its device raises."""


def check_finite(metrics: dict[str, float], epoch: int) -> None:
    """Diverged unless every metric is finite."""
    for name, value in metrics.items():
        if not math.isfinite(float(value)):
            raise Diverged(f"non-finite {name} ({value}) in epoch {epoch}")
