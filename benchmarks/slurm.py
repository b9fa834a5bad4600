"""A study as a Slurm job array against the same study on local workers: the time from the
command to the first trial's first step, and the finished trials per minute.

Both sides run the same study settings (a small CNN on digits by default: widths 16/64, batch
64, random sampler, no pruning, 4 epochs; `--task`, `--dataset`, `--epochs` change them) on one
PostgreSQL server, MLflow in a local SQLite file each:

- the array: `tunelab launch slurm ... --workers N --cpus-per-worker 1 --single-node` on the
  project's one-node Slurm cluster (tests/slurm/cluster.py, started here and stopped after; or
  the cluster of `--slurm-conf`), timed from the command's start;
- local: `tunelab run ... --workers N --threads 1` on this machine, timed the same way.

Each side prints the seconds from its command to the first reported step (study creation,
submission and scheduling, the workers' start-up) and its throughput in steady state (the
finished trials over the time from the first trial's start to the last trial's end, as Optuna
recorded them; what a long search sees) and end to end, and the mean seconds of a trial. The
last line is the array's steady throughput over the local one's (goal: at most 10% slower),
medians over `--repeats` runs of each side in alternating order (a busy machine favours no
side).
Needs root (the cluster's daemons).

    .venv/bin/python benchmarks/slurm.py [--workers 2] [--trials 16] [--epochs 4]
        [--task cnn] [--dataset digits] [--pg postgresql+psycopg://postgres@127.0.0.1:5432]
        [--slurm-conf /path/slurm.conf] [--order local,slurm] [--repeats 1]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna
import psycopg
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_PY = ROOT / "tests" / "slurm" / "cluster.py"
TUNELAB = Path(sys.executable).with_name("tunelab")
CNN_CONFIG = "params:\n  base_width: 16\n  fc_width: 64\n  convs_per_block: 1\n  batch_size: 64\n"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
GOAL = 0.10
"""The array's throughput should be within this share of the local workers'."""


def cluster_module():
    """tests/slurm/cluster.py, by path (tests/ is no package)."""
    name = "tunelab_slurm_cluster"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, CLUSTER_PY)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # before exec_module: its dataclasses look it up there
        spec.loader.exec_module(module)
    return sys.modules[name]


def study_args(args, name: str) -> list[str]:
    """The study's options, the same on both sides."""
    options = [args.task, "--dataset", args.dataset, "--study-name", name]
    options += ["--n-trials", str(args.trials), "--max-epochs", str(args.epochs)]
    options += ["--patience", str(args.epochs), "--sampler", "random", "--pruner", "none"]
    options += ["--quiet"]
    if args.task == "cnn":
        options += ["--config", "small.yaml"]
    return options


Rates = tuple[float, float, float, float]
"""Seconds to the first step, trials/min in steady state and end to end, mean trial seconds."""


def first_step_and_rates(
    storage: str, name: str, process: subprocess.Popen | None, started: float, done
) -> Rates:
    """Poll the study: (seconds from `started` to its first reported step, finished trials
    per minute in steady state and end to end once `done()` says the side has ended, the
    mean seconds of a trial)."""
    engine = optuna.storages.RDBStorage(storage)
    first = None
    try:
        while True:
            if process is not None and process.poll() not in (None, 0):
                sys.exit(f"the command exited {process.returncode}")
            if first is None:
                try:
                    study = optuna.load_study(study_name=name, storage=engine)
                    trials = study.get_trials(deepcopy=False)
                except KeyError:  # not created yet
                    trials = []
                if any(t.intermediate_values for t in trials):
                    first = time.perf_counter() - started
            if done():
                break
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        study = optuna.load_study(study_name=name, storage=engine)
        finished = study.get_trials(deepcopy=False, states=FINISHED)
    finally:
        engine.engine.dispose()
    if first is None or not finished:
        sys.exit(f"study {name}: no trial reported a step")
    begin = min(t.datetime_start for t in finished)
    end = max(t.datetime_complete for t in finished)
    steady = len(finished) / max((end - begin).total_seconds(), 1e-6) * 60
    trial_s = statistics.mean(
        (t.datetime_complete - t.datetime_start).total_seconds() for t in finished
    )
    return first, steady, len(finished) / elapsed * 60, trial_s


def without_urls(environ) -> dict[str, str]:
    """The environment less any storage or tracking URL and thread count of the caller's."""
    skipped = ("TUNELAB_STORAGE", "MLFLOW_TRACKING", "OMP_NUM_THREADS")
    return {k: v for k, v in environ.items() if not k.startswith(skipped)}


def run_local(args, storage: str, folder: Path, env: dict) -> Rates:
    name = f"bench-local-{uuid.uuid4().hex[:6]}"
    command = [str(TUNELAB), "run", *study_args(args, name), "--workers", str(args.workers)]
    command += ["--threads", "1", "--tracking-uri", f"sqlite:///{folder / 'local.db'}"]
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=folder,
        env={**without_urls(os.environ), **env, "TUNELAB_STORAGE": storage},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    rates = first_step_and_rates(storage, name, process, started, lambda: process.poll() == 0)
    process.wait()
    return rates


def run_array(args, cluster, storage: str, folder: Path, env: dict) -> Rates:
    name = f"bench-slurm-{uuid.uuid4().hex[:6]}"
    command = [str(TUNELAB), "launch", "slurm", *study_args(args, name)]
    command += ["--workers", str(args.workers), "--cpus-per-worker", "1", "--single-node"]
    command += ["--tracking-uri", f"sqlite:///{folder / 'slurm.db'}"]
    print(f"  launch: tunelab {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    launched = subprocess.run(
        command,
        cwd=folder,
        env={**without_urls(cluster.env()), **env, "TUNELAB_STORAGE": storage},
        capture_output=True,
        text=True,
    )
    if launched.returncode != 0:
        sys.exit(f"tunelab launch slurm exited {launched.returncode}: {launched.stderr[-2000:]}")
    job = re.search(r"submitted Slurm job (\d+)", launched.stdout)[1]
    finals = cluster_module().FINAL_STATES

    def ended() -> bool:
        states = cluster.states(job, source="squeue")
        return bool(states) and set(states.values()) <= finals

    rates = first_step_and_rates(storage, name, None, started, ended)
    states = cluster.states(job, source="squeue")
    if set(states.values()) != {"COMPLETED"}:
        sys.exit(f"array {job} ended {states}")
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="array tasks / local workers")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=4, help="epochs of every trial")
    parser.add_argument("--task", default="cnn")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432")
    parser.add_argument("--slurm-conf", help="a running cluster's slurm.conf (else one here)")
    parser.add_argument(
        "--order", default="local,slurm", help="which side runs first (comma-separated)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="runs of each side, in alternating order (A B B A ...): the medians count",
    )
    args = parser.parse_args()
    first_two = args.order.split(",")
    if sorted(first_two) != ["local", "slurm"]:
        parser.error("--order takes local,slurm or slurm,local")
    order = [side for r in range(args.repeats) for side in first_two[:: 1 if r % 2 == 0 else -1]]
    module = cluster_module()
    if args.slurm_conf:
        cluster = module.SlurmCluster.attach(Path(args.slurm_conf).parents[1])
        cluster._started = False  # not ours to stop
    else:
        cluster = module.SlurmCluster()
        try:
            cluster.start()
        except module.SlurmUnavailable as error:
            sys.exit(f"no Slurm cluster on this machine: {error}")
    database = f"tunelab_bench_slurm_{uuid.uuid4().hex[:8]}"
    admin = args.pg.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{database}"')
    storage = f"{args.pg}/{database}"
    env = {"MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"}
    results: dict[str, list[Rates]] = {"local": [], "slurm": []}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-slurm-") as tmp:
            folder = Path(tmp)
            (folder / "small.yaml").write_text(CNN_CONFIG)
            cores = f"{args.workers} worker(s) of one core each"
            print(
                f"{args.task} on {args.dataset}: {args.trials} trials of {args.epochs} epochs, "
                f"{cores}; {os.cpu_count()} cores here",
                flush=True,
            )
            for side in order:
                if side == "slurm":
                    rates = run_array(args, cluster, storage, folder, env)
                    label = f"slurm array, {args.workers} task(s)"
                else:
                    rates = run_local(args, storage, folder, env)
                    label = f"local run --workers {args.workers}"
                results[side].append(rates)
                first, steady, whole, trial_s = rates
                print(
                    f"{label:28s}: first step {first:6.1f} s after the command; "
                    f"{steady:6.1f} trials/min in steady state, {whole:6.1f} end to end; "
                    f"a trial {trial_s:.2f} s",
                    flush=True,
                )
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        if not args.slurm_conf:
            cluster.stop()

    def median(side: str, index: int) -> float:
        return statistics.median(rates[index] for rates in results[side])

    ratio = median("slurm", 1) / median("local", 1)
    # the goal is an array that loses at most 10% against local workers; faster is no miss
    verdict = "met" if ratio >= 1 - GOAL else "not met"
    medians = " (medians)" if args.repeats > 1 else ""
    print(
        f"steady-state throughput, array / local{medians}: {ratio:.2f}x (goal >= {1 - GOAL:.2f}x: "
        f"{verdict}); first step: {median('slurm', 0) - median('local', 0):+.1f} s for the array"
    )


if __name__ == "__main__":
    main()
