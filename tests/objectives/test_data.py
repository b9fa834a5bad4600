from fractions import Fraction

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


def _user_split(seed: int = 0):
    """A user's own split: 8x8 uint8 images of 3 classes, 30 / 9 / 6."""
    rng = np.random.default_rng(seed)
    return {
        f"{part}_{role}": (
            rng.integers(0, 256, (n, 8, 8), dtype=np.uint8)
            if part == "x"
            else rng.integers(0, 3, n).astype(np.int64)
        )
        for role, n in (("train", 30), ("val", 9), ("test", 6))
        for part in ("x", "y")
    }


def test_a_pt_file_and_an_npz_file_give_the_same_split_as_saved(tmp_path):
    arrays = _user_split()
    np.savez(tmp_path / "mine.npz", **arrays)
    torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, tmp_path / "mine.pt")
    npz = load_data(DataSpec(name=f"file:{tmp_path / 'mine.npz'}"))
    pt = load_data(DataSpec(name=f"file:{tmp_path / 'mine.pt'}"))
    for bundle in (npz, pt):
        assert (len(bundle.train), len(bundle.val), len(bundle.test)) == (30, 9, 6)
        assert bundle.has_test and bundle.num_classes == 3
        # uint8 images scaled to [0, 1], in the user's order: the split is theirs
        expected = torch.from_numpy(arrays["x_train"]).float() / 255
        assert torch.allclose(bundle.train.x.reshape(30, 8, 8), expected)
        assert torch.equal(bundle.val.y, torch.from_numpy(arrays["y_val"]))
    assert torch.equal(npz.test.x, pt.test.x)


def test_arrays_tensors_and_a_dataset_from_python_without_a_test_split():
    from torch.utils.data import TensorDataset

    from tunelab.objectives.data import DataBundle

    a = _user_split()
    tensors = TensorDataset(torch.from_numpy(a["x_train"]), torch.from_numpy(a["y_train"]))
    bundle = DataBundle.from_arrays(
        train=tensors, val=(torch.from_numpy(a["x_val"]), a["y_val"]), name="mine"
    )
    assert (len(bundle.train), len(bundle.val)) == (30, 9)
    assert not bundle.has_test and "no test split" in bundle.summary()
    assert torch.equal(bundle.train.y, torch.from_numpy(a["y_train"]))


@pytest.mark.parametrize(
    ("content", "wanted"),
    [
        ({"x_train": np.zeros((2, 4))}, "lacks y_train, x_val, y_val"),
        ({**_user_split(), "class_names": np.array([{}], dtype=object)}, "holds Python objects"),
    ],
)
def test_a_data_file_that_cannot_be_used_is_one_line(tmp_path, content, wanted):
    path = tmp_path / "mine.npz"
    np.savez(path, **content)
    with pytest.raises(DataError, match=wanted) as error:
        load_data(DataSpec(name=f"file:{path}"))
    assert "\n" not in str(error.value)


def test_a_pt_file_of_something_else_than_tensors_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "mine.pt"
    torch.save({"x_train": Fraction(1, 2)}, path)  # a pickled object, not a tensor
    with pytest.raises(DataError, match="is not a torch.save of tensors"):
        load_data(DataSpec(name=f"file:{path}"))
    (tmp_path / "notes.csv").write_text("")
    with pytest.raises(DataError, match=r"must end in \.npz"):
        load_data(DataSpec(name=f"file:{tmp_path / 'notes.csv'}"))
