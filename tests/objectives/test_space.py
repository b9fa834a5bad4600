import optuna
import pytest

from tunelab.objectives.classification import ClassificationTask
from tunelab.objectives.space import SearchSpaceError


@pytest.fixture
def space():
    return ClassificationTask().search_space()


def test_defaults_are_the_dataclass_defaults_and_skip_inactive_conditionals(space):
    params = space.default_trial_params()
    assert params["lr"] == 3e-3 and params["optimizer"] == "adamw"
    assert "momentum" not in params  # only sampled for sgd


def test_narrowing_ranges_choices_and_fixing(space):
    narrowed = space.narrowed(
        {"lr": {"low": "1e-4", "high": 1e-3}, "optimizer": {"choices": ["sgd"]}, "batch_size": 32}
    )
    lr = next(p for p in narrowed.params if p.name == "lr")
    assert (lr.low, lr.high, lr.log) == (1e-4, 1e-3, True)
    assert narrowed.fixed == {"batch_size": 32}
    assert "batch_size" not in narrowed.names
    values = narrowed.suggest(
        optuna.trial.FixedTrial(
            {
                **narrowed.default_trial_params(),
                "lr": 5e-4,
                "optimizer": "sgd",
                "momentum": 0.8,
                "nesterov": False,
            }
        )
    )
    assert values["batch_size"] == 32 and values["momentum"] == 0.8
    # the default lr (2e-3) is outside the narrowed range: left to the sampler
    assert "lr" not in narrowed.default_trial_params()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"learning_rate": 0.1}, "unknown parameter(s) learning_rate"),
        ({"lr": {"low": 1e-2, "high": 1e-3}}, "low 0.01 is above high 0.001"),
        ({"lr": {"low": 0, "high": 1e-3}}, "log range needs low > 0"),
        ({"optimizer": {"choices": ["lbfgs"]}}, "'lbfgs' is not one of"),
        ({"optimizer": {"choices": []}}, "choices must not be empty"),
        ({"conv_blocks": {"low": 1.5, "high": 3}}, "integer bounds"),
        ({"dropout": "lots"}, "is not a number"),
        ({"lr": {"min": 1}}, "unknown key(s)"),
    ],
)
def test_impossible_narrowing_is_one_clear_error(space, override, message):
    with pytest.raises(SearchSpaceError) as error:
        space.narrowed(override)
    assert message in str(error.value)
