#!/usr/bin/env bash
# Benchmarks Tideway's REST API on every storage backend.
#
# Builds `tideway` and `tideway-bench-api` in release mode, then for each backend (sqlite,
# postgres) starts a server on a fresh data directory and a free loopback port, waits for
# /healthz, runs the bench against it and stops the server with SIGTERM. Arguments are passed
# on to the bench, e.g. `bench/api.sh --duration 5 --concurrency 16`.
#
# Environment:
#   CARGO_TARGET_DIR              build directory (default $HOME/.cache/tideway-target)
#   TIDEWAY_BENCH_BACKENDS        backends to run (default "sqlite postgres")
#   TIDEWAY_BENCH_POSTGRES_URL    server to create the bench database on
#                                 (default postgres://postgres@127.0.0.1:5432/test)
#   TIDEWAY_BENCH_STARTUP_SECS    how long to wait for a server to come up (default 60)
#
# A fresh database is created per postgres run and dropped afterwards, also on failure.
# Postgres is skipped with a message when psql or the database server is unavailable.
# On failure the server's log is printed and its temp directory kept.
set -euo pipefail

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tideway-target}"
BACKENDS="${TIDEWAY_BENCH_BACKENDS:-sqlite postgres}"
PG_BASE_URL="${TIDEWAY_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
STARTUP_SECS="${TIDEWAY_BENCH_STARTUP_SECS:-60}"
BENCH_ARGS=("$@")

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK_DIR=""
SERVER_PID=""
SERVER_LOG=""
PG_DB=""

log() { printf 'api.sh: %s\n' "$*" >&2; }

# Stops the running server, if any: SIGTERM, then SIGKILL after 20 s.
stop_server() {
    [[ -n "$SERVER_PID" ]] || return 0
    local pid="$SERVER_PID" status=0 i
    SERVER_PID=""
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 200; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "server $pid ignored SIGTERM for 20 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || status=$?
    if ((status != 0)); then
        log "server exited with status $status"
    fi
    return 0
}

drop_pg_db() {
    [[ -n "$PG_DB" ]] || return 0
    local db="$PG_DB"
    PG_DB=""
    psql "$PG_BASE_URL" -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 ||
        psql "$PG_BASE_URL" -q -v ON_ERROR_STOP=1 -c "DROP DATABASE IF EXISTS \"$db\"" >/dev/null ||
        log "could not drop database $db; drop it by hand"
}

print_server_log() {
    if [[ -n "$SERVER_LOG" && -s "$SERVER_LOG" ]]; then
        log "server log ($SERVER_LOG), last 200 lines:"
        tail -n 200 "$SERVER_LOG" >&2
    fi
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_server
    drop_pg_db
    if ((status != 0)); then
        print_server_log
        [[ -n "$WORK_DIR" ]] && log "kept $WORK_DIR for inspection"
    elif [[ -n "$WORK_DIR" ]]; then
        rm -rf "$WORK_DIR"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
    log "$*"
    exit 1
}

# Fails unless the server is still running.
require_server_alive() {
    kill -0 "$SERVER_PID" 2>/dev/null || fail "server exited during startup"
}

# run_backend LABEL [DATABASE_URL]
run_backend() {
    local label="$1" db_url="${2:-}"
    local dir="$WORK_DIR/$label"
    local data_dir="$dir/data"
    local url="" token="" i
    mkdir -p "$data_dir"
    SERVER_LOG="$dir/server.log"

    local cmd=("$TIDEWAY_BIN" server --data-dir "$data_dir" --api-addr 127.0.0.1:0 --gateway-addr 127.0.0.1:0
        --grpc-addr 127.0.0.1:0 --otlp-addr 127.0.0.1:0 --eureka-addr 127.0.0.1:0 --consul-addr 127.0.0.1:0)
    if [[ -n "$db_url" ]]; then
        cmd+=(--database-url "$db_url")
    fi
    log "$label: starting ${cmd[*]}"
    "${cmd[@]}" >"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!

    # The URL comes from the stdout line `tideway: api listening on http://127.0.0.1:PORT`.
    for ((i = 0; i < STARTUP_SECS * 10; i++)); do
        url="$(sed -n 's|^.*tideway: api listening on \(https\{0,1\}://[^[:space:]]*\).*$|\1|p' "$SERVER_LOG" | head -n 1)"
        [[ -n "$url" ]] && break
        require_server_alive
        sleep 0.1
    done
    [[ -n "$url" ]] || fail "$label: no 'api listening on' line within ${STARTUP_SECS} s"

    # The admin token is written to <data-dir>/admin-token on first start.
    for ((i = 0; i < STARTUP_SECS * 10; i++)); do
        if [[ -s "$data_dir/admin-token" ]]; then
            token="$(tr -d '[:space:]' <"$data_dir/admin-token")"
            [[ -n "$token" ]] && break
        fi
        require_server_alive
        sleep 0.1
    done
    [[ -n "$token" ]] || fail "$label: $data_dir/admin-token did not appear within ${STARTUP_SECS} s"

    for ((i = 0; i < STARTUP_SECS * 10; i++)); do
        if [[ "$(curl -sS -o /dev/null -w '%{http_code}' --max-time 2 "$url/healthz" 2>/dev/null || true)" == 200 ]]; then
            break
        fi
        require_server_alive
        sleep 0.1
    done
    ((i < STARTUP_SECS * 10)) || fail "$label: GET $url/healthz did not answer 200 within ${STARTUP_SECS} s"

    log "$label: server up at $url (pid $SERVER_PID)"
    TIDEWAY_TOKEN="$token" "$BENCH_BIN" --url "$url" --label "$label" ${BENCH_ARGS[@]+"${BENCH_ARGS[@]}"} ||
        fail "$label: the bench failed to set up"
    stop_server
    SERVER_LOG=""
}

# postgres://user@host:port/db?opts -> the same URL naming database $2.
pg_url_with_db() {
    local base="$1" db="$2" query="" no_query rest prefix
    no_query="${base%%\?*}"
    if [[ "$no_query" != "$base" ]]; then
        query="?${base#*\?}"
    fi
    rest="${no_query#*://}"
    if [[ "$rest" == */* ]]; then
        prefix="${no_query%/*}"
    else
        prefix="$no_query"
    fi
    printf '%s/%s%s\n' "$prefix" "$db" "$query"
}

run_postgres() {
    if ! command -v psql >/dev/null 2>&1; then
        log "postgres: skipped, psql is not installed"
        return 0
    fi
    if ! psql "$PG_BASE_URL" -Atq -c 'SELECT 1' >/dev/null 2>&1; then
        log "postgres: skipped, cannot connect to $PG_BASE_URL (set TIDEWAY_BENCH_POSTGRES_URL)"
        return 0
    fi
    local db
    db="tideway_bench_$$_$(date +%s)"
    psql "$PG_BASE_URL" -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db" >/dev/null ||
        fail "postgres: could not create database $db"
    PG_DB="$db"
    run_backend postgres "$(pg_url_with_db "$PG_BASE_URL" "$db")"
    drop_pg_db
}

cd "$REPO_ROOT"
command -v curl >/dev/null 2>&1 || fail "curl is required"
log "building tideway and tideway-bench-api (release) in $CARGO_TARGET_DIR"
cargo build --release -p tideway -p tideway-bench-api
TIDEWAY_BIN="$CARGO_TARGET_DIR/release/tideway"
BENCH_BIN="$CARGO_TARGET_DIR/release/tideway-bench-api"
[[ -x "$TIDEWAY_BIN" ]] || fail "$TIDEWAY_BIN was not built"
[[ -x "$BENCH_BIN" ]] || fail "$BENCH_BIN was not built"

WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/tideway-bench-api.XXXXXX")"
for backend in $BACKENDS; do
    case "$backend" in
    sqlite) run_backend sqlite ;;
    postgres) run_postgres ;;
    *) fail "unknown backend '$backend' in TIDEWAY_BENCH_BACKENDS (sqlite, postgres)" ;;
    esac
done
