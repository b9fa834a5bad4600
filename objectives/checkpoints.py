"""Per-rung trial checkpoints: what a retried, continued or resumed trial starts from.

A checkpoint holds a trial's whole training state after its last rung (modules, optimizers,
schedulers, random streams, early-stopping state). The loop saves one per rung through the
trial's `TrialCheckpoint`, which also knows the checkpoints the trial may resume from (those of
the trials it retries or continues: the scheduler's lineage names them). `LocalCheckpoints`
keeps them in a folder; the stores every worker of a cluster reaches (an MLflow artifact store,
fsspec URLs) follow the same `CheckpointStore` contract.

A checkpoint that cannot be read (torn by a crash mid-write on a file system without atomic
rename, truncated, or of another format) is no checkpoint: it is logged, and the trial starts
from the next candidate, or from scratch. Losing a configuration's progress costs its training
again; failing the trial would lose the configuration.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

FORMAT = 2
"""Version of the checkpoint payload; a checkpoint of another version is not resumed."""
_log = logging.getLogger(__name__)


class CheckpointStore(Protocol):
    """Where a study's trial checkpoints live."""

    def save(self, trial_number: int, payload: dict[str, Any]) -> None:
        """Replace the trial's checkpoint; a reader sees the old or the new one, whole."""

    def load(self, trial_number: int, device: torch.device | str) -> dict[str, Any] | None:
        """The trial's checkpoint, or None when it has none."""

    def remove(self, trial_number: int) -> None:
        """Delete the trial's checkpoint, if any."""

    def clear(self) -> None:
        """Delete every checkpoint of the study (it has reached its target)."""


def to_bytes(payload: dict[str, Any]) -> bytes:
    """A checkpoint as the bytes every store writes."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def from_bytes(data: bytes, device: torch.device | str) -> dict[str, Any]:
    """A checkpoint read back; tensors only, never arbitrary pickled objects."""
    return torch.load(io.BytesIO(data), map_location=device, weights_only=True)


class LocalCheckpoints:
    """Checkpoints as files `trial-<number>.pt` in one folder."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def path(self, trial_number: int) -> Path:
        return self.folder / f"trial-{trial_number}.pt"

    def save(self, trial_number: int, payload: dict[str, Any]) -> None:
        path = self.path(trial_number)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        # private (the weights are the user's), and on disk before the rename: renamed
        # unsynced, a power loss or a kernel crash can leave the new name on empty blocks
        descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(to_bytes(payload))
            file.flush()
            os.fsync(file.fileno())
        # rename within one file system (NFS included) is atomic: a reader, or a kill
        # mid-write, sees the previous rung's file or this one, whole
        os.replace(tmp, path)
        _fsync_folder(path.parent)

    def load(self, trial_number: int, device: torch.device | str) -> dict[str, Any] | None:
        path = self.path(trial_number)
        if not path.is_file():
            return None
        return torch.load(path, map_location=device, weights_only=True)

    def remove(self, trial_number: int) -> None:
        self.path(trial_number).unlink(missing_ok=True)

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (the folder's entry is what the rename changed)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # a file system without directory handles: the rename stands as it is
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def readable(store: CheckpointStore, trial_number: int, device: torch.device | str):
    """The trial's checkpoint if it can be used: None when there is none, or when it cannot be
    read or is of another format (logged: the trial starts without it)."""
    try:
        payload = store.load(trial_number, device)
    except Exception as error:  # torn, truncated, not a torch file: any reader's error
        _log.warning(
            "checkpoint of trial %s cannot be read (%s: %s); not resumed from it",
            trial_number,
            type(error).__name__,
            str(error).splitlines()[0][:200] if str(error) else "",
        )
        return None
    if payload is not None and payload.get("format") != FORMAT:
        _log.warning("checkpoint of trial %s is of another format: not resumed", trial_number)
        return None
    return payload


class TrialCheckpoint:
    """One trial's checkpoints: it saves its own and may resume from those of the trials it
    takes up (`sources`, the nearest first: the trial it retries or continues, then the one
    that trial had resumed from, when it died before saving its own)."""

    def __init__(self, store: CheckpointStore, number: int, sources: Sequence[int] = ()) -> None:
        self.store = store
        self.number = number
        self.sources = tuple(sources)
        self.loaded_from: int | None = None
        """The trial whose checkpoint the last `load` returned."""

    def load(self, device: torch.device | str) -> dict[str, Any] | None:
        """The nearest readable checkpoint among the sources (None: start from scratch)."""
        for source in self.sources:
            payload = readable(self.store, source, device)
            if payload is not None:
                self.loaded_from = source
                return payload
        return None

    def save(self, payload: dict[str, Any]) -> None:
        """This trial's checkpoint; the one it resumed from is superseded and removed."""
        self.store.save(self.number, {**payload, "format": FORMAT})
        if self.loaded_from is not None:
            self.store.remove(self.loaded_from)
            self.loaded_from = None

    def drop(self) -> None:
        """The trial ended for good: its checkpoint, and the one it resumed from, are of no
        more use."""
        self.store.remove(self.number)
        if self.loaded_from is not None:
            self.store.remove(self.loaded_from)
            self.loaded_from = None
