"""Checkpoint stores by URL: a folder, file://, fsspec (memory://); versions read whole; a
study's folder keyed by its identity, never outside the store's root."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import optuna
import pytest
import torch

from tunelab.objectives import keys
from tunelab.search.adapters.checkpoint_stores import (
    FsspecBlobs,
    VersionedCheckpoints,
    check_checkpoint_location,
    open_checkpoints,
)
from tunelab.search.adapters.storage import open_storage
from tunelab.search.spec import SpecError
from tunelab.search.study.identity import study_key, study_uid

TRACKING = "sqlite:///mlruns/mlflow.db"


def _location(kind: str, tmp_path: Path) -> str:
    if kind == "folder":
        return str(tmp_path / "ck")
    if kind == "file-url":
        return (tmp_path / "ck").as_uri()
    return f"memory://tunelab-test-{uuid.uuid4().hex}"  # fsspec's in-process store


@pytest.mark.parametrize("kind", ["folder", "file-url", "fsspec"])
def test_every_store_saves_loads_removes_and_clears(kind, tmp_path):
    location = _location(kind, tmp_path)
    check_checkpoint_location(location, TRACKING)
    store = open_checkpoints(location, "study-1", TRACKING)
    other = open_checkpoints(location, "study-2", TRACKING)
    assert store.load(0, "cpu") is None
    for epoch in (1, 2, 3):
        store.save(0, {"w": torch.full((2,), float(epoch)), "epoch": epoch})
    store.save(1, {"epoch": 7})
    other.save(0, {"epoch": 99})
    assert store.load(0, "cpu")["epoch"] == 3
    assert torch.equal(store.load(0, "cpu")["w"], torch.full((2,), 3.0))
    assert other.load(0, "cpu")["epoch"] == 99  # another study's folder
    store.remove(0)
    assert store.load(0, "cpu") is None and store.load(1, "cpu")["epoch"] == 7
    store.clear()
    store.clear()
    assert store.load(1, "cpu") is None
    assert other.load(0, "cpu")["epoch"] == 99
    if kind != "fsspec":
        assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["study-2"]


def test_a_torn_newest_version_is_skipped_and_older_ones_are_deleted():
    import fsspec

    fs = fsspec.filesystem("memory")
    root = f"/tunelab-test-{uuid.uuid4().hex}/study"
    blobs = FsspecBlobs(fs, root)
    store = VersionedCheckpoints(blobs)
    store.save(3, {"epoch": 1})
    store.save(3, {"epoch": 2})
    (only,) = blobs.names("trial-3")  # the older version went once the newer was whole
    # A newer version still being written (a reader sees part of it): its digest fails.
    whole = blobs.get(f"trial-3/{only}")
    blobs.put(f"trial-3/{'9' * 20}-{'0' * 16}.pt", whole[: len(whole) // 2])
    assert store.load(3, "cpu")["epoch"] == 2
    assert store.load(4, "cpu") is None


@pytest.mark.parametrize("key", ["../escape", "..", ".hidden", "a/b", "", "x/../../y"])
def test_a_store_key_is_one_safe_path_component(key, tmp_path):
    with pytest.raises(ValueError):
        open_checkpoints(str(tmp_path), key, TRACKING)


@pytest.mark.parametrize(
    ("location", "tracking", "message"),
    [
        ("s3://user:secret@bucket/ck", TRACKING, "must not hold a password"),
        ("nosuchscheme://bucket/ck", TRACKING, "unknown storage scheme"),
        ("mlflow-artifacts:/ck", TRACKING, "needs an http(s) MLflow tracking server"),
        ("file://otherhost/ck", TRACKING, "a file:// URL names a local folder"),
    ],
)
def test_bad_locations_are_one_line(location, tracking, message):
    with pytest.raises(SpecError, match=None) as error:
        check_checkpoint_location(location, tracking)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert "secret" not in str(error.value)


def test_a_file_is_not_a_checkpoint_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(SpecError, match="is not a folder"):
        check_checkpoint_location(str(tmp_path / "f"), TRACKING)


def test_an_unreachable_artifact_store_is_one_line_without_password(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's backoff: minutes
    with pytest.raises(SpecError) as error:
        check_checkpoint_location("mlflow-artifacts:/ck", "http://u:pw-x@127.0.0.1:1")
    assert "--serve-artifacts" in str(error.value) and "pw-x" not in str(error.value)


# -- the study's identity ------------------------------------------------------------------


def test_the_key_is_safe_whatever_the_name_and_stable(tmp_path):
    storage = f"sqlite:///{tmp_path / 'a.db'}"
    study = optuna.create_study(study_name="../../escape", storage=storage)
    key = study_key(study)
    assert "/" not in key and not key.startswith(".")
    assert key == study_key(optuna.load_study(study_name="../../escape", storage=storage))
    store = open_checkpoints(str(tmp_path / "ck"), key, TRACKING)
    store.save(0, {"epoch": 1})
    assert [p.parent.parent for p in (tmp_path / "ck").rglob("*.pt")] == [tmp_path / "ck"]


def test_same_name_in_two_storages_or_recreated_is_another_study(storage_url, tmp_path):
    # SQLite gives a deleted study's database id again: its id is the study's own attribute,
    # gone with it, so the new study gets a new one
    first = optuna.create_study(study_name="s", storage=open_storage(storage_url))
    elsewhere = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'b.db'}")
    key = study_key(first)
    assert key != study_key(elsewhere)
    optuna.delete_study(study_name="s", storage=storage_url)
    again = optuna.create_study(study_name="s", storage=open_storage(storage_url))
    assert study_key(again) != key


def test_an_older_study_gets_one_id_whoever_asks_first(storage_url):
    optuna.create_study(study_name="old", storage=storage_url)  # no id: an earlier tunelab
    handles = [
        optuna.load_study(study_name="old", storage=open_storage(storage_url)) for _ in range(3)
    ]
    with ThreadPoolExecutor(3) as pool:  # at once: one of them writes it
        assert len(set(pool.map(study_uid, handles))) == 1
    stored = optuna.load_study(study_name="old", storage=storage_url).user_attrs
    assert stored[keys.STUDY_UID] == study_uid(handles[0])
