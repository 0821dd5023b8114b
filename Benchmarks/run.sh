#!/usr/bin/env bash
# Benchmarks/run.sh — the one command that measures Swoop against a plain SwiftNIO server.
#
#   bash Benchmarks/run.sh                      # DURATION=10 s, ROUNDS=3
#   DURATION=5 ROUNDS=5 bash Benchmarks/run.sh
#   SMOKE=1 bash Benchmarks/run.sh              # seconds-long check that everything runs
#   BUILD=0 bash Benchmarks/run.sh              # measure the binaries already built
#
# What it does, in one run, so that every figure comes from the same machine state:
#   1. builds swoop-demo (release, in the repository root) and this package (release);
#   2. for each round, for each scenario in turn (interleaved, so slow drift of a shared
#      machine spreads over all of them): starts the server pinned to CPU 0, times its
#      start-up to the ready line, reads its resident memory when idle, drives it with
#      swoop-load pinned to CPU 1 (64 connections, warm-up, then DURATION seconds) while
#      sampling its memory, and stops it;
#   3. takes the median of each figure over the rounds and prints one markdown table with
#      each figure's ratio to the NIO baseline's, also written to results/latest.md and a
#      timestamped copy (a SMOKE run writes results/smoke.md only).
#
# Scenarios now:
#   baseline    nio-baseline --threads 2                                   line echo
#   swoop_echo  swoop-demo --reactor-num 2 --worker-num 2                  line echo
#   swoop_task  swoop-demo --reactor-num 2 --worker-num 2 --task-worker-num 2, taskwait
#
# Planned (hooks below, not run: the flags they need do not exist yet):
#   swoop_base     swoop-demo --mode base: workers own their connections, no reactor hop
#                  (Swoole's SWOOLE_BASE); same echo load, one more column.
#   http_wrk       swoop-demo --http-port 0 driven by wrk (Debian package `wrk`) pinned to
#                  CPU 1; needs an HTTP baseline (NIOHTTP1) for its ratio, and its own
#                  columns (wrk reports Requests/sec and a latency distribution).
#   reload_load    SIGUSR1 to the master in the middle of an echo load: errors must stay 0;
#                  report the time from the signal to every new worker serving and the
#                  worst latency around it.
#
# Every server started here is stopped by pid (SIGTERM, then SIGKILL after 10 s, the same
# for any descendant that outlives its master) from a trap on EXIT, also on failure or
# Ctrl-C. Nothing is looked up by name.
set -euo pipefail
export LC_ALL=C  # '.' decimals from EPOCHREALTIME, printf and sort, whatever the locale.

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

if [[ "${SMOKE:-0}" == 1 ]]; then
    DURATION=1 ROUNDS=1 WARMUP=0.5 IDLE_SETTLE=0.25
else
    DURATION="${DURATION:-10}" ROUNDS="${ROUNDS:-3}" WARMUP="${WARMUP:-2}" IDLE_SETTLE="${IDLE_SETTLE:-1}"
fi
CONNECTIONS=64
PIPELINE="${PIPELINE:-1}"
SERVER_CPU=0
LOAD_CPU=1
STOP_GRACE_S=10

SCENARIOS=(baseline swoop_echo swoop_task)
declare -A TITLE=(
    [baseline]="nio-baseline, echo"
    [swoop_echo]="Swoop process mode, echo"
    [swoop_task]="Swoop task round trip"
)

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------
# Preconditions
# ---------------------------------------------------------------------------------------
(( BASH_VERSINFO[0] >= 5 )) || die "needs bash 5 or later (for \$EPOCHREALTIME)"
command -v taskset >/dev/null ||
    die "taskset not found: it comes with util-linux (Debian: apt-get install util-linux)"
command -v swift >/dev/null || die "swift not found on PATH"
[[ "$(nproc)" -ge 2 ]] || die "needs at least 2 CPUs (server on CPU $SERVER_CPU, load on CPU $LOAD_CPU)"
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer, not '$ROUNDS'"
[[ "$DURATION" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "DURATION must be seconds, not '$DURATION'"

# ---------------------------------------------------------------------------------------
# Process bookkeeping: everything started here is stopped by pid, whatever happens.
# ---------------------------------------------------------------------------------------
work="$(mktemp -d -t swoop-bench.XXXXXX)"
declare -A LIVE_SERVERS=()   # master pid -> its start time (guards against a reused pid)
HELPER_PIDS=()               # load generators and stdout drains

# The start time of a process (field 22 of /proc/PID/stat), or nothing if it is gone.
start_time() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 0
    stat="${stat##*) }"      # the command name may hold spaces; the fields after it do not
    local fields
    read -r -a fields <<<"$stat"
    echo "${fields[19]}"
}

# Whether a process exists and is not a zombie waiting to be reaped.
is_alive() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [[ "${stat:0:1}" != Z ]]
}

# The pid given and all its descendants, parents first.
descendants() {
    local pid="$1" child
    echo "$pid"
    for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
        descendants "$child"
    done
}

# SIGTERM to the master; SIGKILL after STOP_GRACE_S to it and every process of its tree that
# is still the one we saw (same pid, same start time).
stop_tree() {
    local master="$1" pid i
    local -A tree=()
    for pid in $(descendants "$master"); do tree[$pid]="$(start_time "$pid")"; done
    kill -TERM "$master" 2>/dev/null || true
    for ((i = 0; i < STOP_GRACE_S * 20; i++)); do
        is_alive "$master" || break
        sleep 0.05
    done
    # Children get a moment after the master: it waits for them, but not by contract.
    for ((i = 0; i < 40; i++)); do
        local left=0
        for pid in "${!tree[@]}"; do
            if is_alive "$pid" && [[ "$(start_time "$pid")" == "${tree[$pid]}" ]]; then left=1; fi
        done
        (( left )) || break
        is_alive "$master" && break   # the master itself is stuck: no point waiting more
        sleep 0.05
    done
    for pid in "${!tree[@]}"; do
        if is_alive "$pid" && [[ "$(start_time "$pid")" == "${tree[$pid]}" ]]; then
            log "pid $pid still running after SIGTERM to $master: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    unset "LIVE_SERVERS[$master]"
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${!LIVE_SERVERS[@]}"; do
        if [[ "$(start_time "$pid")" == "${LIVE_SERVERS[$pid]}" ]]; then stop_tree "$pid"; fi
    done
    for pid in "${HELPER_PIDS[@]}"; do
        is_alive "$pid" && kill -TERM "$pid" 2>/dev/null || true
    done
    if (( status == 0 )); then rm -rf "$work"; else log "logs kept in $work"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------------------

# Resident memory of a process tree in KiB: VmRSS of the master and every descendant.
# Shared pages count once per process, as `ps` would show them: an upper bound on what the
# tree really holds, and the figure an operator sees.
rss_tree_kb() {
    local total=0 pid key value rest
    for pid in $(descendants "$1"); do
        while read -r key value rest; do
            if [[ "$key" == VmRSS: ]]; then total=$((total + value)); break; fi
        done <"/proc/$pid/status" 2>/dev/null || true
    done
    echo "$total"
}

# Starts a server pinned to SERVER_CPU and waits for its ready line on stdout.
# Sets SERVER_PID, SERVER_PORT and SERVER_STARTUP_MS.
start_server() {
    local label="$1" fd line
    shift
    local began="$EPOCHREALTIME"
    # Read stdout through a pipe, so the ready line is seen the moment it is written
    # (no polling: the start-up time is exact). `exec` keeps the pid of the server itself.
    exec {fd}< <(exec taskset -c "$SERVER_CPU" "$@" 2>"$work/$label.stderr")
    SERVER_PID=$!
    LIVE_SERVERS[$SERVER_PID]="$(start_time "$SERVER_PID")"
    if ! IFS= read -r -t 60 -u "$fd" line; then
        exec {fd}<&-
        tail -n 20 "$work/$label.stderr" >&2 || true
        die "$label: no ready line within 60 s"
    fi
    SERVER_STARTUP_MS="$(awk -v a="$began" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", (b - a) * 1000 }')"
    # Keep draining its stdout, so a chatty server never blocks on a full pipe.
    cat <&"$fd" >"$work/$label.stdout" &
    HELPER_PIDS+=("$!")
    exec {fd}<&-
    [[ " $line" =~ \ port=([0-9]+) ]] || die "$label: no port in its ready line: $line"
    SERVER_PORT="${BASH_REMATCH[1]}"
}

# Runs swoop-load pinned to LOAD_CPU against SERVER_PORT and samples the server tree's
# memory during the measured window. Sets LOAD_LINE, LOAD_STATUS and RSS_LOAD_KB (peak).
run_load() {
    local label="$1" mode="$2"
    taskset -c "$LOAD_CPU" "$BENCH_BIN/swoop-load" --port "$SERVER_PORT" \
        --connections "$CONNECTIONS" --pipeline "$PIPELINE" --mode "$mode" \
        --warmup "$WARMUP" --duration "$DURATION" \
        >"$work/$label.load" 2>"$work/$label.load.stderr" &
    local load=$!
    HELPER_PIDS+=("$load")
    local began="$EPOCHREALTIME" peak=0 rss
    # A few samples are enough and keep this script's own CPU use out of the way.
    while is_alive "$load"; do
        sleep 0.5
        if awk -v a="$began" -v b="$EPOCHREALTIME" -v w="$WARMUP" 'BEGIN { exit !(b - a > w) }'; then
            rss="$(rss_tree_kb "$SERVER_PID")"
            (( rss > peak )) && peak=$rss
        fi
    done
    if wait "$load"; then LOAD_STATUS=0; else LOAD_STATUS=$?; fi
    # 1 means the run finished but saw errors: that is a result. Anything else is a failure.
    if (( LOAD_STATUS > 1 )); then
        cat "$work/$label.load.stderr" >&2
        die "$label: swoop-load failed (exit $LOAD_STATUS)"
    fi
    LOAD_LINE="$(tail -n 1 "$work/$label.load")"
    RSS_LOAD_KB=$peak
}

# The value of KEY in a "key=value key=value" line.
field() {
    local key="$1" line="$2"
    [[ " $line " =~ \ $key=([^ ]+)\  ]] && echo "${BASH_REMATCH[1]}"
}

declare -A VALUES=()   # "scenario:figure" -> one value per round, space-separated
record() { VALUES["$1:$2"]+="$3 "; }

# Starts a server, measures it under the given load mode, stops it.
measure_server() {
    local scenario="$1" mode="$2" label
    shift 2
    label="$scenario-r$round"
    start_server "$label" "$@"
    sleep "$IDLE_SETTLE"
    local idle
    idle="$(rss_tree_kb "$SERVER_PID")"
    run_load "$label" "$mode"
    stop_tree "$SERVER_PID"

    local name
    for name in msgs_per_s p50_us p99_us errors requests load_cpu_pct; do
        record "$scenario" "$name" "$(field "$name" "$LOAD_LINE")"
    done
    record "$scenario" rss_idle_kb "$idle"
    record "$scenario" rss_load_kb "$RSS_LOAD_KB"
    record "$scenario" startup_ms "$SERVER_STARTUP_MS"
    log "  $scenario: $LOAD_LINE rss_idle_kb=$idle rss_load_kb=$RSS_LOAD_KB startup_ms=$SERVER_STARTUP_MS"
}

# ---------------------------------------------------------------------------------------
# Scenarios: scenario_<name> runs one round of <name>. Add one here and to SCENARIOS.
# ---------------------------------------------------------------------------------------
scenario_baseline() {
    measure_server baseline echo "$BENCH_BIN/nio-baseline" --port 0 --threads 2
}

scenario_swoop_echo() {
    measure_server swoop_echo echo "$DEMO_BIN" --port 0 --reactor-num 2 --worker-num 2
}

scenario_swoop_task() {
    measure_server swoop_task taskwait "$DEMO_BIN" --port 0 --reactor-num 2 --worker-num 2 --task-worker-num 2
}

# Hook: base mode. When swoop-demo has `--mode base`, this is the whole scenario:
#   measure_server swoop_base echo "$DEMO_BIN" --port 0 --mode base --worker-num 2
# then add swoop_base to SCENARIOS and TITLE.
scenario_swoop_base() {
    die "swoop_base: swoop-demo has no --mode base yet"
}

# Hook: HTTP. When swoop-demo has `--http-port`, start it with `--http-port 0`, read
# http-port= from the ready line, check `command -v wrk` (Debian: apt-get install wrk), run
#   taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency \
#       "http://127.0.0.1:$http_port/"
# after a warm-up run of wrk, and record Requests/sec and the 50% and 99% latencies from
# its "Latency Distribution" block. Its ratio needs an HTTP baseline (a NIOHTTP1 server in
# this package), so HTTP figures get their own table.
scenario_http_wrk() {
    die "http_wrk: swoop-demo has no --http-port yet"
}

# Hook: reload under load. Start swoop_echo's server, run run_load in the background, send
# SIGUSR1 to the master in the middle of the measured window, and record: errors (must be
# 0: connections stay open through a reload), the time from the signal to the last new
# worker's onWorkerStart in its stderr log, and p99/max latency of that run.
scenario_reload_load() {
    die "reload_load: not implemented yet"
}

# ---------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------
median() {
    printf '%s\n' $1 | sort -g | awk '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print ""; exit }
            if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2
        }'
}

sum() { printf '%s\n' $1 | awk '{ s += $1 } END { print s + 0 }'; }

# Formats a number: thousands grouped for big ones, one decimal for small ones.
pretty() {
    awk -v x="$1" 'BEGIN {
        if (x == "") { print "—"; exit }
        if (x >= 1000 || x == int(x)) {
            s = sprintf("%.0f", x); out = ""
            while (length(s) > 3) { out = "," substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3) }
            print s out
        } else printf "%.1f\n", x
    }'
}

ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "—"; else printf "%.2f×\n", a / b }'
}

# figure label, key, unit conversion divisor
FIGURES=(
    "throughput (msgs/s, higher is better)|msgs_per_s|1"
    "latency p50 (µs)|p50_us|1"
    "latency p99 (µs)|p99_us|1"
    "resident memory idle (MiB, whole process tree)|rss_idle_kb|1024"
    "resident memory under load (MiB, peak)|rss_load_kb|1024"
    "start-up to ready line (ms)|startup_ms|1"
    "load generator CPU (% of its core)|load_cpu_pct|1"
)

render_table() {
    local s header="| figure (median of $ROUNDS) |" rule="|---|"
    for s in "${SCENARIOS[@]}"; do
        header+=" ${TITLE[$s]} |"
        rule+="---:|"
        if [[ "$s" != baseline ]]; then header+=" × baseline |"; rule+="---:|"; fi
    done
    echo "$header"
    echo "$rule"
    local entry label key divisor base value row
    for entry in "${FIGURES[@]}"; do
        IFS='|' read -r label key divisor <<<"$entry"
        base="$(median "${VALUES[baseline:$key]:-}")"
        row="| $label |"
        for s in "${SCENARIOS[@]}"; do
            value="$(median "${VALUES[$s:$key]:-}")"
            row+=" $(pretty "$(awk -v v="$value" -v d="$divisor" 'BEGIN { if (v != "") print v / d }')") |"
            if [[ "$s" != baseline ]]; then row+=" $(ratio "$value" "$base") |"; fi
        done
        echo "$row"
    done
    row="| errors (all rounds; must be 0) |"
    for s in "${SCENARIOS[@]}"; do
        row+=" $(sum "${VALUES[$s:errors]:-}") |"
        if [[ "$s" != baseline ]]; then row+=" |"; fi
    done
    echo "$row"
}

render_rounds() {
    local s
    echo "| msgs/s per round |$(for s in "${SCENARIOS[@]}"; do printf ' %s |' "${TITLE[$s]}"; done)"
    echo "|---|$(for s in "${SCENARIOS[@]}"; do printf -- '---:|'; done)"
    local r
    for ((r = 1; r <= ROUNDS; r++)); do
        printf '| round %d |' "$r"
        for s in "${SCENARIOS[@]}"; do
            local -a v
            read -r -a v <<<"${VALUES[$s:msgs_per_s]:-}"
            printf ' %s |' "$(pretty "${v[r - 1]:-}")"
        done
        echo
    done
}

# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------
DEMO_BIN="$root/.build/release/swoop-demo"
BENCH_BIN="$here/.build/release"
if [[ "${BUILD:-1}" == 1 ]]; then
    log "building swoop-demo (release) in $root"
    (cd "$root" && swift build -c release --product swoop-demo) >&2
    log "building the benchmark package (release) in $here"
    (cd "$here" && swift build -c release) >&2
else
    log "BUILD=0: measuring the programs already built"
fi
[[ -x "$DEMO_BIN" && -x "$BENCH_BIN/nio-baseline" && -x "$BENCH_BIN/swoop-load" ]] ||
    die "a built program is missing under $root/.build/release or $BENCH_BIN"

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
started_at="$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
log "measuring: $ROUNDS round(s) of ${SCENARIOS[*]}; warm-up ${WARMUP} s, ${DURATION} s each"
for ((round = 1; round <= ROUNDS; round++)); do
    log "round $round of $ROUNDS"
    for scenario in "${SCENARIOS[@]}"; do "scenario_$scenario"; done
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then commit+="-dirty"; fi
cpu_model="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
total_errors=0
for scenario in "${SCENARIOS[@]}"; do total_errors=$((total_errors + $(sum "${VALUES[$scenario:errors]:-}"))); done

report="$work/report.md"
{
    if [[ "${SMOKE:-0}" == 1 ]]; then echo "# Swoop benchmark — SMOKE run (1 s, 1 round: not a measurement)"; else echo "# Swoop benchmark"; fi
    echo
    echo "$started_at · commit $commit · $(nproc) CPUs ($cpu_model) · Linux $(uname -r)"
    echo
    echo "Servers pinned to CPU $SERVER_CPU, load (swoop-load, 1 thread) to CPU $LOAD_CPU;" \
        "$CONNECTIONS connections, pipeline $PIPELINE; warm-up $WARMUP s, then $DURATION s;" \
        "$ROUNDS round(s), medians. Load average before: $load_before, after: $load_after."
    echo
    render_table
    echo
    render_rounds
    echo
    echo "Ratios are to the nio-baseline figure of the same row (throughput: higher is better;"
    echo "latency, memory, start-up: lower is better). See Benchmarks/README.md."
} >"$report"

echo
cat "$report"
mkdir -p "$here/results"
if [[ "${SMOKE:-0}" == 1 ]]; then
    cp "$report" "$here/results/smoke.md"
    log "written to Benchmarks/results/smoke.md"
else
    stamp="$(date -u '+%Y%m%dT%H%M%SZ')"
    cp "$report" "$here/results/latest.md"
    cp "$report" "$here/results/$stamp.md"
    log "written to Benchmarks/results/latest.md and Benchmarks/results/$stamp.md"
fi
(( total_errors == 0 )) || die "$total_errors request(s) failed: the figures above are not trustworthy"
