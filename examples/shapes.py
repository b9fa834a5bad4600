"""A task of one's own for tunelab: a small network of yours, your search space, your images.

Tunes `TinyShapesNet` (below: one convolution, global pooling, a linear layer) on an image
folder with one sub-folder per class (`folder:PATH`, read by tunelab). Make a small folder of
drawn circles, squares and triangles, then run the task by reference, from this folder:

    python shapes.py data/shapes            # 3 classes x 40 grey 16x16 PNGs
    tunelab run shapes:ShapesTask --dataset folder:data/shapes --study-name shapes \
        --n-trials 10 --max-epochs 5
    tunelab report shapes
    tunelab evaluate shapes

Installed as a distribution, it registers the task under a name of its own in its
`pyproject.toml` (then `tunelab run shapes`, listed by `tunelab tasks`):

    [project.entry-points."tunelab.tasks"]
    shapes = "shapes:ShapesTask"

Everything else, pruning, early stopping, checkpoints and resume, MLflow runs, workers,
report and evaluate, comes from tunelab's shared trial loop.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import tunelab
from tunelab import Finalization, Param, Parts, StepContext, space_from


@dataclass(frozen=True)
class ShapesHParams:
    """Hyperparameters of one trial: each field the search may tune, with its default."""

    lr: float = 1e-2
    """Adam's learning rate."""
    batch_size: int = 16
    """Training images per step."""
    channels: int = 8
    """Feature maps of the convolution."""
    dropout: float = 0.1
    """Dropout before the classifier."""


class TinyShapesNet(nn.Module):
    """Your own model: any nn.Module; this one is one convolution and a linear classifier."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, channels, kernel_size=3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = F.relu(self.conv(x)).mean(dim=(2, 3))  # global average pooling
        return self.head(self.dropout(features))


class ShapesTask(tunelab.Task):
    """Classify images; maximise validation accuracy."""

    name = "shapes"
    metric = "val_accuracy"
    direction = "maximize"
    hparams_type = ShapesHParams
    api_version = 1  # the tunelab.TASK_API_VERSION this task was written for

    def search_space(self):
        return space_from(
            ShapesHParams,
            [
                Param("lr", "float", 1e-3, 1e-1, log=True),
                Param("batch_size", "categorical", choices=(8, 16, 32)),
                Param("channels", "categorical", choices=(4, 8, 16)),
                Param("dropout", "float", 0.0, 0.5),
            ],
        )

    def build(self, hp: ShapesHParams, data, device, budget) -> Parts:
        model = TinyShapesNet(data.channels, hp.channels, data.num_classes, hp.dropout)
        model = model.to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=hp.lr)
        return Parts(modules={"model": model}, optimizers={"optimizer": optimizer})

    def train_step(self, parts: Parts, hp, x, y, ctx: StepContext) -> dict[str, torch.Tensor]:
        model, optimizer = parts.modules["model"], parts.optimizers["optimizer"]
        model.train()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"train_loss": loss.detach()}

    def evaluate(self, parts: Parts, hp, data, split, ctx: StepContext) -> dict[str, float]:
        model = parts.modules["model"]
        model.eval()
        with torch.inference_mode():
            logits = model(split.x)
        return {
            "val_loss": F.cross_entropy(logits, split.y).item(),
            "val_accuracy": (logits.argmax(dim=1) == split.y).float().mean().item(),
        }

    def finalize(self, parts: Parts, hp, data) -> Finalization:
        # the best weights' validation metrics are logged already; a task adds what is new
        parameters = sum(p.numel() for p in parts.modules["model"].parameters())
        return Finalization(metrics={"parameters": float(parameters)})


# -- a small image folder to tune on --------------------------------------------------------


def make_shapes(root: Path, per_class: int = 40, size: int = 16, seed: int = 0) -> Path:
    """Write `per_class` grey PNGs of each of circle, square and triangle under root/<class>/."""
    import random

    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    for shape in ("circle", "square", "triangle"):
        folder = root / shape
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = Image.new("L", (size, size), 0)
            draw = ImageDraw.Draw(image)
            r = rng.randint(size // 5, size // 3)
            cx, cy = rng.randint(r, size - r - 1), rng.randint(r, size - r - 1)
            box = (cx - r, cy - r, cx + r, cy + r)
            if shape == "circle":
                draw.ellipse(box, fill=255)
            elif shape == "square":
                draw.rectangle(box, fill=255)
            else:
                draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=255)
            image.save(folder / f"{i:03d}.png")
    return root


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python shapes.py FOLDER")
    print(f"wrote {make_shapes(Path(sys.argv[1]))}")
