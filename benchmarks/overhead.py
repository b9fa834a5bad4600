"""Overhead of tunelab around one CNN trial, against a bare PyTorch loop doing the same work.

Both train the task's default CNN on the same data set (mnist5k unless `--dataset`) with the
same batched augmentation, optimizer, schedule and epochs, in float32 on the CPU, evaluating on
the validation split every epoch, and both load the data set inside the timed region. The
tunelab side is a whole one-trial study through the public Python API, `tunelab.run("cnn",
n_trials=1, pruner="none", workers=1, ...)`, in this process: checks, Optuna storage (SQLite),
rung reports, MLflow tracking (SQLite) of params, per-epoch metrics, checkpoints, final
precision/recall/F1, the confusion matrix and artifacts, and the study's summary (its printed
lines are swallowed). Its trial alone, as Optuna recorded it (start to end), is printed beside
it. Both sides use this process's torch threads: tunelab's one worker gets every core unless
`--threads` (then both sides get that many); the figures say how many. Storage schemas are
created before timing (a one-time cost per database, printed separately). Runs are
interleaved; the best of each is compared.

    .venv/bin/python benchmarks/overhead.py [--epochs 5] [--repeats 2] [--dataset mnist5k]
        [--threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from optuna.trial import TrialState

import tunelab
from tunelab.objectives.augment import AugmentConfig, augment_batch
from tunelab.objectives.budget import epoch_budget
from tunelab.objectives.classification import ClassificationTask, ClassifierHParams
from tunelab.objectives.data import DataSpec, load_data


def bare_loop(dataset: str, epochs: int, seed: int = 0) -> float:
    """The plain PyTorch loop a user would write for the same trial, from loading the data set
    to the last epoch's evaluation; returns the best validation accuracy."""
    data = load_data(DataSpec(dataset))
    hp = ClassifierHParams()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    budget = epoch_budget(epochs, len(data.train))  # the trial's: its schedule spans `epochs`
    parts = ClassificationTask().build(hp, data, torch.device("cpu"), budget)
    model, optimizer = parts.modules["model"], parts.optimizers["optimizer"]
    scheduler = parts.schedulers["lr"]
    augment = AugmentConfig(hp.rotation, hp.hflip, hp.crop_padding)
    best = 0.0
    for _ in range(epochs):
        model.train()
        loss_sum, correct, seen = torch.zeros(()), torch.zeros((), dtype=torch.long), 0
        for x, y in data.train.batches(hp.batch_size, generator, drop_last=True):
            logits = model(augment_batch(x, augment, generator))
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            seen += len(y)
        model.eval()
        with torch.inference_mode():
            logits = model(data.val.x)
            val_loss = F.cross_entropy(logits, data.val.y).item()
            accuracy = (logits.argmax(1) == data.val.y).float().mean().item()
        best = max(best, accuracy)
        _ = (loss_sum.item() / seen, correct.item() / seen, val_loss)
    return best


def tunelab_trial(folder: Path, dataset: str, epochs: int, name: str, threads: int | None):
    """Wall and CPU seconds of the whole one-trial study, and its trial's own seconds."""
    options = dict(
        study_name=name,
        dataset=dataset,
        n_trials=1,
        max_epochs=epochs,
        patience=epochs,
        pruner="none",
        device="cpu",
        precision="fp32",  # as the bare loop (auto would be bf16 on a CPU with native bf16)
        workers=1,  # in this process, with every core (or `threads`), as the bare loop
        threads=threads,
        storage=f"sqlite:///{folder / 'studies.db'}",
        tracking_uri=f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}",
        checkpoint_dir=str(folder / "checkpoints"),
        quiet=True,
    )
    with contextlib.redirect_stdout(io.StringIO()):  # the study's summary lines
        (study, wall, cpu) = timed(lambda: tunelab.run("cnn", **options))
    (trial,) = study.trials
    assert trial.state == TrialState.COMPLETE, trial.state
    return wall, cpu, (trial.datetime_complete - trial.datetime_start).total_seconds()


def timed(work):
    """Result, wall seconds and this process's CPU seconds (all threads) of one call.

    CPU time is the steadier figure on a shared VM, where wall time also counts the time other
    tenants hold the cores."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--dataset", default="mnist5k", help="data set of both sides (digits: a smoke run)"
    )
    parser.add_argument("--threads", type=int, help="torch threads of both sides [every core]")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if "DO_NOT_TRACK" not in os.environ:  # no MLflow telemetry unless chosen, as the CLI runs
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    warnings.filterwarnings("ignore", message=".*experimental.*")  # as the CLI does
    load_data(DataSpec(args.dataset))  # a first load warms the caches of both sides
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        warm_up = tunelab_trial(folder, args.dataset, 1, "schema-warm-up", args.threads)
        print(f"first study in fresh databases (schemas + 1 epoch): {warm_up[0]:.2f} s wall")
        tunelab_threads = torch.get_num_threads()  # as the study's worker set them
        bare, tuned = [], []
        for repeat in range(args.repeats):
            bare.append(timed(lambda: bare_loop(args.dataset, args.epochs))[1:])
            name = f"overhead-{repeat}"
            tuned.append(tunelab_trial(folder, args.dataset, args.epochs, name, args.threads))
            print(
                f"repeat {repeat}: bare {bare[-1][0]:.2f} s wall / {bare[-1][1]:.2f} s CPU, "
                f"tunelab {tuned[-1][0]:.2f} s wall (its trial {tuned[-1][2]:.2f} s) / "
                f"{tuned[-1][1]:.2f} s CPU"
            )
    print(
        f"{args.dataset}, float32 on the CPU, torch threads: bare {torch.get_num_threads()}, "
        f"tunelab {tunelab_threads} (one worker, this process)"
    )
    for index, clock in enumerate(("wall", "CPU")):
        b, t = min(x[index] for x in bare), min(x[index] for x in tuned)
        print(
            f"best of {args.repeats}, {args.epochs} epochs, {clock}: bare {b:.2f} s, "
            f"tunelab {t:.2f} s, ratio {t / b:.3f}"
        )
    wall = min(t[0] for t in tuned) / min(b[0] for b in bare)
    cpu = min(t[1] for t in tuned) / min(b[1] for b in bare)
    print(f"ratio tunelab / bare: {wall:.3f} wall, {cpu:.3f} CPU")


if __name__ == "__main__":
    main()
