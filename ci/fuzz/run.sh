#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer's coverage instrumentation on the
# stable toolchain (no cargo-fuzz, no nightly: the same compiler flags
# cargo-fuzz passes, minus the sanitizer, which needs -Z) and runs them.
#
#   ci/fuzz/run.sh build                 build every target
#   ci/fuzz/run.sh run TARGET [ARGS...]  run one target on its checked-in
#                                        corpus; ARGS go to libFuzzer
#                                        (e.g. -max_total_time=15, -runs=N)
#   ci/fuzz/run.sh repro TARGET FILE...  run one target on the given inputs
#                                        only (a crash file, to debug it)
#   ci/fuzz/run.sh list                  print the target names
#
# Target dir: $EDDY_FUZZ_TARGET_DIR, else target/fuzz in the clone. New
# inputs libFuzzer finds go to a scratch corpus there, not into the
# checked-in seeds (ci/fuzz/corpus/TARGET); crashes go to
# $EDDY_FUZZ_TARGET_DIR/artifacts/TARGET/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target_dir="${EDDY_FUZZ_TARGET_DIR:-$root/target/fuzz}"
triple="$(rustc -vV | sed -n 's/^host: //p')"

# Passed with an explicit --target, so build scripts and proc macros (host
# code) are built without instrumentation, as cargo-fuzz does.
export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 --cfg fuzzing"
export CARGO_TARGET_DIR="$target_dir"

targets() { sed -n 's/^name = "\(.*\)"$/\1/p' "$here/Cargo.toml" | grep -v '^eddy-fuzz$'; }

# Not --locked: the lock pins what it has, and a dependency a crate of the
# workspace gains later is added to it here instead of failing the build.
build() {
    cargo build --manifest-path "$here/Cargo.toml" --release --target "$triple" --bins
}

run() {
    local t=$1
    shift
    local bin="$target_dir/$triple/release/$t"
    local scratch="$target_dir/corpus/$t" art="$target_dir/artifacts/$t"
    mkdir -p "$scratch" "$art"
    # The first corpus dir receives new inputs; the seeds are read only.
    "$bin" -artifact_prefix="$art/" -print_final_stats=1 "$@" "$scratch" "$here/corpus/$t"
}

repro() {
    local t=$1
    shift
    "$target_dir/$triple/release/$t" "$@"
}

case "${1:-}" in
    build) build ;;
    run) shift; run "$@" ;;
    repro) shift; repro "$@" ;;
    list) targets ;;
    *) echo "usage: $0 build | run TARGET [libFuzzer args] | repro TARGET FILE... | list" >&2; exit 2 ;;
esac
