#!/bin/sh
# The official postgres image's contract, in short: the first start creates the cluster in
# $PGDATA with POSTGRES_USER / POSTGRES_PASSWORD (password auth for TCP); then the server
# runs in the foreground. `postgres -c ...` arguments are passed on, as there.
set -eu
umask 077
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "postgres-entrypoint: error: POSTGRES_PASSWORD is not set" >&2
        exit 2
    fi
    # A file, not an argument: the password never shows in a process list.
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    # UTF8, as in the official image: initdb's default here is SQL_ASCII, whose text psycopg
    # returns as bytes (SQLAlchemy then fails on the server's version string).
    "$bin/initdb" --pgdata="$PGDATA" --username="${POSTGRES_USER:-postgres}" \
        --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 > /dev/null
    rm -f "$pwfile"
    # Other containers (a bridge network) connect from outside 127.0.0.1; with a password.
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
fi
unset POSTGRES_PASSWORD
if [ "${1:-}" = postgres ]; then
    shift
fi
exec "$bin/postgres" -c listen_addresses='*' "$@"
