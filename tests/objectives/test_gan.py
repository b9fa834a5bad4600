import io
import math
from pathlib import Path

import optuna
import pytest
import torch
from PIL import Image

from tunelab.models.gan import Generator, GeneratorConfig
from tunelab.objectives.budget import TrialBudget, epoch_budget
from tunelab.objectives.data import DataBundle, Split
from tunelab.objectives.gan import COLLAPSE_RATIO, GANOptions, GANTask
from tunelab.objectives.registry import get_task
from tunelab.objectives.runner import Objective
from tunelab.objectives.training import Diverged, LoopConfig

SMALL = {"g_width": 16, "d_width": 16, "latent_dim": 32}


def _task(cache_dir: Path, **options) -> GANTask:
    return GANTask(
        GANOptions(
            feature_space="fd_classifier",
            fid_samples=200,
            final_fid_samples=300,
            cache_dir=str(cache_dir),
            **options,
        )
    )


def _trial(task: GANTask, **params) -> optuna.trial.FixedTrial:
    return optuna.trial.FixedTrial({**task.search_space().default_trial_params(), **params})


def _run(task, data, recorder, trial, epochs=2) -> float:
    space = task.search_space().narrowed(SMALL)
    loop = LoopConfig(budget=epoch_budget(epochs, len(data.train)), patience=3)
    return Objective(task, data, space, loop)(trial, recorder)


def _rungs(data, epochs=2) -> set[int]:
    """Steps of the rungs of `epochs` epochs of digits (one rung per epoch)."""
    return {epoch * len(data.train) for epoch in range(1, epochs + 1)}


def test_the_task_builds_without_arguments_and_from_the_registry():
    task = GANTask()
    assert task.direction == "minimize"
    assert task.metric in ("fid_inception", "fd_classifier")
    if not torch.cuda.is_available():
        assert task.metric == "fd_classifier"
    assert get_task("gan", {"feature_space": "fd_classifier", "fid_samples": 50}).metric == (
        "fd_classifier"
    )
    with pytest.raises(ValueError, match="unknown option"):
        get_task("gan", {"fid_sample": 50})
    with pytest.raises(ValueError, match="unknown feature space"):
        get_task("gan", {"feature_space": "fid"})


def test_search_space_conditions():
    space = GANTask().search_space()
    ns = space.default_trial_params()
    assert ns["loss"] == "ns" and "label_smoothing" in ns and "r1" in ns
    assert "gp_weight" not in ns and "r1_weight" not in ns
    wgan = space.suggest(
        optuna.trial.FixedTrial({**_without_ns(ns), "loss": "wgan-gp", "gp_weight": 5.0})
    )
    assert wgan["gp_weight"] == 5.0
    r1 = space.suggest(optuna.trial.FixedTrial({**ns, "r1": True, "r1_weight": 2.0}))
    assert r1["r1_weight"] == 2.0


def _without_ns(params: dict) -> dict:
    return {k: v for k, v in params.items() if k not in ("label_smoothing", "r1", "r1_weight")}


def test_default_trial_logs_curves_samples_and_final_distance(digits, recorder, cache_dir):
    task = _task(cache_dir)
    value = _run(task, digits, recorder, _trial(task))
    assert math.isfinite(value) and value > 0
    assert recorder.status == "FINISHED"
    for name in (
        "rung/fd_classifier",
        "rung/kid_classifier",
        "rung/sample_diversity",
        "train_d_loss",
        "train_g_loss",
        "train_d_accuracy",
    ):
        assert set(recorder.steps(name)) == _rungs(digits), name
    assert value == min(recorder.steps("rung/fd_classifier").values())  # rungs score all 270
    assert not any("inception" in k for _, m in recorder.history for k in m)
    final = recorder.history[-1][1]
    assert final["best_fd_classifier"] == value
    assert recorder.steps("fd_classifier") == recorder.steps("rung/fd_classifier")
    assert final["final_fid_samples"] == min(300, len(digits.val))
    assert math.isfinite(final["final_fd_classifier"]) and "final_kid_classifier" in final
    assert final["best_fd_classifier"] == value

    tags = recorder.tags
    assert tags["tunelab.feature_space"] == "fd_classifier"
    assert len(tags["tunelab.fd_classifier_sha256"]) == 64
    for name in (
        "samples/epoch_001.png",
        "samples/epoch_002.png",
        "samples.png",
        "interpolations.png",
    ):
        image = Image.open(io.BytesIO(recorder.artifacts[name]))
        image.load()
        assert min(image.size) >= 8 * 32, name  # an 8-wide grid of images enlarged to 32 px

    checkpoint = torch.load(io.BytesIO(recorder.artifacts["checkpoint/best.pt"]), weights_only=True)
    assert checkpoint["model_configs"]["discriminator"]["norm"] == "batch"  # plain ns
    config = checkpoint["model_configs"]["generator"]
    gen = Generator(GeneratorConfig(**{**config, "image_size": tuple(config["image_size"])}))
    gen.load_state_dict(checkpoint["state_dict"]["generator"])
    assert gen.eval()(torch.randn(3, gen.config.latent_dim)).shape == (3, 1, 8, 8)


WGAN = {"loss": "wgan-gp", "gp_weight": 10.0, "d_steps": 2, "beta1": 0.0, "beta2": 0.9}


@pytest.mark.parametrize("params", [WGAN, {"r1": True, "r1_weight": 1.0}], ids=["wgan-gp", "ns-r1"])
def test_other_losses_train(digits, recorder, cache_dir, params):
    task = _task(cache_dir)
    defaults = task.search_space().default_trial_params()
    if params.get("loss") == "wgan-gp":  # the ns-only parameters are not sampled
        defaults = _without_ns(defaults)
    value = _run(task, digits, recorder, optuna.trial.FixedTrial({**defaults, **params}))
    assert math.isfinite(value) and recorder.status == "FINISHED"
    assert recorder.params["loss"] == params.get("loss", "ns")
    extra = "train_critic_gap" if params.get("loss") == "wgan-gp" else "train_d_accuracy"
    assert set(recorder.steps(extra)) == _rungs(digits)
    checkpoint = torch.load(io.BytesIO(recorder.artifacts["checkpoint/best.pt"]), weights_only=True)
    assert checkpoint["model_configs"]["discriminator"]["norm"] == "layer"  # a per-sample penalty


def test_same_seed_same_value(digits, cache_dir):
    task = _task(cache_dir)
    space = task.search_space().narrowed(SMALL)
    loop = LoopConfig(budget=epoch_budget(1, len(digits.train)), seed=3)
    values = [Objective(task, digits, space, loop)(_trial(task)) for _ in range(2)]
    assert values[0] == values[1]


class CollapsingGAN(GANTask):
    """Trains normally, then makes the generator ignore its latent (one image for all)."""

    def train_step(self, parts, hp, x, y, ctx):
        metrics = super().train_step(parts, hp, x, y, ctx)
        if ctx.epoch == 2:
            collapse(parts.modules["generator"])
        return metrics


def collapse(gen: Generator) -> None:
    last = [m for m in gen.modules() if isinstance(m, torch.nn.ConvTranspose2d)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(0.3)


def test_mode_collapse_is_detected_and_prunes_the_trial(digits, recorder, cache_dir, step_context):
    task = _task(cache_dir)
    hp = task.suggest(_trial(task), task.search_space())
    ctx = step_context(digits, max_epochs=2)
    parts = task.build(hp, digits, torch.device("cpu"), ctx.budget)
    assert task.evaluate(parts, hp, digits, digits.val, ctx)["sample_diversity"] > COLLAPSE_RATIO
    collapse(parts.modules["generator"])
    with pytest.raises(Diverged, match="mode collapse"):
        task.evaluate(parts, hp, digits, digits.val, ctx)

    collapsing = CollapsingGAN(task.options)
    trial = _trial(collapsing)
    with pytest.raises(optuna.TrialPruned, match="mode collapse"):
        _run(collapsing, digits, recorder, trial, epochs=3)
    assert recorder.status == "KILLED" and recorder.reason.startswith("mode collapse")
    assert trial.user_attrs["tunelab.fail_reason"].startswith("mode collapse")
    assert set(recorder.steps("rung/fd_classifier")) == _rungs(digits, 1)


def test_inception_space_names_its_metrics_and_tags(
    digits, tmp_path, inception_weights, step_context
):
    # CPU Inception costs ~0.1-0.3 s per image: 8 real and 8 generated images only.
    tiny = DataBundle(
        digits.name,
        Split(digits.train.x[:64], digits.train.y[:64]),
        Split(digits.val.x[:8], digits.val.y[:8]),
        digits.test,
        10,
        digits.class_names,
    )
    task = GANTask(
        GANOptions(
            feature_space="fid_inception",
            inception_weights=str(inception_weights),
            fid_samples=8,
            cache_dir=str(tmp_path),
        )
    )
    assert task.metric == "fid_inception"
    hp = task.suggest(_trial(task), task.search_space())
    ctx = step_context(tiny)
    parts = task.build(hp, tiny, torch.device("cpu"), ctx.budget)
    metrics = task.evaluate(parts, hp, tiny, tiny.val, ctx)
    assert set(metrics) == {"fid_inception", "kid_inception", "sample_diversity"}
    assert all(math.isfinite(v) for v in metrics.values()) and metrics["fid_inception"] > 0
    assert task.trial_tags(tiny) == {
        "tunelab.feature_space": "fid_inception",
        "tunelab.inception_weights": inception_weights.name,
    }
    assert not (tmp_path / "fd_classifier").exists()  # no classifier trained for Inception


class InterruptedGAN(GANTask):
    """A GAN whose training is interrupted (Ctrl-C) at one step."""

    def __init__(self, options, at_step: int) -> None:
        super().__init__(options)
        self.at_step = at_step

    def train_step(self, parts, hp, x, y, ctx):
        if ctx.step == self.at_step:
            raise KeyboardInterrupt
        return super().train_step(parts, hp, x, y, ctx)


def test_an_interrupted_gan_trial_resumes_to_the_same_curve(digits, cache_dir, tmp_path):
    """Two optimizers, momentum, label smoothing and noise: a resume that lost any state (an
    optimizer's moments, a random stream) would leave the uninterrupted curve."""
    from tunelab.objectives.checkpoints import LocalCheckpoints, TrialCheckpoint
    from tunelab.objectives.recorders import MemoryRecorder

    data = digits
    options = GANOptions(
        feature_space="fd_classifier",
        fid_samples=200,
        final_fid_samples=200,
        cache_dir=str(cache_dir),
    )
    space = GANTask(options).search_space().narrowed(SMALL)
    rung = 320  # two short rungs: the interruption falls in the second
    loop = LoopConfig(
        budget=TrialBudget(unit="images", rung=rung, max_rungs=2, train_size=len(data.train)),
        patience=3,
        rung_val_images=None,
    )

    def run(task, number, checkpoints=None, source=None):
        recorder = MemoryRecorder()
        trial = optuna.trial.FixedTrial(space.default_trial_params(), number=number)
        checkpoint = None
        if checkpoints is not None:  # a retry resumes from its source's checkpoint
            sources = () if source is None else (source,)
            checkpoint = TrialCheckpoint(checkpoints, number, sources)
        return Objective(task, data, space, loop)(trial, recorder, checkpoint), recorder

    expected, whole = run(GANTask(options), number=5)

    checkpoints = LocalCheckpoints(tmp_path)
    batch = GANTask(options).batch_size(
        GANTask(options).suggest(optuna.trial.FixedTrial(space.default_trial_params()), space)
    )
    steps_per_rung = rung // batch
    with pytest.raises(KeyboardInterrupt):  # in the second rung, after the first
        run(InterruptedGAN(options, at_step=steps_per_rung + 2), 5, checkpoints)
    value, resumed = run(GANTask(options), number=9, checkpoints=checkpoints, source=5)

    assert value == expected
    for metric in ("train_g_loss", "train_d_loss", "rung/fd_classifier"):
        later = {s: v for s, v in whole.steps(metric).items() if s > rung}
        assert resumed.steps(metric) == later, metric
