#!/bin/busybox sh
# /init of the soft-RoCE test VM that ci/rdma-vm.sh builds (docs/RDMA.md,
# "Real verbs in CI"). It runs as PID 1 from the initramfs: loads the RDMA
# modules, makes rxe0 on a dummy interface, runs the test binaries listed in
# /guest/tests.list and then the scripts in /guest/scripts.list, prints
# exactly one
# EDDY-VM-RESULT line and powers off. The host script reads that line from
# the serial console; a VM that ends without it counts as failed.
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /bin /sbin
/bin/busybox --install -s /bin
# iproute2's ip and rdma (packed into /usr/bin) come before busybox's
# applets: busybox's ip cannot make rdma links.
export PATH=/guest/bin:/usr/bin:/usr/sbin:/bin:/sbin
export HOME=/tmp TMPDIR=/tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
# An initramfs without /dev/console starts init with no stdio; the console
# exists once devtmpfs is mounted.
exec </dev/null >/dev/console 2>&1

fail() {
    echo "EDDY-VM-RESULT: FAIL $*"
    poweroff -f
    exit 1
}
step() { echo "EDDY-VM-STEP: $* (uptime $(cut -d' ' -f1 /proc/uptime) s)"; }

step "loading modules"
while read -r m; do
    insmod "/guest/modules/$m" || fail "insmod $m (see the kernel's message above)"
done </guest/modules.list

step "network: lo, d0 (dummy) 169.254.77.1, soft-RoCE rxe0 on d0"
ip link set lo up || fail "ip link set lo up"
ip link add d0 type dummy || fail "ip link add d0 type dummy"
ip addr add 169.254.77.1/32 dev d0 || fail "ip addr add on d0"
ip link set d0 up || fail "ip link set d0 up"
rdma link add rxe0 type rxe netdev d0 || fail "rdma link add rxe0 type rxe netdev d0"
ibv_devinfo -d rxe0 || fail "ibv_devinfo sees no rxe0: is librxe and /etc/libibverbs.d/rxe.driver packed?"

# Creating libfabric's verbs CQ failed in this guest until the universe
# size was set (../shared/RDMA-NOTES.md). libfabric's registration cache
# keeps a dropped registration's key readable, so eddy-rdma refuses verbs
# unless it is off (RdmaError::RegistrationCache, docs/RDMA.md).
export FI_UNIVERSE_SIZE=32 FI_MR_CACHE_MAX_COUNT=0
export EDDY_RDMA_TEST_PROVIDER='verbs;ofi_rxm' EDDY_RDMA_TEST_NODE=169.254.77.1
export EDDY_VM_NODE=169.254.77.1 EDDY_VM_PROVIDER='verbs;ofi_rxm'

# Each line: a binary under /guest/tests and its arguments. The file is
# read on fd 3 so the tests' stdin stays /dev/null.
while read -r name args <&3; do
    [ -n "$name" ] || continue
    step "test $name $args"
    # shellcheck disable=SC2086 # the arguments are split on purpose
    "/guest/tests/$name" $args || fail "test $name (exit $?)"
done 3</guest/tests.list

# Then each script in /guest/scripts.list (ci/rdma-vm/eddy-verbs.sh unless
# --no-e2e, then each --guest-script), with busybox sh.
while read -r name <&3; do
    [ -n "$name" ] || continue
    step "script ${name#*-}"
    sh "/guest/scripts/$name" || fail "script ${name#*-} (exit $?)"
done 3</guest/scripts.list

step "done"
echo "EDDY-VM-RESULT: PASS"
poweroff -f
