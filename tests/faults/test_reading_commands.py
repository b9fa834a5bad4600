"""Commands that only read never create a storage or a tracking store where none exists."""

import json

import optuna
import pytest

from tunelab.objectives import keys

NO_STORAGE = "no storage database at studies.db: pass --storage"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["best", "cnn-digits"], NO_STORAGE),
        (["studies"], NO_STORAGE),
        (["report", "cnn-digits"], NO_STORAGE),
        (["evaluate", "cnn-digits"], NO_STORAGE),
        (["worker", "cnn-digits"], NO_STORAGE),
        (["dashboard"], "no study storage at studies.db"),
        (["best", "cnn-digits", "--storage", "sqlite:///elsewhere/s.db"], "elsewhere/s.db"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_reading_in_an_empty_folder_creates_nothing(workdir, refused, argv, message):
    refused(argv, message)
    assert list(workdir.iterdir()) == []


def test_report_with_a_missing_tracking_store_writes_nothing(workdir, refused):
    storage = f"sqlite:///{workdir / 'studies.db'}"
    study = optuna.create_study(study_name="s", storage=storage)
    uri = f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}"
    study.set_user_attr(keys.SPEC, json.dumps({"task": "cnn", "tracking_uri": uri}))
    study.set_user_attr(keys.PARENT_RUN_ID, "0" * 32)
    study.add_trial(optuna.trial.create_trial(value=1.0))
    refused(["report", "s", "--storage", storage], "no MLflow tracking database at")
    assert not (workdir / "mlruns").exists() and not (workdir / "reports").exists()
