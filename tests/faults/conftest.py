"""Fixtures of the fault tests: an empty working folder, and a check that a command refused its
input the way every bad input is refused (one line, exit 2, nothing written)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    """An empty current folder, with the storage and tracking left to their defaults there."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    monkeypatch.delenv("TUNELAB_STORAGE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return folder


def written(folder: Path) -> list[str]:
    """Every file under `folder`; folders, and the WAL files SQLite keeps beside a database
    that exists already, are not writes that matter here."""
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and not p.name.endswith(("-wal", "-shm"))
    )


@pytest.fixture
def refused(workdir: Path, capsys) -> Callable[..., str]:
    """refused(argv, message): run `tunelab argv` in-process in `workdir`; assert exit 2, one
    line naming `message` on stderr, no traceback, and no new file in `workdir`. Returns the
    line."""
    from tunelab.search.cli import main

    def run(argv: list[str], message: str) -> str:
        before = written(workdir)
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, err
        assert err.startswith("tunelab: error: ") and err.count("\n") == 1, err
        assert "Traceback" not in err
        assert message in err, err
        assert written(workdir) == before, "a refused command wrote files"
        return err

    return run


@pytest.fixture
def tunelab(workdir: Path, monkeypatch, capsys):
    """tunelab(*argv) -> (exit code, stdout, stderr), in process in `workdir`, with the tasks
    of this folder importable; the signal handlers `main` installs are put back."""
    import signal

    from tunelab.search.cli import main

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent))
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
