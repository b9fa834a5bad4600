"""`tunelab report`: one self-contained HTML report of a study, also logged to MLflow.

The report opens with a text summary (best value and parameters, and a "widen it" warning for
every numeric parameter whose best value sits at the edge of its range), then the figures:
optimization history, parameter importances (Optuna's default evaluator beside fANOVA),
parallel coordinates, slices, intermediate values coloured by trial state, the timeline, a
summary of what pruning and early stopping saved, and a table of every trial with why it
ended.

Plotly.js is inlined once, in report.html, so that the one file opens offline and in MLflow's
artifact view (which shows an HTML artifact from a blob URL, where a script file beside it
cannot be found). Each figure is also written as plotly JSON under `figures/`
(`plotly.io.read_json`), not as an HTML page of its own: each such page needed plotly.js too,
a second 4.8 MB copy.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.distributions import FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from tunelab.objectives import keys
from tunelab.search.adapters.tracking import open_tracking
from tunelab.search.analysis.importance import MIN_TRIALS_AT_RUNG, rung_importance
from tunelab.search.scheduler import lineage
from tunelab.search.spec import SpecError, stored_values
from tunelab.search.study.budget import recorded_budget
from tunelab.search.study.pareto import (
    best_primary,
    directions,
    feasible,
    front_rows,
    is_multi,
    log_front,
    objective_names,
    primary_value,
    rung_curve,
)
from tunelab.search.study.queries import (
    duration_text,
    lineage_text,
    load_study,
    reached_text,
    stored_spec,
    trial_rows,
)
from tunelab.search.study.summary import (
    BY_THE_PRUNER,
    SearchSummary,
    counted,
    ending_reason,
    position,
)

REPORT_ARTIFACT_DIR = "report"
"""Folder of the report in the parent run's artifacts."""
STATE_COLOURS = {
    TrialState.COMPLETE: "#2ca02c",
    TrialState.PRUNED: "#ff7f0e",
    TrialState.FAIL: "#d62728",
    TrialState.RUNNING: "#7f7f7f",
    TrialState.WAITING: "#bcbd22",
}
FIGURE_TITLES = {
    "history": "Optimization history",
    "importances": "Hyperparameter importances",
    "parallel": "Parallel coordinates",
    "slice": "Slice plot",
    "intermediate": "Intermediate values",
    "timeline": "Timeline",
}
"""Title of each figure (followed by ": <study>" in the report), in report order."""
MULTI_OBJECTIVE_TITLES = {"pareto": "Pareto front"}
"""Titles of the figures only a multi-objective study's report has (first in it)."""
DEFAULT_EVALUATOR_LABEL = "PED-ANOVA (Optuna's default), complete trials"
COMPLETE_FANOVA_LABEL = "fANOVA, complete trials"


@dataclass(frozen=True)
class ReportConfig:
    """How the report judges a study."""

    edge_fraction: float = 0.05
    """A best value within this fraction of its range (log range for log parameters) of
    either end is flagged as sitting at the edge."""
    min_trials_for_importance: int = 4
    """Complete trials needed before importances on complete trials are computed."""
    min_trials_at_rung: int = MIN_TRIALS_AT_RUNG
    """Trials that must reach a rung before importances at that rung are computed."""
    fanova_seed: int = 0
    """Seed of the fANOVA random forest, so a report is reproducible."""


@dataclass(frozen=True)
class EdgeWarning:
    """A tuned numeric parameter whose best value sits at one end of its range."""

    name: str
    """Parameter name."""
    value: float
    """The best trial's value."""
    low: float
    """Lower end of the searched range."""
    high: float
    """Upper end of the searched range."""
    log: bool
    """Whether the range was searched on a log scale."""
    side: str
    """"lower" or "upper"."""

    @property
    def at_floor(self) -> bool:
        """At a lower bound of 0 on a linear scale: the setting is off (no dropout, no
        smoothing, no flips); there is nothing below it to widen into."""
        return self.side == "lower" and self.low == 0 and not self.log

    def message(self) -> str:
        scale = ", log scale" if self.log else ""
        where = f"[{self.low:.4g}, {self.high:.4g}{scale}]"
        if self.at_floor:
            return f"{self.name} = {self.value:.4g} sits at the floor of its range {where}: off"
        bound = "lower 'low'" if self.side == "lower" else "raise 'high'"
        return (
            f"{self.name} = {self.value:.4g} sits at the {self.side} edge of its range "
            f"{where}: widen it ({bound}) and search again"
        )


@dataclass(frozen=True)
class PruningSummary:
    """What the study trained, against the same configurations trained in full.

    Counted per configuration (a trial with its retries and continuations): a continuation
    adds only what it trained after the step it took up, and a configuration's full budget
    counts once. Only pruning (pausing included) and early stopping save anything: the
    budget a configuration did not train because it diverged, failed or broke a constraint
    is no saving, and is counted apart.
    """

    trials: int
    """Configurations counted (those that ended)."""
    max_step: int
    """A full trial, in the study's unit."""
    steps_run: int
    """What the configurations actually trained, in the study's unit."""
    unit: str = "epochs"
    """The study's unit of steps: images or epochs."""
    by_state: dict[str, tuple[int, int]] = field(default_factory=dict)
    """How configurations ended (complete, pruned, stopped, ...) -> (configurations, steps)."""
    early_stopped: int = 0
    """Complete configurations that early stopping ended before the budget."""
    saved_by_pruning: int = 0
    """Steps pruned and paused configurations did not train."""
    saved_by_early_stopping: int = 0
    """Steps early-stopped configurations did not train."""
    not_trained: int = 0
    """Steps configurations that stopped for their own reasons (diverged, failed,
    infeasible, interrupted) or at the time budget's end did not train: no saving."""
    unknown: int = 0
    """Configurations that ended before their first report: how far they trained is not
    recorded, counted as 0."""

    @property
    def budget(self) -> int:
        """What a no-pruning, no-early-stopping search of the same configurations would
        train."""
        return self.trials * self.max_step

    @property
    def saved(self) -> int:
        return self.saved_by_pruning + self.saved_by_early_stopping

    @property
    def saved_fraction(self) -> float:
        return self.saved / self.budget if self.budget else 0.0


@dataclass(frozen=True)
class Section:
    """One part of the report: a figure, or a note saying why there is none."""

    key: str
    """Short name (also the figure's file name)."""
    title: str
    """Heading of the section."""
    figure: object | None = None
    """A plotly figure."""
    note: str | None = None
    """Text shown instead of (or under) the figure."""


@dataclass(frozen=True)
class ReportFiles:
    """What `write_report` wrote."""

    html: Path
    """The self-contained report."""
    figures: tuple[Path, ...]
    """One plotly JSON file per figure."""
    edge_warnings: tuple[EdgeWarning, ...]
    """The edge-of-range warnings of the summary."""


# -- analysis --------------------------------------------------------------------------------


def edge_warnings(trial: FrozenTrial, fraction: float = 0.05) -> list[EdgeWarning]:
    """Numeric parameters of `trial` within `fraction` of either end of their range."""
    warnings = []
    for name, dist in trial.distributions.items():
        if not isinstance(dist, (FloatDistribution, IntDistribution)) or dist.low >= dist.high:
            continue  # categorical or fixed: there is no range to widen
        value = trial.params[name]
        if dist.log:
            position = (math.log(value) - math.log(dist.low)) / (
                math.log(dist.high) - math.log(dist.low)
            )
        else:
            position = (value - dist.low) / (dist.high - dist.low)
        side = "lower" if position <= fraction else "upper" if position >= 1 - fraction else None
        if side:
            warnings.append(EdgeWarning(name, value, dist.low, dist.high, dist.log, side))
    return warnings


def steps_of(trial: FrozenTrial) -> int | None:
    """How far a trial trained: recorded by the loop when complete, else its last report
    (None: it reported nothing)."""
    recorded = keys.trial_attr(trial, keys.STEPS_RUN)
    if recorded is not None:
        return int(recorded)
    rungs = trial.user_attrs.get(keys.RUNG_SCORES, {})  # a multi-objective trial's rungs
    return max([*trial.intermediate_values, *map(int, rungs)], default=None)


def _ending(last: FrozenTrial) -> str:
    """How a configuration ended, by its last trial, for what its unused budget means."""
    if last.state == TrialState.COMPLETE:
        stopped = last.user_attrs.get(keys.STOPPED_AT_DEADLINE)
        return "ended by the time budget" if stopped else "complete"
    if lineage.is_paused(last):
        return "paused"
    if ending_reason(last) == BY_THE_PRUNER:
        return "pruned"
    return "stopped on its own"  # diverged, out of memory, infeasible, failed, interrupted


def pruning_summary(study: optuna.Study, unit: str, max_step: int | None) -> PruningSummary:
    """What the study's ended configurations trained vs. `max_step` (a full trial) each."""
    chains = lineage.chains(study.get_trials(deepcopy=False))
    ended = {
        root: chain
        for root, chain in chains.items()
        if max(chain, key=lambda t: t.number).state
        in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    }
    reached = {t.number: steps_of(t) for chain in ended.values() for t in chain}
    if max_step is None:  # not a tunelab study: the longest trial is the best guess
        max_step = max((r for r in reached.values() if r is not None), default=0)
    by_state: dict[str, tuple[int, int]] = {}
    totals = {"pruning": 0, "early": 0, "not_trained": 0, "unknown": 0, "early_n": 0}
    steps_run = 0
    for chain in ended.values():
        last = max(chain, key=lambda t: t.number)
        # each trial trained from the step it took up (0, or its source's checkpoint)
        trained = sum(
            max(0, (reached[t.number] or 0) - lineage.resumed_at(t))
            for t in chain
            if t.state != TrialState.WAITING
        )
        end = reached[last.number]
        left = max(0, max_step - (end or 0))
        ending = _ending(last)
        if end is None and last.state != TrialState.COMPLETE:
            totals["unknown"] += 1
        if ending in ("pruned", "paused"):
            totals["pruning"] += left
        elif ending == "complete":
            totals["early"] += left
            totals["early_n"] += left > 0
        else:
            totals["not_trained"] += left
        count, total = by_state.get(ending, (0, 0))
        by_state[ending] = (count + 1, total + trained)
        steps_run += trained
    return PruningSummary(
        trials=len(ended),
        max_step=max_step,
        steps_run=steps_run,
        unit=unit,
        by_state=by_state,
        early_stopped=totals["early_n"],
        saved_by_pruning=totals["pruning"],
        saved_by_early_stopping=totals["early"],
        not_trained=totals["not_trained"],
        unknown=totals["unknown"],
    )


def param_importances(
    study: optuna.Study, config: ReportConfig, unit: str = "epochs"
) -> tuple[dict[str, dict[str, float]], str | None]:
    """Importances by evaluator label: Optuna's on the complete trials, and fANOVA at the
    deepest rung enough trials reached (pruned ones included); notes where one is missing."""
    results, notes = _complete_importances(study, config)
    rung, why_not = rung_importance(study, config.min_trials_at_rung)
    if rung is not None:
        results[rung.label(unit)] = rung.importances
    elif why_not:
        notes.append(why_not)
    return results, " ".join(notes) or None


def _complete_importances(
    study: optuna.Study, config: ReportConfig
) -> tuple[dict[str, dict[str, float]], list[str]]:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < config.min_trials_for_importance:
        return {}, [
            f"Importances on complete trials need at least {config.min_trials_for_importance}; "
            f"this study has {len(complete)}."
        ]
    varied = {
        n
        for n in {p for t in complete for p in t.params}
        if len({repr(t.params.get(n)) for t in complete}) > 1
    }
    if not varied:
        return {}, ["No parameter varies across the complete trials: nothing to attribute."]
    # Named explicitly: PED-ANOVA is the default from Optuna 5 on (fANOVA before).
    evaluators: dict[str, Callable[[], optuna.importance.BaseImportanceEvaluator]] = {
        DEFAULT_EVALUATOR_LABEL: optuna.importance.PedAnovaImportanceEvaluator,
        COMPLETE_FANOVA_LABEL: lambda: optuna.importance.FanovaImportanceEvaluator(
            seed=config.fanova_seed
        ),
    }
    results, failures = {}, []
    for label, make in evaluators.items():
        try:
            results[label] = optuna.importance.get_param_importances(
                study,
                evaluator=make(),
                target=(lambda t: t.values[0]) if is_multi(study) else None,  # the primary
            )
        except (ValueError, RuntimeError) as exc:  # e.g. no parameter common to all trials
            failures.append(f"{label}: {exc}")
    return results, failures


# -- figures ---------------------------------------------------------------------------------


def _titled(figure, key: str, study_name: str):
    title = FIGURE_TITLES.get(key) or MULTI_OBJECTIVE_TITLES[key]
    figure.update_layout(title={"text": f"{title}: {study_name}"})
    return figure


def importance_figure(importances: dict[str, dict[str, float]], study_name: str):
    """Horizontal bars per evaluator, side by side, most important parameter on top."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    labels = list(importances)
    figure = make_subplots(rows=1, cols=len(labels), subplot_titles=labels, horizontal_spacing=0.2)
    for column, label in enumerate(labels, start=1):
        values = importances[label]
        names = list(values)[::-1]  # plotly draws bars bottom-up
        figure.add_trace(
            go.Bar(
                x=[values[n] for n in names],
                y=names,
                orientation="h",
                name=label,
                text=[f"{values[n]:.2f}" for n in names],
                textposition="auto",
                showlegend=False,
            ),
            row=1,
            col=column,
        )
        figure.update_xaxes(title_text="importance", row=1, col=column)
    figure.update_layout(height=max(350, 40 * max(len(v) for v in importances.values())))
    return _titled(figure, "importances", study_name)


def intermediate_values_figure(study: optuna.Study, metric: str, unit: str = "epochs"):
    """One line per trial through its reported values, coloured by the trial's state."""
    import plotly.graph_objects as go

    figure = go.Figure()
    shown: set[TrialState] = set()
    for trial in study.get_trials(deepcopy=False):
        curve = rung_curve(trial, metric)  # a multi-objective study's: its primary objective
        if not curve:
            continue
        steps = sorted(curve)
        figure.add_trace(
            go.Scatter(
                x=steps,
                y=[curve[s] for s in steps],
                mode="lines+markers",
                name=trial.state.name,
                legendgroup=trial.state.name,
                showlegend=trial.state not in shown,  # one legend entry per state
                line={"color": STATE_COLOURS.get(trial.state, "#000000")},
                hovertemplate=f"trial {trial.number} ({trial.state.name})<br>"
                f"{_axis(unit)} %{{x}}<br>%{{y:.5g}}<extra></extra>",
            )
        )
        shown.add(trial.state)
    figure.update_layout(
        xaxis_title=_axis(unit), yaxis_title=f"{metric} at each rung", legend_title_text="state"
    )
    return _titled(figure, "intermediate", study.study_name)


def budget_text(unit: str, max_step: int | None) -> str:
    """A full trial, in words."""
    if max_step is None:
        return "unknown"
    if unit == "images":
        return f"{max_step:,} training images per trial; steps count training images"
    return f"{max_step} epochs per trial; steps count epochs"


def _axis(unit: str) -> str:
    return "training images" if unit == "images" else "epoch"


def build_sections(
    study: optuna.Study, metric: str, config: ReportConfig, unit: str = "epochs"
) -> list[Section]:
    """Every figure of the report, or a note where the study cannot support one yet."""
    from optuna import visualization as vis

    name = study.study_name
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    no_complete = "No complete trial yet."
    sections = []

    def add(key: str, make: Callable[[], object], needs_complete: bool = True) -> None:
        title = FIGURE_TITLES.get(key) or MULTI_OBJECTIVE_TITLES[key]
        if needs_complete and not complete:
            sections.append(Section(key, title, note=no_complete))
            return
        try:
            sections.append(Section(key, title, figure=_titled(make(), key, name)))
        except (ValueError, RuntimeError) as exc:  # a plot Optuna cannot draw for this study
            sections.append(Section(key, title, note=f"Not available: {exc}"))

    # several objectives: the figures of one objective show the primary, and the front comes
    target = (lambda t: t.values[0]) if is_multi(study) else None
    if is_multi(study):
        names = objective_names(study)
        if len(names) <= 3:
            add("pareto", lambda: vis.plot_pareto_front(study, target_names=names))
        else:
            sections.append(
                Section("pareto", MULTI_OBJECTIVE_TITLES["pareto"], note="More than 3 objectives.")
            )
    add(
        "history",
        lambda: vis.plot_optimization_history(study, target=target, target_name=metric),
    )
    importances, note = param_importances(study, config, unit)
    figure = importance_figure(importances, name) if importances else None
    sections.append(Section("importances", FIGURE_TITLES["importances"], figure, note))
    add(
        "parallel",
        lambda: vis.plot_parallel_coordinate(study, target=target, target_name=metric),
    )
    add("slice", lambda: vis.plot_slice(study, target=target, target_name=metric))
    if any(rung_curve(t, metric) for t in study.get_trials(deepcopy=False)):
        sections.append(
            Section(
                "intermediate",
                FIGURE_TITLES["intermediate"],
                intermediate_values_figure(study, metric, unit),
            )
        )
    else:
        sections.append(
            Section(
                "intermediate",
                FIGURE_TITLES["intermediate"],
                note="No trial reported intermediate values.",
            )
        )
    add("timeline", lambda: vis.plot_timeline(study), needs_complete=False)
    return sections


# -- rendering -------------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; }
.warning { background: #fff4d6; border-left: 4px solid #e0a800; padding: 0.5em 1em; }
.note { color: #555; font-style: italic; }
section { margin: 2em 0; overflow-x: auto; }
table.trials td { font-size: 0.9em; vertical-align: top; }
tr.state-failed td, tr.state-interrupted td { background: #fdecea; }
tr.state-pruned td, tr.state-paused td { background: #fff8ec; }
"""


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _format(value: object) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def summary_html(
    study: optuna.Study,
    metric: str,
    spec: dict,
    warnings: Sequence[EdgeWarning],
    budget_text: str = "unknown",
    unit: str = "epochs",
) -> str:
    """The report's opening: counts and why configurations did not complete, best value and
    parameters, edge-of-range warnings; a diverged search says so first."""
    trials = study.get_trials(deepcopy=False)
    counts = {s.name: sum(t.state == s for t in trials) for s in TrialState}
    direction = "/".join(directions(study))
    found = SearchSummary.of(study)
    lines = [
        f"<p>Task <b>{html.escape(str(spec.get('task', '?')))}</b> on "
        f"<b>{html.escape(str(spec.get('dataset', '?')))}</b>; {direction} "
        f"<b>{html.escape(', '.join(objective_names(study)))}</b>; "
        f"sampler {html.escape(str(spec.get('sampler', '?')))}, "
        f"pruner {html.escape(str(spec.get('pruner', '?')))}.</p>",
        f"<p>Trial budget: {html.escape(budget_text)}.</p>",
        "<p>Trials: " + ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n) + ".</p>",
        f"<p>{html.escape(found.counts())}.</p>",
    ]
    reasons = found.reason_lines()
    if reasons:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in reasons)
        lines.append(f"<p>Why configurations did not complete:</p><ul>{items}</ul>")
    best = best_primary(study)
    if best is None:
        if found.diverged:
            lines.insert(
                0, f"<div class='warning'><b>{html.escape(found.diverged_line())}.</b></div>"
            )
        lines.append("<p class='note'>No complete trial yet: no best value.</p>")
        return "\n".join(lines)
    lines += front_html(study, spec)
    lines.append(
        f"<p>Best {html.escape(metric)} = <b>{primary_value(best):.6g}</b> (trial {best.number}, "
        f"best weights at {position(keys.trial_attr(best, keys.BEST_STEP), unit)}, MLflow run "
        f"{html.escape(str(keys.trial_attr(best, keys.MLFLOW_RUN_ID, '-')))}).</p>"
    )
    against = found.against_default(metric, unit)
    if against:
        lines.append(f"<p>The best against the default: {html.escape(against)}.</p>")
    lines.append(
        _table(["parameter", "best value"], [(k, _format(v)) for k, v in best.params.items()])
    )
    widen = [w for w in warnings if not w.at_floor]
    floor = [w for w in warnings if w.at_floor]
    if widen:
        items = "".join(f"<li>{html.escape(w.message())}</li>" for w in widen)
        lines.append(
            f"<div class='warning'><b>Best value at the edge of its range: widen it.</b>"
            f"<ul>{items}</ul></div>"
        )
    else:
        lines.append("<p>No tuned numeric parameter sits at an edge it could be widened past.</p>")
    if floor:
        items = "".join(f"<li>{html.escape(w.message())}</li>" for w in floor)
        lines.append(
            f"<p>Best with the setting off (at 0, the floor of its range):</p><ul>{items}</ul>"
        )
    return "\n".join(lines)


def front_html(study: optuna.Study, spec: dict) -> list[str]:
    """A multi-objective study's front as a table, with its constraints' feasibility."""
    if not is_multi(study):
        return []
    names = objective_names(study)
    rows = front_rows(study)
    lines = [
        f"<p>Pareto front: <b>{len(rows)}</b> non-dominated "
        f"{'trial' if len(rows) == 1 else 'trials'} of "
        f"{', '.join(html.escape(n) for n in names)}; the best primary objective "
        f"({html.escape(names[0])}) comes first and is the study's best trial.</p>",
        _table(
            ["trial", *names, "best step"],
            [(r["trial"], *(_format(r["values"][n]) for n in names), r["best_step"]) for r in rows],
        ),
    ]
    constraints = spec.get("constraints") or []
    if constraints:
        ended = [t for t in study.get_trials(deepcopy=False) if t.constraints]
        infeasible = [t for t in ended if not feasible(t)]
        untrained = [t for t in infeasible if t.user_attrs.get(keys.INFEASIBLE)]
        lines.append(
            f"<p>Constraints {html.escape(', '.join(constraints))}: "
            f"{counted(len(ended) - len(infeasible), 'feasible trial')}, {len(infeasible)} "
            f"infeasible ({len(untrained)} ended before "
            "training); the front figure greys the infeasible ones.</p>"
        )
    return lines


def pruning_html(summary: PruningSummary) -> str:
    unit = "training images" if summary.unit == "images" else "epochs"
    rows = [(state, n, f"{steps:,}") for state, (n, steps) in summary.by_state.items()]
    rows.append(("all", summary.trials, f"{summary.steps_run:,}"))

    def share(n: int) -> str:
        return f"{n / summary.budget:.0%}" if summary.budget else "0%"

    text = (
        f"<p>Without pruning or early stopping these {counted(summary.trials, 'configuration')} "
        f"would have trained {summary.trials} &times; {summary.max_step:,} = "
        f"<b>{summary.budget:,}</b> {unit}; they trained <b>{summary.steps_run:,}</b>. "
        f"Pruning saved <b>{summary.saved_by_pruning:,}</b> ({share(summary.saved_by_pruning)})"
        f", early stopping <b>{summary.saved_by_early_stopping:,}</b> "
        f"({share(summary.saved_by_early_stopping)}; "
        f"{counted(summary.early_stopped, 'complete configuration')} stopped early).</p>"
    )
    if summary.not_trained:
        text += (
            f"<p>{summary.not_trained:,} {unit} ({share(summary.not_trained)}) were not trained "
            "because configurations stopped on their own (diverged, failed, out of memory, "
            "infeasible, interrupted) or at the end of the time budget: that is no saving.</p>"
        )
    if summary.unknown:
        text += (
            f"<p class='note'>{counted(summary.unknown, 'configuration')} ended before "
            "their first rung: how far they trained is not recorded (counted as 0).</p>"
        )
    return _table(["configurations", "count", f"{unit} trained"], rows) + text


def trials_html(study: optuna.Study) -> str:
    """Every trial: state, value, why it ended, duration, how far it trained, its lineage
    and its parameters (the table `tunelab trials` prints)."""
    rows = trial_rows(study)
    if not rows:
        return "<p class='note'>No trial yet.</p>"
    multi = is_multi(study)
    header = ["trial", "state", "values" if multi else "value", "reached", "duration"]
    header += ["why it ended", "lineage", "parameters"]
    body = []
    for r in rows:
        if multi and r["values"]:
            value = ", ".join(f"{k} {_format(v)}" for k, v in r["values"].items())
        else:
            value = "-" if r["value"] is None else _format(r["value"])
        cells = [
            r["trial"],
            r["state"],
            value,
            reached_text(r),
            duration_text(r["duration_s"]),
            r["reason"] or "",
            lineage_text(r),
            ", ".join(f"{k}={_format(v)}" for k, v in r["params"].items()),
        ]
        body.append(
            f"<tr class='state-{html.escape(r['state'])}'>"
            + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
            + "</tr>"
        )
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    return f"<table class='trials'><tr>{head}</tr>{''.join(body)}</table>"


def render_html(
    study_name: str, summary: str, sections: Sequence[Section], pruning: str, trials: str = ""
) -> str:
    """The whole report as one HTML page with plotly.js inlined once."""
    from plotly.offline import get_plotlyjs

    parts = []
    for section in sections:
        body = ""
        if section.figure is not None:
            body = section.figure.to_html(
                full_html=False, include_plotlyjs=False, div_id=f"figure-{section.key}"
            )
        if section.note:
            body += f"<p class='note'>{html.escape(section.note)}</p>"
        parts.append(
            f"<section id='{section.key}'><h2>{html.escape(section.title)}</h2>{body}</section>"
        )
    title = html.escape(f"tunelab report: {study_name}")
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{title}</title><style>{_STYLE}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        f"<h1>{title}</h1><section id='summary'><h2>Summary</h2>{summary}</section>"
        + "".join(parts)
        + f"<section id='pruning'><h2>Pruning</h2>{pruning}</section>"
        + (f"<section id='trials'><h2>Trials</h2>{trials}</section>" if trials else "")
        + "</body></html>\n"
    )


def write_report(
    study: optuna.Study, out_dir: str | Path, config: ReportConfig | None = None
) -> ReportFiles:
    """Write report.html and figures/*.json for a study into `out_dir`."""
    config = config or ReportConfig()
    if not study.get_trials(deepcopy=False):
        raise SpecError(f"study '{study.study_name}' has no trials yet")
    spec = stored_values(study.user_attrs.get(keys.SPEC))
    metric = study.user_attrs.get(keys.METRIC, "value")
    best = best_primary(study)  # several objectives: the front's best primary
    warnings = [] if best is None else edge_warnings(best, config.edge_fraction)
    unit, max_step = recorded_budget(study)
    sections = build_sections(study, metric, config, unit)
    pruning = pruning_summary(study, unit, max_step)
    out = Path(out_dir)
    figures_dir = out / "figures"
    figures_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("plotly.min.js", *(f"{s.key}.html" for s in sections)):
        (figures_dir / stale).unlink(missing_ok=True)  # an older report's copies
    figures = []
    for section in sections:
        if section.figure is not None:
            path = figures_dir / f"{section.key}.json"
            section.figure.write_json(path)  # the figure's data: plotly.js lives in the report
            figures.append(path)
    page = render_html(
        study.study_name,
        summary_html(study, metric, spec, warnings, budget_text(unit, max_step), unit),
        sections,
        pruning_html(pruning),
        trials_html(study),
    )
    report = out / "report.html"
    report.write_text(page, encoding="utf-8")
    return ReportFiles(html=report, figures=tuple(figures), edge_warnings=tuple(warnings))


# -- MLflow ----------------------------------------------------------------------------------


def log_report(study: optuna.Study, files: ReportFiles, tracking_uri: str) -> str:
    """Log the report folder as artifacts of the study's MLflow parent run; returns its id."""
    from mlflow.exceptions import MlflowException

    run_id = study.user_attrs.get(keys.PARENT_RUN_ID)
    if not run_id:
        raise SpecError(f"study '{study.study_name}' has no MLflow parent run: use --no-mlflow")
    client = open_tracking(tracking_uri)
    try:
        client.get_run(run_id)
    except MlflowException:
        raise SpecError(
            f"MLflow run {run_id} of study '{study.study_name}' is not in {tracking_uri}: "
            "pass --tracking-uri"
        ) from None
    client.log_artifacts(run_id, str(files.html.parent), artifact_path=REPORT_ARTIFACT_DIR)
    if is_multi(study):  # the front as a table too, as it stands now
        log_front(study, client, run_id)
    return run_id


def default_out_dir(study_name: str) -> Path:
    return Path("reports") / re.sub(r"[^A-Za-z0-9._-]+", "_", study_name)


def make_report(
    study_name: str,
    storage: str,
    out_dir: str | None = None,
    tracking_uri: str | None = None,
    log_to_mlflow: bool = True,
    config: ReportConfig | None = None,
) -> tuple[ReportFiles, str | None]:
    """The `tunelab report` command: write the report and log it to the parent run."""
    study = load_study(study_name, storage)
    uri = None
    if log_to_mlflow:
        spec = stored_values(study.user_attrs.get(keys.SPEC))
        if not (tracking_uri or spec.get("tracking_uri")):
            raise SpecError(f"study '{study_name}' records no tracking URI: pass --tracking-uri")
        uri = stored_spec(study, storage=storage, tracking_uri=tracking_uri).tracking_uri
        open_tracking(uri)  # a missing store is one line before any file is written
    files = write_report(study, out_dir or default_out_dir(study_name), config)
    run_id = None if uri is None else log_report(study, files, uri)
    return files, run_id
