"""Parameter importance that sees pruned trials, and the study note optuna-dashboard shows.

Optuna's importance evaluators use complete trials only; in a pruned search those are a few
of many. Every trial that reached a rung reported its value there, so the importance of each
parameter for the value at a rung can use every trial that got that far, pruned ones
included. `rung_importance` picks the deepest rung that enough trials reached: it answers
"which parameters decide how well a configuration does after N training images", a question a
pruned search answers with far more trials than "which decide the final value".
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from tunelab.search.study.summary import counted

MIN_TRIALS_AT_RUNG = 10
"""Trials that must have reached a rung before importances are computed there."""
FANOVA_SEED = 0
"""Seed of fANOVA's random forest, so a report is reproducible."""


@dataclass(frozen=True)
class RungImportance:
    """Importances of the parameters for the value at one rung."""

    step: int
    """The rung's step (in the study's unit)."""
    trials: int
    """Trials that reached it, pruned ones included."""
    pruned: int
    """How many of them were pruned later (or there)."""
    importances: dict[str, float]
    """Parameter -> importance (fANOVA), most important first."""

    def label(self, unit: str) -> str:
        at = f"{self.step:,} training images" if unit == "images" else f"epoch {self.step}"
        return f"fANOVA at {at} ({counted(self.trials, 'trial')}, {self.pruned} pruned)"


def rung_importance(
    study: optuna.Study, min_trials: int = MIN_TRIALS_AT_RUNG
) -> tuple[RungImportance | None, str]:
    """Importances at the deepest rung `min_trials` trials reached, or None and why not."""
    trials = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and t.intermediate_values
    ]
    reached = Counter(step for t in trials for step in t.intermediate_values)
    deep_enough = [step for step, count in reached.items() if count >= min_trials]
    if not deep_enough:
        return None, (
            f"Importance at a rung needs {min_trials} trials that reached it; the most any rung "
            f"has is {max(reached.values(), default=0)}."
        )
    step = max(deep_enough)
    there = [t for t in trials if step in t.intermediate_values]
    proxy = optuna.create_study(direction=study.direction)
    proxy.add_trials(
        optuna.trial.create_trial(
            state=TrialState.COMPLETE,
            value=t.intermediate_values[step],
            params=t.params,
            distributions=t.distributions,
        )
        for t in there
    )
    try:
        importances = optuna.importance.get_param_importances(
            proxy, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=FANOVA_SEED)
        )
    except (ValueError, RuntimeError) as exc:  # e.g. no parameter common to these trials
        return None, f"Importance at step {step}: {exc}"
    pruned = sum(t.state == TrialState.PRUNED for t in there)
    return RungImportance(step, len(there), pruned, dict(importances)), ""


def dashboard_note(
    summary_lines: list[str], rung: RungImportance | None, why_not: str, unit: str
) -> str:
    """The study's note for optuna-dashboard (markdown): what the search found, and the
    importances that count pruned trials, which the dashboard's own plot leaves out."""
    lines = ["## tunelab", "", *(f"- {line}" for line in summary_lines), ""]
    if rung is None:
        lines.append(f"_{why_not}_")
    else:
        lines += [
            f"### Importance at the deepest rung: {rung.label(unit)}",
            "",
            "The dashboard's importance plot uses complete trials only; this one uses every "
            "trial that reached the rung.",
            "",
            "| parameter | importance |",
            "| --- | --- |",
            *(f"| {name} | {value:.3f} |" for name, value in rung.importances.items()),
        ]
    return "\n".join(lines) + "\n"
