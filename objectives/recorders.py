"""Where the shared loop sends a trial's record: the protocol and two in-memory recorders.

MLflow's recorder lives in `tunelab.search.adapters.tracking`; these two serve unit tests,
notebooks and bare benchmarks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol

RunStatus = Literal["FINISHED", "KILLED", "FAILED"]
"""How a trial's run ends: complete, pruned, failed."""


class TrialRecorder(Protocol):
    """Where the loop sends a trial's record (MLflow in `search.tracking`; nothing in tests)."""

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None: ...

    def log_artifacts(self, files: Mapping[str, bytes]) -> None: ...

    def set_tags(self, tags: Mapping[str, str]) -> None: ...

    def end(self, status: RunStatus, reason: str | None = None) -> None: ...


class NullRecorder:
    """Records nothing: for unit tests and bare benchmarks."""

    def log_params(self, params: Mapping[str, Any]) -> None:
        pass

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        pass

    def log_artifacts(self, files: Mapping[str, bytes]) -> None:
        pass

    def set_tags(self, tags: Mapping[str, str]) -> None:
        pass

    def end(self, status: RunStatus, reason: str | None = None) -> None:
        pass


class MemoryRecorder:
    """Keeps everything a trial records, in memory: for tests, notebooks and benchmarks."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self.history: list[tuple[int | None, dict[str, float]]] = []
        self.artifacts: dict[str, bytes] = {}
        self.tags: dict[str, str] = {}
        self.status: RunStatus | None = None
        self.reason: str | None = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.history.append((step, dict(metrics)))

    def log_artifacts(self, files: Mapping[str, bytes]) -> None:
        self.artifacts.update(files)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.tags.update(tags)

    def end(self, status: RunStatus, reason: str | None = None) -> None:
        self.status, self.reason = status, reason

    def steps(self, name: str) -> dict[int, float]:
        """A metric's values by step (the first value logged at each step)."""
        values: dict[int, float] = {}
        for step, metrics in self.history:
            if step is not None and name in metrics:
                values.setdefault(step, metrics[name])
        return values
