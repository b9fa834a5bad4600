"""Several worker processes on one study: how many, launched, watched, stopped together.

Each worker is the real `tunelab worker` command in its own process (not a thread), so it
has its own interpreter, seed stream and heartbeat, exactly like a worker on another machine.
On a CPU, small image models train about as fast per core on one thread as on several, so by
default every core gets a worker of its own; with several GPUs each worker is pinned to one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from tunelab.objectives.budget import TrialBudget
from tunelab.objectives.data import DataBundle
from tunelab.search.adapters.signals import Terminated, sleep_unless_stopped
from tunelab.search.spec import STORAGE_ENV, TRACKING_ENV, StudySpec
from tunelab.search.study.progress import StudyProgress

POLL_S = 2.0
STOP_WAIT_S = 120
"""How long stopped workers get to record their trial as failed and close their runs."""
WORKER_MEMORY_BYTES = 1_500_000_000
"""A worker's memory besides its copy of the data set (interpreter, torch, model)."""


@dataclass(frozen=True)
class WorkerPlan:
    """How a study runs on this machine."""

    workers: int
    """Worker processes (1: the study runs in this process)."""
    threads: int | None
    """CPU threads per worker (None: torch's default)."""

    def describe(self, device: torch.device) -> str:
        threads = f", {self.threads} CPU thread(s) each" if self.threads else ""
        return f"{self.workers} worker(s) on {device}{threads}"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def plan_workers(spec: StudySpec, device: torch.device, data: DataBundle) -> WorkerPlan:
    """Workers and threads per worker on this machine: --workers and --threads where given;
    otherwise one worker per GPU, or on a CPU one single-threaded worker per core (as many as
    memory holds, and no more than the trial target)."""
    if device.type == "cuda":
        return WorkerPlan(spec.workers or max(1, torch.cuda.device_count()), spec.threads)
    if device.type != "cpu":  # one accelerator shared by every process would only contend
        return WorkerPlan(spec.workers or 1, spec.threads)
    cores = usable_cores()
    if spec.workers:
        return WorkerPlan(spec.workers, spec.threads or max(1, cores // spec.workers))
    threads = spec.threads or 1
    workers = max(1, cores // threads)
    if spec.trial_target is not None:  # a worker beyond the trials to run only starts up
        workers = min(workers, spec.trial_target)
    return WorkerPlan(min(workers, _memory_cap(data)), threads)


def _memory_cap(data: DataBundle) -> int:
    """Workers whose data and models fit in the memory available now."""
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
        available = next(int(line.split()[1]) * 1024 for line in lines if "MemAvailable" in line)
    except (OSError, StopIteration):
        return 1 << 16
    per_worker = WORKER_MEMORY_BYTES + 2 * sum(
        s.x.element_size() * s.x.nelement() for s in (data.train, data.val, data.test)
    )
    return max(1, available // per_worker)


def worker_command(spec: StudySpec, index: int, threads: int | None) -> list[str]:
    """A worker's command line; the storage URL travels in the environment, not here."""
    command = [sys.executable, "-m", "tunelab", "worker", spec.name]
    command += ["--device", spec.device, "--worker-index", str(index), "--quiet"]
    if spec.verbose:
        command.append("--verbose")
    if threads:
        command += ["--threads", str(threads)]
    if spec.deadline is not None:
        command += ["--deadline", repr(spec.deadline)]
    return command


def launch_workers(
    spec: StudySpec, plan: WorkerPlan, study: optuna.Study, budget: TrialBudget
) -> int:
    """Run the planned workers until they stop; returns the exit code for this process."""
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    processes = []
    for index in range(plan.workers):
        # URLs (maybe with passwords) travel in the environment, never in `ps`
        env = {**os.environ, STORAGE_ENV: spec.storage, TRACKING_ENV: spec.tracking_uri}
        if gpus > 1:
            env["CUDA_VISIBLE_DEVICES"] = str(index % gpus)
        elif plan.threads:
            # CPU workers share the cores: more threads per process than cores per worker
            # only makes them spin against each other.
            env["OMP_NUM_THREADS"] = str(plan.threads)
        processes.append(subprocess.Popen(worker_command(spec, index, plan.threads), env=env))
    display = None
    if not spec.quiet:
        done = _finished(study)
        direction = study.directions[0].name.lower()  # the primary objective's
        display = StudyProgress(spec.name, spec.trial_target, done, budget, direction)
    try:
        if display:
            display.__enter__()
        while any(p.poll() is None for p in processes):
            if display:
                _show(display, study)
            sleep_unless_stopped(POLL_S)  # a SIGTERM: forwarded to the workers below, at once
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


def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _show(display: StudyProgress, study: optuna.Study) -> None:
    trials = study.get_trials(deepcopy=False)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    for t in trials:
        if t.state == TrialState.COMPLETE and t.values:
            display.offer_best(t.values[0])
    display.show_finished(_finished(study))
    display.update(f"{running} running")
