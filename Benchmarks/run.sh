#!/usr/bin/env bash
# Benchmarks/run.sh — the one command that measures Swoop against plain SwiftNIO servers.
#
#   bash Benchmarks/run.sh                      # DURATION=10 s, ROUNDS=3
#   DURATION=5 ROUNDS=5 bash Benchmarks/run.sh
#   SWEEP=1 bash Benchmarks/run.sh              # also the connection sweep and its plot
#   SMOKE=1 bash Benchmarks/run.sh              # well under a minute: runs every scenario once
#   BUILD=0 bash Benchmarks/run.sh              # measure the binaries already built
# Also WARMUP, PIPELINE, QUIET_WAIT, HTTP, WRK_THREADS, RELOAD_DURATION, SWEEP_*, LABEL:
# see README.md.
#
# What it does, in one run, so that every figure comes from the same machine state:
#   1. builds swoop-demo (release, in the repository root) and this package (release);
#   2. for each round, for each scenario in turn (interleaved, so slow drift of a shared
#      machine spreads over all of them): waits for the two CPUs to be quiet, starts the
#      server pinned to CPU 0, times its start-up to the ready line, reads its resident
#      memory when idle, drives it pinned to CPU 1 (swoop-load for the line protocol, wrk
#      for HTTP; 64 connections, warm-up, then DURATION seconds) while sampling its memory
#      and the CPU time of it, of the load and of everything else on the two CPUs, and
#      stops it;
#   3. with SWEEP=1 (and in a SMOKE run), drives each echo and HTTP server with 1, 16, 64
#      and 256 connections, and plots throughput against connections (results/sweep.png);
#   4. takes the median of each figure over the rounds and prints markdown tables with each
#      figure's ratio to its baseline's, also written to results/latest.md and a timestamped
#      copy (a SMOKE run writes results/smoke.md only).
#
# Scenarios (a round runs each once):
#   baseline       nio-baseline --threads 2                                    line echo
#   ceiling        c-ceiling --threads 2 (bare C epoll: the machine's ceiling) line echo
#   swoop_echo     swoop-demo --reactor-num 2 --worker-num 2                   line echo
#   swoop_base     swoop-demo --mode base --worker-num 2                       line echo
#   swoop_task     swoop-demo --reactor-num 2 --worker-num 2 --task-worker-num 2, taskwait
#   http_baseline  nio-baseline --protocol http --threads 2                    wrk GET /
#   http_ceiling   c-ceiling --protocol http --threads 2                       wrk GET /
#   http_swoop     swoop-demo --reactor-num 2 --worker-num 2 --http-port 0     wrk GET /
#   http_base      swoop-demo --mode base --worker-num 2 --http-port 0         wrk GET /
#   reload_load    swoop_echo's server; SIGUSR1 to its master a quarter into the measured
#                  window: errors must stay 0; time from the signal to every new worker
#                  started, and to the reload's end
# The base-mode scenarios run when `swoop-demo start --help` lists --mode, and are left out,
# with a note in the report, when it does not. The HTTP ones need wrk (installed with apt-get
# when missing and running as root), or HTTP=0 to leave them out.
#
# Every server started here is stopped by pid (SIGTERM, then SIGKILL after 10 s, the same
# for any descendant that outlives its master) from a trap on EXIT, also on failure or
# Ctrl-C. Nothing is looked up by name.
set -euo pipefail
export LC_ALL=C  # '.' decimals from EPOCHREALTIME, printf and sort; ${#s} counts bytes.

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

if [[ "${SMOKE:-0}" == 1 ]]; then
    DURATION=1 ROUNDS=1 WARMUP=0.5 IDLE_SETTLE=0.25 QUIET_WAIT=0
    SWEEP=1 SWEEP_DURATION=0.5 SWEEP_WARMUP=0.2 RELOAD_DURATION=2
else
    DURATION="${DURATION:-10}" ROUNDS="${ROUNDS:-3}" WARMUP="${WARMUP:-2}" IDLE_SETTLE="${IDLE_SETTLE:-1}"
    QUIET_WAIT="${QUIET_WAIT:-30}"
    SWEEP="${SWEEP:-0}" SWEEP_DURATION="${SWEEP_DURATION:-3}" SWEEP_WARMUP="${SWEEP_WARMUP:-1}"
    # Long enough for the reload to finish inside the measured window.
    RELOAD_DURATION="${RELOAD_DURATION:-$(awk -v d="$DURATION" 'BEGIN { print (d < 4 ? 4 : d) }')}"
fi
CONNECTIONS=64
SWEEP_CONNECTIONS=(1 16 64 256)
PIPELINE="${PIPELINE:-1}"
HTTP="${HTTP:-1}"
WRK_THREADS="${WRK_THREADS:-1}"
SERVER_CPU=0
LOAD_CPU=1
STOP_GRACE_S=10
CLK_TCK="$(getconf CLK_TCK)"
DISTURBED_PCT=10   # other processes' share of a benchmark CPU above which a figure is suspect
RELOAD_WAIT_S=20   # how long, after the load, a reload may still take to complete

# Each list's first scenario is its table's baseline: every ratio is to it. The ceiling comes
# next: a bare C epoll server, the load generator's limit on this machine (README.md).
ECHO_SCENARIOS=(baseline ceiling swoop_echo swoop_base swoop_task)
HTTP_SCENARIOS=(http_baseline http_ceiling http_swoop http_base)
declare -A TITLE=(
    [baseline]="nio-baseline, echo"
    [ceiling]="bare C epoll (ceiling), echo"
    [swoop_echo]="Swoop process mode, echo"
    [swoop_base]="Swoop base mode, echo"
    [swoop_task]="Swoop task round trip"
    [http_baseline]="nio-baseline, HTTP"
    [http_ceiling]="bare C epoll (ceiling), HTTP"
    [http_swoop]="Swoop process mode, HTTP"
    [http_base]="Swoop base mode, HTTP"
    [reload_load]="Swoop process mode, echo, reload (SIGUSR1) in the window"
)
# How each scenario's server is driven: swoop-load's echo or taskwait, or wrk (http).
declare -A KIND=(
    [baseline]=echo [ceiling]=echo [swoop_echo]=echo [swoop_base]=echo [swoop_task]=taskwait
    [http_baseline]=http [http_ceiling]=http [http_swoop]=http [http_base]=http [reload_load]=echo
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
for name in DURATION WARMUP SWEEP_DURATION SWEEP_WARMUP RELOAD_DURATION; do
    [[ "${!name}" =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "$name must be seconds, not '${!name}'"
done
[[ "$QUIET_WAIT" =~ ^[0-9]+$ ]] || die "QUIET_WAIT must be whole seconds, not '$QUIET_WAIT'"
[[ "$WRK_THREADS" =~ ^[1-9][0-9]*$ ]] || die "WRK_THREADS must be a positive integer, not '$WRK_THREADS'"

# Installs Debian package $1 (for command $2) when running as root with apt-get; otherwise
# fails, saying what to install.
apt_install() {
    local package="$1" what="$2"
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        log "$what not found: installing the Debian package $package"
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$package" >&2; then
            DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$package" >&2 ||
                die "could not install $package; install it by hand"
        fi
    else
        die "$what not found: install the Debian package $package (apt-get install $package)"
    fi
}

if [[ "$HTTP" == 1 ]] && ! command -v wrk >/dev/null; then
    apt_install wrk "wrk (the HTTP load generator; HTTP=0 leaves the HTTP scenarios out)"
fi

# The sweep's plot: python3 with matplotlib (pip, or Debian's python3-matplotlib). Without
# it the sweep is still measured and tabled, and the run says why there is no PNG.
PLOT=0
if [[ "$SWEEP" == 1 ]]; then
    if ! command -v python3 >/dev/null; then
        log "python3 not found: the sweep is measured, but not plotted (apt-get install python3-matplotlib)"
    elif python3 -c 'import matplotlib' 2>/dev/null; then
        PLOT=1
    else
        log "matplotlib not found: installing it with pip"
        if python3 -m pip install --quiet matplotlib >&2 && python3 -c 'import matplotlib' 2>/dev/null; then
            PLOT=1
        elif [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-matplotlib >&2 &&
            python3 -c 'import matplotlib' 2>/dev/null; then
            PLOT=1
        else
            log "matplotlib could not be installed: the sweep is measured, but not plotted"
        fi
    fi
fi

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
# Sets SERVER_PID, SERVER_PORT, SERVER_HTTP_PORT and SERVER_STARTUP_MS.
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
    # swoop-demo with --http-port says http-port=<p>; nio-baseline and c-ceiling with
    # --protocol http serve HTTP on their only port.
    if [[ " $line" =~ \ http-port=([1-9][0-9]*) ]]; then SERVER_HTTP_PORT="${BASH_REMATCH[1]}"; else SERVER_HTTP_PORT="$SERVER_PORT"; fi
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

# Seconds as wrk takes them: whole, at least $2 (wrk's -d has no fractions).
whole_seconds() {
    awk -v s="$1" -v least="$2" 'BEGIN { w = int(s + 0.5); print (w < least ? least : w) }'
}

# wrk's report, through its Lua hook: one machine-readable line at the end, with the
# latencies in microseconds and every kind of error summed (connect, read, write, timeout,
# and responses other than 2xx/3xx).
WRK_SCRIPT="$work/report.lua"
cat >"$WRK_SCRIPT" <<'LUA'
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "wrk_result requests=%d duration_us=%d p50_us=%.1f p99_us=%.1f max_us=%.1f errors=%d\n",
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
        latency.max, e.connect + e.read + e.write + e.timeout + e.status))
end
LUA

RELOAD_AT_US=""     # when set: run_load sends SIGUSR1 to SERVER_PID at this time...
RELOAD_SENT_US=""   # ...and says here when it did

# run_load LABEL KIND CONNECTIONS WARMUP DURATION
#
# Drives SERVER_PORT with swoop-load (KIND echo or taskwait) or SERVER_HTTP_PORT with wrk
# (KIND http), pinned to LOAD_CPU, and samples, during the measured window, the server
# tree's memory and the CPU time of the server, of the load and of each of the two CPUs.
# Sets LOAD_LINE (swoop-load's line: msgs_per_s= p50_us= p99_us= max_us= errors= requests=
# load_cpu_pct=; for wrk, the same keys made from its report), RSS_LOAD_KB and PSS_LOAD_KB
# (the peaks), SERVER_CPU_PCT (the server tree's CPU time in % of one core: near 100 its
# core is the limit, as it should be) and OTHERS_CPU0_PCT, OTHERS_CPU1_PCT: what the rest of
# the machine took of each of the two CPUs (their busy time less the server's, less the
# load's). Anything but a few % there means the figures were disturbed.
#
# swoop-load warms up and measures in one run; wrk has no warm-up, so a first wrk run of
# WARMUP seconds (whole seconds; none if under 1) precedes the measured one.
run_load() {
    local label="$1" kind="$2" connections="$3" warmup="$4" duration="$5"
    local -a command
    local measure_from
    if [[ "$kind" == http ]]; then
        local threads=$((WRK_THREADS < connections ? WRK_THREADS : connections))
        local url="http://127.0.0.1:$SERVER_HTTP_PORT/" warm
        warm="$(whole_seconds "$warmup" 0)"
        if (( warm > 0 )); then
            taskset -c "$LOAD_CPU" wrk -t"$threads" -c"$connections" -d"${warm}s" "$url" \
                >"$work/$label.warmup" 2>&1 || die "$label: the warm-up run of wrk failed: $(tail -n 3 "$work/$label.warmup")"
        fi
        command=(wrk -t"$threads" -c"$connections" -d"$(whole_seconds "$duration" 1)s" --latency -s "$WRK_SCRIPT" "$url")
        measure_from="$(now_us)"
    else
        command=("$BENCH_BIN/swoop-load" --port "$SERVER_PORT" --connections "$connections"
            --pipeline "$PIPELINE" --mode "$kind" --warmup "$warmup" --duration "$duration")
        measure_from=$(($(now_us) + $(awk -v w="$warmup" 'BEGIN { printf "%d", w * 1e6 }')))
    fi
    taskset -c "$LOAD_CPU" "${command[@]}" >"$work/$label.load" 2>"$work/$label.load.stderr" &
    local load=$!
    HELPER_PIDS+=("$load")
    local peak=0 pss_peak=0 now rss pss server_ticks load_ticks busy0 busy1
    local -a first=() last=()
    while is_alive "$load"; do
        sleep 0.25
        now="$(now_us)"
        if [[ -n "$RELOAD_AT_US" && -z "$RELOAD_SENT_US" ]] && (( now >= RELOAD_AT_US )); then
            kill -USR1 "$SERVER_PID"
            RELOAD_SENT_US="$(now_us)"
            log "  SIGUSR1 to the master (pid $SERVER_PID)"
        fi
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
    local status
    if wait "$load"; then status=0; else status=$?; fi
    RSS_LOAD_KB=$peak
    PSS_LOAD_KB=$pss_peak
    SERVER_CPU_PCT="" OTHERS_CPU0_PCT="" OTHERS_CPU1_PCT=""
    local load_pct=""
    if (( ${#last[@]} > 0 && last[0] > first[0] )); then
        local -a shares
        read -r -a shares <<<"$(awk -v us="$((last[0] - first[0]))" -v hz="$CLK_TCK" \
            -v server="$((last[1] - first[1]))" -v load="$((last[2] - first[2]))" \
            -v busy0="$((last[3] - first[3]))" -v busy1="$((last[4] - first[4]))" '
            function pct(ticks) { ticks = ticks < 0 ? 0 : ticks; return ticks / hz / (us / 1e6) * 100 }
            BEGIN { printf "%.0f %.0f %.0f %.0f\n", pct(server), pct(busy0 - server), pct(busy1 - load), pct(load) }')"
        SERVER_CPU_PCT="${shares[0]}" OTHERS_CPU0_PCT="${shares[1]}" OTHERS_CPU1_PCT="${shares[2]}"
        load_pct="${shares[3]}"
    fi
    if [[ "$kind" == http ]]; then
        local result
        result="$(grep '^wrk_result ' "$work/$label.load" | tail -n 1 || true)"
        if (( status != 0 )) || [[ -z "$result" ]]; then
            cat "$work/$label.load" "$work/$label.load.stderr" >&2
            die "$label: wrk failed (exit $status)"
        fi
        # wrk's own CPU is read from /proc over the window sampled (it does not report it).
        LOAD_LINE="$(awk -v line="$result" -v cpu="$load_pct" 'BEGIN {
            n = split(line, kv, " ")
            for (i = 2; i <= n; i++) { split(kv[i], p, "="); v[p[1]] = p[2] }
            printf "msgs_per_s=%.0f p50_us=%s p99_us=%s max_us=%s errors=%d requests=%d load_cpu_pct=%s\n",
                v["requests"] / (v["duration_us"] / 1e6), v["p50_us"], v["p99_us"], v["max_us"],
                v["errors"], v["requests"], cpu }')"
    else
        # 1 means the run finished but saw errors: that is a result. Anything else is a failure.
        if (( status > 1 )); then
            cat "$work/$label.load.stderr" >&2
            die "$label: swoop-load failed (exit $status)"
        fi
        LOAD_LINE="$(tail -n 1 "$work/$label.load")"
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

# One GET / over a keep-alive HTTP/1.1 connection, from bash itself (/dev/tcp). Sets
# PROBE_BYTES (the response's size on the wire), PROBE_SHAPE (status line, header names in
# order, body) and PROBE_OK (1 when it is `200 OK` with the body `Hello, World!`).
http_probe() {
    local port="$1" fd status="" line names="" length=0 body=""
    PROBE_BYTES=0 PROBE_SHAPE="no response" PROBE_OK=0
    exec {fd}<>"/dev/tcp/127.0.0.1/$port" || return 0
    printf 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: run.sh\r\n\r\n' >&"$fd"
    if IFS= read -r -t 5 -u "$fd" status; then
        PROBE_BYTES=$((${#status} + 1))
        while IFS= read -r -t 5 -u "$fd" line; do
            PROBE_BYTES=$((PROBE_BYTES + ${#line} + 1))
            line="${line%$'\r'}"
            [[ -n "$line" ]] || break
            names+="${names:+, }${line%%:*}"
            if [[ "${line,,}" =~ ^content-length:\ *([0-9]+) ]]; then length="${BASH_REMATCH[1]}"; fi
        done
        if (( length > 0 )); then IFS= read -r -N "$length" -t 5 -u "$fd" body || true; fi
        PROBE_BYTES=$((PROBE_BYTES + ${#body}))
        status="${status%$'\r'}"
        PROBE_SHAPE="\`$status\`; headers: $names; body \`$body\`"
        [[ "$status" == "HTTP/1.1 200 OK" && "$body" == "Hello, World!" ]] && PROBE_OK=1
    fi
    exec {fd}>&-
}
declare -A RESPONSE_SHAPE=()   # scenario -> what its GET / response looks like

# measure_server SCENARIO: starts SCENARIO's server, measures it under its load, stops it.
measure_server() {
    local scenario="$1" label="$1-r$round" kind="${KIND[$1]}"
    server_command "$scenario"
    wait_for_quiet
    start_server "$label" "${SERVER_CMD[@]}"
    sleep "$IDLE_SETTLE"
    local idle ticks pss_idle probe_errors=0
    read -r idle ticks pss_idle <<<"$(tree_usage "$SERVER_PID")"
    if [[ "$kind" == http ]]; then
        # The response is checked once, before the load: wrk counts statuses, not bytes.
        http_probe "$SERVER_HTTP_PORT"
        RESPONSE_SHAPE[$scenario]="$PROBE_SHAPE ($PROBE_BYTES bytes)"
        if (( ! PROBE_OK )); then
            log "  $scenario: GET / did not answer 200 Hello, World!: $PROBE_SHAPE"
            probe_errors=1
        fi
        record "$scenario" response_bytes "$PROBE_BYTES"
    fi
    run_load "$label" "$kind" "$CONNECTIONS" "$WARMUP" "$DURATION"
    stop_tree "$SERVER_PID"
    record_load "$scenario" "$idle" "$pss_idle" "$probe_errors"
}

# Records the figures of a measurement (after run_load) for SCENARIO: LOAD_LINE's, the idle
# memory given, and the rest run_load set; $4 errors are added to the load's.
record_load() {
    local scenario="$1" idle="$2" pss_idle="$3" extra_errors="${4:-0}" name errors
    for name in msgs_per_s p50_us p99_us max_us requests load_cpu_pct; do
        record "$scenario" "$name" "$(field "$name" "$LOAD_LINE")"
    done
    errors="$(field errors "$LOAD_LINE")"
    record "$scenario" errors "$(( ${errors:-1} + extra_errors ))"
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
# Scenarios: server_command says how each one's server is started, KIND (above) how it is
# driven; measure_server runs one round of it. scenario_<name>, where it exists, replaces
# measure_server for <name>. Add a scenario to one of the lists above, TITLE, KIND and here.
# ---------------------------------------------------------------------------------------
# Sets SERVER_CMD to the command line of scenario $1's server.
server_command() {
    case "$1" in
        baseline) SERVER_CMD=("$BENCH_BIN/nio-baseline" --port 0 --threads 2) ;;
        ceiling) SERVER_CMD=("$BENCH_BIN/c-ceiling" --port 0 --threads 2) ;;
        swoop_echo | reload_load) SERVER_CMD=("$DEMO_BIN" --port 0 --reactor-num 2 --worker-num 2) ;;
        swoop_base) SERVER_CMD=("$DEMO_BIN" --port 0 --mode base --worker-num 2) ;;
        swoop_task) SERVER_CMD=("$DEMO_BIN" --port 0 --reactor-num 2 --worker-num 2 --task-worker-num 2) ;;
        http_baseline) SERVER_CMD=("$BENCH_BIN/nio-baseline" --protocol http --port 0 --threads 2) ;;
        http_ceiling) SERVER_CMD=("$BENCH_BIN/c-ceiling" --protocol http --port 0 --threads 2) ;;
        http_swoop) SERVER_CMD=("$DEMO_BIN" --port 0 --reactor-num 2 --worker-num 2 --http-port 0) ;;
        http_base) SERVER_CMD=("$DEMO_BIN" --port 0 --mode base --worker-num 2 --http-port 0) ;;
        *) die "no server for scenario $1" ;;
    esac
}

# Whether swoop-demo has --mode (base or process). Its options are those of the default
# subcommand, start; both helps are read, in case a later demo lists them at the top.
demo_has_mode() {
    { "$DEMO_BIN" start --help 2>&1 || true; "$DEMO_BIN" --help 2>&1 || true; } |
        grep -qE '(^|[[:space:],])--mode([[:space:]=,]|$)'
}

# Milliseconds since the epoch of a log line's stamp (`2026-11-28 23:47:10.571`, local time,
# as Swoop writes it).
log_stamp_ms() { date -d "$1" '+%s%3N'; }

# The reload under load: swoop_echo's server under the echo load of RELOAD_DURATION seconds,
# and SIGUSR1 to its master a quarter into the measured window. From the server's log (its
# stderr): the signal's time to the last new worker's onWorkerStart (a worker says hello to
# the master, and so takes connections, right after it) and to `reload complete` (the
# manager's line once the old workers have finished and exited). Errors must stay 0. Then
# fresh connections ask `whoami`: each must be answered by one of the new workers.
scenario_reload_load() {
    local scenario=reload_load label="reload_load-r$round"
    server_command "$scenario"
    wait_for_quiet
    start_server "$label" "${SERVER_CMD[@]}"
    sleep "$IDLE_SETTLE"
    local idle ticks pss_idle
    read -r idle ticks pss_idle <<<"$(tree_usage "$SERVER_PID")"
    local window_us
    window_us="$(awk -v w="$WARMUP" -v d="$RELOAD_DURATION" 'BEGIN { printf "%d", (w + d / 4) * 1e6 }')"
    RELOAD_SENT_US="" RELOAD_AT_US=$(($(now_us) + window_us))
    run_load "$label" echo "$CONNECTIONS" "$WARMUP" "$RELOAD_DURATION"
    RELOAD_AT_US=""
    local load_end_us
    load_end_us="$(now_us)"
    local log="$work/$label.stderr" extra_errors=0 i
    [[ -n "$RELOAD_SENT_US" ]] || die "$label: the load ended before SIGUSR1 was sent"
    for ((i = 0; i < RELOAD_WAIT_S * 10; i++)); do
        grep -q '] reload complete' "$log" && break
        sleep 0.1
    done

    # The lines after the first "reloading all workers" (the master's, then the manager's):
    # the new workers' onWorkerStart (their pids), and the manager's "reload complete".
    local started last_start done_at new_pids
    read -r started last_start done_at new_pids <<<"$(awk '
        !begun && /\] reloading all workers/ { begun = 1; next }
        begun && /onWorkerStart id=/ {
            n++; last = $1 "_" $2
            for (i = 1; i <= NF; i++) if ($i ~ /^pid=[0-9]+$/) pids = pids (pids == "" ? "" : ",") substr($i, 5)
        }
        begun && /\] reload complete/ && done == "" { done = $1 "_" $2 }
        END { print n + 0, (last == "" ? "-" : last), (done == "" ? "-" : done), (pids == "" ? "-" : pids) }' "$log")"
    local ready_ms="" done_ms="" in_window=0
    if [[ "$last_start" != - ]] && (( started >= 2 )); then
        ready_ms="$(( $(log_stamp_ms "${last_start/_/ }") - RELOAD_SENT_US / 1000 ))"
    else
        log "  $label: $started new worker(s) started after the signal, not 2"
        extra_errors=$((extra_errors + 1))
    fi
    if [[ "$done_at" != - ]]; then
        local done_stamp
        done_stamp="$(log_stamp_ms "${done_at/_/ }")"
        done_ms=$((done_stamp - RELOAD_SENT_US / 1000))
        (( done_stamp * 1000 <= load_end_us )) && in_window=1
    else
        log "  $label: no 'reload complete' within ${RELOAD_WAIT_S} s of the load's end"
        extra_errors=$((extra_errors + 1))
    fi
    # Every fresh connection must now land on a new worker.
    local fd line pid
    for ((i = 0; i < 4; i++)); do
        line=""
        if exec {fd}<>"/dev/tcp/127.0.0.1/$SERVER_PORT"; then
            printf 'whoami\n' >&"$fd"
            IFS= read -r -t 5 -u "$fd" line || true
            exec {fd}>&-
        fi
        pid="$(field pid "$line")"
        if [[ -z "$pid" || ",$new_pids," != *",$pid,"* ]]; then
            log "  $label: after the reload, whoami got '$line' (new workers: $new_pids)"
            extra_errors=$((extra_errors + 1))
        fi
    done
    stop_tree "$SERVER_PID"
    record_load "$scenario" "$idle" "$pss_idle" "$extra_errors"
    record "$scenario" reload_ready_ms "$ready_ms"
    record "$scenario" reload_done_ms "$done_ms"
    record "$scenario" reload_in_window "$in_window"
    log "  reload: signal → new workers started ${ready_ms:-?} ms, → reload complete ${done_ms:-?} ms" \
        "(within the load window: $( ((in_window)) && echo yes || echo no))"
}

# ---------------------------------------------------------------------------------------
# Connection sweep (SWEEP=1): each echo and HTTP server once, driven in turn with each of
# SWEEP_CONNECTIONS, SWEEP_WARMUP + SWEEP_DURATION seconds each (wrk: whole seconds).
# ---------------------------------------------------------------------------------------
declare -A SWEEP_VALUES=()   # "scenario:connections:figure" -> value
SWEEP_SCENARIOS=()

sweep_server() {
    local scenario="$1" kind="${KIND[$1]}" connections label
    server_command "$scenario"
    wait_for_quiet
    start_server "sweep-$scenario" "${SERVER_CMD[@]}"
    sleep "$IDLE_SETTLE"
    for connections in "${SWEEP_CONNECTIONS[@]}"; do
        label="sweep-$scenario-c$connections"
        run_load "$label" "$kind" "$connections" "$SWEEP_WARMUP" "$SWEEP_DURATION"
        local name
        for name in msgs_per_s p99_us errors; do
            SWEEP_VALUES["$scenario:$connections:$name"]="$(field "$name" "$LOAD_LINE")"
        done
        SWEEP_VALUES["$scenario:$connections:others0"]="$OTHERS_CPU0_PCT"
        SWEEP_VALUES["$scenario:$connections:others1"]="$OTHERS_CPU1_PCT"
        log "  sweep $scenario, $connections connection(s): $LOAD_LINE" \
            "others_cpu${SERVER_CPU}_pct=$OTHERS_CPU0_PCT others_cpu${LOAD_CPU}_pct=$OTHERS_CPU1_PCT"
    done
    stop_tree "$SERVER_PID"
}

# The sweep as CSV, for the plot (and anyone's spreadsheet).
write_sweep_csv() {
    local scenario connections
    echo "scenario,title,kind,connections,throughput_per_s,p99_us,errors,others_cpu${SERVER_CPU}_pct,others_cpu${LOAD_CPU}_pct"
    for scenario in "${SWEEP_SCENARIOS[@]}"; do
        for connections in "${SWEEP_CONNECTIONS[@]}"; do
            printf '%s,"%s",%s,%s,%s,%s,%s,%s,%s\n' "$scenario" "${TITLE[$scenario]}" "${KIND[$scenario]}" "$connections" \
                "${SWEEP_VALUES[$scenario:$connections:msgs_per_s]:-}" "${SWEEP_VALUES[$scenario:$connections:p99_us]:-}" \
                "${SWEEP_VALUES[$scenario:$connections:errors]:-}" "${SWEEP_VALUES[$scenario:$connections:others0]:-}" \
                "${SWEEP_VALUES[$scenario:$connections:others1]:-}"
        done
    done
}

# The sweep as a markdown table: throughput (p99 µs) per server and connection count, and
# each figure's ratio to the baseline of its protocol at the same count; ⚠ marks a cell
# measured while other processes took more than DISTURBED_PCT of either CPU.
render_sweep() {
    local scenario connections base value
    printf '| connections |'
    for scenario in "${SWEEP_SCENARIOS[@]}"; do printf ' %s |' "${TITLE[$scenario]}"; done
    echo
    printf '|---:|'
    for scenario in "${SWEEP_SCENARIOS[@]}"; do printf -- '---:|'; done
    echo
    for connections in "${SWEEP_CONNECTIONS[@]}"; do
        printf '| %s |' "$connections"
        for scenario in "${SWEEP_SCENARIOS[@]}"; do
            if [[ "${KIND[$scenario]}" == http ]]; then base=http_baseline; else base=baseline; fi
            value="${SWEEP_VALUES[$scenario:$connections:msgs_per_s]:-}"
            printf ' %s' "$(pretty "$value")"
            if [[ "$scenario" != "$base" ]]; then
                printf ' (%s)' "$(ratio "$value" "${SWEEP_VALUES[$base:$connections:msgs_per_s]:-}")"
            fi
            printf ', p99 %s µs' "$(pretty "${SWEEP_VALUES[$scenario:$connections:p99_us]:-}")"
            local others0="${SWEEP_VALUES[$scenario:$connections:others0]:-0}" others1="${SWEEP_VALUES[$scenario:$connections:others1]:-0}"
            if (( ${others0:-0} > DISTURBED_PCT || ${others1:-0} > DISTURBED_PCT )); then printf ' ⚠'; fi
            printf ' |'
        done
        echo
    done
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

# The median over the rounds of scenario $1's throughput divided by scenario $2's in the
# same round (the rounds either leaves out, see kept_values, left out). Scenarios take turns
# within a round, so each round's ratio compares servers measured a minute apart: it moves
# less with a shared machine's slow drift than the ratio of the two medians.
paired_ratio() {
    local r x y ratios=""
    local -a a b
    read -r -a a <<<"${VALUES[$1:msgs_per_s]:-}"
    read -r -a b <<<"${VALUES[$2:msgs_per_s]:-}"
    local all1 all2
    all1=$(( $(undisturbed_rounds "$1") == 0 )) all2=$(( $(undisturbed_rounds "$2") == 0 ))
    for ((r = 1; r <= ROUNDS; r++)); do
        if (( !all1 )) && disturbed "$1" "$r"; then continue; fi
        if (( !all2 )) && disturbed "$2" "$r"; then continue; fi
        x="${a[r - 1]:-}" y="${b[r - 1]:-}"
        [[ "$x" =~ ^[0-9.]+$ && "$y" =~ ^[0-9.]+$ ]] || continue
        ratios+=" $(awk -v x="$x" -v y="$y" 'BEGIN { if (y > 0) printf "%.4f", x / y }')"
    done
    local m
    m="$(median "$ratios")"
    if [[ -n "$m" ]]; then awk -v m="$m" 'BEGIN { printf "%.2f×", m }'; else printf '—'; fi
}

# label|key|divisor (to the unit shown)|whether a ratio to the baseline means anything.
# (render_table reads these through a nameref, which shellcheck does not follow.)
# shellcheck disable=SC2034
ECHO_FIGURES=(
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
# shellcheck disable=SC2034
HTTP_FIGURES=(
    "throughput (requests/s, higher is better)|msgs_per_s|1|yes"
    "latency p50 (µs)|p50_us|1|yes"
    "latency p99 (µs)|p99_us|1|yes"
    "bytes per response (GET /, headers and body)|response_bytes|1|yes"
    "resident memory idle (MiB, whole process tree)|rss_idle_kb|1024|yes"
    "resident memory under load (MiB, peak)|rss_load_kb|1024|yes"
    "proportional memory (PSS) idle (MiB, whole tree)|pss_idle_kb|1024|yes"
    "proportional memory (PSS) under load (MiB, peak)|pss_load_kb|1024|yes"
    "start-up to ready line (ms)|startup_ms|1|yes"
    "server CPU under load (% of CPU $SERVER_CPU)|server_cpu_pct|1|no"
    "wrk CPU (% of CPU $LOAD_CPU)|load_cpu_pct|1|no"
    "other processes on CPU $SERVER_CPU (%, should be ~0)|others_cpu0_pct|1|no"
    "other processes on CPU $LOAD_CPU (%, should be ~0)|others_cpu1_pct|1|no"
)
# shellcheck disable=SC2034
RELOAD_FIGURES=(
    "signal → every new worker started (ms)|reload_ready_ms|1|no"
    "signal → reload complete, old workers gone (ms)|reload_done_ms|1|no"
    "reload complete within the load window (1 yes, 0 no)|reload_in_window|1|no"
    "throughput over the window (msgs/s)|msgs_per_s|1|yes"
    "latency p50 (µs)|p50_us|1|yes"
    "latency p99 (µs)|p99_us|1|yes"
    "latency max (µs)|max_us|1|yes"
    "resident memory idle (MiB, whole process tree)|rss_idle_kb|1024|yes"
    "resident memory under load (MiB, peak: old and new workers)|rss_load_kb|1024|yes"
    "server CPU under load (% of CPU $SERVER_CPU)|server_cpu_pct|1|no"
    "other processes on CPU $SERVER_CPU (%, should be ~0)|others_cpu0_pct|1|no"
    "other processes on CPU $LOAD_CPU (%, should be ~0)|others_cpu1_pct|1|no"
)

# render_table FIGURES-ARRAY-NAME RATIO-HEADER BASE SCENARIO...: one column per scenario,
# the first (BASE) without a ratio, each other followed by its ratio to BASE.
render_table() {
    local -n figures="$1"
    local ratio_header="$2" base_scenario="$3"
    shift 3
    local -a scenarios=("$base_scenario" "$@")
    local s header="| figure (median over the rounds used) |" rule="|---|"
    for s in "${scenarios[@]}"; do
        header+=" ${TITLE[$s]} |"
        rule+="---:|"
        if [[ "$s" != "$base_scenario" ]]; then header+=" $ratio_header |"; rule+="---:|"; fi
    done
    echo "$header"
    echo "$rule"
    local entry label key divisor compare base value row kept
    row="| rounds used: undisturbed of all (all, if none was) |"
    for s in "${scenarios[@]}"; do
        kept="$(undisturbed_rounds "$s")"
        if (( kept == 0 )); then row+=" all $ROUNDS disturbed |"; else row+=" $kept of $ROUNDS |"; fi
        if [[ "$s" != "$base_scenario" ]]; then row+=" |"; fi
    done
    echo "$row"
    for entry in "${figures[@]}"; do
        IFS='|' read -r label key divisor compare <<<"$entry"
        base="$(median "$(kept_values "$base_scenario" "$key")")"
        row="| $label |"
        for s in "${scenarios[@]}"; do
            value="$(median "$(kept_values "$s" "$key")")"
            row+=" $(pretty "$(awk -v v="$value" -v d="$divisor" 'BEGIN { if (v != "") printf "%.3f", v / d }')") |"
            if [[ "$s" != "$base_scenario" && "$compare" == yes ]]; then
                row+=" $(ratio "$value" "$base") |"
            elif [[ "$s" != "$base_scenario" ]]; then
                row+=" |"
            fi
        done
        echo "$row"
        if [[ "$key" == msgs_per_s ]]; then
            row="| throughput: the median of each round's own ratio |"
            for s in "${scenarios[@]}"; do
                if [[ "$s" == "$base_scenario" ]]; then row+=" |"; else row+=" | $(paired_ratio "$s" "$base_scenario") |"; fi
            done
            echo "$row"
        fi
    done
    row="| errors (all rounds; must be 0) |"
    for s in "${scenarios[@]}"; do
        row+=" $(sum "${VALUES[$s:errors]:-}") |"
        if [[ "$s" != "$base_scenario" ]]; then row+=" |"; fi
    done
    echo "$row"
}

# Per round: each scenario's throughput, and what other processes took of the two CPUs.
render_rounds() {
    local s r
    local -a rates others0 others1
    echo "| per round: throughput /s (others on CPU $SERVER_CPU / CPU $LOAD_CPU, %) |$(for s in "$@"; do printf ' %s |' "${TITLE[$s]}"; done)"
    echo "|---|$(for s in "$@"; do printf -- '---:|'; done)"
    for ((r = 1; r <= ROUNDS; r++)); do
        printf '| round %d |' "$r"
        for s in "$@"; do
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
# DEMO_BIN: the swoop-demo to measure; by default the one built here from the repository root.
DEMO_BIN="${DEMO_BIN:-$root/.build/release/swoop-demo}"
BENCH_BIN="$here/.build/release"
if [[ "${BUILD:-1}" == 1 ]]; then
    log "building swoop-demo (release) in $root"
    (cd "$root" && swift build -c release --product swoop-demo) >&2
    log "building the benchmark package (release) in $here"
    (cd "$here" && swift build -c release) >&2
else
    log "BUILD=0: measuring the programs already built"
fi
[[ -x "$DEMO_BIN" && -x "$BENCH_BIN/nio-baseline" && -x "$BENCH_BIN/c-ceiling" && -x "$BENCH_BIN/swoop-load" ]] ||
    die "a built program is missing under $root/.build/release or $BENCH_BIN"

# Which scenarios run: base mode needs swoop-demo's --mode, HTTP needs HTTP=1.
NOTES=()
if demo_has_mode; then
    HAS_BASE=1
else
    HAS_BASE=0
    NOTES+=("Base mode (\`--mode base\`) left out: this swoop-demo has no \`--mode\` flag (\`swoop-demo start --help\`).")
fi
keep_scenario() {
    case "$1" in
        swoop_base | http_base) (( HAS_BASE )) ;;
        *) return 0 ;;
    esac
}
RUN_ECHO=() RUN_HTTP=()
for scenario in "${ECHO_SCENARIOS[@]}"; do if keep_scenario "$scenario"; then RUN_ECHO+=("$scenario"); fi; done
if [[ "$HTTP" == 1 ]]; then
    for scenario in "${HTTP_SCENARIOS[@]}"; do if keep_scenario "$scenario"; then RUN_HTTP+=("$scenario"); fi; done
else
    NOTES+=("HTTP scenarios left out (HTTP=0).")
fi
SCENARIOS=("${RUN_ECHO[@]}" "${RUN_HTTP[@]}" reload_load)
if [[ "$SWEEP" == 1 ]]; then
    for scenario in "${RUN_ECHO[@]}" "${RUN_HTTP[@]}"; do
        [[ "${KIND[$scenario]}" == taskwait ]] || SWEEP_SCENARIOS+=("$scenario")
    done
fi

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
started_at="$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
log "measuring: $ROUNDS round(s) of ${SCENARIOS[*]}; warm-up ${WARMUP} s, ${DURATION} s each (reload: ${RELOAD_DURATION} s)"
for ((round = 1; round <= ROUNDS; round++)); do
    log "round $round of $ROUNDS"
    for scenario in "${SCENARIOS[@]}"; do
        if declare -F "scenario_$scenario" >/dev/null; then "scenario_$scenario"; else measure_server "$scenario"; fi
    done
done
if (( ${#SWEEP_SCENARIOS[@]} > 0 )); then
    log "connection sweep: ${SWEEP_CONNECTIONS[*]} connections; warm-up ${SWEEP_WARMUP} s, ${SWEEP_DURATION} s each"
    for scenario in "${SWEEP_SCENARIOS[@]}"; do sweep_server "$scenario"; done
fi
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then commit+="-dirty"; fi
cpu_model="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
total_errors=0
for scenario in "${SCENARIOS[@]}"; do total_errors=$((total_errors + $(sum "${VALUES[$scenario:errors]:-}"))); done
for scenario in "${SWEEP_SCENARIOS[@]}"; do
    for connections in "${SWEEP_CONNECTIONS[@]}"; do
        total_errors=$((total_errors + ${SWEEP_VALUES[$scenario:$connections:errors]:-1}))
    done
done

mkdir -p "$here/results"
if [[ "${SMOKE:-0}" == 1 ]]; then sweep_name=smoke-sweep; else sweep_name=sweep; fi
# What the title says of the run: a smoke run, a short one (fewer than 3 rounds or under
# 10 s each: fine for a check, not a reference), and LABEL, free text, if given.
title_suffix=""
if [[ "${SMOKE:-0}" == 1 ]]; then
    title_suffix="SMOKE run (1 s, 1 round: not a measurement)"
elif (( ROUNDS < 3 )) || awk -v d="$DURATION" 'BEGIN { exit !(d < 10) }'; then
    title_suffix="short run ($DURATION s, $ROUNDS round(s): a check, not a reference measurement)"
fi
if [[ -n "${LABEL:-}" ]]; then title_suffix+="${title_suffix:+; }$LABEL"; fi
sweep_note=""
if (( ${#SWEEP_SCENARIOS[@]} > 0 )); then
    write_sweep_csv >"$here/results/$sweep_name.csv"
    if (( PLOT )); then
        plot_title="Swoop connection sweep, $started_at, commit $commit${title_suffix:+
$title_suffix}"
        if python3 "$here/plot_sweep.py" "$here/results/$sweep_name.csv" "$here/results/$sweep_name.png" "$plot_title" >&2; then
            sweep_note="Plotted in \`Benchmarks/results/$sweep_name.png\`; data in \`Benchmarks/results/$sweep_name.csv\`."
            log "plot written to Benchmarks/results/$sweep_name.png"
        else
            sweep_note="The plot failed (see the log); data in \`Benchmarks/results/$sweep_name.csv\`."
        fi
    else
        sweep_note="Not plotted (no matplotlib); data in \`Benchmarks/results/$sweep_name.csv\`."
    fi
fi

report="$work/report.md"
{
    echo "# Swoop benchmark${title_suffix:+ — $title_suffix}"
    echo
    echo "$started_at · commit $commit · $(nproc) CPUs ($cpu_model) · Linux $(uname -r)"
    echo
    echo "Servers pinned to CPU $SERVER_CPU, load (swoop-load, 1 thread; wrk, $WRK_THREADS thread(s)) to CPU $LOAD_CPU;" \
        "$CONNECTIONS connections, pipeline $PIPELINE (swoop-load); warm-up $WARMUP s, then $DURATION s" \
        "(reload: $RELOAD_DURATION s); $ROUNDS round(s), medians. Load average before: $load_before, after: $load_after."
    echo
    for note in "${NOTES[@]}"; do echo "**Note:** $note"; echo; done
    disturbed="$(count_disturbed)"
    if (( disturbed > 0 )); then
        echo "**Disturbed:** in $disturbed of $((ROUNDS * ${#SCENARIOS[@]})) measurements, other processes took" \
            "more than $DISTURBED_PCT % of CPU $SERVER_CPU or CPU $LOAD_CPU (per round, below). The tables use" \
            "the undisturbed rounds of each column where there are any; a column with none is not reliable," \
            "nor are its ratios. Re-run on a quiet machine to be sure."
        echo
    fi
    echo "## Echo (line protocol, swoop-load)"
    echo
    render_table ECHO_FIGURES "× baseline" "${RUN_ECHO[@]}"
    echo
    render_rounds "${RUN_ECHO[@]}"
    echo
    if (( ${#RUN_HTTP[@]} > 0 )); then
        echo "## HTTP (\`GET /\`, wrk)"
        echo
        render_table HTTP_FIGURES "× baseline" "${RUN_HTTP[@]}"
        echo
        render_rounds "${RUN_HTTP[@]}"
        echo
        echo "Responses (checked once per server and round, before the load):"
        echo
        for scenario in "${RUN_HTTP[@]}"; do echo "- ${TITLE[$scenario]}: ${RESPONSE_SHAPE[$scenario]:-none}"; done
        echo
    fi
    echo "## Reload under load"
    echo
    echo "SIGUSR1 to the master a quarter into the measured window of an echo load; the ratios are to"
    echo "the same server's echo without a reload (previous table)."
    echo
    render_table RELOAD_FIGURES "× without reload" swoop_echo reload_load
    echo
    render_rounds reload_load
    echo
    if (( ${#SWEEP_SCENARIOS[@]} > 0 )); then
        echo "## Connection sweep"
        echo
        echo "Throughput per second (ratio to the baseline of the same protocol), p99; one run of" \
            "${SWEEP_WARMUP} s warm-up and ${SWEEP_DURATION} s (wrk: $(whole_seconds "$SWEEP_WARMUP" 0) s and" \
            "$(whole_seconds "$SWEEP_DURATION" 1) s) per cell, each server started once for its row of counts;" \
            "⚠: other processes took more than $DISTURBED_PCT % of CPU $SERVER_CPU or CPU $LOAD_CPU. $sweep_note"
        echo
        render_sweep
        echo
    fi
    echo "Ratios are to the baseline of the same table and row (throughput: higher is better;"
    echo "latency, memory, start-up: lower is better). The bare C epoll column is the ceiling: the"
    echo "load generator's limit on this machine (see its CPU row). See Benchmarks/README.md."
} >"$report"

echo
cat "$report"
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
