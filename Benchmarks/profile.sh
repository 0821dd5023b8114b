#!/usr/bin/env bash
# Benchmarks/profile.sh — instructions per request, per process, under callgrind.
#
#   bash Benchmarks/profile.sh                 # both modes, echo
#   MODES=base REQUESTS_S=3 bash Benchmarks/profile.sh
#   LOAD=http bash Benchmarks/profile.sh       # HTTP GET / with wrk instead of the echo
#   KEEP=/tmp/profiles bash Benchmarks/profile.sh   # and keep the callgrind files
#   DEMO=/tmp/old/swoop-demo BUILD=0 bash Benchmarks/profile.sh   # another build's counts
#
# Callgrind counts instructions, not seconds: the figures repeat for the same binary and
# load whatever else the machine does, which makes them the yardstick for changes to the
# hot path (run.sh's throughput on a shared machine is too noisy for a 10 % change).
# It runs the release swoop-demo (stripped of DWARF, which valgrind 3.19 cannot read)
# under callgrind with every child traced, starts counting once the server is ready,
# drives it with swoop-load (8 connections, or CONNECTIONS), dumps, and prints for each process its
# instructions per request and its top functions. Servers are stopped by pid.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
MODES="${MODES:-base process}"
REQUESTS_S="${REQUESTS_S:-4}"
TOP="${TOP:-12}"
LOAD="${LOAD:-echo}"
CONNECTIONS="${CONNECTIONS:-8}"
[[ "$LOAD" == echo || "$LOAD" == http ]] || { echo "LOAD is echo or http" >&2; exit 1; }
[[ "$LOAD" == echo ]] || command -v wrk >/dev/null || { echo "LOAD=http needs wrk (apt-get install wrk)" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }

if [[ "${BUILD:-1}" == 1 ]]; then
    (cd "$root" && swift build -c release --product swoop-demo >/dev/null)
    (cd "$here" && swift build -c release --product swoop-load >/dev/null)
fi
work="$(mktemp -d /tmp/swoop-profile.XXXXXX)"
master=""
cleanup() {
    if [[ -n "$master" ]]; then
        kill -TERM "$master" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$master" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$master" 2>/dev/null || true
    fi
}
trap cleanup EXIT
cp "${DEMO:-$root/.build/release/swoop-demo}" "$work/swoop-demo"
strip --strip-debug "$work/swoop-demo"

# An HTTP listener only for the HTTP load, as run.sh starts them: without one, a base-mode
# worker serves its connections on Swoop's own loop.
http_arg=()
[[ "$LOAD" == echo ]] || http_arg=(--http-port 0)
for mode in $MODES; do
    rm -f "$work"/cg.* "$work/out"
    setsid valgrind --tool=callgrind --trace-children=yes --instr-atstart=no --callgrind-out-file="$work/cg.%p" \
        "$work/swoop-demo" --mode "$mode" --worker-num 1 --reactor-num 1 --port 0 "${http_arg[@]}" >"$work/out" 2>"$work/err" &
    for _ in $(seq 1 300); do grep -q ready "$work/out" 2>/dev/null && break; sleep 0.2; done
    master="$(grep -o 'master=[0-9]*' "$work/out" | cut -d= -f2)"
    port="$(grep -o ' port=[0-9]*' "$work/out" | cut -d= -f2)"
    sleep 1
    callgrind_control -i on >/dev/null 2>&1 || true
    if [[ "$LOAD" == echo ]]; then
        load="$("$here/.build/release/swoop-load" --port "$port" --connections "$CONNECTIONS" --duration "$REQUESTS_S" --warmup 0 2>/dev/null)"
        requests="$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$load")"
    else
        http_port="$(grep -o 'http-port=[0-9]*' "$work/out" | cut -d= -f2)"
        load="$(wrk -t1 -c"$CONNECTIONS" -d"${REQUESTS_S}s" "http://127.0.0.1:$http_port/" 2>/dev/null | tr -s ' ' | grep -E 'requests in|Requests/sec' | tr '\n' ' ')"
        requests="$(awk '{ for (i = 1; i < NF; i++) if ($(i + 1) == "requests") { print $i; exit } }' <<<"$load")"
    fi
    # The counts since the zeroing are written when each process exits (its stop adds a
    # little, the same for every run).
    cleanup
    master=""
    sleep 1
    echo "## $mode mode: $requests $LOAD requests ($load)"
    for file in "$work"/cg.*; do
        pid="${file##*cg.}"
        [[ "$pid" =~ ^[0-9]+$ ]] || continue
        # The role as the log lines name it ("[worker 0 pid=123]"); under valgrind the
        # process titles are not the program's.
        title="$(grep -o "\[[a-z ]*[0-9]* *pid=$pid\]" "$work/err" | head -1 | tr -d '[]' || true)"
        total="$(callgrind_annotate "$file" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')"
        [[ -n "$total" && "$requests" -gt 0 && "$total" -gt $(( requests * 100 )) ]] || continue
        printf '\n%s: %s instructions per request\n' "${title:-pid $pid}" "$(( total / requests ))"
        callgrind_annotate --inclusive=no "$file" 2>/dev/null | grep -E '^ *[0-9,]+ \(' | sed -n "2,$((TOP + 1))p" |
            sed 's/\[[^]]*\]//; s/???://' | cut -c1-150
    done
    # KEEP=<dir>: keep the profiles, for callgrind_annotate --tree=caller and the like.
    if [[ -n "${KEEP:-}" ]]; then mkdir -p "$KEEP/$mode" && cp "$work"/cg.* "$KEEP/$mode/"; fi
    echo
done
