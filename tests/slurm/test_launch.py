"""`tunelab launch slurm` on the real one-node cluster (`slurm_cluster`): a job array of real
`tunelab worker` tasks on one PostgreSQL study, and what Slurm does to it: scancel, preemption,
kill -9, a time limit. Every study ends with its invariants checked through Optuna's and
MLflow's own clients (tests/faults/crashpoints.py's `check_study`): its exact target, nothing
RUNNING or WAITING, one retry per interrupted or dead trial, one MLflow run per trial with
its true status. The storage URL carries a password throughout (PostgreSQL's trust auth takes
any): it must show in no script, job record, accounting, log or command line.

The task is tests/faults/tiny_task.py (logistic regression on digits: a rung every 256 images
costs ~20 ms), so that trials last seconds and a study of a dozen costs a minute at most. One
array per scenario, the faults of several kinds made on one array: each array costs the
workers' start (~8 s of CPU each on this 2-core machine) and, where Slurm requeues, the
requeued task's wait (cred_expire: 10 s here). The --dry-run checks and the refusals need no
cluster and start nothing: they run in the fast tier.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from tunelab.objectives import keys
from tunelab.search.scheduler import lineage

FAULTS = Path(__file__).resolve().parents[1] / "faults"
sys.path.insert(0, str(FAULTS))
import crashpoints  # noqa: E402  (tests/faults, by path)

TUNELAB = Path(sys.executable).with_name("tunelab")
PASSWORD = "S3cretPW"
TASK = ("tiny_task:TinyTask", "--dataset", "digits", "--pruner", "none")
JOB_ATTR = "tunelab.batch_job"
"""The trial's batch job in its owner record (search/scheduler/lineage.py)."""
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


# -- helpers --------------------------------------------------------------------------------


def with_password(url: str) -> str:
    """A PostgreSQL URL of the `postgres` fixture with a password in it."""
    return url.replace("://postgres@", f"://postgres:{PASSWORD}@")


def cli_env(cluster, storage: str, tracking: str, **extra: str) -> dict[str, str]:
    """A user's shell on the login node: the cluster's clients, the URLs in the environment
    (as the README asks: never on a command line), the tiny task on the path."""
    env = {
        k: v
        for k, v in cluster.env().items()
        if not k.startswith(("TUNELAB_STORAGE", "MLFLOW_TRACKING"))
    }
    env.update(
        TUNELAB_STORAGE=storage,
        MLFLOW_TRACKING_URI=tracking,
        PYTHONPATH=str(FAULTS),
        MLFLOW_DISABLE_TELEMETRY="true",
        PYTHONUNBUFFERED="1",
        **extra,
    )
    return env


def tunelab(cluster, args, cwd: Path, storage: str, tracking: str, timeout: float = 180):
    done = subprocess.run(
        [str(TUNELAB), *args],
        cwd=cwd,
        env=cli_env(cluster, storage, tracking),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"tunelab {' '.join(args[:3])}: {done.stderr[-3000:]}"
    return done


def launch(cluster, cwd: Path, storage: str, tracking: str, name: str, *args: str):
    """`tunelab launch slurm` of the tiny task; (job id, its output)."""
    done = tunelab(
        cluster, ["launch", "slurm", *TASK, "--study-name", name, *args], cwd, storage, tracking
    )
    match = re.search(r"submitted Slurm job (\d+)", done.stdout)
    assert match, done.stdout
    return match[1], done.stdout + done.stderr


class Study:
    """Polls a study that a job array works on (one engine for every poll); a timeout fails
    with the tasks' states and the tail of their logs."""

    def __init__(self, cluster, storage: str, name: str, job: str, folder: Path) -> None:
        self.cluster, self.name, self.job, self.folder = cluster, name, job, folder
        self.storage = optuna.storages.RDBStorage(storage)

    def trials(self) -> list[optuna.trial.FrozenTrial]:
        study = optuna.load_study(study_name=self.name, storage=self.storage)
        return study.get_trials(deepcopy=False)

    def until(self, ready: Callable[[list], object], what: str, timeout: float = 120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = ready(self.trials())
            if found:
                return found
            time.sleep(0.2)
        pytest.fail(f"{what} not seen within {timeout:g} s; {self.diagnosis()}")

    def wait(self, states: str | set[str], timeout: float) -> dict:
        """The job's task records once each is in one of `states`; a timeout fails with the
        study's trial counts, the tasks' states and the tail of their logs."""
        slurm_error = sys.modules[type(self.cluster).__module__].SlurmError
        try:
            return self.cluster.wait_for(self.job, states, timeout=timeout)
        except slurm_error as error:
            counts = Counter(t.state.name for t in self.trials())
            pytest.fail(f"{error}; trials {dict(counts)}; {self.diagnosis()}")

    def diagnosis(self) -> str:
        states = self.cluster.states(self.job, source="squeue")
        logs = "\n".join(
            f"--- {log.name}\n{log.read_text()[-1500:]}"
            for log in sorted(self.folder.glob("*.out"))
        )
        return f"tasks {states}\n{logs}"

    def close(self) -> None:
        self.storage.engine.dispose()


def running_at_rung(trials, rung: int = 1, task: str | None = None):
    """The RUNNING trials that have reported `rung` rungs (of `task`, if given)."""
    return [
        t
        for t in trials
        if t.state == TrialState.RUNNING
        and len(t.intermediate_values) >= rung
        and (task is None or job_of(t).get("task") == task)
    ]


def job_of(trial) -> dict:
    return trial.user_attrs.get(JOB_ATTR) or {}


def last_step(trial) -> int:
    return max(trial.intermediate_values)


def first_resume(trials, number: int) -> int:
    """The step at which the first successor of trial `number` that trained took up its
    checkpoint (0: none did)."""
    retries = lineage.successors(trials, lineage.RETRY)
    by_number = {t.number: t for t in trials}
    while number in retries:
        number = retries[number]
        if lineage.resumed_at(by_number[number]):
            return lineage.resumed_at(by_number[number])
    return 0


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def folder_holds(folder: Path, secret: bytes) -> list[str]:
    """The files under `folder` whose bytes hold `secret`."""
    found = []
    for path in folder.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink() and secret in path.read_bytes():
                found.append(str(path.relative_to(folder)))
        except OSError:
            continue
    return found


# -- without a cluster: the script, and what is refused ----------------------------------------


def _launch_in_process(argv: list[str], capsys) -> tuple[int, str, str]:
    from tunelab.search.cli import main

    code = main(["launch", "slurm", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def login_node(tmp_path, monkeypatch):
    """A folder to launch from, the storage URL (with its password) in the environment."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TUNELAB_STORAGE", f"postgresql://tunelab:{PASSWORD}@db:5432/optuna")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://me:{PASSWORD}@mlflow:5000")
    return tmp_path


def test_dry_run_prints_the_array_script_and_writes_nothing(login_node, capsys):
    args = ["cnn", "--dataset", "digits", "--n-trials", "40", "--workers", "8"]
    args += ["--max-parallel", "3", "--partition", "gpu", "--time", "02:00:00", "--mem", "8G"]
    args += ["--cpus-per-worker", "2", "--gpus-per-worker", "1", "--account", "lab"]
    args += ["--qos", "normal", "--signal-before", "150", "--sbatch-line=--constraint=a100"]
    args += ["--checkpoint-dir", "mlflow-artifacts:/ckpt", "--dry-run"]
    code, script, err = _launch_in_process(args, capsys)
    assert code == 0, err
    options = re.findall(r"^#SBATCH (\S+)$", script, re.M)
    folder = login_node / "slurm" / "cnn-digits"
    assert options == [
        "--job-name=tunelab-cnn-digits",
        "--array=0-7%3",
        "--ntasks=1",
        "--cpus-per-task=2",
        f"--chdir={login_node}",
        f"--output={folder}/%A_%a.out",
        "--open-mode=append",
        "--export=ALL",
        "--requeue",
        "--signal=B:USR1@150",
        "--partition=gpu",
        "--time=02:00:00",
        "--mem=8G",
        "--account=lab",
        "--qos=normal",
        "--gres=gpu:1",
        "--constraint=a100",
    ]
    assert script.startswith("#!/bin/bash\n")
    (start,) = [line for line in script.splitlines() if " -m tunelab worker " in line]
    argv = start.split()
    assert argv[argv.index("worker") + 1] == "cnn-digits"
    assert argv[argv.index("--threads") + 1] == "2" and argv[argv.index("--device") + 1] == "cuda"
    assert '--worker-index "$SLURM_ARRAY_TASK_ID"' in start
    assert f". {folder}/urls.env" in script  # the URLs come from the private file alone
    assert "trap stop_workers USR1" in script and 'scontrol requeue "$SLURM_JOB_ID"' in script
    assert "max_requeues=20" in script
    assert PASSWORD not in script + err and "postgresql://" not in script
    assert "TUNELAB_STORAGE" not in script.replace("urls.env", "")
    assert list(login_node.iterdir()) == [], "a dry run wrote files"


def test_dry_run_with_gpus_starts_one_worker_per_gpu(login_node, capsys):
    args = ["cnn", "--dataset", "digits", "--workers", "2", "--gpus-per-worker", "4"]
    args += ["--gpu-request", "gpus-per-task", "--gpu-type", "h100", "--cpus-per-worker", "3"]
    args += ["--checkpoint-dir", "s3://bucket/ckpt", "--dry-run"]
    code, script, err = _launch_in_process(args, capsys)
    assert code == 0, err
    assert "#SBATCH --gpus-per-task=h100:4" in script
    assert "#SBATCH --cpus-per-task=12" in script  # 3 cores for each of the 4 workers
    assert "for ((i = 0; i < 4; i++)); do" in script
    assert "CUDA_VISIBLE_DEVICES=${gpus[i]:-$i}" in script
    assert "--worker-index $(( SLURM_ARRAY_TASK_ID * 4 + i ))" in script


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--storage", "sqlite:///studies.db"], "PostgreSQL is needed"),
        (["--tracking-uri", "sqlite:///mlruns/mlflow.db"], "is a local MLflow store"),
        ([], "is on a node-local"),  # the default `checkpoints` folder, on this machine's disk
        (["--checkpoint-dir", "memory://ckpt"], "lives in one process"),
        (["--single-node", "--time", "1", "--signal-before", "60"], "must be shorter than"),
        (["--single-node", "--time", "1:2:3:4"], "is not a Slurm time limit"),
        (["--single-node", "--partition", "a\nb"], "is not a Slurm name"),
        (["--single-node", "--sbatch-line", "rm -rf /"], "give one sbatch option"),
        (["--single-node", "--mem", "lots"], "give a size"),
        (["--single-node", "--workers", "0"], "--workers must be at least 1"),
        (["--single-node", "--max-parallel", "9"], "must not exceed --workers"),
        (["--single-node", "--gpus-per-worker", "1", "--device", "cpu"], "needs --device cuda"),
        (["--single-node", "--gpu-request", "mig"], "--gpu-request 'mig'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(login_node, capsys, args, message):
    base = ["cnn", "--dataset", "digits", "--workers", "2", "--dry-run"]
    if "--tracking-uri" not in args and "--storage" not in args:
        base += ["--tracking-uri", "http://mlflow:5000"]
    code, out, err = _launch_in_process([*base, *args], capsys)
    assert code == 2, out + err
    assert err.startswith("tunelab: error: ") and err.count("\n") == 1, err
    assert message in err and "Traceback" not in err and PASSWORD not in err, err
    assert list(login_node.iterdir()) == []


def test_a_folder_on_a_shared_file_system_is_accepted_across_nodes(login_node, tmp_path):
    from tunelab.search.launch.placement import check_placement, mount_type
    from tunelab.search.spec import SpecError, StudySpec

    mountinfo = tmp_path.parent / f"{tmp_path.name}-mountinfo"
    mountinfo.write_text(
        "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
        f"40 22 0:40 / {login_node}/nfs\\040home rw - nfs4 server:/home rw\n"
    )
    shared = login_node / "nfs home" / "ckpt"  # to be made under a mount point that exists
    shared.parent.mkdir()
    assert mount_type(shared, mountinfo) == "nfs4"
    assert mount_type(login_node / "local", mountinfo) == "ext4"
    spec = StudySpec(
        task="cnn",
        storage="postgresql://db/optuna",
        tracking_uri="http://mlflow:5000",
        checkpoint_dir=str(shared),
    )
    check_placement(spec, single_node=False, workdir=login_node, mountinfo=mountinfo)
    local = StudySpec(task="cnn", storage=spec.storage, tracking_uri=spec.tracking_uri)
    with pytest.raises(SpecError, match="node-local ext4"):
        check_placement(local, single_node=False, workdir=login_node, mountinfo=mountinfo)
    check_placement(local, single_node=True, workdir=login_node, mountinfo=mountinfo)
    shared.parent.rmdir()


def test_the_job_is_read_from_slurms_variables():
    from tunelab.search.launch.environment import batch_job, job_tags

    env = {"SLURM_JOB_ID": "13", "SLURM_ARRAY_JOB_ID": "12", "SLURM_ARRAY_TASK_ID": "1"}
    assert batch_job(env) == {
        "job_id": "13",
        "array_job_id": "12",
        "array_task_id": "1",
        "restart_count": "0",
        "task": "12_1",
    }
    assert job_tags({**env, "SLURM_RESTART_COUNT": "2"})["slurm.restart_count"] == "2"
    assert batch_job({"SLURM_JOB_ID": "7"})["task"] == "7" and batch_job({}) == {}
    assert lineage.owner_attrs("m:1:2", job={}) == {"tunelab.owner": "m:1:2"}
    assert lineage.owner_attrs("m:1:2", job={"task": "12_1"})[JOB_ATTR] == {"task": "12_1"}


def test_secrets_move_from_the_jobs_environment_to_the_private_file(tmp_path):
    from tunelab.search.launch.script import render_env_file, secret_environment, write_private

    storage = f"postgresql://u:{PASSWORD}@db/optuna"
    environ = {"PATH": "/bin", "PGPASSWORD": "pg", "COPY": f"x{PASSWORD}y", "TUNELAB_STORAGE": "a"}
    secret, rest = secret_environment(storage, "http://mlflow:5000", environ)
    assert rest == {"PATH": "/bin"}
    assert secret["TUNELAB_STORAGE"] == storage and secret["PGPASSWORD"] == "pg"
    assert "COPY" in secret
    file = tmp_path / "study" / "urls.env"
    write_private(file, render_env_file(secret))
    assert file.stat().st_mode & 0o777 == 0o600 and file.parent.stat().st_mode & 0o777 == 0o700
    shown = sourced(file)
    assert shown["TUNELAB_STORAGE"] == storage


def sourced(file: Path) -> dict[str, str]:
    """The variables a shell gets from sourcing the file (its `export NAME='value'` lines)."""
    import shlex

    values = {}
    for line in file.read_text().splitlines():
        if line.startswith("export "):
            name, _, value = line.removeprefix("export ").partition("=")
            (values[name],) = shlex.split(value)
    return values


# -- the script's signals, with stand-ins for the worker and scontrol --------------------------

STAND_IN_WORKER = """#!/bin/bash
# a worker: says how it was started, takes SIGTERM as a stop (exit 143), counts them
echo "start $* gpu=${CUDA_VISIBLE_DEVICES:-none}" >> "$LOG"
trap 'echo "TERM $$" >> "$LOG"; kill $nap; exit 143' TERM
sleep 30 >/dev/null 2>&1 &
nap=$!
wait $nap
"""


@pytest.mark.slow
@pytest.mark.parametrize("gpus", [0, 2])
def test_near_the_time_limit_each_worker_gets_one_sigterm_then_the_task_requeues(tmp_path, gpus):
    """USR1 (the time limit's --signal) reaches the batch shell: each of its workers gets one
    SIGTERM, and once they stopped the task requeues itself; a SIGTERM to the shell (scancel,
    preemption, which signal every worker themselves) is not passed on."""
    from tunelab.search.launch.options import SlurmOptions
    from tunelab.search.launch.script import ArrayPlan, render_script, worker_command

    stand_in = tmp_path / "worker"
    stand_in.write_text(STAND_IN_WORKER)
    stand_in.chmod(0o755)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text('#!/bin/sh\necho "scontrol $*" >> "$LOG"\n')
    (bin_dir / "scontrol").chmod(0o755)
    slurm = SlurmOptions(workers=2, gpus_per_worker=gpus, single_node=True)
    worker = worker_command("s", "cuda" if gpus else "cpu", 1, python=str(stand_in))
    plan = ArrayPlan("s", slurm, tmp_path, tmp_path / "out", worker)
    (tmp_path / "out").mkdir()
    plan.env_file.write_text("export TUNELAB_STORAGE=x\n")
    script = tmp_path / "job.sbatch"
    script.write_text(render_script(plan))
    log = tmp_path / "log"
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "LOG": str(log),
        "SLURM_JOB_ID": "41",
        "SLURM_ARRAY_JOB_ID": "40",
        "SLURM_ARRAY_TASK_ID": "1",
        "CUDA_VISIBLE_DEVICES": "3,5",
    }
    workers = max(1, gpus)

    def started(shell, count):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            lines = log.read_text().splitlines() if log.exists() else []
            if sum(line.startswith("start") for line in lines) == count:
                time.sleep(0.2)  # their traps are set
                return lines
            assert shell.poll() is None, shell.communicate()
            time.sleep(0.05)
        pytest.fail(f"the workers did not start: {log.read_text() if log.exists() else ''}")

    shell = subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE, text=True)
    lines = started(shell, workers)
    indexes = sorted(line.split("--worker-index ")[1].split()[0] for line in lines)
    gpus_seen = sorted(line.split("gpu=")[1] for line in lines)
    if gpus:
        assert indexes == ["2", "3"] and gpus_seen == ["3", "5"]  # one GPU each
    else:
        assert indexes == ["1"] and gpus_seen == ["3,5"]
    shell.send_signal(signal.SIGTERM)  # scancel's: the shell passes it on to nobody
    time.sleep(0.5)
    assert shell.poll() is None and "TERM" not in log.read_text()
    shell.send_signal(signal.SIGUSR1)  # the time limit's
    out, _ = shell.communicate(timeout=10)
    assert shell.returncode == 0, out
    lines = log.read_text().splitlines()
    assert sum(line.startswith("TERM") for line in lines) == workers  # one each
    assert lines[-1] == "scontrol requeue 41"
    assert "requeued" in out


# -- on the cluster -----------------------------------------------------------------------------


@pytest.mark.slow
def test_an_array_of_four_meets_the_target_exactly_and_shows_no_password(
    slurm_cluster, postgres, tmp_path
):
    storage, tracking = with_password(postgres.new()), with_password(postgres.new())
    name = "slurm-array"
    job, output = launch(
        slurm_cluster,
        tmp_path,
        storage,
        tracking,
        name,
        *("--n-trials", "6", "--max-epochs", "12", "--patience", "12", "--workers", "4"),
        "--single-node",  # a one-node cluster: the default `checkpoints` folder is shared
    )
    folder = tmp_path / "slurm" / name
    study = Study(slurm_cluster, storage, name, job, folder)
    shown = {"launch's output": output}
    try:
        # the workers' command lines, while they run
        running = study.until(lambda trials: running_at_rung(trials), "a trial at a rung")
        task = job_of(running[0])["task"]
        for pid in slurm_cluster.listpids(task):
            shown[f"command line of {pid}"] = command_line(pid)
        assert any(" -m tunelab worker slurm-array " in line for line in shown.values())
        tasks = slurm_cluster.wait_for(job, "COMPLETED", timeout=180)
        assert sorted(tasks) == [f"{job}_{i}" for i in range(4)]
        assert {t.exit_code for t in tasks.values()} == {"0:0"}
        assert crashpoints.check_study(storage, tracking, name, 6) == []

        trials = study.trials()
        assert len(trials) == 6 and {t.state for t in trials} == {TrialState.COMPLETE}
        for trial in trials:  # the owner record names the task
            assert job_of(trial)["task"] in tasks and job_of(trial)["array_job_id"] == job
        client = MlflowClient(tracking)
        experiment = client.get_experiment_by_name(name)
        runs = [
            run
            for run in client.search_runs([experiment.experiment_id])
            if keys.TRIAL_NUMBER_TAG in run.data.tags
        ]
        assert len(runs) == 6
        for run in runs:
            tags = run.data.tags
            assert tags["slurm.array_job_id"] == job and tags["slurm.restart_count"] == "0"
            assert f"{job}_{tags['slurm.array_task_id']}" in tasks
            assert tags["slurm.job_id"] == tasks[tags["slurm.task"]].raw_id

        status = tunelab(
            slurm_cluster, ["launch", "slurm", "--status", name], tmp_path, storage, tracking
        )
        shown["--status"] = status.stdout + status.stderr
        assert f"study '{name}': 6/6 finished trials, 0 running, 0 waiting, 0 failed" in (
            status.stdout
        )
        for task_id in tasks:
            assert re.search(rf"^  {task_id}\s+COMPLETED\s", status.stdout, re.M), status.stdout

        # what Slurm keeps and shows of the job, and what the tasks wrote
        scripts = list(folder.glob("job-*.sbatch"))
        assert len(scripts) == 1
        shown["the script"] = scripts[0].read_text()
        for task_id, record in tasks.items():
            shown[f"scontrol show job -d {task_id}"] = slurm_cluster.run(
                "scontrol", "show", "job", "-d", record.raw_id
            ).stdout
            shown[f"scontrol write batch_script {task_id}"] = slurm_cluster.run(
                "scontrol", "write", "batch_script", record.raw_id, "-"
            ).stdout
        fields = slurm_cluster.run("sacct", "--helpformat").stdout.split()
        shown["sacct, every field"] = slurm_cluster.run(
            "sacct", "-P", "-D", "-j", job, f"--format={','.join(fields)}"
        ).stdout
        deadline = time.monotonic() + 30  # accounting receives scripts and environments late
        while time.monotonic() < deadline:
            env_vars = slurm_cluster.run("sacct", "-j", f"{job}_0", "--env-vars").stdout
            if "SLURM_CONF" in env_vars:
                break
            time.sleep(0.5)
        assert "SLURM_CONF" in env_vars, env_vars  # the environment is there, its URLs not
        shown["sacct --env-vars"] = env_vars
        shown["sacct --batch-script"] = slurm_cluster.run(
            "sacct", "-j", f"{job}_0", "--batch-script"
        ).stdout
        assert "tunelab worker" in shown["sacct --batch-script"]
        for log in folder.glob("*.out"):
            shown[f"log {log.name}"] = log.read_text()
        assert len([k for k in shown if k.startswith("log ")]) == 4
        leaks = sorted(where for where, text in shown.items() if PASSWORD in text)
        assert not leaks, f"the password shows in: {leaks}"
        # nor anywhere in what the cluster keeps: slurmctld's and slurmd's state, accounting
        assert folder_holds(slurm_cluster.folder, PASSWORD.encode()) == []
        # the one place it is: the file only the user reads, which the tasks source
        secrets = folder / "urls.env"
        assert secrets.stat().st_mode & 0o777 == 0o600 and PASSWORD in secrets.read_text()
    finally:
        study.close()


@pytest.mark.slow
def test_scancel_preemption_and_kill_9_each_lose_at_most_a_rung(slurm_cluster, postgres, tmp_path):
    """One array of 3 tasks, 2 at a time: scancel of one task at its trial's first rung;
    preemption of the two that run then (an --exclusive job on `urgent`); kill -9 of a worker;
    then --cancel of what is left, and one `tunelab worker` finishes the study."""
    storage = with_password(postgres.new())
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    name = "slurm-faults"
    job, _ = launch(
        slurm_cluster,
        tmp_path,
        storage,
        tracking,
        name,
        # trials of ~2 s, a rung every 256 images (~20 ms)
        *("--n-trials", "11", "--max-epochs", "20", "--patience", "20", "--rung-images", "256"),
        *("--workers", "3", "--max-parallel", "2", "--single-node"),
    )
    study = Study(slurm_cluster, storage, name, job, tmp_path / "slurm" / name)
    try:
        # scancel of one task, once its trial has reported its first rung
        (cancelled, *_) = study.until(running_at_rung, "a trial at its first rung", 120)
        cancelled_task = job_of(cancelled)["task"]
        slurm_cluster.cancel(cancelled_task)
        cancelled = study.until(
            lambda trials: [
                t for t in trials if t.number == cancelled.number and t.state == TrialState.FAIL
            ],
            "the cancelled task's trial ended",
            30,
        )[0]
        assert keys.trial_attr(cancelled, keys.FAIL_REASON) == "interrupted"
        slurm_cluster.wait_for(cancelled_task, "CANCELLED", timeout=30)

        # preemption: the tasks running now (the third has started in the freed place)
        def two_tasks_training(trials):
            running = running_at_rung(trials)
            return running if len({job_of(t)["task"] for t in running}) == 2 else None

        training = study.until(two_tasks_training, "two tasks training at once", 120)
        preempted_tasks = sorted({job_of(t)["task"] for t in training})
        urgent = slurm_cluster.submit(
            "#!/bin/sh\nsleep 1\n", "--partition=urgent", "--exclusive", "--output=/dev/null"
        )
        slurm_cluster.wait_for(urgent, "COMPLETED", timeout=60)

        def stopped_by_preemption(trials):
            return [
                t
                for t in trials
                if keys.trial_attr(t, keys.FAIL_REASON) == "interrupted"
                and job_of(t)["task"] in preempted_tasks
                and job_of(t)["restart_count"] == "0"
                and t.number != cancelled.number
            ]

        stopped = study.until(stopped_by_preemption, "the preempted tasks' trials stopped", 30)

        # kill -9 of a worker of a requeued task, once it trains again
        def requeued_training(trials):
            return [
                t
                for t in running_at_rung(trials)
                if job_of(t).get("restart_count") == "1" and job_of(t)["task"] in preempted_tasks
            ]

        (killed, *_) = study.until(requeued_training, "a requeued task training", 120)
        killed_task = job_of(killed)["task"]
        for task in preempted_tasks:
            assert slurm_cluster.scontrol_job(task)["Restarts"] == "1"
        (pid,) = [
            p for p in slurm_cluster.listpids(killed_task) if "-m tunelab worker" in command_line(p)
        ]
        os.kill(pid, signal.SIGKILL)
        retry_of_killed = study.until(
            lambda trials: [
                t for t in trials if lineage.retry_of(t) == killed.number and lineage.resumed_at(t)
            ],
            "the killed trial's retry training",
            60,
        )[0]
        slurm_cluster.wait_for(killed_task, "FAILED", timeout=30)

        # what is left is cancelled; one worker anywhere finishes the study
        cancel = tunelab(
            slurm_cluster, ["launch", "slurm", "--cancel", name], tmp_path, storage, tracking
        )
        assert f"cancelled Slurm job(s) {job}" in cancel.stdout, cancel.stdout
        tasks = slurm_cluster.wait_for(job, {"CANCELLED", "FAILED"}, timeout=60)
        finish = ["worker", name, "--quiet", "--threads", "1"]
        tunelab(slurm_cluster, finish, tmp_path, storage, tracking, 300)
        assert crashpoints.check_study(storage, tracking, name, 11) == []

        trials = study.trials()
        by_number = {t.number: t for t in trials}
        killed = by_number[killed.number]
        assert keys.trial_attr(killed, keys.FAIL_REASON).startswith("died")
        # one retry each (check_study), each taking up its source's checkpoint
        for source in [cancelled, *stopped]:
            assert first_resume(trials, source.number) == last_step(source), source.number
        assert 0 < lineage.resumed_at(retry_of_killed) <= last_step(killed)
        assert tasks[cancelled_task].state == "CANCELLED"
        assert tasks[killed_task].state == "FAILED" and tasks[killed_task].restarts == 1
        for task in preempted_tasks:
            assert tasks[task].restarts == 1  # requeued once, by the preemption
    finally:
        study.close()


@pytest.mark.slow
def test_a_time_limit_checkpoints_the_trial_and_its_requeued_task_resumes_it_once(
    slurm_cluster, postgres, tmp_path
):
    """--time 1 with --signal-before 15: slurmctld sends the task USR1 15 to 45 s before the
    limit (it checks limits every 30 s), i.e. 15 to 45 s after the task starts, once its worker
    trains (it starts in ~8 s); the worker stops its trial at the next rung, with the
    checkpoint, and the task requeues itself. The requeued run resumes that trial and finishes
    the study (the task's limit is lifted once a trial was stopped, so that the test needs no
    third run)."""
    storage = with_password(postgres.new())
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    name = "slurm-limit"
    job, _ = launch(
        slurm_cluster,
        tmp_path,
        storage,
        tracking,
        name,
        # ~40 s of training in all: some trial is training whenever the signal comes
        *("--n-trials", "20", "--max-epochs", "20", "--patience", "20", "--rung-images", "256"),
        *("--workers", "1", "--time", "1", "--signal-before", "15", "--single-node"),
    )
    task = f"{job}_0"
    study = Study(slurm_cluster, storage, name, job, tmp_path / "slurm" / name)
    try:
        (stopped,) = study.until(
            lambda trials: [
                t for t in trials if keys.trial_attr(t, keys.FAIL_REASON) == "interrupted"
            ],
            "a trial stopped by the time limit",
            90,
        )
        raw = slurm_cluster.scontrol_job(task)["JobId"]
        slurm_cluster.run("scontrol", "update", f"JobId={raw}", "TimeLimit=10")
        run = int(job_of(stopped)["restart_count"])  # 0 unless the signal came at a start
        # the requeued run trains the rest of the study: ~60 s alone, 3x that on a loaded machine
        (record,) = study.wait("COMPLETED", timeout=300).values()
        assert record.restarts == run + 1  # requeued by itself, at the time limit
        assert crashpoints.check_study(storage, tracking, name, 20) == []
        trials = study.trials()
        (retry,) = [t for t in trials if lineage.retry_of(t) == stopped.number]
        assert retry.state == TrialState.COMPLETE
        assert lineage.resumed_at(retry) == last_step(stopped) > 0
        assert job_of(retry)["restart_count"] == str(run + 1)  # in the requeued run
        assert [t.number for t in trials if t.state == TrialState.FAIL] == [stopped.number]
        log = (tmp_path / "slurm" / name / f"{job}_0.out").read_text()
        assert "the time limit is near" in log and f"run {run + 2}" in log, log
    finally:
        study.close()
