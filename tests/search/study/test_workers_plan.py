"""--workers auto: one single-threaded worker per core on a CPU, as many as memory holds."""

from __future__ import annotations

import pytest
import torch

from tunelab.search.spec import StudySpec
from tunelab.search.study import workers
from tunelab.search.study.workers import WorkerPlan, plan_workers

CPU = torch.device("cpu")


@pytest.fixture
def four_cores(monkeypatch):
    monkeypatch.setattr(workers, "usable_cores", lambda: 4)
    monkeypatch.setattr(workers, "_memory_cap", lambda data: 1 << 16)


@pytest.mark.parametrize(
    ("asked", "plan"),
    [
        ({}, WorkerPlan(4, 1)),  # auto: small CNNs train as fast on one thread as on two
        ({"threads": 2}, WorkerPlan(2, 2)),
        ({"workers": 1}, WorkerPlan(1, 4)),  # one worker gets every core
        ({"workers": 3, "threads": 1}, WorkerPlan(3, 1)),
    ],
)
def test_cpu_plans_fill_the_cores(four_cores, digits, asked, plan):
    assert plan_workers(StudySpec(task="cnn", **asked), CPU, digits) == plan


def test_memory_caps_automatic_workers(monkeypatch, digits):
    monkeypatch.setattr(workers, "usable_cores", lambda: 8)
    monkeypatch.setattr(workers, "_memory_cap", lambda data: 3)
    assert plan_workers(StudySpec(task="cnn"), CPU, digits) == WorkerPlan(3, 1)


def test_a_single_accelerator_is_not_shared_by_default(digits):
    assert plan_workers(StudySpec(task="cnn"), torch.device("mps"), digits) == WorkerPlan(1, None)
