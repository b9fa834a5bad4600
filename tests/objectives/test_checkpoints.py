"""LocalCheckpoints: one file per trial, replaced whole, removed with the trial or the study."""

import pickle
from pathlib import PurePosixPath

import pytest
import torch

from tunelab.objectives.checkpoints import LocalCheckpoints, from_bytes, to_bytes


def test_a_checkpoint_is_replaced_whole_and_removed(tmp_path):
    store = LocalCheckpoints(tmp_path / "study")
    assert store.load(0, "cpu") is None
    store.save(0, {"w": torch.ones(2), "epoch": 1})
    store.save(0, {"w": torch.full((2,), 2.0), "epoch": 2})
    assert store.load(0, "cpu")["epoch"] == 2
    assert sorted(p.name for p in (tmp_path / "study").iterdir()) == ["trial-0.pt"]  # no temp
    store.remove(0)
    store.remove(0)  # absent: fine
    assert store.load(0, "cpu") is None


def test_clear_removes_the_studys_folder_only(tmp_path):
    store = LocalCheckpoints(tmp_path / "study")
    other = LocalCheckpoints(tmp_path / "other")
    store.save(1, {"epoch": 1})
    other.save(1, {"epoch": 1})
    store.clear()
    store.clear()
    assert not (tmp_path / "study").exists()
    assert other.load(1, "cpu") == {"epoch": 1}


def test_bytes_round_trip_and_refuse_arbitrary_objects():
    payload = {"w": torch.arange(3), "rng": torch.get_rng_state()}
    back = from_bytes(to_bytes(payload), "cpu")
    assert torch.equal(back["w"], payload["w"])
    with pytest.raises(pickle.UnpicklingError):  # torch's weights-only unpickler
        from_bytes(to_bytes({"x": PurePosixPath("x")}), "cpu")
