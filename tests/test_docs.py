"""The documentation site builds: `mkdocs build --strict` (every page in the nav exists, every
link resolves, the API reference is read from the docstrings, the CLI reference is generated
from the command line), into a temporary folder, as CI builds it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MKDOCS = Path(sys.executable).with_name("mkdocs")


@pytest.mark.slow  # mkdocs as a process, as CI runs it
def test_the_site_builds_strictly_with_both_references(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    cli = (site / "reference" / "cli" / "index.html").read_text()
    for command in ("tunelab run", "tunelab trials", "tunelab report", "Exit codes"):
        assert command in cli, command
    assert "EXIT_DIVERGED" in cli
    api = (site / "reference" / "api" / "index.html").read_text()
    # the docstrings, read by mkdocstrings: a method of Task, DataBundle's documented properties
    for name in ("train_step", "image_size", "channels", "Distribution family"):
        assert name in api, name
    assert (site / "performance" / "index.html").is_file()
    # nothing in the site loads from the network: no web fonts, no CDN scripts
    for page in site.rglob("*.html"):
        text = page.read_text()
        assert "fonts.googleapis.com" not in text and "cdn.jsdelivr" not in text, page
