#!/usr/bin/env bash
# Run every fuzz target of fuzz/ (cargo-fuzz, libFuzzer) for SECONDS_PER_TARGET seconds each
# (default 10), starting from the seeds committed in fuzz/corpus/<target>/. See docs/fuzzing.md.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Environment: FUZZ_SANITIZER (address by default; `none` builds without ASan),
# FUZZ_TARGET_DIR (cargo's target directory for the fuzz build, default fuzz/target).
# Exits non-zero when a target finds a crash; the input is then in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-10}"
shift || true
sanitizer="${FUZZ_SANITIZER:-address}"
target_dir="${FUZZ_TARGET_DIR:-$PWD/fuzz/target}"
cargo_fuzz_version=0.13.2

if ! cargo fuzz --version 2>/dev/null | grep -q "$cargo_fuzz_version"; then
    cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked
fi

# cargo-fuzz builds with -Z flags (sanitizer, coverage instrumentation): a stable toolchain
# accepts them under RUSTC_BOOTSTRAP=1, and ships the ASan runtime (librustc-stable_rt.asan.a).
export RUSTC_BOOTSTRAP=1

# Largest input per target (bytes): past these sizes only the parsers' length limits are tested.
max_len() {
    case "$1" in
        proxy_protocol) echo 1024 ;;  # a v1 line is at most 107 bytes; v2 with TLVs and unix paths
        manifest) echo 8192 ;;        # several documents, a small certificate
        annotations) echo 2048 ;;
        routing) echo 512 ;;
        http1_request) echo 4096 ;;
        *) echo 4096 ;;
    esac
}

cd fuzz
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build --sanitizer "$sanitizer" --target-dir "$target_dir"

failed=()
for t in "${targets[@]}"; do
    echo "fuzz: $t for ${secs}s"
    # New inputs go to the first folder (not committed); the committed seeds are only read.
    mkdir -p "corpus-run/$t" "corpus/$t"
    if ! cargo fuzz run --sanitizer "$sanitizer" --target-dir "$target_dir" "$t" \
        "corpus-run/$t" "corpus/$t" -- \
        -max_total_time="$secs" -max_len="$(max_len "$t")" -rss_limit_mb=512 -timeout=5 \
        -print_final_stats=1; then
        failed+=("$t")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: crashes in: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${secs}s each, no crash"
