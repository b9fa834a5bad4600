"""The task contract: what each task registers as its served model."""

import pytest
import torch

from tunelab.objectives.base import EXAMPLE_ROWS, Parts, Task
from tunelab.objectives.budget import epoch_budget
from tunelab.objectives.registry import get_task
from tunelab.objectives.space import fields_of


@pytest.mark.parametrize(
    ("name", "options", "kind"),
    [
        ("cnn", {}, "classifier"),
        ("vae", {}, "vae-decoder"),
        ("gan", {"feature_space": "fd_classifier", "fid_samples": 50}, "generator"),
    ],
)
def test_each_task_says_what_it_serves(name, options, kind, digits, cache_dir):
    if name == "gan":
        options = {**options, "cache_dir": str(cache_dir)}
    task = get_task(name, options)
    hp = task.hparams_type()
    parts = task.build(hp, digits, torch.device("cpu"), epoch_budget(1, len(digits.train)))
    serving = task.serving_model(parts, digits, seed=3)
    assert serving.kind == kind and not serving.module.training
    assert len(serving.example) == EXAMPLE_ROWS
    with torch.inference_mode():
        out = serving.module(serving.example)
    if kind == "classifier":
        assert out.shape == (EXAMPLE_ROWS, digits.num_classes)
    else:  # a decoder: latent codes -> images shaped like the data
        assert out.shape == (EXAMPLE_ROWS, digits.channels, *digits.image_size)
        again = task.serving_model(parts, digits, seed=3).example
        assert torch.equal(again, serving.example)  # a seeded example


def test_a_task_with_several_modules_must_say_which_it_serves(digits):
    task = get_task("cnn")
    parts = Parts(modules={"a": torch.nn.Linear(1, 1), "b": torch.nn.Linear(1, 1)}, optimizers={})
    with pytest.raises(NotImplementedError, match="override serving_model"):
        Task.serving_model(task, parts, digits, seed=0)  # the contract's default


def test_fields_of_picks_one_dataclass_part_of_the_hyperparameters():
    from tunelab.models.cnn import CNNArchitecture
    from tunelab.objectives.classification import ClassifierHParams

    hp = ClassifierHParams(base_width=8)
    architecture = fields_of(CNNArchitecture, hp)
    assert architecture["base_width"] == 8 and "lr" not in architecture
