"""`tunelab launch slurm`: a study's workers as one Slurm job array, and the jobs of a study.

`launch` checks every input (the study's options, the Slurm options, where the workers may run)
before anything is written, creates the study (or checks the existing one: the same path as
`tunelab create`), writes the task's secrets file and the sbatch script into the study's folder
(`slurm/<study>/` beside the launch's `checkpoints/` and `reports/`), submits the script and
records the job on the study (`keys.SLURM_JOBS`), where `status` and `cancel` find it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import optuna
from optuna.trial import TrialState

from tunelab.objectives import keys
from tunelab.search.adapters.storage import rdb_of, shown_url
from tunelab.search.adapters.transient import retrying
from tunelab.search.launch.options import SlurmOptions
from tunelab.search.launch.placement import check_placement
from tunelab.search.launch.script import (
    LOG_PATTERN,
    ArrayPlan,
    render_env_file,
    render_script,
    sbatch_lines,
    secret_environment,
    worker_command,
    write_private,
)
from tunelab.search.spec import SpecError, StudySpec, mask_urls, stored_values

Print = Callable[[str], None]
COMMAND_TIMEOUT_S = 60
FINAL_STATES = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
    | {"NODE_FAIL", "PREEMPTED", "REVOKED", "SPECIAL_EXIT"}
)
"""States in which a task no longer runs nor waits to (a requeued one waits: PENDING)."""


# -- Slurm's commands ---------------------------------------------------------------------------


def slurm_command(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess:
    """Run a Slurm client command; SpecError (one line) when it is missing or, with `check`,
    fails."""
    if shutil.which(args[0], path=(env or {}).get("PATH")) is None:
        raise SpecError(
            f"no `{args[0]}` on PATH: run this on a Slurm cluster's login node "
            "(--dry-run prints the script anywhere)"
        )
    try:
        done = subprocess.run(
            list(args),
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise SpecError(f"`{args[0]}` did not answer within {COMMAND_TIMEOUT_S} s") from None
    if check and done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        raise SpecError(f"{args[0]} failed: {mask_urls(reason[-1] if reason else '(no output)')}")
    return done


# -- launch -------------------------------------------------------------------------------------


def study_folder(spec: StudySpec, slurm: SlurmOptions, workdir: Path) -> Path:
    """The study's folder of scripts and task logs: <output dir>/<study>/."""
    return (workdir / slurm.output_dir / spec.name).absolute()


def plan_array(
    spec: StudySpec, slurm: SlurmOptions, device: str | None, workdir: Path
) -> ArrayPlan:
    """What the launch submits: checked (one SpecError line) before anything is written."""
    check_placement(spec, slurm.single_node, workdir)
    worker = worker_command(
        spec.name,
        worker_device(slurm, device),
        slurm.cpus_per_worker,
        deadline=spec.deadline,
        verbose=spec.verbose,
    )
    return ArrayPlan(spec.name, slurm, workdir, study_folder(spec, slurm, workdir), worker)


def worker_device(slurm: SlurmOptions, device: str | None) -> str:
    """The workers' --device: the one asked for, else cuda in a task with GPUs (it trains on
    them or stops with one line) and cpu without (a node's GPUs that Slurm did not give the
    task are not its to use)."""
    if device is None or (device == "auto" and slurm.gpus_per_worker):
        return "cuda" if slurm.gpus_per_worker else "cpu"
    if slurm.gpus_per_worker and device != "cuda":
        raise SpecError(f"--gpus-per-worker needs --device cuda, not {device}")
    return device


def launch(
    spec: StudySpec,
    slurm: SlurmOptions,
    device: str | None = None,
    workdir: Path | None = None,
    out: Print = print,
) -> str | None:
    """Create (or check) the study and submit its job array; returns the job id (None for a
    dry run, which prints the script and writes nothing)."""
    from tunelab.search.study.orchestration import create_study

    workdir = (workdir or Path.cwd()).absolute()
    plan = plan_array(spec, slurm, device, workdir)
    if slurm.dry_run:
        out(render_script(plan).rstrip("\n"))
        return None
    slurm_command("sbatch", "--version")  # on a login node, before the study is created
    # planned for the array's workers, on this machine (a login node may have no GPU)
    planned = dataclasses.replace(
        spec,
        workers=slurm.workers * slurm.processes_per_task,
        threads=slurm.cpus_per_worker,
        device="cpu" if worker_device(slurm, device) == "cpu" else "auto",
    )
    study, budget = create_study(planned)
    target = spec.trial_target or "no"
    out(f"study '{study.study_name}' ready in {shown_url(spec.storage)}: target {target} trials")
    out(f"trial budget: {budget.budget.describe()}")

    secret, environment = secret_environment(spec.storage, spec.tracking_uri)
    write_private(plan.env_file, render_env_file(secret))
    submitted = datetime.now(timezone.utc)
    script = plan.folder / f"job-{submitted:%Y%m%d-%H%M%S-%f}.sbatch"
    write_private(script, render_script(plan), mode=0o700)
    done = slurm_command("sbatch", "--parsable", str(script), env=environment, cwd=workdir)
    job_id, _, cluster = done.stdout.strip().partition(";")
    if not job_id.isdigit():
        raise SpecError(f"sbatch answered {done.stdout.strip()!r}, not a job id")
    entry = {
        "job_id": job_id,
        "workers": slurm.workers,
        "submitted": submitted.isoformat(timespec="seconds"),
        "cluster": cluster,
        "script": str(script),
    }
    try:
        record_job(study, entry)
    except Exception as error:  # the job runs anyway: say how to find it
        out(f"warning: job {job_id} is not recorded on the study ({mask_urls(str(error))})")
    array = sbatch_value(plan, "--array")
    out(f"submitted Slurm job {job_id}: {slurm.workers} worker task(s), array {array}")
    out(f"  script {script}; logs {plan.folder / LOG_PATTERN.replace('%A', job_id)}")
    out("follow it:")
    out(f"  squeue -r -j {job_id}")
    out(f"  sacct -X -j {job_id} --format=JobID,State,Elapsed,NodeList,ExitCode")
    out(f"  tail -f {plan.folder}/{job_id}_*.out")
    out(f"  tunelab launch slurm --status {study.study_name}")
    out(f"stop it: tunelab launch slurm --cancel {study.study_name}")
    return job_id


def sbatch_value(plan: ArrayPlan, option: str) -> str:
    """The value of one of the script's #SBATCH options."""
    prefix = f"{option}="
    return next(line[len(prefix) :] for line in sbatch_lines(plan) if line.startswith(prefix))


def record_job(study: optuna.Study, entry: dict) -> None:
    """Add a launch to the study's list (under the study's decision lock: two launches at once
    both land)."""

    def once() -> None:
        storage = rdb_of(study)
        lock = storage.one_at_a_time(study._study_id) if storage else contextlib.nullcontext()
        with lock:
            stored = study._storage.get_study_user_attrs(study._study_id)
            jobs = list(stored.get(keys.SLURM_JOBS, []))
            if all(job.get("job_id") != entry["job_id"] for job in jobs):
                study.set_user_attr(keys.SLURM_JOBS, [*jobs, entry])

    retrying(once)


def recorded_jobs(study: optuna.Study) -> list[dict]:
    return list(study.user_attrs.get(keys.SLURM_JOBS, []))


# -- a study's jobs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """One array task as Slurm sees it."""

    task_id: str
    """`12_3` (a pending range: `12_[4-7%2]`)."""
    state: str
    elapsed: str = ""
    node: str = ""
    exit_code: str = ""
    restarts: int | None = None
    """Earlier runs (requeues), from accounting (None without it)."""
    reason: str = ""


def _order(task_id: str) -> tuple:
    return tuple(int(n) if n.isdigit() else n for n in re.split(r"(\d+)", task_id))


def job_tasks(job_ids: Iterable[str]) -> tuple[dict[str, Task], bool]:
    """({task id: Task}, whether accounting answered) for the jobs: slurmctld's view (squeue)
    of every task it knows, accounting's (sacct) for the others and for the restarts."""
    ids = ",".join(job_ids)
    queue = slurm_command(
        "squeue", "-h", "-r", "-t", "all", "-j", ids, "-o", "%i|%T|%M|%N|%r", check=False
    )
    tasks: dict[str, Task] = {}
    fields = "JobID,State,Elapsed,NodeList,ExitCode,Start"
    done = slurm_command(
        "sacct", "-n", "-P", "-X", "-D", "-j", ids, f"--format={fields}", check=False
    )
    accounting = done.returncode == 0
    if accounting:
        runs: dict[str, list[list[str]]] = {}
        for line in done.stdout.splitlines():
            row = line.split("|")
            if len(row) == 6:
                runs.setdefault(row[0], []).append(row)
        for key, rows in runs.items():
            rows.sort(key=lambda row: row[5])
            task_id, state, elapsed, node, exit_code, _ = rows[-1]
            tasks[key] = Task(task_id, state.split()[0], elapsed, node, exit_code, len(rows) - 1)
    if queue.returncode == 0:
        listed = {}
        for line in queue.stdout.splitlines():
            row = line.split("|")
            if len(row) == 5:
                listed[row[0]] = row
        if listed:  # squeue lists pending tasks one by one: accounting's ranges go
            tasks = {k: v for k, v in tasks.items() if "[" not in k}
        for key, (task_id, state, elapsed, node, reason) in listed.items():
            known = tasks.get(key)
            tasks[key] = Task(
                task_id,
                state,
                elapsed,
                node if state == "RUNNING" or not known else known.node,
                known.exit_code if known else "",
                known.restarts if known else None,
                reason if state == "PENDING" else "",
            )
    return dict(sorted(tasks.items(), key=lambda item: _order(item[0]))), accounting


def study_counts(study: optuna.Study) -> str:
    """finished/target, running, waiting, failed: the study's side of --status."""
    trials = study.get_trials(deepcopy=False)
    count = {state: sum(t.state == state for t in trials) for state in TrialState}
    finished = count[TrialState.COMPLETE] + count[TrialState.PRUNED]
    target = stored_values(study.user_attrs.get(keys.SPEC)).get("n_trials")
    progress = f"{finished}/{target}" if target else f"{finished} (no target: a time budget)"
    return (
        f"study '{study.study_name}': {progress} finished trials, "
        f"{count[TrialState.RUNNING]} running, {count[TrialState.WAITING]} waiting, "
        f"{count[TrialState.FAIL]} failed"
    )


def status(study: optuna.Study, out: Print = print) -> None:
    """The study's counts, then each launch's tasks and their states."""
    out(study_counts(study))
    jobs = recorded_jobs(study)
    if not jobs:
        out(f"no Slurm job was launched for study '{study.study_name}' (tunelab launch slurm)")
        return
    tasks, accounting = job_tasks(job["job_id"] for job in jobs)
    for job in jobs:
        job_id = job["job_id"]
        mine = {k: t for k, t in tasks.items() if k.split("_")[0] == job_id}
        out(
            f"Slurm job {job_id}: {job['workers']} task(s), submitted {job['submitted']}"
            + (f" on cluster {job['cluster']}" if job.get("cluster") else "")
        )
        if not mine:
            out("  (forgotten by Slurm: no record in squeue or accounting)")
            continue
        header = f"{'task':<16} {'state':<11} {'elapsed':>11}  {'restarts':>8}  {'exit':<6}"
        out(f"  {header} node/reason")
        for task in mine.values():
            restarts = "-" if task.restarts is None else str(task.restarts)
            where = task.node or (f"({task.reason})" if task.reason else "")
            out(
                f"  {task.task_id:<16} {task.state:<11} {task.elapsed:>11}  {restarts:>8}  "
                f"{task.exit_code:<6} {where}"
            )
    if not accounting:
        out("(no Slurm accounting here: ended tasks show only while slurmctld remembers them)")
    last = jobs[-1]
    out(f"logs: {Path(last['script']).parent}/<job>_<task>.out")


def cancel(study: optuna.Study, out: Print = print) -> list[str]:
    """scancel the study's jobs that still run or wait; returns their ids."""
    jobs = [job["job_id"] for job in recorded_jobs(study)]
    if not jobs:
        out(f"no Slurm job was launched for study '{study.study_name}'")
        return []
    tasks, _ = job_tasks(jobs)
    active = sorted(
        {key.split("_")[0] for key, task in tasks.items() if task.state not in FINAL_STATES},
        key=int,
    )
    if not active:
        out(f"no job of study '{study.study_name}' is queued or running")
        return []
    slurm_command("scancel", *active)
    out(f"cancelled Slurm job(s) {', '.join(active)} of study '{study.study_name}'")
    out(
        "  their running trials end `interrupted` at their next rung, with its checkpoint; "
        "a new launch (or one `tunelab worker "
        f"{study.study_name}`) resumes them and finishes the study"
    )
    return active
