"""Several worker processes on one study: launched, watched, stopped together.

Each worker is the real `tunelab worker` command in its own process (not a thread), so it
has its own interpreter, seed stream and heartbeat, exactly like a worker on another machine.
With several GPUs visible, each worker is pinned to one with CUDA_VISIBLE_DEVICES.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import torch
from optuna.trial import TrialState

from tunelab.search.spec import StudySpec
from tunelab.search.study.progress import StudyProgress
from tunelab.search.study.signals import Terminated

POLL_S = 2.0
STOP_WAIT_S = 120
"""How long stopped workers get to record their trial as failed and close their runs."""


def default_workers() -> int:
    """One worker per GPU when there are several, else one."""
    return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1


def worker_command(spec: StudySpec, index: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tunelab",
        "worker",
        spec.name,
        "--storage",
        spec.storage,
        "--tracking-uri",
        spec.tracking_uri,
        "--device",
        spec.device,
        "--worker-index",
        str(index),
        "--quiet",
    ]


def launch_workers(spec: StudySpec, count: int, study: optuna.Study) -> int:
    """Run `count` workers until they stop; returns the exit code for this process."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    processes = []
    for index in range(count):
        env = dict(os.environ)
        if gpus > 1:
            env["CUDA_VISIBLE_DEVICES"] = str(index % gpus)
        elif "OMP_NUM_THREADS" not in os.environ:
            # CPU workers share the cores: more threads per process than cores per worker
            # only makes them spin against each other.
            env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // count))
        processes.append(subprocess.Popen(worker_command(spec, index), env=env))
    display = (
        None
        if spec.quiet
        else StudyProgress(
            spec.name, spec.n_trials, 0, spec.max_epochs, study.direction.name.lower()
        )
    )
    try:
        if display:
            display.__enter__()
        while any(p.poll() is None for p in processes):
            if display:
                _show(display, study)
            time.sleep(POLL_S)
        if display:
            _show(display, study)
    except KeyboardInterrupt as interrupt:
        # Ctrl-C in a terminal reaches the workers too; SIGTERM (docker stop) only this one.
        forwarded = signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT
        for process in processes:
            if process.poll() is None:
                process.send_signal(forwarded)
        for process in processes:
            try:
                process.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                process.kill()
        raise
    finally:
        if display:
            display.__exit__(None, None, None)
    codes = [p.returncode for p in processes]
    return next((c for c in codes if c != 0), 0)


def _show(display: StudyProgress, study: optuna.Study) -> None:
    trials = study.get_trials(deepcopy=False)
    finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    for t in trials:
        if t.state == TrialState.COMPLETE and t.value is not None:
            display.offer_best(t.value)
    display.progress.update(display.trials, completed=finished)
    display.update(f"{running} running")
