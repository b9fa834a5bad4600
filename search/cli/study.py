"""The commands that make, run and read studies: `run`, `create`, `worker`, `studies`, `best`,
`trials`."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from typing import Annotated, Any

import typer

from tunelab.search.adapters.storage import shown_url
from tunelab.search.cli.common import EXIT_DIVERGED, StorageOpt, interruptible
from tunelab.search.cli.options import argument, keyword, with_parameters
from tunelab.search.spec import StudySpec, build_spec, storage_url

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
    from tunelab.search.study.orchestration import run_spec

    started = time.time()
    spec = _spec(task, config, options, started)
    _exit_if_diverged(interruptible(lambda: run_spec(spec)))


def _exit_if_diverged(study) -> None:
    """A search whose every configuration diverged is no result: exit EXIT_DIVERGED (the
    summary has said why in its last line), so that a script or CI job notices."""
    from tunelab.search.study.summary import SearchSummary

    if SearchSummary.of(study).diverged:
        raise typer.Exit(EXIT_DIVERGED)


@with_parameters([TASK, CONFIG])
def create(task: str, config: str | None, **options: Any) -> None:
    """Create a study without running trials, for `tunelab worker` (same options as run)."""
    from tunelab.search.study.orchestration import create_study

    spec = _spec(task, config, options, time.time())
    study, plan = create_study(spec)
    storage = shown_url(spec.storage)
    from tunelab.search.study.summary import counted

    target = spec.trial_target
    aim = "no trial target" if target is None else f"target {counted(target, 'trial')}"
    print(f"study '{study.study_name}' ready in {storage}: {aim}")
    print(f"trial budget: {plan.budget.describe()}")
    print(f"join it with: tunelab worker {study.study_name} --storage {storage}")


def _spec(task: str, config: str | None, options: dict[str, Any], started: float) -> StudySpec:
    """The spec of `run` / `create`; a time budget counts from the command's start."""
    from tunelab.search.study.orchestration import with_deadline

    # a flag left off arrives as False: None lets the config file set it
    options = {k: None if v is False else v for k, v in options.items()}
    return with_deadline(build_spec(task, config, options), started)


STUDY = argument("study", str, "Name of an existing study.")
WORKER_INDEX = keyword(
    "worker_index",
    int | None,
    typer.Option(None, "--worker-index", hidden=True, help="Seed stream of this worker."),
)


@with_parameters([STUDY, WORKER_INDEX], joining=True)
def worker(study: str, worker_index: int | None, **options: Any) -> None:
    """Join an existing study (from another shell, container or machine) until its target."""
    from tunelab.search.study.orchestration import run_spec, with_deadline
    from tunelab.search.study.queries import join_spec

    started = time.time()
    options = {k: None if v is False else v for k, v in options.items()}
    spec = with_deadline(join_spec(study, storage_url(options.pop("storage")), options), started)
    # Containers all have PID 1-ish: mix in the host name so scaled workers differ. A worker
    # of `run --workers` (given its index) leaves the summary to that command.
    index = worker_index if worker_index is not None else _worker_seed_index()
    report = worker_index is None
    study_run = interruptible(
        lambda: run_spec(spec, worker_index=index, joining=True, report=report)
    )
    if report:
        _exit_if_diverged(study_run)


def studies(storage: StorageOpt = None) -> None:
    """List the studies in the storage with their trials by state and best value."""
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
        "complete",
        "pruned",
        "failed",
        "running",
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
            str(r["complete"]),
            str(r["pruned"]),
            str(r["failed"]),
            str(r["running"]),
            str(r["target"] or "-"),
            best,
        )
    _console().print(table)


def best(
    study: Annotated[str, typer.Argument(help="Study name.")],
    storage: StorageOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The best trial of a study: value, parameters and MLflow run id; with several
    objectives, the Pareto front too (the best trial is its best primary objective)."""
    from tunelab.search.study.pareto import front_lines
    from tunelab.search.study.queries import best_trial_info, load_study

    study_obj = load_study(study, storage_url(storage))
    info = best_trial_info(study_obj)
    if as_json:
        print(json.dumps(info, indent=2))
        return
    print(f"{info['study']}: best trial {info['trial']}, {info['metric']} = {info['value']:.6g}")
    print(f"  MLflow run {info['mlflow_run_id']}, best weights at {_position(study_obj, info)}")
    for name, value in info["params"].items():
        print(f"  {name} = {value}")
    for line in front_lines(info):  # a multi-objective study: its whole front
        print(line)


def _position(study, info: dict) -> str:
    from tunelab.search.study.queries import study_budget
    from tunelab.search.study.summary import position

    budget = study_budget(study)
    return position(info["best_step"], "epochs" if budget is None else budget.unit)


def trials(
    study: Annotated[str, typer.Argument(help="Study name.")],
    storage: StorageOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List a study's trials: state, value, why each ended, duration, the rung it reached,
    its retries and continuations, and its parameters."""
    from rich.table import Table

    from tunelab.search.study.queries import (
        duration_text,
        lineage_text,
        load_study,
        reached_text,
        trial_rows,
    )

    rows = trial_rows(load_study(study, storage_url(storage)))
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print(f"study '{study}' has no trials yet")
        return
    multi = any(r["values"] and len(r["values"]) > 1 for r in rows)
    table = Table("trial", "state", "values" if multi else "value", "reached", "duration")
    table.add_column("why it ended", overflow="fold")
    table.add_column("lineage")
    table.add_column("parameters", overflow="fold")
    for r in rows:
        table.add_row(
            str(r["trial"]),
            r["state"],
            _values_text(r, multi),
            reached_text(r),
            duration_text(r["duration_s"]),
            r["reason"] or "",
            lineage_text(r),
            ", ".join(f"{k}={_short(v)}" for k, v in r["params"].items()),
        )
    _console().print(table)


def _values_text(row: dict, multi: bool) -> str:
    if multi and row["values"]:
        return ", ".join(f"{k} {v:.6g}" for k, v in row["values"].items())
    return "-" if row["value"] is None else f"{row['value']:.6g}"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _console():
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # piped: don't squeeze the table into 80 columns
        console = Console(width=200)
    return console


def _worker_seed_index() -> int:
    digest = hashlib.sha256(f"{socket.gethostname()}:{os.getpid()}".encode()).hexdigest()
    return int(digest[:8], 16)
