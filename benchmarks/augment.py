"""Batched on-device augmentation vs torchvision's per-sample PIL transforms, on CPU.

Both apply the same random rotation, horizontal flip and padded random crop to the same
training images (mnist5k's 4,000 unless `--dataset` / `--images`); the DataLoader path is
what a plain torchvision pipeline does (PIL image -> transforms -> tensor -> collate), with 0
and with 2 loader workers unless `--loader-workers`. Prints images/s of each with the threads
it ran on (the batched side and a 0-worker loader: this process's torch threads, `--threads`
to choose them; a loader's worker processes: the torch threads each had, 1 as PyTorch sets
them), and the ratio to the fastest loader last. On a loaded machine the batched side's torch
threads compete with the other work for the cores, so compare figures of a quiet machine.

    .venv/bin/python benchmarks/augment.py [--repeats 3] [--threads N] [--loader-workers 0 2]
        [--dataset mnist5k] [--images N]
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import time

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from torchvision.transforms.functional import to_pil_image

from tunelab.objectives.augment import AugmentConfig, augment_batch
from tunelab.objectives.data import DataSpec, load_data

ROTATION, FLIP, PADDING, BATCH = 15.0, 0.5, 2, 128
BATCHED = "batched (tunelab)"


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


def record_threads(seen, worker_id: int) -> None:
    """A loader worker's `worker_init_fn`: the torch threads it trains its transforms on."""
    seen[worker_id] = torch.get_num_threads()


def time_dataloader(dataset: PilImages, workers: int, shape: tuple[int, ...]):
    """Seconds of one pass, and the torch threads of each worker process (none: 0 workers)."""
    seen = multiprocessing.Array("i", workers) if workers else None
    loader = DataLoader(
        dataset,
        batch_size=BATCH,
        shuffle=True,
        num_workers=workers,
        worker_init_fn=functools.partial(record_threads, seen) if workers else None,
    )
    start = time.perf_counter()
    shapes = {tuple(images.shape[1:]) for images, _ in loader}
    assert shapes == {shape}, shapes
    return time.perf_counter() - start, list(seen) if seen is not None else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, help="torch threads of this process [torch's default]"
    )
    parser.add_argument(
        "--loader-workers", type=int, nargs="+", default=[0, 2], help="DataLoader workers"
    )
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--images", type=int, help="the first N training images [all]")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    data = load_data(DataSpec(args.dataset))
    x, y = data.train.x[: args.images], data.train.y[: args.images]
    dataset = PilImages(x, y)
    n, shape = len(x), tuple(x.shape[1:])
    print(
        f"{n} {args.dataset} images {'x'.join(map(str, shape))}, rotation {ROTATION} deg, "
        f"flip p={FLIP}, crop padding {PADDING}, batch {BATCH}, torch threads {threads}"
    )
    best: dict[str, float] = {}
    ran_on = {BATCHED: f"this process, {threads} torch thread(s)"}
    runs = {BATCHED: lambda: time_batched(x, y)}
    for workers in args.loader_workers:
        runs[f"DataLoader + PIL, {workers} workers"] = functools.partial(
            time_dataloader, dataset, workers, shape
        )
    for _ in range(args.repeats):  # interleaved, best of N for each
        for name, run in runs.items():
            if name == BATCHED:
                seconds = run()
            else:
                seconds, worker_threads = run()
                ran_on[name] = (
                    f"{len(worker_threads)} worker process(es), torch threads "
                    f"{'/'.join(map(str, worker_threads))}"
                    if worker_threads
                    else f"this process, {threads} torch thread(s)"
                )
            best[name] = min(best.get(name, float("inf")), seconds)
    for name, seconds in best.items():
        print(f"{name:30s} {seconds:7.3f} s  {n / seconds:10.0f} images/s  ({ran_on[name]})")
    fastest = min((k for k in best if k != BATCHED), key=best.get)
    print(
        f"ratio batched / fastest DataLoader: {best[fastest] / best[BATCHED]:.1f}x "
        f"(batched on {threads} torch thread(s); fastest: {fastest}, {ran_on[fastest]})"
    )


if __name__ == "__main__":
    main()
