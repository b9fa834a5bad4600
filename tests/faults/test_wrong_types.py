"""Options of the wrong type or out of range, from the config file or the command line."""

import pytest

FILE_CASES = [
    ("study_name: 2024", "--study-name must be text, not 2024"),
    ("epochs: 2.5", "--max-epochs must be an integer, not 2.5"),
    ("n_trials: x", "--n-trials must be an integer, not 'x'"),
    ("n_trials: true", "--n-trials must be an integer, not True"),
    ("timeout: .nan", "--timeout must be a finite number"),
    ("limit_train: 1e3", "--limit-train must be an integer"),
    ("params: [dropout]", "params must be a mapping"),
]


@pytest.mark.parametrize(("line", "message"), FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_config_value_of_the_wrong_type_is_refused(workdir, refused, line, message):
    (workdir / "study.yaml").write_text(line + "\n")
    refused(["run", "cnn", "--dataset", "digits", "--config", "study.yaml"], message)


FLAG_CASES = [
    (["--timeout", "nan"], "--timeout must be a finite number, not nan"),
    (["--timeout", "inf"], "--timeout must be a finite number, not inf"),
    (["--timeout", "-5"], "--timeout must be positive"),
    (["--timeout", "0"], "--timeout must be positive"),
    (["--n-trials", "x"], "Invalid value for '--n-trials'"),
]


@pytest.mark.parametrize(("flags", "message"), FLAG_CASES, ids=[" ".join(c[0]) for c in FLAG_CASES])
def test_flag_value_out_of_range_is_refused(refused, flags, message):
    refused(["run", "cnn", "--dataset", "digits", *flags], message)
