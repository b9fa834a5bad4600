"""Chaos benchmark: one study finished by workers that keep dying, on a database and a tracking
server that restart.

K `tunelab worker` processes (each in its own process group, the storage URL in
TUNELAB_STORAGE, never on a command line) share one study of a tiny CNN on `digits`, stored in
a throwaway PostgreSQL cluster and tracked to an MLflow server, both started here on free
127.0.0.1 ports (the system PostgreSQL is never touched). While they work, a driver SIGKILLs a
random worker that is running a trial every `--kill-every` seconds and starts it again,
restarts PostgreSQL once (a third of the way through) and the MLflow server once (half way).
The same study is first run without faults (`--skip-baseline` skips it), for the wall time.

At the end it reads the chaos study back through Optuna's and MLflow's own clients and prints
what must hold: finished trials == the target, no RUNNING trial, no configuration with more
than one FINISHED/KILLED MLflow run (one final outcome per configuration, whichever of its
retries reached it), no MLflow run left RUNNING, no dead-trial retry beyond MAX_RETRY (the rule
of search/study/recovery.py: a configuration whose process died MAX_RETRY + 1 times is not
retried again), then the faults done and what each cost. Exit 0 when every check holds, 1
otherwise.

    .venv/bin/python benchmarks/chaos.py [--trials 30] [--workers 3] [--kill-every 8]
        [--seed 0] [--skip-baseline] [--logs DIR]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import glob
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import sqlalchemy
from optuna.trial import TrialState

from tunelab.objectives import keys
from tunelab.search.study.recovery import INTERRUPTED, MAX_RETRY

TINY_NET = "params:\n  base_width: 8\n  fc_width: 32\n  convs_per_block: 1\n"
HEARTBEAT_S, GRACE_S = 2, 6  # short, so a dead trial on another host would be found quickly
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, wait_s: float = 20) -> None:
    """Signal a process's whole group (its children too), then SIGKILL what outlives wait_s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    # children that ignored the leader's end (none expected) go with the group
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


class Postgres:
    """A throwaway cluster in `folder`: trust auth, 127.0.0.1 only, its socket in the folder."""

    def __init__(self, folder: Path) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or [shutil.which("initdb")]
        if not found[-1]:
            raise SystemExit("chaos: no initdb found (install PostgreSQL's server binaries)")
        self.bin = Path(found[-1]).parent
        self.folder, self.data, self.port = folder, folder / "data", free_port()
        # initdb refuses root: run the server binaries as the postgres user, owning the folder
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        folder.mkdir()
        if self.as_user:
            shutil.chown(folder, "postgres")
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "--no-sync")
        self.start()

    def _run(self, tool: str, *args) -> None:
        command = [*self.as_user, str(self.bin / tool), *map(str, args)]
        subprocess.run(command, check=True, capture_output=True, cwd=self.folder)

    def _ctl(self, action: str, *args) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
        log = self.folder / "server.log"
        self._run("pg_ctl", action, "-D", self.data, "-l", log, "-w", "-o", options, *args)

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        # fast: every open connection is cut, as a crash or a failover would cut it
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run("pg_ctl", "stop", "-D", self.data, "-m", "immediate", "-w")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        engine = sqlalchemy.create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url(name)


class MlflowServer:
    """`mlflow server --serve-artifacts` on a SQLite store in `folder`, on one fixed port so a
    restarted server is the same URI to the workers."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        folder.mkdir()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.start()
        self.wait_ready()

    def start(self) -> None:
        command = [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.folder / 'mlflow.db'}",
            "--serve-artifacts",
            "--artifacts-destination",
            str(self.folder / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",  # two cores: one server process is enough for three workers
        ]
        with open(self.folder / "server.log", "ab") as log:
            self.proc = subprocess.Popen(
                command,
                cwd=self.folder,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
            )

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as answer:
                return answer.status == 200
        except OSError:
            return False

    def wait_ready(self, timeout_s: float = 180) -> None:
        end = time.monotonic() + timeout_s
        while not self.ready():
            if self.proc.poll() is not None or time.monotonic() > end:
                raise SystemExit(f"chaos: the MLflow server did not start (see {self.folder})")
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is not None:
            stop_group(self.proc, wait_s=10)


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
    timed_out: bool = False


class Workers:
    """K `tunelab worker` processes on one study, each in its own process group."""

    def __init__(self, study: str, count: int, env: dict, folder: Path) -> None:
        self.study, self.env, self.folder = study, env, folder
        self.procs: list[subprocess.Popen | None] = [None] * count
        self.done = [False] * count  # exited 0: the study reached its target
        self.starts = [0] * count
        for slot in range(count):
            self.start(slot)

    def log(self, slot: int) -> Path:
        return self.folder / f"{self.study}-worker{slot}.log"

    def start(self, slot: int) -> None:
        self.starts[slot] += 1
        command = [str(BIN / "tunelab"), "worker", self.study, "--quiet", "--threads", "1"]
        with open(self.log(slot), "ab") as log:
            log.write(f"\n=== start {self.starts[slot]} ===\n".encode())
            log.flush()
            self.procs[slot] = subprocess.Popen(
                command,
                cwd=self.folder,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, slot: int) -> None:
        proc = self.procs[slot]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def reap(self) -> list[str]:
        """Note the workers that exited on their own: 0 is done; anything else is restarted and
        returned (a worker should never die of a fault it can wait out)."""
        errors = []
        for slot, proc in enumerate(self.procs):
            if self.done[slot] or proc.poll() is None:
                continue
            if proc.returncode == 0:
                self.done[slot] = True
                continue
            tail = self.log(slot).read_text(errors="replace").strip().splitlines()[-1:]
            errors.append(f"worker {slot} exited {proc.returncode}: {' '.join(tail)[:300]}")
            self.start(slot)
        return errors

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


def owner_pid(trial: optuna.trial.FrozenTrial) -> int | None:
    """The pid in a trial's owner, `host[pidns]:pid:start`."""
    owner = trial.user_attrs.get(keys.OWNER)
    if not owner:
        return None
    pid = owner.rsplit(":", 2)[-2]
    return int(pid) if pid.isdigit() else None


def trained_here(trial: optuna.trial.FrozenTrial, by_number: dict) -> bool:
    """Whether a running trial reported a step beyond those it inherited from the trial it
    retries (a retry carries that trial's curve)."""
    source = by_number.get(trial.user_attrs.get(keys.RETRY_OF))
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
) -> Outcome:
    env = {
        **os.environ,
        "TUNELAB_STORAGE": storage_url,
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
        str(args.seed),
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
    rng = random.Random(args.seed)
    outcome = Outcome(study=name, wall_s=0.0)
    begin = time.monotonic()
    workers = Workers(name, args.workers, env, folder)
    next_kill = begin + args.kill_every
    pg_done = mlflow_done = False
    mlflow_down_since: float | None = None
    try:
        while not workers.all_done():
            now = time.monotonic()
            if now - begin > args.timeout:
                outcome.timed_out = True
                break
            outcome.worker_errors += [f"{now - begin:6.1f} s {e}" for e in workers.reap()]
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
                    and (pid := owner_pid(t)) in live
                    and trained_here(t, by_number)
                ]
                if victims:
                    slot, number = rng.choice(victims)
                    workers.kill(slot)
                    workers.start(slot)
                    outcome.faults.append(
                        Fault("SIGKILL worker", now - begin, f"worker {slot}", trial=number)
                    )
                    next_kill = now + args.kill_every
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
        outcome.worker_errors += [f"{time.monotonic() - begin:6.1f} s {e}" for e in workers.reap()]
    finally:
        outcome.wall_s = time.monotonic() - begin
        workers.stop()
        storage.engine.dispose()
        if mlflow_down_since is not None:  # the study ended before the server answered
            mlflow.wait_ready()
    return outcome


def chain_roots(trials: list[optuna.trial.FrozenTrial]) -> dict[int, int]:
    """trial number -> its configuration's first trial, following the retry and continuation
    links that are written when a retry is queued (RETRY_OF, RESUME_OF), so a retry killed
    before it started training still belongs to its chain."""
    parent = {}
    for t in trials:
        link = t.user_attrs.get(keys.RETRY_OF, t.user_attrs.get(keys.RESUME_OF))
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
        return t.state == TrialState.FAIL and reason in (None, "died")

    death_retries = collections.Counter()  # chain root -> retries queued for its dead trials
    for t in trials:
        source = t.user_attrs.get(keys.RETRY_OF)
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
        int(t.user_attrs.get(keys.ORIGINAL_TRIAL, t.number)) != roots[t.number]
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
    retry_of = {
        int(t.user_attrs[keys.RETRY_OF]): t for t in trials if keys.RETRY_OF in t.user_attrs
    }
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
            step = retry.user_attrs.get(keys.RESUMED_AT_STEP)
            resumed = "from scratch" if step is None else f"resumed at step {step}"
            fate = f"trial {fault.trial} -> retry {retry.number} ({resumed}, {retry.state.name})"
        lines.append(f"{fault.at_s:7.1f} s  {fault.kind} ({fault.detail}): {fate}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--kill-every", type=float, default=8.0, help="seconds between kills")
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
    outcomes: dict[str, Outcome] = {}
    try:
        pg = Postgres(tmp / "pg")
        mlflow = MlflowServer(tmp / "mlflow")
        work = tmp / "work"
        work.mkdir()
        (work / "tiny.yaml").write_text(TINY_NET)
        runs = [("baseline", False)] * (not args.skip_baseline) + [("chaos", True)]
        for label, faulty in runs:
            url = pg.create_database(f"optuna_{label}")
            name = f"chaos-{label}"
            print(f"running the {label} study ...", flush=True)
            outcomes[label] = run_study(args, name, url, pg, mlflow, work, faulty)
            print(f"  {outcomes[label].wall_s:.1f} s", flush=True)
        chaos_url = pg.url("optuna_chaos")
        checks = verify(chaos_url, mlflow.uri, "chaos-chaos", args.trials)
        cost = what_kills_cost(chaos_url, "chaos-chaos", outcomes["chaos"].faults)
        base = (
            None
            if args.skip_baseline
            else verify(pg.url("optuna_baseline"), mlflow.uri, "chaos-baseline", args.trials)
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

    chaos = outcomes["chaos"]
    kills = sum(f.kind == "SIGKILL worker" for f in chaos.faults)
    restarts = [f.kind for f in chaos.faults if f.trial is None]
    print(
        f"\n{args.workers} workers, {args.trials} trials of a tiny CNN on digits, "
        f"{args.epochs} epochs, PostgreSQL + MLflow server, seed {args.seed}"
    )
    print(f"{'check':52s} {'value':>6s} {'wanted':>6s}")
    failed = chaos.timed_out
    for check, value in checks.items():
        if check.startswith("_"):
            continue
        wanted = args.trials if check == "finished trials" else 0
        failed |= value != wanted
        print(f"{check:52s} {value:6d} {wanted:6d}{'' if value == wanted else '  <- FAIL'}")
    print(
        f"\nfaults: {kills} worker kills (every {args.kill_every:g} s, restarted at once), "
        f"{', '.join(restarts) or 'no server restart'}"
    )
    for line in cost:
        print(f"  {line}")
    print("\nchaos study, informational:")
    for check, value in checks.items():
        if check == "_states":
            print(f"  trial states: {dict(sorted(value.items()))}")
        elif check.startswith("_"):
            print(f"  {check[1:]}: {value}")
    print(f"  worker exits other than 0 or our SIGKILL: {len(chaos.worker_errors)}")
    for line in chaos.worker_errors:
        print(f"    {line}")
    if chaos.timed_out:
        print(f"  TIMED OUT after {args.timeout:g} s")
    print("\nwall time (worker start to last worker exit, same machine, same invocation):")
    if "baseline" in outcomes:
        base_s = outcomes["baseline"].wall_s
        print(f"  fault-free  {base_s:7.1f} s  ({base['finished trials']} finished)")
        print(f"  chaos       {chaos.wall_s:7.1f} s  ({chaos.wall_s / base_s:.2f}x)")
    else:
        print(f"  chaos       {chaos.wall_s:7.1f} s  (no baseline: --skip-baseline)")
    missing = {"restart PostgreSQL", "restart MLflow server"} - set(restarts)
    if missing:
        print(f"faults not tried (the study ended first): {', '.join(sorted(missing))}")
        failed = True
    print("FAIL" if failed else "OK: every check holds")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
