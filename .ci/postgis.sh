#!/usr/bin/env bash
# Install PostgreSQL + PostGIS (Debian packages), start a server on 127.0.0.1 and create the test database.
#
# Idempotent: safe to run again; it installs only what is missing, starts the server only when it is down
# and keeps an existing test user, password and database. The test database URL (no password) is
#     postgresql://$TEST_USER@127.0.0.1:$PORT/$TEST_DB
# and the password goes into ~/.pgpass (mode 600), where libpq finds it; it is never printed.
#
# Environment (all optional):
#   GIS_PLANNER_PG_PORT      port of the server (default 5432)
#   GIS_PLANNER_PG_USER      test user (default gis_planner)
#   GIS_PLANNER_PG_DB        test database (default gis_planner_test)
#   GIS_PLANNER_PG_NO_INSTALL=1   never call apt-get (start an installed server or fail)
set -euo pipefail

PORT="${GIS_PLANNER_PG_PORT:-5432}"
TEST_USER="${GIS_PLANNER_PG_USER:-gis_planner}"
TEST_DB="${GIS_PLANNER_PG_DB:-gis_planner_test}"
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

log() { echo "postgis.sh: $*" >&2; }

# 1. packages ---------------------------------------------------------------------------------------
have_postgis() {
    ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1
}
if ! command -v pg_lsclusters >/dev/null 2>&1 || ! have_postgis; then
    if [ "${GIS_PLANNER_PG_NO_INSTALL:-0}" = "1" ]; then
        log "PostgreSQL/PostGIS not installed and GIS_PLANNER_PG_NO_INSTALL=1"
        exit 3
    fi
    log "installing postgresql and postgis (Debian packages)"
    $SUDO apt-get update -qq
    # the PostGIS package matching the installed (or default) PostgreSQL major version
    major="$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1 || true)"
    if [ -z "$major" ]; then
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
        major="$(ls /usr/lib/postgresql | sort -n | tail -1)"
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "postgresql-${major}-postgis-3" >/dev/null
fi
major="$(ls /usr/lib/postgresql | sort -n | tail -1)"

# 2. cluster on 127.0.0.1:$PORT ---------------------------------------------------------------------
cluster="main"
if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "${major} ${cluster}"; then
    log "creating cluster ${major}/${cluster}"
    $SUDO pg_createcluster "$major" "$cluster" --port "$PORT" >/dev/null
fi
conf="/etc/postgresql/${major}/${cluster}/postgresql.conf"
changed=0
if ! grep -Eq "^listen_addresses *= *'127.0.0.1'" "$conf"; then
    $SUDO sed -i -E "s/^#?listen_addresses *=.*/listen_addresses = '127.0.0.1'/" "$conf"
    changed=1
fi
if ! grep -Eq "^port *= *${PORT}\b" "$conf"; then
    $SUDO sed -i -E "s/^#?port *=.*/port = ${PORT}/" "$conf"
    changed=1
fi
status="$(pg_lsclusters -h | awk -v m="$major" -v c="$cluster" '$1==m && $2==c {print $4}')"
if [ "$status" = "online" ] && [ "$changed" = "1" ]; then
    $SUDO pg_ctlcluster "$major" "$cluster" restart
elif [ "$status" != "online" ]; then
    log "starting cluster ${major}/${cluster} on 127.0.0.1:${PORT}"
    $SUDO pg_ctlcluster "$major" "$cluster" start
fi
for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 -p "$PORT" && break
    sleep 1
done
pg_isready -q -h 127.0.0.1 -p "$PORT" || { log "server did not come up on 127.0.0.1:${PORT}"; exit 4; }

# 3. test user, password (kept in ~/.pgpass), database with PostGIS ---------------------------------
as_postgres() {
    if [ "$(id -u)" = "0" ]; then su postgres -c "$1"; else sudo -u postgres sh -c "$1"; fi
}
psql_admin="psql -X -q -v ON_ERROR_STOP=1 -p ${PORT} -d postgres"
pgpass="${HOME}/.pgpass"
touch "$pgpass"
chmod 600 "$pgpass"
entry_prefix="127.0.0.1:${PORT}:*:${TEST_USER}:"
password="$(grep -F "$entry_prefix" "$pgpass" | head -1 | cut -d: -f5- || true)"
if [ -z "$password" ]; then
    password="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    echo "${entry_prefix}${password}" >> "$pgpass"
fi
exists="$(as_postgres "$psql_admin -tA -c \"SELECT 1 FROM pg_roles WHERE rolname = '${TEST_USER}'\"")"
verb="ALTER"
[ "$exists" = "1" ] || verb="CREATE"
# the password goes through stdin, never on a command line
printf "%s ROLE \"%s\" LOGIN PASSWORD '%s';\n" "$verb" "$TEST_USER" "$password" \
    | as_postgres "$psql_admin" >/dev/null
if [ "$(as_postgres "$psql_admin -tA -c \"SELECT 1 FROM pg_database WHERE datname = '${TEST_DB}'\"")" != "1" ]; then
    as_postgres "createdb -p ${PORT} -O ${TEST_USER} ${TEST_DB}"
fi
as_postgres "psql -X -q -v ON_ERROR_STOP=1 -p ${PORT} -d ${TEST_DB} -c 'SET client_min_messages TO warning' -c 'CREATE EXTENSION IF NOT EXISTS postgis'"
psql -X -q -h 127.0.0.1 -p "$PORT" -U "$TEST_USER" -d "$TEST_DB" -tA -c "SELECT postgis_lib_version()" >/dev/null
echo "postgresql://${TEST_USER}@127.0.0.1:${PORT}/${TEST_DB}"
