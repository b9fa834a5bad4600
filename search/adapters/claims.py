"""Exactly-once decisions across workers: a claim is a row that only one process can insert.

Several workers may see the same event at once (a paused trial ready to resume, an
interrupted trial to retry) and each would act on it. A claim is a row in a small table of the
study's own database, `tunelab_claims`, keyed by (study, key): the database's primary key lets
exactly one insert succeed, whichever machine it comes from.
"""

from __future__ import annotations

import contextlib

import optuna
import sqlalchemy

_METADATA = sqlalchemy.MetaData()
CLAIMS = sqlalchemy.Table(
    "tunelab_claims",
    _METADATA,
    sqlalchemy.Column("study_id", sqlalchemy.Integer, primary_key=True),
    sqlalchemy.Column("claim_key", sqlalchemy.String(255), primary_key=True),
)


def _engine(study: optuna.Study) -> sqlalchemy.engine.Engine | None:
    """The SQLAlchemy engine of the study's RDB storage (None for an in-memory study)."""
    storage = study._storage  # Optuna's RDBStorage has no public accessor for this
    while isinstance(getattr(storage, "_backend", None), optuna.storages.BaseStorage):
        storage = storage._backend  # the heartbeat / cache wrappers around the RDB storage
    return getattr(storage, "engine", None)


def claim(study: optuna.Study, key: str) -> bool:
    """True for exactly one caller per (study, key); False for every later one."""
    engine = _engine(study)
    if engine is None:  # an in-memory study lives in one process: claims are local
        local = study.__dict__.setdefault("_tunelab_claims", set())
        if key in local:
            return False
        local.add(key)
        return True
    # another worker may create the table at the same moment: then it exists, as wanted
    with contextlib.suppress(sqlalchemy.exc.DatabaseError):
        _METADATA.create_all(engine, checkfirst=True)
    study_id = study._study_id
    try:
        with engine.begin() as connection:
            connection.execute(CLAIMS.insert().values(study_id=study_id, claim_key=key))
    except sqlalchemy.exc.IntegrityError:
        return False
    return True


def forget_claims(study: optuna.Study) -> None:
    """Drop the claims recorded under this study's id: a new study may reuse the id of a
    deleted one (SQLite does), and must not inherit its decisions."""
    engine = _engine(study)
    if engine is None:
        study.__dict__.pop("_tunelab_claims", None)
        return
    with contextlib.suppress(sqlalchemy.exc.DatabaseError):
        _METADATA.create_all(engine, checkfirst=True)
    with engine.begin() as connection:
        connection.execute(CLAIMS.delete().where(CLAIMS.c.study_id == study._study_id))
