"""Smoke runs of the two benchmarks that start their own servers (benchmarks/servers.py: a
throwaway PostgreSQL cluster and an MLflow server on free 127.0.0.1 ports): scale.py and
chaos.py, each as a subprocess with the smallest load that still goes through every part of it.
They must exit 0 and print their lines; the shape of the lines is checked, never the figures
(README and docs/performance.md have those, from a quiet machine)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NUM = r"[-+]?\d+(?:\.\d+)?"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("pg_ctlcluster") is None,
        reason="a throwaway PostgreSQL cluster needs root and Debian's postgresql-common",
    ),
]


def _run(script: str, args: list[str], tmp_path: Path, timeout: float) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TUNELAB_", "MLFLOW_"))}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", PYTHONUNBUFFERED="1")
    if "TUNELAB_SHARED_DATA" in os.environ:
        env["TUNELAB_SHARED_DATA"] = os.environ["TUNELAB_SHARED_DATA"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{script} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_scale_prints_its_table_with_every_check_ok(tmp_path):
    args = ["--workers", "2", "--trial-s", "1", "--rungs", "2", "--rounds", "1"]
    out = _run("scale.py", [*args, "--per-process", "2", "--server-workers", "1"], tmp_path, 300)
    assert re.search(r"^N = 2, trials of 1 s \.\.\.$", out, re.M), out
    assert re.search(rf"^  2 finished in {NUM} s: .* checks: ok$", out, re.M), out
    header = r"^ +N +T s +done +per min +ideal +ratio +stmts/tr +rows/tr +conns .* checks$"
    assert re.search(header, out, re.M), out
    row = rf"^ +2 +1 +2 +{NUM} +120\.0 +{NUM}% +{NUM} +{NUM} +\d+ +.* +0 ok$"
    assert re.search(row, out, re.M), out


def test_chaos_runs_a_study_through_its_faults_and_every_check_holds(tmp_path):
    args = ["--trials", "3", "--workers", "2", "--epochs", "1", "--runs", "1", "--skip-baseline"]
    args += ["--kill-every", "4", "--outage-every", "6", "--outage-s", "1", "2"]
    out = _run("chaos.py", [*args, "--timeout", "400"], tmp_path, 480)
    assert re.search(rf"^== chaos study 1[^=]*: {NUM} s ==$", out, re.M), out
    checks = re.findall(r"^(\S.{51}) +(\d+) +(\d+)(.*)$", out, re.M)
    assert checks and all(value == wanted and not rest for _, value, wanted, rest in checks), out
    assert re.search(r"^faults: \d+ worker kills ", out, re.M), out
    assert out.rstrip().endswith("every check held in 1 of 1 runs"), out
