"""StudySpec: one declaration per option, from which flags, YAML checks and storage derive."""

import dataclasses
import json

import pytest

from tunelab.search.cli.options import spec_parameters
from tunelab.search.spec import (
    SpecError,
    StudySpec,
    build_spec,
    field_docs,
    identity_fields,
    option_of,
    stored_fields,
)


def test_flags_beat_the_config_file_which_beats_defaults(tmp_path, monkeypatch):
    monkeypatch.delenv("TUNELAB_STORAGE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = tmp_path / "search.yaml"
    config.write_text(
        "max_epochs: 4\nn-trials: 7\nparams:\n  lr: {low: 1e-4, high: 1e-3}\n  optimizer: adam\n"
    )
    spec = build_spec("cnn", str(config), {"max_epochs": 2, "seed": None})
    assert (spec.max_epochs, spec.n_trials, spec.seed) == (2, 7, 0)
    assert spec.params["optimizer"] == "adam"
    assert spec.name == "cnn-mnist5k" and spec.storage == "sqlite:///studies.db"


def test_environment_gives_the_storage_and_tracking_defaults(monkeypatch):
    monkeypatch.setenv("TUNELAB_STORAGE", "postgresql://db/x")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    spec = build_spec("cnn", None, {})
    assert (spec.storage, spec.tracking_uri) == ("postgresql://db/x", "http://mlflow:5000")
    assert build_spec("cnn", None, {"storage": "sqlite:///a.db"}).storage == "sqlite:///a.db"


def test_the_former_name_epochs_still_works_in_files_and_stored_studies(tmp_path):
    config = tmp_path / "old.yaml"
    config.write_text("epochs: 4\n")
    assert build_spec("cnn", str(config), {}).max_epochs == 4
    stored = json.dumps({"task": "cnn", "dataset": "digits", "epochs": 6})  # tunelab 0.1
    assert StudySpec.from_stored(stored).max_epochs == 6


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("max_epochs: [1, 2\n", "not valid YAML at line"),
        ("- 1\n- 2\n", "must be a mapping"),
        ("epoch: 3\n", "unknown option(s) epoch"),
        ("params: [lr]\n", "params must be a mapping"),
        ("max_epochs: lots\n", "--max-epochs must be an integer, not 'lots'"),
        ("max_epochs: 2.5\n", "--max-epochs must be an integer, not 2.5"),
        ("study_name: 2024\n", "--study-name must be text, not 2024"),
        ("timeout: .nan\n", "--timeout must be a finite number"),
        ("quiet: true\n", "unknown option(s) quiet"),
    ],
)
def test_bad_config_files(tmp_path, content, message):
    config = tmp_path / "bad.yaml"
    config.write_text(content)
    with pytest.raises(SpecError) as error:
        build_spec("cnn", str(config), {})
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"task": "rnn"}, "unknown task 'rnn'"),
        ({"dataset": "svhn"}, "unknown data set 'svhn'"),
        ({"sampler": "grid"}, "unknown sampler 'grid'"),
        ({"pruner": "wilcoxon"}, "unknown pruner 'wilcoxon'"),
        ({"n_trials": 0}, "--n-trials must be at least 1"),
        ({"max_epochs": -1}, "--max-epochs must be at least 1"),
        ({"timeout": 0.0}, "--timeout must be positive"),
        ({"grace_period": 5, "heartbeat_interval": 10}, "--grace-period must be longer"),
    ],
)
def test_invalid_options(changes, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(")):
        StudySpec(**{"task": "cnn", **changes}).validate()


def test_stored_spec_round_trip_and_identity_conflicts():
    spec = StudySpec(task="cnn", dataset="digits", params={"lr": 0.01}, max_epochs=3)
    again = StudySpec.from_stored(spec.to_json(), study_name="x")
    assert again.params == {"lr": 0.01} and again.max_epochs == 3 and again.name == "x"
    other = StudySpec(task="cnn", dataset="mnist5k", params={"lr": 0.01}, max_epochs=3)
    assert other.conflicts_with(spec.to_json()) == ["dataset: stored 'digits', asked 'mnist5k'"]
    changed = StudySpec(task="cnn", dataset="digits", params={"lr": 0.02}, max_epochs=3)
    assert changed.conflicts_with(spec.to_json()) == [
        "params: stored {'lr': 0.01}, asked {'lr': 0.02}"
    ]
    later = StudySpec(task="cnn", dataset="digits", params={"lr": 0.01}, max_epochs=3, seed=4)
    assert later.conflicts_with(spec.to_json()) == []  # not part of the study's identity


def test_stored_and_identity_fields_come_from_the_declarations():
    assert set(identity_fields()) == {
        *("task", "dataset", "limit_train", "params", "task_options"),
        *("rung_images", "rung_val_images"),  # what makes trials comparable
        *("objectives", "constraints"),  # what the study searches for
    }  # the epoch budget is checked against the study's stored plan (check_same_budget)
    assert set(identity_fields()) <= set(stored_fields())
    for local in ("storage", "device", "workers", "threads", "quiet", "timeout", "study_name"):
        assert local not in stored_fields()  # a joining process sets these itself
    assert set(json.loads(StudySpec(task="cnn").to_json())) == set(stored_fields())


def test_every_option_has_help_and_a_flag_unless_it_is_file_only():
    docs = field_docs(StudySpec)
    flags = {p.name for p in spec_parameters()}
    for f in dataclasses.fields(StudySpec):
        assert docs.get(f.name), f"{f.name} has no docstring"
        assert (f.name in flags) == (option_of(f).flag != ""), f.name
    joining = {p.name for p in spec_parameters(joining=True)}
    assert joining == {
        *("storage", "tracking_uri", "device", "precision", "threads", "quiet"),
        *("timeout", "deadline"),
        *("mlflow_ui_url", "dashboard_url", "system_metrics", "verbose"),  # links and output
    }
