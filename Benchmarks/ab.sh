#!/usr/bin/env bash
# Benchmarks/ab.sh — two builds of swoop-demo, A and B, measured in alternation.
#
#   bash Benchmarks/ab.sh OLD_BINARY NEW_BINARY
#   LOAD=echo MODE=base ROUNDS=5 DURATION=5 bash Benchmarks/ab.sh A B
#
# A change of a few per cent is below what run.sh can see on a shared machine: its servers
# run minutes apart. Here A and B take turns, round after round, with the same load and
# pinning as run.sh (server on CPU 0, load on CPU 1, 64 connections, 1 s of warm-up), so
# each round compares two measurements seconds apart. Read the median of the rounds' ratios.
# To get an older binary: `git archive <rev> | tar -x -C /tmp/old && (cd /tmp/old && swift
# build -c release --product swoop-demo)`. Servers are stopped by pid.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[[ $# == 2 ]] || { echo "usage: $0 BINARY_A BINARY_B" >&2; exit 2; }
A=$1 B=$2
MODE=${MODE:-process} LOAD=${LOAD:-http} ROUNDS=${ROUNDS:-4} DURATION=${DURATION:-5}
[[ "$LOAD" == http || "$LOAD" == echo ]] || { echo "LOAD is http or echo" >&2; exit 2; }
load="$here/.build/release/swoop-load"
[[ "$LOAD" == http ]] || [[ -x "$load" ]] || (cd "$here" && swift build -c release --product swoop-load >/dev/null)

source "$here/stop-by-pid.sh"
out=""
trap 'stop; [[ -z "$out" ]] || rm -f "$out"' EXIT

declare -A results
ratios=()
for round in $(seq 1 "$ROUNDS"); do
    for name in A B; do
        binary=$A
        [[ $name == B ]] && binary=$B
        out=$(mktemp)
        http_flag=()
        [[ "$LOAD" == http ]] && http_flag=(--http-port 0)
        taskset -c 0 "$binary" --mode "$MODE" --worker-num 2 --reactor-num 2 --port 0 "${http_flag[@]}" >"$out" 2>/dev/null &
        pid=$!
        for _ in $(seq 1 100); do grep -q ready "$out" && break; sleep 0.1; done
        grep -q ready "$out" || { echo "$name did not start" >&2; exit 1; }
        if [[ "$LOAD" == http ]]; then
            port=$(grep -o 'http-port=[0-9]*' "$out" | cut -d= -f2)
            taskset -c 1 wrk -t1 -c64 -d1s "http://127.0.0.1:$port/" >/dev/null 2>&1
            figure=$(taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:$port/" 2>/dev/null \
                | awk '/Requests\/sec/ { printf "%d", $2 }')
        else
            port=$(grep -o ' port=[0-9]*' "$out" | cut -d= -f2)
            figure=$(taskset -c 1 "$load" --port "$port" --connections 64 --duration "$DURATION" --warmup 1 2>/dev/null \
                | grep -o 'msgs_per_s=[0-9]*' | cut -d= -f2)
        fi
        stop
        rm -f "$out"
        out=""
        results[$name]=$figure
        echo "round $round $name: $figure per second"
    done
    ratio=$(awk -v a="${results[A]}" -v b="${results[B]}" 'BEGIN { printf "%.3f", (a > 0 ? b / a : 0) }')
    ratios+=("$ratio")
    echo "round $round B/A: $ratio"
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END {
    m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "median of the rounds'"'"' B/A ratios: %.3f (%+.0f %%)\n", m, (m - 1) * 100 }'
