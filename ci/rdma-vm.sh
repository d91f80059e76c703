#!/usr/bin/env bash
# Real verbs in CI (docs/RDMA.md): boots Debian's kernel under QEMU (TCG, no
# KVM needed), makes a soft-RoCE device (rdma_rxe) on a dummy interface and
# runs eddy-rdma's tests over `verbs;ofi_rxm` inside the guest, then the
# real `eddy` master, worker and client over verbs (ci/rdma-vm/eddy-verbs.sh).
# The host's kernel is never touched: the guest kernel comes from
# `apt-get download`, unpacked into a cache that later runs reuse.
#
# Usage: ci/rdma-vm.sh [--bin PATH]... [--guest-script FILE]... [--no-tests]
#                      [--no-e2e]
#   --bin PATH           pack PATH (and every library ldd names) as
#                        /guest/bin/NAME; /guest/bin is first on the PATH
#   --guest-script FILE  run FILE with busybox sh after the tests (and after
#                        the e2e script), in the order given
#   --no-tests           skip GUEST_TESTS
#   --no-e2e             skip the product path: no `cargo build -p eddy-cli`,
#                        no ci/rdma-vm/eddy-verbs.sh
# With no arguments: GUEST_TESTS, then eddy-verbs.sh with the `eddy` binary
# this script builds.
# Environment: EDDY_VM_CACHE (kernel cache, default ~/.cache/eddy-rdma-vm),
# EDDY_VM_TIMEOUT (seconds the VM may run, default 480), EDDY_VM_TESTS
# (replaces GUEST_TESTS, one "NAME ARGS" a line), CARGO_TARGET_DIR.
# Exit status: 0 only when the guest printed "EDDY-VM-RESULT: PASS".
set -euo pipefail
cd "$(dirname "$0")/.."

# The guest's tests: a test target of eddy-rdma (tests/NAME.rs) and its
# arguments, one per line. Adding a test binary is adding a line here.
GUEST_TESTS=(
    "one_sided --test-threads=1"
    "limits --test-threads=1"
)
# EDDY_VM_TESTS (lines in the same form) replaces the list, to run one
# test binary or one test while looking into a failure.
if [ -n "${EDDY_VM_TESTS:-}" ]; then
    mapfile -t GUEST_TESTS <<<"$EDDY_VM_TESTS"
fi

# The product path over verbs: `eddy` (built here) runs a master, a worker
# serving remote leases and RDMA reads from the CLI (docs/RDMA.md).
E2E_SCRIPT=ci/rdma-vm/eddy-verbs.sh

# Kernel modules for soft-RoCE, in load order (../shared/RDMA-NOTES.md).
# crc32_generic (rxe's ICRC, a soft dependency modules.dep does not list)
# and configfs (rdma_cm) come first; the dependencies modules.dep does list
# are added before each module automatically.
MODULES=(crc32_generic ib_core ib_uverbs udp_tunnel ip6_udp_tunnel rdma_rxe
    ib_cm iw_cm configfs rdma_cm rdma_ucm dummy)

# Host commands and files packed into the guest besides the tests.
GUEST_TOOLS=(/usr/bin/ip /usr/bin/rdma /usr/bin/ibv_devinfo)
RXE_PROVIDER=/usr/lib/x86_64-linux-gnu/libibverbs/librxe-rdmav34.so
RXE_DRIVER=/etc/libibverbs.d/rxe.driver
# eddy-rdma loads libfabric with dlopen at first use (docs/RDMA.md), so ldd
# of a test or of `eddy` never names it: it is packed on its own, with what
# it links (libibverbs, librdmacm, psm, ...).
LIBFABRIC=/usr/lib/x86_64-linux-gnu/libfabric.so.1

CACHE=${EDDY_VM_CACHE:-$HOME/.cache/eddy-rdma-vm}
VM_TIMEOUT=${EDDY_VM_TIMEOUT:-480}
EXTRA_BINS=()
GUEST_SCRIPTS=()
RUN_TESTS=1
RUN_E2E=1

die() {
    echo "rdma-vm: $*" >&2
    exit 1
}
say() { echo "rdma-vm: $*"; }

PHASE_START=$SECONDS
PHASES=()
phase_done() {
    PHASES+=("$(printf '%-12s %4ds' "$1" $((SECONDS - PHASE_START)))")
    PHASE_START=$SECONDS
}

parse_args() {
    while [ $# -gt 0 ]; do
        case $1 in
        --bin)
            [ $# -ge 2 ] || die "--bin needs a path"
            [ -x "$2" ] || die "--bin $2: not an executable file"
            EXTRA_BINS+=("$2")
            shift 2
            ;;
        --guest-script)
            [ $# -ge 2 ] || die "--guest-script needs a file"
            [ -f "$2" ] || die "--guest-script $2: no such file"
            GUEST_SCRIPTS+=("$2")
            shift 2
            ;;
        --no-tests)
            RUN_TESTS=0
            shift
            ;;
        --no-e2e)
            RUN_E2E=0
            shift
            ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *) die "unknown argument $1 (see --help)" ;;
        esac
    done
}

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

# Installs what is missing, with the reason for each package:
#   qemu-system-x86    qemu-system-x86_64, which boots the guest kernel (TCG)
#   busybox-static     the guest's /init shell and tools, needing no libraries
#   cpio               packs the initramfs
#   kmod               depmod, to write modules.dep for the unpacked kernel
#                      (dpkg -x runs no postinst, so the package has none)
#   xz-utils           for kernels whose modules are .ko.xz (busybox insmod
#                      wants plain .ko; bookworm's are plain already)
#   iproute2           `ip` (the dummy interface) and `rdma link add` (rxe0);
#                      Debian ships the rdma tool here, not in rdma-core
#   libibverbs1        libibverbs, which libfabric's verbs provider calls
#   ibverbs-providers  librxe-rdmav34.so + rxe.driver: soft-RoCE's user part
#   ibverbs-utils      ibv_devinfo, the guest's check that rxe0 exists
#   libfabric-dev      headers and library eddy-rdma's shim builds against
# perftest (ib_read_bw) is not needed: the tests read over libfabric.
ensure_packages() {
    local want=(qemu-system-x86 busybox-static cpio kmod xz-utils iproute2 libibverbs1
        ibverbs-providers ibverbs-utils libfabric-dev) need=() p
    for p in "${want[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
    done
    if [ ${#need[@]} -gt 0 ]; then
        say "installing ${need[*]}"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
    fi
    phase_done packages
}

# The kernel package apt would install for linux-image-amd64 (a Debian 6.1
# kernel on bookworm), from the local package lists.
kernel_package() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-6\.1\.[0-9.-]*-amd64\)$/\1/p' | head -n 1
}

# Sets KDIR (the unpacked package) and KVER (its /lib/modules name).
fetch_kernel() {
    local pkg
    pkg=$(kernel_package)
    if [ -z "$pkg" ]; then
        $SUDO apt-get update -qq
        pkg=$(kernel_package)
    fi
    [ -n "$pkg" ] || die "apt offers no linux-image-6.1.*-amd64 (apt-cache depends linux-image-amd64): check the apt sources"
    KDIR=$CACHE/$pkg
    if [ ! -f "$KDIR/.unpacked" ]; then
        say "downloading $pkg into $CACHE"
        mkdir -p "$CACHE"
        rm -rf "$KDIR" "$CACHE"/download
        mkdir -p "$CACHE"/download
        # apt-get download writes into the working directory.
        (cd "$CACHE"/download && apt-get download -q "$pkg") ||
            die "apt-get download $pkg failed: is the network or the apt mirror reachable?"
        dpkg -x "$CACHE"/download/"$pkg"_*.deb "$KDIR"
        rm -rf "$CACHE"/download
        /sbin/depmod -b "$KDIR" "${pkg#linux-image-}" || die "depmod for $KDIR failed"
        touch "$KDIR/.unpacked"
        # Only the newest kernel is kept.
        find "$CACHE" -mindepth 1 -maxdepth 1 -name 'linux-image-*' ! -name "$pkg" -exec rm -rf {} +
    fi
    KVER=${pkg#linux-image-}
    [ -f "$KDIR/boot/vmlinuz-$KVER" ] || die "$KDIR has no boot/vmlinuz-$KVER: remove $KDIR and run again"
    [ -f "$KDIR/lib/modules/$KVER/modules.dep" ] || die "$KDIR has no modules.dep for $KVER"
    phase_done kernel
}

# Prints the test executables cargo built, as "name path" lines.
build_tests() {
    cargo test -p eddy-rdma --locked --no-run --message-format=json |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "test" in m["target"]["kind"]:
        print(m["target"]["name"], m["executable"])'
}

# Builds `eddy` and prints its path.
build_eddy() {
    cargo build -p eddy-cli --bin eddy --locked --message-format=json |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "eddy":
        print(m["executable"])'
}

# Copies FILE to the same path under the guest root, dereferencing links.
pack_file() {
    local root=$1 file=$2
    mkdir -p "$root$(dirname "$file")"
    cp -L "$file" "$root$file"
}

# Packs every shared library ldd names for ELF into the guest root.
pack_libs() {
    local root=$1 elf=$2 out lib
    if ! out=$(ldd "$elf" 2>&1); then
        case $out in *"not a dynamic executable"*) return 0 ;; esac
        die "ldd $elf failed: $out"
    fi
    case $out in *"not found"*) die "ldd $elf: a library is missing on this host: $out" ;; esac
    for lib in $(printf '%s\n' "$out" | sed -n 's/.*=> \(\/[^ ]*\).*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) (.*/\1/p'); do
        [ -e "$root$lib" ] || pack_file "$root" "$lib"
    done
}

# Writes the module list (load order, each after what modules.dep says it
# needs) to the guest and copies the modules, decompressed.
MODS_SEEN=" "
add_module() {
    local root=$1 rel=$2 moddir=$KDIR/lib/modules/$KVER dep deps name
    name=$(basename "$rel")
    name=${name%.xz}
    case $MODS_SEEN in *" $name "*) return 0 ;; esac
    deps=$(sed -n "s|^$rel: *||p" "$moddir/modules.dep")
    # modules.dep lists a module's dependencies with the last to load first.
    for dep in $(printf '%s\n' $deps | tac); do add_module "$root" "$dep"; done
    case $rel in
    *.xz) xz -dc "$moddir/$rel" >"$root/guest/modules/$name" ;;
    *) cp "$moddir/$rel" "$root/guest/modules/$name" ;;
    esac
    echo "$name" >>"$root/guest/modules.list"
    MODS_SEEN="$MODS_SEEN$name "
}

pack_modules() {
    local root=$1 moddir=$KDIR/lib/modules/$KVER m rel
    mkdir -p "$root/guest/modules"
    : >"$root/guest/modules.list"
    for m in "${MODULES[@]}"; do
        rel=$(grep -E "(^|/)$m\.ko(\.xz)?:" "$moddir/modules.dep" | cut -d: -f1 | head -n 1 || true)
        if [ -z "$rel" ]; then
            # Built into this kernel: nothing to load.
            grep -qE "(^|/)$m\.ko$" "$moddir/modules.builtin" ||
                die "kernel $KVER has no module $m (neither in modules.dep nor built in)"
            continue
        fi
        add_module "$root" "$rel"
    done
}

build_initramfs() {
    local root=$1 tests=$2 name path args b
    mkdir -p "$root"/usr/lib "$root"/usr/lib64 "$root"/usr/bin "$root"/bin "$root"/etc \
        "$root"/guest/tests "$root"/guest/bin
    # Debian's merged /usr: /lib and /lib64 are links, as on the host.
    ln -s usr/lib "$root"/lib
    ln -s usr/lib64 "$root"/lib64
    cp /bin/busybox "$root"/bin/busybox
    install -m 755 ci/rdma-vm/init.sh "$root"/init
    for b in "${GUEST_TOOLS[@]}"; do
        [ -x "$b" ] || die "$b is missing on this host (ensure_packages installs it)"
        pack_file "$root" "$b"
        pack_libs "$root" "$b"
    done
    [ -f "$RXE_PROVIDER" ] && [ -f "$RXE_DRIVER" ] ||
        die "no soft-RoCE verbs provider ($RXE_PROVIDER, $RXE_DRIVER): install ibverbs-providers"
    pack_file "$root" "$RXE_PROVIDER"
    pack_libs "$root" "$RXE_PROVIDER"
    pack_file "$root" "$RXE_DRIVER"
    [ -f "$LIBFABRIC" ] || die "no $LIBFABRIC: install libfabric1 (libfabric-dev pulls it in)"
    pack_file "$root" "$LIBFABRIC"
    pack_libs "$root" "$LIBFABRIC"
    : >"$root"/guest/tests.list
    if [ "$RUN_TESTS" = 1 ]; then
        for b in "${GUEST_TESTS[@]}"; do
            name=${b%% *}
            args=${b#"$name"}
            path=$(awk -v n="$name" '$1 == n { print $2 }' "$tests")
            [ -n "$path" ] || die "cargo built no test binary named $name (GUEST_TESTS in $0)"
            cp "$path" "$root/guest/tests/$name"
            pack_libs "$root" "$path"
            echo "$name$args" >>"$root"/guest/tests.list
        done
    fi
    for b in "${EXTRA_BINS[@]}"; do
        cp -L "$b" "$root/guest/bin/$(basename "$b")"
        pack_libs "$root" "$b"
    done
    # Each line of scripts.list: a script under /guest/scripts, run in order.
    mkdir -p "$root"/guest/scripts
    : >"$root"/guest/scripts.list
    local i=0 s
    for s in "${GUEST_SCRIPTS[@]}"; do
        i=$((i + 1))
        name=$i-$(basename "$s")
        cp "$s" "$root/guest/scripts/$name"
        echo "$name" >>"$root"/guest/scripts.list
    done
    pack_modules "$root"
    # Uncompressed: unpacking gzip under emulation costs more than the
    # bigger image does.
    (cd "$root" && find . | cpio -o -H newc --quiet) >"$WORK/initrd.cpio"
    say "initramfs $(du -h "$WORK/initrd.cpio" | cut -f1): modules $(tr '\n' ' ' <"$root/guest/modules.list")"
}

# Boots the guest and judges its serial output.
boot() {
    local log=$WORK/serial.log rc result
    say "booting $KVER under QEMU (TCG, at most ${VM_TIMEOUT}s); serial console follows"
    set +e
    timeout -k 10 "$VM_TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 1024 \
        -nographic -nic none -no-reboot \
        -kernel "$KDIR/boot/vmlinuz-$KVER" -initrd "$WORK/initrd.cpio" \
        -append 'console=ttyS0 panic=-1 loglevel=4 random.trust_cpu=on' \
        </dev/null 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    phase_done boot
    result=$(tr -d '\r' <"$log" | grep -a '^EDDY-VM-RESULT: ' | tail -n 1 || true)
    if [ "$result" = "EDDY-VM-RESULT: PASS" ]; then
        say "PASS: every guest test and script passed over verbs;ofi_rxm (soft-RoCE)"
        return 0
    fi
    if [ -n "$result" ]; then
        echo "rdma-vm: ${result#EDDY-VM-RESULT: } inside the VM: the serial log above says why (kept in $log)" >&2
    elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
        echo "rdma-vm: FAIL: the VM gave no result within ${VM_TIMEOUT}s (a hang, or slow emulation: raise EDDY_VM_TIMEOUT); serial log kept in $log" >&2
    else
        echo "rdma-vm: FAIL: the VM ended (qemu exit $rc) without a result line: it did not boot or /init died; serial log kept in $log" >&2
    fi
    return 1
}

main() {
    parse_args "$@"
    ensure_packages
    fetch_kernel
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/eddy-rdma-vm.XXXXXX")
    local tests=$WORK/tests.txt
    if [ "$RUN_TESTS" = 1 ]; then
        build_tests >"$tests" || die "building eddy-rdma's test binaries failed (cargo's errors above)"
    else
        : >"$tests"
    fi
    if [ "$RUN_E2E" = 1 ]; then
        local eddy
        eddy=$(build_eddy) || die "building eddy (cargo build -p eddy-cli) failed (cargo's errors above)"
        [ -x "$eddy" ] || die "cargo build -p eddy-cli named no eddy executable"
        EXTRA_BINS+=("$eddy")
        GUEST_SCRIPTS=("$E2E_SCRIPT" "${GUEST_SCRIPTS[@]}")
    fi
    phase_done build
    build_initramfs "$WORK/root" "$tests"
    phase_done initramfs
    local ok=0
    boot && ok=1
    printf '%s\n' "${PHASES[@]}"
    if [ "$ok" != 1 ]; then
        # Only the serial log is worth keeping.
        rm -rf "$WORK/root" "$WORK/initrd.cpio"
        exit 1
    fi
    rm -rf "$WORK"
}

main "$@"
