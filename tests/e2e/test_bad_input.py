"""Bad input: one clear line on stderr, exit code 2, nothing written to the storage."""

import pytest

from tunelab.search.cli import main

pytestmark = pytest.mark.e2e


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TUNELAB_STORAGE", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "bad.yaml").write_text("params:\n  lr: {low: 1, high: 0.1}\n")
    (tmp_path / "broken.yaml").write_text("max_epochs: [1,\n")
    return tmp_path


CASES = [
    (["run", "rnn"], "unknown task 'rnn'"),
    (["run", "cnn", "--dataset", "svhn"], "unknown data set 'svhn'"),
    (["run", "cnn", "--sampler", "grid"], "unknown sampler 'grid'"),
    (["run", "cnn", "--pruner", "wilcoxon"], "unknown pruner 'wilcoxon'"),
    (["run", "cnn", "--storage", "nosuchdb://x/y"], "unsupported database in storage URL"),
    (["run", "cnn", "--storage", "not a url"], "malformed storage URL"),
    (
        ["run", "cnn", "--storage", "postgresql+psycopg://postgres@127.0.0.1:1/x"],
        "cannot reach storage database",
    ),
    (["run", "cnn", "--tracking-uri", "mlruns"], "unsupported tracking URI 'mlruns'"),
    (["run", "cnn", "--tracking-uri", "http://127.0.0.1:1"], "cannot reach MLflow tracking server"),
    (["run", "cnn", "--config", "missing.yaml"], "config file missing.yaml not found"),
    (["run", "cnn", "--config", "bad.yaml"], "low 1.0 is above high 0.1"),
    (["run", "cnn", "--config", "broken.yaml"], "not valid YAML"),
    (["run", "cnn", "--n-trials", "0"], "--n-trials must be at least 1"),
    (["run", "cnn", "--epochs", "-2"], "--max-epochs must be at least 1"),
    (["run", "cnn", "--max-epochs", "two"], "Invalid value for '--max-epochs'"),
    (["run", "cnn", "--dataset", "mnist", "--data-dir", "empty"], "MNIST/raw"),
    (["run", "cnn", "--device", "cuda"], "no CUDA GPU"),
    (["best", "nothing"], "no storage database at studies.db"),
]


@pytest.mark.parametrize(("argv", "message"), CASES, ids=[" ".join(c[0][1:]) for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(workdir, capsys, argv, message):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("tunelab: error: ") and err.count("\n") == 1, err
    assert message in err
    assert "Traceback" not in err
    if argv[0] == "run":
        assert not (workdir / "studies.db").exists()
        assert not (workdir / "mlruns" / "mlflow.db").exists()


def test_real_console_script_exit_code_and_message(cli, tmp_path):
    result = cli(["run", "cnn", "--pruner", "sometimes"], cwd=tmp_path)
    assert result.returncode == 2
    known = "auto, hyperband, halving, median, asha, patient, none"
    assert result.stderr == f"tunelab: error: unknown pruner 'sometimes'; known: {known}\n"
    assert not (tmp_path / "studies.db").exists()


def test_resuming_a_gan_study_in_another_feature_space_is_refused(
    workdir, capsys, inception_weights
):
    create = ["create", "gan", "--dataset", "digits", "--n-trials", "2"]
    assert main([*create, "--feature-space", "fd_classifier"]) == 0
    capsys.readouterr()
    other = ["--feature-space", "fid_inception", "--inception-weights", str(inception_weights)]
    code = main([*create, *other])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "study 'gan-digits' exists with other settings" in err and "feature_space" in err
