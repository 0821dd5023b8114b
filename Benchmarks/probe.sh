#!/usr/bin/env bash
# Benchmarks/probe.sh — what a loop of our own on raw epoll, in Swift, would cost: swift-epoll
# (with and without async handlers) beside nio-baseline and c-ceiling.
#
#   bash Benchmarks/probe.sh count        # instructions per request (callgrind, 1 thread, 8 connections)
#   bash Benchmarks/probe.sh ab           # throughput, alternating rounds (2 threads on CPU 0, load on CPU 1)
#   ROUNDS=6 PROTOCOLS=http bash Benchmarks/probe.sh ab
#
# Not part of run.sh: it answers one design question (see README.md, "A loop of our own"),
# not a target of the issue. Servers are stopped by pid, also on failure or Ctrl-C.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
what="${1:-count}"
ROUNDS="${ROUNDS:-4}"
PROTOCOLS="${PROTOCOLS:-line http}"
B="$here/.build/release"
[[ "${BUILD:-1}" == 1 ]] && (cd "$here" && swift build -c release >/dev/null)
work="$(mktemp -d /tmp/swoop-probe.XXXXXX)"
source "$here/stop-by-pid.sh"
trap stop EXIT

# start PREFIX BINARY ARGS...: runs a server in the background, waits for its ready line.
start() {
    local prefix=$1; shift
    $prefix "$@" >"$work/out" 2>"$work/err" &
    pid=$!
    for _ in $(seq 1 300); do grep -q ready "$work/out" 2>/dev/null && break; sleep 0.1; done
    port="$(grep -o 'port=[0-9]*' "$work/out" | cut -d= -f2)"
    [[ -n "$port" ]] || { echo "no ready line from $*" >&2; cat "$work/err" >&2; exit 1; }
}

servers=("nio-baseline" "c-ceiling" "swift-epoll" "swift-epoll --async")
for proto in $PROTOCOLS; do
    case "$what" in
    count)
        for server in "${servers[@]}"; do
            read -r bin flags <<<"$server"
            cp "$B/$bin" "$work/$bin"
            strip --strip-debug "$work/$bin"    # valgrind 3.19 cannot read DWARF 5
            rm -f "$work"/cg.*
            start "valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$work/cg.%p" \
                "$work/$bin" --threads 1 --port 0 --protocol "$proto" $flags
            sleep 1
            callgrind_control -i on "$pid" >/dev/null 2>&1
            if [[ "$proto" == line ]]; then
                requests="$("$B/swoop-load" --port "$port" --connections 8 --duration 3 --warmup 0 2>/dev/null |
                    sed -n 's/.*requests=\([0-9]*\).*/\1/p')"
            else
                requests="$(wrk -t1 -c8 -d3s "http://127.0.0.1:$port/" 2>/dev/null | awk '/requests in/ {print $1}')"
            fi
            stop
            total="$(callgrind_annotate "$(ls "$work"/cg.* | head -1)" 2>/dev/null |
                awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')"
            echo "$proto $server: $((total / requests)) instructions per request ($requests requests)"
        done
        ;;
    ab)
        for round in $(seq 1 "$ROUNDS"); do
            for server in "${servers[@]}"; do
                read -r bin flags <<<"$server"
                start "taskset -c 0" "$B/$bin" --threads 2 --port 0 --protocol "$proto" $flags
                if [[ "$proto" == line ]]; then
                    result="$(taskset -c 1 "$B/swoop-load" --port "$port" --connections 64 --duration 5 --warmup 1 2>/dev/null |
                        grep -oE '(msgs_per_s|p99_us|errors|load_cpu_pct)=[0-9.]+' | tr '\n' ' ')"
                else
                    taskset -c 1 wrk -t1 -c64 -d1s "http://127.0.0.1:$port/" >/dev/null 2>&1
                    result="$(taskset -c 1 wrk -t1 -c64 -d5s --latency "http://127.0.0.1:$port/" 2>&1 |
                        awk '/Requests\/sec/ {printf "requests_per_s=%d ", $2} $1 == "99%" {printf "p99=%s ", $2}
                             /Non-2xx|Socket errors/ {printf "ERRORS(%s) ", $0}')"
                fi
                stop
                echo "$proto round=$round $server: $result"
            done
        done
        ;;
    *) echo "usage: probe.sh count|ab" >&2; exit 1 ;;
    esac
done
rm -rf "$work"
