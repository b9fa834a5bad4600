"""The metrics a task offers as objectives or constraints of a study, and the static ones.

Every task scores its objective (`Task.metric`) and more during training (`evaluate`'s val_*
metrics); some say more about a configuration before it trains at all: its parameter count,
its multiply-accumulates per image, its inference latency. Those are *static* metrics: known
from the built, untrained model, so a study can refuse a configuration that breaks a
constraint on them without training it, and its pruner can compare trials on them exactly.

A task declares what it offers in `Task.metrics()` (name, direction, static or not) and
computes its static metrics in `Task.static_metrics(parts, data)`.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Literal

import torch

Direction = Literal["maximize", "minimize"]
LATENCY_BATCH = 64
"""Images per timed inference batch (latency is reported per image)."""
LATENCY_REPEATS = 5
"""Timed batches; the median counts (one untimed batch warms up first)."""


@dataclass(frozen=True)
class MetricInfo:
    """One metric a study may optimize or constrain."""

    name: str
    """Its name, as `evaluate` / `static_metrics` return it."""
    direction: Direction
    """Whether higher or lower is better."""
    static: bool = False
    """Known from the built model before any training (parameters, MACs, latency)."""
    description: str = ""
    """What it measures, in a few words (listed in the error for an unknown name)."""


def count_parameters(module: torch.nn.Module) -> int:
    """Parameters of a module (trainable or not)."""
    return sum(p.numel() for p in module.parameters())


def count_macs(module: torch.nn.Module, example: torch.Tensor) -> float:
    """Multiply-accumulates of one forward pass per input row (PyTorch's FLOP counter / 2:
    convolutions and matrix products, which dominate every model here)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = module.training
    module.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(example)
    module.train(was_training)
    return counter.get_total_flops() / 2 / len(example)


def measure_latency_ms(module: torch.nn.Module, example: torch.Tensor) -> float:
    """Median inference time per input row in milliseconds, on the example's device, in
    batches of LATENCY_BATCH rows (measured: it varies with the machine's load)."""
    batch = example.repeat(
        (LATENCY_BATCH + len(example) - 1) // len(example), *[1] * (example.dim() - 1)
    )
    batch = batch[:LATENCY_BATCH]
    cuda = batch.device.type == "cuda"
    was_training = module.training
    module.eval()
    times = []
    with torch.inference_mode():
        for repeat in range(LATENCY_REPEATS + 1):
            if cuda:
                torch.cuda.synchronize(batch.device)
            start = time.perf_counter()
            module(batch)
            if cuda:
                torch.cuda.synchronize(batch.device)
            if repeat:  # the first batch warms caches and kernels up
                times.append(time.perf_counter() - start)
    module.train(was_training)
    return statistics.median(times) * 1000 / len(batch)


def module_metrics(
    module: torch.nn.Module, example: torch.Tensor, prefix: str = "", latency: bool = True
) -> dict[str, float]:
    """`{prefix}params`, `{prefix}macs` (per input row) and `{prefix}latency_ms` (per row)."""
    metrics = {
        f"{prefix}params": float(count_parameters(module)),
        f"{prefix}macs": count_macs(module, example[:1]),
    }
    if latency:
        metrics[f"{prefix}latency_ms"] = measure_latency_ms(module, example)
    return metrics
