#!/usr/bin/env python3
"""Create tunelab's PostgreSQL databases where they are missing.

The `init` service of docker-compose.yml, and just as well a local process:

    TUNELAB_STORAGE=postgresql+psycopg://user:password@host:5432/optuna \\
    MLFLOW_BACKEND_STORE_URI=postgresql+psycopg://user:password@host:5432/mlflow \\
    python docker/create_databases.py

Each variable that is set must hold a PostgreSQL URL; the database it names is created (with
the URL's credentials, through the server's `postgres` maintenance database) unless it exists.
The server may still be starting: the script waits up to TUNELAB_DB_WAIT seconds (60) for it.
Exit status 0 when every database exists, 1 when the server cannot be used, 2 for bad input.
"""

from __future__ import annotations

import os
import sys
import time

URL_VARIABLES = ("TUNELAB_STORAGE", "MLFLOW_BACKEND_STORE_URI")
MAINTENANCE_DB = "postgres"


class InputError(ValueError):
    """A missing or malformed URL: exit status 2."""


def database_targets(environ: dict[str, str]) -> list[tuple[str, dict]]:
    """(database, connection keywords for the maintenance database) for every URL given."""
    from sqlalchemy.engine import make_url

    targets = []
    for variable in URL_VARIABLES:
        text = environ.get(variable)
        if not text:
            continue
        try:
            url = make_url(text)
        except Exception:  # ArgumentError or ValueError: both mean the same to a user
            raise InputError(f"{variable} is not a database URL") from None
        if url.get_backend_name() != "postgresql" or not url.database:
            raise InputError(f"{variable} must be a postgresql URL naming a database")
        connect = {
            "host": url.host or "localhost",
            "port": url.port or 5432,
            "user": url.username,
            "password": url.password,
        }
        targets.append((url.database, {k: v for k, v in connect.items() if v is not None}))
    if not targets:
        raise InputError(f"set {' and/or '.join(URL_VARIABLES)}")
    return targets


def connect(params: dict, deadline: float):
    """A connection to the maintenance database, retried until the deadline."""
    import psycopg

    while True:
        try:
            return psycopg.connect(
                dbname=MAINTENANCE_DB, autocommit=True, connect_timeout=5, **params
            )
        except psycopg.OperationalError as exc:
            if time.monotonic() >= deadline:
                raise
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "no answer"
            print(
                f"waiting for PostgreSQL at {params['host']}:{params['port']}: {reason}",
                file=sys.stderr,
            )
            time.sleep(2)


def ensure_database(connection, name: str) -> bool:
    """Create the database unless it exists; True when this call created it."""
    import psycopg
    from psycopg import sql

    exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
    if exists.fetchone():
        return False
    try:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.errors.DuplicateDatabase:  # another init got there first
        return False
    return True


def main(environ: dict[str, str] | None = None) -> int:
    import psycopg

    environ = dict(os.environ if environ is None else environ)
    try:
        targets = database_targets(environ)
        wait_s = float(environ.get("TUNELAB_DB_WAIT", "60"))
    except (InputError, ValueError) as exc:
        print(f"create_databases: error: {exc}", file=sys.stderr)
        return 2
    deadline = time.monotonic() + wait_s
    for name, params in targets:
        try:
            with connect(params, deadline) as connection:
                created = ensure_database(connection, name)
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            print(f"create_databases: error: database '{name}': {reason}", file=sys.stderr)
            return 1
        print(f"database '{name}' {'created' if created else 'exists'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
