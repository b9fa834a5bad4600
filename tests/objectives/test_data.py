import numpy as np
import pytest
import torch
from PIL import Image

from tunelab.objectives.data import DataError, DataSpec, load_data


def test_mnist5k_is_embedded_and_split_4000_500_500():
    data = load_data(DataSpec("mnist5k"))
    assert (len(data.train), len(data.val), len(data.test)) == (4000, 500, 500)
    assert data.train.x.shape[1:] == (1, 28, 28) and data.num_classes == 10
    assert data.train.x.min() >= 0.0 and data.train.x.max() <= 1.0
    # stratified: every class in every split at close to its share
    counts = torch.bincount(data.val.y, minlength=10)
    assert counts.min() >= 40


def test_split_is_deterministic_and_disjoint(digits):
    again = load_data(DataSpec("digits"))
    assert torch.equal(digits.val.x, again.val.x) and torch.equal(digits.test.y, again.test.y)
    rows = {tuple(r) for r in digits.train.x.flatten(1).tolist()}
    assert not any(tuple(r) in rows for r in digits.test.x.flatten(1).tolist()[:50])
    assert len(digits.train) + len(digits.val) + len(digits.test) == 1797


def test_limit_train_is_a_stratified_subset_and_keeps_validation(digits):
    limited = load_data(DataSpec("digits", limit_train=200))
    assert len(limited.train) == 200 and len(limited.val) == len(digits.val)
    assert torch.bincount(limited.train.y, minlength=10).min() >= 15
    with pytest.raises(DataError, match="smaller than the number of classes"):
        load_data(DataSpec("digits", limit_train=5))


def test_batches_are_index_slices_covering_the_split(digits):
    g = torch.Generator().manual_seed(0)
    seen = torch.cat([y for _, y in digits.train.batches(100, g)])
    assert torch.equal(seen.sort().values, digits.train.y.sort().values)
    sizes = [len(y) for _, y in digits.train.batches(100, g, drop_last=True)]
    assert set(sizes) == {100}


def test_missing_torchvision_files_name_the_expected_layout(tmp_path):
    with pytest.raises(DataError) as error:
        load_data(DataSpec("mnist", data_dir=str(tmp_path), download=False))
    assert "MNIST/raw" in str(error.value) and "\n" not in str(error.value)


def test_torchvision_layout_is_read_from_data_dir(shared_mnist_dir):
    data = load_data(DataSpec("mnist", data_dir=str(shared_mnist_dir), limit_train=1000))
    assert (len(data.train), len(data.val), len(data.test)) == (1000, 5000, 10000)


def test_folder_dataset_one_subfolder_per_class(tmp_path):
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        for i in range(12):
            pixels = rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / label / f"{i}.png")
    data = load_data(DataSpec(f"folder:{tmp_path}"))
    assert data.class_names == ("cat", "dog") and data.train.x.shape[1:] == (3, 10, 12)
    with pytest.raises(DataError, match="does not exist"):
        load_data(DataSpec(f"folder:{tmp_path / 'nope'}"))


def test_unknown_data_set():
    with pytest.raises(DataError, match="unknown data set 'svhn'"):
        load_data(DataSpec("svhn"))
