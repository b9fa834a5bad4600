"""A convolutional variational auto-encoder, shaped from the data set it will see."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

LOGVAR_RANGE = (-30.0, 20.0)
"""Clamp of the encoder's log-variances, so exp() stays finite whatever the weights."""


@dataclass(frozen=True)
class VAEArchitecture:
    """The tunable shape of a `VAE` (the `vae` task searches these fields)."""

    latent_dim: int = 16
    """Dimension of the latent code z."""
    base_width: int = 32
    """Channels of the first encoder block (doubling per block; the decoder mirrors them)."""
    depth: int = 2
    """Convolution blocks in the encoder and in the decoder; each halves (or doubles) the
    resolution while it is at least 2 pixels."""
    fc_width: int = 0
    """Width of a hidden fully connected layer between the feature map and z (0 = none)."""


@dataclass(frozen=True, kw_only=True)
class VAEConfig(VAEArchitecture):
    """Everything a `VAE` is built from: its architecture and the images it will see."""

    in_channels: int
    """Image channels (1 grey, 3 colour)."""
    image_size: tuple[int, int]
    """Image height and width."""


def _stride2_conv(c_in: int, c_out: int) -> nn.Conv2d:
    # kernel 4, stride 2, padding 1: H -> floor(H / 2)
    return nn.Conv2d(c_in, c_out, 4, stride=2, padding=1)


def _stride2_deconv(c_in: int, c_out: int, size_in: tuple[int, int], size_out: tuple[int, int]):
    # kernel 4, stride 2, padding 1: H -> 2H (+ 1 when the encoder floored an odd size)
    pad = (size_out[0] - 2 * size_in[0], size_out[1] - 2 * size_in[1])
    return nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1, output_padding=pad)


class VAE(nn.Module):
    """Encoder q(z|x) = N(mu, diag(exp(logvar))) and decoder p(x|z) giving per-pixel logits.

    The encoder's stride-2 convolutions (with ReLU) halve the resolution per block and the
    decoder's transposed convolutions restore the exact input size (odd sizes such as 7 included);
    blocks past a 1-pixel map keep the resolution with 3x3 convolutions.
    """

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        if config.depth < 1 or config.latent_dim < 1 or config.base_width < 1:
            raise ValueError("depth, latent_dim and base_width must be positive")
        self.config = config
        sizes = [tuple(config.image_size)]
        widths = [config.in_channels]
        encoder: list[nn.Module] = []
        for b in range(config.depth):
            c_in, c_out, (h, w) = widths[-1], config.base_width * 2**b, sizes[-1]
            if min(h, w) >= 2:
                encoder.append(_stride2_conv(c_in, c_out))
                sizes.append((h // 2, w // 2))
            else:
                encoder.append(nn.Conv2d(c_in, c_out, 3, padding=1))
                sizes.append((h, w))
            encoder.append(nn.ReLU(inplace=True))
            widths.append(c_out)
        self.feature_shape = (widths[-1], *sizes[-1])
        flat = widths[-1] * sizes[-1][0] * sizes[-1][1]
        encoder.append(nn.Flatten())
        hidden = flat
        if config.fc_width > 0:
            encoder += [nn.Linear(flat, config.fc_width), nn.ReLU(inplace=True)]
            hidden = config.fc_width
        self.encoder = nn.Sequential(*encoder)
        self.to_posterior = nn.Linear(hidden, 2 * config.latent_dim)

        project: list[nn.Module] = []
        if config.fc_width > 0:
            project += [nn.Linear(config.latent_dim, config.fc_width), nn.ReLU(inplace=True)]
            project += [nn.Linear(config.fc_width, flat)]
        else:
            project.append(nn.Linear(config.latent_dim, flat))
        project.append(nn.ReLU(inplace=True))
        self.project = nn.Sequential(*project)
        decoder: list[nn.Module] = []
        for b in reversed(range(config.depth)):
            c_in, c_out = widths[b + 1], widths[b]
            size_in, size_out = sizes[b + 1], sizes[b]
            if size_in == size_out:
                decoder.append(nn.Conv2d(c_in, c_out, 3, padding=1))
            else:
                decoder.append(_stride2_deconv(c_in, c_out, size_in, size_out))
            if b > 0:  # the last layer gives logits
                decoder.append(nn.ReLU(inplace=True))
        self.decoder = nn.Sequential(*decoder)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance, each (N, latent_dim), of images (N, C, H, W)."""
        mu, logvar = self.to_posterior(self.encoder(x)).chunk(2, dim=1)
        return mu, logvar.clamp(*LOGVAR_RANGE)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Per-pixel Bernoulli logits (N, C, H, W) of latent codes (N, latent_dim)."""
        return self.decoder(self.project(z).view(-1, *self.feature_shape))

    def mean_decoder(self) -> nn.Sequential:
        """The generative half as plain torch layers sharing these weights: latent codes
        (N, latent_dim) -> mean images sigmoid(logits) in [0, 1]."""
        return nn.Sequential(
            self.project, nn.Unflatten(1, self.feature_shape), self.decoder, nn.Sigmoid()
        )

    def forward(
        self, x: torch.Tensor, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits of x reconstructed from z = mu + sigma * noise, with mu and logvar.

        `noise` is standard normal noise shaped like mu (None = the posterior mean, no noise);
        the caller draws it, so the random stream stays the caller's.
        """
        mu, logvar = self.encode(x)
        z = mu if noise is None else mu + torch.exp(0.5 * logvar) * noise
        return self.decode(z), mu, logvar
