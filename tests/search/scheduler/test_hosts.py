"""Owner strings: what a worker writes on the trials it runs, and what readers take from it."""

import os

from tunelab.search.scheduler.hosts import new_owner, owner_pid, process_owner


def test_the_pid_is_read_back_from_every_owner_a_worker_writes():
    # benchmarks/chaos.py picks the worker to kill by this pid: when the owner gained its
    # worker field, a parser of its own read the start time instead, and no worker was killed
    assert owner_pid(new_owner()) == os.getpid()
    assert owner_pid(process_owner(4321)) == 4321
    assert owner_pid(process_owner(worker="thread-2")) == os.getpid()
    assert owner_pid("host:77:123.5") == 77  # tunelab 0.2: machine:pid:start
    assert owner_pid("garbage") is None
