"""SlurmOptions: every option of `tunelab launch slurm`, declared once, like StudySpec's.

Each field is one option: its type and default, its docstring (the `--help` text) and an
`Option` (search/spec.py) saying how it is offered; the command line derives its flags from
these declarations (search/cli/launch.py), exactly as `run` derives its own from StudySpec.
`validate` refuses a wrong value with one line (SpecError). Every text here lands in an
`#SBATCH` line of the script, so each is checked to be one token of what Slurm accepts: a
newline in a partition name would otherwise write a line of its own into the script.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from tunelab.search.spec import SpecError, field_type, option, option_of

PANEL = "Slurm"
GPU_REQUESTS = ("gres", "gpus-per-task")
SIGNAL_BEFORE_MAX_S = 65535
"""The most seconds sbatch's --signal=...@T takes."""
_NAME = re.compile(r"[A-Za-z0-9_.+-]+")
_NAMES = re.compile(r"[A-Za-z0-9_.+-]+(,[A-Za-z0-9_.+-]+)*")
_MEMORY = re.compile(r"\d+[KMGT]?", re.IGNORECASE)
_TIME = re.compile(
    r"(?:(?P<days>\d+)-(?P<dh>\d+)(?::(?P<dm>\d+)(?::(?P<ds>\d+))?)?)"
    r"|(?:(?P<h>\d+):(?P<m>\d+):(?P<s>\d+))"
    r"|(?:(?P<mm>\d+):(?P<ss>\d+))"
    r"|(?P<minutes>\d+)"
)
"""Slurm's time formats: minutes, minutes:seconds, hours:minutes:seconds, days-hours,
days-hours:minutes, days-hours:minutes:seconds."""


def time_limit_s(text: str) -> int | None:
    """Seconds of a Slurm time limit (`--time`), None for UNLIMITED/INFINITE; SpecError for
    anything Slurm would not read."""
    if text.strip().upper() in ("UNLIMITED", "INFINITE"):
        return None
    match = _TIME.fullmatch(text.strip())
    if match is None:
        raise SpecError(
            f"--time {text!r} is not a Slurm time limit: use minutes, MM:SS, HH:MM:SS, "
            "D-HH, D-HH:MM or D-HH:MM:SS"
        )
    g = {k: int(v) for k, v in match.groupdict().items() if v is not None}
    if "minutes" in g:
        return g["minutes"] * 60
    if "mm" in g:
        return g["mm"] * 60 + g["ss"]
    if "h" in g:
        return g["h"] * 3600 + g["m"] * 60 + g["s"]
    return g["days"] * 86400 + g["dh"] * 3600 + g.get("dm", 0) * 60 + g.get("ds", 0)


@dataclass(frozen=True)
class SlurmOptions:
    """A study's workers as one Slurm job array: one array task, one `tunelab worker`."""

    workers: int = option(1, panel=PANEL, minimum=1)
    """Array tasks (--array=0-(N-1)); each runs one tunelab worker (one per GPU with GPUs)."""
    max_parallel: int | None = option(None, panel=PANEL, minimum=1, shown_default="all")
    """Tasks running at once (the array's %K)."""
    partition: str | None = option(None, panel=PANEL, shown_default="the cluster's default")
    """Partition (--partition; several: comma-separated)."""
    time: str | None = option(None, panel=PANEL, shown_default="the partition's default")
    """Time limit of each task (--time: minutes, HH:MM:SS, D-HH:MM); near it, the task stops at
    its trial's next rung, with a checkpoint, and requeues itself."""
    cpus_per_worker: int = option(1, panel=PANEL, minimum=1)
    """CPU cores of each worker (--cpus-per-task, and the worker's --threads)."""
    mem: str | None = option(None, panel=PANEL, shown_default="the partition's default")
    """Memory of each task (--mem, e.g. 4G)."""
    gpus_per_worker: int = option(0, panel=PANEL, minimum=0)
    """GPUs of each task; it runs one worker per GPU, each seeing its own
    (CUDA_VISIBLE_DEVICES, as Slurm sets it); workers train on cuda."""
    gpu_type: str | None = option(None, panel=PANEL, shown_default="any")
    """GPU type in the request, e.g. a100 (--gres=gpu:a100:N)."""
    gpu_request: str = option("gres", panel=PANEL, choices=GPU_REQUESTS)
    """How GPUs are asked for (--gres=gpu:N or --gpus-per-task=N)."""
    account: str | None = option(None, panel=PANEL, shown_default="yours")
    """Account charged (--account)."""
    qos: str | None = option(None, panel=PANEL, shown_default="the default")
    """Quality of service (--qos)."""
    signal_before: int = option(120, panel=PANEL, minimum=1)
    """Seconds before the time limit at which a task is told to stop (--signal=B:USR1@T): a
    rung plus a trial's finish, so the trial ends at a rung with its checkpoint."""
    max_requeues: int = option(20, panel=PANEL, minimum=0)
    """Times a task requeues itself at its time limit (preemptions count too); then it ends."""
    sbatch_lines: tuple[str, ...] = option(
        (), panel=PANEL, flag="--sbatch-line", shown_default="none"
    )
    """An extra #SBATCH line, e.g. --constraint=a100 (repeatable)."""
    single_node: bool = option(False, panel=PANEL)
    """Every task runs on one node (a one-node cluster, or --sbatch-line=--nodelist=NODE):
    accepts a node-local checkpoint folder and SQLite, which several nodes cannot share."""
    output_dir: str = option("slurm", panel=PANEL)
    """Folder of the array's scripts and of its tasks' logs, one folder per study in it."""
    dry_run: bool = option(False, panel=PANEL)
    """Print the sbatch script; create, write and submit nothing (needs no cluster)."""

    @classmethod
    def from_options(cls, values: dict[str, Any]) -> SlurmOptions:
        """The options given on the command line (None or False: left off), validated."""
        given = {f.name: values[f.name] for f in dataclasses.fields(cls)}
        given = {k: v for k, v in given.items() if v is not None and v is not False}
        if "sbatch_lines" in given:
            given["sbatch_lines"] = tuple(given["sbatch_lines"])
        return cls(**given).validate()

    @property
    def processes_per_task(self) -> int:
        """Worker processes in each task: one per GPU, or one."""
        return max(1, self.gpus_per_worker)

    @property
    def time_s(self) -> int | None:
        return None if self.time is None else time_limit_s(self.time)

    def validate(self) -> SlurmOptions:
        """This, or SpecError naming the first option that is wrong."""
        for f in dataclasses.fields(self):
            _check(f, getattr(self, f.name))
        for name in ("partition", "account", "qos", "gpu_type"):
            value = getattr(self, name)
            pattern = _NAMES if name == "partition" else _NAME
            if value is not None and not pattern.fullmatch(value):
                raise SpecError(f"--{name.replace('_', '-')} {value!r} is not a Slurm name")
        if self.mem is not None and not _MEMORY.fullmatch(self.mem):
            raise SpecError(f"--mem {self.mem!r}: give a size such as 4000, 4G or 512M")
        for line in self.sbatch_lines:
            if not line.startswith("-") or any(c in line for c in "\r\n\0"):
                raise SpecError(
                    f"--sbatch-line {line!r}: give one sbatch option, e.g. --constraint=a100"
                )
        if self.signal_before > SIGNAL_BEFORE_MAX_S:
            raise SpecError(f"--signal-before must be at most {SIGNAL_BEFORE_MAX_S} seconds")
        limit = self.time_s
        if limit is not None and self.signal_before >= limit:
            raise SpecError(
                f"--signal-before {self.signal_before} must be shorter than --time "
                f"{self.time} ({limit} s): the task would be told to stop as it starts"
            )
        if self.gpu_type is not None and not self.gpus_per_worker:
            raise SpecError("--gpu-type needs --gpus-per-worker")
        if self.max_parallel is not None and self.max_parallel > self.workers:
            raise SpecError("--max-parallel must not exceed --workers")
        if not self.output_dir.strip():
            raise SpecError("--output-dir must not be empty")
        return self


def _check(f: dataclasses.Field, value: Any) -> None:
    how = option_of(f)
    kind, optional = field_type(f, SlurmOptions)
    label = how.flag or f"--{f.name.replace('_', '-')}"
    if value is None:
        if optional:
            return
        raise SpecError(f"{label} must be set")
    if kind is int and (not isinstance(value, int) or isinstance(value, bool)):
        raise SpecError(f"{label} must be an integer, not {value!r}")
    if kind is str and not isinstance(value, str):
        raise SpecError(f"{label} must be text, not {value!r}")
    if kind is tuple and not all(isinstance(v, str) for v in value):
        raise SpecError(f"{label} must be texts")
    if how.choices and value not in how.choices:
        raise SpecError(f"{label} {value!r}: use one of {', '.join(how.choices)}")
    if how.minimum is not None and value < how.minimum:
        raise SpecError(f"{label} must be at least {how.minimum:g}")
