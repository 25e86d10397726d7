#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ (see fuzz/README.md).
#
#   scripts/fuzz.sh TARGET SECONDS   fuzz one target (artifact_loader | onnx_ingest)
#   scripts/fuzz.sh smoke            regressions + both targets briefly with a fixed seed
#                                    and execution count (CI, about 1-2 min of fuzzing,
#                                    the same amount on any machine);
#                                    fails on any crash, timeout or OOM
#   scripts/fuzz.sh regressions      replay fuzz/regressions/ (.ddq: loader, .onnx: ONNX)
#   scripts/fuzz.sh build [TARGET]   only build
#
# Environment:
#   FUZZ_SANITIZER   address | none (default none: the crates under test are safe Rust
#                    apart from two i8/u8 slice casts; overflow checks stay on)
#   FUZZ_CORPUS      corpus directory for TARGET runs (default fuzz/corpus/TARGET,
#                    git-ignored; the committed seeds are copied in first)
#   FUZZ_JOBS        libFuzzer -fork=N workers (default 1: one process, no fork mode)
#   CARGO_TARGET_DIR build directory (default /work/target-fuzz if /work exists)
#   FUZZ_KEEP_GOING  1: fork mode with -ignore_crashes/-ignore_timeouts/-ignore_ooms,
#                    to keep fuzzing past a known, still open bug (every finding is
#                    still saved and counted, and the run still fails)
#   FUZZ_ARGS        extra libFuzzer flags
#   FUZZ_FULL_MODELS 1 (onnx_ingest): also put models/mnist_unet.onnx and
#                    models/mnist_classifier.onnx (1.7 MB each) and the seeds over
#                    ONNX_MAX_LEN into the corpus, with -max_len=2 MiB; one execution
#                    on the whole UNet takes about 0.3 s, on a seed about 1-50 ms
#
# Exit status: 0 when the run ended without a finding, 1 otherwise (reproducer in
# fuzz/artifacts/TARGET/).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
fuzz="$root/fuzz"
triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
sanitizer=${FUZZ_SANITIZER:-none}
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
    if [ -d /work ]; then CARGO_TARGET_DIR=/work/target-fuzz; else CARGO_TARGET_DIR="$fuzz/target"; fi
fi
export CARGO_TARGET_DIR

die() { echo "fuzz.sh: $*" >&2; exit 2; }

command -v cargo-fuzz >/dev/null || die "cargo-fuzz missing: cargo install cargo-fuzz --locked"
rustup toolchain list | grep -q '^nightly' || die "needs a nightly toolchain: rustup toolchain install nightly"

# Per-target build flags and libFuzzer limits.
#   artifact_loader: runtime only (no tract); 5 s per input is generous, one input
#                    normally takes well under a millisecond.
#   onnx_ingest:     tract; 16 codegen units keep the build of tract reasonable.
#                    Inputs up to ONNX_MAX_LEN (the small seeds, slices of the
#                    shipped models, are 1-11 KB); slower inputs get less energy.
target_flags() {
    case "$1" in
        artifact_loader) echo "--no-default-features --features fuzzing" ;;
        onnx_ingest) echo "--codegen-units 16" ;;
        *) die "unknown target '$1' (artifact_loader | onnx_ingest)" ;;
    esac
}
target_limits() {
    case "$1" in
        artifact_loader) echo "-timeout=5 -rss_limit_mb=1024 -max_len=65536" ;;
        onnx_ingest)
            local max=$ONNX_MAX_LEN
            [ "${FUZZ_FULL_MODELS:-0}" = 1 ] && max=2097152
            echo "-timeout=30 -rss_limit_mb=2048 -max_len=$max -entropic_scale_per_exec_time=1"
            ;;
    esac
}
ONNX_MAX_LEN=16384

# Copies the committed seeds of TARGET into CORPUS. onnx_ingest: only the seeds
# that fit in ONNX_MAX_LEN (libFuzzer would cut the others), unless
# FUZZ_FULL_MODELS=1, which adds the two shipped models too.
copy_seeds() {
    local t=$1 corpus=$2 f
    for f in "$fuzz/seeds/$t"/*; do
        [ -f "$f" ] || continue
        if [ "$t" = onnx_ingest ] && [ "${FUZZ_FULL_MODELS:-0}" != 1 ] &&
            [ "$(stat -c %s "$f")" -gt "$ONNX_MAX_LEN" ]; then
            continue
        fi
        cp -n "$f" "$corpus"/
    done
    if [ "$t" = onnx_ingest ] && [ "${FUZZ_FULL_MODELS:-0}" = 1 ]; then
        cp -n "$root/models/mnist_unet.onnx" "$root/models/mnist_classifier.onnx" "$corpus"/
    fi
}

build() {
    local t=$1
    # shellcheck disable=SC2046
    (cd "$fuzz" && cargo +nightly fuzz build -s "$sanitizer" $(target_flags "$t") \
        --target-dir "$(dir_of "$t")" "$t" >&2)
}

# crash-, timeout-, oom- and leak- reproducers libFuzzer wrote to DIR.
count_findings() {
    find "$1" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | wc -l
}

# The loader builds in a sub-directory: it uses other features, and its build must
# not wait for a build of tract holding the lock of the main build directory.
dir_of() {
    case "$1" in
        artifact_loader) echo "$CARGO_TARGET_DIR/artifact_loader" ;;
        *) echo "$CARGO_TARGET_DIR" ;;
    esac
}
bin_of() { echo "$(dir_of "$1")/$triple/release/$1"; }

# run TARGET SECONDS CORPUS_DIR [LIBFUZZER_FLAGS...]: fuzz, print the summary, return
# libFuzzer's status.
run() {
    local t=$1 secs=$2 corpus=$3
    shift 3
    local art="$fuzz/artifacts/$t" log tmp rc=0
    mkdir -p "$corpus" "$art"
    copy_seeds "$t" "$corpus"
    tmp=$(mktemp -d)
    log="$tmp/libfuzzer.log"
    local before fork=()
    before=$(count_findings "$art")
    if [ "${FUZZ_KEEP_GOING:-0}" = 1 ]; then
        fork=(-fork="${FUZZ_JOBS:-1}" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
    elif [ "${FUZZ_JOBS:-1}" -gt 1 ]; then
        fork=(-fork="$FUZZ_JOBS")
    fi
    echo "== $t: ${secs}s, corpus $corpus ($(find "$corpus" -type f | wc -l) files), sanitizer $sanitizer" >&2
    # shellcheck disable=SC2046,SC2086
    DDPM_FUZZ_TMP="$tmp" "$(bin_of "$t")" $(target_limits "$t") \
        -max_total_time="$secs" -print_final_stats=1 "${fork[@]}" \
        -artifact_prefix="$art/" "$@" ${FUZZ_ARGS:-} \
        "$corpus" >"$log" 2>&1 || rc=$?
    local execs eps crashes
    # -fork mode prints per-job stats; sum the final numbers of all of them.
    execs=$(awk -F: '/^stat::number_of_executed_units/ {s += $NF} END {print s + 0}' "$log")
    # Fork mode prints no final stats: take the last "#N:" status line.
    [ "$execs" -gt 0 ] || execs=$(sed -n 's/^#\([0-9]*\)[: ].*/\1/p' "$log" | tail -1)
    execs=${execs:-0}
    # libFuzzer's own rate (sum over fork jobs), else executions / requested time.
    eps=$(awk -F: '/^stat::average_exec_per_sec/ {s += $NF} END {print s + 0}' "$log")
    [ "$eps" -gt 0 ] || eps=$(awk -v e="$execs" -v s="$secs" 'BEGIN {printf "%.0f", e / (s > 0 ? s : 1)}')
    crashes=$(( $(count_findings "$art") - before ))
    if [ "$rc" -ne 0 ]; then
        tail -n 60 "$log" >&2
    else
        grep -E '^(Done|stat::)' "$log" >&2 || true
    fi
    echo "RESULT target=$t seconds=$secs executions=$execs execs_per_sec=$eps new_artifacts=$crashes exit=$rc"
    rm -rf "$tmp"
    [ "$rc" -eq 0 ] && [ "$crashes" -eq 0 ]
}

# Replays every regression file once: .ddq through artifact_loader, .onnx through
# onnx_ingest (each file on its own, so one failure does not hide the others).
regressions() {
    local f t status=0
    for f in "$fuzz"/regressions/*.ddq "$fuzz"/regressions/*.onnx; do
        [ -e "$f" ] || continue
        case "$f" in *.ddq) t=artifact_loader ;; *) t=onnx_ingest ;; esac
        [ -x "$(bin_of "$t")" ] || continue
        if "$(bin_of "$t")" -timeout=30 "$f" >/dev/null 2>&1; then
            echo "regression ok:     $t $(basename "$f")" >&2
        else
            echo "regression FAILED: $t $(basename "$f")" >&2
            status=1
        fi
    done
    return "$status"
}

case "${1:-}" in
    smoke)
        build artifact_loader
        build onnx_ingest
        status=0
        regressions || { status=1; echo "smoke: a regression input fails" >&2; }
        s1=$(mktemp -d) s2=$(mktemp -d)
        # Fixed seed and execution counts, fresh corpora from the committed seeds,
        # no energy scaling by execution time: the same amount of fuzzing on every
        # machine, whatever its speed (the seconds are only a cap). Not
        # bit-reproducible: libFuzzer's comparison tracing depends on addresses, so
        # runs differ in the inputs they add. Longer, random campaigns:
        # TARGET SECONDS.
        run artifact_loader "${FUZZ_SMOKE_LOADER_SECS:-90}" "$s1" \
            -seed="${FUZZ_SMOKE_SEED:-1}" -runs="${FUZZ_SMOKE_LOADER_RUNS:-1500000}" || status=1
        run onnx_ingest "${FUZZ_SMOKE_ONNX_SECS:-90}" "$s2" \
            -seed="${FUZZ_SMOKE_SEED:-1}" -runs="${FUZZ_SMOKE_ONNX_RUNS:-50000}" \
            -entropic_scale_per_exec_time=0 || status=1
        rm -rf "$s1" "$s2"
        [ "$status" -eq 0 ] && echo "smoke: no crashes" || echo "smoke: FAILED (see fuzz/artifacts/)"
        exit "$status"
        ;;
    regressions)
        build artifact_loader
        build onnx_ingest
        regressions
        ;;
    build)
        if [ -n "${2:-}" ]; then build "$2"; else build artifact_loader; build onnx_ingest; fi
        ;;
    artifact_loader | onnx_ingest)
        [ -n "${2:-}" ] || die "usage: scripts/fuzz.sh $1 SECONDS"
        [[ "$2" =~ ^[0-9]+$ ]] || die "SECONDS must be an integer"
        build "$1"
        run "$1" "$2" "${FUZZ_CORPUS:-$fuzz/corpus/$1}" || exit 1
        ;;
    *)
        awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
        exit 2
        ;;
esac
