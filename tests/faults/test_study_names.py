"""Study names become folder names: every command refuses an unsafe one, with one line."""

from pathlib import Path

import pytest

from tunelab.search.analysis.report import default_out_dir
from tunelab.search.spec import SpecError, StudySpec, check_study_name

ESCAPE = "../../escape"
RULE = "is not allowed: use letters, digits"


@pytest.mark.parametrize("command", ["run", "create"])
def test_run_and_create_refuse_a_name_that_leaves_the_folder(workdir, refused, command):
    refused([command, "cnn", "--dataset", "digits", "--study-name", ESCAPE], RULE)
    assert not (workdir.parent.parent / "escape").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["best", ESCAPE],
        ["report", ESCAPE],
        ["evaluate", ESCAPE],
        ["worker", ESCAPE],
    ],
    ids=lambda argv: argv[0],
)
def test_commands_on_an_existing_study_refuse_an_unsafe_name(refused, argv):
    refused(argv, f"study name '{ESCAPE}' {RULE}")


@pytest.mark.parametrize(
    "name", ["", ".", "..", ".hidden", "a/b", "a\\b", "a b", "x" * 101, "tab\there", "é"]
)
def test_unsafe_names_are_refused(name):
    with pytest.raises(SpecError, match="is not allowed"):
        check_study_name(name)


@pytest.mark.parametrize("name", ["cnn-digits", "a..b", "Run_2.1", "x" * 100])
def test_safe_names_pass_and_their_report_folder_stays_under_reports(name):
    assert check_study_name(name) == name
    out = default_out_dir(name).resolve()
    assert out.parent == (Path("reports")).resolve()


def test_default_name_of_a_folder_data_set_is_a_safe_name():
    spec = StudySpec(task="cnn", dataset="folder:/data/my pets/")
    assert spec.name == "cnn-folder-data-my-pets"
    assert check_study_name(spec.name)


def test_mlflow_artifacts_of_a_study_stay_under_the_artifact_root(workdir, capsys):
    from mlflow import MlflowClient

    from tunelab.search.cli import main

    code = main(["create", "cnn", "--dataset", "digits", "--study-name", "a..b", "--n-trials", "1"])
    assert code == 0, capsys.readouterr().err
    client = MlflowClient(tracking_uri="sqlite:///mlruns/mlflow.db")
    location = client.get_experiment_by_name("a..b").artifact_location
    root = (workdir / "mlruns" / "artifacts").resolve().as_uri()
    assert location == f"{root}/a..b"
