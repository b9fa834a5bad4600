"""Crash points: a worker killed (SIGKILL) or stopped (SIGTERM) right after one storage call, at
each call in turn, then the study run again to its end, and what must hold checked.

The worker is the real one (`run_study`: scheduler, worker loop, storage, MLflow), in a process
of its own forked from a server that imported tunelab once (multiprocessing's forkserver), so
that each crash costs milliseconds of start-up, not seconds. The fault is real: after the
chosen call returns, the process sends the signal to itself. Nothing in tunelab is replaced;
the counting wrapper only decides when to send it.

Importable by path (tests/faults on sys.path); `probe` lists the calls a clean run makes.
"""

from __future__ import annotations

import collections
import functools
import multiprocessing
import os
import signal
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STORAGE_CALLS = (
    "take_new",
    "take_waiting",
    "end_running",
    "set_trial_state_values",
    "_create_new_trial",
    "_set_trial_param",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "set_study_user_attr",
    "get_trial",
    "_get_trials",
    "state_counts",
    "running_heartbeats",
)
"""The storage calls a worker makes (ResilientRDBStorage's methods), each a crash point."""
FINISHED = ("COMPLETE", "PRUNED")


@dataclass(frozen=True)
class Point:
    """After the `occurrence`-th call of `method` (from 1), send `signum` to the worker."""

    method: str
    occurrence: int
    signum: int

    def __str__(self) -> str:
        return f"{signal.Signals(self.signum).name} after {self.method} #{self.occurrence}"


def install(point: Point | None, log: Path | None = None) -> None:
    """Count the storage calls of this process; at the point, send the signal."""
    from tunelab.search.adapters.storage import ResilientRDBStorage

    counts: collections.Counter[str] = collections.Counter()
    lines = [] if log is not None else None
    from tunelab.objectives.checkpoints import TrialCheckpoint

    # a checkpoint's write too: a worker killed after it, before its rung's report
    for owner, name in [
        *((ResilientRDBStorage, n) for n in STORAGE_CALLS),
        (TrialCheckpoint, "save"),
    ]:
        method = getattr(owner, name)

        def counted(*args: Any, __method=method, __name=name, **kwargs: Any) -> Any:
            result = __method(*args, **kwargs)
            counts[__name] += 1
            if lines is not None:
                lines.append(f"{__name} {counts[__name]}")
                log.write_text("\n".join(lines))
            if point is not None and point.method == __name and counts[__name] == point.occurrence:
                os.kill(os.getpid(), point.signum)
            return result

        setattr(owner, name, functools.wraps(method)(counted))


def _worker(spec: dict[str, Any], point: Point | None, log: str | None) -> None:
    """A worker process's body, as `tunelab run` runs it (its exit code as the CLI's)."""
    from tunelab.search.adapters.signals import interrupt_once

    try:
        interrupt_once()
        install(point, None if log is None else Path(log))
        import torch

        from tunelab.search.spec import StudySpec
        from tunelab.search.study.prepare import prepare
        from tunelab.search.study.run import run_study

        torch.set_num_threads(1)
        run_study(prepare(StudySpec(**spec)))
    except KeyboardInterrupt:
        os._exit(143)
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)


_CONTEXT: list[multiprocessing.context.BaseContext] = []


def _context() -> multiprocessing.context.BaseContext:
    if not _CONTEXT:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["torch", "optuna", "mlflow", "tunelab.search.study.run"])
        _CONTEXT.append(context)
    return _CONTEXT[0]


def run_worker(spec: dict[str, Any], point: Point | None = None, log: Path | None = None) -> int:
    """One worker process; its exit code (-9 when killed)."""
    process = _context().Process(target=_worker, args=(spec, point, log and str(log)))
    process.start()
    process.join(timeout=600)
    if process.is_alive():
        process.kill()
        process.join()
        raise TimeoutError(f"the worker did not end ({point})")
    return process.exitcode


def probe(spec: dict[str, Any], log: Path) -> list[tuple[str, int]]:
    """The storage calls a clean run of `spec` makes, in order: (method, occurrence)."""
    assert run_worker(spec, None, log) == 0
    return [(name, int(n)) for name, n in (line.split() for line in log.read_text().split("\n"))]


@dataclass
class Invariants:
    """What must hold after a crash and a rerun (each a list of what broke)."""

    broken: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.broken.append(what)


def curve_gaps(trial) -> list[int]:
    """The rung steps missing from a trial's curve, its own and its sources' (rungs are of one
    size: the curve is that size's multiples up to the last step)."""
    steps = sorted(trial.intermediate_values)
    if not steps:
        return []
    return sorted(set(range(steps[0], steps[-1] + 1, steps[0])) - set(steps))


def check_study(storage_url: str, tracking_uri: str, name: str, target: int) -> list[str]:
    """The invariants, read back through Optuna's and MLflow's own clients."""
    import optuna
    from mlflow import MlflowClient
    from optuna.trial import TrialState

    from tunelab.objectives import keys
    from tunelab.search.scheduler import lineage
    from tunelab.search.scheduler.recovery import MAX_RETRY, deaths, retried_reason

    found = Invariants()
    study = optuna.load_study(study_name=name, storage=storage_url)
    trials = study.get_trials(deepcopy=False)
    states = collections.Counter(t.state.name for t in trials)
    finished = sum(states[s] for s in FINISHED)
    found.check(finished == target, f"{finished} finished trials for a target of {target}")
    found.check(not states["RUNNING"], f"{states['RUNNING']} RUNNING trial(s)")
    found.check(not states["WAITING"], f"{states['WAITING']} WAITING trial(s)")
    retries = lineage.successors(trials, lineage.RETRY)
    chains = lineage.chains(trials)
    for chain in chains.values():
        complete = [t for t in chain if t.state.name in FINISHED]
        found.check(len(complete) <= 1, f"configuration {chain[0].number} finished twice")
        found.check(deaths(chain) <= MAX_RETRY + 1, f"configuration {chain[0].number} died often")
    for t in trials:
        reason = keys.trial_attr(t, keys.FAIL_REASON)
        # a fault stops or kills a worker: its trial fails for that, never for another reason
        found.check(
            t.state != TrialState.FAIL or retried_reason(reason),
            f"trial {t.number} failed: {reason}",
        )
        if t.state == TrialState.FAIL and retried_reason(reason) and t.params:
            found.check(
                t.number in retries or deaths([t]) > MAX_RETRY, f"trial {t.number} not retried"
            )
    for t in trials:
        if t.state.name in FINISHED:
            found.check(not curve_gaps(t), f"trial {t.number}'s curve lacks {curve_gaps(t)}")
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=1000) if experiment else []
    by_trial: dict[int, list] = collections.defaultdict(list)
    for run in runs:
        number = run.data.tags.get(keys.TRIAL_NUMBER_TAG)
        if number is not None:
            by_trial[int(number)].append(run)
    status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
    for t in trials:
        mine = by_trial.get(t.number, [])
        found.check(len(mine) <= 1, f"trial {t.number} has {len(mine)} MLflow runs")
        for run in mine:
            found.check(
                run.info.status == status.get(t.state.name),
                f"trial {t.number} is {t.state.name}, its run {run.info.status}",
            )
    found.check(
        not [r for r in runs if r.info.status == "RUNNING"], "an MLflow run is left RUNNING"
    )
    return found.broken
