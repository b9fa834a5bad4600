"""Per-epoch trial checkpoints: what a retried trial resumes from.

A checkpoint holds a trial's whole training state after its last epoch (modules, optimizers,
schedulers, random streams, early-stopping state). The loop saves one per epoch and removes it
when the trial ends for good; a retry of an interrupted or dead trial loads its source's.
`LocalCheckpoints` keeps them in a folder; the stores every worker of a cluster reaches (an
MLflow artifact store, fsspec URLs) follow the same `CheckpointStore` contract.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path
from typing import Any, Protocol

import torch


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
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(to_bytes(payload))
        # rename within one file system (NFS included) is atomic: a reader, or a kill
        # mid-write, sees the previous rung's file or this one, whole
        os.replace(tmp, path)

    def load(self, trial_number: int, device: torch.device | str) -> dict[str, Any] | None:
        path = self.path(trial_number)
        if not path.is_file():
            return None
        return torch.load(path, map_location=device, weights_only=True)

    def remove(self, trial_number: int) -> None:
        self.path(trial_number).unlink(missing_ok=True)

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
