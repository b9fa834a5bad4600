"""Who runs a trial: a process, named so that any worker can tell whether it still exists.

An owner is `machine:pid:start:worker`. The machine is the host name, the machine id, the boot
id and the pid namespace: two hosts of one name differ by their machine id and boot id (a boot id is
random per boot, so even cloned machines differ), two containers of one host by their pid
namespace; a pid is only comparable inside one machine. The start time (clock ticks since boot)
tells a process from a later one that reuses its pid. The worker names one worker of the
process (several may run as threads of one process). A worker tells at once that an owner on
its own machine is gone; an owner elsewhere is left to its heartbeat.
"""

from __future__ import annotations

import functools
import os
import socket
import uuid
from collections.abc import Collection
from pathlib import Path

MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")
BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"


def _first_line(*paths: str) -> str:
    for path in paths:
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text:
            return text.replace("-", "")[:16]
    return "-"


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot ("0" where /proc has none)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "0"
    return stat.rsplit(")", 1)[1].split()[19]


def machine() -> str:
    """This machine: host name, machine id, boot id and pid namespace (see the module)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid").removeprefix("pid:").strip("[]")
    except OSError:
        namespace = "-"
    host = socket.gethostname().replace(":", "_").replace("/", "_")
    return f"{host}/{_first_line(*MACHINE_ID_FILES)}/{_first_line(BOOT_ID_FILE)}/{namespace}"


@functools.cache
def _this_machine() -> str:
    return machine()


def process_owner(pid: int | None = None, worker: str = "0") -> str:
    """`machine:pid:start:worker` of a process of this machine (this process by default)."""
    pid = os.getpid() if pid is None else pid
    return f"{_this_machine()}:{pid}:{_start_time(pid)}:{worker}"


def new_owner() -> str:
    """The owner string of a new worker of this process."""
    return process_owner(worker=uuid.uuid4().hex[:12])


def owner_gone(owner: str, running_here: Collection[int], number: int, me: str = "") -> bool:
    """Whether the owner of trial `number` is certainly gone: a process of this machine that no
    longer exists (or whose pid now belongs to another process), or this very worker (`me`,
    its owner string) when it does not run that trial (its end could not be stored). Another
    worker of this process is alive; owners elsewhere: False (left to their heartbeat)."""
    place, pid_text, start, worker = _parts(owner)
    if place != _this_machine() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return owner == me and number not in running_here
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return _start_time(pid) != start


def owner_pid(owner: str) -> int | None:
    """The process id in an owner string (None: unreadable)."""
    pid = _parts(owner)[1]
    return int(pid) if pid.isdigit() else None


def _parts(owner: str) -> tuple[str, str, str, str]:
    """(machine, pid, start, worker) of an owner; an unreadable one belongs to no machine."""
    fields = owner.split(":")
    if len(fields) < 4:  # tunelab 0.2: machine:pid:start, one worker per process
        fields.append("0")
    if len(fields) < 4:
        return "", "", "", ""
    *place, pid, start, worker = fields
    return ":".join(place), pid, start, worker
