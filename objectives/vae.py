"""Task `vae`: a convolutional variational auto-encoder; maximise the validation ELBO.

Likelihood: each pixel intensity x in [0, 1] is scored with a Bernoulli likelihood on its
decoder logit, i.e. binary cross-entropy with logits on the continuous intensities, as is common
for MNIST-like data. On non-binary intensities this is not a normalised continuous density (its
best value is the targets' own entropy, not zero), so the ELBO here compares models on the same
data set; it is not a log-likelihood comparable with papers that binarise the images.

The objective is always the beta = 1 ELBO, -(reconstruction + KL), in nats per image: beta and
the KL warm-up shape only the training loss, so trials that differ in them stay comparable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tunelab.models.vae import VAE, VAEArchitecture, VAEConfig
from tunelab.objectives.base import (
    Finalization,
    Parts,
    ServingModel,
    StepContext,
    Task,
    latent_example,
)
from tunelab.objectives.budget import TrialBudget
from tunelab.objectives.data import DataBundle, Split
from tunelab.objectives.images import image_grid_png
from tunelab.objectives.metrics import MetricInfo, count_parameters
from tunelab.objectives.optim import OptimizerHParams, optimizer_for, optimizer_params
from tunelab.objectives.space import Bounds, Param, SearchSpace, above, fields_of, space_from

EVAL_BATCH = 256
"""Images per inference batch when scoring a split."""
EVAL_SEED = 0
"""Seed of the validation noise: every epoch and every trial scores with the same draws."""
SAMPLE_SEED = 0
"""Seed of the prior samples and of the IWAE noise in `finalize`."""
IWAE_CHUNK = 4096
"""Latent samples decoded per forward pass of the IWAE bound (bounds its memory)."""
LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class VAEOptions:
    """Task settings that are not searched."""

    iwae_k: int = 64
    """Importance samples per validation image for the final IWAE bound."""

    def __post_init__(self) -> None:
        if self.iwae_k < 1:
            raise ValueError(f"iwae_k must be at least 1, not {self.iwae_k}")


@dataclass(frozen=True)
class VAEHParams(OptimizerHParams, VAEArchitecture):
    """Hyperparameters of one VAE trial: the optimizer's, the network's, and these."""

    # this task's optimizer defaults (the fields are OptimizerHParams'); the rate is constant
    lr: float = 3e-3
    weight_decay: float = 1e-6

    kl_warmup_epochs: int = 0
    """Epochs over which the KL weight ramps linearly from 0 to beta (0 = no warm-up)."""
    beta: float = 1.0
    """Weight of the KL term in the training loss (not in the objective)."""


def elbo_terms(
    model: VAE, x: torch.Tensor, noise: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image reconstruction loss -log p(x|z) and KL(q(z|x) || N(0, I)), in nats.

    The reconstruction term is the Bernoulli likelihood of the intensities in [0, 1] (binary
    cross-entropy with logits, summed over pixels and channels), with z = mu + sigma * noise.
    """
    logits, mu, logvar = model(x, noise)
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    kl = 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(1)
    return recon, kl


def kl_weight(hp: VAEHParams, progress: float) -> float:
    """beta times the warm-up factor once `progress` epochs of training are done."""
    if hp.kl_warmup_epochs <= 0:
        return hp.beta
    return hp.beta * min(1.0, progress / hp.kl_warmup_epochs)


def evaluate_elbo(model: VAE, split: Split, seed: int = EVAL_SEED) -> dict[str, float]:
    """Mean beta = 1 ELBO, reconstruction and KL per image, one latent sample per image.

    The noise comes from a generator seeded with `seed`, so the same weights always give the
    same value (whatever the hyperparameters or the training stream).
    """
    model.eval()
    device = split.x.device
    generator = torch.Generator(device=device).manual_seed(seed)
    recon_sum = torch.zeros((), device=device)
    kl_sum = torch.zeros((), device=device)
    with torch.inference_mode():
        for x, _ in split.batches(EVAL_BATCH):
            noise = torch.randn(
                (len(x), model.config.latent_dim), generator=generator, device=device
            )
            recon, kl = elbo_terms(model, x, noise)
            recon_sum += recon.sum()
            kl_sum += kl.sum()
    n = len(split)
    recon_mean, kl_mean = recon_sum.item() / n, kl_sum.item() / n
    return {"elbo": -(recon_mean + kl_mean), "recon": recon_mean, "kl": kl_mean}


def iwae_bound(model: VAE, split: Split, k: int, generator: torch.Generator) -> float:
    """Mean importance-weighted bound log (1/k) sum_i p(x, z_i) / q(z_i|x) per image, in nats.

    k = 1 is the ELBO; the bound tightens towards log p(x) as k grows. At most `IWAE_CHUNK`
    latent samples are decoded at once, whatever k and the split's size.
    """
    model.eval()
    device = split.x.device
    images_per_pass = max(1, IWAE_CHUNK // k)
    total = torch.zeros((), device=device, dtype=torch.float64)
    with torch.inference_mode():
        for x, _ in split.batches(images_per_pass):
            mu, logvar = model.encode(x)
            std = torch.exp(0.5 * logvar)
            samples_per_pass = max(1, IWAE_CHUNK // len(x))
            log_weights = []
            for start in range(0, k, samples_per_pass):
                m = min(samples_per_pass, k - start)
                eps = torch.randn((m, *mu.shape), generator=generator, device=device)
                z = mu + std * eps  # (m, B, D)
                logits = model.decode(z.flatten(0, 1)).view(m, *x.shape)
                target = x.expand(m, *x.shape)
                log_px = -F.binary_cross_entropy_with_logits(logits, target, reduction="none")
                log_pz = -0.5 * (z.square() + LOG_2PI).sum(-1)
                log_qz = -0.5 * (eps.square() + logvar + LOG_2PI).sum(-1)
                log_weights.append(log_px.flatten(2).sum(-1) + log_pz - log_qz)
            bound = torch.logsumexp(torch.cat(log_weights).double(), dim=0) - math.log(k)
            total += bound.sum()
    return total.item() / len(split)


class VAETask(Task):
    name = "vae"
    metric = "val_elbo"
    direction = "maximize"
    hparams_type = VAEHParams
    options_type = VAEOptions

    def __init__(self, options: VAEOptions | None = None) -> None:
        self.options = options or VAEOptions()

    def search_space(self) -> SearchSpace:
        return space_from(
            VAEHParams,
            [
                *optimizer_params(lr=(1e-4, 1e-2), weight_decay=(1e-7, 1e-3), nesterov=False),
                Param(
                    "latent_dim",
                    "categorical",
                    choices=(4, 8, 16, 32, 64),
                    allowed=(1, 2, 4, 8, 16, 32, 64, 128, 256),
                ),
                Param(
                    "base_width",
                    "categorical",
                    choices=(16, 32, 48, 64),
                    allowed=(4, 8, 16, 24, 32, 48, 64, 96, 128),
                ),
                Param("depth", "int", 1, 3, supported=Bounds(1, 5)),
                Param(
                    "fc_width",
                    "categorical",
                    choices=(0, 128, 256, 512),
                    allowed=(0, 32, 64, 128, 256, 512, 1024),
                ),
                Param("kl_warmup_epochs", "int", 0, 10, supported=Bounds(0, 1000)),
                Param("beta", "float", 0.25, 4.0, log=True, supported=above(0.0, 100.0)),
            ],
        )

    def build(
        self, hp: VAEHParams, data: DataBundle, device: torch.device, budget: TrialBudget
    ) -> Parts:
        config = VAEConfig(
            **fields_of(VAEArchitecture, hp),
            in_channels=data.channels,
            image_size=data.image_size,
        )
        model = VAE(config).to(device)
        optimizer = optimizer_for(hp, model.parameters())
        return Parts(modules={"model": model}, optimizers={"optimizer": optimizer})

    def train_step(
        self, parts: Parts, hp: VAEHParams, x: torch.Tensor, y: torch.Tensor, ctx: StepContext
    ) -> dict[str, torch.Tensor]:
        model, optimizer = parts.modules["model"], parts.optimizers["optimizer"]
        model.train()
        weight = kl_weight(hp, ctx.progress)
        noise = torch.randn((len(x), hp.latent_dim), generator=ctx.generator, device=x.device)
        recon, kl = elbo_terms(model, x, noise)
        loss = (recon + weight * kl).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        recon, kl = recon.detach().mean(), kl.detach().mean()
        return {
            "train_loss": loss.detach(),
            "train_elbo": -(recon + kl),
            "train_recon": recon,
            "train_kl": kl,
            "train_kl_weight": torch.tensor(weight),
        }

    def evaluate(
        self, parts: Parts, hp: VAEHParams, data: DataBundle, split: Split, ctx: StepContext
    ) -> dict[str, float]:
        scores = evaluate_elbo(parts.modules["model"], split)
        dims = data.channels * data.image_size[0] * data.image_size[1]
        return {
            "val_elbo": scores["elbo"],
            "val_recon": scores["recon"],
            "val_kl": scores["kl"],
            "val_bits_per_dim": -scores["elbo"] / (dims * math.log(2)),
        }

    def metrics(self) -> tuple[MetricInfo, ...]:
        return (
            MetricInfo("val_elbo", "maximize", description="the beta = 1 ELBO, nats/image"),
            MetricInfo("val_recon", "minimize", description="distortion: reconstruction nats"),
            MetricInfo("val_kl", "minimize", description="rate: KL to the prior, nats"),
            MetricInfo("val_bits_per_dim", "minimize", description="-ELBO in bits/dimension"),
            MetricInfo("params", "minimize", static=True, description="parameter count"),
        )

    def static_metrics(self, parts: Parts, data: DataBundle) -> dict[str, float]:
        return {"params": float(count_parameters(parts.modules["model"]))}

    def serving_model(self, parts: Parts, data: DataBundle, seed: int) -> ServingModel:
        """The decoder: latent codes -> mean images, the VAE's generative half."""
        model = parts.modules["model"].to("cpu").eval()
        example = latent_example(model.config.latent_dim, seed)
        return ServingModel(model.mean_decoder().eval(), example, "vae-decoder")

    def finalize(self, parts: Parts, hp: VAEHParams, data: DataBundle) -> Finalization:
        model = parts.modules["model"]
        k = self.options.iwae_k
        generator = torch.Generator(device=data.val.x.device).manual_seed(SAMPLE_SEED)
        iwae = iwae_bound(model, data.val, k, generator)
        return Finalization(
            metrics={"val_iwae_k": iwae, "iwae_k": float(k)},
            artifacts={
                "reconstructions.png": reconstructions_png(model, data.val),
                "prior_samples.png": prior_samples_png(model, data.val.x.device),
                "interpolations_linear.png": interpolations_png(model, data.val),
            },
        )


def _grid_png(images: torch.Tensor, nrow: int, min_size: int = 32) -> bytes:
    """A PNG grid; images smaller than `min_size` pixels are enlarged (nearest) to be seen."""
    factor = math.ceil(min_size / min(images.shape[-2:]))
    if factor > 1:
        images = F.interpolate(images, scale_factor=factor, mode="nearest")
    return image_grid_png(images, nrow=nrow)


def _mean_image(model: VAE, z: torch.Tensor) -> torch.Tensor:
    """The decoder's mean image sigmoid(logits)."""
    return torch.sigmoid(model.decode(z))


def reconstructions_png(model: VAE, split: Split, count: int = 32, cols: int = 8) -> bytes:
    """The first `count` images of the split, each row of them followed by a row of their
    reconstructions (decoded posterior means)."""
    cols = min(cols, len(split))
    count = min(count, len(split)) // cols * cols
    model.eval()
    with torch.inference_mode():
        x = split.x[:count]
        mu, _ = model.encode(x)
        recon = _mean_image(model, mu)
    rows = torch.stack([x.view(-1, cols, *x.shape[1:]), recon.view(-1, cols, *x.shape[1:])], 1)
    return _grid_png(rows.flatten(0, 2), nrow=cols)


def prior_samples_png(
    model: VAE, device: torch.device, count: int = 64, seed: int = SAMPLE_SEED
) -> bytes:
    """Mean images of `count` codes drawn from the prior N(0, I) with a fixed seed."""
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.inference_mode():
        z = torch.randn((count, model.config.latent_dim), generator=generator, device=device)
        images = _mean_image(model, z)
    return _grid_png(images, nrow=8)


def interpolations_png(model: VAE, split: Split, pairs: int = 8, steps: int = 10) -> bytes:
    """Linear interpolation between the posterior means of validation images 2i and 2i + 1.

    One row per pair: the first image, `steps` decoded points from its code to the other's
    (both ends included), then the second image.
    """
    pairs = max(1, min(pairs, len(split) // 2))
    model.eval()
    with torch.inference_mode():
        x = split.x[: 2 * pairs]
        mu, _ = model.encode(x)
        start, end = mu[0::2], mu[1::2]
        t = torch.linspace(0, 1, steps, device=mu.device).view(1, steps, 1)
        z = start[:, None] * (1 - t) + end[:, None] * t  # (pairs, steps, D)
        path = _mean_image(model, z.flatten(0, 1)).view(pairs, steps, *x.shape[1:])
        rows = torch.cat([x[0::2, None], path, x[1::2, None]], dim=1)
    return _grid_png(rows.flatten(0, 1), nrow=steps + 2)
