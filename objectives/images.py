"""Figures and image grids as PNG bytes, for the artifacts tasks log."""

from __future__ import annotations

import io
from typing import Any

import torch


def png_bytes(figure: Any) -> bytes:
    """A matplotlib figure as PNG bytes (and closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def image_grid_png(images: torch.Tensor, nrow: int) -> bytes:
    """A batch of images in [0, 1] as one PNG grid."""
    from torchvision.utils import save_image

    buffer = io.BytesIO()
    save_image(
        images.detach().float().clamp(0, 1).cpu(), buffer, nrow=nrow, padding=2, format="png"
    )
    return buffer.getvalue()
