#!/usr/bin/env bash
# Benchmarks/run.sh — the one command that measures Swoop against a plain SwiftNIO server.
#
#   bash Benchmarks/run.sh                      # DURATION=10 s, ROUNDS=3
#   DURATION=5 ROUNDS=5 bash Benchmarks/run.sh
#   SMOKE=1 bash Benchmarks/run.sh              # seconds-long check that everything runs
#   BUILD=0 bash Benchmarks/run.sh              # measure the binaries already built
# Also WARMUP (s, default 2), PIPELINE (default 1), QUIET_WAIT (s, default 30): see README.md.
#
# What it does, in one run, so that every figure comes from the same machine state:
#   1. builds swoop-demo (release, in the repository root) and this package (release);
#   2. for each round, for each scenario in turn (interleaved, so slow drift of a shared
#      machine spreads over all of them): waits for the two CPUs to be quiet, starts the
#      server pinned to CPU 0, times its start-up to the ready line, reads its resident
#      memory when idle, drives it with swoop-load pinned to CPU 1 (64 connections,
#      warm-up, then DURATION seconds) while sampling its memory and the CPU time of it,
#      of the load and of everything else on the two CPUs, and stops it;
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
    DURATION=1 ROUNDS=1 WARMUP=0.5 IDLE_SETTLE=0.25 QUIET_WAIT=0
else
    DURATION="${DURATION:-10}" ROUNDS="${ROUNDS:-3}" WARMUP="${WARMUP:-2}" IDLE_SETTLE="${IDLE_SETTLE:-1}"
    QUIET_WAIT="${QUIET_WAIT:-30}"
fi
CONNECTIONS=64
PIPELINE="${PIPELINE:-1}"
SERVER_CPU=0
LOAD_CPU=1
STOP_GRACE_S=10
WARMUP_US="$(awk -v w="$WARMUP" 'BEGIN { printf "%d", w * 1e6 }')"
CLK_TCK="$(getconf CLK_TCK)"
DISTURBED_PCT=10   # other processes' share of a benchmark CPU above which a figure is suspect

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
[[ "$QUIET_WAIT" =~ ^[0-9]+$ ]] || die "QUIET_WAIT must be whole seconds, not '$QUIET_WAIT'"

# ---------------------------------------------------------------------------------------
# Process bookkeeping: everything started here is stopped by pid, whatever happens.
# ---------------------------------------------------------------------------------------
work="$(mktemp -d -t swoop-bench.XXXXXX)"
declare -A LIVE_SERVERS=()   # master pid -> its start time (guards against a reused pid)
HELPER_PIDS=()               # load generators and stdout drains

# The start time of a process (field 22 of /proc/PID/stat), or nothing if it is gone.
start_time() {
    local stat
    read -r stat 2>/dev/null <"/proc/$1/stat" || return 0
    stat="${stat##*) }"      # the command name may hold spaces; the fields after it do not
    local fields
    read -r -a fields <<<"$stat"
    echo "${fields[19]}"
}

# Whether a process exists and is not a zombie waiting to be reaped.
is_alive() {
    local stat
    read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
    stat="${stat##*) }"
    [[ "${stat:0:1}" != Z ]]
}

# The pid given and all its descendants, parents first (read with builtins only: this runs
# while the load is measured, and forks would take CPU from it).
descendants() {
    local pid="$1" file child
    local -a children
    echo "$pid"
    for file in /proc/"$pid"/task/*/children; do
        children=()
        read -r -a children 2>/dev/null <"$file" || true
        for child in "${children[@]}"; do descendants "$child"; done
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
        if is_alive "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
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

# Resident memory of a process tree in KiB (VmRSS of the master and every descendant), the
# CPU clock ticks it has used (utime + stime of each), and its proportional set size (PSS).
# Prints "<rss kib> <ticks> <pss kib>". With VmRSS, shared pages (the Swift runtime,
# Foundation, NIO: most of each process) count once per process, as `ps` shows them: an
# upper bound, and the figure an operator sees. PSS divides each shared page among the
# processes that map it: what the tree really costs the machine.
tree_usage() {
    local rss=0 ticks=0 pss=0 pid key value rest stat
    local -a fields
    for pid in $(descendants "$1"); do
        while read -r key value rest; do
            if [[ "$key" == VmRSS: ]]; then rss=$((rss + value)); break; fi
        done 2>/dev/null <"/proc/$pid/status" || true
        while read -r key value rest; do
            if [[ "$key" == Pss: ]]; then pss=$((pss + value)); break; fi
        done 2>/dev/null <"/proc/$pid/smaps_rollup" || true
        if read -r stat 2>/dev/null <"/proc/$pid/stat"; then
            read -r -a fields <<<"${stat##*) }"
            ticks=$((ticks + fields[11] + fields[12]))   # fields 14 and 15 of the whole line
        fi
    done
    echo "$rss $ticks $pss"
}

# Microseconds on the wall clock, from a builtin (no fork).
now_us() { local t="$EPOCHREALTIME"; echo "${t/./}"; }

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

# Busy clock ticks (all but idle and iowait) of CPU $1 so far, from /proc/stat.
cpu_busy_ticks() {
    local name user nice system irq softirq steal rest
    # The fifth and sixth columns are idle and iowait.
    while read -r name user nice system _ _ irq softirq steal rest; do
        if [[ "$name" == "cpu$1" ]]; then
            echo $((user + nice + system + irq + softirq + steal))
            return
        fi
    done </proc/stat
    echo 0
}

# CPU clock ticks (utime + stime) one process has used, 0 if it is gone.
process_ticks() {
    local stat
    local -a fields
    if read -r stat 2>/dev/null <"/proc/$1/stat"; then
        read -r -a fields <<<"${stat##*) }"
        echo $((fields[11] + fields[12]))
    else
        echo 0
    fi
}

# Runs swoop-load pinned to LOAD_CPU against SERVER_PORT and samples, during the measured
# window, the server tree's memory and the CPU time of the server, of the load and of each
# of the two CPUs. Sets LOAD_LINE, LOAD_STATUS, RSS_LOAD_KB and PSS_LOAD_KB (the peaks), SERVER_CPU_PCT (the
# server tree's CPU time in % of one core: near 100 its core is the limit, as it should be)
# and OTHERS_CPU0_PCT, OTHERS_CPU1_PCT: what the rest of the machine took of each of the two
# CPUs (their busy time less the server's, less the load's). Anything but a few % there
# means the figures were disturbed.
run_load() {
    local label="$1" mode="$2"
    taskset -c "$LOAD_CPU" "$BENCH_BIN/swoop-load" --port "$SERVER_PORT" \
        --connections "$CONNECTIONS" --pipeline "$PIPELINE" --mode "$mode" \
        --warmup "$WARMUP" --duration "$DURATION" \
        >"$work/$label.load" 2>"$work/$label.load.stderr" &
    local load=$!
    HELPER_PIDS+=("$load")
    local measure_from=$(($(now_us) + WARMUP_US)) peak=0 pss_peak=0 now rss pss server_ticks load_ticks busy0 busy1
    local -a first=() last=()
    while is_alive "$load"; do
        sleep 0.25
        now="$(now_us)"
        (( now > measure_from )) || continue
        read -r rss server_ticks pss <<<"$(tree_usage "$SERVER_PID")"
        load_ticks="$(process_ticks "$load")"
        busy0="$(cpu_busy_ticks "$SERVER_CPU")"
        busy1="$(cpu_busy_ticks "$LOAD_CPU")"
        (( rss > peak )) && peak=$rss
        (( pss > pss_peak )) && pss_peak=$pss
        # A sample counts only if the load was still running after it was taken.
        is_alive "$load" || break
        if (( ${#first[@]} == 0 )); then
            first=("$now" "$server_ticks" "$load_ticks" "$busy0" "$busy1")
        else
            last=("$now" "$server_ticks" "$load_ticks" "$busy0" "$busy1")
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
    PSS_LOAD_KB=$pss_peak
    SERVER_CPU_PCT="" OTHERS_CPU0_PCT="" OTHERS_CPU1_PCT=""
    if (( ${#last[@]} > 0 && last[0] > first[0] )); then
        local -a shares
        read -r -a shares <<<"$(awk -v us="$((last[0] - first[0]))" -v hz="$CLK_TCK" \
            -v server="$((last[1] - first[1]))" -v load="$((last[2] - first[2]))" \
            -v busy0="$((last[3] - first[3]))" -v busy1="$((last[4] - first[4]))" '
            function pct(ticks) { ticks = ticks < 0 ? 0 : ticks; return ticks / hz / (us / 1e6) * 100 }
            BEGIN { printf "%.0f %.0f %.0f\n", pct(server), pct(busy0 - server), pct(busy1 - load) }')"
        SERVER_CPU_PCT="${shares[0]}" OTHERS_CPU0_PCT="${shares[1]}" OTHERS_CPU1_PCT="${shares[2]}"
    fi
}

# The value of KEY in a "key=value key=value" line.
field() {
    local key="$1" line="$2"
    [[ " $line " =~ \ $key=([^ ]+)\  ]] && echo "${BASH_REMATCH[1]}"
}

declare -A VALUES=()   # "scenario:figure" -> one value per round, space-separated
# Appends a round's value; "?" when there is none, so the rounds of all figures stay aligned.
record() { VALUES["$1:$2"]+="${3:-?} "; }

# Waits, up to QUIET_WAIT seconds, until the two benchmark CPUs are nearly idle (under
# DISTURBED_PCT busy over half a second): on a shared machine other work comes in bursts, and
# a measurement that starts in a lull is less likely to be disturbed. Goes on regardless
# after the wait; the report still flags what was disturbed.
wait_for_quiet() {
    (( QUIET_WAIT > 0 )) || return 0
    local deadline=$(($(now_us) + QUIET_WAIT * 1000000)) a0 a1 b0 b1 t0 t1 busy
    while :; do
        t0="$(now_us)" a0="$(cpu_busy_ticks "$SERVER_CPU")" a1="$(cpu_busy_ticks "$LOAD_CPU")"
        sleep 0.5
        t1="$(now_us)" b0="$(cpu_busy_ticks "$SERVER_CPU")" b1="$(cpu_busy_ticks "$LOAD_CPU")"
        # The busier of the two CPUs, in % of the interval.
        busy=$(( ((b0 - a0) > (b1 - a1) ? (b0 - a0) : (b1 - a1)) * 100 * 1000000 / CLK_TCK / (t1 - t0) ))
        (( busy <= DISTURBED_PCT )) && return 0
        if (( t1 > deadline )); then
            log "  the machine did not quiet down within ${QUIET_WAIT} s (a CPU ${busy} % busy): measuring anyway"
            return 0
        fi
    done
}

# Starts a server, measures it under the given load mode, stops it.
measure_server() {
    local scenario="$1" mode="$2" label
    shift 2
    label="$scenario-r$round"
    wait_for_quiet
    start_server "$label" "$@"
    sleep "$IDLE_SETTLE"
    local idle ticks pss_idle
    read -r idle ticks pss_idle <<<"$(tree_usage "$SERVER_PID")"
    run_load "$label" "$mode"
    stop_tree "$SERVER_PID"

    local name
    for name in msgs_per_s p50_us p99_us errors requests load_cpu_pct; do
        record "$scenario" "$name" "$(field "$name" "$LOAD_LINE")"
    done
    record "$scenario" rss_idle_kb "$idle"
    record "$scenario" rss_load_kb "$RSS_LOAD_KB"
    record "$scenario" pss_idle_kb "$pss_idle"
    record "$scenario" pss_load_kb "$PSS_LOAD_KB"
    record "$scenario" startup_ms "$SERVER_STARTUP_MS"
    record "$scenario" server_cpu_pct "$SERVER_CPU_PCT"
    record "$scenario" others_cpu0_pct "$OTHERS_CPU0_PCT"
    record "$scenario" others_cpu1_pct "$OTHERS_CPU1_PCT"
    log "  $scenario: $LOAD_LINE rss_idle_kb=$idle rss_load_kb=$RSS_LOAD_KB" \
        "startup_ms=$SERVER_STARTUP_MS server_cpu_pct=$SERVER_CPU_PCT" \
        "others_cpu${SERVER_CPU}_pct=$OTHERS_CPU0_PCT others_cpu${LOAD_CPU}_pct=$OTHERS_CPU1_PCT"
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
# The median, and the sum, of a space-separated list of numbers ("?" are left out).
median() {
    tr -s ' ' '\n' <<<"$1" | awk '/^[0-9.]+$/' | sort -g | awk '
        NF { v[++n] = $1 }
        END {
            if (n == 0) { print ""; exit }
            if (n % 2) print v[(n + 1) / 2]; else printf "%.3f\n", (v[n / 2] + v[n / 2 + 1]) / 2
        }'
}

sum() { tr -s ' ' '\n' <<<"$1" | awk '/^[0-9.]+$/ { s += $1 } END { print s + 0 }'; }

# Whether other processes disturbed round $2 (1-based) of scenario $1: took more than
# DISTURBED_PCT of either benchmark CPU. Unknown counts as not disturbed.
disturbed() {
    local -a others0 others1
    read -r -a others0 <<<"${VALUES[$1:others_cpu0_pct]:-}"
    read -r -a others1 <<<"${VALUES[$1:others_cpu1_pct]:-}"
    local a="${others0[$2 - 1]:-?}" b="${others1[$2 - 1]:-?}"
    [[ "$a" =~ ^[0-9]+$ ]] || a=0
    [[ "$b" =~ ^[0-9]+$ ]] || b=0
    (( a > DISTURBED_PCT || b > DISTURBED_PCT ))
}

# How many rounds of scenario $1 were not disturbed.
undisturbed_rounds() {
    local r count=0
    for ((r = 1; r <= ROUNDS; r++)); do
        disturbed "$1" "$r" || count=$((count + 1))
    done
    echo "$count"
}

# The values of figure $2 of scenario $1 that the table uses: those of the undisturbed
# rounds, or of every round when all were disturbed (the table says which).
kept_values() {
    local r
    local -a values kept=()
    read -r -a values <<<"${VALUES[$1:$2]:-}"
    if (( $(undisturbed_rounds "$1") == 0 )); then
        echo "${values[*]}"
        return
    fi
    for ((r = 1; r <= ${#values[@]}; r++)); do
        disturbed "$1" "$r" || kept+=("${values[r - 1]}")
    done
    echo "${kept[*]}"
}

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

# label|key|divisor (to the unit shown)|whether a ratio to the baseline means anything
FIGURES=(
    "throughput (msgs/s, higher is better)|msgs_per_s|1|yes"
    "latency p50 (µs)|p50_us|1|yes"
    "latency p99 (µs)|p99_us|1|yes"
    "resident memory idle (MiB, whole process tree)|rss_idle_kb|1024|yes"
    "resident memory under load (MiB, peak)|rss_load_kb|1024|yes"
    "proportional memory (PSS) idle (MiB, whole tree)|pss_idle_kb|1024|yes"
    "proportional memory (PSS) under load (MiB, peak)|pss_load_kb|1024|yes"
    "start-up to ready line (ms)|startup_ms|1|yes"
    "server CPU under load (% of CPU $SERVER_CPU)|server_cpu_pct|1|no"
    "load generator CPU (% of CPU $LOAD_CPU)|load_cpu_pct|1|no"
    "other processes on CPU $SERVER_CPU (%, should be ~0)|others_cpu0_pct|1|no"
    "other processes on CPU $LOAD_CPU (%, should be ~0)|others_cpu1_pct|1|no"
)

render_table() {
    local s header="| figure (median over the rounds used) |" rule="|---|"
    for s in "${SCENARIOS[@]}"; do
        header+=" ${TITLE[$s]} |"
        rule+="---:|"
        if [[ "$s" != baseline ]]; then header+=" × baseline |"; rule+="---:|"; fi
    done
    echo "$header"
    echo "$rule"
    local entry label key divisor compare base value row kept
    row="| rounds used: undisturbed of all (all, if none was) |"
    for s in "${SCENARIOS[@]}"; do
        kept="$(undisturbed_rounds "$s")"
        if (( kept == 0 )); then row+=" all $ROUNDS disturbed |"; else row+=" $kept of $ROUNDS |"; fi
        if [[ "$s" != baseline ]]; then row+=" |"; fi
    done
    echo "$row"
    for entry in "${FIGURES[@]}"; do
        IFS='|' read -r label key divisor compare <<<"$entry"
        base="$(median "$(kept_values baseline "$key")")"
        row="| $label |"
        for s in "${SCENARIOS[@]}"; do
            value="$(median "$(kept_values "$s" "$key")")"
            row+=" $(pretty "$(awk -v v="$value" -v d="$divisor" 'BEGIN { if (v != "") printf "%.3f", v / d }')") |"
            if [[ "$s" != baseline && "$compare" == yes ]]; then
                row+=" $(ratio "$value" "$base") |"
            elif [[ "$s" != baseline ]]; then
                row+=" |"
            fi
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

# Per round: each scenario's throughput, and what other processes took of the two CPUs.
render_rounds() {
    local s r
    local -a rates others0 others1
    echo "| per round: msgs/s (others on CPU $SERVER_CPU / CPU $LOAD_CPU, %) |$(for s in "${SCENARIOS[@]}"; do printf ' %s |' "${TITLE[$s]}"; done)"
    echo "|---|$(for s in "${SCENARIOS[@]}"; do printf -- '---:|'; done)"
    for ((r = 1; r <= ROUNDS; r++)); do
        printf '| round %d |' "$r"
        for s in "${SCENARIOS[@]}"; do
            read -r -a rates <<<"${VALUES[$s:msgs_per_s]:-}"
            read -r -a others0 <<<"${VALUES[$s:others_cpu0_pct]:-}"
            read -r -a others1 <<<"${VALUES[$s:others_cpu1_pct]:-}"
            printf ' %s (%s / %s) |' "$(pretty "${rates[r - 1]:-}")" "${others0[r - 1]:-?}" "${others1[r - 1]:-?}"
        done
        echo
    done
}

# How many measurements other processes disturbed.
count_disturbed() {
    local s r count=0
    for s in "${SCENARIOS[@]}"; do
        for ((r = 1; r <= ROUNDS; r++)); do
            if disturbed "$s" "$r"; then count=$((count + 1)); fi
        done
    done
    echo "$count"
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
    disturbed="$(count_disturbed)"
    if (( disturbed > 0 )); then
        echo "**Disturbed:** in $disturbed of $((ROUNDS * ${#SCENARIOS[@]})) measurements, other processes took" \
            "more than $DISTURBED_PCT % of CPU $SERVER_CPU or CPU $LOAD_CPU (per round, below). The table uses" \
            "the undisturbed rounds of each column where there are any; a column with none is not reliable," \
            "nor are its ratios. Re-run on a quiet machine to be sure."
        echo
    fi
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
