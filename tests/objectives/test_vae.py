"""Task `vae` through the shared trial loop on the 8x8 digits: metrics, bounds and artifacts."""

from __future__ import annotations

import dataclasses
import io
import json
import math

import optuna
import pytest
import torch
from PIL import Image

import tunelab.objectives.vae as vae_module
from tunelab.objectives.budget import epoch_budget
from tunelab.objectives.data import DataSpec, Split, load_data
from tunelab.objectives.recorders import MemoryRecorder
from tunelab.objectives.registry import get_task
from tunelab.objectives.runner import Objective
from tunelab.objectives.training import LoopConfig, retrain
from tunelab.objectives.vae import (
    VAEHParams,
    VAEOptions,
    VAETask,
    evaluate_elbo,
    iwae_bound,
    kl_weight,
)

RUNG_METRICS = (
    "train_loss",
    "train_elbo",
    "train_recon",
    "train_kl",
    "rung/val_elbo",
    "rung/val_recon",
    "rung/val_kl",
    "rung/val_bits_per_dim",
)
ARTIFACTS = ("reconstructions.png", "prior_samples.png", "interpolations_linear.png")
TINY = {"base_width": 8, "fc_width": 0}
"""Search-space narrowing that keeps the tests fast (fixed values, not sampled)."""


def rung_metrics(recorder: MemoryRecorder) -> dict[int, dict[str, float]]:
    """Per-rung metrics by step (the final summary is logged separately)."""
    return {s: m for s, m in recorder.history if "rung/val_elbo" in m}


def final_metrics(recorder: MemoryRecorder) -> dict[str, float]:
    return next(m for _, m in recorder.history if "best_val_elbo" in m)


@pytest.fixture(scope="module")
def data():
    return load_data(DataSpec("digits"))


def run_trial(data, task: VAETask | None = None) -> tuple[float, MemoryRecorder]:
    task = task or VAETask()
    space = task.search_space().narrowed(TINY)
    recorder = MemoryRecorder()
    objective = Objective(
        task,
        data,
        space,
        LoopConfig(budget=epoch_budget(2, len(data.train)), patience=3),
    )
    value = objective(optuna.trial.FixedTrial(space.default_trial_params()), recorder)
    return value, recorder


@pytest.fixture(scope="module")
def trial(data):
    return run_trial(data)


def test_trial_logs_every_metric_at_every_rung(trial, data) -> None:
    value, recorder = trial
    assert recorder.status == "FINISHED"
    assert math.isfinite(value)
    assert recorder.params["base_width"] == 8
    rungs = rung_metrics(recorder)
    assert list(rungs) == [len(data.train), 2 * len(data.train)]  # one rung per epoch
    dims = data.channels * data.image_size[0] * data.image_size[1]
    for metrics in rungs.values():
        assert set(RUNG_METRICS) <= set(metrics)
        assert all(math.isfinite(metrics[name]) for name in RUNG_METRICS)
        elbo = metrics["rung/val_elbo"]
        assert elbo == pytest.approx(-(metrics["rung/val_recon"] + metrics["rung/val_kl"]))
        assert metrics["rung/val_bits_per_dim"] == pytest.approx(-elbo / (dims * math.log(2)))
        assert metrics["rung/val_kl"] >= 0 and metrics["rung/val_recon"] > 0
        # beta = 1, no warm-up by default: the training loss is the negative ELBO
        assert metrics["train_loss"] == pytest.approx(-metrics["train_elbo"], rel=1e-5)
    assert value == max(m["rung/val_elbo"] for m in rungs.values())


def test_final_iwae_bound_is_at_least_the_elbo(trial) -> None:
    value, recorder = trial
    final = final_metrics(recorder)
    assert final["best_val_elbo"] == value
    assert final["iwae_k"] == 64
    assert math.isfinite(final["val_iwae_k"])
    # A tighter bound than the one-sample ELBO, up to the ELBO estimate's noise.
    assert final["val_iwae_k"] >= value - 0.5


def test_artifacts_are_decodable_pngs(trial, data) -> None:
    _, recorder = trial
    assert {*ARTIFACTS, "config.json", "checkpoint/best.pt"} <= set(recorder.artifacts)
    sizes = {}
    for name in ARTIFACTS:
        image = Image.open(io.BytesIO(recorder.artifacts[name]))
        image.load()
        assert image.format == "PNG"
        sizes[name] = image.size
    # 8 columns of enlarged 8x8 digits, 8 rows (4 of originals, 4 of reconstructions)
    width, height = sizes["reconstructions.png"]
    assert width == height > 8 * 8
    # one row per pair: 2 originals + 10 interpolated points
    width, height = sizes["interpolations_linear.png"]
    assert width / height == pytest.approx(12 / 8, rel=0.05)
    assert json.loads(recorder.artifacts["config.json"])["beta"] == 1.0


def test_trials_are_reproducible(trial, data) -> None:
    value, recorder = trial
    again, recorder_again = run_trial(data)
    assert again == value
    assert rung_metrics(recorder_again) == rung_metrics(recorder)


def _trained(data, hp, loop_for, epochs: int = 1):
    """A VAE trained `epochs` epochs, as the loop trains it."""
    loop = loop_for(data, max_epochs=epochs)
    return retrain(VAETask(), hp, data, loop, epochs * len(data.train), seed=0)


def test_objective_does_not_depend_on_beta_or_warm_up(data, loop_for) -> None:
    hp = VAEHParams(base_width=8, latent_dim=4)
    training = _trained(data, hp, loop_for)
    other = dataclasses.replace(hp, beta=3.0, kl_warmup_epochs=5)
    task, parts, ctx = training.task, training.parts, training.context()
    assert task.evaluate(parts, hp, data, data.val, ctx) == task.evaluate(
        parts, other, data, data.val, ctx
    )


def test_beta_and_warm_up_weight_the_training_kl() -> None:
    hp = VAEHParams(beta=2.0, kl_warmup_epochs=4)
    assert kl_weight(hp, progress=1.0) == pytest.approx(0.5)
    assert kl_weight(hp, progress=2.5) == pytest.approx(2.0 * 2.5 / 4)
    assert kl_weight(hp, progress=8.1) == 2.0
    assert kl_weight(dataclasses.replace(hp, kl_warmup_epochs=0), 0.1) == 2.0


def test_train_loss_uses_the_weighted_kl(data, step_context) -> None:
    task = VAETask()
    hp = VAEHParams(base_width=8, latent_dim=4, beta=0.5)
    ctx = step_context(data)
    parts = task.build(hp, data, torch.device("cpu"), ctx.budget)
    x, y = data.train.x[:32], data.train.y[:32]
    metrics = {k: v.item() for k, v in task.train_step(parts, hp, x, y, ctx).items()}
    expected = metrics["train_recon"] + 0.5 * metrics["train_kl"]
    assert metrics["train_loss"] == pytest.approx(expected, rel=1e-4)
    assert metrics["train_kl_weight"] == 0.5


def test_iwae_in_small_chunks_tightens_the_k1_bound(data, monkeypatch, loop_for) -> None:
    hp = VAEHParams(base_width=8, latent_dim=4)
    model = _trained(data, hp, loop_for, epochs=4).parts.modules["model"]
    elbo = evaluate_elbo(model, data.val)["elbo"]
    k1 = iwae_bound(model, data.val, 1, torch.Generator().manual_seed(1))
    assert k1 == pytest.approx(elbo, abs=1.0)  # k = 1 is the ELBO (other noise draws)
    monkeypatch.setattr(vae_module, "IWAE_CHUNK", 8)  # fewer samples per pass than k
    few = Split(data.val.x[:24], data.val.y[:24])
    k1 = iwae_bound(model, few, 1, torch.Generator().manual_seed(1))
    k20 = iwae_bound(model, few, 20, torch.Generator().manual_seed(1))
    assert math.isfinite(k20) and k20 > k1


def test_registered_with_options() -> None:
    assert get_task("vae").options == VAEOptions()
    assert get_task("vae", {"iwae_k": 8}).options.iwae_k == 8
    with pytest.raises(ValueError, match="iwae_k"):
        get_task("vae", {"iwae_k": 0})
    with pytest.raises(ValueError, match="unknown option"):
        get_task("vae", {"k": 8})
