"""Training steps replayed as CUDA graphs (objectives/graphs.py and the loop's use of it).

What a CPU can check runs everywhere: the capturable optimizer's learning rate, the running
means' copies, and that nothing is captured off a GPU. The captured step itself needs CUDA:
those tests skip without it (they ran on a lent GPU; the README's Performance section).
"""

import dataclasses
import io

import pytest
import torch

from tunelab.objectives.classification import ClassificationTask, ClassifierHParams
from tunelab.objectives.data import DataSpec, load_data
from tunelab.objectives.graphs import StepGraph
from tunelab.objectives.optim import is_capturable, make_optimizer, make_scheduler
from tunelab.objectives.training import RunningMeans, TrainingState, TrialTraining

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
SMALL = ClassifierHParams(conv_blocks=2, base_width=16, fc_width=64, batch_size=32)
"""A small default-like configuration (augmentation, dropout, AdamW, cosine schedule)."""


def test_a_capturable_optimizer_keeps_its_rate_in_one_tensor_that_the_schedule_fills():
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = make_optimizer("adamw", [weight], 0.01, capturable=True)
    rate = optimizer.param_groups[0]["lr"]
    scheduler = make_scheduler(optimizer, "cosine", total_steps=10)
    for _ in range(5):
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] is rate  # written in place: a graph keeps reading it
    assert rate.item() == pytest.approx(0.01 * 0.5)  # cosine at half its span
    assert scheduler.base_lrs == [0.01]  # a float: each step is a fill, not a device read
    assert is_capturable(optimizer)
    assert not is_capturable(make_optimizer("adamw", [weight], 0.01))
    assert not is_capturable(make_optimizer("sgd", [weight], 0.01, capturable=True))


def test_running_means_copy_what_a_graph_overwrites():
    output = torch.tensor(1.0)  # a graph's output tensor: the same tensor every replay
    means = RunningMeans()
    means.add({"train_loss": output})
    output.fill_(3.0)
    means.add({"train_loss": output})
    assert means.pop() == {"train_loss": 2.0}


def test_nothing_is_captured_off_a_gpu(digits, loop_for):
    training = TrialTraining(
        ClassificationTask(), SMALL, digits.channels_last(), loop_for(digits), 0
    )
    assert training.graph_step is None
    steps = training.steps()
    for _ in range(5):
        next(steps)
    assert training.state.steps == 5


# -- on a CUDA device ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpu_digits():
    return load_data(DataSpec("digits"), torch.device("cuda")).channels_last()


def _trained(data, loop, hp, steps: int, training: TrialTraining | None = None) -> TrialTraining:
    training = training or TrialTraining(ClassificationTask(), hp, data, loop, seed=7)
    run = training.steps()
    for _ in range(steps):
        next(run)
    return training


def _weights(training: TrialTraining) -> torch.Tensor:
    model = training.parts.modules["model"]
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.fixture
def deterministic_cudnn():
    """cuDNN's deterministic algorithms, so that two runs of the same steps compare exactly."""
    before = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before


@cuda
def test_a_graph_draws_from_the_trial_generator_as_eager_steps_do():
    def draws(generator: torch.Generator) -> torch.Tensor:
        return torch.rand(4, generator=generator, device="cuda")

    eager = torch.Generator(device="cuda").manual_seed(3)
    expected = [draws(eager) for _ in range(5)]
    generator = torch.Generator(device="cuda").manual_seed(3)
    first = draws(generator)  # an eager draw before capture, as the loop's warm-up steps
    graph = StepGraph(lambda x, y, g: {"u": draws(g)}, lambda i: (i, i), 2, generator)
    replays = [graph.replay(torch.zeros(2, dtype=torch.long, device="cuda"))["u"].clone()]
    replays += [graph.replay(torch.zeros(2, dtype=torch.long, device="cuda"))["u"].clone()]
    after = draws(generator)  # and the epoch's next order, drawn between replays
    replays.append(graph.replay(torch.zeros(2, dtype=torch.long, device="cuda"))["u"].clone())
    for got, want in zip([first, replays[0], replays[1], after, replays[2]], expected, strict=True):
        torch.testing.assert_close(got, want)


@cuda
def test_a_captured_step_trains_as_the_eager_step_does(gpu_digits, loop_for, deterministic_cudnn):
    loop = loop_for(gpu_digits, max_epochs=2, device="cuda")
    eager = _trained(gpu_digits, dataclasses.replace(loop, cuda_graphs=False), SMALL, 40)
    graphed = _trained(gpu_digits, loop, SMALL, 40)
    assert eager.graph_step is None and graphed._graph is not None
    # same draws (augmentation, dropout, order), same arithmetic: the same weights
    difference = (_weights(eager) - _weights(graphed)).abs().max().item()
    assert difference < 1e-4, difference
    eager_means, graphed_means = eager.means.pop(), graphed.means.pop()
    assert graphed_means["train_loss"] == pytest.approx(eager_means["train_loss"], rel=1e-4)
    optimizer = graphed.parts.optimizers["optimizer"]
    schedule = graphed.parts.schedulers["lr"]
    assert schedule.last_epoch == 40  # the loop stepped the schedule after every replay
    assert optimizer.param_groups[0]["lr"].item() == pytest.approx(float(schedule.get_last_lr()[0]))


@cuda
def test_a_resumed_trial_captures_its_step_after_loading_the_checkpoint(
    gpu_digits, loop_for, deterministic_cudnn
):
    loop = loop_for(gpu_digits, max_epochs=2, device="cuda")
    hp = dataclasses.replace(SMALL, dropout=0.0)  # dropout's stream is not in checkpoints
    whole = _trained(gpu_digits, loop, hp, 40)
    first = _trained(gpu_digits, loop, hp, 20)
    buffer = io.BytesIO()
    torch.save(
        {
            "parts": first.parts.state_dict(),
            "loop": first.state.as_payload(),
            "generator": first.generator.get_state(),
        },
        buffer,
    )
    buffer.seek(0)
    payload = torch.load(buffer, map_location="cuda", weights_only=True)
    resumed = TrialTraining(ClassificationTask(), hp, gpu_digits, loop, seed=7)
    resumed.parts.load_state_dict(payload["parts"])  # as Objective._resume does
    resumed.generator.set_state(payload["generator"].to("cpu"))
    resumed.state = TrainingState(**payload["loop"])
    _trained(gpu_digits, loop, hp, 20, training=resumed)
    assert resumed._graph is not None and resumed.state.steps == 40
    difference = (_weights(whole) - _weights(resumed)).abs().max().item()
    assert difference < 1e-4, difference


@cuda
def test_sgd_steps_stay_eager_on_a_gpu(gpu_digits, loop_for):
    hp = dataclasses.replace(SMALL, optimizer="sgd")
    training = _trained(gpu_digits, loop_for(gpu_digits, device="cuda"), hp, 10)
    assert training.graph_step is None and training.state.steps == 10
