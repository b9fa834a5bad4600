"""Per-epoch trial checkpoints: what a retried trial resumes from.

A checkpoint holds a trial's whole training state after its last epoch (modules, optimizers,
schedulers, random streams, early-stopping state). The loop saves one per epoch and removes it
when the trial ends for good; a retry of an interrupted or dead trial loads its source's.
"""

from __future__ import annotations

import io
import os
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


class LocalCheckpoints:
    """Checkpoints as files `trial-<number>.pt` in one folder."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def path(self, trial_number: int) -> Path:
        return self.folder / f"trial-{trial_number}.pt"

    def save(self, trial_number: int, payload: dict[str, Any]) -> None:
        path = self.path(trial_number)
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(buffer.getvalue())
        os.replace(tmp, path)  # atomic: a kill mid-write leaves the previous epoch intact

    def load(self, trial_number: int, device: torch.device | str) -> dict[str, Any] | None:
        path = self.path(trial_number)
        if not path.is_file():
            return None
        return torch.load(path, map_location=device, weights_only=True)

    def remove(self, trial_number: int) -> None:
        self.path(trial_number).unlink(missing_ok=True)
