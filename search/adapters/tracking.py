"""MLflow tracking of a study: experiment = study, one parent run, one child run per trial.

Our own small layer over `MlflowClient` (no global active-run state): every per-epoch metric
with its step in one `log_batch` call, the true final status (FINISHED / KILLED / FAILED for
COMPLETE / PRUNED / FAIL), and the trial's artifacts. No run is left RUNNING when the process
ends normally or by a signal: `StudyTracker.close` ends whatever is still open.
"""

from __future__ import annotations

import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna

from tunelab.objectives import keys
from tunelab.objectives.recorders import RunStatus
from tunelab.search.adapters.storage import check_database, parse_url, sqlite_path
from tunelab.search.spec import SpecError

STATE_BY_STATUS = {"FINISHED": "COMPLETE", "KILLED": "PRUNED", "FAILED": "FAIL"}
"""The Optuna state (tag optuna.state) of each final run status."""
HTTP_TIMEOUT_S = 10


def check_tracking_uri(uri: str) -> None:
    """Fail with one line unless the tracking store can be used; writes nothing there."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=HTTP_TIMEOUT_S):
                return
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SpecError(f"cannot reach MLflow tracking server '{uri}': {reason}") from None
    if uri.startswith("file:") or "://" not in uri:
        raise SpecError(
            f"unsupported tracking URI '{uri}': use a database URL such as "
            "sqlite:///mlruns/mlflow.db or an http(s):// tracking server"
        )
    check_database(uri, what="tracking")


def open_tracking(uri: str):
    """An MlflowClient on an existing tracking store; SpecError instead of creating one."""
    from mlflow import MlflowClient

    if not uri.startswith(("http://", "https://")):
        path = sqlite_path(parse_url(uri, "tracking"))
        if path is not None and not path.is_file():
            raise SpecError(f"no MLflow tracking database at {path}: pass --tracking-uri")
    check_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


def local_artifact_root(uri: str) -> str | None:
    """For a local SQLite store, artifacts go beside it in <folder>/artifacts."""
    if uri.startswith(("http://", "https://")):
        return None
    path = sqlite_path(parse_url(uri, "tracking"))
    return None if path is None else (path.parent / "artifacts").resolve().as_uri()


class StudyTracker:
    """The MLflow side of one study in one process."""

    def __init__(self, tracking_uri: str, study_name: str) -> None:
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.study_name = study_name
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.experiment_id = self._experiment()
        self.parent_run_id: str | None = None
        self._open_runs: dict[str, str] = {}  # run id -> trial label, still RUNNING

    def _experiment(self) -> str:
        experiment = self.client.get_experiment_by_name(self.study_name)
        if experiment is not None:
            return experiment.experiment_id
        root = local_artifact_root(self.tracking_uri)
        location = None if root is None else f"{root}/{self.study_name}"
        try:
            return self.client.create_experiment(self.study_name, artifact_location=location)
        except Exception:  # another worker created it first
            experiment = self.client.get_experiment_by_name(self.study_name)
            if experiment is None:
                raise
            return experiment.experiment_id

    def attach_parent(self, study: optuna.Study, spec_tags: Mapping[str, str]) -> str:
        """Find the study's parent run (by id on the study, then by tag) or create it.

        Workers starting together may each create one: every worker then adopts the oldest
        and deletes its own if it lost, so all children hang under one parent.
        """
        run_id = study.user_attrs.get(keys.PARENT_RUN_ID) or self._oldest_parent()
        if run_id is None:
            mine = self.client.create_run(
                self.experiment_id,
                run_name=self.study_name,
                tags={keys.ROLE_TAG: "study", keys.STUDY_NAME_TAG: self.study_name, **spec_tags},
            ).info.run_id
            run_id = self._oldest_parent()
            if run_id != mine:
                self.client.delete_run(mine)
        else:
            self.client.update_run(run_id, status="RUNNING")
        study.set_user_attr(keys.PARENT_RUN_ID, run_id)
        self.parent_run_id = run_id
        return run_id

    def _oldest_parent(self) -> str | None:
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{keys.ROLE_TAG}` = 'study'",
            max_results=1,
            order_by=["attributes.start_time ASC", "attributes.run_id ASC"],
        )
        return found[0].info.run_id if found else None

    def recorder(self, trial: optuna.trial.BaseTrial, tags: Mapping[str, str]) -> TrialRun:
        """A nested child run for one trial; its id goes into the trial's user attributes."""
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"trial-{trial.number}",
            tags={
                "mlflow.parentRunId": self.parent_run_id,
                keys.STUDY_NAME_TAG: self.study_name,
                keys.TRIAL_NUMBER_TAG: str(trial.number),
                keys.STATE_TAG: "RUNNING",
                **tags,
            },
        )
        run_id = run.info.run_id
        trial.set_user_attr(keys.MLFLOW_RUN_ID, run_id)
        self._open_runs[run_id] = f"trial-{trial.number}"
        return TrialRun(self, run_id)

    def fail_dead_run(self, run_id: str) -> None:
        """Close the run of a trial whose process died, marking it as recovered."""
        from mlflow.entities import RunTag

        try:
            run = self.client.get_run(run_id)
        except Exception:  # deleted, or never created before the crash
            return
        if run.info.status == "RUNNING":
            self.client.log_batch(
                run_id,
                tags=[
                    RunTag(keys.RECOVERED_TAG, "true"),
                    RunTag(keys.STATE_TAG, "FAIL"),
                    RunTag(keys.FAIL_REASON, "worker died (stale heartbeat)"),
                ],
            )
            self.client.set_terminated(run_id, "FAILED")

    def close(self, parent_status: str, reason: str | None = None) -> None:
        """End every run this process left open, then the parent run."""
        for run_id in list(self._open_runs):
            TrialRun(self, run_id).end("FAILED", reason or "process ended")
        if self.parent_run_id:
            if reason:
                self.client.set_tag(self.parent_run_id, keys.LAST_EXIT_TAG, reason)
            self.client.set_terminated(self.parent_run_id, parent_status)


class TrialRun:
    """The MLflow child run of one trial: the `TrialRecorder` the shared loop writes to."""

    def __init__(self, tracker: StudyTracker, run_id: str) -> None:
        self.tracker = tracker
        self.client = tracker.client
        self.run_id = run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.client.log_batch(self.run_id, metrics=_metrics(metrics, step))

    def log_artifacts(self, files: Mapping[str, bytes]) -> None:
        with tempfile.TemporaryDirectory(prefix="tunelab-") as tmp:
            for name, content in files.items():
                target = Path(tmp, name)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
            self.client.log_artifacts(self.run_id, tmp)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])

    def end(self, status: RunStatus, reason: str | None = None) -> None:
        tags = {keys.STATE_TAG: STATE_BY_STATUS[status]}
        if reason:
            tags[keys.END_REASON_TAG] = reason
        self.set_tags(tags)
        self.client.set_terminated(self.run_id, status)
        self.tracker._open_runs.pop(self.run_id, None)


def _metrics(metrics: Mapping[str, float], step: int | None):
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]


def telemetry_env() -> dict[str, str]:
    """Environment that turns MLflow's usage telemetry off, unless the user chose otherwise."""
    if "MLFLOW_DISABLE_TELEMETRY" in os.environ or "DO_NOT_TRACK" in os.environ:
        return {}
    return {"MLFLOW_DISABLE_TELEMETRY": "true"}
