"""The `tunelab` command line: a thin typer layer over StudySpec and search.study.

Every user error ends as one line on stderr and exit code 2; Ctrl-C exits 130 and SIGTERM
143, with every MLflow run closed.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import signal
import socket
import sys
import typing
import warnings
from pathlib import Path
from typing import Annotated

import typer

from search.cli_analysis import StorageOpt
from search.cli_analysis import register as register_analysis
from search.config import SpecError, storage_url
from search.storage import shown_url

app = typer.Typer(
    name="tunelab",
    help="Hyperparameter search for PyTorch image models: Optuna studies tracked in MLflow.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

EXIT_USAGE = 2
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class Terminated(KeyboardInterrupt):
    """SIGTERM (e.g. `docker stop`): handled like Ctrl-C, exit code 143."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


@app.command()
def run(
    task: Annotated[str, typer.Argument(help="Task: cnn, vae or gan.")],
    study_name: Annotated[
        str | None, typer.Option(help="Study name [default: TASK-DATASET].")
    ] = None,
    n_trials: Annotated[
        int | None, typer.Option(help="Total target of finished trials [20].")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds after which no trial starts.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Maximum epochs per trial [10].")] = None,
    patience: Annotated[
        int | None, typer.Option(help="Early-stopping patience in epochs [3].")
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            help="mnist5k, digits, mnist, fashion-mnist, kmnist, cifar10 or folder:PATH [mnist5k]."
        ),
    ] = None,
    data_dir: Annotated[
        str | None, typer.Option(help="Root of torchvision data sets [data].")
    ] = None,
    limit_train: Annotated[
        int | None, typer.Option(help="Tune on N stratified training images.")
    ] = None,
    storage: StorageOpt = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option(
            help="MLflow tracking URI [$MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db]."
        ),
    ] = None,
    sampler: Annotated[
        str | None, typer.Option(help="tpe, random, cmaes, gp or qmc [tpe].")
    ] = None,
    pruner: Annotated[
        str | None, typer.Option(help="hyperband, median, asha, patient or none [hyperband].")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the sampler and training [0].")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or mps [auto].")] = None,
    config: Annotated[
        str | None, typer.Option(help="YAML file: options and search-space narrowing.")
    ] = None,
    checkpoint_dir: Annotated[
        str | None, typer.Option(help="Per-epoch checkpoints for crash recovery [checkpoints].")
    ] = None,
    heartbeat_interval: Annotated[
        int | None, typer.Option(help="Seconds between trial heartbeats [10].")
    ] = None,
    grace_period: Annotated[
        int | None, typer.Option(help="Seconds without heartbeat before a trial is retried [30].")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Worker processes on this machine [1; one per GPU when there are several]."
        ),
    ] = None,
    feature_space: Annotated[
        str | None,
        typer.Option(
            help="gan: fd_classifier, fid_inception or auto [auto: Inception on a GPU with weights]."
        ),
    ] = None,
    inception_weights: Annotated[
        str | None,
        typer.Option(help="gan: local Inception-v3 FID weights [$TUNELAB_INCEPTION_WEIGHTS]."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress display.")] = False,
) -> None:
    """Create or resume a study and run it to its target number of finished trials."""
    options = {k: v for k, v in locals().items() if k not in ("task", "config")}
    spec = _spec(task, config, options)
    interruptible(lambda: _run_and_report(spec))


def create(*args, **kwargs) -> None:
    """Create a study without running trials, for `tunelab worker` (same options as run)."""
    options = {k: v for k, v in kwargs.items() if k not in ("task", "config")}
    spec = _spec(kwargs["task"], kwargs["config"], options)
    from search.study import attach_parent_run, open_study, prepare

    prepared = prepare(spec)
    study = open_study(prepared)
    attach_parent_run(prepared, study)  # before workers start, so they all share it
    storage = shown_url(spec.storage)
    print(f"study '{study.study_name}' ready in {storage}: target {spec.n_trials} trials")
    print(f"join it with: tunelab worker {study.study_name} --storage {storage}")


def _same_options_as(command):
    """A signature with `command`'s options, resolved, for typer to read: declared once."""
    hints = typing.get_type_hints(command, include_extras=True)
    signature = inspect.signature(command)
    return signature.replace(
        parameters=[p.replace(annotation=hints[p.name]) for p in signature.parameters.values()]
    )


create.__signature__ = _same_options_as(run)
app.command()(create)


def _spec(task: str, config: str | None, options: dict):
    from search.config import build_spec

    options["quiet"] = options.get("quiet") or None
    # Task settings that are not searched travel in task_options (also settable in --config).
    task_options = {
        name: options.pop(name)
        for name in ("feature_space", "inception_weights")
        if options.get(name) is not None
    }
    options.pop("feature_space", None)
    options.pop("inception_weights", None)
    if task_options:
        options["task_options"] = task_options
    if options.get("workers") is None:
        from search.workers import default_workers

        workers = default_workers()
        options["workers"] = workers if workers > 1 else None
    return build_spec(task, config, options)


@app.command()
def worker(
    study: Annotated[str, typer.Argument(help="Name of an existing study.")],
    storage: StorageOpt = None,
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI [the study's].")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or mps [auto].")] = None,
    worker_index: Annotated[
        int | None, typer.Option(hidden=True, help="Seed stream of this worker.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress display.")] = False,
) -> None:
    """Join an existing study (from another shell, container or machine) until its target."""
    from search.study import join_spec

    spec = join_spec(study, storage_url(storage), tracking_uri, device, quiet)
    # Containers all have PID 1-ish: mix in the host name so scaled workers differ.
    index = worker_index if worker_index is not None else _worker_seed_index()
    interruptible(lambda: _run_and_report(spec, worker_index=index))


def _run_and_report(spec, worker_index: int = 0) -> None:
    from search.progress import StudyProgress
    from search.study import attach_parent_run, open_study, prepare, run_study

    prepared = prepare(spec)
    if spec.workers > 1:
        from search.workers import launch_workers

        study = open_study(prepared)
        attach_parent_run(prepared, study)  # one parent run before the workers start
        if spec.storage.startswith("sqlite"):
            _say(
                "note: several workers share SQLite through file locks; use PostgreSQL "
                "for shared or multi-machine work",
                False,
            )
        code = launch_workers(spec, spec.workers, study)
        _summary(spec, study, None)
        if code:
            raise typer.Exit(code)
        return
    if not spec.quiet:  # the progress display replaces Optuna's per-trial log lines
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    _say(f"{prepared.data.summary()}; device {prepared.device}", spec.quiet)
    if spec.quiet:
        outcome = run_study(prepared, worker_index=worker_index)
    else:
        display = StudyProgress(spec.name, spec.n_trials, 0, spec.epochs, prepared.task.direction)
        with display:
            outcome = run_study(prepared, worker_index=worker_index, progress=display)
    _summary(spec, outcome.study, outcome.finished)


def _summary(spec, study, finished: int | None) -> None:
    from search.study import best_trial_info, count_finished

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


@app.command()
def studies(storage: StorageOpt = None) -> None:
    """List the studies in the storage with their progress and best value."""
    from rich.console import Console
    from rich.table import Table

    from search.study import study_rows

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


@app.command()
def best(
    study: Annotated[str, typer.Argument(help="Study name.")],
    storage: StorageOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The best trial of a study: value, parameters and MLflow run id."""
    from search.study import best_trial_info, load_study

    info = best_trial_info(load_study(study, storage_url(storage)))
    if as_json:
        print(json.dumps(info, indent=2))
        return
    print(f"{info['study']}: best trial {info['trial']}, {info['metric']} = {info['value']:.6g}")
    print(f"  MLflow run {info['mlflow_run_id']}, best epoch {info['best_epoch']}")
    for name, value in info["params"].items():
        print(f"  {name} = {value}")


register_analysis(app)  # report, dashboard, ui, evaluate


def _worker_seed_index() -> int:
    digest = hashlib.sha256(f"{socket.gethostname()}:{os.getpid()}".encode()).hexdigest()
    return int(digest[:8], 16)


def _say(text: str, quiet: bool) -> None:
    if not quiet:
        print(text, file=sys.stderr)


def _error(message: str) -> None:
    print(f"tunelab: error: {message}", file=sys.stderr)


class _NoInterruptTraceback(logging.Filter):
    """Optuna logs a failed trial with its traceback; for Ctrl-C / SIGTERM that is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], KeyboardInterrupt):
            record.exc_info, record.exc_text = None, None
        return True


def _is_click_usage_error(exc: Exception) -> bool:
    # typer vendors click; its exceptions are recognised by their interface, not their module
    return callable(getattr(exc, "format_message", None)) and hasattr(exc, "exit_code")


def interruptible(body):
    """Run a command body; Ctrl-C exits 130 and SIGTERM 143, each with one line."""
    try:
        return body()
    except Terminated:
        _error("terminated (SIGTERM); the running trial is recorded as failed")
        raise typer.Exit(EXIT_SIGTERM) from None
    except KeyboardInterrupt:
        _error("interrupted; the running trial is recorded as failed")
        raise typer.Exit(EXIT_SIGINT) from None


def main(argv: list[str] | None = None) -> int:
    """Entry point: one line per user error, exit 2; 130 on Ctrl-C; 143 on SIGTERM."""
    from search.tracking import telemetry_env

    os.environ.update(telemetry_env())
    # Optuna flags heartbeats, retries and grouped TPE as experimental: chosen on purpose here.
    warnings.filterwarnings("ignore", message=".*experimental.*")
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
    signal.signal(signal.SIGTERM, _raise_terminated)
    import optuna

    for handler in optuna.logging.get_logger("optuna").handlers:
        handler.addFilter(_NoInterruptTraceback())
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="tunelab", standalone_mode=False)
    except SpecError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except typer.Abort:
        return EXIT_SIGINT
    except Exception as exc:
        if not _is_click_usage_error(exc):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.format_message(), file=sys.stderr)
        else:
            _error(" ".join(exc.format_message().split()))
        return EXIT_USAGE
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
