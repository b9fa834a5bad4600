"""The sbatch script of a study's job array, and the file that carries its URLs to the tasks.

Secrets: the storage and tracking URLs may hold passwords. Slurm keeps and shows much of what a
job is made of: its script (`scontrol write batch_script`, and in accounting with
`AccountingStoreFlags=job_script`), its environment (the state of slurmctld, and in accounting
with `job_env`: `sacct --env-vars`), its command line, and `scontrol show job`. So none of them
holds a URL: the URLs (and the variables that hold their passwords) go into a file in the
study's folder that only its user can read (mode 0600, like ~/.pgpass), the script sources it,
and sbatch runs with them taken out of its environment. The file is read on the node when each
run of a task starts (a requeued run reads it again, so a changed password reaches it).

Signals: the script runs its workers as children and waits for them, rather than `exec`, for
two reasons. A time limit must requeue the task, which a cancel must not; and scancel and
preemption signal every process of the job (SIGTERM), while the time limit's `--signal` can
name the batch shell alone. So near the time limit Slurm sends the shell SIGUSR1
(`--signal=B:USR1@T`); the shell sends each worker one SIGTERM (a stop at the running trial's
next rung, with that rung's checkpoint) and, once they have stopped, requeues its own task
(`scontrol requeue`): its next run resumes those trials. On SIGTERM (scancel, preemption) the
shell only waits: each worker got its own, so none gets a second one (which would interrupt it
at once). A worker starts with a parent-death signal (`setpriv --pdeathsig TERM`, where
util-linux has it), so a batch shell killed by SIGKILL still stops its workers at a rung rather
than leaving them running outside the job (with proctrack/linuxproc they would be no longer
the job's). No `srun`: a worker is one process on the task's own allocation; a job step
would add its start-up and a second process that forwards signals.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tunelab.search.launch.options import SlurmOptions
from tunelab.search.spec import STORAGE_ENV, TRACKING_ENV, SpecError

SECRET_VARIABLES = (
    STORAGE_ENV,
    TRACKING_ENV,
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "PGPASSWORD",
)
"""Variables that carry the study's URLs or the credentials their clients read: they reach the
tasks through the secrets file, never through the job's environment."""
ENV_FILE = "urls.env"
LOG_PATTERN = "%A_%a.out"
"""A task's log: array job id and task index; a requeued run appends to it (--open-mode)."""
_PATH_SAFE = re.compile(r"[^\s'\"\\$`]+")


@dataclass(frozen=True)
class ArrayPlan:
    """Everything the script of one launch is made of."""

    study: str
    """The study's name."""
    slurm: SlurmOptions
    """The launch's Slurm options."""
    workdir: Path
    """The folder the tasks run in (--chdir): the launch's own."""
    folder: Path
    """The study's folder of scripts and task logs."""
    worker: tuple[str, ...]
    """The worker's command line, less its --worker-index (no URL in it)."""

    @property
    def env_file(self) -> Path:
        return self.folder / ENV_FILE

    @property
    def cpus_per_task(self) -> int:
        return self.slurm.cpus_per_worker * self.slurm.processes_per_task


def worker_command(
    study: str,
    device: str,
    threads: int,
    deadline: float | None = None,
    verbose: bool = False,
    python: str | None = None,
) -> tuple[str, ...]:
    """`tunelab worker STUDY` as each task runs it: this tunelab (the same interpreter, which a
    cluster's nodes reach on the shared file system), plain log lines, its threads and device."""
    command = [python or sys.executable, "-m", "tunelab", "worker", study, "--quiet"]
    command += ["--device", device, "--threads", str(threads)]
    if deadline is not None:
        command += ["--deadline", repr(deadline)]
    if verbose:
        command.append("--verbose")
    return tuple(command)


def check_path(path: Path, what: str) -> Path:
    """`path`, or SpecError if it cannot stand in an #SBATCH line as it is."""
    if not _PATH_SAFE.fullmatch(str(path)):
        raise SpecError(f"{what} {str(path)!r}: a path without spaces or quotes is needed")
    return path


def sbatch_lines(plan: ArrayPlan) -> list[str]:
    """The script's #SBATCH options, in order."""
    slurm = plan.slurm
    array = f"0-{slurm.workers - 1}"
    if slurm.max_parallel is not None:
        array += f"%{slurm.max_parallel}"
    lines = [
        f"--job-name=tunelab-{plan.study}",
        f"--array={array}",
        "--ntasks=1",
        f"--cpus-per-task={plan.cpus_per_task}",
        f"--chdir={check_path(plan.workdir, 'the launch folder')}",
        f"--output={check_path(plan.folder, '--output-dir') / LOG_PATTERN}",
        "--open-mode=append",
        "--export=ALL",
        "--requeue",
        f"--signal=B:USR1@{slurm.signal_before}",
    ]
    for name in ("partition", "time", "mem", "account", "qos"):
        value = getattr(slurm, name)
        if value is not None:
            lines.append(f"--{name}={value}")
    if slurm.gpus_per_worker:
        count = f"{slurm.gpu_type}:{slurm.gpus_per_worker}" if slurm.gpu_type else None
        count = count or str(slurm.gpus_per_worker)
        if slurm.gpu_request == "gres":
            lines.append(f"--gres=gpu:{count}")
        else:
            lines.append(f"--gpus-per-task={count}")
    lines += slurm.sbatch_lines
    return lines


def render_script(plan: ArrayPlan) -> str:
    """The sbatch script of the array (see the module for what it does on each signal)."""
    slurm = plan.slurm
    options = "\n".join(f"#SBATCH {line}" for line in sbatch_lines(plan))
    worker = " ".join(shlex.quote(part) for part in plan.worker)
    env_file = shlex.quote(str(plan.env_file))
    return _SCRIPT.format(
        options=options,
        study=plan.study,
        env_path=plan.env_file,
        env_file=env_file,
        threads=slurm.cpus_per_worker,
        max_requeues=slurm.max_requeues,
        start=_start_workers(worker, slurm.processes_per_task),
    )


def _start_workers(worker: str, count: int) -> str:
    """The lines that start the task's workers in the background, their pids in `pids`."""
    if count == 1:
        return f'"${{guard[@]}}" {worker} --worker-index "$SLURM_ARRAY_TASK_ID" &\npids+=($!)\n'
    return (
        "# one worker per GPU of the task, each seeing its own (Slurm sets CUDA_VISIBLE_DEVICES)\n"
        'IFS=, read -r -a gpus <<< "${CUDA_VISIBLE_DEVICES:-}"\n'
        f"for ((i = 0; i < {count}; i++)); do\n"
        f'    CUDA_VISIBLE_DEVICES=${{gpus[i]:-$i}} "${{guard[@]}}" {worker} \\\n'
        f"        --worker-index $(( SLURM_ARRAY_TASK_ID * {count} + i )) &\n"
        "    pids+=($!)\n"
        "done\n"
    )


_SCRIPT = """#!/bin/bash
{options}
#
# Written by `tunelab launch slurm` for study '{study}': each array task runs
# `tunelab worker` on the study until the study holds its target, then exits 0 (a requeued
# run finds it done and exits at once). The storage and tracking URLs, which may hold
# passwords, come from {env_path}, which only you can read:
# not from this script, a command line or the job's environment, which Slurm keeps and shows.
#
# Near the time limit Slurm sends this script USR1 (--signal above): each worker is asked to
# stop at its trial's next rung (SIGTERM; the trial ends `interrupted` with that rung's
# checkpoint), then the task requeues itself, and its next run resumes that trial. scancel and
# preemption send SIGTERM to the workers themselves: the same stop (a preempted task is
# requeued by Slurm). `tunelab launch slurm --status {study}` shows the tasks.

if [ ! -r {env_file} ]; then
    echo "tunelab: cannot read {env_path} (the study's URLs)" >&2
    exit 2
fi
. {env_file}
export OMP_NUM_THREADS={threads} PYTHONUNBUFFERED=1
max_requeues={max_requeues}
run=$(( ${{SLURM_RESTART_COUNT:-0}} + 1 ))
echo "tunelab: task ${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}, run $run, on $(hostname)"

pids=()
near_limit=0
stop_workers() {{
    near_limit=1
    echo "tunelab: the time limit is near: the workers stop at their trials' next rung"
    kill -TERM "${{pids[@]}}" 2>/dev/null
}}
trap stop_workers USR1
trap : TERM  # scancel, preemption: Slurm sends SIGTERM to every worker itself

# a worker outlives no killed batch shell: it gets SIGTERM then (where util-linux has setpriv)
guard=()
if setpriv --help 2>/dev/null | grep -q -- --pdeathsig; then
    guard=(setpriv --pdeathsig TERM --)
fi
{start}
code=0
stopped=0
for pid in "${{pids[@]}}"; do
    while :; do
        wait "$pid"
        status=$?
        # a trapped signal ends `wait` early: wait again while the worker runs
        [ "$status" -ne 127 ] && kill -0 "$pid" 2>/dev/null || break
    done
    # the worker is gone; when it went between a signal that ended `wait` (128 + the
    # signal's number) and the check, this `wait` returns its own status
    wait "$pid"
    again=$?
    [ "$again" -ne 127 ] && status=$again
    case $status in
        0) echo "tunelab: a worker is done: the study holds its target, or its time is spent" ;;
        143) stopped=1; echo "tunelab: a worker stopped (SIGTERM): its trial resumes later" ;;
        *) echo "tunelab: a worker exited $status" >&2 ;;
    esac
    [ "$status" -ne 0 ] && [ "$code" -eq 0 ] && code=$status
done

if [ "$near_limit" = 1 ] && [ "$stopped" = 1 ]; then
    if [ "${{SLURM_RESTART_COUNT:-0}}" -lt "$max_requeues" ]; then
        echo "tunelab: requeued: the next run resumes the stopped trials from their checkpoints"
        scontrol requeue "$SLURM_JOB_ID" && exit 0
        echo "tunelab: scontrol requeue failed: other workers or a new launch resume them" >&2
    else
        echo "tunelab: requeued $max_requeues times already: other workers or a new launch" \\
            "resume the stopped trials" >&2
    fi
fi
exit "$code"
"""


def secret_environment(
    storage: str, tracking_uri: str, environ: Mapping[str, str] | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """(what goes into the secrets file, sbatch's environment without it): the URLs, the
    SECRET_VARIABLES that are set, and any other variable that holds one of the URLs'
    passwords move to the file; the rest stays in sbatch's environment (--export=ALL)."""
    environ = dict(os.environ if environ is None else environ)
    secret = {STORAGE_ENV: storage, TRACKING_ENV: tracking_uri}
    passwords = {p for p in (_password(storage), _password(tracking_uri)) if p}
    for name, value in environ.items():
        holds = name in SECRET_VARIABLES or any(p in value for p in passwords)
        if holds and name not in secret:
            secret[name] = value
    rest = {k: v for k, v in environ.items() if k not in secret}
    return secret, rest


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def render_env_file(secret: Mapping[str, str]) -> str:
    lines = [
        "# Written by `tunelab launch slurm`: the study's URLs for its array tasks (mode 0600).",
        *(f"export {name}={shlex.quote(value)}" for name, value in sorted(secret.items())),
    ]
    return "\n".join(lines) + "\n"


def write_private(path: Path, text: str, mode: int = 0o600) -> None:
    """Write `path` readable by its user alone, created so from the start (no moment in which
    others could read it), replaced whole by a rename."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(descriptor, "w") as out:
            out.write(text)
        os.chmod(partial, mode)  # whatever the umask
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
