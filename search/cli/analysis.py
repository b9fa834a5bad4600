"""Analysis commands: `report` and `evaluate`; each imports its machinery only when it runs."""

from __future__ import annotations

from typing import Annotated

import typer

from tunelab.search.adapters.logs import say
from tunelab.search.cli.common import StorageOpt, interruptible
from tunelab.search.spec import storage_url

StoredTrackingOpt = Annotated[
    str | None,
    typer.Option("--tracking-uri", help="MLflow tracking URI.", show_default="the study's"),
]


def report(
    study: Annotated[str, typer.Argument(help="Study name.")],
    storage: StorageOpt = None,
    out: Annotated[
        str | None, typer.Option("--out", help="Output folder.", show_default="reports/STUDY")
    ] = None,
    tracking_uri: StoredTrackingOpt = None,
    mlflow: Annotated[
        bool,
        typer.Option(
            "--mlflow/--no-mlflow", help="Log the report to the study's MLflow parent run."
        ),
    ] = True,
) -> None:
    """Write an HTML report of a study (figures, importances, pruning) and log it to MLflow."""
    from tunelab.search.analysis.report import REPORT_ARTIFACT_DIR, make_report

    files, run_id = make_report(study, storage_url(storage), out, tracking_uri, mlflow)
    print(f"report: {files.html}")
    for warning in files.edge_warnings:
        print(f"{'note' if warning.at_floor else 'warning'}: {warning.message()}")
    if run_id:
        print(f"logged to MLflow run {run_id} (artifacts {REPORT_ARTIFACT_DIR}/)")


def evaluate(
    study: Annotated[str, typer.Argument(help="Study name.")],
    seeds: Annotated[
        int,
        typer.Option("--seeds", min=1, help="Retrainings, each scored once on the test split."),
    ] = 3,
    storage: StorageOpt = None,
    tracking_uri: StoredTrackingOpt = None,
    device: Annotated[
        str | None,
        typer.Option("--device", help="auto, cpu, cuda or mps.", show_default="the study's"),
    ] = None,
    trial: Annotated[
        int | None,
        typer.Option(
            "--trial",
            min=0,
            help="The complete trial to retrain, e.g. a point of the Pareto front "
            "(`tunelab best` lists it); registered as STUDY-trial-N.",
            show_default="the best (primary objective)",
        ),
    ] = None,
) -> None:
    """Retrain the best configuration on train + validation and score the test split once."""
    from rich.console import Console

    from tunelab.search.analysis.evaluate import EvaluationConfig, evaluate_study, summary_table

    config = EvaluationConfig(
        study=study,
        storage=storage_url(storage),
        seeds=seeds,
        tracking_uri=tracking_uri,
        device=device,
        trial=trial,
    )
    result = interruptible(lambda: evaluate_study(config, say=say))
    console = Console()
    if not console.is_terminal:  # piped: don't squeeze the table into 80 columns
        console = Console(width=160)
    console.print(summary_table(result))
    print(f"MLflow run {result.run_id} (tag tunelab.evaluation=true)")
    print(
        f"registered model {result.model_name} version {result.model_version} "
        f"({result.registered_module}, seed {result.best_seed})"
    )
