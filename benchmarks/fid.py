"""Cost of the GAN's per-epoch distance: fd_classifier vs fid_inception, per generated sample.

For N generated images (an untrained default generator: the cost does not depend on what it
draws) it times the steps of one evaluation: generating, extracting features, the Frechet
distance (float64 statistics; the real side's square root is computed once and not counted)
and KID (torch-fidelity, 20 subsets as per epoch). fd_classifier is measured at every N. On a
CPU, Inception features are measured on a small N (--inception-n) and extrapolated linearly
(printed as such); the 2048-d statistics, FD and KID are measured at full N on random
features. With a CUDA GPU, everything is also measured on it at full N. Ends with the ratio of
Inception to classifier cost per sample.

    .venv/bin/python benchmarks/fid.py [--dataset mnist5k] [--sizes 2000 10000]
        [--inception-n 64] [--weights PATH] [--cache-dir DIR]
    # PATH: $TUNELAB_INCEPTION_WEIGHTS, else inception/ under $TUNELAB_SHARED_DATA (default
    # ../shared/data) where it exists; without weights only the fd_classifier side runs
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from tunelab.models.gan import Generator, GeneratorConfig
from tunelab.objectives.data import DataSpec, load_data
from tunelab.objectives.fid import (
    ClassifierFeatures,
    InceptionFeatures,
    feature_statistics,
    frechet_distance,
    inception_weights_available,
    inception_weights_path,
    kernel_distance,
    real_reference,
)
from tunelab.objectives.gan import KID_SUBSETS, GANHParams

SHARED = Path(
    os.environ.get("TUNELAB_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared/data")
)
SHARED_WEIGHTS = SHARED / "inception" / "inception-v3-fid-2015-12-05.pth"


def timed(fn):
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def generate(data, n: int, device: torch.device) -> torch.Tensor:
    hp = GANHParams()
    torch.manual_seed(0)
    gen = Generator(GeneratorConfig(data.channels, data.image_size, hp.latent_dim, hp.g_width))
    gen = gen.to(device).eval()
    z = torch.randn(n, hp.latent_dim, device=device)
    with torch.inference_mode():
        return torch.cat([(gen(z[i : i + 500]) + 1) / 2 for i in range(0, n, 500)])


def distance_costs(real, features: torch.Tensor) -> tuple[float, float]:
    """Seconds for the Frechet distance (fake statistics included) and for KID."""
    _, fd = timed(lambda: frechet_distance(real.stats, feature_statistics(features)))
    _, kid = timed(lambda: kernel_distance(real.features, features, subsets=KID_SUBSETS))
    return fd, kid


def bench_classifier(data, device, sizes, cache_dir) -> float:
    """Prints the classifier's costs; returns its seconds per sample at the largest N."""
    data = data.to(device)
    space, seconds = timed(lambda: ClassifierFeatures.load_or_train(data, cache_dir))
    print(
        f"fd_classifier on {device}: classifier ready in {seconds:.2f} s "
        f"(val accuracy {space.val_accuracy:.3f}, {space.path})"
    )
    real, seconds = timed(lambda: real_reference(space, data.val.x))
    print(f"  real reference ({len(data.val)} val images, once per process): {seconds:.2f} s")
    distance_costs(real, real.features)  # warm-up (imports, first-call allocations)
    per_sample = 0.0
    for n in sizes:
        images, t_gen = timed(lambda n=n: generate(data, n, device))
        features, t_feat = timed(lambda images=images: space.features(images))
        t_fd, t_kid = distance_costs(real, features)
        total = t_gen + t_feat + t_fd + t_kid
        print(
            f"  N={n:>6}: total {total:7.2f} s = generate {t_gen:.2f} + features {t_feat:.2f}"
            f" + FD {t_fd:.3f} + KID {t_kid:.2f}  ({1e3 * total / n:.3f} ms/sample)"
        )
        per_sample = total / n
    return per_sample


def bench_inception(data, device, sizes, weights, small_n) -> float:
    """Prints Inception's costs; returns its seconds per sample at the largest N."""
    data = data.to(device)
    space = InceptionFeatures(weights)
    _, seconds = timed(lambda: space.extractor(device))
    print(f"fid_inception on {device}: extractor loaded in {seconds:.2f} s ({space.tags()})")
    cpu = device.type == "cpu"
    n_feat = small_n if cpu else min(sizes)
    images = generate(data, n_feat, device)
    space.features(images[:2])  # warm-up
    _, t_feat = timed(lambda: space.features(images))
    per_image = t_feat / n_feat
    print(
        f"  features of {n_feat} generated images: {t_feat:.2f} s "
        f"({1e3 * per_image:.2f} ms/image, measured)"
    )
    if cpu:  # real statistics need many images: random 2048-d features cost the same to reduce
        real = real_reference(_Random(), torch.empty(len(data.val), 1))
        seconds = per_image * len(data.val)
        print(
            f"  real reference: {len(data.val)} val images would take {seconds:.0f} s "
            "(extrapolated); FD and KID timed on random 2048-d features"
        )
    else:
        real, seconds = timed(lambda: real_reference(space, data.val.x))
        print(f"  real reference ({len(data.val)} val images, once per process): {seconds:.2f} s")
    per_sample = 0.0
    for n in sizes:
        images, t_gen = timed(lambda n=n: generate(data, n, device))
        if cpu:
            features = _Random().features(images)
            t_features, label = per_image * n, "extrapolated"
        else:
            features, t_features = timed(lambda images=images: space.features(images))
            label = "measured"
        t_fd, t_kid = distance_costs(real, features)
        total = t_gen + t_features + t_fd + t_kid
        print(
            f"  N={n:>6}: total {total:8.1f} s = generate {t_gen:.2f} + features "
            f"{t_features:.1f} ({label}) + FD {t_fd:.2f} + KID {t_kid:.2f}  "
            f"({1e3 * total / n:.2f} ms/sample, {label})"
        )
        per_sample = total / n
    return per_sample


class _Random:
    """Random non-negative 2048-d features (Inception's pool3 size), for timing FD and KID."""

    name, kid_name = "random", "random"

    def features(self, images: torch.Tensor) -> torch.Tensor:
        g = torch.Generator().manual_seed(len(images))
        return torch.rand(len(images), 2048, generator=g)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000])
    parser.add_argument("--inception-n", type=int, default=64)
    parser.add_argument("--weights", default=None)
    parser.add_argument("--cache-dir", default=None, help="fd_classifier cache [$TUNELAB_CACHE]")
    args = parser.parse_args()

    weights = inception_weights_path(args.weights)
    if weights is None and SHARED_WEIGHTS.is_file():
        weights = str(SHARED_WEIGHTS)
    data = load_data(DataSpec(args.dataset))
    print(
        f"{data.summary()}; torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    ratios = []
    for device in devices:
        classifier = bench_classifier(data, device, args.sizes, args.cache_dir)
        if not inception_weights_available(weights):
            print("fid_inception: no weights here (set --weights or $TUNELAB_INCEPTION_WEIGHTS)")
            continue
        inception = bench_inception(data, device, args.sizes, weights, args.inception_n)
        label = " (Inception features extrapolated)" if device.type == "cpu" else ""
        ratios.append(
            f"{device}: inception/classifier cost per sample at N={max(args.sizes)}: "
            f"{inception / classifier:.0f}x{label}"
        )
    for line in ratios:
        print(line)


if __name__ == "__main__":
    main()
