"""Optimizers and learning-rate schedules by name, and the hyperparameters that choose them.

`OptimizerHParams` declares the optimizer fields every gradient-trained task shares; a task's
hyperparameter dataclass inherits them and overrides only their defaults. `optimizer_params`
is the matching part of a search space.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from tunelab.objectives.space import Bounds, Param, above, fraction

OPTIMIZERS = ("sgd", "adam", "adamw")
BATCH_SIZES = (32, 64, 128, 256)
"""Batch sizes searched by default."""


@dataclass(frozen=True)
class OptimizerHParams:
    """The optimizer's hyperparameters; tasks inherit them and set their own defaults."""

    lr: float = 1e-3
    """Peak learning rate."""
    batch_size: int = 64
    """Training batch size."""
    optimizer: str = "adam"
    """Optimizer: sgd, adam or adamw."""
    momentum: float = 0.9
    """SGD momentum (sgd only)."""
    nesterov: bool = False
    """Nesterov momentum (sgd only)."""
    weight_decay: float = 0.0
    """Weight decay (L2 for sgd and adam, decoupled for adamw)."""


def optimizer_params(
    lr: tuple[float, float],
    weight_decay: tuple[float, float],
    nesterov: bool = True,
) -> list[Param]:
    """Search-space entries of `OptimizerHParams`: log-scale lr and weight decay in the given
    ranges; momentum (and Nesterov, unless `nesterov` is False) only for SGD."""
    sgd = ("optimizer", ("sgd",))
    params = [
        Param("lr", "float", *lr, log=True, supported=above(0.0, 10.0)),
        Param("batch_size", "categorical", choices=BATCH_SIZES),
        Param("optimizer", "categorical", choices=OPTIMIZERS),
        Param("momentum", "float", 0.5, 0.99, when=sgd, supported=fraction()),
    ]
    if nesterov:
        params.append(Param("nesterov", "categorical", choices=(False, True), when=sgd))
    params.append(
        Param("weight_decay", "float", *weight_decay, log=True, supported=Bounds(0.0, 1.0))
    )
    return params


def optimizer_for(
    hp: OptimizerHParams, params: Iterable[torch.nn.Parameter], capturable: bool = False
) -> torch.optim.Optimizer:
    """The optimizer `hp` describes, over `params`; `capturable` as in `make_optimizer`."""
    return make_optimizer(
        hp.optimizer, params, hp.lr, hp.weight_decay, hp.momentum, hp.nesterov, capturable
    )


def make_optimizer(
    name: str,
    params: Iterable[torch.nn.Parameter],
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    nesterov: bool = False,
    capturable: bool = False,
    betas: tuple[float, float] = (0.9, 0.999),
) -> torch.optim.Optimizer:
    """The optimizer `name` over `params`. `capturable` (parameters on a CUDA device): Adam
    and AdamW keep their step count and learning rate in device tensors, so that a CUDA graph
    can capture their step (`is_capturable`); SGD has no such mode and ignores it."""
    params = list(params)
    if capturable and name in ("adam", "adamw"):
        device = params[0].device
        # the schedulers scale `initial_lr`: a float, so that writing each step's rate into
        # the tensor is one fill, not a read back from the device
        groups = [{"params": params, "initial_lr": lr}]
        lr_tensor = torch.tensor(lr, device=device)
        kind = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return kind(groups, lr=lr_tensor, weight_decay=weight_decay, betas=betas, capturable=True)
    if name == "sgd":
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=momentum,
            nesterov=nesterov and momentum > 0,
            weight_decay=weight_decay,
        )
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, betas=betas)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=betas)
    raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")


def is_capturable(optimizer: torch.optim.Optimizer) -> bool:
    """Whether a CUDA graph can capture `optimizer`'s step (built with `capturable`)."""
    return bool(optimizer.defaults.get("capturable")) and all(
        isinstance(group["lr"], torch.Tensor) for group in optimizer.param_groups
    )


def make_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, total_steps: int, warmup_steps: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step schedule: constant, or cosine decay to zero over the trial's epoch budget."""
    factor = schedule_factor(schedule, total_steps, warmup_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def schedule_factor(
    schedule: str, total_steps: int, warmup_steps: int = 0
) -> Callable[[int], float]:
    """The schedule as step -> multiple of the peak learning rate (what `make_scheduler`
    applies; also for a loop that writes the rate itself, e.g. into a CUDA graph's tensor)."""
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"unknown learning-rate schedule {schedule!r}")

    def factor(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        progress = min(1.0, step / max(1, total_steps))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor
