"""Two hosts of one name on one PostgreSQL: each worker runs in namespaces of its own (UTS: the
same host name; mount: a boot id of its own, as a second machine has), so it cannot see the
other's processes as its own. One host's worker is killed: the other reclaims its trial once
the heartbeat is older than the grace period, not before, and never while it is alive.

Before the fix a worker's machine was `hostname[pid namespace inode]`, and the initial pid
namespace has the same inode on every Linux host: two hosts of one name took each other's
pids for their own, and reclaimed each other's live trials."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tunelab.objectives import keys
from tunelab.search.scheduler import lineage
from tunelab.search.scheduler.recovery import STALE

sys.path.insert(0, str(Path(__file__).parent))
import crashpoints  # noqa: E402  (tests/faults, by path)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare"
    ),
]

FAULTS = Path(__file__).parent
GRACE = 6
HOSTNAME = "node"


def _host(args: list[str], folder: Path, env: dict, boot_id: str | None = None):
    """`tunelab args` on a host of its own: its own UTS and mount namespaces, host name
    HOSTNAME, and (given) a boot id of its own."""
    folder.mkdir(parents=True, exist_ok=True)
    steps = [f"hostname {HOSTNAME}"]
    if boot_id is not None:
        fake = folder / "boot_id"
        fake.write_text(boot_id + "\n")
        steps.append(f"mount --bind {fake} /proc/sys/kernel/random/boot_id")
    tunelab = Path(sys.executable).with_name("tunelab")
    steps.append("exec " + shlex.join([str(tunelab), *args]))
    return subprocess.Popen(
        ["unshare", "--uts", "--mount", "--fork", "sh", "-c", " && ".join(steps)],
        cwd=folder,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(folder / "stderr.log", "w"),  # noqa: SIM115 (kept open for the process)
        start_new_session=True,
    )


def test_a_dead_hosts_trial_is_reclaimed_by_the_other_after_the_grace_period(
    postgres, cli, tmp_path
):
    storage = postgres.new()
    tracking = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUNELAB_", "MLFLOW_TRACKING"))}
    env.update(
        TUNELAB_STORAGE=storage,
        MLFLOW_TRACKING_URI=tracking,
        PYTHONPATH=str(FAULTS),
        MLFLOW_DISABLE_TELEMETRY="true",
        TINY_TASK_STEP_S="0.03",  # a trial of about 20 s: still running when B has looked
    )
    created = cli(
        [
            *("create", "tiny_task:TinyTask", "--dataset", "digits", "--study-name", "s"),
            *("--n-trials", "1", "--max-epochs", "60", "--patience", "60", "--rung-images", "256"),
            *("--pruner", "none", "--heartbeat-interval", "1", "--grace-period", str(GRACE)),
            *("--storage", storage, "--tracking-uri", tracking),
            *("--checkpoint-dir", str(tmp_path / "shared-checkpoints")),
        ],
        cwd=tmp_path,
        PYTHONPATH=str(FAULTS),
    )
    assert created.returncode == 0, created.stderr
    worker = ["worker", "s", "--quiet"]
    host_a = _host(worker, tmp_path / "a", env, boot_id=str(uuid.uuid4()))
    watcher = optuna.storages.RDBStorage(storage)

    def running():
        study = optuna.load_study(study_name="s", storage=watcher)
        return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))

    deadline = time.monotonic() + 120
    while not [t for t in running() if len(t.intermediate_values) >= 2]:
        assert host_a.poll() is None, (tmp_path / "a" / "stderr.log").read_text()[-2000:]
        assert time.monotonic() < deadline, "host A's trial reached no second rung"
        time.sleep(0.2)
    (trial,) = running()
    assert lineage.owner(trial).split(":")[0].startswith(f"{HOSTNAME}/")
    host_b = _host(worker, tmp_path / "b", env)  # waits: A's trial stands for the target
    time.sleep(GRACE + 2)  # A is alive: B must not take its trial
    (still,) = running()
    assert still.number == trial.number, "host B reclaimed a live trial of host A"

    os.killpg(host_a.pid, signal.SIGKILL)  # host A is gone, and nothing on B can see it die
    killed_at = time.time()
    host_a.wait()
    assert host_b.wait(timeout=300) == 0, (tmp_path / "b" / "stderr.log").read_text()[-3000:]

    study = optuna.load_study(study_name="s", storage=storage)
    dead = study.trials[trial.number]
    assert dead.state == TrialState.FAIL and dead.user_attrs[keys.FAIL_REASON] == STALE
    waited = dead.datetime_complete.timestamp() - killed_at
    assert waited >= GRACE - 1.5, f"reclaimed {waited:.1f} s after the kill, within the grace"
    (retry,) = [t for t in study.trials if lineage.retry_of(t) == trial.number]
    assert retry.state == TrialState.COMPLETE and lineage.resumed_at(retry) > 0
    assert crashpoints.check_study(storage, tracking, "s", 1) == []
