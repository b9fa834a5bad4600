"""What a search finds per unit of compute: tunelab against a plain-Optuna loop, same budget.

For each scenario, side by side on this machine, one after the other:

- tunelab: the real `tunelab run cnn ... --timeout T` in a fresh folder (SQLite, MLflow,
  checkpoints, workers and threads chosen by `--workers auto` unless `--workers`,
  `--threads`), read back through Optuna;
- baseline: optuna-examples' `pytorch/pytorch_simple.py` loop as a user would copy it (an MLP,
  `DataLoader`s, 30 batches of 128 training images and 10 of validation per epoch, 10 epochs,
  one report per epoch, Optuna's default sampler and median pruner), on the same data splits,
  for the same wall-clock budget;
- default (`limit` only): the default configuration alone, `tunelab run cnn --n-trials 1`,
  trained for tunelab's default epoch budget: what a user gets without the search.

Scenarios: `mnist` (full MNIST, 300 s), `demo` (mnist5k, 150 s, as `make demo`), `limit`
(MNIST with --limit-train 1000, 300 s, seeds 0-2). Each prints one line per run; the last
lines give the ratios. The full MNIST needs ../shared/data (or TUNELAB_SHARED_DATA).

    .venv/bin/python benchmarks/budget.py [--scenarios mnist demo limit] [--seeds 0 1 2]
        [--no-baseline] [--device cuda] [--seconds S] [--dataset NAME]
        [--workers N] [--threads N]

`--device cuda` runs both sides on the GPU (tunelab keeps its data there; the baseline moves
each batch, as pytorch_simple does); `--seconds` gives every scenario that budget instead of
its own (for a short, lent GPU); `--dataset` gives every scenario that data set instead of its
own, and `--workers` / `--threads` are every `tunelab run`'s (`--dataset digits --workers 1
--threads 1` and a few seconds: a smoke run of the whole path, without ../shared/data).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import optuna
import torch
import torch.nn.functional as F
from optuna.trial import TrialState
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tunelab.objectives.data import DataSpec, load_data
from tunelab.search.study.summary import SearchSummary

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TUNELAB_SHARED_DATA", ROOT.parent / "shared" / "data"))
TUNELAB = Path(sys.executable).with_name("tunelab")


@dataclass(frozen=True)
class Scenario:
    """One search, run by both sides."""

    name: str
    dataset: str
    timeout: float
    seed: int = 0
    limit_train: int | None = None
    device: str = "cpu"
    default_run: bool = False
    """Also run the default configuration alone at tunelab's default epoch budget (what a user
    gets without a search: `tunelab run --n-trials 1`); only where that is cheap."""

    @property
    def label(self) -> str:
        on = "" if self.device == "cpu" else f"-{self.device}"
        return f"{self.name}-{self.timeout:g}s{on}"


@dataclass(frozen=True)
class Outcome:
    """What one side's search found."""

    side: str
    wall_s: float
    configurations: int
    past_first_rung: int
    complete: int
    best: float | None
    default: float | None = None
    """tunelab: the default configuration's value in the same study."""
    scored_on: int = 0
    """Validation images the best value was scored on."""

    def line(self, scenario: Scenario) -> str:
        best = "-" if self.best is None else f"{self.best:.4f}"
        default = "" if self.default is None else f" (default configuration {self.default:.4f})"
        return (
            f"{scenario.label:<14} {self.side:<8} wall {self.wall_s:6.1f} s  "
            f"{self.configurations:4d} configurations, {self.past_first_rung:4d} past their first "
            f"rung, {self.complete:3d} complete; best val accuracy {best} on {self.scored_on:,} "
            f"images{default}"
        )


def run_tunelab(
    scenario: Scenario, folder: Path, search: bool = True, machine: tuple[str, ...] = ()
) -> Outcome:
    """The search of `scenario` (search=False: the default configuration alone, trained for
    tunelab's default epoch budget); `machine`: `--workers` / `--threads` flags."""
    storage = f"sqlite:///{folder / 'studies.db'}"
    budget = ("--timeout", str(scenario.timeout)) if search else ("--n-trials", "1")
    command = [
        str(TUNELAB),
        *("run", "cnn", "--dataset", scenario.dataset, "--data-dir", str(SHARED)),
        *budget,
        *("--seed", str(scenario.seed), "--quiet", "--device", scenario.device),
        *machine,
        *("--storage", storage, "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}"),
    ]
    if scenario.limit_train:
        command += ["--limit-train", str(scenario.limit_train)]
    start = time.perf_counter()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    done = subprocess.run(
        command, cwd=folder, env=env, capture_output=True, text=True, timeout=3600
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{scenario.label}: tunelab exited {done.returncode}:\n{done.stderr[-3000:]}")
    study = optuna.load_study(study_name=f"cnn-{scenario.dataset}", storage=storage)
    summary = SearchSummary.of(study)
    default = summary.default if search else None  # the default alone: its best is its own
    data = load_data(_spec(scenario))
    return Outcome(
        side="tunelab" if search else "default",
        wall_s=wall,
        configurations=summary.configurations,
        past_first_rung=summary.past_first_rung,
        complete=summary.complete,
        best=None if summary.best is None else summary.best.value,
        default=None if default is None or default.state != TrialState.COMPLETE else default.value,
        scored_on=len(data.val),
    )


def _spec(scenario: Scenario) -> DataSpec:
    return DataSpec(scenario.dataset, data_dir=str(SHARED), limit_train=scenario.limit_train)


# -- the baseline: optuna-examples pytorch/pytorch_simple.py, on our splits --------------------

BATCHSIZE = 128
CLASSES = 10
EPOCHS = 10
N_TRAIN_EXAMPLES = BATCHSIZE * 30
N_VALID_EXAMPLES = BATCHSIZE * 10


def define_model(trial: optuna.Trial, in_features: int) -> nn.Sequential:
    n_layers = trial.suggest_int("n_layers", 1, 3)
    layers: list[nn.Module] = []
    for i in range(n_layers):
        out_features = trial.suggest_int(f"n_units_l{i}", 4, 128)
        layers += [nn.Linear(in_features, out_features), nn.ReLU()]
        layers.append(nn.Dropout(trial.suggest_float(f"dropout_l{i}", 0.2, 0.5)))
        in_features = out_features
    layers += [nn.Linear(in_features, CLASSES), nn.LogSoftmax(dim=1)]
    return nn.Sequential(*layers)


def baseline_objective(train: TensorDataset, valid: TensorDataset, device: torch.device):
    in_features = train.tensors[0][0].numel()

    def objective(trial: optuna.Trial) -> float:
        model = define_model(trial, in_features).to(device)
        optimizer_name = trial.suggest_categorical("optimizer", ["Adam", "RMSprop", "SGD"])
        lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
        optimizer = getattr(torch.optim, optimizer_name)(model.parameters(), lr=lr)
        train_loader = DataLoader(train, batch_size=BATCHSIZE, shuffle=True)
        valid_loader = DataLoader(valid, batch_size=BATCHSIZE, shuffle=True)
        accuracy = 0.0
        for epoch in range(EPOCHS):
            model.train()
            for batch_idx, (data, target) in enumerate(train_loader):
                if batch_idx * BATCHSIZE >= N_TRAIN_EXAMPLES:
                    break
                data, target = data.to(device), target.to(device)
                optimizer.zero_grad()
                loss = F.nll_loss(model(data.view(data.size(0), -1)), target)
                loss.backward()
                optimizer.step()
            model.eval()
            correct = 0
            with torch.no_grad():
                for batch_idx, (data, target) in enumerate(valid_loader):
                    if batch_idx * BATCHSIZE >= N_VALID_EXAMPLES:
                        break
                    data, target = data.to(device), target.to(device)
                    pred = model(data.view(data.size(0), -1)).argmax(dim=1, keepdim=True)
                    correct += pred.eq(target.view_as(pred)).sum().item()
            accuracy = correct / min(len(valid_loader.dataset), N_VALID_EXAMPLES)
            trial.report(accuracy, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return accuracy

    return objective


def run_baseline(scenario: Scenario) -> Outcome:
    start = time.perf_counter()
    data = load_data(_spec(scenario))
    train = TensorDataset(data.train.x, data.train.y)
    valid = TensorDataset(data.val.x, data.val.y)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=scenario.seed)
    )
    remaining = scenario.timeout - (time.perf_counter() - start)
    objective = baseline_objective(train, valid, torch.device(scenario.device))
    study.optimize(objective, timeout=max(1.0, remaining))
    trials = study.get_trials(deepcopy=False)
    try:
        best = study.best_value
    except ValueError:
        best = None
    return Outcome(
        side="optuna",
        wall_s=time.perf_counter() - start,
        configurations=len(trials),
        past_first_rung=sum(bool(t.intermediate_values) for t in trials),
        complete=sum(t.state == TrialState.COMPLETE for t in trials),
        best=best,
        scored_on=min(len(valid), N_VALID_EXAMPLES),
    )


SCENARIOS = {
    "mnist": [Scenario("mnist", "mnist", 300)],
    "demo": [Scenario("demo", "mnist5k", 150)],
    "limit": [
        Scenario(f"limit1k-s{s}", "mnist", 300, seed=s, limit_train=1000, default_run=True)
        for s in range(3)
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--no-baseline", action="store_true", help="tunelab only")
    parser.add_argument(
        "--seeds", nargs="+", type=int, help="only these seeds of the limit scenario"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda, for both sides")
    parser.add_argument("--seconds", type=float, help="every scenario's budget, instead of its own")
    parser.add_argument("--dataset", help="every scenario's data set, instead of its own")
    parser.add_argument("--workers", help="tunelab's --workers [auto]")
    parser.add_argument("--threads", help="tunelab's --threads [auto]")
    args = parser.parse_args()
    machine = tuple(
        part
        for flag in ("workers", "threads")
        if getattr(args, flag)
        for part in (f"--{flag}", getattr(args, flag))
    )
    chosen = []
    for name in args.scenarios:
        for scenario in SCENARIOS[name]:
            scenario = replace(scenario, device=args.device)
            if args.seconds:
                scenario = replace(scenario, timeout=args.seconds)
            if args.dataset:
                scenario = replace(scenario, dataset=args.dataset)
            if args.seeds is None or name != "limit" or scenario.seed in args.seeds:
                chosen.append((name, scenario))
    if any(s.dataset == "mnist" for _, s in chosen) and not (SHARED / "MNIST" / "raw").is_dir():
        sys.exit(f"full MNIST not found under {SHARED}: set TUNELAB_SHARED_DATA")
    results: dict[str, list[tuple[Scenario, Outcome]]] = {}
    for name, scenario in chosen:
        with tempfile.TemporaryDirectory(prefix="tunelab-budget-") as folder:
            outcome = run_tunelab(scenario, Path(folder), machine=machine)
        print(outcome.line(scenario), flush=True)
        results.setdefault(name, []).append((scenario, outcome))
        if scenario.default_run:
            with tempfile.TemporaryDirectory(prefix="tunelab-budget-") as folder:
                outcome = run_tunelab(scenario, Path(folder), False, machine)
            print(outcome.line(scenario), flush=True)
            results[name].append((scenario, outcome))
        if not args.no_baseline:
            outcome = run_baseline(scenario)
            print(outcome.line(scenario), flush=True)
            results[name].append((scenario, outcome))
    print()
    for name, rows in results.items():
        ours = [o for _, o in rows if o.side == "tunelab"]
        theirs = [o for _, o in rows if o.side == "optuna"]
        alone = [o for _, o in rows if o.side == "default"]
        gains = [o.best - o.default for o in ours if o.best is not None and o.default]
        line = f"{name}: tunelab mean best {statistics.fmean(o.best or 0 for o in ours):.4f}"
        if gains:
            line += (
                f", {100 * statistics.fmean(gains):+.2f} pp over its default configuration "
                "(same study, same trial budget)"
            )
        if alone and len(alone) == len(ours):
            pairs = zip(ours, alone, strict=True)
            gain = statistics.fmean((o.best or 0) - (a.best or 0) for o, a in pairs)
            line += (
                f", {100 * gain:+.2f} pp over the default configuration alone at the default "
                "epoch budget"
            )
        if theirs:
            ratio = statistics.fmean(o.past_first_rung for o in ours) / max(
                1, statistics.fmean(o.past_first_rung for o in theirs)
            )
            line += (
                f"; optuna mean best {statistics.fmean(o.best or 0 for o in theirs):.4f}; "
                f"configurations past their first rung, tunelab / optuna: {ratio:.2f}"
            )
        print(line)


if __name__ == "__main__":
    main()
