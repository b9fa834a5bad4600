"""Finished trials per hour with 1 and 2 worker processes, on SQLite and on PostgreSQL.

A fixed small task (cnn on 1,000 mnist5k images, small widths, random sampler, no pruning,
5 epochs) runs through the real CLI: `tunelab run ... --workers K`, timed from start to exit
(interpreter start-up included), and in steady state: from the first trial's start to the last
trial's end, as Optuna recorded them (what a long search sees, start-up amortised). Each worker
gets one core (OMP_NUM_THREADS=1), as `--workers 2` gives each of two workers on a 2-core
machine; a single worker using both cores is timed too. Prints trials/hour for each and the
2-worker scaling ratios last.

    .venv/bin/python benchmarks/workers.py [--trials 24] [--epochs 5]
        [--pg postgresql+psycopg://postgres@127.0.0.1:5432]
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

CONFIG = "params:\n  base_width: 16\n  fc_width: 64\n  convs_per_block: 1\n  batch_size: 64\n"


def run(
    storage: str,
    tracking: str,
    workers: int,
    trials: int,
    epochs: int,
    folder: Path,
    threads: int | None,
) -> tuple[float, float]:
    """Finished trials per hour: end to end, and in steady state."""
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
        "--max-epochs",
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
    env.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    subprocess.run(args, cwd=folder, env=env, check=True, capture_output=True)
    elapsed = time.perf_counter() - start
    study = optuna.load_study(study_name=name, storage=storage)
    finished = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    first = min(t.datetime_start for t in finished)
    last = max(t.datetime_complete for t in finished)
    steady = len(finished) / (last - first).total_seconds() * 3600
    return len(finished) / elapsed * 3600, steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    args = parser.parse_args()
    suffix = uuid.uuid4().hex[:8]
    databases = [f"tunelab_bench_{suffix}", f"tunelab_bench_mlflow_{suffix}"]
    admin = args.pg.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        for database in databases:
            connection.execute(f'CREATE DATABASE "{database}"')
    rates: dict[tuple[str, int, int | None], float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            local_tracking = f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
            run(f"sqlite:///{folder / 'warm.db'}", local_tracking, 1, 1, 1, folder, None)
            # Optuna storage and MLflow store on the same backend, as a team would run them.
            backends = {
                "sqlite": (f"sqlite:///{folder / 'studies.db'}", local_tracking),
                "postgresql": (f"{args.pg}/{databases[0]}", f"{args.pg}/{databases[1]}"),
            }
            # (workers, threads per worker): one core per worker, and the default single run
            # whose torch uses both cores by itself.
            setups = {"sqlite": [(1, 1), (2, 1), (1, None)], "postgresql": [(1, 1), (2, 1)]}
            for backend, (storage, tracking) in backends.items():
                for workers, threads in setups[backend]:
                    rate, steady = run(
                        storage, tracking, workers, args.trials, args.epochs, folder, threads
                    )
                    rates[backend, workers, threads] = steady
                    label = f"{threads or os.cpu_count()} thread(s) each"
                    print(
                        f"{backend:10s} {workers} worker(s), {label}: {rate:6.0f} trials/hour "
                        f"end to end, {steady:6.0f} in steady state"
                    )
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            for database in databases:
                connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    one_core = rates["sqlite", 1, None] / rates["sqlite", 1, 1]
    print(f"steady state, one worker using both cores / one core (sqlite): {one_core:.2f}x")
    for backend in ("sqlite", "postgresql"):
        ratio = rates[backend, 2, 1] / rates[backend, 1, 1]
        print(f"steady-state scaling, 2 workers / 1 worker, one core each, {backend}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
