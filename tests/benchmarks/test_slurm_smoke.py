"""Smoke run of benchmarks/slurm.py: the real script as a subprocess, on the project's one-node
Slurm cluster (which it starts and stops itself) with a tiny study on each side (the fault
tests' tiny task, one worker, two trials of two epochs). It must exit 0 and print its lines;
their shape is checked, never their figures (docs/slurm.md has those, from a quiet machine)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NUM = r"[-+]?\d+(?:\.\d+)?"
PG_SERVER = os.environ.get("TUNELAB_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432")
"""The PostgreSQL server of the tests (tests/conftest.py); the benchmark makes its own database."""


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="a Slurm cluster needs root (slurmd, munged)")
def test_slurm_benchmark_prints_both_sides_and_the_ratio(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TUNELAB_STORAGE", "MLFLOW_TRACKING", "SLURM_"))
    }
    env.update(
        PYTHONPATH=str(ROOT / "tests" / "faults"),
        MLFLOW_DISABLE_TELEMETRY="true",
        PYTHONUNBUFFERED="1",
    )
    args = ["--workers", "1", "--trials", "2", "--epochs", "2", "--task", "tiny_task:TinyTask"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "slurm.py"), *args, "--pg", PG_SERVER],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    if "no Slurm cluster on this machine" in done.stderr:
        pytest.skip(done.stderr.strip().splitlines()[-1])
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for side in (r"local run --workers 1", r"slurm array, 1 task\(s\)"):
        assert re.search(
            rf"^{side}\s*: first step\s+{NUM} s after the command;\s+{NUM} trials/min in "
            rf"steady state,\s+{NUM} end to end; a trial {NUM} s$",
            out,
            re.M,
        ), out
    assert re.search(r"^  launch: tunelab launch slurm tiny_task:TinyTask .*--workers 1", out, re.M)
    assert re.search(
        rf"^steady-state throughput, array / local: {NUM}x \(goal >= 0\.90x: (met|not met)\); "
        rf"first step: {NUM} s for the array$",
        out,
        re.M,
    ), out
