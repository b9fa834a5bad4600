"""Real outages for fault tests: a TCP relay in front of a database that a test cuts, freezes
and restores, and an exclusive lock on a SQLite file held by another process.

The relay listens on 127.0.0.1 and forwards every connection to the database; the workers
under test connect through it, the test's own checks connect directly. `cut()` closes every
connection and refuses new ones (a server restart, a cable pulled: the client sees its
connection closed); `freeze()` stops moving bytes but keeps every connection open (a host that
vanished: the client waits on a socket that never answers); `restore()` forwards again. The
database server itself is never touched.

Importable by path from tests and benchmarks (no package: `--import-mode=importlib`).
"""

from __future__ import annotations

import contextlib
import select
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

CHUNK = 65536


class TcpRelay:
    """A relay from 127.0.0.1:`port` to `target` (see the module)."""

    def __init__(self, target: tuple[str, int] = ("127.0.0.1", 5432)) -> None:
        self.target = target
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(128)
        self.port = self._server.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._state = "up"  # up | cut | frozen
        self._closed = False
        self.cuts = 0
        """How many times the relay was cut (each cut closes every open connection)."""
        threading.Thread(target=self._accept, name="relay-accept", daemon=True).start()

    def url(self, database: str, user: str = "postgres") -> str:
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/{database}"

    # -- the faults ----------------------------------------------------------------------

    def cut(self) -> None:
        """Close every connection; refuse new ones until restored."""
        with self._lock:
            self._state = "cut"
            self.cuts += 1
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            _close(*pair)

    def freeze(self) -> None:
        """Move no byte, close nothing: the peer looks alive and never answers."""
        with self._lock:
            self._state = "frozen"

    def restore(self) -> None:
        with self._lock:
            self._state = "up"

    def outage(self, seconds: float) -> None:
        """Cut, wait, restore."""
        self.cut()
        time.sleep(seconds)
        self.restore()

    def close(self) -> None:
        self._closed = True
        self.cut()
        with contextlib.suppress(OSError):
            self._server.close()

    def __enter__(self) -> TcpRelay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- forwarding ----------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                state = self._state
            if state == "cut":
                _close(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(
                target=self._pump, args=(client, upstream), name="relay-pump", daemon=True
            ).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        try:
            while True:
                with self._lock:
                    state, alive = self._state, (client, upstream) in self._pairs
                if not alive or self._closed:
                    return
                if state == "frozen":
                    time.sleep(0.05)
                    continue
                readable, _, _ = select.select(list(peers), [], [], 0.1)
                for source in readable:
                    data = source.recv(CHUNK)
                    if not data:
                        return
                    peers[source].sendall(data)
        except OSError:
            return
        finally:
            with self._lock:
                if (client, upstream) in self._pairs:
                    self._pairs.remove((client, upstream))
            _close(client, upstream)


def _close(*sockets: socket.socket) -> None:
    for s in sockets:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            s.close()


LOCK_HOLDER = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], timeout=60, isolation_level=None)
connection.execute("PRAGMA locking_mode=EXCLUSIVE")
connection.execute("BEGIN EXCLUSIVE")
connection.execute("UPDATE studies SET study_name = study_name WHERE 0")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("ROLLBACK")
connection.close()
"""


def hold_sqlite_lock(path: Path, seconds: float) -> subprocess.Popen:
    """Another process takes an exclusive lock on the SQLite database at `path` and holds it
    for `seconds`; returns once the lock is held (the process ends by itself)."""
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None
    line = holder.stdout.readline()
    if line.strip() != "locked":
        holder.kill()
        raise RuntimeError(f"the lock holder did not lock {path}")
    return holder
