"""StudySpec: every option of a study, declared once, typed, validated and stored on the study.

Each field of `StudySpec` is the single declaration of one option: its type and default, its
docstring (the `--help` text), and an `Option` saying how it is offered (flag, panel, choices,
bounds), whether it is stored on the study and whether it is part of the study's identity.
The command line (`tunelab.search.cli.options`), the YAML checks and the stored fields are
all derived from it.

Precedence: CLI flags > `--config` file > environment (for the storage and tracking URIs) >
defaults. The stored part of the spec is saved as a study user attribute, so later commands
(`tunelab worker`, `best`, `report`) need only the study name and the storage URL.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import json
import math
import os
import re
import textwrap
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tunelab.objectives.budget import AUTO_RUNG_VAL_IMAGES
from tunelab.search.strategies import PRUNERS, SAMPLERS

DEFAULT_STORAGE = "sqlite:///studies.db"
DEFAULT_TRACKING_URI = "sqlite:///mlruns/mlflow.db"
STORAGE_ENV = "TUNELAB_STORAGE"
"""Environment variable with the storage URL (keeps a password out of process arguments)."""
TRACKING_ENV = "MLFLOW_TRACKING_URI"
"""MLflow's own environment variable for the tracking URI."""
MLFLOW_UI_ENV = "TUNELAB_MLFLOW_UI_URL"
"""Environment variable with the MLflow UI's base URL, for links."""
DASHBOARD_ENV = "TUNELAB_DASHBOARD_URL"
"""Environment variable with optuna-dashboard's base URL, for links."""
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16")
DEFAULT_TRIALS = 20
"""The trial target of a study given neither --n-trials nor --timeout."""
DEFAULT_EPOCHS = 10
"""The epoch budget of a trial without --max-epochs or --timeout."""
MIN_PATIENCE = 3
"""Automatic early-stopping patience: at least this many epochs."""


class SpecError(ValueError):
    """Invalid study options: reported to the user as one line, exit code 2."""


STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
"""A study name becomes a folder name (checkpoints, reports, MLflow artifacts): letters,
digits, '.', '_' and '-', a letter or digit first (so never '.' or '..'), no '/', at most 100
characters."""


def check_study_name(name: str, label: str = "study name") -> str:
    """`name`, or SpecError unless it is a safe study name (`STUDY_NAME`)."""
    if not isinstance(name, str) or not STUDY_NAME.fullmatch(name):
        shown = repr(name if len(str(name)) <= 60 else f"{str(name)[:60]}...")
        raise SpecError(
            f"{label} {shown} is not allowed: use letters, digits, '.', '_' and '-', "
            "a letter or digit first, at most 100 characters"
        )
    return name


def safe_study_name(text: str) -> str:
    """`text` made a valid study name (the default TASK-DATASET of a folder:PATH data set)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")[:100] or "study"


def check_dataset_name(dataset: str) -> str:
    """`dataset`, or SpecError unless it names a data set: a built-in one, folder:PATH,
    file:PATH.npz or file:PATH.pt, memory:NAME (data handed to the Python API), or `own` (a
    function-style objective's own data)."""
    from tunelab.objectives.data import (
        BUNDLED_SETS,
        DATASET_NAMES,
        FILE_SUFFIXES,
        MEMORY_PREFIX,
        OWN_DATA,
        TORCHVISION_SETS,
    )

    if dataset in (*BUNDLED_SETS, *TORCHVISION_SETS, OWN_DATA):
        return dataset
    for prefix in ("folder:", "file:", MEMORY_PREFIX):
        if dataset.startswith(prefix) and len(dataset) > len(prefix):
            if prefix == "file:" and Path(dataset).suffix not in FILE_SUFFIXES:
                raise SpecError(
                    f"data file '{dataset.removeprefix(prefix)}' must end in .npz "
                    "(numpy.savez) or .pt (torch.save of a dict of tensors)"
                )
            return dataset
    raise SpecError(f"unknown data set '{dataset}'; known: {', '.join(DATASET_NAMES)}")


def default_study_name(task: str, dataset: str) -> str:
    """TASK-DATASET, from the task's own `name` (importing a package.module:Class for it) and
    a short label of the data set: a data file's stem, data handed to the Python API by its
    label; a function-style objective's study (its own data) is named after it alone."""
    from tunelab.objectives.data import MEMORY_PREFIX, OWN_DATA

    name = _task_name(task)
    if dataset == OWN_DATA:
        return safe_study_name(name)
    if dataset.startswith("file:"):
        dataset = Path(dataset.removeprefix("file:")).stem
    elif dataset.startswith(MEMORY_PREFIX):  # memory:LABEL-DIGEST
        dataset = dataset.removeprefix(MEMORY_PREFIX).rpartition("-")[0] or dataset
    return safe_study_name(f"{name}-{dataset}")


@functools.lru_cache(maxsize=64)
def _task_name(task: str) -> str:
    from tunelab.objectives.registry import TaskError, is_reference, task_class

    if not is_reference(task):
        return task  # a built-in or registered name is the task's name
    try:
        return str(task_class(task).name)
    except TaskError as exc:
        raise SpecError(str(exc)) from None


@dataclass(frozen=True)
class Option:
    """How one StudySpec field is offered and kept."""

    panel: str = "Study"
    """Section of `--help` the flag is listed in."""
    stored: bool = True
    """Saved on the study, so workers and analysis commands read it from there."""
    identity: bool = False
    """Part of the study's identity: a resumed study must keep it."""
    choices: tuple[str, ...] = ()
    """The values it accepts (none = any of its type)."""
    minimum: float | None = None
    """Smallest value accepted (inclusive)."""
    positive: bool = False
    """Only values above zero are accepted."""
    flag: str | None = None
    """Its command-line flag ("" = none: set in the config file only; None = --field-name)."""
    aliases: tuple[str, ...] = ()
    """Former names, still accepted as flags (--name) and config-file keys (name)."""
    in_file: bool = True
    """Settable in the YAML config file."""
    joins: bool = False
    """A worker joining the study may set it (`tunelab worker`); the rest comes from the study."""
    env: str | None = None
    """Environment variable that gives its default."""
    shown_default: str | None = None
    """The default as `--help` shows it (None = the field's default)."""
    auto: bool = False
    """`auto` is accepted for it (on the command line and in the config file) and means None:
    tunelab chooses."""
    hidden: bool = False
    """Left out of `--help` (set by tunelab for its own worker processes)."""


def option(default: Any = dataclasses.MISSING, **how: Any) -> Any:
    """A StudySpec field with its `Option`; its docstring (below it) is its help text."""
    meta = {"option": Option(**how)}
    if default is dataclasses.MISSING:
        return field(metadata=meta)
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class StudySpec:
    """One hyperparameter search: what to tune, on what, how, and where results go."""

    task: str = option(identity=True, flag="", in_file=False)
    """Task: cnn, vae, gan, a name `tunelab tasks` lists, or package.module:Class."""
    study_name: str = option("", stored=False, shown_default="TASK-DATASET")
    """Optuna study and MLflow experiment name."""
    n_trials: int | None = option(
        None, minimum=1, shown_default=f"{DEFAULT_TRIALS}; no limit with --timeout"
    )
    """The study's total target of finished (complete + pruned) trials."""
    timeout: float | None = option(None, positive=True, stored=False, joins=True)
    """Time budget in seconds: no trial starts after it, running ones end at their next rung."""
    deadline: float | None = option(
        None, stored=False, joins=True, in_file=False, hidden=True, positive=True
    )
    """End of the time budget as a Unix time (what `run --workers` gives its workers)."""

    dataset: str = option("mnist5k", panel="Data", identity=True)
    """mnist5k, digits, mnist, fashion-mnist, kmnist, cifar10, folder:PATH (one sub-folder
    of images per class) or file:PATH.npz / file:PATH.pt (x_train, y_train, x_val, y_val,
    optionally x_test, y_test: your own split, kept)."""
    data_dir: str = option("data", panel="Data")
    """Root of torchvision data sets (downloaded there when missing)."""
    limit_train: int | None = option(
        None, panel="Data", identity=True, minimum=1, shown_default="all"
    )
    """Tune on a stratified subset of this many training images."""

    max_epochs: int | None = option(
        None,
        panel="Training",
        minimum=1,
        aliases=("epochs",),
        auto=True,
        shown_default=f"{DEFAULT_EPOCHS}, or what --timeout affords",
    )
    """Epoch budget of each trial (fixed when the study is created)."""
    patience: int | None = option(
        None,
        panel="Training",
        minimum=1,
        auto=True,
        shown_default=f"{MIN_PATIENCE}, or a third of a longer trial budget",
    )
    """Early-stopping patience: epochs without a better objective."""
    seed: int = option(0, panel="Training")
    """Seed of the sampler and of every trial's training."""
    device: str = option("auto", panel="Training", stored=False, joins=True, choices=DEVICES)
    """Training device."""
    precision: str = option("auto", panel="Training", joins=True, choices=PRECISIONS)
    """Training arithmetic: auto = bfloat16 autocast on a CPU that computes it natively."""

    sampler: str = option("tpe", panel="Search", choices=tuple(SAMPLERS))
    """Optuna sampler."""
    pruner: str = option("auto", panel="Search", choices=tuple(PRUNERS))
    """Optuna pruner; auto: Hyperband, or halving (successive halving that pauses trials)
    under a time budget."""
    params: Mapping[str, Any] = option({}, panel="Search", identity=True, flag="")
    """Search-space narrowing: parameter -> fixed value, {low, high, log} or {choices}."""
    task_options: Mapping[str, Any] = option({}, panel="Search", identity=True, flag="")
    """Task settings that are not searched (e.g. the GAN's feature_space, fid_samples)."""
    objectives: tuple[str, ...] = option(
        (), panel="Search", identity=True, shown_default="the task's metric"
    )
    """Metrics to optimize together, comma-separated, the primary (scored during training)
    first: e.g. val_accuracy,params for a Pareto front; `tunelab tasks` lists them."""
    constraints: tuple[str, ...] = option(
        (), panel="Search", identity=True, flag="--constraint", aliases=("constraint",)
    )
    """A bound on a metric, e.g. 'params<=100000' (repeatable); one known before training
    ends a configuration that breaks it at once, untrained."""
    rung_images: int | None = option(
        None,
        panel="Search",
        identity=True,
        minimum=1,
        shown_default="epochs cut into parts of at most 8192",
    )
    """Training images between two reports to the pruner (a rung)."""
    rung_val_images: int = option(AUTO_RUNG_VAL_IMAGES, panel="Search", identity=True, minimum=0)
    """Validation images scored at every rung (0 = all); the best weights are scored on all."""

    storage: str = option(
        DEFAULT_STORAGE,
        panel="Storage and tracking",
        stored=False,
        joins=True,
        env=STORAGE_ENV,
    )
    """SQLAlchemy URL of the Optuna storage, e.g. postgresql://user@host/db."""
    tracking_uri: str = option(
        DEFAULT_TRACKING_URI, panel="Storage and tracking", joins=True, env=TRACKING_ENV
    )
    """MLflow tracking URI: a database URL or an http(s):// tracking server."""
    checkpoint_dir: str = option("checkpoints", panel="Storage and tracking")
    """Trial checkpoints (per study): a folder, mlflow-artifacts:/PATH or an fsspec URL."""

    heartbeat_interval: int = option(10, panel="Workers and recovery", minimum=1)
    """Seconds between a running trial's heartbeats in the storage."""
    grace_period: int = option(30, panel="Workers and recovery", minimum=1)
    """Seconds without a heartbeat after which a trial counts as dead and is retried."""
    workers: int | None = option(
        None,
        panel="Workers and recovery",
        stored=False,
        minimum=1,
        auto=True,
        shown_default="auto: one per GPU, or one per core on a CPU",
    )
    """Worker processes on this machine sharing the study."""
    threads: int | None = option(
        None,
        panel="Workers and recovery",
        stored=False,
        joins=True,
        minimum=1,
        auto=True,
        shown_default="auto: the cores shared among the CPU workers",
    )
    """CPU threads of each worker's training."""
    mlflow_ui_url: str | None = option(
        None,
        panel="Storage and tracking",
        joins=True,
        env=MLFLOW_UI_ENV,
        shown_default="the tracking server, or what `tunelab ui` serves",
    )
    """Base URL of the MLflow UI in the links tunelab prints and stores."""
    dashboard_url: str | None = option(
        None, panel="Storage and tracking", joins=True, env=DASHBOARD_ENV, shown_default="none"
    )
    """Base URL of optuna-dashboard, tagged on every trial's MLflow run."""
    system_metrics: bool = option(False, panel="Storage and tracking", joins=True)
    """Log CPU, memory and GPU use to every trial's MLflow run (MLflow system metrics)."""
    quiet: bool = option(False, panel="Output", stored=False, joins=True, in_file=False)
    """Plain log lines instead of the progress display."""
    verbose: bool = option(False, panel="Output", stored=False, joins=True, in_file=False)
    """Show the libraries' own log lines too (Optuna's per-trial lines, MLflow's migrations)."""

    def __post_init__(self) -> None:
        for f in spec_fields():
            value = getattr(self, f.name)
            if field_type(f)[0] is tuple and isinstance(value, (str, list)):
                object.__setattr__(self, f.name, as_names(value))

    @property
    def name(self) -> str:
        """The study's name: --study-name, or TASK-DATASET with the task's own `name` (the
        name its errors and listings use, also for a package.module:Class)."""
        if self.study_name:
            return self.study_name
        return default_study_name(self.task, self.dataset)

    @property
    def trial_target(self) -> int | None:
        """Finished trials to reach: --n-trials; with a time budget and none, no limit."""
        if self.n_trials is not None:
            return self.n_trials
        return None if self.timeout or self.deadline else DEFAULT_TRIALS

    def patience_for(self, budget_epochs: float) -> float:
        """Early-stopping patience in epochs: --patience, or a third of the trial budget (at
        least MIN_PATIENCE), so that a long, time-planned trial is not stopped while its
        learning rate is still high."""
        return self.patience or max(MIN_PATIENCE, budget_epochs / 3)

    # -- validation ------------------------------------------------------------------------

    def validate(self) -> StudySpec:
        """This spec, or SpecError naming the first option that is wrong."""
        for f in spec_fields():
            _check_option(f, getattr(self, f.name))
        self._check_names()
        if self.grace_period <= self.heartbeat_interval:
            raise SpecError("--grace-period must be longer than --heartbeat-interval")
        return self

    def _check_names(self) -> None:
        from tunelab.objectives.registry import known_task, task_names

        if not known_task(self.task):
            raise SpecError(
                f"unknown task '{self.task}'; known: {', '.join(task_names())}, "
                "or package.module:Class"
            )
        check_dataset_name(self.dataset)
        if not self.name.strip():
            raise SpecError("--study-name must not be empty")
        check_study_name(self.name, "--study-name")

    # -- persistence on the study ----------------------------------------------------------

    def to_json(self) -> str:
        """The stored options, as saved on the study (which optuna-dashboard shows to anyone
        who opens it): no password, which a joining process brings itself."""
        values = {k: getattr(self, k) for k in stored_fields()}
        for key in ("tracking_uri", "mlflow_ui_url", "dashboard_url"):
            if values.get(key):
                values[key] = without_password(values[key])
        return json.dumps(values, sort_keys=True)

    @classmethod
    def from_stored(cls, stored: str, **overrides: Any) -> StudySpec:
        """The spec saved on a study, with the options a joining process sets itself."""
        values = stored_values(stored)
        known = {f.name for f in spec_fields()}
        values = {k: v for k, v in values.items() if k in known}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def conflicts_with(self, stored: str) -> list[str]:
        """Identity fields on which this spec differs from the one stored on the study."""
        old = stored_values(stored)
        return [
            f"{k}: stored {old.get(k)!r}, asked {getattr(self, k)!r}"
            for k in identity_fields()
            if _normal(old.get(k, _declared_default(k))) != _normal(getattr(self, k))
        ]


# -- what the declarations say ----------------------------------------------------------------


def spec_fields() -> tuple[dataclasses.Field, ...]:
    return dataclasses.fields(StudySpec)


def option_of(f: dataclasses.Field) -> Option:
    return f.metadata["option"]


def stored_fields() -> tuple[str, ...]:
    """Fields saved on the study."""
    return tuple(f.name for f in spec_fields() if option_of(f).stored)


def identity_fields() -> tuple[str, ...]:
    """Fields a resumed study must keep: changing them would mix incomparable trials."""
    return tuple(f.name for f in spec_fields() if option_of(f).identity)


def file_fields() -> tuple[str, ...]:
    """Keys a config file may set."""
    return tuple(f.name for f in spec_fields() if option_of(f).in_file)


MASKED_PASSWORD = "***"
"""What stands for a password in a URL tunelab stores or shows."""


def without_password(url: str) -> str:
    """The URL with its password, if any, replaced by MASKED_PASSWORD."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if not password or password == MASKED_PASSWORD:
        return url
    user_info, _, host = parts.netloc.rpartition("@")
    user = user_info.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASKED_PASSWORD}@{host}"))


_PASSWORD_IN_URL = re.compile(r"(\b[A-Za-z][\w+.-]*://[^/\s:@]*):([^@\s/]+)@")


def mask_urls(text: str) -> str:
    """`text` with the password of every URL in it replaced by MASKED_PASSWORD: for any line
    printed, logged or stored that may quote a URL (an error message, a link)."""
    return _PASSWORD_IN_URL.sub(lambda m: f"{m.group(1)}:{MASKED_PASSWORD}@", text)


def with_password_of(url: str, donor: str) -> str | None:
    """`url` (its password masked) with the password of `donor` when both name the same user
    on the same server (a database holding the study and the runs); None otherwise."""
    mine, theirs = urlsplit(url), urlsplit(donor)
    if not theirs.password or (mine.username, mine.hostname, mine.port) != (
        theirs.username,
        theirs.hostname,
        theirs.port,
    ):
        return None
    host = mine.netloc.rpartition("@")[2]
    return urlunsplit(mine._replace(netloc=f"{mine.username}:{theirs.password}@{host}"))


def stored_values(stored: str | None) -> dict[str, Any]:
    """The options saved on a study (its `tunelab.spec` JSON), under their current names."""
    return _canonical_keys(json.loads(stored or "{}"))


def _canonical_keys(values: Mapping[str, Any]) -> dict[str, Any]:
    """Keys under their current names (an alias such as `epochs` -> `max_epochs`)."""
    renamed = {a: f.name for f in spec_fields() for a in option_of(f).aliases}
    return {renamed.get(k, k): v for k, v in values.items()}


def _declared_default(name: str) -> Any:
    """A field's declared default: what a study stored before the field existed meant."""
    f = next(f for f in spec_fields() if f.name == name)
    return None if f.default is dataclasses.MISSING else f.default


def as_names(value: str | list | tuple) -> tuple[str, ...]:
    """A list of names from text ('a,b'), or a list of texts each of which may hold several."""
    items = [value] if isinstance(value, str) else list(value)
    if not all(isinstance(item, str) for item in items):
        return tuple(items)  # left for validation to refuse
    return tuple(part.strip() for item in items for part in item.split(",") if part.strip())


def _normal(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True))


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (and of its bases), as one line."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__[:-1]):
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):  # no source at hand: no help text, nothing worse
            continue
        body = ast.parse(source).body[0].body
        for node, following in zip(body, body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def field_type(f: dataclasses.Field, cls: type | None = None) -> tuple[type, bool]:
    """(the field's type, whether None is allowed) from its annotation in `cls` (StudySpec)."""
    hint = typing.get_type_hints(cls or StudySpec)[f.name]
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        (inner,) = [a for a in args if a is not type(None)]
        return inner, True
    origin = typing.get_origin(hint)
    return (origin or hint), False


def _check_option(f: dataclasses.Field, value: Any) -> None:
    how = option_of(f)
    kind, optional = field_type(f)
    label = f"--{f.name.replace('_', '-')}" if how.flag != "" else f.name
    if value is None:
        if optional:
            return
        raise SpecError(f"{label} must be set")
    if not _has_type(value, kind):
        raise SpecError(f"{label} must be {_type_name(kind)}, not {value!r}")
    if how.choices and value not in how.choices:
        raise SpecError(
            f"unknown {f.name.replace('_', ' ')} '{value}'; known: {', '.join(how.choices)}"
        )
    if how.minimum is not None and value < how.minimum:
        raise SpecError(f"{label} must be at least {how.minimum:g}")
    if how.positive and not value > 0:
        raise SpecError(f"{label} must be positive")


def _has_type(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        )
    if kind is str:
        return isinstance(value, str)
    if kind is tuple:
        return isinstance(value, tuple) and all(isinstance(v, str) for v in value)
    if isinstance(kind, type) and issubclass(kind, Mapping) or kind is Mapping:
        return isinstance(value, Mapping)
    return isinstance(value, kind)


def _type_name(kind: type) -> str:
    names = {
        int: "an integer",
        float: "a finite number",
        str: "text",
        bool: "true or false",
        tuple: "a list of texts",
    }
    return names.get(kind, "a mapping of names to values")


# -- building a spec ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskOptionFlags:
    """Task settings offered as flags of their own; they travel in `task_options`."""

    feature_space: str | None = option(None, panel="GAN", shown_default="auto")
    """gan: fd_classifier, fid_inception or auto (Inception on a GPU with weights)."""
    inception_weights: str | None = option(
        None, panel="GAN", shown_default="$TUNELAB_INCEPTION_WEIGHTS"
    )
    """gan: local Inception-v3 FID weights."""


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
    options = _canonical_keys({str(k).replace("-", "_"): v for k, v in content.items()})
    for f in spec_fields():
        if option_of(f).auto and options.get(f.name) == "auto":
            options[f.name] = None
    known = file_fields()
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise SpecError(
            f"config file {file}: unknown option(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(known))}"
        )
    for key in ("params", "task_options"):
        if not isinstance(options.get(key, {}), dict):
            raise SpecError(f"config file {file}: {key} must be a mapping of names to values")
    return options


def default_from_env(name: str) -> Any:
    """A field's default: its environment variable when set, else its declared default."""
    f = next(f for f in spec_fields() if f.name == name)
    how = option_of(f)
    return (how.env and os.environ.get(how.env)) or f.default


def storage_url(explicit: str | None = None) -> str:
    """The Optuna storage: the flag, else $TUNELAB_STORAGE, else sqlite:///studies.db."""
    return explicit or default_from_env("storage")


def tracking_uri(explicit: str | None = None) -> str:
    """The MLflow store: the flag, else $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db."""
    return explicit or default_from_env("tracking_uri")


def build_spec(task: str, config_file: str | None, cli: Mapping[str, Any]) -> StudySpec:
    """Defaults < environment < config file < CLI flags (flags left unset are None), then
    validation. Task option flags refine the file's task_options rather than replace them."""
    values: dict[str, Any] = {
        f.name: default_from_env(f.name) for f in spec_fields() if option_of(f).env
    }
    if config_file:
        values.update(load_config_file(config_file))
    flags = {f.name for f in dataclasses.fields(TaskOptionFlags)}
    task_options = {k: v for k, v in cli.items() if k in flags and v is not None}
    cli = {k: v for k, v in cli.items() if k not in flags and v is not None}
    if task_options:
        cli["task_options"] = {**values.get("task_options", {}), **task_options}
    values.update(cli)
    return StudySpec(task=task, **for_task(task, values)).validate()


def for_task(task: str, values: dict[str, Any]) -> dict[str, Any]:
    """A function-style objective's options: its data set is its own (`own`; another one is
    refused), and a rung is one of its reports unless --rung-images says every N."""
    from tunelab.objectives.data import OWN_DATA
    from tunelab.objectives.registry import TaskError, is_reference, task_class

    if not is_reference(task):
        return values
    try:
        cls = task_class(task)
    except TaskError as exc:
        raise SpecError(str(exc)) from None
    from tunelab.objectives.functional import FunctionTask

    if not issubclass(cls, FunctionTask):
        return values
    if values.get("dataset", OWN_DATA) != OWN_DATA:
        raise SpecError(
            f"task '{cls.name}' is a function-style objective, which loads its own data: "
            "leave --dataset out"
        )
    return {**values, "dataset": OWN_DATA, "rung_images": values.get("rung_images") or 1}
