"""The one-node Slurm harness itself: arrays, scancel, preemption with requeue, kill -9."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def wait_file(path: Path, timeout: float = 30) -> str:
    """The file's text once it exists (a job's sign of life)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"{path.name} not written within {timeout:g} s")
        time.sleep(0.05)
    return path.read_text()


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_binds_loopback_only(slurm_cluster):
    listening = slurm_cluster.listening()
    names = {name for name, _, _ in listening}
    assert {"slurmctld", "slurmd", "slurmdbd"} <= names, listening
    outside = [f"{name} on {host}:{port}" for name, host, port in listening if host[:4] != "127."]
    if shutil.which("cc") or shutil.which("gcc"):  # slurmdbd runs with the loopback shim
        assert outside == [], f"listening beyond loopback: {outside}"
    else:  # slurmdbd 22.05 binds the wildcard address, and says so
        assert [entry.split(" (")[0] for entry in slurm_cluster.exposed] == outside


def test_array_tasks_all_complete(slurm_cluster, tmp_path):
    job = slurm_cluster.submit(
        f'#!/bin/sh\necho "$SLURM_ARRAY_TASK_ID" > {tmp_path}/task-$SLURM_ARRAY_TASK_ID\n',
        "--array=0-3",
        f"--output={tmp_path}/%A_%a.out",
    )
    tasks = slurm_cluster.wait_for(job, "COMPLETED", timeout=60)
    assert sorted(tasks) == [f"{job}_{i}" for i in range(4)]
    assert {task.exit_code for task in tasks.values()} == {"0:0"}
    for i in range(4):
        assert (tmp_path / f"task-{i}").read_text().strip() == str(i)


def test_scancel_sends_sigterm_to_the_batch_script(slurm_cluster, tmp_path):
    job = slurm_cluster.submit(
        "#!/bin/bash\n"
        f"trap 'echo TERM > {tmp_path}/term; exit 0' TERM\n"
        f"touch {tmp_path}/started\n"
        "sleep 300 & wait $!\n",
        f"--output={tmp_path}/%j.out",
    )
    wait_file(tmp_path / "started")
    pids = slurm_cluster.listpids(job)
    assert any(command_line(pid).startswith("sleep 300") for pid in pids), pids
    began = time.monotonic()
    slurm_cluster.cancel(job)
    assert wait_file(tmp_path / "term", timeout=slurm_cluster.kill_wait).strip() == "TERM"
    assert time.monotonic() - began < slurm_cluster.kill_wait  # SIGTERM, not the SIGKILL
    slurm_cluster.wait_for(job, "CANCELLED", timeout=30)
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in pids if alive(pid)], "the job's processes outlived it"


def test_urgent_job_preempts_and_requeues_a_debug_job(slurm_cluster, tmp_path):
    runs = tmp_path / "runs"
    job = slurm_cluster.submit(
        "#!/bin/bash\n"
        f'echo "${{SLURM_RESTART_COUNT:-0}}" >> {runs}\n'
        '[ "${SLURM_RESTART_COUNT:-0}" -ge 1 ] && exit 0\n'
        f"touch {tmp_path}/started\n"
        "sleep 300 & wait $!\n",
        "--partition=debug",
        "--exclusive",
        f"--output={tmp_path}/%j.out",
    )
    wait_file(tmp_path / "started")
    urgent = slurm_cluster.submit(
        "#!/bin/sh\nsleep 1\n", "--partition=urgent", "--exclusive", "--output=/dev/null"
    )
    slurm_cluster.wait_for(urgent, "COMPLETED", timeout=60)
    # the requeued job may start again cred_expire (10 s) after it was preempted
    (record,) = slurm_cluster.wait_for(job, "COMPLETED", timeout=60).values()
    assert runs.read_text().split() == ["0", "1"]
    assert record.restarts == 1
    assert slurm_cluster.scontrol_job(job)["Restarts"] == "1"


def test_kill_9_of_a_job_process_fails_the_job(slurm_cluster, tmp_path):
    job = slurm_cluster.submit(
        f"#!/bin/bash\ntouch {tmp_path}/started\nsleep 300\n", f"--output={tmp_path}/%j.out"
    )
    wait_file(tmp_path / "started")
    pids = slurm_cluster.listpids(job)
    (worker,) = [pid for pid in pids if command_line(pid).startswith("sleep 300")]
    os.kill(worker, signal.SIGKILL)
    (record,) = slurm_cluster.wait_for(job, "FAILED", timeout=30).values()
    assert record.exit_code != "0:0"
    assert record.restarts == 0
