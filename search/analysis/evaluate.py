"""`tunelab evaluate`: the best configuration retrained from scratch, scored once on the test split.

The test split is touched exactly once per seed. For each seed the best trial's configuration
is rebuilt and trained on train + validation for as many steps as the trial took to its best
weights, on the same learning-rate schedule and with no scoring while it trains (that would
peek); then the task's own `evaluate` and `finalize` score the test split, which the retraining
bundle carries as its validation split. Their val_* (and final_*) metrics become test_*
metrics. Everything goes into ONE MLflow run in the study's experiment, tagged
`tunelab.evaluation=true`, and the best seed's model is registered as `<study>-best`.

Registered modules: what each task's `serving_model` says: the classifier for `cnn`, the
generator for `gan`, and for `vae` the decoder (latent code -> mean image in [0, 1]).
"""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

import optuna
import torch

from tunelab.objectives import keys
from tunelab.objectives.base import Parts, ServingModel, StepContext, Task
from tunelab.objectives.data import DataBundle
from tunelab.objectives.training import Diverged, LoopConfig, retrain, trial_seed
from tunelab.search.spec import SpecError
from tunelab.search.study.summary import counted

EVAL_SEED_OFFSET = 1_000_000
"""Evaluation seed i is `trial_seed(spec seed, EVAL_SEED_OFFSET + i)`: a stream that no trial
of the study used (trial numbers stay far below the offset)."""
MODULE_TAG = "tunelab.module"
"""Model-version tag: what was registered (classifier, generator, vae-decoder...)."""
CONFIDENCE = 0.95
"""Coverage of the t-interval over seeds."""


@dataclass(frozen=True)
class EvaluationConfig:
    """What `tunelab evaluate` does."""

    study: str
    """Study name."""
    storage: str
    """Optuna storage URL."""
    seeds: int = 3
    """Independent retrainings (each scored once on the test split)."""
    tracking_uri: str | None = None
    """MLflow tracking URI (None = the one stored with the study)."""
    device: str | None = None
    """Training device (None = the study's)."""
    trial: int | None = None
    """The trial whose configuration to retrain (None = the best; with several objectives,
    the point of the Pareto front with the best primary objective)."""


@dataclass(frozen=True)
class MetricSummary:
    """One test metric over the seeds."""

    name: str
    """Metric name (test_*)."""
    values: tuple[float, ...]
    """Per-seed values, in seed order."""

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else float("nan")

    @property
    def interval(self) -> tuple[float, float]:
        """Two-sided t-interval of the mean (NaN with a single seed)."""
        return t_interval(self.values, CONFIDENCE)

    @property
    def constant(self) -> bool:
        """The same value for every seed (a setting such as iwae_k): no spread to report."""
        return len(set(self.values)) == 1


@dataclass(frozen=True)
class SeedRun:
    """One retraining and its single test scoring."""

    seed: int
    """Seed of the model's initialisation and of its training stream."""
    metrics: dict[str, float]
    """test_* metrics (and task settings such as iwae_k)."""
    artifacts: dict[str, bytes]
    """The task's final artifacts, computed on the test split."""
    parts: Parts = field(repr=False)
    """The trained modules."""


@dataclass(frozen=True)
class Evaluation:
    """The outcome of `tunelab evaluate`."""

    study: str
    """Study name."""
    trial: int
    """Number of the best trial whose configuration was retrained."""
    steps: int
    """What each seed trained: the trial's best step, in the study's unit."""
    unit: str
    """The study's unit of steps: images or epochs."""
    objective: str
    """The headline test metric (the study's metric on the test split)."""
    summaries: tuple[MetricSummary, ...]
    """Every test metric over the seeds."""
    seeds: tuple[int, ...]
    """The seeds, in order."""
    best_seed: int
    """Seed of the registered model."""
    run_id: str
    """The evaluation's MLflow run."""
    model_name: str
    """Registered model name."""
    model_version: str
    """Registered model version."""
    registered_module: str
    """What was registered: classifier, generator or vae-decoder."""


# -- retraining and scoring ------------------------------------------------------------------


def as_test_metric(name: str, task_metric: str, from_finalize: bool) -> str | None:
    """The test_* name of a metric the task computed on its validation split.

    val_X and final_X become test_X; the task's own unprefixed metric (the GAN's
    fd_classifier) too; other unprefixed names from `evaluate` are scores (test_X), while those
    from `finalize` are settings such as iwae_k and keep their name (None).
    """
    for prefix in ("val_", "final_"):
        if name.startswith(prefix):
            return "test_" + name.removeprefix(prefix)
    if name == task_metric or not from_finalize:
        return "test_" + name
    return None


def score(task: Task, parts: Parts, hp: Any, data: DataBundle, ctx: StepContext):
    """The task's evaluate then finalize on `data.val` (the test split), renamed to test_*."""
    metrics: dict[str, float] = {}
    for name, value in task.evaluate(parts, hp, data, data.val, ctx).items():
        metrics[as_test_metric(name, task.metric, False) or name] = float(value)
    final = task.finalize(parts, hp, data)
    for name, value in final.metrics.items():  # after evaluate: final_X wins over X
        metrics[as_test_metric(name, task.metric, True) or name] = float(value)
    return metrics, dict(final.artifacts)


def t_interval(values: tuple[float, ...], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Student-t confidence interval of the mean of `values`."""
    n = len(values)
    if n < 2:
        return float("nan"), float("nan")
    from scipy import stats

    mean = statistics.fmean(values)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return mean - half, mean + half


# -- the registered model --------------------------------------------------------------------


@contextlib.contextmanager
def _tracking_uri(uri: str) -> Iterator[None]:
    """mlflow.pytorch.log_model works through the fluent API: point it at `uri`, then back."""
    import mlflow
    from mlflow.tracking import is_tracking_uri_set

    previous = mlflow.get_tracking_uri() if is_tracking_uri_set() else None
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def register_model(run_id: str, name: str, serving: ServingModel, tracking_uri: str) -> str:
    """Log the module to the run and register it; returns the new version."""
    import mlflow
    import mlflow.pytorch
    from mlflow.models import infer_signature

    with torch.inference_mode():
        output = serving.module(serving.example)
    example = serving.example.numpy()
    signature = infer_signature(example, output.numpy())
    # The active run puts the logged model in the run's experiment (not the default one).
    with _tracking_uri(tracking_uri), mlflow.start_run(run_id=run_id):
        info = mlflow.pytorch.log_model(
            serving.module,
            name="model",
            registered_model_name=name,
            signature=signature,
            input_example=example,
            # torch.export's graph, not a pickle: it loads with torch alone, never runs code
            # while loading, and does not depend on tunelab's class names
            serialization_format="pt2",
            # an explicit requirement list spares MLflow a subprocess that imports the model
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        )
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    client.set_model_version_tag(name, version, MODULE_TAG, serving.kind)
    return version


# -- the command -----------------------------------------------------------------------------


def evaluate_study(config: EvaluationConfig, say=print) -> Evaluation:
    """Retrain the best trial's configuration per seed, score the test split, log, register."""
    from tunelab.search.adapters.tracking import StudyTracker, open_tracking
    from tunelab.search.study.budget import resolve_precision, stored_plan
    from tunelab.search.study.prepare import prepare
    from tunelab.search.study.queries import best_trial_info, load_study, stored_spec

    if config.seeds < 1:
        raise SpecError("--seeds must be at least 1")
    study = load_study(config.study, config.storage)
    info = best_trial_info(study)
    best = chosen_trial(study, config.trial)
    info["mlflow_run_id"] = keys.trial_attr(best, keys.MLFLOW_RUN_ID)
    spec = stored_spec(
        study,
        storage=config.storage,
        tracking_uri=config.tracking_uri,
        device=config.device,
        quiet=True,
    )
    best_step = keys.trial_attr(best, keys.BEST_STEP)
    if not best_step:
        raise SpecError(f"best trial {best.number} of '{config.study}' records no best step")
    open_tracking(spec.tracking_uri)  # fail before hours of training, not after
    prepared = prepare(spec)
    task, device = prepared.task, prepared.device
    plan = stored_plan(study, spec, len(prepared.data.train))
    if plan is None:
        raise SpecError(f"study '{config.study}' records no trial budget")
    budget = plan.budget
    hp = task.suggest(optuna.trial.FixedTrial(best.params), prepared.space)
    data = prepared.data.for_final_training()
    # As far as the trial trained to its best weights, on the same schedule (a study counted
    # in epochs retrains that many epochs of train + validation).
    loop = LoopConfig(
        budget=budget,
        device=str(device),
        precision=resolve_precision(spec.precision, device),
    )
    seeds = tuple(trial_seed(spec.seed, EVAL_SEED_OFFSET + i) for i in range(config.seeds))
    say(
        f"retraining trial {best.number} of '{config.study}' for "
        f"{counted(best_step, budget.unit[:-1])} on {counted(len(data.train), 'image')} of "
        f"train + val, {counted(len(seeds), 'seed')}, device {device}"
    )
    runs = []
    for i, seed in enumerate(seeds, start=1):
        try:
            training = retrain(task, hp, data, loop, best_step, seed)
            parts = training.parts
            metrics, artifacts = score(task, parts, hp, training.data, training.context())
        except Diverged as exc:  # e.g. the GAN's mode collapse, seen when scoring
            raise SpecError(f"seed {seed}: {exc}") from None
        runs.append(SeedRun(seed, metrics, artifacts, parts))
        headline = as_test_metric(task.metric, task.metric, False)
        say(f"  seed {i}/{len(seeds)}: {headline} = {metrics[headline]:.6g}")
    tags = task.trial_tags(data)

    objective = as_test_metric(task.metric, task.metric, False)
    sign = 1 if task.direction == "maximize" else -1
    # Picking a seed by its test score biases that model's own score upwards; the reported
    # figures are the mean and interval over all seeds, which that choice does not touch.
    best_run = max(runs, key=lambda r: sign * r.metrics[objective])
    names = [n for n in runs[0].metrics if all(n in r.metrics for r in runs)]
    summaries = tuple(MetricSummary(n, tuple(r.metrics[n] for r in runs)) for n in names)

    tracker = StudyTracker(spec.tracking_uri, config.study)
    client = tracker.client
    run = client.create_run(
        tracker.experiment_id,
        run_name=f"evaluation-trial-{best.number}",
        tags={
            keys.EVALUATION_TAG: "true",
            keys.STUDY_NAME_TAG: config.study,
            keys.TASK: task.name,
            keys.DATASET: spec.dataset,
            "tunelab.best_trial": str(best.number),
            "tunelab.best_trial_run_id": str(info["mlflow_run_id"]),
            "tunelab.best_seed": str(best_run.seed),
            **tags,
        },
    )
    run_id = run.info.run_id
    # a chosen point of a front is registered under its own name
    model_name = (
        f"{config.study}-best" if config.trial is None else f"{config.study}-trial-{best.number}"
    )
    try:
        _log_run(
            client, run_id, hp, spec, best.number, best_step, budget.unit, seeds, runs, summaries
        )
        serving = task.serving_model(best_run.parts, data, best_run.seed)
        version = register_model(run_id, model_name, serving, spec.tracking_uri)
    except BaseException as exc:  # no run left RUNNING, whatever stopped us
        client.set_terminated(run_id, "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return Evaluation(
        study=config.study,
        trial=best.number,
        steps=int(best_step),
        unit=budget.unit,
        objective=objective,
        summaries=summaries,
        seeds=seeds,
        best_seed=best_run.seed,
        run_id=run_id,
        model_name=model_name,
        model_version=version,
        registered_module=serving.kind,
    )


def chosen_trial(study: optuna.Study, number: int | None) -> optuna.trial.FrozenTrial:
    """Trial `number` (a complete one), or the best: with several objectives, the point of
    the Pareto front with the best primary objective."""
    from tunelab.search.study.pareto import best_primary

    if number is None:
        best = best_primary(study)
        if best is None:
            raise SpecError(f"study '{study.study_name}' has no complete trial yet")
        return best
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise SpecError(f"study '{study.study_name}' has no trial {number}")
    trial = trials[number]
    if trial.state != optuna.trial.TrialState.COMPLETE:
        raise SpecError(
            f"trial {number} of '{study.study_name}' is {trial.state.name.lower()}, not "
            "complete: choose a complete trial (`tunelab best` lists the front)"
        )
    return trial


def _log_run(client, run_id, hp, spec, trial, steps, unit, seeds, runs, summaries) -> None:
    from mlflow.entities import Metric, Param

    params = {
        **(asdict(hp) if is_dataclass(hp) else dict(hp)),
        "eval_seeds": ",".join(map(str, seeds)),
        "eval_steps": steps,
        "eval_unit": unit,
        "max_epochs": spec.max_epochs,
        "source_trial": trial,
        "dataset": spec.dataset,
    }
    now = int(time.time() * 1000)
    metrics = []
    for s in summaries:
        if s.constant:
            metrics.append(Metric(s.name, s.mean, now, 0))
            continue
        low, high = s.interval
        values = {
            s.name: s.mean,
            f"{s.name}_std": s.std,
            f"{s.name}_ci95_low": low,
            f"{s.name}_ci95_high": high,
        }
        metrics += [Metric(k, v, now, 0) for k, v in values.items() if math.isfinite(v)]
        # one chart per metric in MLflow's "seed" section: the value of each seed, by index
        metrics += [Metric(f"seed/{s.name}", v, now, i) for i, v in enumerate(s.values)]
    client.log_batch(run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()])
    summary = {
        "seeds": list(seeds),
        "metrics": {
            s.name: {
                "mean": s.mean,
                "std": s.std,
                "ci95": list(s.interval),
                "values": list(s.values),
            }
            for s in summaries
        },
    }
    with tempfile.TemporaryDirectory(prefix="tunelab-eval-") as tmp:
        root = Path(tmp)
        (root / "evaluation.json").write_text(json.dumps(summary, indent=2, allow_nan=True))
        for run in runs:
            for name, content in run.artifacts.items():
                target = root / f"seed-{run.seed}" / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
        client.log_artifacts(run_id, tmp)


def summary_table(evaluation: Evaluation):
    """A rich table of the test metrics over the seeds."""
    from rich.table import Table

    pct = f"{CONFIDENCE:.0%}"
    table = Table(
        "metric",
        "mean",
        f"{pct} t-interval",
        "std",
        "per seed",
        title=f"{evaluation.study}: test split, {counted(len(evaluation.seeds), 'seed')}, "
        f"{counted(evaluation.steps, evaluation.unit[:-1])} (trial {evaluation.trial})",
    )
    ordered = sorted(evaluation.summaries, key=lambda s: (s.name != evaluation.objective, s.name))
    for s in ordered:
        low, high = s.interval
        spread = not (s.constant or math.isnan(low))
        interval = f"[{low:.4g}, {high:.4g}]" if spread else "-"
        std = f"{s.std:.3g}" if spread else "-"
        table.add_row(
            s.name, f"{s.mean:.5g}", interval, std, " ".join(f"{v:.4g}" for v in s.values)
        )
    return table
