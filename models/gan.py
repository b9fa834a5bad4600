"""DCGAN-style generator and discriminator, shaped from the images they will make and judge.

Both networks share one resolution ladder: the image size is halved while it stays even and at
least 2 pixels (at most `max_upsamplings` times), so 8x8 images start from 2x2, 28x28 from 7x7
and 32x32 from 4x4. The generator climbs the ladder with strided transposed convolutions and
ends in tanh (images in [-1, 1]); the discriminator climbs down it with strided convolutions
and ends in one unbounded score per image (a logit, or a WGAN critic value).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

NORMS = ("none", "batch", "layer", "instance")


def resolution_ladder(image_size: tuple[int, int], max_steps: int) -> list[tuple[int, int]]:
    """Resolutions from the smallest to the image's own, each twice the one before."""
    h, w = image_size
    ladder = [(h, w)]
    while len(ladder) <= max_steps and h % 2 == 0 and w % 2 == 0 and min(h, w) // 2 >= 2:
        h, w = h // 2, w // 2
        ladder.append((h, w))
    return ladder[::-1]


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of a `Generator`."""

    out_channels: int
    """Image channels (1 grey, 3 colour)."""
    image_size: tuple[int, int]
    """Image height and width."""
    latent_dim: int = 64
    """Length of the Gaussian latent vector."""
    width: int = 32
    """Channels of the last hidden map (half the image size); doubled at each smaller one."""
    max_upsamplings: int = 3
    """Most 2x up-samplings between the first feature map and the image."""


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Architecture of a `Discriminator`."""

    in_channels: int
    """Image channels (1 grey, 3 colour)."""
    image_size: tuple[int, int]
    """Image height and width."""
    width: int = 32
    """Channels of the first convolution; doubled at each smaller resolution."""
    max_downsamplings: int = 3
    """Most 2x down-samplings between the image and the last feature map."""
    norm: str = "layer"
    """Normalisation after each inner convolution: none, batch, layer or instance (batch norm
    mixes samples, so it is wrong under a per-sample gradient penalty such as WGAN-GP or R1)."""


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":  # over channels and positions of each sample
        return nn.GroupNorm(1, channels)
    if kind == "instance":
        return nn.GroupNorm(channels, channels, affine=True)
    return nn.Identity()


class Generator(nn.Module):
    """Latent -> linear -> [transposed conv, batch norm, ReLU] -> transposed conv -> tanh."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        ladder = resolution_ladder(config.image_size, config.max_upsamplings)
        steps = len(ladder) - 1
        # Hidden maps stop at half the image size; the last up-sampling makes the image itself.
        widths = [config.width * 2 ** max(0, steps - 1 - i) for i in range(max(1, steps))]
        h0, w0 = ladder[0]
        self.start_shape = (widths[0], h0, w0)
        self.project = nn.Sequential(
            nn.Linear(config.latent_dim, widths[0] * h0 * w0, bias=False),
            nn.BatchNorm1d(widths[0] * h0 * w0),
            nn.ReLU(inplace=True),
        )
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
            ]
        if steps:
            layers.append(
                nn.ConvTranspose2d(widths[-1], config.out_channels, 4, stride=2, padding=1)
            )
        else:  # an odd-sized image: the projection is already at full resolution
            layers.append(nn.Conv2d(widths[-1], config.out_channels, 3, padding=1))
        layers.append(nn.Tanh())
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.body(self.project(z).view(len(z), *self.start_shape))


class Discriminator(nn.Module):
    """[strided conv, norm (not on the first), LeakyReLU] -> flatten -> one linear score."""

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        if config.norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, not {config.norm!r}")
        self.config = config
        ladder = resolution_ladder(config.image_size, config.max_downsamplings)[::-1]
        layers: list[nn.Module] = []
        c_in = config.in_channels
        for i in range(len(ladder) - 1):
            c_out = config.width * 2**i
            layers.append(nn.Conv2d(c_in, c_out, 4, stride=2, padding=1, bias=i == 0))
            if i > 0:
                layers.append(_norm(config.norm, c_out))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            c_in = c_out
        if not layers:  # an odd-sized image: one unstrided convolution instead
            layers = [nn.Conv2d(c_in, config.width, 3, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            c_in = config.width
        h, w = ladder[-1]
        self.features = nn.Sequential(*layers)
        self.score = nn.Sequential(nn.Flatten(), nn.Linear(c_in * h * w, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One score per image, shape (N,)."""
        return self.score(self.features(x)).squeeze(1)
