"""A real one-node Slurm cluster for tests and benchmarks: Debian's slurm-wlm 22.05 and munge,
started as plain processes on 127.0.0.1, every file they write under one private folder.

    cluster = SlurmCluster().start()          # or: with SlurmCluster() as cluster: ...
    job = cluster.submit("#!/bin/sh\\nhostname\\n", "--array=0-3")
    cluster.wait_for(job, {"COMPLETED"}, timeout=30)
    cluster.stop()

From a benchmark or any script, by path (tests/ is no package):

    spec = importlib.util.spec_from_file_location("tunelab_slurm_cluster", "tests/slurm/cluster.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # before exec_module: its dataclasses look it up there
    spec.loader.exec_module(module)

By hand, for debugging (root):

    .venv/bin/python tests/slurm/cluster.py up      # prints: export SLURM_CONF=...
    .venv/bin/python tests/slurm/cluster.py down    # cancels the jobs, stops it, deletes it

What it starts, all under ``/tmp/tunelab-slurm-XXXXXXXX/`` (config in ``etc/``, logs in
``log/``), all as children of the process that calls :meth:`SlurmCluster.start`:

- ``munged`` (as user munge) with a key of its own and its socket in the folder (slurm.conf's
  ``AuthInfo=socket=...``): the machine's /etc/munge and /run/munge are neither read nor used;
- a private MariaDB (as user mysql) on a fresh datadir, reachable only through a unix socket in
  the folder (``--skip-networking``: it binds no TCP port at all);
- ``slurmdbd``, ``slurmctld`` and ``slurmd -N localhost``, in the foreground (``-D``), on ports
  chosen free (below the ephemeral range) at each start, so two clusters never collide.

Accounting keeps every job's batch script and environment (``AccountingStoreFlags=job_script,
job_env``, as many sites set it: ``sacct --batch-script`` and ``--env-vars`` show them), so that
a test of what a job reveals sees all of it.

Accounting: why a private MariaDB rather than a database of its own on the system MariaDB at
127.0.0.1:3306. It costs half a second to two (the system tables bootstrapped into an empty
datadir, then the start; 1.5 s on this 2-core VM when it is busy) and about 100 MiB, and buys
isolation: the test suite never creates databases or users in a service that other work on
this machine depends on (CI runs here too, with the system services as an earlier session left
them: whatever a killed run leaves in a shared server stays there, and a database dropped by
the wrong run is someone else's); a test run killed hard leaves nothing behind (the next start
deletes a dead run's folder, datadir included); it does not depend on the system server being
up, on its root password or on its settings (its ``innodb_lock_wait_timeout=50`` is below the
900 that slurmdbd asks for, and a global of a shared server is not ours to change); and it runs
without durability (``innodb_flush_log_at_trx_commit=0``, no doublewrite, no binlog), which
makes slurmdbd's creation of its tables quick. slurmdbd reaches it through ``MYSQL_UNIX_PORT``
(libmariadb's socket for ``StorageHost=localhost``), as a user with a random password that
exists only in the private server: should it ever reach the system server's socket instead,
it would be refused there, not create tables.

Bindings: slurmctld and slurmd bind 127.0.0.1 (``CommunicationParameters=NoCtldInAddrAny,
NoInAddrAny``; ``SlurmctldHost=localhost(127.0.0.1)``, ``NodeAddr=127.0.0.1``). slurmdbd 22.05
has no setting for its listening address: ``DbdAddr``/``DbdHost`` only name where clients
reach it, and it binds ``0.0.0.0:DbdPort`` whatever they say. Where a C compiler is present (it
is on the CI machine), slurmdbd runs with a ten-line ``LD_PRELOAD`` library, built into the
folder at each start, that turns its ``bind()`` to the wildcard address into a ``bind()`` to
127.0.0.1; without one, it listens on 0.0.0.0 on a random port, answers only munge-signed
requests (with this cluster's own key), and :attr:`SlurmCluster.exposed` says so. ``srun``'s
own listening ports (ephemeral) are on 127.0.0.1 too (NoInAddrAny); :meth:`listening` lists
what the cluster's processes listen on.

The cluster: ``NodeName=localhost`` with the CPUs, sockets, cores, threads and memory that
``slurmd -C`` reports (more leaves the node DRAINED); ``ProctrackType=proctrack/linuxproc`` and
``TaskPlugin=task/none`` (no cgroups in this VM: a process that daemonizes escapes its job);
partition ``debug`` (default, PriorityTier=1) and ``urgent`` (PriorityTier=10,
``PreemptMode=OFF``) with ``PreemptType=preempt/partition_prio`` and ``PreemptMode=REQUEUE``:
a job on ``urgent`` that needs what a running ``debug`` job holds requeues it, and it reruns
with ``SLURM_RESTART_COUNT=1``; ``KillWait=5`` (scancel, preemption, a time limit: SIGTERM,
then SIGKILL 5 s later); ``AuthInfo=cred_expire=10`` (a requeued job may start again
cred_expire + 1 s after it was requeued: 121 s by default) and a scheduling pass every second
(``sched_interval=1``, ``bf_interval=1``: else the requeued job, eligible again, waits for the
main scheduler's next pass, up to 60 s); ``DefMemPerCPU`` the node's memory per CPU (else one
job takes all of it). slurmctld's first start needs slurmdbd up (it fetches its TRES from it),
so the order is munged, MariaDB, slurmdbd, slurmctld (which registers the cluster in
accounting itself), slurmd.

What Slurm 22.05's accounting does that a test must allow for:

- ``sacct`` has no ``Restarts`` field: :meth:`SlurmCluster.sacct` counts a job's runs with
  ``sacct --duplicates`` (one record per run) and :meth:`SlurmCluster.scontrol_job` gives
  slurmctld's own ``Restarts`` (for MinJobAge=300 s after the job ended);
- sacct lags slurmctld by up to a couple of seconds, and not evenly: an array's last task can
  be in sacct before its first, a running job can still read PENDING; :meth:`wait_for` waits
  until sacct and squeue agree on every task;
- a job that ends within its first second can have an empty ``Partition`` in sacct;
- a batch shell that exits 137 (its child killed by SIGKILL) reads ``ExitCode=137:0`` in
  ``scontrol show job`` but ``9:0`` in sacct; a batch shell killed by SIGKILL reads ``0:9``.

Time limits: slurmctld checks them about every 30 s, and sends ``--signal=B:TERM@T`` early (by
up to 60 s, its documented resolution): with ``--time=1 --signal=B:TERM@20`` the script saw
SIGTERM at 29 s, SIGTERM again at the limit (60 s) and SIGKILL KillWait later (64 s).

Processes: with proctrack/linuxproc a job's processes are the descendants of its slurmstepd;
one whose parent died (the batch shell killed by SIGKILL while a child runs) or that
daemonized is no longer the job's: Slurm does not kill it, and it outlives the job (stop()
does kill it).

Needs root (slurmd runs jobs as the submitting user; munged and MariaDB run as their own
users). Missing Debian packages are installed with apt-get (6 to 7 s, once per machine):
slurm-wlm, munge, slurmdbd (with slurm-wlm-mysql-plugin), mariadb-server and mariadb-client
where absent; services that their maintainer scripts would start are kept from starting with a
temporary /usr/sbin/policy-rc.d (only if there is none).

:meth:`SlurmCluster.stop` cancels every job, stops every daemon (SIGTERM, then SIGKILL) and
then kills whatever still carries the cluster's mark (each daemon, slurmstepd and job has
``TUNELAB_SLURM_CLUSTER=<folder>`` in its environment, or runs a batch script of the folder,
or descends from one of those), and deletes the folder; a start that fails half way stops
what it started before it raises. A folder whose owning process died without stopping it (a
killed test run) is cleaned up the same way by the next start.
"""

from __future__ import annotations

import argparse
import contextlib
import grp
import json
import os
import pwd
import random
import re
import secrets
import shutil
import signal as signals
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

NODE = "localhost"
CLUSTER_NAME = "tunelab"
MARK = "TUNELAB_SLURM_CLUSTER"
"""Environment variable (the folder) that every process of a cluster carries."""
PREFIX = "tunelab-slurm-"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STATE_FILE = Path(tempfile.gettempdir()) / "tunelab-slurm.state"
"""Where `cluster.py up` keeps the folder of the cluster it started, for `down`."""
CLIENT_PREFIXES = ("SLURM_", "SBATCH_", "SALLOC_", "SRUN_", "SQUEUE_", "SACCT_", "SINFO_")
"""Variables that change what Slurm's clients do (an outer job's, a user's formats)."""
FINAL_STATES = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
)
"""Job states that no longer change (a requeue passes through PREEMPTED/REQUEUED)."""

MARIADB_SHARE = Path("/usr/share/mysql")
BOOTSTRAP_SQL = (
    "mysql_system_tables.sql",
    "mysql_performance_tables.sql",
    "mysql_system_tables_data.sql",
)
"""What mariadb-install-db feeds `mariadbd --bootstrap`, less help tables, GIS, sys schema."""
MARIADB_SPEED = (
    "--skip-log-bin",
    "--innodb-buffer-pool-size=64M",
    "--innodb-log-file-size=16M",
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-doublewrite=0",
)
"""A throw-away database: no durability (it is deleted at stop)."""

BIND_LOOPBACK_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
/* bind() to the wildcard address becomes bind() to the loopback address (slurmdbd 22.05 has
   no setting for its listening address). */
int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static int (*real)(int, const struct sockaddr *, socklen_t);
    if (!real) real = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
    if (addr && addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        struct sockaddr_in a = *(const struct sockaddr_in *)addr;
        if (a.sin_addr.s_addr == htonl(INADDR_ANY)) {
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return real(fd, (const struct sockaddr *)&a, sizeof a);
        }
    }
    if (addr && addr->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 a = *(const struct sockaddr_in6 *)addr;
        if (!memcmp(&a.sin6_addr, &in6addr_any, sizeof a.sin6_addr)) {
            a.sin6_addr = in6addr_loopback;
            return real(fd, (const struct sockaddr *)&a, sizeof a);
        }
    }
    return real(fd, addr, len);
}
"""


class SlurmError(RuntimeError):
    """The cluster could not start, or a Slurm command failed."""


class SlurmUnavailable(SlurmError):
    """This machine cannot run the cluster at all (not root, no apt-get)."""


@dataclass(frozen=True)
class Job:
    """One job or array task, as sacct or squeue shows it."""

    job_id: str
    """As Slurm prints it: ``12``, ``12_3`` (array task), ``12_[4-7]`` (pending tasks)."""
    raw_id: str
    """The task's own job id (``scontrol listpids`` and ``scontrol show job`` take it)."""
    state: str
    """First word of the state: ``CANCELLED by 0`` is ``CANCELLED``."""
    partition: str = ""
    exit_code: str = ""
    """sacct's ``ExitCode``, ``code:signal`` (squeue: empty)."""
    restarts: int = 0
    """sacct: earlier runs of this job (requeues); squeue: 0 (see scontrol_job)."""
    reason: str = ""
    """squeue's reason (``Priority``, ``BeginTime``...); sacct: the state's remainder."""


def _log(message: str) -> None:
    print(f"slurm-cluster: {message}", file=sys.stderr, flush=True)


class SlurmCluster:
    """A one-node Slurm cluster under a private temporary folder (see the module docstring).

    ``accounting=False`` runs no MariaDB and no slurmdbd (sacct then fails; squeue, scontrol
    and scancel work)."""

    def __init__(
        self,
        accounting: bool = True,
        kill_wait: int = 5,
        cred_expire: int = 10,
        parent: str | os.PathLike | None = None,
        install: bool = True,
        manual: bool = False,
    ) -> None:
        self.accounting = accounting
        self.kill_wait = kill_wait
        self.cred_expire = cred_expire
        self.parent = Path(parent or "/tmp")
        self.install = install
        self.manual = manual
        """Started by hand (`cluster.py up`): no owner process, never cleaned up as stale."""
        self.folder: Path | None = None
        self.conf: Path | None = None
        """The slurm.conf (SLURM_CONF) of the cluster."""
        self.ports: dict[str, int] = {}
        self.node: dict[str, int] = {}
        """What slurmd -C reports: CPUs, RealMemory, ..."""
        self.exposed: list[str] = []
        """What listens beyond 127.0.0.0/8 (empty unless slurmdbd runs without the shim)."""
        self.timings: dict[str, float] = {}
        """Seconds of each phase of start() and stop()."""
        self._procs: dict[str, subprocess.Popen] = {}
        self._started = False

    # -- the public helpers -----------------------------------------------------------------

    @property
    def cpus(self) -> int:
        return self.node.get("CPUs", 1)

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a Slurm client command (and of the jobs it submits: sbatch
        exports it): this process's, less any outer Slurm's variables, with SLURM_CONF, the
        system's sbin/bin on PATH and the cluster's mark."""
        self._require_folder()
        env = {k: v for k, v in os.environ.items() if not k.startswith(CLIENT_PREFIXES)}
        path = env.get("PATH", "")
        missing = [p for p in SYSTEM_PATH.split(":") if p not in path.split(":")]
        env["PATH"] = ":".join([p for p in [path, *missing] if p])
        env["SLURM_CONF"] = str(self.conf)
        env[MARK] = str(self.folder)
        env.update(extra)
        return env

    def run(
        self,
        *cmd: str,
        check: bool = True,
        timeout: float = 60,
        cwd: str | os.PathLike | None = None,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess:
        """Run a client command (``run("sinfo")``) on this cluster; text output captured.
        With check, a non-zero exit raises SlurmError with its stderr."""
        try:
            done = subprocess.run(
                list(cmd),
                env=env or self.env(),
                cwd=cwd or self.folder / "work",
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as error:
            raise SlurmError(f"{' '.join(cmd)}: no answer within {timeout:g} s") from error
        if check and done.returncode != 0:
            raise SlurmError(
                f"{' '.join(cmd)}: exit {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()[-2000:]}"
            )
        return done

    def submit(
        self,
        script_text: str,
        *sbatch_args: str,
        cwd: str | os.PathLike | None = None,
        env: dict[str, str] | None = None,
    ) -> str:
        """sbatch the script (it must start with ``#!``) with the arguments; the job id.
        It runs in `cwd` (default: the cluster's ``work/`` folder, where ``slurm-%j.out``
        files then land)."""
        done = self.run("sbatch", "--parsable", *sbatch_args, input=script_text, cwd=cwd, env=env)
        return done.stdout.strip().split(";")[0]

    def sacct(self, job_id: str) -> dict[str, Job]:
        """The job's (or array's) records in accounting, by job id: array tasks each, steps
        not; ``restarts`` counts its earlier runs."""
        fields = "JobID,JobIDRaw,State,Partition,ExitCode,Submit,Start"
        out = self.run(
            "sacct", "-n", "-P", "-X", "-D", "-j", str(job_id), f"--format={fields}"
        ).stdout
        runs: dict[str, list[list[str]]] = {}
        for line in out.splitlines():
            row = line.split("|")
            if len(row) == 7:
                runs.setdefault(row[0], []).append(row)
        jobs = {}
        for key, rows in runs.items():
            rows.sort(key=lambda row: (row[5], row[6]))  # ISO times; Unknown sorts last
            job_id_, raw, state, partition, exit_code, _, _ = rows[-1]
            first, _, rest = state.partition(" ")
            jobs[key] = Job(job_id_, raw, first, partition, exit_code, len(rows) - 1, rest)
        return jobs

    def squeue(self, job_id: str | None = None) -> dict[str, Job]:
        """slurmctld's view of the job (or of every job): array tasks each, ended jobs too
        (for MinJobAge after they end); {} once it has forgotten them."""
        args = ["squeue", "-h", "-r", "-t", "all", "-o", "%i|%A|%T|%P|%r"]
        if job_id is not None:
            args += ["-j", str(job_id)]
        done = self.run(*args, check=False)
        if done.returncode != 0:
            if "Invalid job id" in done.stderr:
                return {}
            raise SlurmError(f"squeue: {done.stderr.strip()}")
        jobs = {}
        for line in done.stdout.splitlines():
            row = line.split("|")
            if len(row) == 5:
                jobs[row[0]] = Job(row[0], row[1], row[2], row[3], reason=row[4])
        return jobs

    def scontrol_job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` of one job or array task as a dict (Restarts, JobState,
        BatchFlag, Requeue, Command, ...)."""
        out = self.run("scontrol", "-o", "show", "job", str(job_id)).stdout.strip()
        line = out.splitlines()[0] if out else ""
        return dict(re.findall(r"(?:^|\s)([A-Za-z:/]+)=(.*?)(?=\s[A-Za-z:/]+=|$)", line))

    def states(self, job_id: str, source: str = "sacct") -> dict[str, str]:
        """{job or array task id: state} from sacct (default) or squeue."""
        jobs = self.sacct(job_id) if source == "sacct" else self.squeue(job_id)
        return {key: job.state for key, job in jobs.items()}

    def wait_for(
        self,
        job_id: str,
        states: str | Iterable[str],
        timeout: float = 60,
        source: str = "sacct",
    ) -> dict[str, Job]:
        """Poll until every record of the job (each array task) is in one of `states`; those
        records (from sacct, or from squeue with ``source="squeue"``).

        Accounting lags behind slurmctld (slurmctld sends job records to slurmdbd in
        batches: an array's last task may be in sacct a second before its first), so with
        sacct it also waits until sacct holds every task that squeue knows and squeue agrees.
        Raises SlurmError when time runs out, or at once when the job has ended in a state not
        asked for."""
        wanted = {states} if isinstance(states, str) else set(states)
        deadline = time.monotonic() + timeout
        while True:
            queue = self.squeue(job_id)
            jobs = self.sacct(job_id) if source == "sacct" else queue
            seen = {key: job.state for key, job in jobs.items()}
            covered = {task for key in jobs for task in _array_tasks(key)}
            missing = sorted(set(queue) - covered)
            queued = {job.state for job in queue.values()}
            if jobs and not missing and set(seen.values()) | queued <= wanted:
                return jobs
            if jobs and not missing and set(seen.values()) | queued <= FINAL_STATES:
                raise SlurmError(f"job {job_id} ended as {seen}, not {sorted(wanted)}")
            if time.monotonic() > deadline:
                queue_states = {key: job.state for key, job in queue.items()}
                raise SlurmError(
                    f"job {job_id} not {sorted(wanted)} within {timeout:g} s "
                    f"({source}: {seen or 'no record'}; squeue: {queue_states or 'no record'})"
                )
            time.sleep(0.2)

    def listpids(self, job_id: str) -> list[int]:
        """The pids of the job's (or array task's) processes on the node, from
        ``scontrol listpids`` (batch shell and its children; not slurmstepd)."""
        raw = str(job_id)
        if not raw.isdigit():  # 12_3: listpids wants the task's own job id
            jobs = self.squeue(raw)
            if raw not in jobs:
                raise SlurmError(f"listpids: no job {raw} in squeue")
            raw = jobs[raw].raw_id
        out = self.run("scontrol", "listpids", raw).stdout
        return [int(line.split()[0]) for line in out.splitlines() if line.split()[:1] != ["PID"]]

    def cancel(self, job_id: str, signal: str | int | None = None, full: bool = False) -> None:
        """scancel the job (SIGTERM to every process of it, SIGKILL KillWait s later); with
        `signal`, only send that signal (to its steps; with `full`, to the batch shell too)."""
        args = ["scancel"]
        if signal is not None:
            args += ["-s", str(signal)]
        if full:
            args.append("--full")
        self.run(*args, str(job_id))

    def listening(self) -> list[tuple[str, str, int]]:
        """(process, address, port) of each TCP socket that a process of the cluster listens
        on (from /proc: no `ss` needed)."""
        self._require_folder()
        owners: dict[int, str] = {}
        for pid in cluster_processes(self.folder):
            try:
                name = Path(f"/proc/{pid}/comm").read_text().strip()
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:["):
                        owners[int(link[8:-1])] = name
            except OSError:
                continue
        found = []
        for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
            try:
                lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                fields = line.split()
                if fields[3] != "0A" or int(fields[9]) not in owners:  # 0A: LISTEN
                    continue
                address, port = fields[1].split(":")
                raw = bytes.fromhex(address)
                raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.append((owners[int(fields[9])], socket.inet_ntop(family, raw), int(port, 16)))
        return sorted(found)

    # -- start ------------------------------------------------------------------------------

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> SlurmCluster:
        """Install what is missing, start every daemon, wait until the node is idle and
        accounting answers. On failure, stops what it started and raises SlurmError."""
        if self._started:
            return self
        if os.geteuid() != 0:
            raise SlurmUnavailable("a Slurm cluster needs root (slurmd, munged, MariaDB)")
        began = time.monotonic()
        self.exposed, self.timings = [], {}
        reap_stale(self.parent)
        self._timed("install", self._install)
        self._started = True
        try:
            self._timed("configure", self._configure)
            self._timed("munged", self._start_munged)
            if self.accounting:  # slurmctld's first start needs slurmdbd (for its TRES)
                self._timed("mariadb", lambda: self._start_mariadb(self._bootstrap_mariadb()))
                self._timed("slurmdbd", self._start_slurmdbd)
            self._timed("slurmctld", self._start_slurmctld)
            self._spawn("slurmd", ["/usr/sbin/slurmd", "-D", "-N", NODE])
            self._timed("slurmd", self._wait_node)
            if self.accounting:
                self._timed("accounting", self._wait_accounting)
        except BaseException:
            self.stop()
            raise
        self.timings["start"] = time.monotonic() - began
        return self

    def _timed(self, phase: str, step: Callable[[], None]) -> None:
        began = time.monotonic()
        step()
        self.timings[phase] = time.monotonic() - began

    def _install(self) -> None:
        missing = missing_packages(self.accounting)
        if not missing:
            return
        if not self.install:
            raise SlurmUnavailable(f"missing Debian packages: {' '.join(missing)}")
        if shutil.which("apt-get") is None:
            raise SlurmUnavailable(f"no apt-get to install {' '.join(missing)}")
        _log(f"installing {' '.join(missing)} (apt-get)")
        install_packages(missing)
        still = missing_packages(self.accounting)
        if still:
            raise SlurmError(f"apt-get installed, but still missing: {' '.join(still)}")

    def _configure(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix=PREFIX, dir=self.parent))
        self.folder.chmod(0o711)  # munge and mysql must reach their own subfolders
        owner = {"manual": self.manual, "pid": os.getpid(), "start": _start_time(os.getpid())}
        (self.folder / "owner.json").write_text(json.dumps(owner))
        for name, mode in [("etc", 0o755), ("log", 0o755), ("run", 0o755), ("work", 0o755)]:
            (self.folder / name).mkdir(mode=mode)
        for name in ("ctld", "spool"):
            (self.folder / name).mkdir(mode=0o700)
        self.conf = self.folder / "etc" / "slurm.conf"
        self.node = slurmd_hardware()
        names = ["slurmctld", "slurmd"] + (["slurmdbd"] if self.accounting else [])
        self.ports = dict(zip(names, free_ports(len(names)), strict=True))
        (self.folder / "etc" / "plugstack.conf").write_text("")
        self.conf.write_text(self._slurm_conf())  # before any client runs (else: DNS SRV)

    def _slurm_conf(self) -> str:
        f, node = self.folder, self.node
        cpus = node["CPUs"]
        hardware = " ".join(
            f"{key}={node[key]}"
            for key in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore")
            if key in node
        )
        if self.accounting:
            accounting = (
                "AccountingStorageType=accounting_storage/slurmdbd\n"
                "AccountingStorageHost=127.0.0.1\n"
                f"AccountingStoragePort={self.ports['slurmdbd']}\n"
                # the munge socket of connections to slurmdbd (not AuthInfo's socket=)
                f"AccountingStoragePass={self.folder}/munge/munge.socket\n"
                "JobAcctGatherType=jobacct_gather/linux\n"
                # as many sites do: every job's script and environment kept in accounting
                # (`sacct --batch-script`, `--env-vars`), so a test sees what they show
                "AccountingStoreFlags=job_script,job_env\n"
            )
        else:
            accounting = (
                "AccountingStorageType=accounting_storage/none\n"
                "JobAcctGatherType=jobacct_gather/none\n"
            )
        return f"""\
# a one-node test cluster, written by tests/slurm/cluster.py
ClusterName={CLUSTER_NAME}
SlurmctldHost={NODE}(127.0.0.1)
SlurmctldPort={self.ports["slurmctld"]}
SlurmdPort={self.ports["slurmd"]}
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire={self.cred_expire},socket={f}/munge/munge.socket
MailProg=/bin/true
PlugStackConfig={f}/etc/plugstack.conf
StateSaveLocation={f}/ctld
SlurmdSpoolDir={f}/spool
SlurmctldPidFile={f}/run/slurmctld.pid
SlurmdPidFile={f}/run/slurmd.pid
SlurmctldLogFile={f}/log/slurmctld.log
SlurmdLogFile={f}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
{accounting}JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU={max(1, node["RealMemory"] // cpus)}
KillWait={self.kill_wait}
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
JobRequeue=1
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
MinJobAge=300
MaxArraySize=10001
NodeName={NODE} NodeAddr=127.0.0.1 {hardware} RealMemory={node["RealMemory"]} State=UNKNOWN
PartitionName=debug Nodes={NODE} Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=urgent Nodes={NODE} Default=NO MaxTime=INFINITE State=UP PriorityTier=10 \
PreemptMode=OFF
"""

    def _daemon_env(self, **extra: str) -> dict[str, str]:
        env = {
            "PATH": SYSTEM_PATH,
            "LANG": "C.UTF-8",
            "HOME": "/root",
            "SLURM_CONF": str(self.conf),
            MARK: str(self.folder),
        }
        env.update(extra)
        return env

    def _spawn(self, name: str, argv: list[str], user: str | None = None, **env: str) -> None:
        with open(self.folder / "log" / f"{name}.out", "ab") as out:
            ids = {}
            if user is not None:
                entry = pwd.getpwnam(user)
                ids = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
            self._procs[name] = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._daemon_env(**env),
                cwd=self.folder,
                start_new_session=True,  # out of the caller's terminal and process group
                **ids,
            )
        pids = {key: proc.pid for key, proc in self._procs.items()}
        (self.folder / "run" / "daemons.json").write_text(json.dumps(pids))

    def _start_munged(self) -> None:
        munge = self.folder / "munge"
        munge.mkdir(mode=0o755)
        key = munge / "munge.key"
        key.write_bytes(secrets.token_bytes(1024))
        entry = pwd.getpwnam("munge")
        for path in (munge, key):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        key.chmod(0o400)
        self._spawn(
            "munged",
            [
                "/usr/sbin/munged",
                "--foreground",
                f"--socket={munge}/munge.socket",
                f"--key-file={key}",
                f"--pid-file={munge}/munged.pid",
                f"--log-file={munge}/munged.log",
                f"--seed-file={munge}/munged.seed",
                "--num-threads=2",
            ],
            user="munge",
        )
        self._until(
            "munged answers",
            lambda: (
                (munge / "munge.socket").exists()
                and _quiet(["munge", "-n", "-S", f"{munge}/munge.socket"])
            ),
            timeout=20,
        )

    def _bootstrap_mariadb(self) -> subprocess.Popen:
        """Start making the datadir: what mariadb-install-db does, less the help tables,
        the GIS procedures and the sys schema, which slurmdbd does not use (1.5 s instead of
        4 on a busy 2-core VM)."""
        mysql = self.folder / "mysql"
        (mysql / "data").mkdir(mode=0o700, parents=True)
        mysql.chmod(0o700)
        entry = pwd.getpwnam("mysql")
        for path in (mysql, mysql / "data"):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        sql = "create database if not exists mysql;\nuse mysql;\nSET @auth_root_socket='root';\n"
        for name in BOOTSTRAP_SQL:
            sql += (MARIADB_SHARE / name).read_text() + "\n"
        (mysql / "bootstrap.sql").write_text(sql)
        with (
            open(mysql / "bootstrap.sql", "rb") as script,
            open(mysql / "bootstrap.log", "wb") as log,
        ):
            return subprocess.Popen(
                [
                    "/usr/sbin/mariadbd",
                    "--no-defaults",
                    "--bootstrap",
                    f"--datadir={mysql}/data",
                    "--log-warnings=0",
                    "--enforce-storage-engine=",
                    "--max-allowed-packet=8M",
                    "--net-buffer-length=16K",
                    *MARIADB_SPEED,
                ],
                stdin=script,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._daemon_env(),
                cwd=mysql,
                user=entry.pw_uid,
                group=entry.pw_gid,
                extra_groups=[],
                start_new_session=True,
            )

    def _start_mariadb(self, bootstrap: subprocess.Popen) -> None:
        mysql = self.folder / "mysql"
        try:
            code = bootstrap.wait(timeout=120)
        except subprocess.TimeoutExpired:
            bootstrap.kill()
            bootstrap.wait()
            code = "timeout"
        if code != 0:
            raise SlurmError(f"MariaDB bootstrap failed ({code}): {_tail(mysql / 'bootstrap.log')}")
        (mysql / "bootstrap.sql").unlink()
        self._spawn(
            "mariadbd",
            [
                "/usr/sbin/mariadbd",
                "--no-defaults",
                f"--datadir={mysql}/data",
                f"--socket={mysql}/mysqld.sock",
                f"--pid-file={mysql}/mysqld.pid",
                f"--log-error={mysql}/mariadbd.log",
                f"--tmpdir={mysql}",
                "--skip-networking",
                "--skip-name-resolve",
                "--innodb-lock-wait-timeout=900",
                "--max-connections=64",
                *MARIADB_SPEED,
            ],
            user="mysql",
        )
        self._until("MariaDB answers", lambda: self._sql("SELECT 1", check=False), timeout=60)
        self._db_password = secrets.token_hex(16)
        self._sql(
            f"CREATE USER 'slurm'@'localhost' IDENTIFIED BY '{self._db_password}'; "
            "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
        )

    def _sql(self, statements: str, check: bool = True) -> bool:
        done = subprocess.run(
            ["mariadb", "--no-defaults", "-S", f"{self.folder}/mysql/mysqld.sock", "-u", "root"],
            input=statements,
            capture_output=True,
            text=True,
            timeout=30,
            env=self._daemon_env(),
        )
        if check and done.returncode != 0:
            raise SlurmError(f"MariaDB: {done.stderr.strip()}")
        return done.returncode == 0

    def _start_slurmdbd(self) -> None:
        dbd = self.folder / "etc" / "slurmdbd.conf"
        dbd.touch(mode=0o600)  # slurmdbd refuses a conf that others can read
        dbd.write_text(
            f"""\
# written by tests/slurm/cluster.py
AuthType=auth/munge
AuthInfo=socket={self.folder}/munge/munge.socket
DbdHost={NODE}
DbdAddr=127.0.0.1
DbdPort={self.ports["slurmdbd"]}
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass={self._db_password}
StorageLoc=slurm_acct_db
LogFile={self.folder}/log/slurmdbd.log
PidFile={self.folder}/run/slurmdbd.pid
DebugLevel=info
"""
        )
        env = {"MYSQL_UNIX_PORT": f"{self.folder}/mysql/mysqld.sock"}
        shim = self._bind_loopback_shim()
        if shim is not None:
            env["LD_PRELOAD"] = str(shim)
        else:
            self.exposed.append(f"slurmdbd on 0.0.0.0:{self.ports['slurmdbd']} (no C compiler)")
        self._spawn("slurmdbd", ["/usr/sbin/slurmdbd", "-D"], **env)
        self._until(
            "slurmdbd answers (sacctmgr show cluster)",
            lambda: self.run("sacctmgr", "-n", "show", "cluster", check=False).returncode == 0,
            timeout=60,
        )

    def _bind_loopback_shim(self) -> Path | None:
        compiler = shutil.which("cc") or shutil.which("gcc")
        if compiler is None:
            return None
        source = self.folder / "run" / "bind_loopback.c"
        library = source.with_suffix(".so")
        source.write_text(BIND_LOOPBACK_C)
        done = subprocess.run(
            [compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(source), "-ldl"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            _log(f"cannot build the loopback shim ({done.stderr.strip()[-300:]})")
            return None
        return library

    def _start_slurmctld(self) -> None:
        self._spawn("slurmctld", ["/usr/sbin/slurmctld", "-D"])
        self._until(
            "slurmctld answers (scontrol ping)",
            lambda: "UP" in self.run("scontrol", "ping", check=False).stdout,
            timeout=60,
        )

    def _wait_node(self) -> None:
        resumed = [0.0]

        def idle() -> bool:
            state = self.run("sinfo", "-h", "-n", NODE, "-o", "%T", check=False).stdout.strip()
            if state.startswith(("down", "drain", "fail")) and time.monotonic() - resumed[0] > 2:
                resumed[0] = time.monotonic()
                self.run("scontrol", "update", f"NodeName={NODE}", "State=RESUME", check=False)
            return state.startswith("idle")

        self._until(f"node {NODE} idle (sinfo)", idle, timeout=60)

    def _wait_accounting(self) -> None:
        def registered() -> bool:
            clusters = self.run(
                "sacctmgr", "-n", "-P", "show", "cluster", "format=Cluster,ControlHost", check=False
            ).stdout
            return f"{CLUSTER_NAME}|127.0.0.1" in clusters.split()

        self._until("slurmctld registered with slurmdbd (sacctmgr)", registered, timeout=60)
        self._until(
            "sacct answers",
            lambda: self.run("sacct", "-n", "-X", "-a", check=False).returncode == 0,
            timeout=30,
        )

    def _until(self, what: str, ready: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise SlurmError(
                        f"{name} exited ({proc.returncode}) before {what}:\n{self._logs(name)}"
                    )
            if ready():
                return
            if time.monotonic() > deadline:
                raise SlurmError(f"no {what} within {timeout:g} s:\n{self._logs()}")
            time.sleep(0.1)

    def _logs(self, name: str | None = None) -> str:
        logs = sorted((self.folder / "log").glob(f"{name or ''}*"))
        if name in (None, "munged"):
            logs.append(self.folder / "munge" / "munged.log")
        if name in (None, "mariadbd"):
            logs.append(self.folder / "mysql" / "mariadbd.log")
        return "\n".join(f"--- {log}\n{_tail(log)}" for log in logs if log.exists())

    def _require_folder(self) -> None:
        if self.folder is None:
            raise SlurmError("the cluster is not started")

    # -- stop -------------------------------------------------------------------------------

    def stop(self) -> None:
        """Cancel every job, stop every daemon, kill whatever of the cluster is left, delete
        the folder. Idempotent; also after a start that failed half way."""
        if not self._started:
            return
        began = time.monotonic()
        if self.folder is not None:
            with contextlib.suppress(Exception):
                if self._controller_up():
                    self._cancel_all()
            teardown(self.folder, self._procs)
        self._procs.clear()
        self._started = False
        self.timings["stop"] = time.monotonic() - began

    def _controller_up(self) -> bool:
        if "slurmctld" in self._procs:
            return self._procs["slurmctld"].poll() is None
        if not self.conf.exists():
            return False
        return "UP" in self.run("scontrol", "ping", check=False, timeout=10).stdout

    def _cancel_all(self) -> None:
        jobs = self.run("squeue", "-h", "-o", "%A", timeout=10).stdout.split()
        if not jobs:
            return
        self.run("scancel", *sorted(set(jobs)), check=False, timeout=10)
        deadline = time.monotonic() + self.kill_wait + 10
        while time.monotonic() < deadline:
            left = self.run("squeue", "-h", "-t", "R,CG,S", "-o", "%A", check=False, timeout=10)
            if not left.stdout.strip():
                return
            time.sleep(0.2)

    @classmethod
    def attach(cls, folder: str | os.PathLike) -> SlurmCluster:
        """The cluster of a folder that another process started (for `cluster.py down`)."""
        cluster = cls()
        cluster.folder = Path(folder)
        cluster.conf = cluster.folder / "etc" / "slurm.conf"
        cluster._started = True
        return cluster


# -- processes, packages, ports -----------------------------------------------------------


def teardown(folder: Path, procs: dict[str, subprocess.Popen] | None = None) -> None:
    """Stop every process of the cluster in `folder` (SIGTERM, then SIGKILL), reap the ones
    this process started, delete the folder."""
    procs = procs or {}
    marked = cluster_processes(folder)
    for pid in marked:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signals.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for proc in procs.values():
            proc.poll()
        if not any(_alive(pid) for pid in marked):
            break
        time.sleep(0.05)
    for _ in range(50):  # SIGKILL what is left (and anything it forked meanwhile)
        left = cluster_processes(folder)
        if not left:
            break
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signals.SIGKILL)
        time.sleep(0.05)
    else:
        _log(f"processes of {folder} survived SIGKILL: {cluster_processes(folder)}")
    for proc in procs.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    shutil.rmtree(folder, ignore_errors=True)


def cluster_processes(folder: Path) -> list[int]:
    """Processes of the cluster in `folder`: those with its mark in their environment or one
    of its batch scripts on their command line, and their descendants."""
    mark = f"{MARK}={folder}".encode()
    spool = f"{folder}/spool/".encode()
    me = os.getpid()
    parents: dict[int, int] = {}
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                parents[pid] = int(stat.read().rsplit(b")", 1)[1].split()[1])
            with open(f"/proc/{pid}/environ", "rb") as environ:
                env = environ.read().split(b"\0")
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                command = cmdline.read()
        except (OSError, IndexError, ValueError):
            continue
        if mark in env or spool in command:
            found.add(pid)
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in found and pid not in found and pid != me:
                found.add(pid)
                grew = True
    return sorted(found)


def reap_stale(parent: Path) -> None:
    """Tear down the clusters under `parent` whose owning process is gone (a killed test
    run); those started by hand (`cluster.py up`) are left to `cluster.py down`."""
    for folder in parent.glob(f"{PREFIX}*"):
        try:
            owner = json.loads((folder / "owner.json").read_text())
        except (OSError, ValueError):
            continue
        if owner.get("manual"):
            continue
        pid = owner.get("pid", 0)
        if _alive(pid) and _start_time(pid) == owner.get("start"):
            continue
        _log(f"cleaning up {folder} (its owner {pid} is gone)")
        teardown(folder)


def _array_tasks(key: str) -> list[str]:
    """The task ids that a record stands for: ``12_[0-2,5%2]`` is 12_0, 12_1, 12_2, 12_5."""
    match = re.fullmatch(r"(\d+)_\[([\d,-]+)(?:%\d+)?\]", key)
    if match is None:
        return [key]
    tasks = []
    for part in match[2].split(","):
        first, _, last = part.partition("-")
        tasks += [f"{match[1]}_{i}" for i in range(int(first), int(last or first) + 1)]
    return tasks


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def _start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _quiet(argv: list[str]) -> bool:
    done = subprocess.run(argv, capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
    return done.returncode == 0


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


REQUIREMENTS = [
    ("/usr/sbin/slurmctld", "slurm-wlm"),
    ("/usr/sbin/slurmd", "slurm-wlm"),
    ("/usr/bin/sbatch", "slurm-wlm"),
    ("/usr/sbin/munged", "munge"),
    ("/usr/bin/munge", "munge"),
]
ACCOUNTING_REQUIREMENTS = [
    ("/usr/sbin/slurmdbd", "slurmdbd"),
    ("/usr/lib/*/slurm-wlm/accounting_storage_mysql.so", "slurm-wlm-mysql-plugin"),
    ("/usr/sbin/mariadbd", "mariadb-server"),
    ("/usr/share/mysql/mysql_system_tables.sql", "mariadb-server"),
    ("/usr/bin/mariadb", "mariadb-client"),
]


def missing_packages(accounting: bool = True) -> list[str]:
    """Debian packages that a cluster needs and that are not installed."""
    needed = REQUIREMENTS + (ACCOUNTING_REQUIREMENTS if accounting else [])
    missing = []
    for pattern, package in needed:
        present = any(Path("/").glob(pattern.lstrip("/"))) if "*" in pattern else None
        if present is None:
            present = Path(pattern).exists()
        if not present and package not in missing:
            missing.append(package)
    if "slurmdbd" in missing and "slurm-wlm-mysql-plugin" in missing:
        missing.remove("slurm-wlm-mysql-plugin")  # a dependency of slurmdbd
    for user in ("munge",) + (("mysql",) if accounting else ()):
        try:
            pwd.getpwnam(user)
            grp.getgrnam(user)
        except KeyError:
            package = "munge" if user == "munge" else "mariadb-server"
            if package not in missing:
                missing.append(package)
    return missing


def install_packages(packages: list[str]) -> None:
    """apt-get install them (no recommends), with the package lists refreshed and a second
    try when the first fails; no service of theirs starts (policy-rc.d)."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = ["apt-get", "-q", "-y", "-o", "DPkg::Lock::Timeout=300"]
    install = [*apt, "install", "--no-install-recommends", *packages]
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:
        policy.write_text("#!/bin/sh\n# tests/slurm/cluster.py: no service starts\nexit 101\n")
        policy.chmod(0o755)
    try:
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            subprocess.run([*apt, "update"], env=env, capture_output=True, timeout=600)
            done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as error:
        raise SlurmError(f"apt-get install {' '.join(packages)}: timed out") from error
    finally:
        if ours:
            policy.unlink(missing_ok=True)
    if done.returncode != 0:
        raise SlurmError(
            f"apt-get install {' '.join(packages)} failed (exit {done.returncode}): "
            f"{(done.stderr or done.stdout).strip()[-1500:]}"
        )


def slurmd_hardware() -> dict[str, int]:
    """What `slurmd -C` reports of this machine: CPUs, Boards, ..., RealMemory."""
    done = subprocess.run(
        ["/usr/sbin/slurmd", "-C"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": SYSTEM_PATH},
    )
    found = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)\b", done.stdout.splitlines()[0])}
    if done.returncode != 0 or "CPUs" not in found or "RealMemory" not in found:
        raise SlurmError(f"slurmd -C: {done.stdout.strip()} {done.stderr.strip()}")
    return found


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on 127.0.0.1, below the ephemeral range (so that no
    outgoing connection takes one between now and the daemon's start)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    ports: list[int] = []
    candidates = random.sample(range(10000, max(low, 10100)), k=min(2000, max(low, 10100) - 10000))
    for port in candidates:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise SlurmError("no free TCP ports on 127.0.0.1")


# -- by hand ------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A one-node Slurm cluster, by hand (root).")
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--no-accounting", action="store_true", help="no slurmdbd/MariaDB")
    args = parser.parse_args(argv)
    if args.action == "up":
        if STATE_FILE.exists():
            folder = Path(STATE_FILE.read_text().strip())
            if folder.is_dir():
                print(f"export SLURM_CONF={folder}/etc/slurm.conf")
                _log(f"already up in {folder} (down first for a fresh one)")
                return 0
        cluster = SlurmCluster(accounting=not args.no_accounting, manual=True)
        try:
            cluster.start()
        except SlurmError as error:
            _log(str(error))
            return 1
        STATE_FILE.write_text(f"{cluster.folder}\n")
        _log(f"up in {cluster.timings['start']:.1f} s; logs in {cluster.folder}/log")
        print(f"export SLURM_CONF={cluster.conf}")
        return 0
    if not STATE_FILE.exists():
        _log(f"no {STATE_FILE}: nothing to tear down")
        return 0
    folder = Path(STATE_FILE.read_text().strip())
    if folder.is_dir():
        SlurmCluster.attach(folder).stop()
    STATE_FILE.unlink()
    _log(f"down: {folder} removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
