#!/usr/bin/env bash
# Builds the libFuzzer targets (Fuzz/Package.swift, with the fuzzer and AddressSanitizer) and
# runs each for DURATION seconds, one after another.
#
#   Fuzz/run.sh                          # every target, 60 s each
#   DURATION=20 Fuzz/run.sh              # the short form, e.g. for CI
#   Fuzz/run.sh http-request ipc-codec   # some targets only
#   Fuzz/run.sh --build-only
#
# Environment:
#   DURATION    seconds per target (default 60)
#   SCRATCH     build folder (default .build-fuzz at the repository root); the growing corpus
#               is kept in $SCRATCH/corpus/<target>, so later runs start from it
#   CRASH_DIR   where crashing inputs go, one folder per target (default $SCRATCH/crashes)
#   FUZZ_ARGS   more libFuzzer flags, e.g. "-jobs=2 -workers=2"
#
# Seeds come from the harnesses themselves (Harness/Seeds.swift, made with Swoop's encoders),
# written to $SCRATCH/seeds/<target> before each run. Exit status: 0 when no target found a
# crash; otherwise 1, with each crashing input listed (and shown in hex) at the end. To replay
# one: .build-fuzz/release/fuzz-<target> <crash file>
set -euo pipefail
cd "$(dirname "$0")/.."

ALL_TARGETS=(eof-framer length-framer ipc-codec binary-decoder http-request)
DURATION=${DURATION:-60}
SCRATCH=${SCRATCH:-$PWD/.build-fuzz}
CRASH_DIR=${CRASH_DIR:-$SCRATCH/crashes}
BUILD_ONLY=0
TARGETS=()
for arg in "$@"; do
    case "$arg" in
        --build-only) BUILD_ONLY=1 ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) TARGETS+=("$arg") ;;
    esac
done
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=("${ALL_TARGETS[@]}")

# `--sanitize=fuzzer` makes SwiftPM link libFuzzer's main instead of the executable's own.
# The sanitizers themselves come through -Xswiftc/-Xcc as one combined flag: given two
# -sanitize flags, swiftc keeps only the last, so `--sanitize=fuzzer --sanitize=address`
# would leave the Swift code without coverage instrumentation and libFuzzer mutating blind.
BUILD=(swift build -c release --package-path Fuzz --scratch-path "$SCRATCH" --sanitize=fuzzer
       -Xswiftc -sanitize=fuzzer,address -Xcc -fsanitize=address)
build_start=$(date +%s)
# A file touched by a concurrent checkout makes swift build stop with "modified during the
# build"; a second attempt then succeeds.
"${BUILD[@]}" || "${BUILD[@]}"
BIN=$("${BUILD[@]}" --show-bin-path)
echo "fuzz: build took $(( $(date +%s) - build_start )) s"
[ "$BUILD_ONLY" = 1 ] && exit 0

# The Swift runtime keeps metadata caches for the life of the process, which LeakSanitizer
# would report after every run; leaks are the sanitizer job's concern, not the fuzzers'.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}

failed=()
for target in "${TARGETS[@]}"; do
    exe="$BIN/fuzz-$target"
    [ -x "$exe" ] || { echo "fuzz: no target $target (have: ${ALL_TARGETS[*]})" >&2; exit 2; }
    seeds="$SCRATCH/seeds/$target"
    corpus="$SCRATCH/corpus/$target"
    crashes="$CRASH_DIR/$target"
    rm -rf "$seeds"
    mkdir -p "$corpus" "$crashes"
    SWOOP_FUZZ_SEEDS="$seeds" "$exe"
    # HTTP inputs need room for bodies past the small limits and for long heads.
    max_len=4096
    [ "$target" = http-request ] && max_len=65536
    echo "fuzz: $target for $DURATION s"
    start=$(date +%s)
    status=0
    # shellcheck disable=SC2086
    "$exe" "$corpus" "$seeds" -max_total_time="$DURATION" -max_len="$max_len" -timeout=20 \
        -rss_limit_mb=4096 -artifact_prefix="$crashes/" -print_final_stats=1 ${FUZZ_ARGS:-} \
        > "$SCRATCH/fuzz-$target.log" 2>&1 || status=$?
    grep -E '^(stat::number_of_executed_units|stat::new_units_added|#[0-9]+ +DONE)' "$SCRATCH/fuzz-$target.log" | sed "s/^/fuzz: $target: /" || true
    echo "fuzz: $target ran $(( $(date +%s) - start )) s, exit $status, corpus $(ls "$corpus" | wc -l) inputs"
    if [ "$status" != 0 ]; then
        failed+=("$target")
        tail -n 60 "$SCRATCH/fuzz-$target.log"
    fi
done

found=$(find "$CRASH_DIR" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) 2>/dev/null | sort)
if [ ${#failed[@]} -ne 0 ] || [ -n "$found" ]; then
    echo "fuzz: FAILED: ${failed[*]:-(earlier runs)}"
    for file in $found; do
        echo "fuzz: $file"
        od -A d -t x1 "$file" | head -n 20
    done
    exit 1
fi
echo "fuzz: ${#TARGETS[@]} targets, $DURATION s each, no crash"
