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
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from objectives.augment import AugmentConfig, augment_batch
from objectives.classification import ClassificationTask, ClassifierHParams
from objectives.data import DataSpec, load_data
from search.config import StudySpec
from search.study import prepare, run_study


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
        epochs=epochs,
        patience=epochs,
        pruner="none",
        device="cpu",
        storage=f"sqlite:///{folder / 'studies.db'}",
        tracking_uri=f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}",
        checkpoint_dir=str(folder / "checkpoints"),
        quiet=True,
    )
    prepared = prepare(spec)  # data loading and checks, outside the timed region as for bare
    start = time.perf_counter()
    outcome = run_study(prepared)
    elapsed = time.perf_counter() - start
    assert outcome.finished == 1
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    data = load_data(DataSpec("mnist5k"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        tunelab_trial(folder, 1, "schema-warm-up")  # creates both databases' schemas
        print(
            f"first study in fresh databases (schemas + 1 epoch): "
            f"{time.perf_counter() - start:.2f} s"
        )
        bare, tuned = [], []
        for repeat in range(args.repeats):
            start = time.perf_counter()
            bare_loop(data, args.epochs)
            bare.append(time.perf_counter() - start)
            tuned.append(tunelab_trial(folder, args.epochs, f"overhead-{repeat}"))
            print(f"repeat {repeat}: bare {bare[-1]:.2f} s, tunelab {tuned[-1]:.2f} s")
    print(f"bare PyTorch loop, {args.epochs} epochs: {min(bare):.2f} s (best of {args.repeats})")
    print(f"tunelab trial, {args.epochs} epochs:     {min(tuned):.2f} s (best of {args.repeats})")
    print(f"ratio tunelab / bare: {min(tuned) / min(bare):.3f}")


if __name__ == "__main__":
    main()
