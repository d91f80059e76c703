#!/bin/busybox sh
# The product path over real verbs (docs/RDMA.md, "Real verbs in CI"): run by
# the soft-RoCE VM's /init (ci/rdma-vm/init.sh) with busybox sh, after the
# eddy-rdma tests, with `eddy` packed into /guest/bin by ci/rdma-vm.sh. It
# starts `eddy master` and `eddy worker` (remote leases over
# verbs;ofi_rxm on rxe0, 169.254.77.1), writes files MUST_CACHE with
# `eddy fs put`, reads each back with `EDDY_TRANSPORT=rdma eddy fs cat` and
# compares the bytes, then proves they came by one-sided RDMA reads: the
# worker granted remote leases, registered every segment, served no byte
# over TCP while the client read (and no fallback line on its stderr).
# Exit status 0 only when all of that holds; otherwise one
# "eddy-verbs: FAIL: ..." line, with the master's and worker's logs above it.
set -eu

NODE=${EDDY_VM_NODE:-169.254.77.1}
PROVIDER=${EDDY_VM_PROVIDER:-verbs;ofi_rxm}
MASTER=""
METRICS=""
D=${EDDY_VERBS_DIR:-/tmp/eddy-verbs}
# Seconds a process may take to print its "listening" line (TCG is slow:
# the worker opens the verbs fabric before it registers).
START_WAIT=60
# Seconds any one `eddy fs` command may take, end to end.
CMD_WAIT=60
MASTER_PID=""
WORKER_PID=""

step() { echo "EDDY-VM-STEP: eddy-verbs: $* (uptime $(cut -d' ' -f1 /proc/uptime) s)"; }

stop() {
    for p in $WORKER_PID $MASTER_PID; do
        kill -TERM "$p" 2>/dev/null || true
    done
    # Bounded: a process that does not stop within 10 s is killed.
    n=0
    for p in $WORKER_PID $MASTER_PID; do
        while kill -0 "$p" 2>/dev/null && [ $n -lt 100 ]; do
            sleep 0.1
            n=$((n + 1))
        done
        kill -KILL "$p" 2>/dev/null || true
    done
    WORKER_PID=""
    MASTER_PID=""
}

show_logs() {
    for f in "$D"/master.out "$D"/master.err "$D"/worker.out "$D"/worker.err "$D"/client.err; do
        [ -s "$f" ] || continue
        echo "----- $f -----"
        cat "$f"
    done
    echo "----- end of logs -----"
}

fail() {
    show_logs
    stop
    echo "eddy-verbs: FAIL: $*"
    exit 1
}

# wait_line PID FILE TEXT WHAT: until FILE has a line containing TEXT, for
# at most START_WAIT seconds; fails at once when PID exits.
wait_line() {
    pid=$1 file=$2 text=$3 what=$4
    end=$(($(cut -d. -f1 /proc/uptime) + START_WAIT))
    until grep -qF "$text" "$file" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || {
            wait "$pid" && rc=0 || rc=$?
            fail "$what exited (status $rc) before printing \"$text\""
        }
        [ "$(cut -d. -f1 /proc/uptime)" -lt "$end" ] ||
            fail "$what printed no \"$text\" within ${START_WAIT}s"
        # A poll of the log file: the line is the signal awaited.
        sleep 0.1
    done
}

# scrape: the worker's metrics into $D/metrics.txt (in this shell, not in
# a $(...), so that a failure ends the script).
scrape() {
    timeout 10 wget -q -O "$D/metrics.txt" "http://$METRICS/metrics" ||
        fail "cannot scrape the worker's metrics at http://$METRICS/metrics"
}

# metric NAME: NAME's value in the last scrape (summed over its label
# sets), or "none" when the worker did not show NAME.
metric() {
    awk -v n="$1" '
        $1 == n || index($1, n "{") == 1 { s += $NF; seen = 1 }
        END { if (seen) printf "%d\n", s; else print "none" }' "$D/metrics.txt"
}

rm -rf "$D"
mkdir -p "$D/src" "$D/out" "$D/ufs" "$D/meta"
# The guest has no user database: the master's superuser and the client's
# user are names looked up for uid 0 (`id -un`, /etc/passwd).
[ -f /etc/passwd ] || echo "root:x:0:0:root:/tmp:/bin/sh" >/etc/passwd
[ -f /etc/group ] || echo "root:x:0:" >/etc/group

# verbs needs the registration cache off (docs/RDMA.md, Providers); init.sh
# exports these, repeated here so the script stands alone.
export FI_MR_CACHE_MAX_COUNT=0 FI_UNIVERSE_SIZE=${FI_UNIVERSE_SIZE:-32}
export EDDY_LOG=info

# Port 0 everywhere: each process prints the address it bound. Small
# blocks make a multi-block file cheap.
cat >"$D/master.toml" <<EOF
[master]
bind = "$NODE:0"
metastore_dir = "$D/meta"
root_ufs = "$D/ufs"
default_block_size = 1048576
metrics_bind = ""

[security]
# Written (0600) at first start; the worker signs its own worker token with
# it.
key_file = "$D/master.key"
EOF

step "eddy master on $NODE"
eddy --config "$D/master.toml" master >"$D/master.out" 2>"$D/master.err" &
MASTER_PID=$!
wait_line "$MASTER_PID" "$D/master.out" "eddy master listening on " "eddy master"
MASTER=$(sed -n 's/^eddy master listening on \([^ ]*\).*/\1/p' "$D/master.out" | head -n 1)

# The memory tier fits the guest's 1 GiB; no Unix socket (the client reads
# as a remote one would).
cat >"$D/worker.toml" <<EOF
[worker]
master = "$MASTER"
bind = "$NODE:0"
host = "$NODE"
memory_capacity = 67108864
domain_socket = ""
rdma = true
rdma_provider = "$PROVIDER"
metrics_bind = "$NODE:0"
io_engine = "pread"

[security]
key_file = "$D/master.key"
EOF

step "eddy worker for $MASTER, remote leases over $PROVIDER"
eddy --config "$D/worker.toml" worker >"$D/worker.out" 2>"$D/worker.err" &
WORKER_PID=$!
wait_line "$WORKER_PID" "$D/worker.out" "eddy worker listening on " "eddy worker"
METRICS=$(sed -n 's|^eddy worker metrics on http://\([^/]*\)/metrics.*|\1|p' "$D/worker.out" | head -n 1)
[ -n "$METRICS" ] || fail "the worker printed no \"eddy worker metrics on\" line"
grep -qF "remote leases (RDMA) on libfabric provider \"$PROVIDER\"" "$D/worker.err" ||
    fail "the worker opened no $PROVIDER fabric (it serves TCP only; its log above says why)"

cat >"$D/client.toml" <<EOF
[client]
master = "$MASTER"
short_circuit = false
transport = "rdma"
EOF

# NAME:SIZE: 1 B, a block and 7 bytes, three blocks and a partial one.
FILES="one:1 mib7:1048583 blocks:3158067"

step "writing files MUST_CACHE with eddy fs put"
for f in $FILES; do
    name=${f%:*} size=${f#*:}
    head -c "$size" /dev/urandom >"$D/src/$name"
    [ "$(wc -c <"$D/src/$name")" -eq "$size" ] || fail "could not make a $size-byte source file"
    timeout "$CMD_WAIT" eddy --config "$D/client.toml" fs put --write-type MUST_CACHE \
        "$D/src/$name" "/$name" 2>>"$D/client.err" ||
        fail "eddy fs put $name ($size B) failed (exit $?)"
done

scrape
served_before=$(metric eddy_worker_bytes_served_total)
granted_before=$(metric eddy_worker_rdma_leases_granted_total)

step "reading them back with EDDY_TRANSPORT=rdma eddy fs cat"
: >"$D/client.err"
for f in $FILES; do
    name=${f%:*} size=${f#*:}
    EDDY_LOG=info EDDY_TRANSPORT=rdma timeout "$CMD_WAIT" eddy --config "$D/client.toml" fs cat "/$name" \
        >"$D/out/$name" 2>>"$D/client.err" ||
        fail "EDDY_TRANSPORT=rdma eddy fs cat /$name failed (exit $?)"
    cmp "$D/src/$name" "$D/out/$name" ||
        fail "/$name ($size B) read back over RDMA differs from what was written"
    echo "eddy-verbs: /$name: $size bytes read back byte-exact"
done

step "checking the bytes came by RDMA"
scrape
granted=$(metric eddy_worker_rdma_leases_granted_total)
failures=$(metric eddy_worker_rdma_registration_failures_total)
served=$(metric eddy_worker_bytes_served_total)
leases=$(metric eddy_worker_rdma_leases)
echo "eddy-verbs: worker metrics: rdma_leases_granted_total $granted (before the reads $granted_before)," \
    "rdma_registration_failures_total $failures, rdma_leases $leases," \
    "bytes_served_total $served (before the reads $served_before)"
grep -E '^eddy_worker_(rdma_|bytes_served)' "$D/metrics.txt" || true
# The client's fallback line (dataplane/client/src/rdma.rs, at info: the
# reads above run with EDDY_LOG=info). The worker's counters below prove
# the rest (no TCP byte served during the reads, leases granted, no failed
# registration).
if grep -E "fell back to TCP|cannot open libfabric provider" "$D/client.err"; then
    fail "the client fell back to TCP (its line above; the worker's log says why)"
fi
[ "$failures" != none ] || fail "the worker's metrics show no eddy_worker_rdma_registration_failures_total"
[ "$failures" -eq 0 ] ||
    fail "the worker could not register $failures segment(s) for RDMA (reads went over TCP)"
[ "$granted" != none ] && [ "$granted" -gt "$granted_before" ] ||
    fail "the worker granted no remote lease during the reads (rdma_leases_granted_total $granted)"
[ "$served" != none ] || fail "the worker's metrics show no eddy_worker_bytes_served_total"
[ "$served" = "$served_before" ] ||
    fail "the worker sent $((served - served_before)) bytes over TCP during the RDMA reads"

stop
step "PASS: master, worker and client over $PROVIDER"
