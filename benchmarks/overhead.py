"""Overhead of tunelab around one CNN trial, against a bare PyTorch loop doing the same work.

Both train the task's default CNN on mnist5k with the same batched augmentation, optimizer,
schedule and epochs, evaluating on the validation split every epoch. The tunelab side is a
whole one-trial study through `run_study`: Optuna storage (SQLite), pruner reports, MLflow
tracking (SQLite) of params, per-epoch metrics, checkpoints, final precision/recall/F1, the
confusion matrix and artifacts. Storage schemas are created before timing (a one-time cost
per database, printed separately). Runs are interleaved; the best of each is compared.

    .venv/bin/python benchmarks/overhead.py [--epochs 5] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from tunelab.objectives.augment import AugmentConfig, augment_batch
from tunelab.objectives.classification import ClassificationTask, ClassifierHParams
from tunelab.objectives.data import DataSpec, load_data
from tunelab.search.adapters.tracking import telemetry_env
from tunelab.search.spec import StudySpec
from tunelab.search.study.prepare import prepare
from tunelab.search.study.run import run_study


def bare_loop(data, epochs: int, seed: int = 0) -> float:
    """The plain PyTorch loop a user would write for the same trial; returns best accuracy."""
    hp = ClassifierHParams()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    parts = ClassificationTask().build(hp, data, torch.device("cpu"), epochs)
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


def tunelab_trial(folder: Path, epochs: int, name: str) -> float:
    spec = StudySpec(
        task="cnn",
        study_name=name,
        dataset="mnist5k",
        n_trials=1,
        max_epochs=epochs,
        patience=epochs,
        pruner="none",
        device="cpu",
        storage=f"sqlite:///{folder / 'studies.db'}",
        tracking_uri=f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}",
        checkpoint_dir=str(folder / "checkpoints"),
        quiet=True,
    )
    prepared = prepare(spec)  # data loading and checks, outside the timed region as for bare
    (outcome, wall, cpu) = timed(lambda: run_study(prepared))
    assert outcome.finished == 1
    return wall, cpu


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
    args = parser.parse_args()
    os.environ.update(telemetry_env())  # as the tunelab CLI runs
    data = load_data(DataSpec("mnist5k"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        warm_up = tunelab_trial(folder, 1, "schema-warm-up")  # creates both schemas
        print(f"first study in fresh databases (schemas + 1 epoch): {warm_up[0]:.2f} s wall")
        bare, tuned = [], []
        for repeat in range(args.repeats):
            bare.append(timed(lambda: bare_loop(data, args.epochs))[1:])
            tuned.append(tunelab_trial(folder, args.epochs, f"overhead-{repeat}"))
            print(
                f"repeat {repeat}: bare {bare[-1][0]:.2f} s wall / {bare[-1][1]:.2f} s CPU, "
                f"tunelab {tuned[-1][0]:.2f} s wall / {tuned[-1][1]:.2f} s CPU"
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
