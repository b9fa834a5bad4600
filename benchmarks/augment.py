"""Batched on-device augmentation vs torchvision's per-sample PIL transforms, on CPU.

Both apply the same random rotation, horizontal flip and padded random crop to the same
mnist5k training images; the DataLoader path is what a plain torchvision pipeline does
(PIL image -> transforms -> tensor -> collate). Prints images/s of each and the ratio last.

    .venv/bin/python benchmarks/augment.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from torchvision.transforms.functional import to_pil_image

from tunelab.objectives.augment import AugmentConfig, augment_batch
from tunelab.objectives.data import DataSpec, load_data

ROTATION, FLIP, PADDING, BATCH = 15.0, 0.5, 2, 128


class PilImages(Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images = [to_pil_image(x) for x in images]  # decoded once, like an image folder
        self.labels = labels.tolist()
        self.transform = transforms.Compose(
            [
                transforms.RandomRotation(ROTATION),
                transforms.RandomHorizontalFlip(FLIP),
                transforms.RandomCrop(images.shape[-1], padding=PADDING),
                transforms.ToTensor(),
            ]
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), self.labels[i]


def time_batched(x: torch.Tensor, y: torch.Tensor) -> float:
    config = AugmentConfig(rotation=ROTATION, hflip=FLIP, crop_padding=PADDING)
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    order = torch.randperm(len(x), generator=generator)
    for i in range(0, len(x), BATCH):
        index = order[i : i + BATCH]
        out = augment_batch(x[index], config, generator)
        _ = y[index]
    assert out.shape[1:] == x.shape[1:]
    return time.perf_counter() - start


def time_dataloader(dataset: PilImages, workers: int) -> float:
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers)
    start = time.perf_counter()
    shapes = {tuple(images.shape[1:]) for images, _ in loader}
    assert shapes == {(1, 28, 28)}
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    data = load_data(DataSpec("mnist5k"))
    x, y = data.train.x, data.train.y
    dataset = PilImages(x, y)
    n = len(x)
    print(
        f"{n} images 1x28x28, rotation {ROTATION} deg, flip p={FLIP}, crop padding {PADDING}, "
        f"batch {BATCH}, torch threads {torch.get_num_threads()}"
    )
    best = {}
    for _ in range(args.repeats):  # interleaved, best of N for each
        for name, run in (
            ("batched (tunelab)", lambda: time_batched(x, y)),
            ("DataLoader + PIL, 0 workers", lambda: time_dataloader(dataset, 0)),
            ("DataLoader + PIL, 2 workers", lambda: time_dataloader(dataset, 2)),
        ):
            best[name] = min(best.get(name, float("inf")), run())
    for name, seconds in best.items():
        print(f"{name:30s} {seconds:7.3f} s  {n / seconds:10.0f} images/s")
    fastest_loader = min(v for k, v in best.items() if k.startswith("DataLoader"))
    print(f"ratio batched / fastest DataLoader: {fastest_loader / best['batched (tunelab)']:.1f}x")


if __name__ == "__main__":
    main()
