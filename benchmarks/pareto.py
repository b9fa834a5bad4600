"""Multi-objective search with and without pruning: the same time budget, side by side.

Both runs are the real `tunelab run cnn --dataset mnist5k --objectives val_accuracy,params
--timeout T` (`--dataset` chooses another data set: digits for a smoke run) in a fresh folder
(SQLite, MLflow, checkpoints, `--workers auto` unless `--workers` / `--threads`), one after
the other, the same seed; one prunes with tunelab's Pareto successive halving (`--pruner
auto`), the other trains every trial to its end (`--pruner none`). Read back through Optuna,
each prints: trials, how many were pruned, the epochs trained against a search without
pruning, the front's size (its trials, and its distinct points: two trials of one architecture
at the same accuracy are one point), the span of its parameter counts, and its hypervolume.

Hypervolume: in (val_accuracy, log10 params), against the reference point
val_accuracy = 0.90, params = 1,000,000 (10**6): the area a front dominates inside
[0.90, 1] x [.., 6]. Points outside count for nothing. The last line is the pruned search's
hypervolume over the unpruned one's.

Goals (issue 11): the pruned search's front has >= 5 points spanning >= 10x in parameters,
its hypervolume is >= 95% of the unpruned search's, and >= 40% of its trials are pruned.
Run it on a quiet machine (it takes 2 x SECONDS plus start-up):

    .venv/bin/python benchmarks/pareto.py [--seconds 300] [--seed 0] [--keep DIR]
        [--dataset mnist5k] [--workers N] [--threads N]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState

from tunelab.objectives import keys
from tunelab.search.analysis.report import pruning_summary
from tunelab.search.study.budget import recorded_budget
from tunelab.search.study.pareto import front, hypervolume

TUNELAB = Path(sys.executable).with_name("tunelab")
REFERENCE = (0.90, 6.0)
"""Hypervolume reference point: (val_accuracy, log10 params)."""
STUDY = "pareto"


@dataclass(frozen=True)
class Outcome:
    """What one search found."""

    pruner: str
    trials: int
    pruned: int
    """Pruned by the pruner (not counting trials ended for a constraint)."""
    saved: float
    """Fraction of a no-pruning, no-early-stopping budget the trials did not train."""
    front: list[tuple[int, float, float]]
    """(trial, val_accuracy, params) of each point of the front."""
    seconds: float

    @property
    def points(self) -> int:
        """Distinct points of the front: trials with the same objective values (e.g. one
        architecture at the same accuracy) are one point."""
        return len({(a, p) for _, a, p in self.front})

    @property
    def span(self) -> float:
        params = [p for _, _, p in self.front]
        return max(params) / min(params) if params else 0.0

    @property
    def hypervolume(self) -> float:
        points = [(a, math.log10(p)) for _, a, p in self.front]
        return hypervolume(points, REFERENCE, ("maximize", "minimize"))

    def line(self) -> str:
        return (
            f"{self.pruner:>5}: {self.trials} trials, {self.pruned} pruned "
            f"({self.pruned / max(1, self.trials):.0%}), {self.saved:.0%} of the full budget "
            f"saved; front {len(self.front)} trials, {self.points} distinct points, spanning "
            f"{self.span:.1f}x in params, "
            f"hypervolume {self.hypervolume:.4f} ({self.seconds:.0f} s)"
        )


def run(
    pruner: str,
    seconds: float,
    seed: int,
    workdir: Path,
    dataset: str = "mnist5k",
    machine: tuple[str, ...] = (),
) -> Outcome:
    """One search; `machine`: its `--workers` / `--threads` flags (none: tunelab's own)."""
    storage = f"sqlite:///{workdir / 'studies.db'}"
    args = [
        str(TUNELAB),
        "run",
        "cnn",
        *("--dataset", dataset, "--study-name", STUDY, "--seed", str(seed)),
        *("--objectives", "val_accuracy,params", "--pruner", pruner),
        *("--timeout", str(seconds), *machine, "--storage", storage, "--quiet"),
        *("--tracking-uri", f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}"),
    ]
    started = time.time()
    subprocess.run(args, cwd=workdir, check=True, stdout=subprocess.DEVNULL)
    elapsed = time.time() - started
    study = optuna.load_study(study_name=STUDY, storage=storage)
    trials = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    pruned = [
        t for t in trials if t.state == TrialState.PRUNED and not t.user_attrs.get(keys.INFEASIBLE)
    ]
    unit, max_step = recorded_budget(study)
    saved = pruning_summary(study, unit, max_step).saved_fraction
    points = [(t.number, t.values[0], t.values[1]) for t in front(study)]
    return Outcome(pruner, len(trials), len(pruned), saved, points, elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300, help="time budget of each search")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset", default="mnist5k", help="data set of both searches")
    parser.add_argument("--workers", help="tunelab's --workers [auto]")
    parser.add_argument("--threads", help="tunelab's --threads [auto]")
    parser.add_argument(
        "--keep", type=Path, help="keep each search's folder (studies, MLflow) under this one"
    )
    args = parser.parse_args()
    machine = tuple(
        part
        for flag in ("workers", "threads")
        if getattr(args, flag)
        for part in (f"--{flag}", getattr(args, flag))
    )
    outcomes = []
    for pruner in ("auto", "none"):
        with tempfile.TemporaryDirectory(prefix=f"tunelab-pareto-{pruner}-") as tmp:
            workdir = Path(tmp) if args.keep is None else args.keep / pruner
            workdir.mkdir(parents=True, exist_ok=True)
            outcome = run(pruner, args.seconds, args.seed, workdir, args.dataset, machine)
            outcomes.append(outcome)
            print(outcome.line(), flush=True)
    pruned, full = outcomes
    for outcome in outcomes:
        points = ", ".join(f"{a:.4f}@{p:,.0f}" for _, a, p in outcome.front)
        print(f"{outcome.pruner:>5} front (val_accuracy@params): {points}")
    print(
        f"reference point: val_accuracy {REFERENCE[0]}, params 10**{REFERENCE[1]:g}; "
        f"goals: >= 5 points (pruned: {pruned.points}), >= 10x span ({pruned.span:.1f}x), "
        f">= 40% pruned ({pruned.pruned / max(1, pruned.trials):.0%})"
    )
    ratio = pruned.hypervolume / full.hypervolume if full.hypervolume else float("nan")
    print(f"hypervolume pruned / unpruned: {ratio:.3f} (goal >= 0.95)")


if __name__ == "__main__":
    main()
