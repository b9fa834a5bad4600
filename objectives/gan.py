"""Task `gan`: a DCGAN-style image generator; minimise the Frechet distance to real images.

The objective is the Frechet distance between `fid_samples` generated images and the real
validation images, in one feature space chosen per task instance (see `objectives.fid`):
`fid_inception` (standard FID) or `fd_classifier` (a small classifier trained on the data set;
the default without a CUDA GPU and Inception weights). The metric carries the space's name,
so values from different spaces are never compared.

One epoch is one pass of the real training images through the discriminator: every batch is a
discriminator step, and every `d_steps`-th batch is also a generator step. Losses:

- `ns`: non-saturating GAN loss; real targets smoothed to 1 - `label_smoothing` (one-sided),
  optionally with an R1 penalty (`r1_weight`/2 * E||grad_x D(x_real)||^2).
- `wgan-gp`: Wasserstein critic with a gradient penalty (`gp_weight`) on interpolates.

The discriminator uses batch norm only for `ns` without R1; a per-sample gradient penalty
needs per-sample normalisation, so WGAN-GP and R1 use layer norm.

Both networks see images in [-1, 1] (the task scales the data); generated images go back to
[0, 1] for the feature spaces. Distances and sample grids use the generator in eval mode and
latents from fixed seeds, so every epoch is judged on the same latents; training draws all its
randomness from the trial's generator. The final distance uses `final_fid_samples` generated
images, capped by the number of real validation images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tunelab.models.gan import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
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
from tunelab.objectives.fid import (
    FeatureSpace,
    RealReference,
    distances,
    inception_weights_path,
    make_feature_space,
    real_reference,
    resolve_feature_space,
)
from tunelab.objectives.images import image_grid_png
from tunelab.objectives.metrics import MetricInfo, module_metrics
from tunelab.objectives.space import Bounds, Param, SearchSpace, above, fraction, space_from
from tunelab.objectives.training import Diverged

LOSSES = ("ns", "wgan-gp")
COLLAPSE_RATIO = 0.1
"""Mode collapse: generated per-pixel std below this fraction of the real images' std."""
FIXED_NOISE_SEED = 1234
"""Seed of the fixed latent batch drawn for the per-epoch sample grids."""
EVAL_NOISE_SEED = 4321
"""Seed of the latents of the per-epoch distance (the same latents every epoch)."""
FINAL_NOISE_SEED = 8765
"""Seed of the latents of the final distance and interpolations."""
GRID = 8
"""Sample grids are GRID x GRID images."""
GENERATE_BATCH = 500
KID_SUBSETS = 20
"""KID subsets per epoch (torch-fidelity's 100 for the final evaluation)."""


@dataclass(frozen=True)
class GANOptions:
    """Settings of the GAN task that are not searched."""

    feature_space: str = "auto"
    """fid_inception, fd_classifier, or auto (fid_inception with a CUDA GPU and Inception
    weights at hand: a local file or torch-fidelity's cache; otherwise fd_classifier)."""
    inception_weights: str | None = None
    """Local Inception-v3 weights file (default $TUNELAB_INCEPTION_WEIGHTS, else download)."""
    fid_samples: int = 2000
    """Generated samples for the per-epoch distance (the objective and pruning value)."""
    final_fid_samples: int = 10000
    """Generated samples for the final distance of the best epoch, capped by the number of
    real validation images; the number used is logged as `final_fid_samples`."""
    cache_dir: str | None = None
    """Cache folder of the fd_classifier weights (default $TUNELAB_CACHE or ~/.cache/tunelab)."""


@dataclass(frozen=True)
class GANHParams:
    """Hyperparameters of one GAN trial."""

    latent_dim: int = 64
    """Length of the Gaussian latent vector."""
    g_width: int = 32
    """Generator channels at half the image size (doubled at each smaller resolution)."""
    d_width: int = 32
    """Discriminator channels after its first convolution (doubled at each down-sampling)."""
    lr_g: float = 5e-4
    """Generator Adam learning rate."""
    lr_d: float = 5e-4
    """Discriminator Adam learning rate."""
    beta1: float = 0.5
    """Adam beta1 of both optimizers."""
    beta2: float = 0.999
    """Adam beta2 of both optimizers."""
    batch_size: int = 32
    """Batch size of real and of generated images."""
    d_steps: int = 1
    """Discriminator steps per generator step."""
    loss: str = "ns"
    """ns (non-saturating) or wgan-gp."""
    label_smoothing: float = 0.1
    """One-sided label smoothing: real targets are 1 - this (ns only)."""
    r1: bool = False
    """R1 gradient penalty on real images (ns only)."""
    r1_weight: float = 1.0
    """R1 weight gamma; the penalty is gamma / 2 * E||grad D(x)||^2 (with r1)."""
    gp_weight: float = 10.0
    """Gradient-penalty weight lambda (wgan-gp only)."""


def _to_unit(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> images in [0, 1]."""
    return ((images + 1) / 2).clamp(0, 1)


def _grid_png(images: torch.Tensor, nrow: int = GRID) -> bytes:
    """Images in [0, 1] as a PNG grid, small images enlarged (nearest) to at least 32 pixels."""
    scale = math.ceil(32 / min(images.shape[-2:]))
    if scale > 1:
        images = F.interpolate(images, scale_factor=scale, mode="nearest")
    return image_grid_png(images, nrow=nrow)


def _slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between latent rows a and b at fractions t: (rows, steps, d)."""
    a, b, t = a[:, None], b[:, None], t[None, :, None]
    cos = F.cosine_similarity(a, b, dim=-1)[..., None].clamp(-1 + 1e-7, 1 - 1e-7)
    omega = torch.acos(cos)
    return (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)


class GANTask(Task):
    """DCGAN on the data set's images, scored by a Frechet distance (lower is better).

    Mode collapse: after every epoch the per-pixel standard deviation across the generated
    evaluation samples (fixed latents), averaged over pixels, is compared with the same
    statistic of the real validation images. Below `COLLAPSE_RATIO` (0.1) of it, the generator
    makes (nearly) one image whatever the latent, and `evaluate` raises
    `Diverged("mode collapse: ...")`: the trial is pruned with that fail_reason. The ratio is
    logged every epoch as `sample_diversity`.
    """

    name = "gan"
    direction = "minimize"
    hparams_type = GANHParams
    options_type = GANOptions

    def __init__(self, options: GANOptions | None = None) -> None:
        self.options = options or GANOptions()
        if self.options.fid_samples < 2 or self.options.final_fid_samples < 2:
            raise ValueError("fid_samples and final_fid_samples must be at least 2")
        self.inception_weights = inception_weights_path(self.options.inception_weights)
        self.metric = resolve_feature_space(self.options.feature_space, self.inception_weights)
        self._space: tuple[DataBundle, FeatureSpace] | None = None
        self._references: dict[int, tuple[Split, RealReference, float]] = {}

    def search_space(self) -> SearchSpace:
        ns = ("loss", ("ns",))
        widths = (8, 16, 24, 32, 48, 64, 96, 128)
        latents = (8, 16, 32, 64, 100, 128, 256)
        batches = (16, 32, 64, 128, 256)
        lr, weight = above(0.0, 1.0), above(0.0, 1000.0)  # what the code supports
        return space_from(
            GANHParams,
            [
                Param("latent_dim", "categorical", choices=(32, 64, 128), allowed=latents),
                Param("g_width", "categorical", choices=(16, 32, 64), allowed=widths),
                Param("d_width", "categorical", choices=(16, 32, 64), allowed=widths),
                Param("lr_g", "float", 5e-5, 2e-3, log=True, supported=lr),
                Param("lr_d", "float", 5e-5, 2e-3, log=True, supported=lr),
                Param("beta1", "float", 0.0, 0.9, supported=fraction()),
                Param("beta2", "float", 0.9, 0.999, supported=fraction()),
                Param("batch_size", "categorical", choices=(32, 64, 128), allowed=batches),
                Param("d_steps", "int", 1, 5, supported=Bounds(1, 20)),
                Param("loss", "categorical", choices=LOSSES),
                Param("label_smoothing", "float", 0.0, 0.3, when=ns, supported=fraction()),
                Param("r1", "categorical", choices=(False, True), when=ns),
                Param(
                    "r1_weight",
                    "float",
                    0.1,
                    20.0,
                    log=True,
                    when=("r1", (True,)),
                    supported=weight,
                ),
                Param(
                    "gp_weight",
                    "float",
                    1.0,
                    50.0,
                    log=True,
                    when=("loss", ("wgan-gp",)),
                    supported=weight,
                ),
            ],
        )

    # -- the feature space and the real images' statistics, once per process ---------------

    def _feature_space(self, data: DataBundle) -> FeatureSpace:
        """The feature space of this data set (the classifier trained or loaded once)."""
        if self._space is None or self._space[0] is not data:
            # the feature model belongs to the data set, not to a re-split of it
            space = make_feature_space(
                self.metric, data.source or data, self.options.cache_dir, self.inception_weights
            )
            self._space, self._references = (data, space), {}
        return self._space[1]

    def _reference(
        self, data: DataBundle, split: Split
    ) -> tuple[FeatureSpace, RealReference, float]:
        """The feature space, the real images' features and statistics in it, and their mean
        per-pixel std, for one split (computed once per split)."""
        space = self._feature_space(data)
        if id(split) not in self._references:
            pixel_std = split.x.std(dim=0).mean().item()
            self._references[id(split)] = (split, real_reference(space, split.x), pixel_std)
        _, reference, pixel_std = self._references[id(split)]
        return space, reference, pixel_std

    def trial_tags(self, data: DataBundle) -> dict[str, str]:
        space = self._feature_space(data)
        return {"tunelab.feature_space": space.name, **space.tags()}

    # -- the trial's steps -----------------------------------------------------------------

    def build(
        self, hp: GANHParams, data: DataBundle, device: torch.device, budget: TrialBudget
    ) -> Parts:
        if hp.loss not in LOSSES:
            raise ValueError(f"unknown GAN loss {hp.loss!r}; known: {', '.join(LOSSES)}")
        self._feature_space(data)  # RNG-neutral: trains or loads the classifier
        generator = Generator(
            GeneratorConfig(data.channels, data.image_size, hp.latent_dim, hp.g_width)
        ).to(device)
        norm = "batch" if hp.loss == "ns" and not hp.r1 else "layer"
        discriminator = Discriminator(
            DiscriminatorConfig(data.channels, data.image_size, hp.d_width, norm=norm)
        ).to(device)
        betas = (hp.beta1, hp.beta2)
        fixed = torch.Generator().manual_seed(FIXED_NOISE_SEED)
        return Parts(
            modules={"generator": generator, "discriminator": discriminator},
            optimizers={
                "generator": torch.optim.Adam(generator.parameters(), hp.lr_g, betas=betas),
                "discriminator": torch.optim.Adam(discriminator.parameters(), hp.lr_d, betas=betas),
            },
            extra={
                "fixed_noise": torch.randn(GRID * GRID, hp.latent_dim, generator=fixed).to(device)
            },
        )

    def train_step(
        self, parts: Parts, hp: GANHParams, x: torch.Tensor, y: torch.Tensor, ctx: StepContext
    ) -> dict[str, torch.Tensor]:
        """One discriminator step, and a generator step every `d_steps`-th step. Returns
        train_d_loss and train_d_accuracy (ns: real logits > 0 and fake < 0) or
        train_critic_gap (wgan-gp: mean critic score of real minus fake images), and
        train_g_loss on the steps that have one."""
        gen, disc = parts.modules["generator"], parts.modules["discriminator"]
        opt_g, opt_d = parts.optimizers["generator"], parts.optimizers["discriminator"]
        gen.train()
        disc.train()

        def noise(n: int) -> torch.Tensor:
            return torch.randn(n, hp.latent_dim, generator=ctx.generator, device=x.device)

        real = x * 2 - 1
        with torch.no_grad():
            fake = gen(noise(len(real)))
        loss, extra = self._discriminator_loss(disc, real, fake, hp, ctx.generator)
        opt_d.zero_grad(set_to_none=True)
        loss.backward()
        opt_d.step()
        extra_name = "train_d_accuracy" if hp.loss == "ns" else "train_critic_gap"
        metrics = {"train_d_loss": loss.detach(), extra_name: extra}
        if ctx.step % hp.d_steps == 0:
            scores = disc(gen(noise(len(real))))
            g_loss = F.softplus(-scores).mean() if hp.loss == "ns" else -scores.mean()
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            metrics["train_g_loss"] = g_loss.detach()
        return metrics

    @staticmethod
    def _discriminator_loss(
        disc: Discriminator,
        real: torch.Tensor,
        fake: torch.Tensor,
        hp: GANHParams,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The discriminator's loss and its diagnostic (accuracy or critic gap), detached."""
        if hp.loss == "ns":
            real = real.requires_grad_(hp.r1)
            real_scores, fake_scores = disc(real), disc(fake)
            target = torch.full_like(real_scores, 1.0 - hp.label_smoothing)
            loss = F.binary_cross_entropy_with_logits(real_scores, target)
            loss = loss + F.softplus(fake_scores).mean()  # BCE with target 0
            if hp.r1:
                (grad,) = torch.autograd.grad(real_scores.sum(), real, create_graph=True)
                loss = loss + hp.r1_weight / 2 * grad.square().sum(dim=(1, 2, 3)).mean()
            correct = (real_scores > 0).float().mean() + (fake_scores < 0).float().mean()
            return loss, correct.detach() / 2
        real_scores, fake_scores = disc(real), disc(fake)
        eps = torch.rand(len(real), 1, 1, 1, generator=generator, device=real.device)
        mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(disc(mixed).sum(), mixed, create_graph=True)
        penalty = (grad.flatten(1).norm(dim=1) - 1).square().mean()
        gap = real_scores.mean() - fake_scores.mean()
        return -gap + hp.gp_weight * penalty, gap.detach()

    @staticmethod
    def _generate(gen: Generator, n: int, latent: int, seed: int, device: torch.device):
        """n images in [0, 1] from latents of a fixed seed, generator in eval mode."""
        noise_source = torch.Generator().manual_seed(seed)
        z = torch.randn(n, latent, generator=noise_source).to(device)
        gen.eval()
        with torch.inference_mode():
            return torch.cat(
                [_to_unit(gen(z[i : i + GENERATE_BATCH])) for i in range(0, n, GENERATE_BATCH)]
            )

    def evaluate(
        self, parts: Parts, hp: GANHParams, data: DataBundle, split: Split, ctx: StepContext
    ) -> dict[str, float]:
        space, reference, real_std = self._reference(data, split)
        images = self._generate(
            parts.modules["generator"],
            self.options.fid_samples,
            hp.latent_dim,
            EVAL_NOISE_SEED,
            split.x.device,
        )
        diversity = images.std(dim=0).mean().item() / max(real_std, 1e-12)
        if diversity < COLLAPSE_RATIO:
            raise Diverged(
                f"mode collapse: generated per-pixel std is {diversity:.3g} of the real images' "
                f"(< {COLLAPSE_RATIO}) in epoch {ctx.epoch}"
            )
        metrics = distances(space, reference, images, kid_subsets=KID_SUBSETS)
        return {**metrics, "sample_diversity": diversity}

    def epoch_artifacts(
        self, parts: Parts, hp: GANHParams, data: DataBundle, ctx: StepContext
    ) -> dict[str, bytes]:
        return {f"samples/epoch_{ctx.epoch:03d}.png": self._fixed_grid(parts)}

    @staticmethod
    def _fixed_grid(parts: Parts) -> bytes:
        gen = parts.modules["generator"]
        gen.eval()
        with torch.inference_mode():
            return _grid_png(_to_unit(gen(parts.extra["fixed_noise"])))

    def metrics(self) -> tuple[MetricInfo, ...]:
        return (
            MetricInfo(self.metric, "minimize", description="Frechet distance of samples"),
            MetricInfo("g_params", "minimize", static=True, description="generator parameters"),
            MetricInfo("g_macs", "minimize", static=True, description="generator MACs/sample"),
            MetricInfo(
                "g_latency_ms", "minimize", static=True, description="sampling ms/image, measured"
            ),
        )

    def static_metrics(self, parts: Parts, data: DataBundle) -> dict[str, float]:
        generator = parts.modules["generator"]
        noise = torch.Generator().manual_seed(FIXED_NOISE_SEED)  # the trial's streams untouched
        latent = torch.randn(8, generator.config.latent_dim, generator=noise)
        latent = latent.to(data.val.x.device)
        return module_metrics(generator, latent, prefix="g_")

    def serving_model(self, parts: Parts, data: DataBundle, seed: int) -> ServingModel:
        """The generator: latent codes -> images in [-1, 1]."""
        generator = parts.modules["generator"].to("cpu").eval()
        example = latent_example(generator.config.latent_dim, seed)
        return ServingModel(generator, example, "generator")

    def finalize(self, parts: Parts, hp: GANHParams, data: DataBundle) -> Finalization:
        space, reference, _ = self._reference(data, data.val)
        gen = parts.modules["generator"]
        device = data.val.x.device
        n = min(self.options.final_fid_samples, len(data.val))
        images = self._generate(gen, n, hp.latent_dim, FINAL_NOISE_SEED, device)
        metrics = distances(space, reference, images)
        # Interpolations: each row walks between two random latents.
        source = torch.Generator().manual_seed(FINAL_NOISE_SEED + 1)
        ends = torch.randn(2, GRID, hp.latent_dim, generator=source)
        path = _slerp(ends[0], ends[1], torch.linspace(0, 1, GRID + 2)).to(device)
        gen.eval()
        with torch.inference_mode():
            walk = _to_unit(gen(path.reshape(-1, hp.latent_dim)))
        return Finalization(
            metrics={
                **{f"final_{name}": value for name, value in metrics.items()},
                "final_fid_samples": float(len(images)),
            },
            artifacts={
                "samples.png": self._fixed_grid(parts),
                "interpolations.png": _grid_png(walk, nrow=GRID + 2),
            },
        )
