"""The one shared trial loop, for every task.

Per epoch: train -> evaluate -> log all metrics in one call -> `trial.report` -> prune? ->
early stop? -> keep the best epoch's weights. The trial's value is its best epoch's metric.
A non-finite loss or metric prunes the trial with `fail_reason` recorded; the study goes on.
With a checkpoint folder, every epoch's full state is saved, and a retried trial (Optuna's
heartbeat retry, or one interrupted by a signal) resumes from its last epoch.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any

import optuna
import torch

from tunelab.objectives import keys
from tunelab.objectives.base import EpochContext, Parts, Task
from tunelab.objectives.checkpoints import CheckpointStore
from tunelab.objectives.data import DataBundle
from tunelab.objectives.recorders import NullRecorder, TrialRecorder
from tunelab.objectives.space import SearchSpace

RecorderFactory = Callable[[optuna.trial.BaseTrial], TrialRecorder]
SEED_STRIDE = 1_000_003
"""Trial seeds are base_seed * SEED_STRIDE + trial number: a prime above any trial count, so
the streams of two base seeds never share a trial seed."""


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

    max_epochs: int = 10
    """Maximum epochs per trial."""
    patience: int = 3
    """Stop a trial after this many epochs without a better objective."""
    seed: int = 0
    """Base seed; a trial's seed is derived from it and the trial number."""
    device: str = "cpu"
    """Torch device the data and models live on."""


class Diverged(Exception):
    """Training produced a non-finite loss or metric."""


def trial_seed(base_seed: int, trial_number: int) -> int:
    return (base_seed * SEED_STRIDE + trial_number) % (2**31)


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
    ) -> None:
        self.task = task
        self.data = data
        self.space = space
        self.loop = loop
        self.recorder_factory = recorder_factory or (lambda trial: NullRecorder())
        self.checkpoints = checkpoints
        """Per-epoch checkpoints for resuming a retried trial (None = no checkpoints)."""

    def __call__(self, trial: optuna.trial.BaseTrial) -> float:
        task, loop = self.task, self.loop
        device = torch.device(loop.device)
        retry_of = mark_trial_start(trial)
        hp = task.suggest(trial, self.space)
        seed = trial_seed(loop.seed, trial.number)
        torch.manual_seed(seed)
        generator = torch.Generator(device=device).manual_seed(seed)
        parts = task.build(hp, self.data, device, loop.max_epochs)
        recorder = self.recorder_factory(trial)
        try:
            recorder.log_params(_flat_params(hp))
            tags = task.trial_tags(self.data)
            if tags:
                recorder.set_tags(tags)
            state = self._resume(trial, retry_of, parts, generator, recorder)
            value = self._train(trial, hp, parts, generator, recorder, state)
        except optuna.TrialPruned as pruned:
            recorder.end("KILLED", str(pruned) or "pruned")
            self._remove_checkpoint(trial.number)
            raise
        except Diverged as diverged:
            reason = str(diverged)
            trial.set_user_attr(keys.FAIL_REASON, reason)
            recorder.set_tags({keys.FAIL_REASON: reason})
            recorder.end("KILLED", reason)
            self._remove_checkpoint(trial.number)
            raise optuna.TrialPruned(reason) from None
        except BaseException as error:
            reason = _failure_reason(error)
            trial.set_user_attr(keys.FAIL_REASON, reason)
            recorder.set_tags({keys.FAIL_REASON: reason})
            recorder.end("FAILED", reason)
            raise
        recorder.end("FINISHED")
        self._remove_checkpoint(trial.number)
        return value

    def _train(
        self,
        trial: optuna.trial.BaseTrial,
        hp: Any,
        parts: Parts,
        generator: torch.Generator,
        recorder: TrialRecorder,
        state: dict[str, Any],
    ) -> float:
        task, loop = self.task, self.loop
        epoch = state["epoch"]
        while epoch < loop.max_epochs and state["since_best"] < loop.patience:
            epoch += 1
            ctx = EpochContext(epoch=epoch, max_epochs=loop.max_epochs, generator=generator)
            metrics = task.train_epoch(parts, hp, self.data, ctx)
            _check_finite(metrics, epoch)
            metrics.update(task.evaluate(parts, hp, self.data, ctx))
            _check_finite(metrics, epoch)
            recorder.log_metrics(metrics, step=epoch)
            files = task.epoch_artifacts(parts, hp, self.data, ctx)
            if files:
                recorder.log_artifacts(files)
            value = float(metrics[task.metric])
            if state["best_value"] is None or task.better(value, state["best_value"]):
                state.update(best_value=value, best_epoch=epoch, since_best=0)
                state["best_weights"] = parts.module_state()
            else:
                state["since_best"] += 1
            state["epoch"] = epoch
            trial.report(value, epoch)
            self._save_checkpoint(trial.number, parts, generator, state)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch} ({task.metric}={value:.5g})")

        best_value, best_epoch = state["best_value"], state["best_epoch"]
        parts.load_module_state(state["best_weights"])
        final = task.finalize(parts, hp, self.data)
        _check_finite(final.metrics, best_epoch)
        summary = {f"best_{task.metric}": best_value, "best_epoch": best_epoch}
        recorder.log_metrics({**summary, **final.metrics}, step=best_epoch)
        recorder.log_artifacts(
            {
                "config.json": json.dumps(_flat_params(hp), indent=2).encode(),
                "checkpoint/best.pt": _best_checkpoint(task, hp, parts, state),
                **final.artifacts,
            }
        )
        trial.set_user_attr(keys.BEST_EPOCH, best_epoch)
        trial.set_user_attr(keys.EPOCHS_RUN, epoch)
        trial.set_user_attr(keys.EARLY_STOPPED, epoch < loop.max_epochs)
        return best_value

    # -- per-epoch checkpoints (crash recovery) ------------------------------------------

    def _save_checkpoint(
        self, number: int, parts: Parts, generator: torch.Generator, state: dict[str, Any]
    ) -> None:
        if self.checkpoints is not None:
            payload = {
                "parts": parts.state_dict(),
                "loop": state,
                "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(),
            }
            self.checkpoints.save(number, payload)

    def _remove_checkpoint(self, number: int) -> None:
        if self.checkpoints is not None:
            self.checkpoints.remove(number)

    def _resume(
        self,
        trial: optuna.trial.BaseTrial,
        source: int | None,
        parts: Parts,
        generator: torch.Generator,
        recorder: TrialRecorder,
    ) -> dict[str, Any]:
        """Training state to start from: fresh, or the last epoch of the trial retried here."""
        fresh = {
            "epoch": 0,
            "best_value": None,
            "best_epoch": 0,
            "since_best": 0,
            "best_weights": None,
        }
        if source is None or self.checkpoints is None:
            return fresh
        payload = self.checkpoints.load(source, self.loop.device)
        if payload is None:
            return fresh
        parts.load_state_dict(payload["parts"])
        generator.set_state(payload["generator"].to("cpu"))
        torch.set_rng_state(payload["torch_rng"].to("cpu"))
        state = payload["loop"]
        # The dead trial's curve came over with the retry (inherit_intermediate_values).
        trial.set_user_attr(keys.RESUMED_FROM_TRIAL, int(source))
        recorder.set_tags(
            {
                keys.RESUMED_FROM_TRIAL: str(source),
                keys.RESUMED_AT_EPOCH_TAG: str(state["epoch"]),
            }
        )
        return state


def train_for_epochs(
    task: Task,
    hp: Any,
    data: DataBundle,
    device: torch.device,
    epochs: int,
    max_epochs: int,
    seed: int,
) -> tuple[Parts, EpochContext]:
    """Build and train for exactly `epochs` epochs without scoring anything (final
    evaluation retrains a chosen configuration); `max_epochs` is the epoch budget the trial's
    schedules were built for, so the learning rate follows the same curve. Raises Diverged."""
    torch.manual_seed(seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    parts = task.build(hp, data, device, max_epochs)
    ctx = EpochContext(epoch=0, max_epochs=max_epochs, generator=generator)
    for epoch in range(1, epochs + 1):
        ctx = EpochContext(epoch=epoch, max_epochs=max_epochs, generator=generator)
        _check_finite(task.train_epoch(parts, hp, data, ctx), epoch)
    return parts, ctx


def _check_finite(metrics: dict[str, float], epoch: int) -> None:
    for name, value in metrics.items():
        if not math.isfinite(float(value)):
            raise Diverged(f"non-finite {name} ({value}) at epoch {epoch}")


def _failure_reason(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}"[:500]


def _flat_params(hp: Any) -> dict[str, Any]:
    return asdict(hp) if is_dataclass(hp) else dict(hp)


def _best_checkpoint(task: Task, hp: Any, parts: Parts, state: dict[str, Any]) -> bytes:
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
        "state_dict": state["best_weights"],
        "epoch": state["best_epoch"],
        "metric": {task.metric: state["best_value"]},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()
