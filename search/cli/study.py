"""The commands that make and run studies: `run`, `create`, `worker`, `studies`, `best`."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from tunelab.search.adapters.storage import shown_url
from tunelab.search.cli.common import StorageOpt, interruptible, say
from tunelab.search.cli.options import argument, keyword, with_parameters
from tunelab.search.spec import SpecError, StudySpec, build_spec, storage_url

TASK = argument("task", str, "Task: cnn, vae or gan.")
CONFIG = keyword(
    "config",
    str | None,
    typer.Option(None, "--config", help="YAML file: options and search-space narrowing."),
)


@with_parameters([TASK, CONFIG])
def run(task: str, config: str | None, **options: Any) -> None:
    """Create or resume a study and run it to its target number of finished trials."""
    spec = _spec(task, config, options)
    interruptible(lambda: _run_and_report(spec))


@with_parameters([TASK, CONFIG])
def create(task: str, config: str | None, **options: Any) -> None:
    """Create a study without running trials, for `tunelab worker` (same options as run)."""
    from tunelab.search.study.prepare import prepare
    from tunelab.search.study.run import attach_parent_run, open_study

    spec = _spec(task, config, options)
    prepared = prepare(spec)
    study = open_study(prepared)
    attach_parent_run(prepared, study)  # before workers start, so they all share it
    storage = shown_url(spec.storage)
    print(f"study '{study.study_name}' ready in {storage}: target {spec.n_trials} trials")
    print(f"join it with: tunelab worker {study.study_name} --storage {storage}")


def _spec(task: str, config: str | None, options: dict[str, Any]) -> StudySpec:
    options["quiet"] = options.get("quiet") or None
    if options.get("workers") is None:
        from tunelab.search.study.workers import default_workers

        workers = default_workers()
        options["workers"] = workers if workers > 1 else None
    return build_spec(task, config, options)


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

    spec = join_spec(
        study,
        storage_url(options["storage"]),
        options["tracking_uri"],
        options["device"],
        options["quiet"],
    )
    # Containers all have PID 1-ish: mix in the host name so scaled workers differ.
    index = worker_index if worker_index is not None else _worker_seed_index()
    interruptible(lambda: _run_and_report(spec, worker_index=index))


def _run_and_report(spec: StudySpec, worker_index: int = 0) -> None:
    from tunelab.search.study.prepare import prepare
    from tunelab.search.study.progress import StudyProgress
    from tunelab.search.study.run import attach_parent_run, open_study, run_study

    prepared = prepare(spec)
    if spec.workers > 1:
        from tunelab.search.study.workers import launch_workers

        study = open_study(prepared)
        attach_parent_run(prepared, study)  # one parent run before the workers start
        if spec.storage.startswith("sqlite"):
            say(
                "note: several workers share SQLite through file locks; use PostgreSQL "
                "for shared or multi-machine work"
            )
        code = launch_workers(spec, spec.workers, study)
        _summary(spec, study, None)
        if code:
            raise typer.Exit(code)
        return
    if not spec.quiet:  # the progress display replaces Optuna's per-trial log lines
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    say(f"{prepared.data.summary()}; device {prepared.device}", spec.quiet)
    if spec.quiet:
        outcome = run_study(prepared, worker_index=worker_index)
    else:
        display = StudyProgress(
            spec.name, spec.n_trials, 0, spec.max_epochs, prepared.task.direction
        )
        with display:
            outcome = run_study(prepared, worker_index=worker_index, progress=display)
    _summary(spec, outcome.study, outcome.finished)


def _summary(spec: StudySpec, study, finished: int | None) -> None:
    from tunelab.search.study.queries import best_trial_info
    from tunelab.search.study.run import count_finished

    finished = count_finished(study) if finished is None else finished
    print(f"study '{study.study_name}': {finished}/{spec.n_trials} finished trials")
    try:
        info = best_trial_info(study)
    except SpecError:
        print("no complete trial yet")
        return
    print(
        f"best trial {info['trial']}: {info['metric']} = {info['value']:.6g} "
        f"(epoch {info['best_epoch']}, MLflow run {info['mlflow_run_id']})"
    )
    for name, value in info["params"].items():
        print(f"  {name} = {value}")
    me = sys.argv[0] if Path(sys.argv[0]).name == "tunelab" else "tunelab"
    storage, tracking = shown_url(spec.storage), shown_url(spec.tracking_uri)
    print("see the results:")
    print(f"  {me} ui --tracking-uri {tracking}          # MLflow UI, http://127.0.0.1:5000")
    print(f"  {me} dashboard --storage {storage}   # optuna-dashboard, http://127.0.0.1:8080")
    print(f"  {me} report {study.study_name} --storage {storage}   # HTML report")


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
    """The best trial of a study: value, parameters and MLflow run id."""
    from tunelab.search.study.queries import best_trial_info, load_study

    info = best_trial_info(load_study(study, storage_url(storage)))
    if as_json:
        print(json.dumps(info, indent=2))
        return
    print(f"{info['study']}: best trial {info['trial']}, {info['metric']} = {info['value']:.6g}")
    print(f"  MLflow run {info['mlflow_run_id']}, best epoch {info['best_epoch']}")
    for name, value in info["params"].items():
        print(f"  {name} = {value}")


def _worker_seed_index() -> int:
    digest = hashlib.sha256(f"{socket.gethostname()}:{os.getpid()}".encode()).hexdigest()
    return int(digest[:8], 16)
