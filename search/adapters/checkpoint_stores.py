"""Where a study's trial checkpoints live: a folder, an MLflow artifact store or an fsspec URL.

`--checkpoint-dir` is one of
- a folder (`checkpoints`, `/mnt/shared/checkpoints`) or a `file://` URL;
- `mlflow-artifacts:/PATH`: the artifact store of the MLflow tracking server the study tracks
  to (`mlflow server --serve-artifacts`), so a deployment with a shared tracking server needs
  nothing more for any worker on any machine to resume any trial;
- any other fsspec URL (`s3://bucket/path`, `gs://...`, `memory://...`), with the store's
  credentials in the environment as its library reads them (never in the URL: it is stored on
  the study).

Every study has a folder of its own there, named by `tunelab.search.study.identity.study_key`
(its name made safe, then its id): one path component, so nothing leaves the store's root.
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
import re
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Protocol

import torch

from tunelab.objectives.checkpoints import CheckpointStore, LocalCheckpoints, from_bytes, to_bytes
from tunelab.search.adapters.tracking import is_server
from tunelab.search.spec import SpecError

MLFLOW_SCHEME = "mlflow-artifacts"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
_KEY = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")
_VERSION = re.compile(r"^(\d{20})-([0-9a-f]{16})\.pt$")
DIGEST_CHARS = 16
"""Hex characters of a version's sha256 kept in its name: enough to tell a torn copy."""
LOAD_ATTEMPTS = 3
"""Listings a reader tries when every version it saw was superseded while it read."""


def scheme_of(location: str) -> str | None:
    """The URL scheme of a --checkpoint-dir (None for a plain folder)."""
    match = _SCHEME.match(location)
    return match.group(1).lower() if match else None


def check_checkpoint_location(location: str, tracking_uri: str) -> None:
    """SpecError (one line) unless --checkpoint-dir names a store tunelab can use."""
    scheme = scheme_of(location)
    if scheme is None or scheme == "file":
        folder = _local_folder(location)
        if folder.exists() and not folder.is_dir():
            raise SpecError(f"--checkpoint-dir {folder} is not a folder")
        # a file on the way (file.txt/ckpt) would end the first trial, not the command
        blocked = next((p for p in folder.parents if p.exists() and not p.is_dir()), None)
        if blocked is not None:
            raise SpecError(f"--checkpoint-dir {folder}: {blocked} is a file, not a folder")
        return
    if urllib.parse.urlsplit(location).password is not None:
        raise SpecError(
            "--checkpoint-dir must not hold a password (it is stored on the study): give the "
            "store's credentials in the environment"
        )
    if scheme == MLFLOW_SCHEME:
        if not is_server(tracking_uri):
            raise SpecError(
                f"--checkpoint-dir {location} needs an http(s) MLflow tracking server "
                "(mlflow server --serve-artifacts) as --tracking-uri"
            )
        try:
            MlflowBlobs(location, tracking_uri).names("")
        except Exception as exc:  # HTTP and MLflow errors differ; their first line says enough
            text = str(exc).strip() or type(exc).__name__
            # a URL in the message may carry the tracking server's user and password
            reason = re.sub(r"//[^/@\s]+@", "//", text.splitlines()[0])[:200]
            raise SpecError(
                f"--checkpoint-dir {location}: the tracking server's artifact store does not "
                f"answer ({reason}); start it with --serve-artifacts"
            ) from None
        return
    import fsspec

    try:
        fsspec.get_filesystem_class(scheme)
    except ValueError:
        raise SpecError(
            f"--checkpoint-dir {location}: unknown storage scheme '{scheme}:' (use a folder, "
            f"{MLFLOW_SCHEME}:/PATH or an fsspec URL such as s3://bucket/path)"
        ) from None
    except ImportError as exc:  # e.g. s3fs for s3://: fsspec's message names the package
        raise SpecError(f"--checkpoint-dir {location}: {str(exc).splitlines()[0]}") from None


def open_checkpoints(location: str, study_key: str, tracking_uri: str) -> CheckpointStore:
    """The checkpoint store of one study (`study_key`: its folder there, one safe name)."""
    if not _KEY.match(study_key):
        raise ValueError(f"not a safe store key: {study_key!r}")
    scheme = scheme_of(location)
    if scheme is None or scheme == "file":
        return LocalCheckpoints(_local_folder(location) / study_key)
    if scheme == MLFLOW_SCHEME:
        root = f"{location.rstrip('/')}/{study_key}"
        return VersionedCheckpoints(MlflowBlobs(root, tracking_uri))
    from fsspec.core import url_to_fs

    fs, path = url_to_fs(location)
    return VersionedCheckpoints(FsspecBlobs(fs, f"{path.rstrip('/')}/{study_key}"))


def _local_folder(location: str) -> Path:
    if scheme_of(location) != "file":
        return Path(location)
    parts = urllib.parse.urlsplit(location)
    if parts.netloc not in ("", "localhost"):
        raise SpecError(f"--checkpoint-dir {location}: a file:// URL names a local folder")
    return Path(urllib.request.url2pathname(parts.path))


# -- stores without an atomic rename -----------------------------------------------------------


class Blobs(Protocol):
    """Files under one root, by '/'-separated key: what a versioned store needs of a backend."""

    def put(self, key: str, data: bytes) -> None:
        """Write the file (a reader may see it partly written)."""

    def get(self, key: str) -> bytes | None:
        """The file's content, or None when there is no such file."""

    def names(self, folder: str) -> list[str]:
        """Names of the files directly in the folder ([] when it does not exist)."""

    def delete(self, key: str) -> None:
        """Delete a file or a folder with everything in it ('' = the root); absent is fine."""


class VersionedCheckpoints:
    """Checkpoints as write-once versions `trial-<n>/<version>-<sha256 prefix>.pt`.

    For stores where a reader may see a file while it is written: MLflow's artifact proxy
    copies an upload into place with a plain copy; fsspec file systems rename non-atomically or
    not at all (object stores copy, then delete). Object stores do make a single upload appear
    whole, but one scheme for all keeps it simple. A version is never overwritten, its name
    carries its digest, and a reader takes the newest version whose content matches it: the
    previous rung or the new one, whole. The writer deletes older versions only once the new
    one is written. A trial has one writer at a time (a retry gets a number of its own).
    """

    def __init__(self, blobs: Blobs) -> None:
        self.blobs = blobs
        self._last: dict[int, int] = {}

    def save(self, trial_number: int, payload: dict[str, Any]) -> None:
        data = to_bytes(payload)
        folder = _trial_folder(trial_number)
        # wall time orders versions across a worker's restarts; +1 keeps them strictly
        # increasing within this process even if the clock steps back
        version = max(time.time_ns(), self._last.get(trial_number, 0) + 1)
        self._last[trial_number] = version
        name = f"{version:020d}-{hashlib.sha256(data).hexdigest()[:DIGEST_CHARS]}.pt"
        self.blobs.put(f"{folder}/{name}", data)
        for old, _ in _versions(self.blobs.names(folder)):
            if old != name and old < name:
                self.blobs.delete(f"{folder}/{old}")

    def load(self, trial_number: int, device: torch.device | str) -> dict[str, Any] | None:
        folder = _trial_folder(trial_number)
        for _ in range(LOAD_ATTEMPTS):
            versions = _versions(self.blobs.names(folder))
            if not versions:
                return None
            for name, digest in versions:
                data = self.blobs.get(f"{folder}/{name}")
                if data is not None and hashlib.sha256(data).hexdigest().startswith(digest):
                    return from_bytes(data, device)
            # every version seen was still being written or deleted meanwhile: list again
        return None

    def remove(self, trial_number: int) -> None:
        self.blobs.delete(_trial_folder(trial_number))
        self._last.pop(trial_number, None)

    def clear(self) -> None:
        self.blobs.delete("")
        self._last.clear()


def _trial_folder(trial_number: int) -> str:
    return f"trial-{int(trial_number)}"


def _versions(names: list[str]) -> list[tuple[str, str]]:
    """(name, digest) of the checkpoint versions among `names`, the newest first."""
    found = [(n, m.group(2)) for n in names if (m := _VERSION.match(n))]
    return sorted(found, reverse=True)


class FsspecBlobs:
    """Blobs in an fsspec file system, under one root path."""

    def __init__(self, fs: Any, root: str) -> None:
        self.fs = fs
        self.root = root

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}" if key else self.root

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            self.fs.pipe_file(path, data)
        except FileNotFoundError:  # a file system with real folders: make them, once
            self.fs.makedirs(posixpath.dirname(path), exist_ok=True)
            self.fs.pipe_file(path, data)

    def get(self, key: str) -> bytes | None:
        try:
            return self.fs.cat_file(self._path(key))
        except FileNotFoundError:
            return None

    def names(self, folder: str) -> list[str]:
        try:
            entries = self.fs.ls(self._path(folder), detail=True)
        except FileNotFoundError:
            return []
        return [posixpath.basename(e["name"].rstrip("/")) for e in entries if e["type"] == "file"]

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self._path(key), recursive=True)


class MlflowBlobs:
    """Blobs in an MLflow artifact store (`mlflow-artifacts:`, through the tracking server)."""

    def __init__(self, root_uri: str, tracking_uri: str) -> None:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        self.repo = get_artifact_repository(root_uri, tracking_uri=tracking_uri)

    def put(self, key: str, data: bytes) -> None:
        folder, name = posixpath.split(key)
        with tempfile.TemporaryDirectory(prefix="tunelab-") as tmp:
            local = Path(tmp, name)
            local.write_bytes(data)
            self.repo.log_artifact(str(local), folder or None)

    def get(self, key: str) -> bytes | None:
        with tempfile.TemporaryDirectory(prefix="tunelab-") as tmp:
            local = Path(tmp, "checkpoint.pt")
            try:
                # the one-file download every artifact repository implements: the public
                # download_artifacts wraps a 404 in a generic error and draws a progress bar
                self.repo._download_file(key, str(local))
            except Exception as exc:
                if _not_found(exc):
                    return None
                raise
            return local.read_bytes()

    def names(self, folder: str) -> list[str]:
        try:
            infos = self.repo.list_artifacts(folder or None)
        except Exception as exc:
            if _not_found(exc):
                return []
            raise
        return [posixpath.basename(i.path) for i in infos if not i.is_dir]

    def delete(self, key: str) -> None:
        try:
            self.repo.delete_artifacts(key or None)
        except Exception as exc:
            if not _not_found(exc):
                raise


def _not_found(exc: BaseException) -> bool:
    """Whether an MLflow artifact call failed because the file or folder does not exist."""
    if isinstance(exc, FileNotFoundError):  # a repository on a local file system
        return True
    response = getattr(exc, "response", None)
    if getattr(response, "status_code", None) == 404:
        return True
    return getattr(exc, "error_code", None) == "RESOURCE_DOES_NOT_EXIST"
