"""No password in what a study stores (optuna-dashboard shows every user attribute), in
printed lines, or in a server's process arguments.

Before the fix the tracking URI was stored with its password in the study's `tunelab.spec`
attribute, and `tunelab ui` passed the store URL on the `mlflow server` command line."""

from __future__ import annotations

import json

import optuna
import pytest

from tunelab.objectives import keys
from tunelab.search.spec import SpecError, StudySpec
from tunelab.search.study.queries import stored_spec

SECRET = "s3cret-pw"


def test_a_study_stores_its_tracking_uri_without_the_password():
    spec = StudySpec(task="cnn", tracking_uri=f"postgresql://tunelab:{SECRET}@db:5432/mlflow")
    stored = spec.to_json()
    assert SECRET not in stored
    assert json.loads(stored)["tracking_uri"] == "postgresql://tunelab:***@db:5432/mlflow"
    http = StudySpec(task="cnn", tracking_uri=f"https://me:{SECRET}@mlflow.example:443")
    assert SECRET not in http.to_json()


def _study_with(tracking_uri: str) -> optuna.Study:
    study = optuna.create_study()
    study.set_user_attr(keys.SPEC, StudySpec(task="cnn", tracking_uri=tracking_uri).to_json())
    return study


def test_a_reader_brings_the_password_from_its_storage_url_or_its_own_uri():
    study = _study_with(f"postgresql://tunelab:{SECRET}@db:5432/mlflow")
    storage = f"postgresql://tunelab:{SECRET}@db:5432/optuna"
    assert stored_spec(study, storage=storage).tracking_uri == (
        f"postgresql://tunelab:{SECRET}@db:5432/mlflow"
    )
    own = "postgresql://tunelab:other@db:5432/mlflow"
    assert stored_spec(study, storage="sqlite:///x.db", tracking_uri=own).tracking_uri == own
    try:
        stored_spec(study, storage="sqlite:///x.db")
    except SpecError as error:
        assert "needs its password" in str(error) and SECRET not in str(error)
    else:
        raise AssertionError("a masked password cannot be used as it is")


@pytest.mark.slow  # binds the server's port
def test_the_mlflow_ui_server_gets_its_store_url_from_the_environment(
    tmp_path, monkeypatch, capsys
):
    from types import SimpleNamespace

    import tunelab.search.cli.servers as servers

    started = {}

    class Server:
        pid = 0

        def __init__(self, command, env, **kwargs):
            started.update(command=command, env=env)

        def wait(self):
            return 0

    monkeypatch.setattr(servers, "subprocess", SimpleNamespace(Popen=Server))
    monkeypatch.setattr(servers, "_stop_group", lambda process: None)
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    from mlflow import MlflowClient

    MlflowClient(store).search_experiments()  # creates the store
    servers.ui(tracking_uri=store, port=0)
    assert store not in " ".join(started["command"])
    assert started["env"]["MLFLOW_BACKEND_STORE_URI"] == store
    assert SECRET not in capsys.readouterr().out
