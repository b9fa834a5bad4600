#!/usr/bin/env python3
"""Wait for what a tunelab container needs, as a Kubernetes init container.

    python wait_for.py tracking   # the MLflow server at $MLFLOW_TRACKING_URI answers /health
    python wait_for.py study      # `tunelab create` has finished study $TUNELAB_STUDY
                                  # in $TUNELAB_STORAGE (its MLflow parent run is recorded)

Kubernetes starts every pod of the deployment at once, and has no "after that Job" ordering.
A worker started before its study exists would exit 2 (bad input: no such study), which the
worker Job's podFailurePolicy turns into a failed Job; so workers (and the dashboard) wait
here, and the `create` Job waits for the tracking server it records the study's parent run in.

Waits up to $TUNELAB_WAIT seconds (default 1800), then exits 1 (the pod fails and is
retried); exit 2 when a setting is missing. The URLs hold the database password: they are
read from the environment and never printed.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.request

POLL_S = 3.0
PARENT_RUN_ID = "tunelab.mlflow_parent_run_id"
"""The study attribute `tunelab create` sets last (tunelab.objectives.keys.PARENT_RUN_ID; not
imported from there, which would load torch into this small container)."""


def tracking_ready(environ: dict[str, str]) -> bool:
    uri = environ["MLFLOW_TRACKING_URI"]
    if not uri.startswith(("http://", "https://")):
        return True  # a database store: nothing to wait for
    with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as response:
        return response.status == 200


class StudyProbe:
    """Whether the study exists and `tunelab create` got to its last step."""

    def __init__(self, environ: dict[str, str]) -> None:
        self.url, self.name = environ["TUNELAB_STORAGE"], environ["TUNELAB_STUDY"]
        self.storage = None

    def __call__(self) -> bool:
        import optuna

        if self.storage is None:
            # Read-only: creating Optuna's tables here could race with `tunelab create`.
            self.storage = optuna.storages.RDBStorage(self.url, skip_table_creation=True)
        try:
            study = optuna.load_study(study_name=self.name, storage=self.storage)
        except KeyError:  # no such study yet
            return False
        return PARENT_RUN_ID in study.user_attrs


def reason(exc: BaseException) -> str:
    """One line about a failure: its first cause (Optuna wraps the driver's error), whose
    message names host and database, never a password."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def main(argv: list[str], environ: dict[str, str]) -> int:
    needed = {"tracking": ("MLFLOW_TRACKING_URI",), "study": ("TUNELAB_STORAGE", "TUNELAB_STUDY")}
    if len(argv) != 1 or argv[0] not in needed:
        print(f"usage: wait_for.py {{{','.join(needed)}}}", file=sys.stderr)
        return 2
    what = argv[0]
    label = {
        "tracking": "MLflow tracking server",
        "study": f"study '{environ.get('TUNELAB_STUDY')}'",
    }[what]
    missing = [name for name in needed[what] if not environ.get(name)]
    if missing:
        print(f"wait_for: error: set {' and '.join(missing)}", file=sys.stderr)
        return 2
    try:
        timeout = float(environ.get("TUNELAB_WAIT", "1800"))
    except ValueError:
        print("wait_for: error: TUNELAB_WAIT must be a number of seconds", file=sys.stderr)
        return 2
    ready = (lambda: tracking_ready(environ)) if what == "tracking" else StudyProbe(environ)
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            if ready():
                print(f"{label}: ready", flush=True)
                return 0
            note = "not created yet"
        except Exception as exc:  # not up yet, refused, no database yet...: retry
            note = reason(exc)
        if note != last:  # one line per change, not one per poll
            print(f"waiting for the {label}: {note}", file=sys.stderr, flush=True)
            last = note
        if time.monotonic() >= deadline:
            print(f"wait_for: gave up on the {label} after {timeout:.0f} s", file=sys.stderr)
            return 1
        time.sleep(POLL_S)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], dict(os.environ)))
