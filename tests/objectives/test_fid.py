import hashlib

import pytest
import torch
import torch.nn.functional as F

from tunelab.objectives import fid
from tunelab.objectives.fid import (
    ClassifierFeatures,
    InceptionFeatures,
    distances,
    feature_statistics,
    frechet_distance,
    kernel_distance,
    real_reference,
    resolve_feature_space,
    to_uint8_rgb,
)


@pytest.fixture(scope="module")
def classifier(digits, cache_dir) -> ClassifierFeatures:
    return ClassifierFeatures.load_or_train(digits, cache_dir)


class FeatureModule(torch.nn.Module):
    """A feature space as the custom `feature` network of torchmetrics' metrics."""

    def __init__(self, space: ClassifierFeatures) -> None:
        super().__init__()
        self.space = space
        self.num_features = space.model.config.fc_width

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.space.features(images)


def test_classifier_is_trained_once_and_cached_with_a_checksum(digits, cache_dir, classifier):
    assert classifier.path.parent == cache_dir / "fd_classifier"
    assert classifier.path.name.startswith("digits-") and classifier.path.suffix == ".pt"
    assert classifier.sha256 == hashlib.sha256(classifier.path.read_bytes()).hexdigest()
    assert classifier.val_accuracy > 0.85
    stamp = classifier.path.stat().st_mtime_ns
    again = ClassifierFeatures.load_or_train(digits, cache_dir)  # a cache hit: no retraining
    assert again.path.stat().st_mtime_ns == stamp
    assert again.sha256 == classifier.sha256
    assert torch.equal(again.features(digits.val.x), classifier.features(digits.val.x))
    assert classifier.tags() == {"tunelab.fd_classifier_sha256": classifier.sha256}
    # Another training split is another classifier.
    other = ClassifierFeatures.load_or_train(
        type(digits)(digits.name, digits.val, digits.train, digits.test, 10, digits.class_names),
        cache_dir,
    )
    assert other.path != classifier.path


def test_training_or_loading_the_classifier_leaves_the_global_rng_alone(digits, tmp_path):
    torch.manual_seed(7)
    expected = torch.rand(3)
    config = fid.ClassifierFDConfig(epochs=1, base_width=4, fc_width=16)
    for _ in ("trained", "loaded"):
        torch.manual_seed(7)
        space = ClassifierFeatures.load_or_train(digits, tmp_path, config)
        assert torch.equal(torch.rand(3), expected)
    space.path.write_bytes(b"truncated")  # a damaged cache file is retrained
    again = ClassifierFeatures.load_or_train(digits, tmp_path, config)
    assert again.sha256 == hashlib.sha256(space.path.read_bytes()).hexdigest()
    assert again.features(digits.val.x[:5]).shape == (5, 16)


def test_frechet_distance_ranks_real_far_below_noise_and_blur(digits, classifier):
    real = real_reference(classifier, digits.val.x)
    train = distances(classifier, real, digits.train.x)
    noise = distances(classifier, real, torch.rand_like(digits.train.x))
    blurred = distances(classifier, real, F.avg_pool2d(digits.train.x, 3, 1, 1))
    assert train["fd_classifier"] * 10 < noise["fd_classifier"]
    assert train["fd_classifier"] * 10 < blurred["fd_classifier"]
    assert abs(train["kid_classifier"]) * 10 < noise["kid_classifier"]
    assert abs(train["kid_classifier"]) * 10 < blurred["kid_classifier"]
    assert set(train) == {"fd_classifier", "kid_classifier"}  # never the Inception names


def test_frechet_distance_matches_torchmetrics_and_torch_fidelity(digits, classifier):
    from torch_fidelity.metric_fid import (
        KEY_METRIC_FID,
        fid_features_to_statistics,
        fid_statistics_to_metric,
    )
    from torchmetrics.image.fid import FrechetInceptionDistance

    real, fake = digits.val.x, F.avg_pool2d(digits.train.x, 2, 1, 0)
    fake = F.interpolate(fake, size=real.shape[-2:])
    real_f, fake_f = classifier.features(real), classifier.features(fake)
    ours = frechet_distance(feature_statistics(real_f, with_sqrt=True), feature_statistics(fake_f))

    metric = FrechetInceptionDistance(feature=FeatureModule(classifier))
    metric.update(real, real=True)
    metric.update(fake, real=False)
    theirs = metric.compute().item()
    assert ours == pytest.approx(theirs, rel=1e-3)

    stats = [fid_features_to_statistics(f.double()) for f in (real_f, fake_f)]
    fidelity = fid_statistics_to_metric(*stats, verbose=False)[KEY_METRIC_FID]
    assert ours == pytest.approx(fidelity, rel=1e-6)
    # Symmetric, and zero from a set to itself.
    assert frechet_distance(feature_statistics(fake_f), feature_statistics(real_f)) == (
        pytest.approx(ours, rel=1e-9)
    )
    assert abs(frechet_distance(*[feature_statistics(real_f)] * 2)) < 1e-6 * ours


def test_frechet_distance_of_shifted_gaussians_is_the_squared_shift():
    x = torch.randn(500, 6, dtype=torch.float64)
    shift = torch.tensor([3.0, 0, 0, 0, 4.0, 0], dtype=torch.float64)
    value = frechet_distance(feature_statistics(x), feature_statistics(x + shift))
    assert value == pytest.approx(25.0, rel=1e-9)


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")
def test_kid_matches_torchmetrics_and_is_near_zero_between_real_sets(digits, classifier):
    from torchmetrics.image.kid import KernelInceptionDistance

    n = 200
    real, fake = digits.val.x[:n], torch.rand_like(digits.val.x[:n]) * 0.5
    ours = kernel_distance(classifier.features(real), classifier.features(fake), subsets=3)
    metric = KernelInceptionDistance(feature=FeatureModule(classifier), subsets=3, subset_size=n)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    theirs = metric.compute()[0].item()
    assert ours > 0
    assert ours == pytest.approx(theirs, rel=1e-3)  # subsets of the whole sets: same estimate
    between_real = kernel_distance(
        classifier.features(digits.val.x), classifier.features(digits.train.x)
    )
    assert abs(between_real) < ours / 10


def test_feature_space_resolution(monkeypatch, tmp_path):
    assert resolve_feature_space("fd_classifier", None) == "fd_classifier"
    with pytest.raises(ValueError, match="unknown feature space"):
        resolve_feature_space("fid_clip", None)
    with pytest.raises(ValueError, match="does not exist"):
        resolve_feature_space("fid_inception", str(tmp_path / "missing.pth"))
    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"x")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_feature_space("auto", str(weights)) == "fd_classifier"  # no GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_feature_space("auto", str(weights)) == "fid_inception"
    assert resolve_feature_space("auto", str(tmp_path / "missing.pth")) == "fd_classifier"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # torch-fidelity's download, cached
    assert resolve_feature_space("auto", None) == "fd_classifier"
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / fid.INCEPTION_FILE).write_bytes(b"x")
    assert resolve_feature_space("auto", None) == "fid_inception"
    monkeypatch.setenv(fid.INCEPTION_WEIGHTS_ENV, str(weights))
    assert fid.inception_weights_path(None) == str(weights)
    assert fid.inception_weights_path("other.pth") == "other.pth"


def test_images_become_uint8_rgb_as_torch_fidelity_expects():
    grey = torch.tensor([0.0, 0.5, 1.0, 254.6 / 255]).view(1, 1, 2, 2)
    rgb = to_uint8_rgb(grey)
    assert rgb.dtype == torch.uint8 and rgb.shape == (1, 3, 2, 2)
    assert rgb[0, :, 0, 0].tolist() == [0, 0, 0]
    assert rgb[0, 2].flatten().tolist() == [0, 128, 255, 255]  # rounded, not truncated


def test_inception_features_of_a_few_images(digits, inception_weights):
    space = InceptionFeatures(str(inception_weights))
    torch.manual_seed(3)
    expected = torch.rand(2)
    torch.manual_seed(3)
    space.extractor(torch.device("cpu"))  # loading leaves a trial's random stream alone
    assert torch.equal(torch.rand(2), expected)
    grey = digits.val.x[:8]  # CPU Inception costs ~0.1-0.3 s per image: 24 images in all
    from_grey = space.features(grey)
    from_rgb = space.features(torch.cat([grey.expand(-1, 3, -1, -1), torch.rand(8, 3, 8, 8)]))
    assert from_grey.shape == (8, 2048) and from_rgb.shape == (16, 2048)
    assert torch.isfinite(from_rgb).all() and (from_rgb >= 0).all()  # pool3 follows a ReLU
    assert torch.allclose(from_grey, from_rgb[:8], atol=1e-5)  # grey is repeated to RGB
    assert (from_grey - from_rgb[8:]).abs().mean() > 0.01
    assert space.name == "fid_inception" and space.kid_name == "kid_inception"
    assert space.tags() == {"tunelab.inception_weights": inception_weights.name}
