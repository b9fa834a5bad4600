"""A study's trial budget, fixed when the study is created, and the arithmetic it trains in.

Every new study counts its pruner steps in training images (rungs, see
`tunelab.objectives.budget`). With a time budget and no trial target (`--timeout` alone), the
study plans how much one trial may train: the default configuration's throughput is measured
on this machine, and a full trial is the training one worker can do in a share of the time,
so that the trials the pruner promotes to the end finish inside the budget. The budget is
stored on the study (`tunelab.budget`); every worker and every later run reads it from there.
Studies of tunelab 0.1 have none: they keep counting in epochs.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import optuna
import torch

from tunelab.objectives import keys
from tunelab.objectives.budget import TrialBudget, epoch_budget
from tunelab.objectives.graphs import WARM_UP_STEPS as GRAPH_WARM_UP_STEPS
from tunelab.objectives.runner import Objective
from tunelab.objectives.training import LoopConfig, Precision, TrialTraining
from tunelab.search.spec import DEFAULT_EPOCHS, SpecError, StudySpec, stored_values
from tunelab.search.study.prepare import Prepared

FULL_TRIAL_SHARE = 1 / 2
"""A full trial may take this share of one worker's time budget: trials that start early and
survive every rung still finish before the deadline. Half, not a third: on full MNIST the
default configuration, the best in every 300-s search measured, scored 0.9950 with half and
0.9944 with a third (one run each, same machine, `benchmarks/budget.py --scenarios mnist`)."""
FRONT_TRIAL_SHARE = 1 / 8
"""In a multi-objective study a full trial takes this share: a front needs several complete
trials, of several sizes, where one objective needs a few good ones."""
STARTUP_S = 10.0
"""Seconds a worker needs before its first trial trains (imports, data, checks)."""
FIRST_RUNG_S = 2.5
"""Under a time budget, automatic rungs train about this long on one worker (their scoring
comes on top): the first decisions on a configuration come after seconds, so many
configurations get one."""
MIN_RUNG_IMAGES = 512
"""Smallest automatic rung: fewer images say too little about a configuration."""
CALIBRATION_S = 2.0
"""Seconds of training timed to measure throughput (after a short warm-up)."""
WARMUP_STEPS = GRAPH_WARM_UP_STEPS + 2
"""Untimed steps: past the eager steps before a CUDA graph's capture, and the capture itself
(set-up to the first replay: 0.7 s on an H100, `benchmarks/steps.py`; timed, it would count
as a third of CALIBRATION_S's training)."""
MAX_PLANNED_EPOCHS = 10 * DEFAULT_EPOCHS
"""Without --max-epochs, a trial planned for a time budget trains at most this many epochs.
Only a small data set reaches it, and there length pays more than configuration: on MNIST with
--limit-train 1000 the default configuration scored 0.9673 after 10 epochs (mean of seeds 0-2),
0.980 after 30 and 0.987 after 100 (seed 0), where at 30 epochs the best of 59 configurations
of an unpruned TPE search scored 0.9844, and at 100 epochs the best of five others 0.9868.
Uncapped, a full trial there would fill its FULL_TRIAL_SHARE and few searched configurations
would finish."""


@dataclass(frozen=True)
class BudgetPlan:
    """A study's trial budget and where it came from (stored on the study)."""

    budget: TrialBudget
    """The trial budget."""
    max_epochs: int | None
    """The --max-epochs it was made from (None: automatic; a cap when planned for time)."""
    planned_for_s: float | None = None
    """The time budget it was planned for (None: not planned for time)."""
    images_per_s: float | None = None
    """Measured training throughput of one worker (rung evaluations included)."""
    finish_s: float = 0.0
    """Measured time to score a trial's best weights on all of validation and finalize it:
    trials stop that much before the deadline, so the study ends on time."""
    workers: int = 1
    """Workers it was planned for."""

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "budget": asdict(self.budget)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> BudgetPlan:
        values = json.loads(text)
        return cls(**{**values, "budget": TrialBudget(**values["budget"])})

    def full_trial_s(self) -> float | None:
        """Estimated seconds of a full trial on one worker (None when never measured)."""
        if not self.images_per_s or self.budget.unit != "images":
            return None
        return self.budget.images / self.images_per_s

    def rung_seconds(self) -> float | None:
        """Estimated seconds one rung takes on one worker (None when never measured)."""
        if not self.images_per_s or self.budget.unit != "images":
            return None
        return self.budget.rung / self.images_per_s


def resolve_precision(name: str, device: torch.device) -> Precision:
    """`auto`: bfloat16 autocast on a CPU that computes bfloat16 natively, else float32.

    Not on a GPU: the tasks' small models are bound there by kernel launches, not arithmetic,
    and autocast's casts add launches (H100, default CNN on MNIST: 6.50 ms per step under
    bfloat16 autocast, 5.43 in float32, `benchmarks/steps.py`); cuDNN already runs float32
    convolutions on TF32 tensor cores."""
    if name != "auto":
        return name  # type: ignore[return-value]
    if device.type == "cpu" and _cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def _cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX: oneDNN runs bfloat16 convolutions natively (about twice float32's
    speed on such CPUs); elsewhere it emulates them, slower than float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: stay with float32
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


@dataclass(frozen=True)
class Throughput:
    """What one trial of the default configuration costs on this machine."""

    train_images_per_s: float
    """Training images per second, training alone."""
    rung_eval_s: float
    """Seconds to score the rung split once (every rung pays it, whatever its size)."""
    epoch_end_s: float
    """Seconds an epoch's end takes (scoring all of validation, the task's epoch artifacts)."""
    finish_s: float
    """Seconds to score the best weights on all of validation and finalize the trial."""

    def images_per_s(self, rung: int, train_size: int) -> float:
        """Training images per second in rungs of `rung` images of a `train_size` training
        split, their scoring and the epochs' ends included."""
        seconds = rung / self.train_images_per_s + self.rung_eval_s
        return rung / (seconds + self.epoch_end_s * rung / train_size)


def measure_throughput(prepared: Prepared, budget: TrialBudget, threads: int | None) -> Throughput:
    """Time the task's default configuration on this device, with `threads` CPU threads."""
    task, spec = prepared.task, prepared.spec
    hp = task.suggest(
        optuna.trial.FixedTrial(prepared.space.default_trial_params()), prepared.space
    )
    loop = LoopConfig(
        budget=budget,
        device=str(prepared.device),
        precision=resolve_precision(spec.precision, prepared.device),
        rung_val_images=spec.rung_val_images or None,
    )
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[]):
            training = TrialTraining(task, hp, prepared.data.channels_last(), loop, seed=0)
            steps = training.steps()
            for _ in range(WARMUP_STEPS):
                next(steps, None)  # a task whose training ends by itself (a function's loop)
            _sync(prepared.device)
            start, images = time.perf_counter(), training.state.images
            while time.perf_counter() - start < CALIBRATION_S:
                if next(steps, None) is None:  # ... is timed on what it trained
                    break
            _sync(prepared.device)
            train_s = time.perf_counter() - start
            trained = training.state.images - images
            data, ctx = training.data, training.context()
            # what the trial loop scores, and where (Objective decides as it will in trials)
            judged = Objective(task, data, prepared.space, loop)
            start = time.perf_counter()
            judged.rung_scores(training)
            rung_eval_s = time.perf_counter() - start
            start = time.perf_counter()
            task.evaluate(training.parts, hp, data, data.val, ctx)
            val_s = time.perf_counter() - start
            start = time.perf_counter()
            task.epoch_artifacts(training.parts, hp, data, ctx)
            epoch_s = time.perf_counter() - start + (0.0 if judged.judges_on_rungs else val_s)
            start = time.perf_counter()
            task.finalize(training.parts, hp, data)
            finish_s = val_s + time.perf_counter() - start
    finally:
        torch.set_num_threads(previous)
    return Throughput(max(1, trained) / train_s, rung_eval_s, epoch_s, finish_s)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plan_budget(
    prepared: Prepared, workers: int, threads: int | None, train_size: int
) -> BudgetPlan:
    """The trial budget of a new study: --max-epochs in rungs; with a time budget and no trial
    target, cut so that a full trial fits FULL_TRIAL_SHARE of one worker's time
    (FRONT_TRIAL_SHARE with several objectives)."""
    spec = prepared.spec
    budget = epoch_budget(spec.max_epochs or DEFAULT_EPOCHS, train_size, spec.rung_images)
    if spec.timeout is None or spec.n_trials is not None:
        return BudgetPlan(budget=budget, max_epochs=spec.max_epochs)
    measured = measure_throughput(prepared, budget, threads)
    rung = budget.rung
    if spec.rung_images is None:  # rungs of FIRST_RUNG_S seconds, no larger than automatic
        rung = max(MIN_RUNG_IMAGES, min(rung, round(measured.train_images_per_s * FIRST_RUNG_S)))
    # for the rung trials train in: a small rung pays its scoring over fewer images
    images_per_s = measured.images_per_s(rung, train_size)
    seconds = max(0.0, spec.timeout - STARTUP_S - measured.finish_s)
    multi = prepared.objectives is not None and prepared.objectives.multi
    share = FRONT_TRIAL_SHARE if multi else FULL_TRIAL_SHARE
    usable = seconds * images_per_s * share
    most = math.ceil((spec.max_epochs or MAX_PLANNED_EPOCHS) * train_size / rung)
    rungs = max(1, min(most, math.floor(usable / rung)))
    return BudgetPlan(
        budget=TrialBudget(unit="images", rung=rung, max_rungs=rungs, train_size=train_size),
        max_epochs=spec.max_epochs,
        planned_for_s=spec.timeout,
        images_per_s=images_per_s,
        finish_s=measured.finish_s,
        workers=workers,
    )


def stored_plan(study: optuna.Study, spec: StudySpec, train_size: int) -> BudgetPlan | None:
    """The plan stored on an existing study; for a tunelab 0.1 study, its epochs; None for a
    study that has none yet."""
    text = study.user_attrs.get(keys.BUDGET)
    if text:
        return BudgetPlan.from_json(text)
    if keys.SPEC in study.user_attrs:  # made by tunelab 0.1: one rung per epoch
        epochs = stored_values(study.user_attrs[keys.SPEC]).get("max_epochs")
        epochs = epochs or spec.max_epochs or DEFAULT_EPOCHS
        budget = TrialBudget(
            unit="epochs", rung=train_size, max_rungs=epochs, train_size=train_size
        )
        return BudgetPlan(budget=budget, max_epochs=epochs)
    return None


def recorded_budget(study: optuna.Study) -> tuple[str, int | None]:
    """A study's step unit (images or epochs) and the step of a full trial (None: unknown,
    e.g. a study not made by tunelab)."""
    text = study.user_attrs.get(keys.BUDGET)
    if text:
        budget = BudgetPlan.from_json(text).budget
        return budget.unit, budget.max_step
    return "epochs", stored_values(study.user_attrs.get(keys.SPEC)).get("max_epochs")


def check_same_budget(plan: BudgetPlan, spec: StudySpec) -> None:
    """A resumed study keeps its trial budget: an explicit other --max-epochs is refused."""
    if spec.max_epochs is not None and plan.max_epochs not in (None, spec.max_epochs):
        raise SpecError(
            f"study '{spec.name}' trains trials for --max-epochs {plan.max_epochs}; resume it "
            "without --max-epochs (or with that) or use another --study-name"
        )
