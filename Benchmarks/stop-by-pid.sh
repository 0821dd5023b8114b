# Benchmarks/stop-by-pid.sh — sourced by ab.sh and probe.sh: `stop` ends the server whose pid
# is in `$pid` (SIGTERM, then SIGKILL after 10 s), reaps it and clears `$pid`.
pid=""
stop() {
    [[ -n "$pid" ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=""
}
