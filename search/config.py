"""StudySpec: everything that defines a study, typed, validated, and stored on the study.

Precedence: CLI flags > `--config` file > defaults. The spec is saved as a study user
attribute, so later commands (`tunelab worker`, `best`, `report`) need only the study name
and the storage URL.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_STORAGE = "sqlite:///studies.db"
DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
SAMPLERS = ("tpe", "random", "cmaes", "gp", "qmc")
PRUNERS = ("hyperband", "median", "asha", "patient", "none")
DEVICES = ("auto", "cpu", "cuda", "mps")
SPEC_ATTR = "tunelab.spec"
"""Study user attribute holding the spec as JSON."""


class SpecError(ValueError):
    """Invalid study options: reported to the user as one line, exit code 2."""


@dataclass(frozen=True)
class StudySpec:
    """One hyperparameter search: what to tune, on what, how, and where results go."""

    task: str
    """Task name: cnn, vae or gan."""
    study_name: str = ""
    """Optuna study and MLflow experiment name ("" = <task>-<dataset>)."""
    dataset: str = "mnist5k"
    """Data set name (see objectives.data.DATASET_NAMES)."""
    data_dir: str = "data"
    """Root of torchvision-layout data sets."""
    limit_train: int | None = None
    """Tune on a stratified subset of this many training images."""
    n_trials: int = 20
    """The study's total target of finished (complete + pruned) trials."""
    timeout: float | None = None
    """Stop starting new trials after this many seconds."""
    epochs: int = 10
    """Maximum epochs per trial."""
    patience: int = 3
    """Early-stopping patience in epochs without improvement."""
    storage: str = DEFAULT_STORAGE
    """SQLAlchemy URL of the Optuna storage."""
    tracking_uri: str = DEFAULT_TRACKING_URI
    """MLflow tracking URI (database URL or http(s) server)."""
    sampler: str = "tpe"
    """Optuna sampler: tpe, random, cmaes, gp or qmc."""
    pruner: str = "hyperband"
    """Optuna pruner: hyperband, median, asha, patient or none."""
    seed: int = 0
    """Seed of the sampler and of every trial's training."""
    device: str = "auto"
    """Training device: auto, cpu, cuda or mps."""
    params: Mapping[str, Any] = field(default_factory=dict)
    """Search-space narrowing: parameter -> fixed value or {low, high, log} / {choices}."""
    task_options: Mapping[str, Any] = field(default_factory=dict)
    """Task settings that are not searched (e.g. the GAN's feature_space, fid_samples)."""
    checkpoint_dir: str = "checkpoints"
    """Folder of per-epoch trial checkpoints (a sub-folder per study) for crash recovery."""
    heartbeat_interval: int = 10
    """Seconds between a running trial's heartbeats in the storage."""
    grace_period: int = 30
    """Seconds without a heartbeat after which a trial counts as dead and is retried."""
    workers: int = 1
    """Worker processes on this machine sharing the study."""
    quiet: bool = False
    """No progress display."""

    @property
    def name(self) -> str:
        return self.study_name or f"{self.task}-{self.dataset}"

    @property
    def study_checkpoint_dir(self) -> str:
        return str(Path(self.checkpoint_dir) / self.name)

    def validate(self) -> StudySpec:
        try:
            return self._validate()
        except TypeError:  # e.g. a string where a number belongs, from a config file
            types = {f.name: f.type for f in fields()}
            wrong = [
                n
                for n in (
                    "n_trials",
                    "epochs",
                    "patience",
                    "workers",
                    "limit_train",
                    "timeout",
                    "seed",
                    "heartbeat_interval",
                    "grace_period",
                )
                if getattr(self, n) is not None and not isinstance(getattr(self, n), (int, float))
            ]
            names = ", ".join(f"{n} ({types[n]})" for n in wrong) or "an option"
            raise SpecError(f"wrong type for {names}") from None

    def _validate(self) -> StudySpec:
        from objectives.data import BUNDLED_SETS, TORCHVISION_SETS
        from objectives.tasks import task_names

        if self.task not in task_names():
            raise SpecError(f"unknown task '{self.task}'; known: {', '.join(task_names())}")
        if not (
            self.dataset in BUNDLED_SETS
            or self.dataset in TORCHVISION_SETS
            or (self.dataset.startswith("folder:") and len(self.dataset) > len("folder:"))
        ):
            known = [*BUNDLED_SETS, *TORCHVISION_SETS, "folder:PATH"]
            raise SpecError(f"unknown data set '{self.dataset}'; known: {', '.join(known)}")
        for name, known in (
            ("sampler", SAMPLERS),
            ("pruner", PRUNERS),
            ("device", DEVICES),
        ):
            if getattr(self, name) not in known:
                raise SpecError(
                    f"unknown {name} '{getattr(self, name)}'; known: {', '.join(known)}"
                )
        for name in (
            "n_trials",
            "epochs",
            "patience",
            "workers",
            "heartbeat_interval",
            "grace_period",
        ):
            if getattr(self, name) < 1:
                raise SpecError(f"--{name.replace('_', '-')} must be at least 1")
        if self.limit_train is not None and self.limit_train < 1:
            raise SpecError("--limit-train must be at least 1")
        if self.timeout is not None and self.timeout <= 0:
            raise SpecError("--timeout must be positive")
        if self.grace_period <= self.heartbeat_interval:
            raise SpecError("--grace-period must be longer than --heartbeat-interval")
        if not self.name.strip():
            raise SpecError("--study-name must not be empty")
        return self

    # -- persistence on the study ----------------------------------------------------------

    STORED_FIELDS = (
        "task",
        "dataset",
        "data_dir",
        "limit_train",
        "epochs",
        "patience",
        "tracking_uri",
        "sampler",
        "pruner",
        "seed",
        "params",
        "task_options",
        "n_trials",
        "checkpoint_dir",
        "heartbeat_interval",
        "grace_period",
    )
    IDENTITY_FIELDS = ("task", "dataset", "limit_train", "params", "task_options")
    """Fields a resumed study must keep: changing them would mix incomparable trials."""

    def to_json(self) -> str:
        return json.dumps({k: getattr(self, k) for k in self.STORED_FIELDS}, sort_keys=True)

    @classmethod
    def from_stored(cls, stored: str, **overrides: Any) -> StudySpec:
        values = json.loads(stored)
        values = {k: v for k, v in values.items() if k in {f.name for f in fields()}}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def conflicts_with(self, stored: str) -> list[str]:
        """Identity fields on which this spec differs from the one stored on the study."""
        old = json.loads(stored)
        return [
            f"{k}: stored {old.get(k)!r}, asked {getattr(self, k)!r}"
            for k in self.IDENTITY_FIELDS
            if _normal(old.get(k)) != _normal(getattr(self, k))
        ]


def _normal(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True))


def fields() -> tuple[dataclasses.Field, ...]:
    return dataclasses.fields(StudySpec)


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Options and parameter narrowing from a YAML file; SpecError on anything malformed."""
    import yaml

    file = Path(path)
    if not file.is_file():
        raise SpecError(f"config file {file} not found")
    try:
        content = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise SpecError(f"config file {file} is not valid YAML{line}") from None
    if not isinstance(content, dict):
        raise SpecError(f"config file {file} must be a mapping of options")
    known = {f.name for f in fields()} - {"task", "quiet"}
    options = {str(k).replace("-", "_"): v for k, v in content.items()}
    unknown = sorted(set(options) - known)
    if unknown:
        raise SpecError(
            f"config file {file}: unknown option(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    for key in ("params", "task_options"):
        if not isinstance(options.get(key, {}), dict):
            raise SpecError(f"config file {file}: {key} must be a mapping of names to values")
    return options


def storage_url(explicit: str | None = None) -> str:
    """The Optuna storage: the flag, else $TUNELAB_STORAGE, else sqlite:///studies.db."""
    return explicit or os.environ.get("TUNELAB_STORAGE") or DEFAULT_STORAGE


def tracking_uri(explicit: str | None = None) -> str:
    """The MLflow store: the flag, else $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def build_spec(task: str, config_file: str | None, cli: Mapping[str, Any]) -> StudySpec:
    """Defaults < config file < CLI flags (flags left unset are None), then environment
    defaults for storage and tracking, then validation."""
    values: dict[str, Any] = {"storage": storage_url(), "tracking_uri": tracking_uri()}
    if config_file:
        values.update(load_config_file(config_file))
    cli = {k: v for k, v in cli.items() if v is not None}
    if "task_options" in cli:  # flags refine the file's task options rather than replace them
        cli["task_options"] = {**values.get("task_options", {}), **cli["task_options"]}
    values.update(cli)
    try:
        spec = StudySpec(task=task, **values)
    except TypeError as exc:  # a wrongly typed option from the file
        raise SpecError(str(exc)) from None
    return spec.validate()
