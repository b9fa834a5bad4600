"""Batched on-device augmentation: rotation, horizontal flip and padded random crop.

All three are one affine transform per image, so a whole batch is augmented by a single
`affine_grid` + `grid_sample` on the device that holds it, instead of per-sample PIL work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """Strength of each augmentation; 0 turns it off."""

    rotation: float = 0.0
    """Maximum rotation in degrees (uniform in [-rotation, rotation])."""
    hflip: float = 0.0
    """Probability of a horizontal flip."""
    crop_padding: int = 0
    """Padding in pixels of a random crop back to the original size (a shift of up to this)."""

    @property
    def active(self) -> bool:
        return self.rotation > 0 or self.hflip > 0 or self.crop_padding > 0


def augment_batch(
    x: torch.Tensor, config: AugmentConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Augment a batch (N, C, H, W) with independent random parameters per image; the result
    keeps the batch's memory format (channels-last stays channels-last)."""
    if not config.active:
        return x
    n, _, h, w = x.shape
    opts = {"device": x.device, "dtype": x.dtype}

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, **opts)

    angle = (uniform(n) * 2 - 1) * math.radians(config.rotation)
    cos, sin = torch.cos(angle), torch.sin(angle)
    flip = torch.where(uniform(n) < config.hflip, -1.0, 1.0).to(x.dtype)
    # Whole-pixel shifts; one pixel is 2/size in grid_sample's normalised coordinates.
    pad = config.crop_padding
    shift = torch.randint(-pad, pad + 1, (n, 2), generator=generator, device=x.device) * 1.0
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, shift[:, 0].to(x.dtype) * 2 / w], dim=1),
            torch.stack([sin * flip, cos, shift[:, 1].to(x.dtype) * 2 / h], dim=1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if x.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)
    return out
