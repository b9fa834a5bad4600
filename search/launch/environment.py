"""The batch job a process runs in, read from the variables its scheduler set (Slurm's).

A worker started by `tunelab launch slurm`, or by any sbatch script, records its job on each
trial it runs: as MLflow tags of the trial's run (`job_tags`) and in the trial's owner record
(`batch_job`, through `lineage.owner_attrs`). `sacct -j JOB_TASK` then finds the task of any
trial, and a trial's run tells which array task, and which run of a requeued task, trained it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

SLURM_VARIABLES = {
    "job_id": "SLURM_JOB_ID",
    "array_job_id": "SLURM_ARRAY_JOB_ID",
    "array_task_id": "SLURM_ARRAY_TASK_ID",
    "restart_count": "SLURM_RESTART_COUNT",
    "cluster": "SLURM_CLUSTER_NAME",
    "node": "SLURMD_NODENAME",
}
"""What a Slurm job is described by, and the variable Slurm sets for each: the job's own id (an
array task has one of its own), the array's id and the task's index, how often the job was
requeued before this run (preemption, a time limit), the cluster and the node."""
TAG_PREFIX = "slurm."
"""MLflow tags of a trial's run: `slurm.job_id`, `slurm.array_task_id`, ... (`SLURM_VARIABLES`)."""


def batch_job(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's Slurm job ({} outside one): the `SLURM_VARIABLES` that are set, and
    `task`, the id `squeue` and `sacct` show (`12_3` for an array task, else the job id)."""
    environ = os.environ if environ is None else environ
    if not environ.get("SLURM_JOB_ID"):
        return {}
    job = {name: environ[var] for name, var in SLURM_VARIABLES.items() if environ.get(var)}
    job.setdefault("restart_count", "0")  # set by Slurm only once a job was requeued
    if "array_job_id" in job and "array_task_id" in job:
        job["task"] = f"{job['array_job_id']}_{job['array_task_id']}"
    else:
        job["task"] = job["job_id"]
    return job


def job_tags(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """MLflow tags naming this process's Slurm job ({} outside one)."""
    return {f"{TAG_PREFIX}{name}": value for name, value in batch_job(environ).items()}
