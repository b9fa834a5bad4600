"""Claims: exactly one of several workers acts on an event, on SQLite and PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import optuna

from tunelab.search.adapters.claims import claim, forget_claims


def test_exactly_one_of_many_concurrent_claims_wins(storage_url):
    optuna.create_study(study_name="s", storage=storage_url)
    handles = [optuna.load_study(study_name="s", storage=storage_url) for _ in range(6)]
    with ThreadPoolExecutor(len(handles)) as pool:
        won = list(pool.map(lambda study: claim(study, "resume-3"), handles))
    assert won.count(True) == 1
    assert claim(handles[0], "resume-4")  # another key is another decision


def test_claims_are_per_study(storage_url):
    first = optuna.create_study(study_name="a", storage=storage_url)
    second = optuna.create_study(study_name="b", storage=storage_url)
    assert claim(first, "retry-0") and claim(second, "retry-0")
    assert not claim(first, "retry-0")


def test_an_in_memory_study_claims_locally():
    study = optuna.create_study()
    assert claim(study, "k") and not claim(study, "k")


def test_a_recreated_study_does_not_inherit_the_claims_of_a_deleted_one(tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    old = optuna.create_study(study_name="s", storage=storage)
    assert claim(old, "retry-0")
    optuna.delete_study(study_name="s", storage=storage)
    new = optuna.create_study(study_name="s", storage=storage)
    assert new._study_id == old._study_id  # SQLite reuses the id
    forget_claims(new)
    assert claim(new, "retry-0")
