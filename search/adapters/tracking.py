"""MLflow tracking of a study: experiment = study, one parent run, one child run per trial.

Our own small layer over `MlflowClient` (no global active-run state): every per-epoch metric
with its step in one `log_batch` call, the true final status (FINISHED / KILLED / FAILED for
COMPLETE / PRUNED / FAIL), and the trial's artifacts. No run is left RUNNING when the process
ends normally or by a signal: `StudyTracker.close` ends whatever is still open.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import optuna
from optuna.trial import FrozenTrial

from tunelab.objectives import keys
from tunelab.objectives.recorders import RunStatus
from tunelab.search.adapters.signals import held
from tunelab.search.adapters.storage import (
    check_database,
    create_private,
    parse_url,
    sqlite_path,
)
from tunelab.search.adapters.transient import is_transient, retrying
from tunelab.search.spec import SpecError, StudySpec, without_password

T = TypeVar("T")

STATE_BY_STATUS = {"FINISHED": "COMPLETE", "KILLED": "PRUNED", "FAILED": "FAIL"}
"""The Optuna state (tag optuna.state) of each final run status."""
HTTP_TIMEOUT_S = 10
LOCAL_UI_URL = "http://127.0.0.1:5000"
"""Where `tunelab ui` serves a local tracking store by default."""
VIEW_QUERY = "workflowType=machine_learning"
"""MLflow 3's UI opens an experiment in its GenAI view (traces) unless the URL asks for the
model-training view, where the runs, curves and images of a study are."""
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
"""The experiment tag MLflow 3 sets on experiments of model training."""
VIEW_KEY = "tunelab"
"""The study's saved view in the MLflow UI: MLflow's own shared view state (its "Share"
button), kept in the experiment tag `mlflow.sharedViewState.<key>`."""
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
SYSTEM_METRICS_INTERVAL_S = 10.0
"""Seconds between two samples of the system metrics of a trial (MLflow's default)."""


def is_server(uri: str) -> bool:
    """Whether the tracking URI names an MLflow server (else a database MLflow writes itself)."""
    return uri.startswith(("http://", "https://"))


def ui_base(tracking_uri: str, ui_url: str | None = None) -> str:
    """The MLflow UI of a store: `ui_url`, else the tracking server itself, else what
    `tunelab ui` serves."""
    if ui_url:
        return ui_url.rstrip("/")
    if is_server(tracking_uri):
        return tracking_uri.rstrip("/")
    return LOCAL_UI_URL


def experiment_url(base: str, experiment_id: str) -> str:
    """An experiment in the MLflow UI, opened in its model-training view with the study's
    saved view: every trial's run listed (sorted by the objective, which a column shows)."""
    return f"{base}/#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW_KEY}&{VIEW_QUERY}"


def study_view(metric: str, direction: str) -> str:
    """The study's saved view of its experiment, as MLflow's UI reads a shared view. Sorting by
    a metric lists the trial runs flat (MLflow nests child runs only in its default order),
    best first, the parent run with the study's best so far among them."""
    column = f"metrics.`best_{metric}`"
    return json.dumps(
        {
            "orderByKey": column,
            "orderByAsc": direction == "minimize",
            # the objective only (its defaults, source, models and data set, are empty
            # here), first: the table draws only the columns that fit beside the run names
            "selectedColumns": [column],
            "columnOrder": [column],
        }
    )


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    """A run's page in the MLflow UI (model-training view)."""
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}?{VIEW_QUERY}"


def dashboard_trial_url(base: str, study: optuna.Study, number: int) -> str:
    """A trial in optuna-dashboard's trial list."""
    return f"{base.rstrip('/')}/dashboard/studies/{study._study_id}/trials?numbers={number}"


def check_tracking_uri(uri: str) -> None:
    """Fail with one line unless the tracking store can be used; writes nothing there."""
    if is_server(uri):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=HTTP_TIMEOUT_S):
                return
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            shown = without_password(uri)
            raise SpecError(f"cannot reach MLflow tracking server '{shown}': {reason}") from None
    if uri.startswith("file:") or "://" not in uri:
        raise SpecError(
            f"unsupported tracking URI '{without_password(uri)}': use a database URL such as "
            "sqlite:///mlruns/mlflow.db or an http(s):// tracking server"
        )
    check_database(uri, what="tracking")


def open_tracking(uri: str):
    """An MlflowClient on an existing tracking store; SpecError instead of creating one."""
    from mlflow import MlflowClient

    if not is_server(uri):
        path = sqlite_path(parse_url(uri, "tracking"))
        if path is not None and not path.is_file():
            raise SpecError(f"no MLflow tracking database at {path}: pass --tracking-uri")
    check_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri)


def local_artifact_root(uri: str) -> str | None:
    """For a local SQLite store, artifacts go beside it in <folder>/artifacts."""
    if is_server(uri):
        return None
    path = sqlite_path(parse_url(uri, "tracking"))
    return None if path is None else (path.parent / "artifacts").resolve().as_uri()


class ResilientClient:
    """An MlflowClient whose calls outlive an outage of the tracking store, retried with backoff
    (a server's own HTTP retries come first), and, on a database store, end before an
    interruption is raised: Ctrl-C inside MLflow's SQLite commit leaves the write lock with a
    connection the process cannot use again, and the trial's clean-up then fails "database is
    locked". Calls to a server are not held: a retrying HTTP call would hold Ctrl-C for minutes.
    Retried calls must be harmless done twice: tags, params of the same value, metrics, ends;
    runs are created through `StudyTracker.recorder`, which finds a run that was created."""

    def __init__(self, client: Any, hold: bool) -> None:
        self._client, self._hold = client, hold

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._client, name)
        if not callable(found):
            return found
        call = held(found) if self._hold else found

        def resilient(*args: Any, **kwargs: Any) -> Any:
            return retrying(lambda: call(*args, **kwargs))

        return resilient


class StudyTracker:
    """The MLflow side of one study in one process."""

    def __init__(
        self,
        tracking_uri: str,
        study_name: str,
        ui_url: str | None = None,
        dashboard_url: str | None = None,
        system_metrics: bool = False,
    ) -> None:
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.study_name = study_name
        self.ui_url = without_password(ui_base(tracking_uri, ui_url))
        """Base URL of the MLflow UI in links (links are printed and stored: no password)."""
        self.dashboard_url = dashboard_url and without_password(dashboard_url)
        """Base URL of optuna-dashboard (None: unknown, no link)."""
        self.system_metrics = system_metrics
        """Whether each trial's run logs MLflow's system metrics."""
        if not is_server(tracking_uri):
            path = sqlite_path(parse_url(tracking_uri, "tracking"))
            if path is not None:  # the runs' database is its user's alone, as the study's
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                create_private(path)
        self.client = ResilientClient(
            MlflowClient(tracking_uri=tracking_uri), hold=not is_server(tracking_uri)
        )
        self.experiment_id = self._experiment()
        self.parent_run_id: str | None = None
        self._open_runs: dict[str, str] = {}  # run id -> trial label, still RUNNING
        self._monitors: dict[str, Any] = {}  # run id -> its system-metrics monitor

    @classmethod
    def for_spec(cls, spec: StudySpec) -> StudyTracker:
        """The tracker of a study's spec: its store, its links, its system metrics."""
        return cls(
            spec.tracking_uri,
            spec.name,
            ui_url=spec.mlflow_ui_url,
            dashboard_url=spec.dashboard_url,
            system_metrics=spec.system_metrics,
        )

    def _experiment(self) -> str:
        experiment = self.client.get_experiment_by_name(self.study_name)
        if experiment is not None:
            return experiment.experiment_id
        root = local_artifact_root(self.tracking_uri)
        location = None if root is None else f"{root}/{self.study_name}"
        try:
            return self.client.create_experiment(
                self.study_name, artifact_location=location, tags=EXPERIMENT_KIND
            )
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
        metric = spec_tags.get(keys.METRIC)
        if metric and len(study.directions) == 1:
            view = study_view(metric, study.direction.name.lower())
            self.client.set_experiment_tag(self.experiment_id, VIEW_TAG, view)
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
        run_tags = {
            "mlflow.parentRunId": self.parent_run_id,
            keys.STUDY_NAME_TAG: self.study_name,
            keys.TRIAL_NUMBER_TAG: str(trial.number),
            keys.STATE_TAG: "RUNNING",
            **tags,
        }
        run_id = retrying(lambda: self._create_trial_run(trial.number, run_tags))
        trial.set_user_attr(keys.MLFLOW_RUN_ID, run_id)
        self._open_runs[run_id] = f"trial-{trial.number}"
        if isinstance(trial, optuna.Trial):  # a real study's trial: link the two UIs
            self._link(trial, run_id)
        if self.system_metrics:
            self._monitors[run_id] = self._system_metrics(run_id)
        return TrialRun(self, run_id)

    def _create_trial_run(self, number: int, tags: Mapping[str, str]) -> str:
        """One attempt at creating a trial's run. A create whose answer was lost in an outage
        may have committed: the retry adopts the run it finds, so a trial has one run."""
        raw = self.client._client
        try:
            return raw.create_run(
                self.experiment_id, run_name=f"trial-{number}", tags=tags
            ).info.run_id
        except Exception as error:
            if not is_transient(error):
                raise
            found = raw.search_runs(
                [self.experiment_id],
                f"tags.`{keys.TRIAL_NUMBER_TAG}` = '{number}' and attributes.status = 'RUNNING'",
                max_results=1,
            )
            if found:
                return found[0].info.run_id
            raise

    def experiment_url(self) -> str:
        return experiment_url(self.ui_url, self.experiment_id)

    def run_url(self, run_id: str) -> str:
        return run_url(self.ui_url, self.experiment_id, run_id)

    def _link(self, trial: optuna.Trial, run_id: str) -> None:
        """The trial's note in optuna-dashboard links its MLflow run; the run links back."""
        import optuna_dashboard

        url = self.run_url(run_id)
        optuna_dashboard.save_note(trial, f"MLflow run of trial {trial.number}: [{url}]({url})\n")
        if self.dashboard_url:
            self.client.set_tag(
                run_id,
                keys.DASHBOARD_URL_TAG,
                dashboard_trial_url(self.dashboard_url, trial.study, trial.number),
            )

    def _system_metrics(self, run_id: str):
        """MLflow's own sampler of CPU, memory, disk, network (and GPU where its library is
        installed), logging into the trial's run from a thread until the run ends."""
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        monitor = SystemMetricsMonitor(
            run_id,
            sampling_interval=SYSTEM_METRICS_INTERVAL_S,
            tracking_uri=self.tracking_uri,
        )
        monitor.start()
        return monitor

    def best_so_far(self, metric: str) -> Callable[[optuna.Study, FrozenTrial], None]:
        """An Optuna callback: the study's best value so far, logged on the parent run after
        each complete trial (step = trial number), so the experiment's table sorts by it."""

        def log_best(study: optuna.Study, trial: FrozenTrial) -> None:
            if trial.state != optuna.trial.TrialState.COMPLETE or self.parent_run_id is None:
                return
            if len(study.directions) > 1:  # no single best value in a multi-objective study
                return
            best = _metrics({f"best_{metric}": study.best_value}, trial.number)
            self.client.log_batch(self.parent_run_id, metrics=best)

        return log_best

    def fail_dead_run(self, run_id: str, reason: str = "worker died") -> None:
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
                    RunTag(keys.FAIL_REASON, reason),
                ],
            )
            self.client.set_terminated(run_id, "FAILED")

    def close_stray_runs(self, study: optuna.Study) -> list[str]:
        """Close the trial runs still RUNNING whose trial has ended in Optuna: the process that
        owned them died, and closing them then failed (the tracking server was down, say).
        Optuna is the record of how a trial ended; its run follows. Returns their ids."""
        from mlflow.entities import RunTag

        try:
            runs = self.client.search_runs(
                [self.experiment_id],
                f"attributes.status = 'RUNNING' and tags.`{keys.TRIAL_NUMBER_TAG}` != ''",
                max_results=1000,
            )
        except Exception:  # the tracking server is down: next time
            return []
        states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
        closed = []
        for run in runs:
            number = int(run.data.tags[keys.TRIAL_NUMBER_TAG])
            state = states.get(number)
            if state is None or not state.is_finished():
                continue
            status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}.get(state.name, "FAILED")
            self.client.log_batch(
                run.info.run_id,
                tags=[RunTag(keys.RECOVERED_TAG, "true"), RunTag(keys.STATE_TAG, state.name)],
            )
            self.client.set_terminated(run.info.run_id, status)
            closed.append(run.info.run_id)
        return closed

    def close(self, parent_status: str, reason: str | None = None) -> None:
        """End every run this process left open, then the parent run."""
        for run_id in list(self._open_runs):
            TrialRun(self, run_id).end("FAILED", reason or "process ended")
        if self.parent_run_id:
            if reason:
                self.write_parent(
                    lambda client, run_id: client.set_tag(run_id, keys.LAST_EXIT_TAG, reason)
                )
            self.client.set_terminated(self.parent_run_id, parent_status)

    def write_parent(self, write: Callable[[Any, str], T]) -> T:
        """`write(client, parent_run_id)`, once more if it fails: workers write the same tag
        on the shared parent run at once (stopped together by `docker compose stop`, or
        logging the front as they end a study together), and the insert that loses the race
        fails with a unique violation (seen on PostgreSQL and SQLite); written again, the row
        exists and is updated."""
        from mlflow.exceptions import MlflowException

        try:
            return write(self.client, self.parent_run_id)
        except MlflowException:
            return write(self.client, self.parent_run_id)


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
        monitor = self.tracker._monitors.pop(self.run_id, None)
        if monitor is not None:
            monitor.finish()
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
