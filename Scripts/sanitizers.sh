#!/usr/bin/env bash
# Runs the whole test suite (unit and real-process integration tests) under AddressSanitizer
# and ThreadSanitizer, each in a build folder of its own (.build-asan, .build-tsan), and
# reports how long each build and run took.
#
#   Scripts/sanitizers.sh                 # address, then thread
#   Scripts/sanitizers.sh thread          # one of them
#   FILTER=HTTPTests Scripts/sanitizers.sh address   # some tests only (swift test --filter)
#
# The integration tests start swoop-demo and swoop-fixture from the same build folder, so the
# master, manager and workers run instrumented too. A sanitizer report from any of those
# processes goes to a file of its own (log_path), because their standard error is not the
# test's. The run fails when a test fails or when any process left a report; the reports
# are printed at the end and kept in <build folder>/sanitizer-reports.
#
# Settings, and why:
# - ASan: LeakSanitizer off (detect_leaks=0). Every server process exits with its MasterCore,
#   reactors and IPC channels still alive (process-lifetime objects, freed by exit), which LSan
#   reports as leaks in each of ~80 processes; its at-exit scan also keeps a dying process in
#   /proc long enough to fail the tests that check nothing is left behind. Growth per
#   connection or request is what LeakTests measures instead. LEAKS=1 turns it back on,
#   reporting only.
# - TSan: reports do not change exit statuses either (exitcode=0), for the same reason; a
#   report still fails this script. Scripts/tsan-suppressions.txt holds the narrow
#   suppressions for reports inside Foundation/SwiftNIO, each with its reason.
# - Both: SWIFT_BACKTRACE=enable=no. Some tests crash a worker on purpose; the Swift runtime's
#   backtracer then copies the dead process's memory page by page (CrashHandlerLinux's
#   memserver_read), and ASan reports those reads as wild-pointer memcpys. Not our code, and
#   the manager only needs the exit status.
set -euo pipefail
export SWIFT_BACKTRACE=enable=no
cd "$(dirname "$0")/.."

SANITIZERS=("$@")
[ ${#SANITIZERS[@]} -eq 0 ] && SANITIZERS=(address thread)
FILTER_ARGS=()
[ -n "${FILTER:-}" ] && FILTER_ARGS=(--filter "$FILTER")

status=0
summary=()
for sanitizer in "${SANITIZERS[@]}"; do
    case "$sanitizer" in
        address) scratch=.build-asan ;;
        thread) scratch=.build-tsan ;;
        *) echo "sanitizers: unknown sanitizer $sanitizer (address, thread)" >&2; exit 2 ;;
    esac
    reports="$PWD/$scratch/sanitizer-reports"
    rm -rf "$reports"
    mkdir -p "$reports"

    build_start=$(date +%s)
    build=(swift build --build-tests --sanitize="$sanitizer" --scratch-path "$scratch")
    # A concurrent checkout may make swift build stop with "modified during the build".
    "${build[@]}" || "${build[@]}"
    build_time=$(( $(date +%s) - build_start ))

    case "$sanitizer" in
        address)
            if [ "${LEAKS:-0}" = 1 ]; then
                export ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=1" LSAN_OPTIONS="exitcode=0"
            else
                export ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=0"
            fi
            ;;
        thread)
            export TSAN_OPTIONS="log_path=$reports/tsan:exitcode=0:halt_on_error=0:second_deadlock_stack=1:suppressions=$PWD/Scripts/tsan-suppressions.txt"
            ;;
    esac
    test_start=$(date +%s)
    set +e
    swift test --skip-build --sanitize="$sanitizer" --scratch-path "$scratch" ${FILTER_ARGS[@]+"${FILTER_ARGS[@]}"} \
        2>&1 | tee "$scratch/sanitizer-test.log" | grep -E "^(Test Suite 'All tests'|.*error:|.*failed \()"
    test_status=${PIPESTATUS[0]}
    set -e
    test_time=$(( $(date +%s) - test_start ))
    unset ASAN_OPTIONS LSAN_OPTIONS TSAN_OPTIONS

    # Sort the reports: real errors versus leak-only reports.
    errors=()
    leaks=()
    for file in "$reports"/*; do
        [ -f "$file" ] || continue
        if grep -qE "ERROR: (AddressSanitizer|ThreadSanitizer)|WARNING: ThreadSanitizer" "$file"; then
            errors+=("$file")
        elif grep -q "ERROR: LeakSanitizer" "$file"; then
            leaks+=("$file")
        fi
    done
    for file in ${errors[@]+"${errors[@]}"}; do
        echo "=== $sanitizer report: $file"
        head -n 80 "$file"
    done
    if [ ${#leaks[@]} -ne 0 ]; then
        echo "=== $sanitizer: ${#leaks[@]} process(es) reported leaks at exit (not failing); the first:"
        grep -m1 -A3 "SUMMARY" "${leaks[0]}" || true
    fi
    result=passed
    if [ "$test_status" != 0 ] || [ ${#errors[@]} -ne 0 ]; then
        result=FAILED
        status=1
    fi
    summary+=("$sanitizer: $result, tests exit $test_status, ${#errors[@]} report(s), build ${build_time} s, tests ${test_time} s")
done

for line in "${summary[@]}"; do echo "sanitizers: $line"; done
exit $status
