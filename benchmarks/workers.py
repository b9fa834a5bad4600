"""Finished trials per hour with 1 and 2 worker processes, on SQLite and on PostgreSQL.

A fixed small task (cnn on digits' 1,257 training images, small widths, batch 64, random
sampler, no pruning, 4 epochs; `--dataset` and `--epochs` change them) runs through the real
CLI: `tunelab run ... --workers K`, timed from start to exit (interpreter start-up included),
and in steady state: from the first trial's start to the last trial's end, as Optuna recorded
them (what a long search sees, start-up amortised). Each worker gets one core
(OMP_NUM_THREADS=1), as `--workers 2` gives each of two workers on a 2-core machine; a single
worker using both cores is timed too (SQLite). The Optuna storage is the setup's backend;
MLflow tracks in a local SQLite file in every setup, unless `--pg-tracking` puts it on
PostgreSQL too in the PostgreSQL setups. A first one-trial run, untimed, creates the schemas
and caches. Prints trials/hour for each and the 2-worker scaling ratios last.

    .venv/bin/python benchmarks/workers.py [--trials 24] [--epochs 4] [--dataset digits]
        [--pg postgresql+psycopg://postgres@127.0.0.1:5432] [--pg-tracking]
        [--backends sqlite postgresql]
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
    dataset: str = "digits",
) -> tuple[float, float]:
    """Finished trials per hour: end to end, and in steady state."""
    (folder / "small.yaml").write_text(CONFIG)
    name = f"bench-{workers}-{uuid.uuid4().hex[:6]}"
    tunelab = Path(sys.executable).with_name("tunelab")
    args = [
        str(tunelab),
        "run",
        "cnn",
        *("--dataset", dataset, "--study-name", name, "--config", "small.yaml"),
        *("--n-trials", str(trials), "--max-epochs", str(epochs)),
        *("--sampler", "random", "--pruner", "none", "--workers", str(workers)),
        *("--storage", storage, "--tracking-uri", tracking, "--quiet"),
    ]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    env.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    done = subprocess.run(args, cwd=folder, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"tunelab exited {done.returncode}:\n{done.stderr[-3000:]}")
    study = optuna.load_study(study_name=name, storage=storage)
    finished = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    first = min(t.datetime_start for t in finished)
    last = max(t.datetime_complete for t in finished)
    steady = len(finished) / (last - first).total_seconds() * 3600
    return len(finished) / elapsed * 3600, steady


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=4, help="epochs of every trial")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    parser.add_argument(
        "--backends",
        nargs="+",
        choices=("sqlite", "postgresql"),
        default=["sqlite", "postgresql"],
        help="the storages to time (both by default)",
    )
    parser.add_argument(
        "--pg-tracking",
        action="store_true",
        help="MLflow on PostgreSQL too in the PostgreSQL setups (default: a local SQLite file)",
    )
    args = parser.parse_args()
    suffix = uuid.uuid4().hex[:8]
    databases = [f"tunelab_bench_{suffix}"]
    if args.pg_tracking:
        databases.append(f"tunelab_bench_mlflow_{suffix}")
    admin = args.pg.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        for database in databases:
            connection.execute(f'CREATE DATABASE "{database}"')
    rates: dict[tuple[str, int, int | None], float] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            local_tracking = f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
            pg_tracking = f"{args.pg}/{databases[-1]}" if args.pg_tracking else local_tracking
            backends = {
                "sqlite": (f"sqlite:///{folder / 'studies.db'}", local_tracking),
                "postgresql": (f"{args.pg}/{databases[0]}", pg_tracking),
            }
            for tracking in dict.fromkeys((local_tracking, pg_tracking)):  # schemas, caches
                warm_up = f"sqlite:///{folder / 'warm.db'}"
                run(warm_up, tracking, 1, 1, 1, folder, None, args.dataset)
            # (workers, threads per worker): one core per worker, and the default single run
            # whose torch uses both cores by itself.
            setups = {"sqlite": [(1, 1), (2, 1), (1, None)], "postgresql": [(1, 1), (2, 1)]}
            for backend in args.backends:
                storage, tracking = backends[backend]
                for workers, threads in setups[backend]:
                    rate, steady = run(
                        storage,
                        tracking,
                        workers,
                        args.trials,
                        args.epochs,
                        folder,
                        threads,
                        args.dataset,
                    )
                    rates[backend, workers, threads] = steady
                    label = f"{threads or os.cpu_count()} thread(s) each"
                    print(
                        f"{backend:10s} {workers} worker(s), {label}: {rate:6.0f} trials/hour "
                        f"end to end, {steady:6.0f} in steady state",
                        flush=True,
                    )
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            for database in databases:
                connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    if "sqlite" in args.backends:
        one_core = rates["sqlite", 1, None] / rates["sqlite", 1, 1]
        print(f"steady state, one worker using both cores / one core (sqlite): {one_core:.2f}x")
    for backend in args.backends:
        ratio = rates[backend, 2, 1] / rates[backend, 1, 1]
        print(f"steady-state scaling, 2 workers / 1 worker, one core each, {backend}: {ratio:.2f}x")


if __name__ == "__main__":
    main()
