"""A study from its spec to its summary: what `tunelab run`, `tunelab worker` and `tunelab.run`
all do, through this one function each, with no command-line library in the way.

`run_spec` prepares (every input checked before anything is written), plans this machine's
workers, opens the study (creating it and planning its trial budget once), runs it (in this
process, or in worker processes of the real `tunelab worker`), and prints its summary.
`create_study` stops after opening, for workers that join later.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from tunelab.search.adapters.logs import library_logs, say
from tunelab.search.adapters.storage import shown_url
from tunelab.search.spec import SpecError, StudySpec

if TYPE_CHECKING:  # torch and the loop load when a study runs, not on import
    from tunelab.search.study.budget import BudgetPlan

Print = Callable[[str], None]


class WorkersFailed(RuntimeError):
    """A worker process of the study ended with a non-zero exit code (`code`)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"a worker process exited with code {code}")
        self.code = code


def with_deadline(spec: StudySpec, started: float) -> StudySpec:
    """A time budget counts from `started` (the command's or the call's start)."""
    if spec.timeout and spec.deadline is None:
        spec = dataclasses.replace(spec, deadline=started + spec.timeout)
    return spec


def create_study(spec: StudySpec) -> tuple[optuna.Study, BudgetPlan]:
    """Create (or check and resume) a study with its MLflow parent run; no trial runs."""
    from tunelab.search.study.prepare import prepare
    from tunelab.search.study.run import attach_parent_run, open_study
    from tunelab.search.study.workers import plan_workers

    library_logs(spec.verbose)
    prepared = prepare(spec)
    workers = plan_workers(spec, prepared.device, prepared.data)
    study, plan = open_study(prepared, workers=workers.workers, threads=workers.threads)
    attach_parent_run(prepared, study)  # before workers start, so they all share it
    return study, plan


def run_spec(
    spec: StudySpec,
    worker_index: int = 0,
    joining: bool = False,
    report: bool = True,
    out: Print = print,
) -> optuna.Study:
    """Run a study to its target, or for its time budget; prints its summary with `out` when
    `report`. Returns the study. Raises SpecError (bad input, nothing written), WorkersFailed,
    WorkerGaveUp, KeyboardInterrupt (Ctrl-C, SIGTERM)."""
    from tunelab.search.scheduler.scheduler import count_finished
    from tunelab.search.study.prepare import prepare
    from tunelab.search.study.progress import StudyProgress, preparing
    from tunelab.search.study.run import attach_parent_run, open_study, run_study
    from tunelab.search.study.workers import WorkerPlan, launch_workers, plan_workers

    library_logs(spec.verbose)  # the progress display or --quiet lines replace theirs
    # the seconds before the first trial (imports, data, checks, a time budget's timing) are
    # said on a terminal, not left blank
    with preparing(f"loading {spec.dataset} and checking the task", not report) as step:
        prepared = prepare(spec)
        machine = plan_workers(spec, prepared.device, prepared.data)
        if joining:  # a joining worker is one process, whatever the machine
            machine = WorkerPlan(1, spec.threads)
        step("opening the study" + ("; timing the default configuration" if spec.timeout else ""))
        study, plan = open_study(prepared, workers=machine.workers, threads=machine.threads)
    # --quiet replaces the display by plain lines; it drops none of the information
    say(f"{prepared.data.summary()}", not report)
    say(f"trial budget: {plan.budget.describe()}; {machine.describe(prepared.device)}", not report)
    metric = prepared.task.metric
    if machine.workers > 1:
        attach_parent_run(prepared, study)  # one parent run before the workers start
        if spec.storage.startswith("sqlite"):
            say(
                "note: several workers share SQLite through file locks; use PostgreSQL "
                "for shared or multi-machine work"
            )
        code = launch_workers(spec, machine, study, plan.budget)
        print_summary(spec, study, metric, out)
        if code:
            raise WorkersFailed(code)
        return study
    if spec.quiet and not report:  # a worker of `run --workers`: its command reports
        outcome = run_study(prepared, worker_index=worker_index, threads=machine.threads)
    else:
        display = StudyProgress(
            spec.name,
            spec.trial_target,
            count_finished(study),
            plan.budget,
            prepared.task.direction,
            deadline=spec.deadline,
            plain=spec.quiet,
        )
        with display:
            outcome = run_study(
                prepared, worker_index=worker_index, progress=display, threads=machine.threads
            )
    if report:
        print_summary(spec, outcome.study, metric, out)
    return outcome.study


def print_summary(spec: StudySpec, study: optuna.Study, metric: str, out: Print = print) -> None:
    """The study's counts and why configurations did not complete, its best trial against
    the default, and how to see the results; the same as the study's note in
    optuna-dashboard. A diverged search (`SearchSummary.diverged`) says so in one line."""
    from tunelab.search.adapters.tracking import StudyTracker, is_server
    from tunelab.search.scheduler.scheduler import count_finished
    from tunelab.search.study.budget import recorded_budget
    from tunelab.search.study.pareto import front_lines
    from tunelab.search.study.queries import best_trial_info
    from tunelab.search.study.summary import SearchSummary, position

    tracker = StudyTracker.for_spec(spec)
    summary = SearchSummary.of(study)
    unit, _ = recorded_budget(study)
    target = spec.trial_target
    if target is not None:
        out(f"study '{study.study_name}': {count_finished(study)}/{target} finished trials")
    out(f"study '{study.study_name}': {summary.counts()}")
    for line in summary.reason_lines():
        out(f"  {line}")
    try:
        info = best_trial_info(study)
    except SpecError:
        out(summary.diverged_line() if summary.diverged else "no complete trial yet")
        return
    out(
        f"best trial {info['trial']}: {info['metric']} = {info['value']:.6g} "
        f"(best weights at {position(info['best_step'], unit)}, "
        f"MLflow run {info['mlflow_run_id']})"
    )
    if info["mlflow_run_id"]:
        out(f"  {tracker.run_url(info['mlflow_run_id'])}")
    for line in front_lines(info):
        out(line)
    against = summary.against_default(metric, unit)
    if against:
        out(f"  {against}")
    _note_for_dashboard(study, summary, metric)
    for name, value in info["params"].items():
        out(f"  {name} = {value}")
    me = sys.argv[0] if Path(sys.argv[0]).name == "tunelab" else "tunelab"
    storage, tracking = shown_url(spec.storage), shown_url(spec.tracking_uri)
    out("see the results:")
    if is_server(tracking):
        out(f"  MLflow UI: {tracker.experiment_url()}")
    else:
        out(f"  {me} ui --tracking-uri {tracking}   # MLflow UI: {tracker.experiment_url()}")
    out(f"  {me} dashboard --storage {storage}   # optuna-dashboard, http://127.0.0.1:8080")
    out(f"  {me} trials {study.study_name} --storage {storage}   # every trial, and why")
    out(f"  {me} report {study.study_name} --storage {storage}   # HTML report")


def _note_for_dashboard(study: optuna.Study, summary, metric: str) -> None:
    """What the search found, and the importances that count pruned trials, as the study's
    note in optuna-dashboard."""
    import optuna_dashboard

    from tunelab.search.analysis.importance import dashboard_note, rung_importance
    from tunelab.search.study.budget import recorded_budget

    unit, _ = recorded_budget(study)
    rung, why_not = rung_importance(study)
    lines = [summary.counts(), *summary.reason_lines()]
    against = summary.against_default(metric, unit)
    if against:
        lines.append(against)
    optuna_dashboard.save_note(study, dashboard_note(lines, rung, why_not, unit))
