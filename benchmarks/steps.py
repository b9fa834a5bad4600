"""Where one training step of the default CNN spends its time, and what would make it cheaper.

Times the trial loop's own steps (`TrialTraining.steps`: batched augmentation, autocast,
forward, backward, optimizer, schedule, running means) for the task's default configuration
on full MNIST (`--dataset`: another, e.g. digits for a smoke run), on one device, in
variants side by side, then profiles the plain step with torch.profiler (50 steps): the
busiest operators and how many kernels one step launches. On a GPU a
small CNN is bound by the launches, not the arithmetic: what shortens a step there is fewer
launches per image (larger batches, or the whole step replayed as one CUDA graph, which the
loop does there: `objectives/graphs.py`), not fewer FLOPs. On a GPU the first line is the loop
as it runs (graph replays) and every other variant runs eager steps, against the line "eager
steps". Each line gives ms per step, the 10-epoch trial it implies (steps of that batch size;
rung scoring, checkpoints and tracking not included) and the validation accuracy after the
timed steps (each variant still trains). The profile is of eager steps.

    .venv/bin/python benchmarks/steps.py [--device cuda] [--steps 300] [--compile]
        [--dataset mnist]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from tunelab.objectives.budget import epoch_budget
from tunelab.objectives.classification import ClassificationTask, ClassifierHParams
from tunelab.objectives.data import DataSpec, load_data
from tunelab.objectives.optim import make_scheduler
from tunelab.objectives.runner import LoopConfig, TrialTraining

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TUNELAB_SHARED_DATA", ROOT.parent / "shared" / "data"))
EPOCHS = 10
WARM_UP_STEPS = 20
"""Untimed steps first: cuDNN's choices, the allocator, compilation, graph capture."""

Tweak = Callable[[TrialTraining], None]


def fused_optimizer(training: TrialTraining) -> None:
    """The same AdamW as one fused kernel per step (CUDA), its schedule rebuilt on it."""
    hp, parts = training.hp, training.parts
    model = parts.modules["model"]
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay, fused=True
    )
    parts.optimizers["optimizer"] = optimizer
    total = training.loop.budget.steps(hp.batch_size)
    parts.schedulers["lr"] = make_scheduler(optimizer, hp.lr_schedule, total)


def cudnn_autotuned(training: TrialTraining) -> None:
    """cuDNN times its algorithms for each new shape and keeps the fastest (a process-wide
    switch: this variant runs last, and `main` turns it off again before the profile)."""
    torch.backends.cudnn.benchmark = True


def compiled(mode: str | None) -> Tweak:
    def tweak(training: TrialTraining) -> None:
        model = training.parts.modules["model"]
        training.parts.modules["model"] = torch.compile(model, mode=mode)

    return tweak


def time_steps(
    data,
    device: torch.device,
    precision: str,
    steps: int,
    hp: ClassifierHParams,
    *tweaks: Tweak,
    cuda_graphs: bool = False,
) -> tuple[float, float, int, float]:
    """(ms per step, seconds of set-up and warm-up, steps per epoch, val accuracy after)."""
    start = time.perf_counter()
    training = default_training(data, device, precision, hp, cuda_graphs)
    for tweak in tweaks:
        tweak(training)
    run = training.steps()
    for _ in range(WARM_UP_STEPS):
        next(run)
    training.means.pop()
    synchronize(device)
    setup = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        next(run)
    training.means.pop()  # the loop's one sync per rung
    synchronize(device)
    ms = 1000 * (time.perf_counter() - start) / steps
    return ms, setup, training.batches_per_epoch, val_accuracy(training)


def default_training(
    data, device: torch.device, precision: str, hp: ClassifierHParams, cuda_graphs: bool = False
) -> TrialTraining:
    """A trial's training of `hp` as the loop builds it: a 10-epoch budget, seed 0."""
    loop = LoopConfig(
        budget=epoch_budget(EPOCHS, len(data.train)),
        device=str(device),
        precision=precision,
        cuda_graphs=cuda_graphs,
    )
    return TrialTraining(ClassificationTask(), hp, data, loop, seed=0)


def val_accuracy(training: TrialTraining) -> float:
    """Validation accuracy after the timed steps: each variant still trains the model."""
    model, val = training.parts.modules["model"], training.data.val
    model.eval()
    with torch.inference_mode():
        return (model(val.x).argmax(dim=1) == val.y).float().mean().item()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def profile_step(data, device: torch.device, precision: str, hp: ClassifierHParams) -> None:
    from torch.profiler import ProfilerActivity, profile

    training = default_training(data, device, precision, hp)
    run = training.steps()
    for _ in range(WARM_UP_STEPS):
        next(run)
    synchronize(device)
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    steps = 50
    with profile(activities=activities) as prof:
        for _ in range(steps):
            next(run)
        training.means.pop()
        synchronize(device)
    events = prof.key_averages()
    launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel"))
    syncs = sum(e.count for e in events if "Synchronize" in e.key)
    print(
        f"\nprofile of {steps} steps ({precision}): {launches / steps:.0f} kernel launches and "
        f"{syncs / steps:.2f} synchronisations per step"
    )
    print(events.table(sort_by="self_cpu_time_total", row_limit=15))
    if device.type == "cuda":
        print(events.table(sort_by="self_cuda_time_total", row_limit=10))


def result_line(
    label: str,
    precision: str,
    hp: ClassifierHParams,
    ms: float,
    setup: float,
    per_epoch: int,
    accuracy: float,
) -> str:
    return (
        f"{label:<32} {precision:>4} batch {hp.batch_size:3d}: {ms:7.2f} ms/step, "
        f"{EPOCHS}-epoch trial {ms * per_epoch * EPOCHS / 1000:7.1f} s "
        f"(set-up {setup:5.1f} s); val accuracy after {accuracy:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--compile", action="store_true", help="also torch.compile variants")
    args = parser.parse_args()
    device = torch.device(args.device)
    data = load_data(DataSpec(args.dataset, data_dir=str(SHARED)), device).channels_last()
    default = ClassifierHParams()
    native = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    no_augment = dataclasses.replace(default, rotation=0.0, crop_padding=0)
    variants: list[tuple[str, str, ClassifierHParams, tuple[Tweak, ...]]] = [
        ("default, bf16 autocast", native, default, ()),
        ("no augmentation", "fp32", no_augment, ()),
        ("batch 256", "fp32", dataclasses.replace(default, batch_size=256), ()),
    ]
    if device.type == "cuda":
        variants.append(("fused AdamW", "fp32", default, (fused_optimizer,)))
    if args.compile:
        variants.append(("torch.compile", "fp32", default, (compiled(None),)))
        if device.type == "cuda":
            variants.append(
                ("torch.compile reduce-overhead", "fp32", default, (compiled("reduce-overhead"),))
            )
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{args.dataset} on {name}, torch {torch.__version__}: {args.steps} steps per variant")
    timed = time_steps(data, device, "fp32", args.steps, default, cuda_graphs=True)
    print(result_line("default (the trial loop)", "fp32", default, *timed), flush=True)
    if device.type == "cuda":
        variants.insert(0, ("eager steps", "fp32", default, ()))
    for label, precision, hp, tweaks in variants:
        timed = time_steps(data, device, precision, args.steps, hp, *tweaks)
        print(result_line(label, precision, hp, *timed), flush=True)
    if device.type == "cuda":
        timed = time_steps(
            data, device, "fp32", args.steps, default, cudnn_autotuned, cuda_graphs=True
        )
        print(result_line("the trial loop, cuDNN autotuned", "fp32", default, *timed), flush=True)
        torch.backends.cudnn.benchmark = False  # the profile is of the plain eager step
    profile_step(data, device, "fp32", default)


if __name__ == "__main__":
    main()
