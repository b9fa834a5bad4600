"""Feature spaces for judging generated images, and the distances measured in them.

Two feature spaces, whose names are never mixed:

- `fid_inception`: the standard FID space, Inception-v3 pool3 (2048-d) features from
  torch-fidelity's extractor. Its weights come from a local file (the `inception_weights` task
  option or `$TUNELAB_INCEPTION_WEIGHTS`), otherwise from torch-fidelity's own download. Grey
  images are repeated to three channels and quantised to uint8, as torch-fidelity expects.
  Metrics: `fid_inception`, `kid_inception`.
- `fd_classifier`: the penultimate features of a small `models.cnn.CNN` trained on the data
  set's training split. It is trained once per data set and cached on disk (`$TUNELAB_CACHE`
  or ~/.cache/tunelab), named by the data set and a hash of its training images and the
  classifier's config; the sha256 of the cached weights identifies the space in every run.
  Metrics: `fd_classifier`, `kid_classifier`. Cheap on a CPU, and comparable only with itself.

The Frechet distance is computed here in float64 (`frechet_distance`), with the real images'
covariance square root computed once and reused for every generated set; KID is
torch-fidelity's unbiased polynomial-kernel MMD estimate (`kernel_distance`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from tunelab.models.cnn import CNN, CNNConfig
from tunelab.objectives.data import DataBundle, Split

FEATURE_SPACES = ("fd_classifier", "fid_inception")
"""Names of the feature spaces; each is also the name of its Frechet distance metric."""
KID_METRICS = {"fd_classifier": "kid_classifier", "fid_inception": "kid_inception"}
"""The KID metric measured in each feature space."""
INCEPTION_WEIGHTS_ENV = "TUNELAB_INCEPTION_WEIGHTS"
"""Environment variable naming a local Inception-v3 weights file (torch-fidelity layout)."""
CACHE_ENV = "TUNELAB_CACHE"
"""Environment variable naming the cache folder of the fd_classifier weights."""
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
"""File name of torch-fidelity's own download in the torch hub cache."""


def default_cache_dir() -> Path:
    """$TUNELAB_CACHE, or ~/.cache/tunelab."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tunelab")


def inception_weights_path(explicit: str | None = None) -> str | None:
    """A local Inception weights file: the explicit one, else $TUNELAB_INCEPTION_WEIGHTS."""
    return explicit or os.environ.get(INCEPTION_WEIGHTS_ENV) or None


def inception_weights_available(path: str | None) -> bool:
    """Whether Inception features can be computed without a download."""
    if path is not None:
        return Path(path).is_file()
    return (Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE).is_file()


def resolve_feature_space(requested: str, weights: str | None) -> str:
    """`auto` -> fid_inception with a CUDA GPU and Inception weights at hand, else fd_classifier."""
    if requested == "auto":
        usable = torch.cuda.is_available() and inception_weights_available(weights)
        return "fid_inception" if usable else "fd_classifier"
    if requested not in FEATURE_SPACES:
        known = ", ".join(("auto", *FEATURE_SPACES))
        raise ValueError(f"unknown feature space {requested!r}; known: {known}")
    if requested == "fid_inception" and weights is not None and not Path(weights).is_file():
        raise ValueError(f"Inception weights file {weights} does not exist")
    return requested


# -- distances -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureStats:
    """Mean and covariance of a set of features, in float64."""

    mean: torch.Tensor
    """Feature means, shape (d,)."""
    cov: torch.Tensor
    """Unbiased covariance (divided by N - 1), shape (d, d)."""
    count: int
    """Number of feature vectors summarised."""
    cov_sqrt: torch.Tensor | None = None
    """Symmetric square root of `cov`, kept for a reference set compared many times."""


def feature_statistics(features: torch.Tensor, with_sqrt: bool = False) -> FeatureStats:
    """Float64 mean and covariance of (N, d) features (and the covariance's square root)."""
    if features.dim() != 2 or len(features) < 2:
        raise ValueError(f"need (N >= 2, d) features, got shape {tuple(features.shape)}")
    x = features.detach().double()
    mean = x.mean(dim=0)
    centred = x - mean
    cov = centred.T @ centred / (len(x) - 1)
    return FeatureStats(mean, cov, len(x), _psd_sqrt(cov) if with_sqrt else None)


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^1/2), in float64.

    tr((S_a S_b)^1/2) is the sum of the square roots of the eigenvalues of the symmetric
    matrix S_a^1/2 S_b S_a^1/2 (similar to S_a S_b), so no complex arithmetic is needed.
    """
    if b.cov_sqrt is not None and a.cov_sqrt is None:
        a, b = b, a
    root = a.cov_sqrt if a.cov_sqrt is not None else _psd_sqrt(a.cov)
    other = b.cov.to(root.device)
    middle = root @ other @ root
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    diff = a.mean - b.mean.to(a.mean.device)
    value = diff @ diff + a.cov.trace() + other.trace() - 2 * trace_sqrt.to(diff.device)
    return float(value)


def kernel_distance(
    real: torch.Tensor,
    fake: torch.Tensor,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> float:
    """KID: torch-fidelity's unbiased MMD^2 with the cubic polynomial kernel, averaged over
    random subsets (subset_size is capped by both set sizes)."""
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, kid_features_to_metric

    size = min(subset_size, len(real), len(fake))
    result = kid_features_to_metric(
        real.detach().double().cpu(),
        fake.detach().double().cpu(),
        kid_subsets=subsets,
        kid_subset_size=size,
        rng_seed=seed,
        verbose=False,
    )
    return float(result[KEY_METRIC_KID_MEAN])


# -- feature spaces ------------------------------------------------------------------------


class FeatureSpace:
    """Maps images in [0, 1], shaped (N, C, H, W), to one feature vector each."""

    name: str
    """Feature-space name, also the name of the Frechet distance metric measured in it."""
    kid_name: str
    """Name of the KID metric measured in this space."""

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, d) float32 features on the images' device."""
        raise NotImplementedError

    def tags(self) -> dict[str, str]:
        """Run tags identifying the feature network (e.g. its weights' checksum)."""
        return {}


class InceptionFeatures(FeatureSpace):
    """Inception-v3 pool3 features through torch-fidelity (the standard FID space)."""

    name = "fid_inception"
    kid_name = "kid_inception"

    def __init__(self, weights: str | None = None) -> None:
        self.weights = weights
        self._extractors: dict[torch.device, torch.nn.Module] = {}

    def extractor(self, device: torch.device) -> torch.nn.Module:
        """The network on one device, loaded once (downloaded by torch-fidelity without weights)."""
        if device not in self._extractors:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

            with torch.random.fork_rng(devices=[]):  # initialising draws random numbers
                net = FeatureExtractorInceptionV3(
                    "inception-v3-compat",
                    ["2048"],
                    feature_extractor_weights_path=self.weights,
                    verbose=False,
                )
            self._extractors[device] = net.to(device).eval()
        return self._extractors[device]

    def features(self, images: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        if images.shape[1] not in (1, 3):
            raise ValueError(f"Inception features need 1 or 3 channels, got {images.shape[1]}")
        net = self.extractor(images.device)
        batch_size = batch_size or (128 if images.device.type == "cuda" else 16)
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                out.append(net(to_uint8_rgb(images[start : start + batch_size]))[0])
        return torch.cat(out)

    def tags(self) -> dict[str, str]:
        source = Path(self.weights).name if self.weights else f"torch-fidelity {INCEPTION_FILE}"
        return {"tunelab.inception_weights": source}


def to_uint8_rgb(images: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] -> uint8 in [0, 255] (rounded), grey repeated to three channels."""
    x = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


@dataclass(frozen=True)
class ClassifierFDConfig:
    """The fd_classifier network and its training (part of the cache key)."""

    conv_blocks: int = 2
    """Convolution blocks of the CNN."""
    convs_per_block: int = 1
    """Convolutions per block."""
    base_width: int = 16
    """Channels of the first block."""
    fc_width: int = 128
    """Width of the penultimate layer: the dimension of the feature space."""
    dropout: float = 0.25
    """Dropout in training."""
    epochs: int = 8
    """Passes over the training split..."""
    max_steps: int = 1000
    """...but at most this many optimizer steps (large data sets)."""
    batch_size: int = 128
    """Training batch size."""
    lr: float = 2e-3
    """Peak AdamW learning rate (cosine decay to zero)."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    seed: int = 0
    """Seed of the weights' initialisation and the batch order."""


class ClassifierFeatures(FeatureSpace):
    """Penultimate features of a CNN classifier trained on the data set's training split."""

    name = "fd_classifier"
    kid_name = "kid_classifier"

    def __init__(self, model: CNN, sha256: str, path: Path, val_accuracy: float) -> None:
        self.model = model.eval()
        self.sha256 = sha256
        self.path = path
        self.val_accuracy = val_accuracy

    @classmethod
    def load_or_train(
        cls,
        data: DataBundle,
        cache_dir: str | Path | None = None,
        config: ClassifierFDConfig = ClassifierFDConfig(),
    ) -> ClassifierFeatures:
        """The cached classifier of this training split and config, trained on a miss."""
        folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        stem = f"{_safe(data.name)}-{_fingerprint(data.train, config)}"
        path = folder / "fd_classifier" / f"{stem}.pt"
        device = data.train.x.device
        payload = None
        if path.is_file():
            blob = path.read_bytes()  # checksum and weights from the same bytes
            try:
                payload = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
            except Exception:  # a damaged cache file is retrained, not fatal
                payload = None
        if payload is None:
            payload = _train_classifier(data, config)
            buffer = io.BytesIO()
            torch.save(payload, buffer)
            blob = buffer.getvalue()
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(blob)
            os.replace(tmp, path)  # atomic: concurrent workers never read half a file
        sha256 = hashlib.sha256(blob).hexdigest()
        net_config = dict(payload["config"])
        net_config["image_size"] = tuple(net_config["image_size"])
        net_config["input_mean"] = tuple(net_config["input_mean"])
        net_config["input_std"] = tuple(net_config["input_std"])
        with torch.random.fork_rng(devices=[]):  # initialising draws random numbers
            model = CNN(CNNConfig(**net_config))
        model.load_state_dict(payload["state_dict"])
        return cls(model.to(device), sha256, path, float(payload["val_accuracy"]))

    def features(self, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
        model = self.model
        if next(model.parameters()).device != images.device:
            model = self.model = model.to(images.device)
        with torch.inference_mode():
            return torch.cat(
                [model.embed(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
            )

    def tags(self) -> dict[str, str]:
        return {"tunelab.fd_classifier_sha256": self.sha256}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[:60] or "data"


def _fingerprint(split: Split, config: ClassifierFDConfig) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(asdict(config), sort_keys=True).encode())
    for t in (split.x, split.y):
        t = t.detach().cpu().contiguous()
        digest.update(str((tuple(t.shape), str(t.dtype))).encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()[:16]


def _train_classifier(data: DataBundle, config: ClassifierFDConfig) -> dict:
    """Train the feature classifier; returns its config, CPU weights and validation accuracy.

    Runs inside a forked RNG state, so a trial that trains it draws the same random numbers
    as one that finds it cached.
    """
    from tunelab.objectives.optim import make_optimizer, make_scheduler

    x = data.train.x
    device = x.device
    dims = [0, 2, 3]
    net_config = CNNConfig(
        in_channels=data.channels,
        image_size=data.image_size,
        num_classes=data.num_classes,
        conv_blocks=config.conv_blocks,
        convs_per_block=config.convs_per_block,
        base_width=config.base_width,
        fc_width=config.fc_width,
        dropout=config.dropout,
        input_mean=tuple(x.mean(dim=dims).tolist()),
        input_std=tuple(x.std(dim=dims).clamp_min(1e-6).tolist()),
    )
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(config.seed)
        model = CNN(net_config).to(device)
        generator = torch.Generator(device=device).manual_seed(config.seed)
        per_epoch = max(1, len(data.train) // config.batch_size)
        steps = min(config.max_steps, config.epochs * per_epoch)
        optimizer = make_optimizer("adamw", model.parameters(), config.lr, config.weight_decay)
        scheduler = make_scheduler(optimizer, "cosine", steps)
        model.train()
        step = 0
        while step < steps:
            for xb, yb in data.train.batches(config.batch_size, generator, drop_last=True):
                loss = F.cross_entropy(model(xb), yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                step += 1
                if step >= steps:
                    break
    model.eval()
    with torch.inference_mode():
        correct = sum((model(xb).argmax(1) == yb).sum().item() for xb, yb in data.val.batches(1000))
    return {
        "config": asdict(net_config),
        "fd_config": asdict(config),
        "dataset": data.name,
        "val_accuracy": correct / max(1, len(data.val)),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }


def make_feature_space(
    name: str,
    data: DataBundle,
    cache_dir: str | Path | None = None,
    inception_weights: str | None = None,
) -> FeatureSpace:
    """A ready feature space by name (the classifier trained or loaded for this data set)."""
    if name == "fd_classifier":
        return ClassifierFeatures.load_or_train(data, cache_dir)
    if name == "fid_inception":
        return InceptionFeatures(inception_weights_path(inception_weights))
    raise ValueError(f"unknown feature space {name!r}; known: {', '.join(FEATURE_SPACES)}")


@dataclass(frozen=True)
class RealReference:
    """A feature space's view of the real validation images, computed once and kept."""

    features: torch.Tensor
    """(N, d) features of the real images (for KID)."""
    stats: FeatureStats
    """Their mean, covariance and covariance square root (for the Frechet distance)."""


def real_reference(space: FeatureSpace, images: torch.Tensor) -> RealReference:
    """Features and statistics of real images in [0, 1]."""
    features = space.features(images)
    return RealReference(features, feature_statistics(features, with_sqrt=True))


def distances(
    space: FeatureSpace, real: RealReference, images: torch.Tensor, kid_subsets: int = 100
) -> dict[str, float]:
    """Frechet distance and KID of generated images in [0, 1] from the real reference."""
    features = space.features(images)
    return {
        space.name: frechet_distance(real.stats, feature_statistics(features)),
        space.kid_name: kernel_distance(real.features, features, subsets=kid_subsets),
    }
