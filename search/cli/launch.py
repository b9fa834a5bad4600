"""`tunelab launch slurm`: a study's workers as a Slurm job array; a study's jobs, shown or
cancelled. A thin layer: the options come from StudySpec (every option of `run`, less the
local `--workers` and `--threads`, which the array's `--workers` and `--cpus-per-worker`
replace) and from SlurmOptions, through `options.py`; the work is in `tunelab.search.launch`.
"""

from __future__ import annotations

import dataclasses
import inspect
import time
import typing
from typing import Any

import typer

from tunelab.search.cli.options import _parameter, argument, keyword, spec_parameters
from tunelab.search.cli.study import CONFIG
from tunelab.search.launch.options import SlurmOptions
from tunelab.search.spec import SpecError, build_spec, field_docs, storage_url

REPLACED = ("workers", "threads")
"""`run`'s options that the array's own replace (--workers: tasks; --threads: their cores)."""

TASK = argument(
    "task",
    typing.Optional[str],  # noqa: UP045 (a runtime type, not syntax)
    "Task to search (as for `tunelab run`); leave it out with --status or --cancel.",
    default=None,
)
STATUS = keyword(
    "status",
    str | None,
    typer.Option(
        None,
        "--status",
        metavar="STUDY",
        help="Show the study's array tasks and their states beside its trial counts.",
    ),
)
CANCEL = keyword(
    "cancel",
    str | None,
    typer.Option(
        None,
        "--cancel",
        metavar="STUDY",
        help="scancel the study's jobs: running trials stop at their next rung, resumable.",
    ),
)

app = typer.Typer(
    name="launch",
    help="Run a study's workers on a cluster's scheduler.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _slurm_parameters() -> list[inspect.Parameter]:
    docs = field_docs(SlurmOptions)
    return [
        _parameter(SlurmOptions, f, docs.get(f.name, ""), joining=False)
        for f in dataclasses.fields(SlurmOptions)
    ]


def _parameters() -> list[inspect.Parameter]:
    run = [p for p in spec_parameters() if p.name not in REPLACED]
    return [TASK, CONFIG, STATUS, CANCEL, *run, *_slurm_parameters()]


def slurm(
    task: str | None,
    config: str | None,
    status: str | None,
    cancel: str | None,
    **options: Any,
) -> None:
    """Create or check a study, then run its workers as one Slurm job array (sbatch): one
    `tunelab worker` per array task (one per GPU with GPUs), each requeued at its time limit
    and resuming its trial from the last rung's checkpoint. The storage and tracking URLs
    reach the tasks through a file only you can read, never the script or the job.

    Jobs that can span nodes need a storage, tracking store and --checkpoint-dir that every
    node shares: PostgreSQL; an MLflow server or PostgreSQL; mlflow-artifacts:/PATH, an fsspec
    URL or a folder on a shared file system (NFS, Lustre, ...). --single-node lifts that
    rule when every task runs on one node.
    """
    from tunelab.search.launch import slurm as launching
    from tunelab.search.study.orchestration import with_deadline
    from tunelab.search.study.queries import load_study

    slurm_names = {f.name for f in dataclasses.fields(SlurmOptions)}
    asked = [
        name
        for name, value in (("TASK", task), ("--status", status), ("--cancel", cancel))
        if value
    ]
    if len(asked) != 1:
        raise SpecError(
            "give a TASK to launch, or --status STUDY, or --cancel STUDY"
            if not asked
            else f"{' and '.join(asked)} do not go together: give one"
        )
    if status or cancel:
        study = load_study(status or cancel, storage_url(options.get("storage")))
        (launching.status if status else launching.cancel)(study)
        return
    started = time.time()
    device = options.get("device")
    slurm_options = SlurmOptions.from_options({k: options[k] for k in slurm_names})
    # a flag left off arrives as False: None lets the config file set it
    study_options = {
        k: None if v is False else v for k, v in options.items() if k not in slurm_names
    }
    spec = with_deadline(build_spec(task, config, study_options), started)
    launching.launch(spec, slurm_options, device=device)


slurm.__signature__ = inspect.Signature(_parameters())
app.command("slurm", short_help="Run a study's workers as a Slurm job array; --status, --cancel.")(
    slurm
)
