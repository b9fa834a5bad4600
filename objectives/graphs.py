"""A task's training step captured once as a CUDA graph and replayed for every batch.

On a GPU the tasks' small models are bound by the host launching kernels, not by arithmetic:
the default CNN's step launches about 115 kernels and left an H100 idle about 85% of its
4.9 ms (`benchmarks/steps.py`). Replaying the whole step (batch gather, augmentation, forward,
backward, optimizer) as one graph launches them all at once. PyTorch's whole-network capture
recipe, made to fit the trial loop: the batch's indices are written into the graph's own index
tensor before each replay, the trial's generator is registered with the graph (its draws
advance as in eager steps), and the learning rate lives in the optimizer's tensor, which the
schedulers write between replays.

A task opts in with `Task.graph_step` (see its contract); the loop (`training.TrialTraining`)
runs the first steps eagerly on a side stream (lazy optimizer state, cuDNN's choices), then
captures, after any resume from a checkpoint, since capture fixes which tensors a step uses.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

GraphStep = Callable[[torch.Tensor, torch.Tensor, torch.Generator], dict[str, torch.Tensor]]
"""(images, labels, generator) -> the step's train_* metrics: `Task.graph_step`'s function."""
WARM_UP_STEPS = 3
"""Eager steps on a side stream before capture, as PyTorch's recipe asks."""


class StepGraph:
    """One captured training step over batches of a fixed size, replayed per batch."""

    def __init__(
        self,
        step: GraphStep,
        batch_of: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
        batch_size: int,
        generator: torch.Generator,
    ) -> None:
        device = generator.device
        self.index = torch.zeros(batch_size, dtype=torch.long, device=device)
        """The batch's indices into the training split, written before each replay."""
        self.graph = torch.cuda.CUDAGraph()
        self.graph.register_generator_state(generator)
        with torch.cuda.graph(self.graph):
            x, y = batch_of(self.index)
            self.metrics = step(x, y, generator)
        """The step's metrics: tensors the graph overwrites at every replay."""

    def replay(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """Train on the batch at `index`; returns the step's metrics (overwritten by the next
        replay: add them up, don't keep them)."""
        self.index.copy_(index)
        self.graph.replay()
        return self.metrics


def warm_up_stream(device: torch.device) -> torch.cuda.Stream:
    """A side stream for the eager steps before capture, ordered after the work queued so far."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    return stream
