"""The commands that make and run studies: `run`, `create`, `worker`, `studies`, `best`."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from tunelab.search.adapters.storage import shown_url
from tunelab.search.cli.common import StorageOpt, interruptible, say
from tunelab.search.cli.options import argument, keyword, with_parameters
from tunelab.search.spec import SpecError, StudySpec, build_spec, storage_url

TASK = argument(
    "task", str, "Task: cnn, vae, gan, a name `tunelab tasks` lists, or package.module:Class."
)
CONFIG = keyword(
    "config",
    str | None,
    typer.Option(None, "--config", help="YAML file: options and search-space narrowing."),
)


@with_parameters([TASK, CONFIG])
def run(task: str, config: str | None, **options: Any) -> None:
    """Create or resume a study and run it to its target number of finished trials, or for
    its time budget."""
    started = time.time()
    spec = _spec(task, config, options, started)
    interruptible(lambda: run_spec(spec))


@with_parameters([TASK, CONFIG])
def create(task: str, config: str | None, **options: Any) -> None:
    """Create a study without running trials, for `tunelab worker` (same options as run)."""
    spec = _spec(task, config, options, time.time())
    study, plan = create_study(spec)
    storage = shown_url(spec.storage)
    target = spec.trial_target or "no"
    print(f"study '{study.study_name}' ready in {storage}: target {target} trials")
    print(f"trial budget: {plan.budget.describe()}")
    print(f"join it with: tunelab worker {study.study_name} --storage {storage}")


def create_study(spec: StudySpec):
    """Create (or check and resume) a study with its MLflow parent run; no trial runs.
    Returns the study and its budget plan."""
    from tunelab.search.adapters.logs import library_logs
    from tunelab.search.study.prepare import prepare
    from tunelab.search.study.run import attach_parent_run, open_study
    from tunelab.search.study.workers import plan_workers

    library_logs(spec.verbose)
    prepared = prepare(spec)
    workers = plan_workers(spec, prepared.device, prepared.data)
    study, plan = open_study(prepared, workers=workers.workers, threads=workers.threads)
    attach_parent_run(prepared, study)  # before workers start, so they all share it
    return study, plan


def _spec(task: str, config: str | None, options: dict[str, Any], started: float) -> StudySpec:
    """The spec of `run` / `create`; a time budget counts from the command's start."""
    # a flag left off arrives as False: None lets the config file set it
    options = {k: None if v is False else v for k, v in options.items()}
    return with_deadline(build_spec(task, config, options), started)


def with_deadline(spec: StudySpec, started: float) -> StudySpec:
    """A time budget counts from `started` (the command's start)."""
    if spec.timeout and spec.deadline is None:
        spec = dataclasses.replace(spec, deadline=started + spec.timeout)
    return spec


STUDY = argument("study", str, "Name of an existing study.")
WORKER_INDEX = keyword(
    "worker_index",
    int | None,
    typer.Option(None, "--worker-index", hidden=True, help="Seed stream of this worker."),
)


@with_parameters([STUDY, WORKER_INDEX], joining=True)
def worker(study: str, worker_index: int | None, **options: Any) -> None:
    """Join an existing study (from another shell, container or machine) until its target."""
    from tunelab.search.study.queries import join_spec

    started = time.time()
    options = {k: None if v is False else v for k, v in options.items()}
    spec = join_spec(study, storage_url(options.pop("storage")), options)
    if spec.timeout and spec.deadline is None:
        spec = dataclasses.replace(spec, deadline=started + spec.timeout)
    # Containers all have PID 1-ish: mix in the host name so scaled workers differ. A worker
    # of `run --workers` (given its index) leaves the summary to that command.
    index = worker_index if worker_index is not None else _worker_seed_index()
    report = worker_index is None
    interruptible(lambda: run_spec(spec, worker_index=index, joining=True, report=report))


def run_spec(spec: StudySpec, worker_index: int = 0, joining: bool = False, report: bool = True):
    """Run a study to its target (what `run` and `worker` do); prints its summary when
    `report`. Returns the study."""
    from tunelab.search.adapters.logs import library_logs
    from tunelab.search.study.prepare import prepare
    from tunelab.search.study.progress import StudyProgress
    from tunelab.search.study.run import attach_parent_run, count_finished, open_study, run_study
    from tunelab.search.study.workers import WorkerPlan, launch_workers, plan_workers

    library_logs(spec.verbose)  # the progress display or --quiet lines replace theirs
    prepared = prepare(spec)
    machine = plan_workers(spec, prepared.device, prepared.data)
    if joining:  # a joining worker is one process, whatever the machine
        machine = WorkerPlan(1, spec.threads)
    study, plan = open_study(prepared, workers=machine.workers, threads=machine.threads)
    say(f"{prepared.data.summary()}", spec.quiet or not report)
    say(
        f"trial budget: {plan.budget.describe()}; {machine.describe(prepared.device)}",
        spec.quiet or not report,
    )
    if machine.workers > 1:
        attach_parent_run(prepared, study)  # one parent run before the workers start
        if spec.storage.startswith("sqlite"):
            say(
                "note: several workers share SQLite through file locks; use PostgreSQL "
                "for shared or multi-machine work"
            )
        code = launch_workers(spec, machine, study, plan.budget)
        _summary(spec, study, prepared.task.metric)
        if code:
            raise typer.Exit(code)
        return study
    if spec.quiet:
        outcome = run_study(prepared, worker_index=worker_index, threads=machine.threads)
    else:
        done = count_finished(study)
        display = StudyProgress(
            spec.name, spec.trial_target, done, plan.budget, prepared.task.direction
        )
        with display:
            outcome = run_study(
                prepared, worker_index=worker_index, progress=display, threads=machine.threads
            )
    if report:
        _summary(spec, outcome.study, prepared.task.metric)
    return outcome.study


def _summary(spec: StudySpec, study, metric: str) -> None:
    from tunelab.search.adapters.tracking import StudyTracker, is_server
    from tunelab.search.study.pareto import front_lines
    from tunelab.search.study.queries import best_trial_info
    from tunelab.search.study.run import count_finished
    from tunelab.search.study.summary import SearchSummary

    tracker = StudyTracker.for_spec(spec)
    summary = SearchSummary.of(study)
    target = spec.trial_target
    if target is not None:
        print(f"study '{study.study_name}': {count_finished(study)}/{target} finished trials")
    print(f"study '{study.study_name}': {summary.counts()}")
    try:
        info = best_trial_info(study)
    except SpecError:
        print("no complete trial yet")
        return
    print(
        f"best trial {info['trial']}: {info['metric']} = {info['value']:.6g} "
        f"(step {info['best_step']}, MLflow run {info['mlflow_run_id']})"
    )
    if info["mlflow_run_id"]:
        print(f"  {tracker.run_url(info['mlflow_run_id'])}")
    for line in front_lines(info):
        print(line)
    against = summary.against_default(metric)
    if against:
        print(f"  {against}")
    _note_for_dashboard(study, summary, metric)
    for name, value in info["params"].items():
        print(f"  {name} = {value}")
    me = sys.argv[0] if Path(sys.argv[0]).name == "tunelab" else "tunelab"
    storage, tracking = shown_url(spec.storage), shown_url(spec.tracking_uri)
    print("see the results:")
    if is_server(tracking):
        print(f"  MLflow UI: {tracker.experiment_url()}")
    else:
        print(f"  {me} ui --tracking-uri {tracking}   # MLflow UI: {tracker.experiment_url()}")
    print(f"  {me} dashboard --storage {storage}   # optuna-dashboard, http://127.0.0.1:8080")
    print(f"  {me} report {study.study_name} --storage {storage}   # HTML report")


def _note_for_dashboard(study, summary, metric: str) -> None:
    """What the search found, and the importances that count pruned trials, as the study's
    note in optuna-dashboard."""
    import optuna_dashboard

    from tunelab.search.analysis.importance import dashboard_note, rung_importance
    from tunelab.search.study.budget import recorded_budget

    unit, _ = recorded_budget(study)
    rung, why_not = rung_importance(study)
    lines = [summary.counts()]
    against = summary.against_default(metric)
    if against:
        lines.append(against)
    optuna_dashboard.save_note(study, dashboard_note(lines, rung, why_not, unit))


def studies(storage: StorageOpt = None) -> None:
    """List the studies in the storage with their progress and best value."""
    from rich.console import Console
    from rich.table import Table

    from tunelab.search.study.queries import study_rows

    rows = study_rows(storage_url(storage))
    if not rows:
        print("no studies")
        return
    table = Table(
        "study",
        "task",
        "data set",
        "metric",
        "direction",
        "finished",
        "pruned",
        "failed",
        "target",
        "best",
    )
    for r in rows:
        best = "-" if r["best"] is None else f"{r['best']:.6g}"
        table.add_row(
            r["name"],
            r["task"],
            r["dataset"],
            r["metric"],
            r["direction"],
            str(r["complete"] + r["pruned"]),
            str(r["pruned"]),
            str(r["failed"]),
            str(r["target"] or "-"),
            best,
        )
    console = Console()
    if not console.is_terminal:  # piped: don't squeeze the table into 80 columns
        console = Console(width=200)
    console.print(table)


def best(
    study: Annotated[str, typer.Argument(help="Study name.")],
    storage: StorageOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The best trial of a study: value, parameters and MLflow run id; with several
    objectives, the Pareto front too (the best trial is its best primary objective)."""
    from tunelab.search.study.pareto import front_lines
    from tunelab.search.study.queries import best_trial_info, load_study

    info = best_trial_info(load_study(study, storage_url(storage)))
    if as_json:
        print(json.dumps(info, indent=2))
        return
    print(f"{info['study']}: best trial {info['trial']}, {info['metric']} = {info['value']:.6g}")
    print(f"  MLflow run {info['mlflow_run_id']}, best step {info['best_step']}")
    for name, value in info["params"].items():
        print(f"  {name} = {value}")
    for line in front_lines(info):  # a multi-objective study: its whole front
        print(line)


def _worker_seed_index() -> int:
    digest = hashlib.sha256(f"{socket.gethostname()}:{os.getpid()}".encode()).hexdigest()
    return int(digest[:8], 16)
