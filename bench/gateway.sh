#!/usr/bin/env bash
# Benchmarks Tideway's gateway against nginx as a reverse proxy, with the same upstream.
#
# Builds `tideway` in release mode, starts `tideway server` with its gateway on a free
# loopback port and deploys bench/gateway/upstream (nginx answering "hello, world\n") as the
# app `bench`. The very same upstream instance is then loaded with wrk through three targets:
#
#   direct    the upstream instance itself
#   gateway   the Tideway gateway, routing Host: bench.default.localhost to the instance
#   nginx     nginx as a reverse proxy (keep-alive pool of 64) in front of the instance
#
# The rounds run interleaved (direct, gateway, nginx, direct, ...), one wrk run each. The
# script prints one line per run, the median of the rounds per target, and two verdicts:
# the gateway/nginx throughput ratio (goal >= 1.0) and the p99 the gateway adds over direct
# (goal <= 1 ms). A missed goal is a result: the script exits non-zero only when it cannot
# set itself up. wrk, nginx and curl are installed with apt-get when missing.
#
# Environment:
#   CONNS             wrk connections (default 64)
#   THREADS           wrk threads (default 2)
#   DURATION          length of each wrk run (default 25s)
#   ROUNDS            rounds of the three targets (default 2)
#   WARMUP            length of one unreported wrk run per target first (default 3s; 0 = none)
#   NGINX_WORKERS     worker_processes of the nginx proxy (default auto)
#   UPSTREAM_WORKERS  worker_processes of the upstream nginx (default 1)
#   SKIP_GATEWAY      1 = run without the Tideway gateway: direct and nginx only (for a
#                     tideway without --gateway-addr)
#   KEEP_TMP          1 = keep the temp directory (logs, wrk outputs) instead of removing it
#   CARGO_TARGET_DIR  build directory (default $HOME/.cache/tideway-target)
#   TIDEWAY_BIN       use this tideway binary instead of building one
#   TIDEWAY_BENCH_STARTUP_SECS  how long to wait for each thing to come up (default 60)
#
# On exit, also on failure or Ctrl-C, it scales the app to 0, stops the server (SIGTERM) and
# the nginx proxy, SIGKILLs whatever process still runs in the server's data directory
# (instances outlive the control plane by design), removes their leftover cgroups and the
# temp directory. On failure it prints the logs of the server, the deploy and nginx.
set -euo pipefail

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tideway-target}"
CONNS="${CONNS:-64}"
THREADS="${THREADS:-2}"
DURATION="${DURATION:-25s}"
ROUNDS="${ROUNDS:-2}"
WARMUP="${WARMUP:-3s}"
NGINX_WORKERS="${NGINX_WORKERS:-auto}"
UPSTREAM_WORKERS="${UPSTREAM_WORKERS:-1}"
SKIP_GATEWAY="${SKIP_GATEWAY:-0}"
KEEP_TMP="${KEEP_TMP:-0}"
STARTUP_SECS="${TIDEWAY_BENCH_STARTUP_SECS:-60}"

APP=bench
NAMESPACE=default
HOST_HEADER="$APP.$NAMESPACE.localhost"
EXPECTED_BODY="hello, world"
# Goals.
MIN_RATIO=1.0
MAX_ADDED_P99_MS=1

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH_DIR="$REPO_ROOT/bench/gateway"
WORK_DIR=""
DATA_DIR=""
SERVER_PID=""
SERVER_LOG=""
API_URL=""
TOKEN=""
DEPLOYED=0
PROXY_PID=""
NGINX_BIN=""
TIDEWAY_BIN="${TIDEWAY_BIN:-}"
SUDO=()

log() { printf 'gateway.sh: %s\n' "$*" >&2; }

fail() {
    log "$*"
    exit 1
}

is_true() {
    case "${1,,}" in
    1 | true | yes | on) return 0 ;;
    *) return 1 ;;
    esac
}

# ---- setup helpers -------------------------------------------------------------------------

find_nginx() {
    NGINX_BIN="$(command -v nginx 2>/dev/null || true)"
    if [[ -z "$NGINX_BIN" && -x /usr/sbin/nginx ]]; then
        NGINX_BIN=/usr/sbin/nginx
    fi
}

# Installs wrk, nginx and curl from Debian's packages when they are missing.
ensure_tools() {
    local missing=()
    command -v wrk >/dev/null 2>&1 || missing+=(wrk)
    find_nginx
    [[ -n "$NGINX_BIN" ]] || missing+=(nginx)
    command -v curl >/dev/null 2>&1 || missing+=(curl)
    if ((${#missing[@]} > 0)); then
        if ((EUID != 0)); then
            command -v sudo >/dev/null 2>&1 ||
                fail "missing ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root"
            SUDO=(sudo)
        fi
        command -v apt-get >/dev/null 2>&1 || fail "missing ${missing[*]} and no apt-get to install them"
        log "installing ${missing[*]} with apt-get"
        "${SUDO[@]}" apt-get update -qq
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    command -v wrk >/dev/null 2>&1 || fail "wrk is not installed"
    command -v curl >/dev/null 2>&1 || fail "curl is not installed"
    find_nginx
    [[ -n "$NGINX_BIN" ]] || fail "nginx is not installed"
}

# Sets FREE_PORT to a TCP port on 127.0.0.1 that nothing listens on, below the ephemeral
# range so no outgoing connection holds it. Ports handed out before are not handed out again.
USED_PORTS=" "
FREE_PORT=""
free_port() {
    local port i
    for ((i = 0; i < 200; i++)); do
        port=$((20000 + RANDOM % 12000))
        [[ "$USED_PORTS" == *" $port "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            USED_PORTS+="$port "
            FREE_PORT="$port"
            return 0
        fi
    done
    fail "found no free port on 127.0.0.1"
}

# body URL: the response body of GET URL with the bench's Host header ("" on any error).
body() {
    curl -sS --max-time 2 -H "Host: $HOST_HEADER" "$1" 2>/dev/null || true
}

# wait_for_body LABEL URL [PID]: until URL answers with the upstream's body.
wait_for_body() {
    local label="$1" url="$2" pid="${3:-}" i
    for ((i = 0; i < STARTUP_SECS * 10; i++)); do
        [[ "$(body "$url")" == "$EXPECTED_BODY" ]] && return 0
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            fail "$label exited during startup"
        fi
        sleep 0.1
    done
    fail "$label: GET $url did not answer '$EXPECTED_BODY' within ${STARTUP_SECS} s"
}

api() {
    local method="$1" path="$2"
    shift 2
    curl -sS --fail-with-body --max-time 10 -X "$method" \
        -H "Authorization: Bearer $TOKEN" "$@" "$API_URL/api/v1/$path"
}

require_server_alive() {
    kill -0 "$SERVER_PID" 2>/dev/null || fail "server exited during startup"
}

# ---- setup ---------------------------------------------------------------------------------

start_server() {
    local gateway_addr="$1" i
    DATA_DIR="$WORK_DIR/data"
    SERVER_LOG="$WORK_DIR/server.log"
    mkdir -p "$DATA_DIR"
    local cmd=("$TIDEWAY_BIN" server --data-dir "$DATA_DIR" --api-addr 127.0.0.1:0
        --grpc-addr 127.0.0.1:0 --otlp-addr 127.0.0.1:0 --eureka-addr 127.0.0.1:0 --consul-addr 127.0.0.1:0)
    if [[ -n "$gateway_addr" ]]; then
        cmd+=(--gateway-addr "$gateway_addr")
    fi
    log "starting ${cmd[*]}"
    "${cmd[@]}" >"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!

    # The URL comes from the stdout line `tideway: api listening on http://127.0.0.1:PORT`.
    for ((i = 0; i < STARTUP_SECS * 10; i++)); do
        API_URL="$(sed -n 's|^.*tideway: api listening on \(https\{0,1\}://[^[:space:]]*\).*$|\1|p' "$SERVER_LOG" | head -n 1)"
        [[ -n "$API_URL" ]] && break
        require_server_alive
        sleep 0.1
    done
    [[ -n "$API_URL" ]] || fail "no 'api listening on' line within ${STARTUP_SECS} s"

    # The admin token is written to <data-dir>/admin-token on first start.
    for ((i = 0; i < STARTUP_SECS * 10; i++)); do
        if [[ -s "$DATA_DIR/admin-token" ]]; then
            TOKEN="$(tr -d '[:space:]' <"$DATA_DIR/admin-token")"
            [[ -n "$TOKEN" ]] && break
        fi
        require_server_alive
        sleep 0.1
    done
    [[ -n "$TOKEN" ]] || fail "$DATA_DIR/admin-token did not appear within ${STARTUP_SECS} s"

    for ((i = 0; i < STARTUP_SECS * 10; i++)); do
        if [[ "$(curl -sS -o /dev/null -w '%{http_code}' --max-time 2 "$API_URL/healthz" 2>/dev/null || true)" == 200 ]]; then
            break
        fi
        require_server_alive
        sleep 0.1
    done
    ((i < STARTUP_SECS * 10)) || fail "GET $API_URL/healthz did not answer 200 within ${STARTUP_SECS} s"
    log "server up at $API_URL (pid $SERVER_PID)"
}

# Deploys a copy of bench/gateway/upstream as the app; sets UPSTREAM to its instance's address.
deploy_upstream() {
    local app_dir="$WORK_DIR/app" deploy_log="$WORK_DIR/deploy.log" address="" i
    mkdir -p "$app_dir"
    cp "$BENCH_DIR/upstream/tideway.toml" "$BENCH_DIR/upstream/start.sh" \
        "$BENCH_DIR/upstream/nginx.conf.tpl" "$app_dir/"
    printf '\n[env]\nNGINX_WORKERS = "%s"\n' "$UPSTREAM_WORKERS" >>"$app_dir/tideway.toml"
    log "deploying $app_dir as $NAMESPACE/$APP"
    DEPLOYED=1
    if ! TIDEWAY_URL="$API_URL" TIDEWAY_TOKEN="$TOKEN" \
        "$TIDEWAY_BIN" deploy "$app_dir" --namespace "$NAMESPACE" --app "$APP" \
        --replicas 1 --wait >"$deploy_log" 2>&1; then
        log "deploy failed; its output:"
        cat "$deploy_log" >&2
        log "instance output:"
        TIDEWAY_URL="$API_URL" TIDEWAY_TOKEN="$TOKEN" \
            "$TIDEWAY_BIN" logs "$APP" --namespace "$NAMESPACE" --tail 50 >&2 || true
        fail "could not deploy the upstream"
    fi
    # The one instance's address, e.g. "127.0.0.1:41234"; serde writes compact JSON.
    for ((i = 0; i < STARTUP_SECS * 10; i++)); do
        address="$(api GET "namespaces/$NAMESPACE/apps/$APP/instances" 2>/dev/null |
            grep -o '"address":"[^"]*"' | head -n 1 | sed 's/^"address":"\(.*\)"$/\1/' || true)"
        [[ -n "$address" ]] && break
        require_server_alive
        sleep 0.1
    done
    [[ "$address" =~ ^[0-9.]+:[0-9]+$ ]] ||
        fail "no instance address for $NAMESPACE/$APP within ${STARTUP_SECS} s (got '$address')"
    UPSTREAM="$address"
}

# start_proxy LISTEN_PORT UPSTREAM_ADDRESS
start_proxy() {
    local port="$1" upstream="$2" dir="$WORK_DIR/nginx-proxy"
    mkdir -p "$dir/logs" "$dir/tmp"
    sed -e "s|__LISTEN__|127.0.0.1:$port|g" \
        -e "s|__UPSTREAM__|$upstream|g" \
        -e "s|__WORKERS__|$NGINX_WORKERS|g" \
        "$BENCH_DIR/proxy.conf.tpl" >"$dir/nginx.conf"
    local nginx=("$NGINX_BIN" -p "$dir/" -c "$dir/nginx.conf" -e stderr)
    "${nginx[@]}" -t -q >"$dir/nginx.log" 2>&1 || {
        cat "$dir/nginx.log" >&2
        fail "nginx -t refused $dir/nginx.conf"
    }
    log "starting nginx proxy on 127.0.0.1:$port (worker_processes $NGINX_WORKERS)"
    "${nginx[@]}" -g 'daemon off;' >>"$dir/nginx.log" 2>&1 &
    PROXY_PID=$!
}

# ---- cleanup -------------------------------------------------------------------------------

# stop_pid PID LABEL: SIGTERM, SIGKILL after 20 s, then reap.
stop_pid() {
    local pid="$1" label="$2" i
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 200; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$label $pid ignored SIGTERM for 20 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
}

# Scales the app to 0 so the runtime stops its instances and removes their cgroups itself.
scale_down() {
    ((DEPLOYED)) || return 0
    DEPLOYED=0
    [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null || return 0
    api PUT "namespaces/$NAMESPACE/apps/$APP/scale" -H 'Content-Type: application/json' \
        -d '{"replicas":0}' >/dev/null 2>&1 || return 0
    local i listing
    for ((i = 0; i < 150; i++)); do
        listing="$(api GET "namespaces/$NAMESPACE/apps/$APP/instances" 2>/dev/null || true)"
        [[ "$listing" == *'"items":[]'* ]] && return 0
        sleep 0.1
    done
}

# The pids of processes whose working directory is under $DATA_DIR (instances and shims).
processes_under_data_dir() {
    [[ -n "$DATA_DIR" && -d "$DATA_DIR" ]] || return 0
    local root cwd p pid
    root="$(cd "$DATA_DIR" && pwd -P)"
    for p in /proc/[0-9]*; do
        pid="${p#/proc/}"
        [[ "$pid" == "$$" ]] && continue
        cwd="$(readlink "$p/cwd" 2>/dev/null || true)"
        if [[ "$cwd" == "$root" || "$cwd" == "$root/"* ]]; then
            printf '%s\n' "$pid"
        fi
    done
}

kill_instances() {
    [[ -n "$DATA_DIR" && -d "$DATA_DIR" ]] || return 0
    local pids=() pid ids=() id i
    if [[ -d "$DATA_DIR/runtime/instances" ]]; then
        for id in "$DATA_DIR"/runtime/instances/*; do
            [[ -d "$id" ]] && ids+=("${id##*/}")
        done
    fi
    mapfile -t pids < <(processes_under_data_dir)
    if ((${#pids[@]} > 0)); then
        log "killing ${#pids[@]} leftover instance process(es): ${pids[*]}"
        kill -KILL "${pids[@]}" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            for pid in "${pids[@]}"; do
                if [[ -e "/proc/$pid" ]]; then
                    sleep 0.1
                    continue 2
                fi
            done
            break
        done
    fi
    # The cgroups the runtime would have removed on a stop: tideway/<instance id>.
    if ((${#ids[@]} > 0)) && [[ -d /sys/fs/cgroup ]]; then
        for id in "${ids[@]}"; do
            find /sys/fs/cgroup -maxdepth 8 -type d -name "$id" -path '*/tideway/*' \
                -exec rmdir {} \; 2>/dev/null || true
        done
    fi
}

print_logs() {
    local f
    for f in "$SERVER_LOG" "$WORK_DIR/deploy.log" "$WORK_DIR/nginx-proxy/nginx.log"; do
        if [[ -n "$f" && -s "$f" ]]; then
            log "$f, last 200 lines:"
            tail -n 200 "$f" >&2
        fi
    done
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ -n "$PROXY_PID" ]]; then
        stop_pid "$PROXY_PID" "nginx proxy"
        PROXY_PID=""
    fi
    scale_down
    if [[ -n "$SERVER_PID" ]]; then
        stop_pid "$SERVER_PID" server
        SERVER_PID=""
    fi
    kill_instances
    if ((status != 0)); then
        print_logs
    fi
    if [[ -n "$WORK_DIR" ]]; then
        if is_true "$KEEP_TMP"; then
            log "kept $WORK_DIR"
        else
            rm -rf "$WORK_DIR"
        fi
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- measuring -----------------------------------------------------------------------------

# parse_wrk FILE: "RPS P50_MS P99_MS SOCKET_ERRORS NON_2XX" from wrk --latency output.
parse_wrk() {
    awk '
        function ms(v,   n, u) {
            n = v + 0
            u = v
            sub(/^[0-9.]+/, "", u)
            if (u == "us") return n / 1000
            if (u == "ms") return n
            if (u == "s") return n * 1000
            if (u == "m") return n * 60000
            if (u == "h") return n * 3600000
            return -1
        }
        /^[[:space:]]*50%[[:space:]]/ { p50 = ms($2) }
        /^[[:space:]]*99%[[:space:]]/ { p99 = ms($2) }
        /^Requests\/sec:/ { rps = $2 + 0; seen = 1 }
        /Non-2xx or 3xx responses:/ { non2xx = $NF + 0 }
        /Socket errors:/ { errors = ($4 + 0) + ($6 + 0) + ($8 + 0) + ($10 + 0) }
        END {
            if (!seen || p50 == "" || p99 == "" || p50 < 0 || p99 < 0) exit 1
            printf "%.1f %.3f %.3f %d %d\n", rps, p50, p99, errors, non2xx
        }
    ' "$1"
}

# url_of TARGET
url_of() {
    case "$1" in
    direct) printf 'http://%s/\n' "$UPSTREAM" ;;
    gateway) printf 'http://127.0.0.1:%s/\n' "$GATEWAY_PORT" ;;
    nginx) printf 'http://127.0.0.1:%s/\n' "$PROXY_PORT" ;;
    esac
}

# run_wrk TARGET DURATION OUTFILE
run_wrk() {
    wrk -t"$THREADS" -c"$CONNS" -d"$2" --latency -H "Host: $HOST_HEADER" "$(url_of "$1")" >"$3" 2>&1 || {
        cat "$3" >&2
        fail "wrk failed against $1"
    }
}

# median: of the numbers on stdin, one per line.
median() {
    sort -g | awk '{ a[NR] = $1 } END {
        if (NR == 0) { print "nan"; exit }
        if (NR % 2) printf "%.3f\n", a[(NR + 1) / 2]
        else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2
    }'
}

# runs_of TARGET N: field N (1 = req/s, 2 = p50, 3 = p99, 4 = errors, 5 = non-2xx) of its runs.
runs_of() {
    awk -v t="$1" -v n="$2" '$1 == t { print $(n + 2) }' "$RESULTS"
}

# ---- main ----------------------------------------------------------------------------------

cd "$REPO_ROOT"
[[ "$CONNS" =~ ^[1-9][0-9]*$ ]] || fail "CONNS must be a positive integer (got '$CONNS')"
[[ "$THREADS" =~ ^[1-9][0-9]*$ ]] || fail "THREADS must be a positive integer (got '$THREADS')"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || fail "ROUNDS must be a positive integer (got '$ROUNDS')"
((CONNS >= THREADS)) || fail "CONNS ($CONNS) must be at least THREADS ($THREADS)"
ensure_tools

if [[ -n "$TIDEWAY_BIN" ]]; then
    [[ -x "$TIDEWAY_BIN" ]] || fail "TIDEWAY_BIN=$TIDEWAY_BIN is not an executable"
    log "using $TIDEWAY_BIN (TIDEWAY_BIN is set; not building)"
else
    log "building tideway (release) in $CARGO_TARGET_DIR"
    cargo build --release -p tideway
    TIDEWAY_BIN="$CARGO_TARGET_DIR/release/tideway"
    [[ -x "$TIDEWAY_BIN" ]] || fail "$TIDEWAY_BIN was not built"
fi

TARGETS=(direct gateway nginx)
GATEWAY_PORT=""
# What start_server passes to --gateway-addr ("" = no such flag).
GATEWAY_ADDR_ARG=""
HAS_GATEWAY=0
SERVER_HELP="$("$TIDEWAY_BIN" server --help 2>&1 || true)"
[[ "$SERVER_HELP" == *--gateway-addr* ]] && HAS_GATEWAY=1
if is_true "$SKIP_GATEWAY"; then
    TARGETS=(direct nginx)
    log "SKIP_GATEWAY is set: measuring direct and nginx only"
    # A gateway that is not measured still binds; keep it off its default port.
    ((HAS_GATEWAY)) && GATEWAY_ADDR_ARG="127.0.0.1:0"
elif ((HAS_GATEWAY)); then
    free_port
    GATEWAY_PORT="$FREE_PORT"
    GATEWAY_ADDR_ARG="127.0.0.1:$GATEWAY_PORT"
else
    fail "this tideway has no 'server --gateway-addr'; run with SKIP_GATEWAY=1 to measure direct and nginx only"
fi

WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/tideway-bench-gateway.XXXXXX")"
RESULTS="$WORK_DIR/results.txt"
: >"$RESULTS"

start_server "$GATEWAY_ADDR_ARG"
UPSTREAM=""
deploy_upstream
wait_for_body "upstream" "$(url_of direct)"
log "upstream instance at $UPSTREAM"

if [[ -n "$GATEWAY_PORT" ]]; then
    wait_for_body "gateway" "$(url_of gateway)" "$SERVER_PID"
    log "gateway at 127.0.0.1:$GATEWAY_PORT routes Host: $HOST_HEADER to it"
fi

free_port
PROXY_PORT="$FREE_PORT"
start_proxy "$PROXY_PORT" "$UPSTREAM"
wait_for_body "nginx proxy" "$(url_of nginx)" "$PROXY_PID"

printf 'gateway bench: wrk -t%s -c%s -d%s --latency, %s round(s) of %s; host has %s CPU(s), shared by wrk, the proxy and the upstream\n' \
    "$THREADS" "$CONNS" "$DURATION" "$ROUNDS" "${TARGETS[*]}" "$(nproc)"
printf 'upstream: nginx (worker_processes %s) at %s; nginx proxy: worker_processes %s; %s, %s\n' \
    "$UPSTREAM_WORKERS" "$UPSTREAM" "$NGINX_WORKERS" \
    "$("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //')" "$(wrk -v 2>&1 | head -n 1 | awk '{ print $1 " " $2 }')"

if [[ "$WARMUP" != 0 && -n "$WARMUP" ]]; then
    for target in "${TARGETS[@]}"; do
        log "warming up $target for $WARMUP"
        run_wrk "$target" "$WARMUP" "$WORK_DIR/wrk-$target-warmup.txt"
    done
fi

for ((round = 1; round <= ROUNDS; round++)); do
    for target in "${TARGETS[@]}"; do
        out="$WORK_DIR/wrk-$target-$round.txt"
        run_wrk "$target" "$DURATION" "$out"
        parsed="$(parse_wrk "$out")" || {
            cat "$out" >&2
            fail "cannot parse wrk's output for $target"
        }
        read -r rps p50 p99 errors non2xx <<<"$parsed"
        printf '%s %s %s\n' "$target" "$round" "$parsed" >>"$RESULTS"
        printf 'round %d/%d %-7s %10.1f req/s, p50 %7.3f ms, p99 %7.3f ms, socket errors %d, non-2xx %d\n' \
            "$round" "$ROUNDS" "$target" "$rps" "$p50" "$p99" "$errors" "$non2xx"
    done
done

echo
declare -A RPS P99 ERRS
for target in "${TARGETS[@]}"; do
    RPS[$target]="$(runs_of "$target" 1 | median)"
    p50="$(runs_of "$target" 2 | median)"
    P99[$target]="$(runs_of "$target" 3 | median)"
    ERRS[$target]="$(runs_of "$target" 4 | awk '{ s += $1 } END { print s + 0 }')"
    non2xx="$(runs_of "$target" 5 | awk '{ s += $1 } END { print s + 0 }')"
    ERRS[$target]=$((ERRS[$target] + non2xx))
    printf 'median  %-7s %10.1f req/s, p50 %7.3f ms, p99 %7.3f ms, errors %d (socket errors and non-2xx, all rounds)\n' \
        "$target" "${RPS[$target]}" "$p50" "${P99[$target]}" "${ERRS[$target]}"
done

echo
nginx_added="$(awk -v a="${P99[nginx]}" -v b="${P99[direct]}" 'BEGIN { printf "%.3f", a - b }')"
if [[ -z "$GATEWAY_PORT" ]]; then
    printf 'gateway/nginx throughput ratio: n/a (SKIP_GATEWAY)\n'
    printf 'added p99 over direct: gateway n/a, nginx %s ms\n' "$nginx_added"
    exit 0
fi
ratio="$(awk -v a="${RPS[gateway]}" -v b="${RPS[nginx]}" 'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')"
gateway_added="$(awk -v a="${P99[gateway]}" -v b="${P99[direct]}" 'BEGIN { printf "%.3f", a - b }')"
# A goal counts as met only when the gateway answered every request with a 2xx.
verdict() { # CONDITION
    if awk "BEGIN { exit !($1) }" && ((ERRS[gateway] == 0)); then echo PASS; else echo MISS; fi
}
errs_note=""
((ERRS[gateway] == 0)) || errs_note=" (gateway had ${ERRS[gateway]} errors)"
printf 'gateway/nginx throughput ratio: %s (goal >= %s) %s%s\n' \
    "$ratio" "$MIN_RATIO" "$(verdict "$ratio >= $MIN_RATIO")" "$errs_note"
printf 'added p99 over direct: gateway %s ms, nginx %s ms (goal for gateway <= %s ms) %s%s\n' \
    "$gateway_added" "$nginx_added" "$MAX_ADDED_P99_MS" "$(verdict "$gateway_added <= $MAX_ADDED_P99_MS")" "$errs_note"
