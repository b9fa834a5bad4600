import pytest

from search.config import SpecError, StudySpec, build_spec


def test_flags_beat_the_config_file_which_beats_defaults(tmp_path, monkeypatch):
    monkeypatch.delenv("TUNELAB_STORAGE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = tmp_path / "search.yaml"
    config.write_text(
        "epochs: 4\nn-trials: 7\nparams:\n  lr: {low: 1e-4, high: 1e-3}\n  optimizer: adam\n"
    )
    spec = build_spec("cnn", str(config), {"epochs": 2, "seed": None})
    assert (spec.epochs, spec.n_trials, spec.seed) == (2, 7, 0)
    assert spec.params["optimizer"] == "adam"
    assert spec.name == "cnn-mnist5k" and spec.storage == "sqlite:///studies.db"


def test_environment_gives_the_storage_and_tracking_defaults(monkeypatch):
    monkeypatch.setenv("TUNELAB_STORAGE", "postgresql://db/x")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    spec = build_spec("cnn", None, {})
    assert (spec.storage, spec.tracking_uri) == ("postgresql://db/x", "http://mlflow:5000")
    assert build_spec("cnn", None, {"storage": "sqlite:///a.db"}).storage == "sqlite:///a.db"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("epochs: [1, 2\n", "not valid YAML at line"),
        ("- 1\n- 2\n", "must be a mapping"),
        ("epoch: 3\n", "unknown option(s) epoch"),
        ("params: [lr]\n", "params must be a mapping"),
        ("epochs: lots\n", "wrong type for epochs"),
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
        ({"epochs": -1}, "--epochs must be at least 1"),
        ({"grace_period": 5, "heartbeat_interval": 10}, "--grace-period must be longer"),
    ],
)
def test_invalid_options(changes, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(")):
        StudySpec(**{"task": "cnn", **changes}).validate()


def test_stored_spec_round_trip_and_identity_conflicts():
    spec = StudySpec(task="cnn", dataset="digits", params={"lr": 0.01}, epochs=3)
    again = StudySpec.from_stored(spec.to_json(), study_name="x")
    assert again.params == {"lr": 0.01} and again.epochs == 3 and again.name == "x"
    other = StudySpec(task="cnn", dataset="mnist5k", params={"lr": 0.01})
    assert other.conflicts_with(spec.to_json()) == ["dataset: stored 'digits', asked 'mnist5k'"]
    assert (
        StudySpec(task="cnn", dataset="digits", params={"lr": 0.01}, epochs=9).conflicts_with(
            spec.to_json()
        )
        == []
    )
