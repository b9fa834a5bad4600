"""A configurable convolutional classifier, shaped from the data set it will see."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class CNNArchitecture:
    """The tunable shape of a `CNN` (the `cnn` task searches these fields)."""

    conv_blocks: int = 2
    """Convolution blocks; each doubles the width and halves the resolution while it can."""
    convs_per_block: int = 2
    """Convolutions inside each block."""
    base_width: int = 32
    """Channels of the first block."""
    kernel_size: int = 3
    """Convolution kernel size (odd; padded to keep the resolution)."""
    batch_norm: bool = True
    """Batch normalisation after each convolution."""
    pooling: str = "max"
    """Down-sampling at the end of each block: max or avg."""
    dropout: float = 0.25
    """Dropout before each fully connected layer."""
    fc_width: int = 128
    """Width of the hidden fully connected layer (0 = none)."""


@dataclass(frozen=True, kw_only=True)
class CNNConfig(CNNArchitecture):
    """Everything a `CNN` is built from: its architecture and the data it will see."""

    in_channels: int
    """Image channels (1 grey, 3 colour)."""
    image_size: tuple[int, int]
    """Image height and width."""
    num_classes: int
    """Number of output classes."""
    input_mean: tuple[float, ...] = (0.0,)
    """Per-channel mean subtracted from inputs in [0, 1]."""
    input_std: tuple[float, ...] = (1.0,)
    """Per-channel standard deviation dividing inputs."""


def _conv_block(c_in: int, c_out: int, config: CNNConfig, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(config.convs_per_block):
        layers.append(
            nn.Conv2d(
                c_in if i == 0 else c_out,
                c_out,
                config.kernel_size,
                padding=config.kernel_size // 2,
                bias=not config.batch_norm,
            )
        )
        if config.batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
    if pool:
        layers.append(nn.MaxPool2d(2) if config.pooling == "max" else nn.AvgPool2d(2))
    return nn.Sequential(*layers)


class CNN(nn.Module):
    """Conv blocks (conv, batch norm, ReLU, pooling), then dropout and a fully connected head."""

    def __init__(self, config: CNNConfig) -> None:
        super().__init__()
        if config.pooling not in ("max", "avg"):
            raise ValueError(f"pooling must be max or avg, not {config.pooling!r}")
        self.config = config
        channels = len(config.input_mean)
        self.register_buffer("mean", torch.tensor(config.input_mean).view(1, channels, 1, 1))
        self.register_buffer("std", torch.tensor(config.input_std).view(1, channels, 1, 1))
        h, w = config.image_size
        blocks, c_in = [], config.in_channels
        for b in range(config.conv_blocks):
            c_out = config.base_width * 2**b
            pool = min(h, w) >= 2
            blocks.append(_conv_block(c_in, c_out, config, pool))
            if pool:
                h, w = h // 2, w // 2
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        flat = c_in * h * w
        head: list[nn.Module] = [nn.Flatten(), nn.Dropout(config.dropout)]
        if config.fc_width > 0:
            head += [nn.Linear(flat, config.fc_width), nn.ReLU(inplace=True)]
            head += [nn.Dropout(config.dropout)]
            flat = config.fc_width
        head.append(nn.Linear(flat, config.num_classes))
        self.head = nn.Sequential(*head)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (the input of the last linear layer)."""
        z = self.features((x - self.mean) / self.std)
        return self.head[:-1](z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head[-1](self.embed(x))
