"""Reading a study with one objective or several: its objectives, its Pareto front, its best
point on the primary objective, the front as a table (for `tunelab best`, the report and
MLflow) and its hypervolume.

A single-objective study reads exactly as before: its front is its best trial. In a
multi-objective study the front is Optuna's `best_trials` (feasible trials only, when the
study has constraints), and "the best" of a command that needs one trial (`evaluate`, the
summary) is the front's point with the best primary (first) objective.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from tunelab.objectives import keys

FRONT_ARTIFACT = "pareto_front"
"""Name of the front's table in the parent run's artifacts (.json table and .csv)."""


def is_multi(study: optuna.Study) -> bool:
    return len(study.directions) > 1


def objective_names(study: optuna.Study) -> list[str]:
    """The study's objective names, the primary first."""
    names = study.metric_names
    if names and all(names):
        return list(names)
    metric = study.user_attrs.get(keys.METRIC, "value")
    return [metric] if not is_multi(study) else [f"value{i}" for i in range(len(study.directions))]


def directions(study: optuna.Study) -> list[str]:
    return [d.name.lower() for d in study.directions]


def primary_direction(study: optuna.Study) -> str:
    return study.directions[0].name.lower()


def primary_value(trial: FrozenTrial) -> float | None:
    """A trial's primary objective (its value in a single-objective study)."""
    return trial.values[0] if trial.values else None


def front(study: optuna.Study) -> list[FrozenTrial]:
    """The Pareto front (feasible trials only), the best primary first."""
    if not is_multi(study):
        best = best_primary(study)
        return [] if best is None else [best]
    sign = -1 if study.directions[0] == StudyDirection.MAXIMIZE else 1
    trials = [t for t in study.best_trials if t.values is not None]
    return sorted(trials, key=lambda t: (sign * t.values[0], t.values[1:], t.number))


def best_primary(study: optuna.Study) -> FrozenTrial | None:
    """The best trial on the primary objective (a point of the front), or None."""
    if not is_multi(study):
        try:
            return study.best_trial
        except ValueError:
            return None
    trials = front(study)
    return trials[0] if trials else None


def feasible(trial: FrozenTrial) -> bool:
    return all(v <= 0 for v in trial.constraints.values())


def front_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per point of the front: trial, objectives, parameters, MLflow run."""
    names = objective_names(study)
    rows = []
    for t in front(study):
        rows.append(
            {
                "trial": t.number,
                "values": dict(zip(names, t.values, strict=True)),
                "best_step": keys.trial_attr(t, keys.BEST_STEP),
                "mlflow_run_id": keys.trial_attr(t, keys.MLFLOW_RUN_ID),
                "params": dict(t.params),
            }
        )
    return rows


def front_csv(rows: Sequence[dict[str, Any]]) -> str:
    """The front as CSV: trial, objectives, best step, MLflow run, then each parameter as
    `param.NAME` (an objective may be called `params`)."""
    if not rows:
        return ""
    names = list(rows[0]["values"])
    params = sorted({p for r in rows for p in r["params"]})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["trial", *names, "best_step", "mlflow_run_id", *(f"param.{p}" for p in params)]
    )
    for r in rows:
        writer.writerow(
            [
                r["trial"],
                *(r["values"][n] for n in names),
                r["best_step"],
                r["mlflow_run_id"],
                *(r["params"].get(p, "") for p in params),
            ]
        )
    return out.getvalue()


def hypervolume(
    points: Sequence[Sequence[float]], reference: Sequence[float], dirs: Sequence[str]
) -> float:
    """The volume dominated by `points` and bounded by `reference` (points beyond it count
    for nothing), each objective turned to minimisation first."""
    signs = [-1.0 if d == "maximize" else 1.0 for d in dirs]
    ref = [s * r for s, r in zip(signs, reference, strict=True)]
    kept = [
        [s * v for s, v in zip(signs, p, strict=True)]
        for p in points
        if all(s * v < r for s, v, r in zip(signs, p, ref, strict=True))
    ]
    if not kept:
        return 0.0
    if len(ref) == 2:  # sweep: sort by the first objective, add each point's new slab
        volume, best_second = 0.0, ref[1]
        for x, y in sorted(kept):
            if y < best_second:
                volume += (ref[0] - x) * (best_second - y)
                best_second = y
        return volume
    import numpy as np
    from optuna._hypervolume import compute_hypervolume

    return float(compute_hypervolume(np.array(kept), np.array(ref)))


def log_front(study: optuna.Study, client, run_id: str) -> int:
    """The front as a table on the study's parent run (`pareto_front.json`, which MLflow's
    UI shows as a table, and `pareto_front.csv`), and its size as the metric `front_size`.
    Returns the size."""
    import tempfile
    from pathlib import Path

    rows = front_rows(study)
    names = objective_names(study)
    table = {
        "trial": [r["trial"] for r in rows],
        **{n: [r["values"][n] for r in rows] for n in names},
        "mlflow_run_id": [r["mlflow_run_id"] for r in rows],
        "hyperparameters": [json.dumps(r["params"], sort_keys=True) for r in rows],
    }
    client.log_table(run_id, data=table, artifact_file=f"{FRONT_ARTIFACT}.json")
    with tempfile.TemporaryDirectory(prefix="tunelab-front-") as tmp:
        path = Path(tmp, f"{FRONT_ARTIFACT}.csv")
        path.write_text(front_csv(rows))
        client.log_artifact(run_id, str(path))
    client.log_metric(run_id, "front_size", len(rows))
    return len(rows)


def front_lines(info: dict[str, Any]) -> list[str]:
    """The front of `best_trial_info` as aligned text lines (none for a single objective)."""
    if "front" not in info:
        return []
    names = info["objectives"]
    arrows = {"maximize": "max", "minimize": "min"}
    heading = ", ".join(f"{n} {arrows[d]}" for n, d in zip(names, info["directions"], strict=True))
    rows = [["trial", *names]] + [
        [str(r["trial"]), *(f"{r['values'][n]:.6g}" for n in names)] for r in info["front"]
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    size = len(info["front"])
    lines = [f"Pareto front: {size} trial{'' if size == 1 else 's'} ({heading})"]
    for row in rows:
        lines.append(
            "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        )
    return lines


def rung_curve(trial: FrozenTrial, metric: str) -> dict[int, float]:
    """A trial's primary objective at each rung: Optuna's intermediate values, or in a
    multi-objective study (where Optuna keeps none) the rung scores tunelab records."""
    if trial.intermediate_values:
        return dict(trial.intermediate_values)
    scores = trial.user_attrs.get(keys.RUNG_SCORES, {})
    return {int(step): v[metric] for step, v in scores.items() if metric in v}
