"""Hundreds of workers on one database: what a finished trial costs as the workers grow.

N simulated workers go through tunelab's real worker and storage code (`run_study`: the
scheduler, taking trials, heartbeats, retries, rung reports, tell, MLflow logging through a
real tracking server) on one study of a stand-in task that trains nothing (standin_task.py:
each trial sleeps through T seconds in R rungs and reports a synthetic curve). Workers are
threads, `--per-process` of them in each worker process (a process that imports torch costs
hundreds of MB: 256 of them do not fit in this machine's memory); every call they make is real.
The database is a throwaway PostgreSQL cluster (pg_stat_statements loaded) and the tracking
server `mlflow server --serve-artifacts` on a database of the same cluster, both started here
on free 127.0.0.1 ports.

For each N and T the study's target is N trials per worker round (`--rounds`), and this prints:
finished trials per minute against the ideal (N / T * 60, over the window from the first trial's
start to the last one's end), database statements and rows read per finished trial (the study's
database, from pg_stat_statements; the tracking server's database apart), peak connections to
the server (pg_stat_activity, sampled every 0.5 s), p50/p99 latency of taking a trial and of
storing its end, MLflow calls per trial and their p99 (client side), errors, and the checks:
target exact, nothing RUNNING at the end.

    .venv/bin/python benchmarks/scale.py [--workers 8 32 128 256] [--trial-s 5 30]
        [--rungs 5] [--rounds 3] [--per-process 32] [--sampler random] [--pruner none]
"""

from __future__ import annotations

import argparse
import collections
import functools
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from servers import MlflowServer, Postgres  # noqa: E402  (beside this file)
from standin_task import RUNG_S_ENV  # noqa: E402

STUDY = "scale"


@dataclass
class Measured:
    """What the workers of one process saw."""

    take_s: list[float] = field(default_factory=list)
    tell_s: list[float] = field(default_factory=list)
    mlflow_s: list[float] = field(default_factory=list)
    mlflow_calls: collections.Counter = field(default_factory=collections.Counter)
    errors: list[str] = field(default_factory=list)


def _timed(method, into: list[float], lock: threading.Lock):
    @functools.wraps(method)
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            with lock:
                into.append(time.perf_counter() - start)

    return timed


def _instrument(measured: Measured) -> None:
    """Time the worker's take and tell and every MLflow client call of this process."""
    from tunelab.search.adapters import tracking
    from tunelab.search.scheduler.worker import Worker

    lock = threading.Lock()
    Worker._take = _timed(Worker._take, measured.take_s, lock)
    Worker._tell = _timed(Worker._tell, measured.tell_s, lock)
    original = tracking.ResilientClient.__getattr__

    def counted(self, name):
        found = original(self, name)
        if not callable(found):
            return found

        def call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return found(*args, **kwargs)
            finally:
                with lock:
                    measured.mlflow_s.append(time.perf_counter() - start)
                    measured.mlflow_calls[name] += 1

        return call

    tracking.ResilientClient.__getattr__ = counted


def _process(spec_values: dict, threads: int, results) -> None:
    """One worker process: `threads` workers on the study; its measurements to `results`."""
    measured = Measured()
    try:
        import torch

        torch.set_num_threads(1)
        _instrument(measured)
        from tunelab.search.spec import StudySpec
        from tunelab.search.study.prepare import prepare
        from tunelab.search.study.run import run_study

        spec = StudySpec(**spec_values)

        def work(index: int) -> None:
            try:
                run_study(prepare(spec), worker_index=index)
            except BaseException as error:  # every error is a finding: counted, not hidden
                measured.errors.append(f"{type(error).__name__}: {str(error)[:200]}")

        pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
        for t in pool:
            t.start()
            time.sleep(0.05)  # a start-up spread over the first seconds, as a job array's
        for t in pool:
            t.join()
    except BaseException:
        measured.errors.append(traceback.format_exc(limit=3))
    results.put(measured)


class Connections(threading.Thread):
    """The peak number of connections to each database of the server, sampled every 0.5 s."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.NullPool)
        self.peak: collections.Counter[str] = collections.Counter()
        self.stopped = threading.Event()

    def run(self) -> None:
        query = sqlalchemy.text(
            "SELECT datname, count(*) FROM pg_stat_activity WHERE backend_type = "
            "'client backend' AND pid <> pg_backend_pid() GROUP BY datname"
        )
        while not self.stopped.wait(0.5):
            try:
                with self.engine.connect() as connection:
                    for database, count in connection.execute(query):
                        self.peak[database] = max(self.peak[database], count)
            except sqlalchemy.exc.SQLAlchemyError:
                pass


def statements(admin: sqlalchemy.Engine, database: str) -> tuple[int, int]:
    """(statements, rows returned by reads) of `database` since the last reset."""
    with admin.connect() as connection:
        calls, rows = connection.execute(
            sqlalchemy.text(
                "SELECT coalesce(sum(calls), 0), coalesce(sum(rows) FILTER (WHERE "
                "query ILIKE 'select%'), 0) FROM pg_stat_statements s JOIN pg_database d "
                "ON d.oid = s.dbid WHERE d.datname = :db"
            ),
            {"db": database},
        ).one()
    return int(calls), int(rows)


def top_statements(admin: sqlalchemy.Engine, database: str, count: int) -> list[tuple]:
    """The `count` statements of `database` with the most calls: (calls, rows, query)."""
    with admin.connect() as connection:
        return connection.execute(
            sqlalchemy.text(
                "SELECT calls, rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 160) "
                "FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
                "WHERE d.datname = :db ORDER BY calls DESC LIMIT :n"
            ),
            {"db": database, "n": count},
        ).all()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def scenario(
    args,
    pg: Postgres,
    mlflow_uri: str,
    workers: int,
    trial_s: float,
    folder: Path,
    children: list,
):
    """One study of `workers` workers and trials of `trial_s` seconds; its figures. Its worker
    processes go into `children` (killed by main should the benchmark be stopped)."""
    import optuna
    from optuna.trial import TrialState

    sys.path.insert(0, str(HERE.parent / "tests" / "faults"))
    from crashpoints import check_study

    name = f"optuna_{workers}_{int(trial_s)}"
    url = pg.create_database(name)
    admin = sqlalchemy.create_engine(pg.url("postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
    target = workers * args.rounds
    spec = {
        "task": "standin_task:StandinTask",
        "dataset": "digits",
        "study_name": STUDY,
        "n_trials": target,
        "max_epochs": args.rungs,
        "patience": args.rungs,
        "sampler": args.sampler,
        "pruner": args.pruner,
        "storage": url,
        "tracking_uri": mlflow_uri,
        "checkpoint_dir": str(folder / f"checkpoints-{name}"),
        "device": "cpu",
        "threads": 1,
        "quiet": True,
    }
    # the study exists before the workers start, as `tunelab create` then a job array
    from tunelab.search.spec import StudySpec
    from tunelab.search.study.orchestration import create_study

    create_study(StudySpec(**spec))
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text("SELECT pg_stat_statements_reset()"))
    watcher = Connections(pg.url("postgres"))
    watcher.start()
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    os.environ[RUNG_S_ENV] = str(trial_s / args.rungs)
    sizes = [args.per_process] * (workers // args.per_process)
    if workers % args.per_process:
        sizes.append(workers % args.per_process)
    began = time.monotonic()
    processes = [context.Process(target=_process, args=(spec, n, results)) for n in sizes]
    children.extend(processes)
    for p in processes:
        p.start()
    measured = [results.get() for _ in processes]
    for p in processes:
        p.join()
    wall = time.monotonic() - began
    watcher.stopped.set()
    watcher.join()
    calls, rows = statements(admin, name)
    top = top_statements(admin, name, args.top) if args.top else []
    tracking_calls, tracking_rows = statements(admin, "mlflow")
    study = optuna.load_study(study_name=STUDY, storage=url)
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    first = min(t.datetime_start for t in done).timestamp()
    last = max(t.datetime_complete for t in done).timestamp()
    per_minute = len(done) / (last - first) * 60 if last > first else float("nan")
    # a trial's own length against T: what the machinery adds inside a trial, apart from the
    # hand-over between trials
    lengths = [(t.datetime_complete - t.datetime_start).total_seconds() for t in done]
    ideal = workers / trial_s * 60
    take = [s for m in measured for s in m.take_s]
    tell = [s for m in measured for s in m.tell_s]
    mlflow_s = [s for m in measured for s in m.mlflow_s]
    mlflow_calls = sum(sum(m.mlflow_calls.values()) for m in measured)
    errors = [e for m in measured for e in m.errors]
    broken = check_study(url, mlflow_uri, STUDY, target)
    admin.dispose()
    return {
        "N": workers,
        "T": trial_s,
        "finished": len(done),
        "per_min": per_minute,
        "ideal": ideal,
        "ratio": per_minute / ideal,
        "trial_p50": percentile(lengths, 0.5),
        "trial_max": max(lengths),
        "statements": calls / max(1, len(done)),
        "rows": rows / max(1, len(done)),
        "tracking_statements": tracking_calls / max(1, len(done)),
        "peak_connections": watcher.peak[name],
        "tracking_connections": watcher.peak["mlflow"],
        "take_p50": percentile(take, 0.5),
        "take_p99": percentile(take, 0.99),
        "tell_p50": percentile(tell, 0.5),
        "tell_p99": percentile(tell, 0.99),
        "mlflow_per_trial": mlflow_calls / max(1, len(done)),
        "mlflow_p99": percentile(mlflow_s, 0.99),
        "errors": len(errors),
        "error_lines": errors[:5],
        "broken": broken,
        "wall": wall,
        "tracking_rows": tracking_rows,
        "top": top,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[8, 32, 128, 256])
    parser.add_argument("--trial-s", type=float, nargs="+", default=[5.0, 30.0])
    parser.add_argument("--rungs", type=int, default=5, help="rungs per trial")
    parser.add_argument("--rounds", type=int, default=3, help="trials per worker")
    parser.add_argument("--per-process", type=int, default=32, help="worker threads each")
    parser.add_argument("--sampler", default="random")
    parser.add_argument("--pruner", default="none")
    parser.add_argument("--server-workers", type=int, default=2, help="mlflow server's")
    parser.add_argument(
        "--server-pool",
        type=int,
        default=0,
        help="the mlflow server's database pool per server worker (as many again in overflow); "
        "0: MLflow's own (SQLAlchemy's 5 + 10)",
    )
    parser.add_argument("--top", type=int, default=0, help="print the N most called statements")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    tmp = Path(tempfile.mkdtemp(prefix="tunelab-scale-"))
    tmp.chmod(0o711)  # the postgres user must reach its own folder inside
    biggest = max(args.workers)
    pg = Postgres(
        tmp / "pg",
        {
            "max_connections": str(biggest * 3 + 50),  # room to see what the workers take
            "shared_preload_libraries": "pg_stat_statements",
            "pg_stat_statements.track": "all",
            "fsync": "off",  # a benchmark's database: durability is not what is measured
            "synchronous_commit": "off",
        },
    )
    rows = []
    mlflow = None
    children: list = []
    # stopped (a timeout, Ctrl-C): the servers and the workers go too, through `finally`
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        backend = pg.create_database("mlflow")
        mlflow = MlflowServer(
            tmp / "mlflow",
            backend=backend,
            workers=args.server_workers,
            env={}
            if not args.server_pool
            else {
                "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE": str(args.server_pool),
                "MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW": str(args.server_pool),
            },
        )
        for trial_s in args.trial_s:
            for workers in args.workers:
                print(f"N = {workers}, trials of {trial_s:g} s ...", flush=True)
                row = scenario(args, pg, mlflow.uri, workers, trial_s, tmp, children)
                rows.append(row)
                print(
                    f"  {row['finished']} finished in {row['wall']:.0f} s: "
                    f"{row['per_min']:.1f}/min of {row['ideal']:.1f} ideal ({row['ratio']:.0%}); "
                    f"a trial {row['trial_p50']:.1f} s (p50; longest {row['trial_max']:.1f} s); "
                    f"{row['statements']:.0f} statements and {row['rows']:.0f} rows read per "
                    f"trial; peak {row['peak_connections']} connections to the study's database "
                    f"({row['tracking_connections']} to MLflow's); errors {row['errors']}; "
                    f"checks: {'ok' if not row['broken'] else row['broken']}",
                    flush=True,
                )
                for line in row["error_lines"]:
                    print(f"    {line}", flush=True)
                for calls, read, query in row["top"]:
                    per = calls / max(1, row["finished"])
                    print(f"    {per:7.1f}/trial {read / max(1, calls):7.1f} rows  {query}")
    finally:
        for child in children:
            if child.is_alive():
                child.kill()
        if mlflow is not None:
            mlflow.stop()
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"\n{'N':>4} {'T s':>4} {'done':>5} {'per min':>8} {'ideal':>7} {'ratio':>6} "
        f"{'stmts/tr':>9} {'rows/tr':>8} {'conns':>6} {'take p50/p99 ms':>16} "
        f"{'tell p50/p99 ms':>16} {'mlflow/tr':>9} {'p99 ms':>7} {'errors':>6} checks"
    )
    for r in rows:
        print(
            f"{r['N']:>4} {r['T']:>4g} {r['finished']:>5} {r['per_min']:>8.1f} {r['ideal']:>7.1f} "
            f"{r['ratio']:>6.0%} {r['statements']:>9.0f} {r['rows']:>8.0f} "
            f"{r['peak_connections']:>6} "
            f"{r['take_p50'] * 1e3:>7.0f}/{r['take_p99'] * 1e3:<8.0f} "
            f"{r['tell_p50'] * 1e3:>7.0f}/{r['tell_p99'] * 1e3:<8.0f} "
            f"{r['mlflow_per_trial']:>9.1f} {r['mlflow_p99'] * 1e3:>7.0f} {r['errors']:>6} "
            f"{'ok' if not r['broken'] else 'BROKEN'}"
        )
    return 0 if all(not r["broken"] and not r["errors"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
