"""Narrowing a parameter beyond what the code supports is refused before the study exists."""

import pytest

from tunelab.objectives.registry import BUILTIN_TASKS, get_task
from tunelab.objectives.space import Bounds

CASES = [
    ("cnn", "dropout: 1.5", "parameter 'dropout': 1.5 is outside its supported range [0, 1)"),
    ("cnn", "dropout: {low: 0.2, high: 1.0}", "parameter 'dropout': 1 is outside"),
    ("cnn", "lr: -0.001", "parameter 'lr': -0.001 is outside its supported range (0, 10]"),
    ("cnn", "lr: {low: 1e-4, high: 0.1, log: 'no'}", "log must be true or false"),
    ("cnn", "conv_blocks: 0", "parameter 'conv_blocks': 0 is outside"),
    ("gan", "d_steps: 0", "parameter 'd_steps': 0 is outside its supported range [1, 20]"),
    ("gan", "beta2: 1.0", "parameter 'beta2': 1 is outside"),
    ("vae", "beta: {low: 0.5, high: 1000}", "parameter 'beta': 1000 is outside"),
]


@pytest.mark.parametrize(("task", "narrowing", "message"), CASES, ids=[c[1] for c in CASES])
def test_narrowing_past_the_supported_range_is_refused(workdir, refused, task, narrowing, message):
    (workdir / "space.yaml").write_text(f"params:\n  {narrowing}\n")
    refused(["create", task, "--dataset", "digits", "--config", "space.yaml"], message)


@pytest.mark.parametrize("task", sorted(BUILTIN_TASKS))
def test_every_numeric_parameter_of_a_builtin_task_declares_its_supported_range(task):
    for param in get_task(task).search_space().params:
        if param.kind != "categorical":
            assert isinstance(param.supported, Bounds), f"{task}: {param.name}"
            assert param.low in param.supported and param.high in param.supported
