"""Finished trials per hour with 1 and 2 worker processes, on SQLite and on PostgreSQL.

A fixed small task (cnn on digits, small widths, random sampler, no pruning, 8 epochs) runs
through the real CLI: `tunelab run ... --workers K`, timed from start to exit (interpreter
start-up included). Prints trials/hour for each and the 2-worker scaling ratio last.

    .venv/bin/python benchmarks/workers.py [--trials 20] [--epochs 8] [--pg postgresql+psycopg://postgres@127.0.0.1:5432]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna
import psycopg

CONFIG = "params:\n  base_width: 16\n  fc_width: 64\n  convs_per_block: 1\n  batch_size: 32\n"


def run(storage: str, workers: int, trials: int, epochs: int, folder: Path) -> float:
    (folder / "small.yaml").write_text(CONFIG)
    name = f"bench-{workers}-{uuid.uuid4().hex[:6]}"
    tunelab = Path(sys.executable).with_name("tunelab")
    args = [
        str(tunelab),
        "run",
        "cnn",
        "--dataset",
        "digits",
        "--study-name",
        name,
        "--config",
        "small.yaml",
        "--n-trials",
        str(trials),
        "--epochs",
        "4",
        "--sampler",
        "random",
        "--pruner",
        "none",
        "--workers",
        str(workers),
        "--storage",
        storage,
        "--tracking-uri",
        f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}",
        "--quiet",
    ]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    start = time.perf_counter()
    subprocess.run(args, cwd=folder, env=env, check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    study = optuna.load_study(study_name=name, storage=storage)
    finished = len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
    return finished / elapsed * 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    database = f"tunelab_bench_{uuid.uuid4().hex[:8]}"
    admin = args.pg.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{database}"')
    rates: dict[tuple[str, int], float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            run(f"sqlite:///{folder / 'warm.db'}", 1, 1, 1, folder)  # schemas, caches
            backends = {
                "sqlite": f"sqlite:///{folder / 'studies.db'}",
                "postgresql": f"{args.pg}/{database}",
            }
            for backend, storage in backends.items():
                for workers in (1, 2):
                    rates[backend, workers] = run(
                        storage, workers, args.trials, args.epochs, folder
                    )
                    print(
                        f"{backend:10s} {workers} worker(s): "
                        f"{rates[backend, workers]:6.0f} finished trials/hour"
                    )
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    for backend in ("sqlite", "postgresql"):
        ratio = rates[backend, 2] / rates[backend, 1]
        print(f"scaling 2 workers / 1 worker, {backend}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
