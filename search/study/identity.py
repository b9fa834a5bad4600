"""A study's identity: a random id stored on the study, what its checkpoints are keyed by.

A study name does not identify a study: the same name exists in two storages (the default
names make it likely), and a study deleted and created again gets its old name. The id is set
when tunelab creates the study; a study created by an earlier tunelab gets one from the first
worker that needs it (exactly one: under the study's decision lock, a worker reads the id and
writes one only if there is none).
"""

from __future__ import annotations

import re
import uuid

import optuna

from tunelab.objectives import keys
from tunelab.search.adapters.storage import rdb_of
from tunelab.search.adapters.transient import retrying

NAME_PART = 40
"""Characters of the study name kept in its store key, for people browsing the store."""


def new_study_uid() -> str:
    return uuid.uuid4().hex


def study_uid(study: optuna.Study) -> str:
    """The study's id, added once to a study that has none."""
    uid = study.user_attrs.get(keys.STUDY_UID)
    if uid:
        return uid
    storage = rdb_of(study)
    if storage is None:  # an in-memory study: one process
        study.set_user_attr(keys.STUDY_UID, new_study_uid())
        return study.user_attrs[keys.STUDY_UID]
    return retrying(
        lambda: storage.set_study_attr_once(study._study_id, keys.STUDY_UID, new_study_uid())
    )


def study_key(study: optuna.Study) -> str:
    """The study's folder name in a checkpoint store: its name made safe, then its id.

    One path component of letters, digits, '.', '_' and '-' that never starts with a dot,
    whatever the study's name: no path derived from it leaves the store's root.
    """
    name = re.sub(r"[^A-Za-z0-9._-]", "_", study.study_name)[:NAME_PART].lstrip(".")
    return f"{name or 'study'}-{study_uid(study)}"
