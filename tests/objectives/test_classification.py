import io
from dataclasses import fields

import optuna
import pytest
import torch
from PIL import Image

from tunelab.models.cnn import CNN, CNNArchitecture, CNNConfig
from tunelab.objectives.classification import ClassificationTask
from tunelab.objectives.metrics import count_parameters
from tunelab.objectives.runner import Objective

SMALL = {"base_width": 8, "fc_width": 32, "conv_blocks": 2, "convs_per_block": 1}


def _space(task):
    return task.search_space().narrowed(SMALL)


def _trial(task, **params):
    return optuna.trial.FixedTrial({**_space(task).default_trial_params(), **params})


def test_cnn_trial_logs_curves_final_metrics_and_a_loadable_checkpoint(digits, recorder, loop_for):
    task = ClassificationTask()
    loop = loop_for(digits, max_epochs=2)
    objective = Objective(task, digits, _space(task), loop)
    value = objective(_trial(task), recorder)
    rungs = {loop.budget.step(1), loop.budget.step(2)}  # one rung per epoch of 1,257 images
    assert value == max(recorder.steps("rung/val_accuracy").values())  # the rung split is all
    for name in ("train_loss", "train_accuracy", "rung/val_loss", "rung/val_accuracy", "epoch"):
        assert set(recorder.steps(name)) == rungs
    assert recorder.steps("val_accuracy") == recorder.steps("rung/val_accuracy")
    final = recorder.history[-1][1]
    assert final["best_val_accuracy"] == value
    assert {"val_precision", "val_recall", "val_f1"} <= set(final)
    assert 0.0 < final["val_f1"] <= 1.0
    assert Image.open(io.BytesIO(recorder.artifacts["confusion_matrix.png"])).size[0] > 100

    checkpoint = torch.load(io.BytesIO(recorder.artifacts["checkpoint/best.pt"]), weights_only=True)
    config = checkpoint["model_configs"]["model"]
    model = CNN(CNNConfig(**{**config, "image_size": tuple(config["image_size"])}))
    model.load_state_dict(checkpoint["state_dict"]["model"])
    model.eval()
    with torch.no_grad():
        accuracy = (model(digits.val.x).argmax(1) == digits.val.y).float().mean().item()
    assert abs(accuracy - value) < 1e-6


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_same_seed_same_value_on_cpu(digits, loop_for, precision):
    task = ClassificationTask()
    loop = loop_for(digits, seed=5, precision=precision)
    values = [
        Objective(task, digits, _space(task), loop)(_trial(task, rotation=15.0, crop_padding=2))
        for _ in range(2)
    ]
    assert values[0] == values[1]


LEARNS = {"rotation": 0.0, "crop_padding": 0, "dropout": 0.0, "label_smoothing": 0.0}
"""No augmentation or regularisation: what a few dozen steps need to learn the digits."""


def test_every_optimizer_and_schedule_trains(digits, loop_for):
    """Each trains the small CNN far above chance (0.1) in about 40 steps: seed 0 gives 0.789
    (SGD) and 0.748 (Adam), seeds 0-7 give 0.77-0.87 and 0.69-0.79. With the defaults'
    augmentation and regularisation, one epoch reaches only 0.16-0.27."""
    task = ClassificationTask()
    sgd = {"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "lr": 0.03, "batch_size": 32}
    adam = {"optimizer": "adam", "lr_schedule": "constant", "lr": 0.02, "batch_size": 64}
    adam.update(batch_norm=False, pooling="avg")
    for epochs, params in ((1, sgd), (2, adam)):  # SGD with the default cosine schedule
        objective = Objective(task, digits, _space(task), loop_for(digits, epochs, seed=0))
        value = objective(_trial(task, **LEARNS, **params))
        assert value >= 0.6, (params, value)  # six times chance


def _mnist_cnn_size(**architecture) -> int:
    """Parameters of a CNN of this architecture on 28x28 grey images, ten classes."""
    config = CNNConfig(**architecture, in_channels=1, image_size=(28, 28), num_classes=10)
    return count_parameters(CNN(config))


def _smallest_model(space) -> int:
    """Parameters of the smallest CNN the space can build (on 28x28 grey images)."""
    param = {p.name: p for p in space.params}
    sizes = [
        _mnist_cnn_size(
            conv_blocks=blocks,
            convs_per_block=1,
            base_width=min(param["base_width"].choices),
            fc_width=fc_width,
            batch_norm=False,
        )
        for blocks in range(int(param["conv_blocks"].low), int(param["conv_blocks"].high) + 1)
        for fc_width in param["fc_width"].choices
    ]
    return min(sizes)


def test_a_size_metric_opens_the_small_end_of_the_space():
    task = ClassificationTask()
    assert task.space_for_metrics({"val_accuracy", "val_loss"}) == {}
    default = task.search_space()
    reshaped = default.narrowed(task.space_for_metrics({"val_accuracy", "params"}))
    assert _smallest_model(default) > 20_000 and _smallest_model(reshaped) < 10_000
    assert reshaped.default_trial_params() == default.default_trial_params()


def test_a_size_objective_anchors_the_front_with_a_ladder_of_sizes():
    task = ClassificationTask()
    assert task.anchor_configurations(("val_accuracy", "val_loss")) == []
    space = task.search_space().narrowed(task.space_for_metrics({"params"}))

    def size(changes) -> int:
        chosen = {**space.defaults, **space.default_trial_params(changes)}
        return _mnist_cnn_size(**{f.name: chosen[f.name] for f in fields(CNNArchitecture)})

    sizes = [size(changes) for changes in task.anchor_configurations(("val_accuracy", "params"))]
    # from the smallest shape (with batch norm's few parameters the default keeps) upwards,
    # each rung at most 4x the last, all below the default, which is trained before them
    assert sizes[0] <= _smallest_model(space) + 200
    assert all(1 < b / a <= 4 for a, b in zip(sizes, sizes[1:], strict=False))
    assert sizes[-1] < size({}) and size({}) / sizes[0] > 10


def test_a_classifier_of_ones_own_is_named_after_its_class_unless_it_says():
    from tunelab.objectives.classifier import ClassifierTask

    class MLPTask(ClassifierTask):
        def model(self, hp, data):
            return torch.nn.Linear(data.input_shape[0], data.num_classes)

    class WiderMLP(MLPTask):
        pass

    class Named(ClassifierTask):
        name = "digits-net"

        def model(self, hp, data):
            return torch.nn.Linear(data.input_shape[0], data.num_classes)

    assert (MLPTask.name, WiderMLP.name, Named.name) == ("mlp", "mlp", "digits-net")
    assert ClassificationTask.name == "cnn"
