#!/bin/bash
# Entrypoint of localhost/livesandbox/postgres:15, following the official image's contract:
# POSTGRES_PASSWORD (required), POSTGRES_USER (default postgres), POSTGRES_DB (default app), PGDATA.
set -euo pipefail
: "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=app}"
: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA
BIN=/usr/lib/postgresql/15/bin
if [[ -z "${POSTGRES_PASSWORD:-}" ]]; then
  echo "error: POSTGRES_PASSWORD must be set" >&2
  exit 1
fi
as_pg() {
  if [[ "$(id -u)" == 0 ]]; then setpriv --reuid=postgres --regid=postgres --init-groups "$@"; else "$@"; fi
}
if [[ "$(id -u)" == 0 ]]; then
  mkdir -p "$PGDATA" /run/postgresql
  chown postgres:postgres "$PGDATA" /run/postgresql
  chmod 700 "$PGDATA"
fi
if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
  pw="$(mktemp)"
  printf '%s' "$POSTGRES_PASSWORD" > "$pw"
  [[ "$(id -u)" == 0 ]] && chown postgres "$pw"
  as_pg "$BIN/initdb" -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pw" --auth-local=trust \
    --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >&2
  rm -f "$pw"
  printf 'host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
  if [[ "$POSTGRES_DB" != postgres ]]; then
    echo "CREATE DATABASE \"$POSTGRES_DB\" OWNER \"$POSTGRES_USER\";" |
      as_pg "$BIN/postgres" --single -D "$PGDATA" postgres >/dev/null
  fi
  echo "initialized $PGDATA (user $POSTGRES_USER, db $POSTGRES_DB)" >&2
fi
exec_args=(-D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/run/postgresql "$@")
if [[ "$(id -u)" == 0 ]]; then
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$BIN/postgres" "${exec_args[@]}"
fi
exec "$BIN/postgres" "${exec_args[@]}"
