"""What the search finds on data the defaults were not made for, against its peers on the
same objective, same budget.

The family: data sets built from MNIST on disk (../shared/data, or TUNELAB_SHARED_DATA; the
embedded mnist5k with `--base mnist5k`), each 12,000 training and 1,500 validation images,
written once as `file:PATH.npz` under `--cache-dir`:

- noise: every pixel at least uniform noise of up to 0.9 (MNIST's "back-rand");
- clutter: the digit at a random place of a 40x40 canvas among six 8x8 fragments of others;
- inverted: half the images inverted, each image's contrast drawn in [0.3, 1];
- occluded: a random 10-14 px square of random grey over each digit;
- elastic: elastic distortion (alpha 36, sigma 4), stronger than the digits' own variation;
- few: 600 training images (60 a class), the 1,500 validation images as the others.

The sides, one after the other, each for the same wall-clock budget (`--seconds`), the same
workers (`--workers` processes of one torch thread) and the same trial budget (the rungs
tunelab's own study planned for that budget, read back from it), on one objective: tunelab's
CNN task and search space, trained by tunelab's one trial loop (`Objective`), judged on the
same validation split. Every side evaluates the default configuration first, as a user of
each would (Optuna's `enqueue_trial`, Ray's `points_to_evaluate`), so the comparison is of
what the search adds to it:

- tunelab: the real `tunelab run cnn --dataset file:X --timeout T` (its default search:
  TPE, budget-planned successive halving that pauses and continues trials; SQLite, MLflow);
- default: trial 0 of that study, the default configuration as the study trains it;
- optuna: Optuna's TPE sampler and Hyperband pruner, `study.optimize` in each worker process
  on one journal-file storage, the loop's deadline as tunelab's (the last trials end at the
  budget with their best weights, which favours this side over a plain `optimize(timeout=T)`);
- random: Optuna's random sampler, no pruning (plain random search), same rules;
- ray: Ray Tune (ASHA + OptunaSearch, the same space define-by-run) in an environment of its
  own that the benchmark makes (`--ray-env`, installed with pip once: Ray is no dependency of
  tunelab); the trainable runs the same loop and reports every rung to ASHA.

Each side's best is its best complete trial (the value of its best weights on all 1,500
validation images) finished within the budget. Per data set it prints, for each side: the best
(mean over seeds), the gain over the default in percentage points with a 95% t interval over
the seeds, configurations tried, and "in trials": the share of the workers' wall-clock time
spent inside trials (training, rung scoring, checkpoints), not in starting, sampling or
storage. `--plot DIR` writes one PNG per data set of the best so far against time.

    .venv/bin/python benchmarks/search.py [--datasets noise clutter ...] [--seeds 0 1 2]
        [--seconds 600] [--sides tunelab optuna random ray] [--workers 2] [--plot DIR]

The full run (6 data sets x 3 seeds x 4 searches x 600 s) takes about 12 hours on two cores.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TUNELAB_SHARED_DATA", ROOT.parent / "shared" / "data"))
TUNELAB = Path(sys.executable).with_name("tunelab")
METRIC = "val_accuracy"
TRAIN_IMAGES, VAL_IMAGES, FEW_IMAGES = 12_000, 1_500, 600
FINISH_S = 5.0
"""Peers' trials stop this much before the budget's end (tunelab reserves its own measured
finishing time): their last trials are scored and stored within the budget."""
RAY_VERSION = "ray[tune]>=2.40,<3"


# -- the family of data sets ---------------------------------------------------------------

Arrays = tuple[np.ndarray, np.ndarray]
"""Images (N, 1, H, W) in [0, 1] and integer labels."""


def _noise(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.maximum(x, rng.uniform(0.0, 0.9, x.shape).astype(np.float32))


def _clutter(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n, size, canvas = len(x), x.shape[-1], 40
    out = np.zeros((n, 1, canvas, canvas), np.float32)
    for i in range(n):
        for _ in range(6):  # fragments of other digits first, the digit over them
            other = x[rng.integers(n), 0]
            r, c = rng.integers(0, size - 8, 2)
            pr, pc = rng.integers(0, canvas - 8, 2)
            patch = out[i, 0, pr : pr + 8, pc : pc + 8]
            np.maximum(patch, other[r : r + 8, c : c + 8], out=patch)
        r, c = rng.integers(0, canvas - size + 1, 2)
        spot = out[i, 0, r : r + size, c : c + size]
        np.maximum(spot, x[i, 0], out=spot)
    return out


def _inverted(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    contrast = rng.uniform(0.3, 1.0, (len(x), 1, 1, 1)).astype(np.float32)
    flip = rng.random((len(x), 1, 1, 1)) < 0.5
    low = rng.uniform(0.0, 1.0 - contrast)
    return np.where(flip, 1.0 - x, x) * contrast + low.astype(np.float32)


def _occluded(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = x.copy()
    size = x.shape[-1]
    for i in range(len(x)):
        side = int(rng.integers(10, 15))
        r, c = rng.integers(4, size - side - 3, 2)
        out[i, 0, r : r + side, c : c + side] = rng.uniform(0.0, 1.0)
    return out


def _elastic(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from scipy.ndimage import gaussian_filter, map_coordinates

    size = x.shape[-1]
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    out = np.empty_like(x)
    for i in range(len(x)):
        dr, dc = (gaussian_filter(rng.uniform(-1, 1, (size, size)), 4) * 36 for _ in range(2))
        out[i, 0] = map_coordinates(x[i, 0], [rows + dr, cols + dc], order=1, mode="constant")
    return out


@dataclass(frozen=True)
class Member:
    """One data set of the family."""

    name: str
    change: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None
    """What it does to every image (train and validation alike); None: nothing."""
    train_images: int = TRAIN_IMAGES


FAMILY = {
    m.name: m
    for m in (
        Member("noise", _noise),
        Member("clutter", _clutter),
        Member("inverted", _inverted),
        Member("occluded", _occluded),
        Member("elastic", _elastic),
        Member("few", None, FEW_IMAGES),
    )
}


def _stratified(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n indices, the classes in their proportions (the largest remainders rounded up)."""
    order = rng.permutation(len(y))
    classes, counts = np.unique(y, return_counts=True)
    share = n * counts / len(y)
    per = np.floor(share).astype(int)
    per[np.argsort(per - share)[: n - per.sum()]] += 1
    picked = [i for c, k in zip(classes, per, strict=True) for i in order[y[order] == c][:k]]
    return rng.permutation(np.array(picked))


def build_member(member: Member, base: str, folder: Path) -> Path:
    """The member's .npz file (made once: the same images for every side and seed)."""
    path = folder / f"{member.name}-{base}.npz"
    if path.exists():
        return path
    from tunelab.objectives.data import DataSpec, load_data

    data = load_data(DataSpec(name=base, data_dir=str(SHARED), download=False))
    rng = np.random.default_rng(20261204)
    x_train, y_train = data.train.x.numpy(), data.train.y.numpy()
    x_val, y_val = data.val.x.numpy(), data.val.y.numpy()
    if len(x_val) < VAL_IMAGES:  # a small base (mnist5k): validation taken from training
        move = _stratified(y_train, VAL_IMAGES - len(x_val), rng)
        x_val = np.concatenate([x_val, x_train[move]])
        y_val = np.concatenate([y_val, y_train[move]])
        keep = np.setdiff1d(np.arange(len(y_train)), move)
        x_train, y_train = x_train[keep], y_train[keep]
    train = _stratified(y_train, min(member.train_images, len(y_train)), rng)
    val = _stratified(y_val, min(VAL_IMAGES, len(y_val)), rng)
    arrays = {"train": (x_train[train], y_train[train]), "val": (x_val[val], y_val[val])}
    saved = {}
    for split, (x, y) in arrays.items():
        if member.change is not None:
            x = member.change(x, rng)
        saved[f"x_{split}"] = np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)
        saved[f"y_{split}"] = y.astype(np.int64)
    folder.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npz")
    np.savez_compressed(partial, **saved)
    partial.rename(path)
    return path


# -- what one side found ---------------------------------------------------------------------


@dataclass
class Found:
    """One side's search on one data set and seed."""

    side: str
    dataset: str
    seed: int
    finished: list[tuple[float, float]] = field(default_factory=list)
    """(seconds since the side started, value) of every complete trial within the budget."""
    tried: int = 0
    """Configurations that started training."""
    in_trials_s: float = 0.0
    """Worker seconds spent inside trials."""
    seconds: float = 0.0
    workers: int = 1

    @property
    def best(self) -> float | None:
        return max((v for _, v in self.finished), default=None)

    def best_by(self, t: float) -> float | None:
        return max((v for s, v in self.finished if s <= t), default=None)

    @property
    def in_trials(self) -> float:
        return self.in_trials_s / (self.seconds * self.workers) if self.seconds else 0.0

    def line(self, default: float | None) -> str:
        best = "-" if self.best is None else f"{self.best:.4f}"
        gain = (
            ""
            if self.best is None or default is None
            else f" ({100 * (self.best - default):+.2f} pp)"
        )
        return (
            f"{self.dataset:<9} seed {self.seed} {self.side:<8} best {METRIC} {best}{gain}  "
            f"{self.tried:4d} configurations, {len(self.finished):3d} complete, "
            f"in trials {100 * self.in_trials:3.0f}%"
        )


@dataclass(frozen=True)
class Plan:
    """What every side shares on one data set: tunelab's trial budget for the time budget."""

    dataset: str
    """The `--dataset` value (file:PATH.npz)."""
    budget: dict[str, Any]
    """tunelab's TrialBudget, as stored on its study."""
    seed: int
    seconds: float
    workers: int


def _trial_seconds(trials) -> float:
    return sum(
        (t.datetime_complete - t.datetime_start).total_seconds()
        for t in trials
        if t.datetime_start is not None and t.datetime_complete is not None
    )


def _complete_within(trials, start: float, seconds: float) -> list[tuple[float, float]]:
    from optuna.trial import TrialState

    done = []
    for t in trials:
        if t.state == TrialState.COMPLETE and t.datetime_complete is not None:
            at = t.datetime_complete.timestamp() - start
            if at <= seconds:
                done.append((at, float(t.value)))
    return sorted(done)


# -- tunelab ---------------------------------------------------------------------------------


def run_tunelab(dataset: str, name: str, seed: int, seconds: float, workers: int, folder: Path):
    """tunelab's search (a real `tunelab run`): what it found, its default and its plan."""
    import optuna

    from tunelab.objectives import keys
    from tunelab.search.scheduler import lineage
    from tunelab.search.study.summary import SearchSummary

    storage = f"sqlite:///{folder / 'studies.db'}"
    command = [
        str(TUNELAB),
        *("run", "cnn", "--dataset", dataset, "--timeout", str(seconds), "--seed", str(seed)),
        *("--workers", str(workers), "--threads", "1", "--quiet", "--study-name", "search"),
        *("--storage", storage, "--tracking-uri", f"sqlite:///{folder / 'mlflow.db'}"),
        *("--checkpoint-dir", str(folder / "checkpoints")),
    ]
    start = time.time()
    done = subprocess.run(
        command, cwd=folder, env=_env(), capture_output=True, text=True, timeout=seconds + 900
    )
    if done.returncode != 0:
        sys.exit(f"{name} seed {seed}: tunelab exited {done.returncode}:\n{done.stderr[-3000:]}")
    study = optuna.load_study(study_name="search", storage=storage)
    trials = study.get_trials(deepcopy=False)
    summary = SearchSummary.of(study)
    found = Found("tunelab", name, seed, seconds=seconds, workers=workers)
    found.finished = _complete_within(trials, start, seconds)
    found.tried = summary.configurations
    found.in_trials_s = _trial_seconds(trials)
    default = summary.default
    default_value = (
        float(default.value) if default is not None and default.value is not None else None
    )
    default_found = Found("default", name, seed, seconds=seconds, workers=1)
    if default is not None and lineage.is_default(default) and default_value is not None:
        ended = default.datetime_complete.timestamp() - start
        default_found.finished, default_found.tried = [(ended, default_value)], 1
        default_found.in_trials_s = _trial_seconds([default])
    budget = json.loads(study.user_attrs[keys.BUDGET])["budget"]
    return found, default_found, Plan(dataset, budget, seed, seconds, workers)


def _env() -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("TUNELAB_STORAGE", "MLFLOW_"))}
    return keep | {"OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}


# -- the same objective outside tunelab's scheduler -----------------------------------------


def objective_for(plan: Plan, deadline: float):
    """tunelab's CNN objective on the plan's data and trial budget, for a plain Optuna (or
    Ray) loop: `objective(trial)` trains the trial's configuration through tunelab's trial
    loop and returns its value (Optuna's pruner decides at every rung)."""
    import torch

    from tunelab.objectives.budget import TrialBudget
    from tunelab.objectives.data import DataSpec, load_data
    from tunelab.objectives.registry import get_task
    from tunelab.objectives.runner import Objective
    from tunelab.objectives.training import LoopConfig
    from tunelab.search.spec import StudySpec
    from tunelab.search.study.budget import resolve_precision

    torch.set_num_threads(1)
    task = get_task("cnn")
    budget = TrialBudget(**plan.budget)
    spec = StudySpec(task="cnn", dataset=plan.dataset, seed=plan.seed)
    loop = LoopConfig(
        budget=budget,
        patience=spec.patience_for(budget.epochs),
        seed=plan.seed,
        # the arithmetic tunelab's workers train in (bfloat16 autocast where the CPU has it)
        precision=resolve_precision(spec.precision, torch.device("cpu")),
        rung_val_images=spec.rung_val_images,
        deadline=deadline,
    )
    data = load_data(DataSpec(name=plan.dataset))
    return Objective(task, data, task.search_space(), loop)


def default_params() -> dict[str, Any]:
    from tunelab.objectives.registry import get_task

    return get_task("cnn").search_space().default_trial_params()


def _optuna_worker(plan: Plan, side: str, storage_path: str, worker: int, deadline: float):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objective = objective_for(plan, deadline - FINISH_S)
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(storage_path)
    )
    seed = plan.seed * 1000 + worker  # one stream per process, as Optuna's docs advise
    sampler = (
        optuna.samplers.TPESampler(seed=seed)
        if side == "optuna"
        else optuna.samplers.RandomSampler(seed=seed)
    )
    study = optuna.load_study(
        study_name="peer", storage=storage, sampler=sampler, pruner=_pruner(plan, side)
    )
    study.optimize(
        objective, timeout=max(0.0, deadline - FINISH_S - time.time()), catch=(Exception,)
    )


def _pruner(plan: Plan, side: str):
    import optuna

    if side == "random":
        return optuna.pruners.NopPruner()
    rung, rungs = plan.budget["rung"], plan.budget["max_rungs"]
    return optuna.pruners.HyperbandPruner(min_resource=rung, max_resource=rung * rungs)


def run_optuna(plan: Plan, side: str, name: str, folder: Path) -> Found:
    """A plain Optuna search (side 'optuna': TPE + Hyperband; 'random': random, unpruned) of
    the same objective in `plan.workers` processes on one journal file."""
    import optuna

    path = str(folder / f"{side}.journal")
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(path))
    study = optuna.create_study(study_name="peer", storage=storage, direction="maximize")
    study.enqueue_trial(default_params())
    start = time.time()
    deadline = start + plan.seconds
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_optuna_worker, args=(plan, side, path, i, deadline))
        for i in range(plan.workers)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join()
    trials = study.get_trials(deepcopy=False)
    found = Found(side, name, plan.seed, seconds=plan.seconds, workers=plan.workers)
    found.finished = _complete_within(trials, start, plan.seconds)
    found.tried = sum(t.datetime_start is not None for t in trials)
    found.in_trials_s = _trial_seconds(trials)
    return found


# -- Ray Tune, in an environment of its own ----------------------------------------------------


def ray_python(env_dir: Path) -> Path:
    """The Python of an environment with Ray Tune that also sees tunelab's (made once)."""
    python = env_dir / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", RAY_VERSION], check=True)
        purelib = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        import site

        ours = site.getsitepackages()[0]  # processed as a site dir: tunelab's editable hook too
        Path(purelib, "zz-tunelab.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    return python


def run_ray(plan: Plan, name: str, folder: Path, env_dir: Path) -> Found:
    """Ray Tune's ASHA + OptunaSearch on the same objective (`ray-side`, in Ray's environment)."""
    python = ray_python(env_dir)
    out = folder.resolve() / "ray.json"
    start = time.time()
    log = folder / "ray.log"  # Ray's own output: kept out of the figures
    with open(log, "w") as stream:
        done = subprocess.run(
            [str(python), __file__, "ray-side", json.dumps(plan.__dict__), str(out), str(start)],
            stdout=stream,
            stderr=subprocess.STDOUT,
            cwd=folder,
            env=_env() | {"RAY_DEDUP_LOGS": "0"},
            timeout=plan.seconds + 600,
        )
    if done.returncode != 0:
        sys.exit(
            f"{name} seed {plan.seed}: Ray's side exited {done.returncode}:\n"
            f"{log.read_text()[-3000:]}"
        )
    results = json.loads(out.read_text())
    found = Found("ray", name, plan.seed, seconds=plan.seconds, workers=plan.workers)
    found.finished = sorted(
        (r["done_at"] - start, r["value"])
        for r in results
        if r.get("value") is not None and r["done_at"] - start <= plan.seconds
    )
    found.tried = len(results)
    found.in_trials_s = sum(r.get("seconds", 0.0) for r in results)
    return found


class _RaySession:
    """The loop's session under Ray: every rung reported to ASHA (which stops the trainable)."""

    def __init__(self, trial, metric: str) -> None:
        from tunelab.objectives.recorders import NullRecorder

        self.trial, self.metric = trial, metric
        self.recorder, self.checkpoint = NullRecorder(), None
        self.last = {"rung_value": 0.0, "step": 0}
        """The last rung's report (the final one repeats it: Ray checks every report)."""

    def started(self, training) -> None:
        pass

    def resumed(self, step, scores) -> None:
        pass

    def rung(self, step: int, scores: Mapping[str, float]):
        from ray import tune

        from tunelab.objectives.session import CONTINUE

        self.last = {"rung_value": float(scores[self.metric]), "step": step}
        tune.report(self.last)
        return CONTINUE

    def result(self, value: float, scores) -> float:
        return value


def _ray_space(trial) -> None:
    """The CNN task's search space, define-by-run (module level: Ray pickles its searcher)."""
    from tunelab.objectives.registry import get_task

    task = get_task("cnn")
    task.suggest(trial, task.search_space())


def ray_side(plan_json: str, out: str, start: float) -> None:
    """Ray Tune's search (run in Ray's environment): one JSON record per trial to `out`."""
    import optuna
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    plan = Plan(**json.loads(plan_json))
    deadline = start + plan.seconds

    def trainable(config: dict[str, Any]) -> None:
        began = time.time()
        objective = objective_for(plan, deadline - FINISH_S)
        number = abs(hash(tune.get_context().get_trial_id())) % 10**6
        session = _RaySession(optuna.trial.FixedTrial(config, number=number), METRIC)
        value, why = None, "complete"
        try:
            value = objective.run(session).values
        except optuna.TrialPruned as stopped:  # diverged, or the budget ended before a rung
            why = str(stopped)
        ended = {"value": value, "why": why, "done_at": time.time(), "seconds": time.time() - began}
        tune.report(session.last | ended)

    rung, rungs = plan.budget["rung"], plan.budget["max_rungs"]
    ray.init(num_cpus=plan.workers, include_dashboard=False, log_to_driver=False)
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": 1}),
        tune_config=tune.TuneConfig(
            search_alg=OptunaSearch(
                space=_ray_space,
                metric="rung_value",
                mode="max",
                seed=plan.seed,
                points_to_evaluate=[default_params()],
            ),
            scheduler=ASHAScheduler(
                time_attr="step", max_t=rung * rungs, grace_period=rung, reduction_factor=3
            ),
            metric="rung_value",
            mode="max",
            num_samples=-1,
            time_budget_s=max(1.0, deadline - time.time()),
            max_concurrent_trials=plan.workers,
        ),
        run_config=tune.RunConfig(storage_path=str(Path(out).resolve().parent / "ray"), verbose=0),
    )
    grid = tuner.fit()
    records = []
    for result in grid:
        metrics = result.metrics or {}
        seconds = metrics.get("time_total_s", 0.0)
        records.append(
            {
                "value": metrics.get("value"),
                "why": metrics.get("why", "stopped (by ASHA or the budget)"),
                "done_at": metrics.get("done_at", math.inf),
                "seconds": seconds,
                "params": result.config or {},
            }
        )
    Path(out).write_text(json.dumps(records))
    ray.shutdown()


# -- the report --------------------------------------------------------------------------------


def interval(values: list[float]) -> str:
    """Mean and 95% t interval (mean alone for one value)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:+.2f} pp (1 seed)"
    from scipy import stats

    half = stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return f"{mean:+.2f} pp [{mean - half:+.2f}, {mean + half:+.2f}]"


def summary_lines(name: str, found: list[Found]) -> list[str]:
    defaults = {f.seed: f.best for f in found if f.side == "default"}
    lines = []
    for side in dict.fromkeys(f.side for f in found):
        runs = [f for f in found if f.side == side]
        gains = [
            100 * (f.best - defaults[f.seed])
            for f in runs
            if f.best is not None and defaults.get(f.seed) is not None
        ]
        bests = [f.best for f in runs if f.best is not None]
        best = f"{statistics.fmean(bests):.4f}" if bests else "-"
        gain = interval(gains) if gains and side != "default" else "-"
        tried = statistics.fmean(f.tried for f in runs)
        share = statistics.fmean(f.in_trials for f in runs)
        lines.append(
            f"{name:<9} {side:<8} best {best} over {len(runs)} seeds, gain over the default "
            f"{gain}, {tried:.0f} configurations, in trials {100 * share:.0f}%"
        )
    return lines


def plot(name: str, found: list[Found], folder: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for side in dict.fromkeys(f.side for f in found):
        runs = [f for f in found if f.side == side]
        grid = np.linspace(0, runs[0].seconds, 200)
        curves = [[f.best_by(t) for t in grid] for f in runs]
        mean = [
            statistics.fmean(c[i] for c in curves)
            if all(c[i] is not None for c in curves)
            else None
            for i in range(len(grid))
        ]
        points = [(t, m) for t, m in zip(grid, mean, strict=True) if m is not None]
        if points:
            axes.step(*zip(*points, strict=True), where="post", label=side)
    axes.set(xlabel="seconds", ylabel=f"best {METRIC} so far (mean over seeds)", title=name)
    axes.legend()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"search-{name}.png"
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    return path


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "ray-side":
        ray_side(sys.argv[2], sys.argv[3], float(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", choices=sorted(FAMILY), default=list(FAMILY))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument(
        "--sides",
        nargs="+",
        choices=("tunelab", "optuna", "random", "ray"),
        default=["tunelab", "optuna", "random", "ray"],
    )
    parser.add_argument("--workers", type=int, default=2, help="processes of one thread each")
    parser.add_argument("--base", default="mnist", help="mnist (../shared/data), mnist5k, digits")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "build" / "search-data")
    parser.add_argument("--ray-env", type=Path, default=ROOT / "build" / "ray-env")
    parser.add_argument("--plot", type=Path, help="folder for one PNG per data set")
    args = parser.parse_args()
    if "tunelab" not in args.sides:
        parser.error("--sides: tunelab is needed (it plans the trial budget every side shares)")
    sides = [s for s in ("optuna", "random", "ray") if s in args.sides]
    print(
        f"{args.seconds:g} s a search, {args.workers} workers of one thread, seeds "
        f"{' '.join(map(str, args.seeds))}, base {args.base}: {len(args.datasets)} data sets x "
        f"{len(args.seeds)} seeds x {1 + len(sides)} searches"
    )
    for name in args.datasets:
        path = build_member(FAMILY[name], args.base, args.cache_dir)
        found: list[Found] = []
        for seed in args.seeds:
            with tempfile.TemporaryDirectory(prefix=f"search-{name}-") as tmp:
                folder = Path(tmp)
                ours, default, plan = run_tunelab(
                    f"file:{path}", name, seed, args.seconds, args.workers, folder
                )
                found += [default, ours]
                print(default.line(None), flush=True)
                print(ours.line(default.best), flush=True)
                for side in sides:
                    peer = (
                        run_ray(plan, name, folder, args.ray_env)
                        if side == "ray"
                        else run_optuna(plan, side, name, folder)
                    )
                    found.append(peer)
                    print(peer.line(default.best), flush=True)
        for line in summary_lines(name, found):
            print(line, flush=True)
        if args.plot:
            print(f"{name:<9} plot {plot(name, found, args.plot)}", flush=True)


if __name__ == "__main__":
    main()
