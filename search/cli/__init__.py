"""The `tunelab` command line: a thin typer layer over StudySpec and the study machinery.

Every user error ends as one line on stderr and exit code 2; a search that diverged exits 3;
Ctrl-C exits 130 and SIGTERM 143, with every MLflow run closed (common.py lists the codes).
The commands live by role: `study.py` (run, create, worker, studies, best, trials),
`analysis.py` (report, evaluate), `servers.py` (dashboard, ui), `launch.py` (launch slurm);
their options come from StudySpec through `options.py`.
"""

from __future__ import annotations

import os
import sys
import warnings

import typer

from tunelab.search.cli import analysis, launch, servers, study, tasks
from tunelab.search.cli.common import (
    EXIT_GAVE_UP,
    EXIT_SIGINT,
    EXIT_USAGE,
    NoInterruptTraceback,
    error,
)
from tunelab.search.cli.options import CommandGroup
from tunelab.search.spec import SpecError

__all__ = ["main", "make_app"]


def make_app() -> typer.Typer:
    """The `tunelab` app with every command."""
    app = typer.Typer(
        cls=CommandGroup,  # help panels without mid-sentence breaks or a type for --help
        name="tunelab",
        help="Hyperparameter search for PyTorch image models: Optuna studies tracked in MLflow.",
        add_completion=False,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
    )
    for command in (
        study.run,
        study.create,
        study.worker,
        study.studies,
        study.best,
        study.trials,
        tasks.tasks,
        analysis.report,
        servers.dashboard,
        servers.ui,
        analysis.evaluate,
    ):
        app.command()(command)
    app.add_typer(launch.app)  # tunelab launch slurm
    return app


def _is_click_usage_error(exc: Exception) -> bool:
    # typer vendors click; its exceptions are recognised by their interface, not their module
    return callable(getattr(exc, "format_message", None)) and hasattr(exc, "exit_code")


def main(argv: list[str] | None = None) -> int:
    """Entry point: one line per user error, exit 2; 130 on Ctrl-C; 143 on SIGTERM."""
    from tunelab.search.adapters.logs import library_logs, quiet_env
    from tunelab.search.adapters.signals import interrupt_once
    from tunelab.search.adapters.tracking import telemetry_env

    # what a study writes (its databases, checkpoints, artifacts, reports) is its user's alone
    os.umask(0o077)
    os.environ.update(telemetry_env())
    os.environ.update(quiet_env())  # before mlflow is imported: it reads its level then
    # Optuna flags heartbeats, retries and grouped TPE as experimental: chosen on purpose here.
    warnings.filterwarnings("ignore", message=".*experimental.*")
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
    interrupt_once(stop_at_rung=True)  # SIGTERM: at the running trial's next rung
    import optuna

    for handler in optuna.logging.get_logger("optuna").handlers:
        handler.addFilter(NoInterruptTraceback())
    library_logs(verbose=False)  # a command with --verbose turns them on
    command = typer.main.get_command(make_app())
    try:
        result = command.main(args=argv, prog_name="tunelab", standalone_mode=False)
    except SpecError as exc:
        error(str(exc))
        return EXIT_USAGE
    except typer.Abort:
        return EXIT_SIGINT
    except Exception as exc:
        from tunelab.search.scheduler.worker import WorkerGaveUp
        from tunelab.search.study.orchestration import WorkersFailed

        if isinstance(exc, WorkerGaveUp):
            error(str(exc))
            return EXIT_GAVE_UP
        if isinstance(exc, WorkersFailed):  # each worker said why in its own line
            return exc.code
        if not _is_click_usage_error(exc):
            raise
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.format_message(), file=sys.stderr)
        else:
            error(" ".join(exc.format_message().split()))
        return EXIT_USAGE
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
