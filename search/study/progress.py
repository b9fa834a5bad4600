"""A rich progress display of a study: trial, epoch, current and best value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tunelab.objectives.recorders import RunStatus, TrialRecorder


class StudyProgress:
    """One bar for the study's finished trials, one line for the running trial's epochs."""

    def __init__(
        self,
        study_name: str,
        target: int,
        done: int,
        max_epochs: int,
        direction: str,
        console: Console | None = None,
    ) -> None:
        self.direction = direction
        self.best: float | None = None
        self.max_epochs = max_epochs
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
        )
        self.trials = self.progress.add_task(study_name, total=target, completed=done, status="")

    def __enter__(self) -> StudyProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def wrap(self, inner: TrialRecorder, trial_number: int, metric: str) -> TrialRecorder:
        return _ProgressRecorder(self, inner, trial_number, metric)

    def update(self, text: str, finished: bool = False) -> None:
        best = "" if self.best is None else f"  best {self.best:.5g}"
        self.progress.update(self.trials, status=text + best, advance=1 if finished else 0)

    def offer_best(self, value: float) -> None:
        if self.best is None or (
            value > self.best if self.direction == "maximize" else value < self.best
        ):
            self.best = value


class _ProgressRecorder:
    """Passes everything on to the real recorder and shows the epoch's objective."""

    def __init__(
        self, display: StudyProgress, inner: TrialRecorder, number: int, metric: str
    ) -> None:
        self.display, self.inner, self.number, self.metric = display, inner, number, metric
        self.best: float | None = None
        display.update(f"trial {number}: starting")

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.inner.log_params(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.inner.log_metrics(metrics, step)
        if f"best_{self.metric}" in metrics:
            self.display.offer_best(metrics[f"best_{self.metric}"])
        if step is not None and self.metric in metrics:
            value = metrics[self.metric]
            self.display.update(
                f"trial {self.number} epoch {step}/{self.display.max_epochs}: "
                f"{self.metric} {value:.5g}"
            )

    def log_artifacts(self, files: Mapping[str, bytes]) -> None:
        self.inner.log_artifacts(files)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.inner.set_tags(tags)

    def end(self, status: RunStatus, reason: str | None = None) -> None:
        self.inner.end(status, reason)
        label = {"FINISHED": "complete", "KILLED": "pruned", "FAILED": "failed"}[status]
        self.display.update(f"trial {self.number} {label}", finished=status != "FAILED")
