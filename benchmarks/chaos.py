"""Chaos benchmark: one study finished by workers that keep dying, on a database that goes away
and a tracking server that restarts.

K `tunelab worker` processes (each in its own process group, the storage URL in
TUNELAB_STORAGE, never on a command line) share one study of a tiny CNN on `digits`, stored in
a throwaway PostgreSQL cluster and tracked to an MLflow server, both started here on free
127.0.0.1 ports (the system PostgreSQL is never touched). The workers reach the database
through a TCP relay (tests/faults/outages.py). While they work, a driver
- SIGKILLs a random worker that is running a trial every `--kill-every` seconds, and starts it
  again; a restarted worker is, one time in two, given a crash point: it sends itself SIGTERM
  right after a random storage call of its life (tests/faults/crashpoints.py), then is started
  again;
- cuts the relay every `--outage-every` seconds for a random 5 to 30 s (`--outage-s`): every
  connection closed, none accepted;
- restarts PostgreSQL once (a third of the way through) and the MLflow server once (half way).
The same study is first run without faults (`--skip-baseline` skips it), for the wall time;
the chaos study is run `--runs` times, each on fresh databases, its checks printed each time.

At the end it reads the chaos study back through Optuna's and MLflow's own clients and prints
what must hold: finished trials == the target, no RUNNING trial, no configuration with more
than one FINISHED/KILLED MLflow run (one final outcome per configuration, whichever of its
retries reached it), no MLflow run left RUNNING, no dead-trial retry beyond MAX_RETRY (the rule
of search/scheduler/recovery.py: a configuration whose process died MAX_RETRY + 1 times is not
retried again), then the faults done and what each cost. Exit 0 when every check holds, 1
otherwise.

    .venv/bin/python benchmarks/chaos.py [--trials 30] [--workers 3] [--kill-every 8]
        [--outage-every 20] [--outage-s 5 30] [--runs 3] [--seed 0] [--skip-baseline]
        [--logs DIR]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import sqlalchemy
from optuna.trial import TrialState

from tunelab.objectives import keys

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "faults"))
from crashpoints import STORAGE_CALLS  # noqa: E402  (the test harness, by path)
from outages import TcpRelay  # noqa: E402
from servers import MlflowServer, Postgres, stop_group  # noqa: E402  (beside this file)

from tunelab.objectives.runner import INTERRUPTED
from tunelab.search.scheduler import hosts, lineage
from tunelab.search.scheduler.recovery import DIED, MAX_RETRY

TINY_NET = "params:\n  base_width: 8\n  fc_width: 32\n  convs_per_block: 1\n"
HEARTBEAT_S, GRACE_S = 2, 6  # short, so a dead trial on another host would be found quickly
INJECT = Path(__file__).resolve().parents[1] / "tests" / "faults" / "inject"
"""A sitecustomize that gives a worker its crash point (TUNELAB_FAULT_POINT)."""
CRASH_METHODS = tuple(m for m in STORAGE_CALLS if m != "running_heartbeats")
CRASH_OCCURRENCES = 6
"""A crash point is one of the first this many calls of its kind: a worker lives about one
kill interval, and makes some calls (taking a trial, ending one) only a few times in it."""
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
BIN = Path(sys.executable).parent


@dataclass
class Fault:
    """One fault the driver caused."""

    kind: str
    at_s: float
    detail: str = ""
    trial: int | None = None  # the trial a killed worker was running
    down_s: float | None = None  # how long a restarted server did not answer


@dataclass
class Outcome:
    """What one run of the study ended with."""

    study: str
    wall_s: float
    faults: list[Fault] = field(default_factory=list)
    worker_errors: list[str] = field(default_factory=list)  # exits that were not ours or 0
    signalled: list[str] = field(default_factory=list)  # workers stopped by their crash point
    timed_out: bool = False


class Workers:
    """K `tunelab worker` processes on one study, each in its own process group."""

    def __init__(self, study: str, count: int, env: dict, folder: Path, rng: random.Random) -> None:
        self.study, self.env, self.folder, self.rng = study, env, folder, rng
        self.procs: list[subprocess.Popen | None] = [None] * count
        self.done = [False] * count  # exited 0: the study reached its target
        self.starts = [0] * count
        self.points: list[str | None] = [None] * count  # the crash point of each slot's worker
        for slot in range(count):
            self.start(slot)

    def log(self, slot: int) -> Path:
        return self.folder / f"{self.study}-worker{slot}.log"

    def start(self, slot: int, crash: bool = False) -> None:
        """Start the slot's worker; with `crash`, it SIGTERMs itself after a random storage
        call (one of its first CRASH_OCCURRENCES of that kind)."""
        self.starts[slot] += 1
        command = [str(BIN / "tunelab"), "worker", self.study, "--quiet", "--threads", "1"]
        env = dict(self.env)
        self.points[slot] = None
        if crash:
            method = self.rng.choice(CRASH_METHODS)
            point = f"{method}:{self.rng.randint(1, CRASH_OCCURRENCES)}:{int(signal.SIGTERM)}"
            env.update(TUNELAB_FAULT_POINT=point, PYTHONPATH=str(INJECT))
            self.points[slot] = point
        with open(self.log(slot), "ab") as log:
            log.write(f"\n=== start {self.starts[slot]} {self.points[slot] or ''} ===\n".encode())
            log.flush()
            self.procs[slot] = subprocess.Popen(
                command,
                cwd=self.folder,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, slot: int) -> None:
        proc = self.procs[slot]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def reap(self) -> tuple[list[str], list[str]]:
        """Note the workers that exited on their own: 0 is done; the others are restarted.
        Returns (their errors: a worker should never die of a fault it can wait out, the crash
        points that signalled their worker)."""
        errors, signalled = [], []
        for slot, proc in enumerate(self.procs):
            if self.done[slot] or proc.poll() is None:
                continue
            if proc.returncode == 0:
                self.done[slot] = True
                continue
            if proc.returncode == 143 and self.points[slot]:
                signalled.append(f"worker {slot}: SIGTERM after {self.points[slot]}")
            else:
                tail = self.log(slot).read_text(errors="replace").strip().splitlines()[-1:]
                errors.append(f"worker {slot} exited {proc.returncode}: {' '.join(tail)[:300]}")
            self.start(slot)
        return errors, signalled

    def live(self) -> dict[int, int]:
        """pid -> slot of the workers still running."""
        return {
            p.pid: slot
            for slot, p in enumerate(self.procs)
            if not self.done[slot] and p.poll() is None
        }

    def all_done(self) -> bool:
        return all(self.done)

    def stop(self) -> None:
        for proc in self.procs:
            if proc is not None:
                stop_group(proc, signal.SIGKILL)


def trial_owner_pid(trial: optuna.trial.FrozenTrial) -> int | None:
    """The pid of the worker process that owns a trial (None: no owner)."""
    owner = lineage.owner(trial)
    return hosts.owner_pid(owner) if owner else None


def trained_here(trial: optuna.trial.FrozenTrial, by_number: dict) -> bool:
    """Whether a running trial reported a step beyond those it inherited from the trial it
    retries (a retry carries that trial's curve)."""
    source = by_number.get(lineage.retry_of(trial))
    inherited = max(source.intermediate_values, default=-1) if source is not None else -1
    return max(trial.intermediate_values, default=-1) > inherited


def run_study(
    args: argparse.Namespace,
    name: str,
    storage_url: str,
    pg: Postgres,
    mlflow: MlflowServer,
    folder: Path,
    chaos: bool,
    seed: int,
) -> Outcome:
    relay = TcpRelay(("127.0.0.1", pg.port))  # the workers' way to the database
    through = relay.url(storage_url.rsplit("/", 1)[1])
    env = {
        **os.environ,
        "TUNELAB_STORAGE": through,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "OMP_NUM_THREADS": "1",  # K workers on few cores: one thread each, as --threads 1
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    create = [
        str(BIN / "tunelab"),
        "create",
        "cnn",
        "--dataset",
        "digits",
        "--study-name",
        name,
        "--config",
        str(folder / "tiny.yaml"),
        "--n-trials",
        str(args.trials),
        "--epochs",
        str(args.epochs),
        "--seed",
        str(seed),
        "--heartbeat-interval",
        str(HEARTBEAT_S),
        "--grace-period",
        str(GRACE_S),
        "--tracking-uri",
        mlflow.uri,
        "--checkpoint-dir",
        str(folder / "checkpoints"),
        "--threads",
        "1",
        "--quiet",
    ]
    created = subprocess.run(create, cwd=folder, env=env, capture_output=True, text=True)
    if created.returncode != 0:
        raise SystemExit(f"chaos: tunelab create failed: {created.stderr.strip()[-2000:]}")
    # the driver's own view of the study; pre-ping: its connections die with the restart too
    storage = optuna.storages.RDBStorage(storage_url, engine_kwargs={"pool_pre_ping": True})
    study_id = storage.get_study_id_from_name(name)
    rng = random.Random(seed)
    outcome = Outcome(study=name, wall_s=0.0)
    begin = time.monotonic()
    workers = Workers(name, args.workers, env, folder, rng)
    next_kill = begin + args.kill_every
    next_outage = begin + args.outage_every
    outage_ends: float | None = None
    pg_done = mlflow_done = False
    mlflow_down_since: float | None = None
    try:
        while not workers.all_done():
            now = time.monotonic()
            if now - begin > args.timeout:
                outcome.timed_out = True
                break
            errors, signalled = workers.reap()
            outcome.worker_errors += [f"{now - begin:6.1f} s {e}" for e in errors]
            outcome.signalled += [f"{now - begin:6.1f} s {e}" for e in signalled]
            if outage_ends is not None and now >= outage_ends:
                relay.restore()
                outage_ends = None
            if mlflow_down_since is not None and mlflow.ready():
                outcome.faults[-1].down_s = now - mlflow_down_since
                mlflow_down_since = None
            try:
                trials = storage.get_all_trials(study_id, deepcopy=False)
            except sqlalchemy.exc.SQLAlchemyError:
                time.sleep(0.5)  # the driver's own storage is waiting out the restart too
                continue
            finished = sum(t.state in FINISHED for t in trials)
            if not chaos or finished >= args.trials:
                time.sleep(0.5)
                continue
            if now >= next_kill:
                # kill only a worker whose trial trained a rung in this attempt: a kill during
                # start-up tests nothing, and on a loaded machine a worker would then never
                # live long enough to finish a trial
                live = workers.live()
                by_number = {t.number: t for t in trials}
                victims = [
                    (live[pid], t.number)
                    for t in trials
                    if t.state == TrialState.RUNNING
                    and (pid := trial_owner_pid(t)) in live
                    and trained_here(t, by_number)
                ]
                if victims:
                    slot, number = rng.choice(victims)
                    workers.kill(slot)
                    workers.start(slot, crash=rng.random() < 0.5)
                    outcome.faults.append(
                        Fault("SIGKILL worker", now - begin, f"worker {slot}", trial=number)
                    )
                    next_kill = now + args.kill_every
            if outage_ends is None and now >= next_outage:
                seconds = rng.uniform(*args.outage_s)
                relay.cut()
                outage_ends = now + seconds
                outcome.faults.append(
                    Fault("database outage", now - begin, "relay cut", down_s=seconds)
                )
                next_outage = outage_ends + args.outage_every
            if not pg_done and finished >= args.trials // 3:
                pg_done = True
                t0 = time.monotonic()
                pg.restart()
                outcome.faults.append(
                    Fault("restart PostgreSQL", t0 - begin, "pg_ctl restart -m fast")
                )
                outcome.faults[-1].down_s = time.monotonic() - t0
            if not mlflow_done and finished >= args.trials // 2:
                mlflow_done = True
                mlflow_down_since = time.monotonic()
                mlflow.stop()
                mlflow.start()  # the same port; the workers find it when it answers
                outcome.faults.append(
                    Fault("restart MLflow server", mlflow_down_since - begin, "SIGTERM, start")
                )
            time.sleep(0.5)
        errors, signalled = workers.reap()
        outcome.worker_errors += [f"{time.monotonic() - begin:6.1f} s {e}" for e in errors]
        outcome.signalled += [f"{time.monotonic() - begin:6.1f} s {e}" for e in signalled]
    finally:
        outcome.wall_s = time.monotonic() - begin
        workers.stop()
        relay.close()
        storage.engine.dispose()
        if mlflow_down_since is not None:  # the study ended before the server answered
            mlflow.wait_ready()
    return outcome


def chain_roots(trials: list[optuna.trial.FrozenTrial]) -> dict[int, int]:
    """trial number -> its configuration's first trial, following the retry and continuation
    links that are written when a retry is queued (lineage.source), so a retry killed
    before it started training still belongs to its chain."""
    parent = {}
    for t in trials:
        link = lineage.source(t)
        if link is not None and int(link) != t.number:
            parent[t.number] = int(link)
    roots = {}
    for t in trials:
        number = t.number
        while number in parent:
            number = parent[number]
        roots[t.number] = number
    return roots


def verify(storage_url: str, tracking_uri: str, name: str, target: int) -> dict[str, int]:
    """The checks, read through Optuna's and MLflow's clients; each must be 0 (or the target)."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    study = optuna.load_study(study_name=name, storage=storage_url)
    trials = study.get_trials(deepcopy=False)
    by_number = {t.number: t for t in trials}
    roots = chain_roots(trials)
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(name)
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment.experiment_id],
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=1000,
            page_token=token,
        )
        runs += list(page)
        token = page.token
        if not token:
            break
    final_runs = collections.Counter()  # chain root -> its FINISHED / KILLED runs
    for run in runs:
        number = run.data.tags.get(keys.TRIAL_NUMBER_TAG)
        if number is not None and run.info.status in ("FINISHED", "KILLED"):
            final_runs[roots.get(int(number), int(number))] += 1

    def died(t: optuna.trial.FrozenTrial) -> bool:  # recovery.py's count of deaths
        reason = keys.trial_attr(t, keys.FAIL_REASON)
        return t.state == TrialState.FAIL and (reason or "").startswith(DIED)

    death_retries = collections.Counter()  # chain root -> retries queued for its dead trials
    for t in trials:
        source = lineage.retry_of(t)
        if source is not None and int(source) in by_number and died(by_number[int(source)]):
            death_retries[roots[t.number]] += 1
    mismatched = 0  # a trial whose run's status says another end than Optuna's state
    statuses = {run.info.run_id: run.info.status for run in runs}
    expected = {TrialState.COMPLETE: "FINISHED", TrialState.PRUNED: "KILLED"}
    for t in trials:
        run_id = t.user_attrs.get(keys.MLFLOW_RUN_ID)
        if run_id and run_id in statuses and t.state in (*expected, TrialState.FAIL):
            mismatched += statuses[run_id] != expected.get(t.state, "FAILED")
    recorded_chain = sum(
        lineage.root(t) != roots[t.number]
        for t in trials
        if t.state != TrialState.WAITING  # a queued retry gets its original when it starts
    )
    reasons = collections.Counter(
        f"{t.state.name}" + (f" ({r})" if (r := keys.trial_attr(t, keys.FAIL_REASON)) else "")
        for t in trials
    )
    return {
        "finished trials": sum(t.state in FINISHED for t in trials),
        "RUNNING trials": sum(t.state == TrialState.RUNNING for t in trials),
        "configurations with >1 FINISHED/KILLED MLflow run": sum(
            n > 1 for n in final_runs.values()
        ),
        "MLflow runs left RUNNING": sum(run.info.status == "RUNNING" for run in runs),
        "retries beyond max_retry": sum(max(0, n - MAX_RETRY) for n in death_retries.values()),
        # informational, not gated
        "_trials": len(trials),
        "_mlflow runs": len(runs),
        "_WAITING trials left": sum(t.state == TrialState.WAITING for t in trials),
        "_run status != trial state": mismatched,
        "_original_trial != retry chain": recorded_chain,
        "_states": reasons,
        "_death retries": sum(death_retries.values()),
        "_interrupted": sum(keys.trial_attr(t, keys.FAIL_REASON) == INTERRUPTED for t in trials),
    }


def what_kills_cost(storage_url: str, name: str, faults: list[Fault]) -> list[str]:
    """For each killed trial: the retry that took it over and the step it resumed at."""
    study = optuna.load_study(study_name=name, storage=storage_url)
    trials = study.get_trials(deepcopy=False)
    retry_of = {lineage.retry_of(t): t for t in trials if lineage.retry_of(t) is not None}
    lines = []
    for fault in faults:
        if fault.trial is None:
            down = "" if fault.down_s is None else f", down {fault.down_s:.1f} s"
            lines.append(f"{fault.at_s:7.1f} s  {fault.kind} ({fault.detail}{down})")
            continue
        killed = study.trials[fault.trial]
        retry = retry_of.get(fault.trial)
        if retry is None:
            fate = f"trial {fault.trial} ended {killed.state.name}, no retry"
        else:
            step = lineage.resumed_at(retry)
            resumed = "from scratch" if not step else f"resumed at step {step}"
            fate = f"trial {fault.trial} -> retry {retry.number} ({resumed}, {retry.state.name})"
        lines.append(f"{fault.at_s:7.1f} s  {fault.kind} ({fault.detail}): {fate}")
    return lines


def report(args: argparse.Namespace, label: str, outcome: Outcome, checks: dict, cost) -> bool:
    """Print one chaos study's checks, faults and costs; True when every check holds."""
    kills = sum(f.kind == "SIGKILL worker" for f in outcome.faults)
    outages = [f for f in outcome.faults if f.kind == "database outage"]
    restarts = [f.kind for f in outcome.faults if f.trial is None and f not in outages]
    print(f"\n== {label}: {outcome.wall_s:.1f} s ==")
    print(f"{'check':52s} {'value':>6s} {'wanted':>6s}")
    failed = outcome.timed_out
    for check, value in checks.items():
        if check.startswith("_"):
            continue
        wanted = args.trials if check == "finished trials" else 0
        failed |= value != wanted
        print(f"{check:52s} {value:6d} {wanted:6d}{'' if value == wanted else '  <- FAIL'}")
    down = ", ".join(f"{f.down_s:.0f}" for f in outages) or "none"
    print(
        f"faults: {kills} worker kills (every {args.kill_every:g} s, restarted at once), "
        f"{len(outcome.signalled)} workers SIGTERMed at a storage call, "
        f"{len(outages)} database outages (s: {down}), {', '.join(restarts) or 'no restart'}"
    )
    for line in cost:
        print(f"  {line}")
    for line in outcome.signalled:
        print(f"  {line}")
    print("informational:")
    for check, value in checks.items():
        if check == "_states":
            print(f"  trial states: {dict(sorted(value.items()))}")
        elif check.startswith("_"):
            print(f"  {check[1:]}: {value}")
    print(
        f"  worker exits other than 0, our SIGKILL or a crash point's SIGTERM: "
        f"{len(outcome.worker_errors)}"
    )
    for line in outcome.worker_errors:
        print(f"    {line}")
    if outcome.timed_out:
        print(f"  TIMED OUT after {args.timeout:g} s")
    missing = {"restart PostgreSQL", "restart MLflow server"} - set(restarts)
    if not kills:  # a study no kill reached tested no recovery
        missing.add("SIGKILL worker")
    if missing:
        print(f"faults not tried (the study ended first): {', '.join(sorted(missing))}")
        failed = True
    return not failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--kill-every", type=float, default=8.0, help="seconds between kills")
    parser.add_argument("--outage-every", type=float, default=20.0, help="seconds between outages")
    parser.add_argument(
        "--outage-s", type=float, nargs=2, default=(5.0, 30.0), help="an outage's shortest, longest"
    )
    parser.add_argument("--runs", type=int, default=3, help="chaos studies, one after the other")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-baseline", action="store_true", help="no fault-free run")
    parser.add_argument("--timeout", type=float, default=1800, help="per study, seconds")
    parser.add_argument(
        "--logs", type=Path, help="copy the worker and server logs and the MLflow store here"
    )
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so every process started below is stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    os.environ.setdefault("TUNELAB_SHARED_DATA", "/work/shared/data")
    tmp = Path(tempfile.mkdtemp(prefix="tunelab-chaos-"))
    tmp.chmod(0o711)  # the postgres user must reach its own folder inside
    pg = mlflow = None
    held = []
    base_s = None
    try:
        pg = Postgres(tmp / "pg")
        mlflow = MlflowServer(tmp / "mlflow")
        work = tmp / "work"
        work.mkdir()
        (work / "tiny.yaml").write_text(TINY_NET)
        if not args.skip_baseline:
            url = pg.create_database("optuna_baseline")
            print("running the fault-free study ...", flush=True)
            base = run_study(args, "chaos-baseline", url, pg, mlflow, work, False, args.seed)
            base_s = base.wall_s
            print(f"  {base_s:.1f} s", flush=True)
        for run in range(args.runs):
            url = pg.create_database(f"optuna_chaos_{run}")
            name = f"chaos-{run}"
            print(f"running chaos study {run + 1} of {args.runs} ...", flush=True)
            outcome = run_study(args, name, url, pg, mlflow, work, True, args.seed + run)
            checks = verify(url, mlflow.uri, name, args.trials)
            cost = what_kills_cost(url, name, outcome.faults)
            held.append(report(args, f"chaos study {run + 1}", outcome, checks, cost))
            if base_s:
                print(
                    f"wall {outcome.wall_s:.1f} s against {base_s:.1f} s fault-free "
                    f"({outcome.wall_s / base_s:.2f}x)"
                )
    finally:
        if args.logs is not None:
            args.logs.mkdir(parents=True, exist_ok=True)
            # the MLflow store too: a run left RUNNING is found there
            for log in [
                *tmp.glob("work/*.log"),
                *tmp.glob("*/server.log"),
                tmp / "mlflow/mlflow.db",
            ]:
                with contextlib.suppress(OSError):
                    shutil.copy(log, args.logs / f"{log.parent.name}-{log.name}")
        if mlflow is not None:
            mlflow.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"\n{args.workers} workers, {args.trials} trials of a tiny CNN on digits, {args.epochs} "
        f"epochs, PostgreSQL through a relay + MLflow server, seeds {args.seed}.."
        f"{args.seed + args.runs - 1}: every check held in {sum(held)} of {args.runs} runs"
    )
    return 0 if all(held) and len(held) == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
