//! One-sided reads between two real processes over libfabric's
//! `tcp;ofi_rxm` on 127.0.0.1: this test binary re-executes itself as the
//! owner of a memfd segment (registered, with a progress thread, nothing
//! else) and reads it from the parent.
//!
//! `EDDY_RDMA_TEST_PROVIDER` and `EDDY_RDMA_TEST_NODE` pick another
//! provider and local address: `ci/rdma-vm.sh` runs this binary over
//! `verbs;ofi_rxm` on soft-RoCE inside a VM (docs/RDMA.md). The owner
//! process inherits both.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use eddy_rdma::{Fabric, FabricOptions, PeerId, Progress, RdmaError, RemoteKey};

const PROVIDER_ENV: &str = "EDDY_RDMA_TEST_PROVIDER";
const NODE_ENV: &str = "EDDY_RDMA_TEST_NODE";
const MIB: usize = 1 << 20;
/// The owner's segment: room for a 16 MiB read at an offset.
const SEGMENT: usize = 18 * MIB;
/// Reads split at 4 MiB (tcp allows any size; verbs caps at 8 MiB, so
/// the same split serves both).
const MAX_READ: usize = 4 * MIB;
const OWNER_ENV: &str = "EDDY_RDMA_TEST_OWNER";
const ANSWER: Duration = Duration::from_secs(30);

/// The segment's byte at `i`: position-dependent so a shifted or
/// misplaced read shows.
fn pattern(i: usize) -> u8 {
    ((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn provider() -> String {
    env_or(PROVIDER_ENV, "tcp;ofi_rxm")
}

/// Verbs providers: the RDMA device (soft-RoCE's kernel driver in CI)
/// answers reads itself, without the owner process.
fn on_verbs() -> bool {
    provider().starts_with("verbs")
}

/// The errno a provider's completion reports for a refused key (docs/RDMA.md,
/// Providers): `None` for providers not measured yet.
fn refused_key_errno() -> Option<i64> {
    match provider().as_str() {
        "tcp;ofi_rxm" => Some(i64::from(rustix::io::Errno::CANCELED.raw_os_error())),
        p if p.starts_with("verbs") => Some(i64::from(rustix::io::Errno::IO.raw_os_error())),
        _ => None,
    }
}

fn assert_key_refused(err: &RdmaError) {
    let RdmaError::Read { code, .. } = err else {
        panic!("a refused key is a read error: {err:?}");
    };
    if let Some(want) = refused_key_errno() {
        assert_eq!(
            *code,
            want,
            "errno of a refused key on {}: {err}",
            provider()
        );
    }
}

fn options() -> FabricOptions {
    let mut o = FabricOptions::new(&provider());
    o.node = Some(env_or(NODE_ENV, "127.0.0.1"));
    o.max_read = Some(MAX_READ);
    o.read_timeout = Duration::from_secs(5);
    o
}

/// The owner process: `owner_process` re-executed with OWNER_ENV set.
struct Owner {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    address: Vec<u8>,
    key: RemoteKey,
}

impl Owner {
    fn start() -> Self {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "owner_process",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(OWNER_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the owner process");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest may have printed "test owner_process ... " on
                // the same line.
                if let Some((_, msg)) = line.split_once("EDDY-RDMA ")
                    && tx.send(msg.to_string()).is_err()
                {
                    return;
                }
            }
        });
        let mut owner = Owner {
            child,
            stdin,
            lines,
            address: Vec::new(),
            key: RemoteKey {
                addr_or_offset: 0,
                len: 0,
                key: 0,
            },
        };
        let ready = owner.answer();
        let f = fields(&ready);
        owner.address = hex_decode(f("addr"));
        owner.key = RemoteKey {
            addr_or_offset: f("base").parse().expect("base"),
            len: f("len").parse().expect("len"),
            key: f("key").parse().expect("key"),
        };
        owner
    }

    fn answer(&self) -> String {
        match self.lines.recv_timeout(ANSWER) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                panic!("the owner process said nothing in {ANSWER:?}")
            }
            Err(RecvTimeoutError::Disconnected) => panic!("the owner process exited early"),
        }
    }

    fn ask(&mut self, command: &str) -> String {
        writeln!(self.stdin, "{command}").expect("write to the owner");
        self.stdin.flush().expect("flush");
        self.answer()
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `key=value` fields of an owner's line.
fn fields<'l>(line: &'l str) -> impl Fn(&str) -> &'l str {
    move |name| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
    }
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The owner: a memfd segment mapped MAP_SHARED (as the worker's memory
/// tier maps blocks), registered, a progress thread, and a command loop on
/// stdin that never touches the bytes.
#[test]
fn owner_process() {
    if std::env::var_os(OWNER_ENV).is_none() {
        return;
    }
    let fabric = Fabric::open_with(&options()).expect("owner: open the fabric");
    let segment = Arc::new(memfd_segment(SEGMENT));
    let mut registration = Some(fabric.register_shared(segment).expect("owner: register"));
    let key = registration.as_ref().expect("registered").remote_key();
    let progress = Progress::start(&fabric).expect("owner: progress thread");
    let addr: String = fabric
        .address()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!(
        "EDDY-RDMA addr={addr} base={} len={} key={} mr_mode={:?}",
        key.addr_or_offset,
        key.len,
        key.key,
        fabric.info().mr_mode_names()
    );
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        match line.trim() {
            "stats" => {
                let s = fabric.stats();
                println!(
                    "EDDY-RDMA reads_posted={} completions={} polls={}",
                    s.reads_posted, s.completions, s.polls
                );
            }
            "deregister" => {
                registration = None;
                println!("EDDY-RDMA deregistered={}", registration.is_none());
            }
            other => println!("EDDY-RDMA unknown={other}"),
        }
    }
    progress.stop();
}

/// The owner's segment stays mapped writable (nothing writes it after the
/// fill): verbs through rxm registers every region with local write
/// access, which the kernel refuses for a read-only mapping
/// (`a_read_only_mapping_...` below).
fn memfd_segment(len: usize) -> memmap2::MmapMut {
    use rustix::fs::{MemfdFlags, memfd_create};
    let fd = memfd_create("eddy-rdma-test", MemfdFlags::CLOEXEC).expect("memfd_create");
    let file = std::fs::File::from(fd);
    file.set_len(len as u64).expect("size the memfd");
    // SAFETY: the memfd was just created and is not shared with anyone, so
    // nothing else can change or shrink it while mapped.
    let mut map =
        unsafe { memmap2::MmapOptions::new().len(len).map_mut(&file) }.expect("map the memfd");
    for (i, b) in map.iter_mut().enumerate() {
        *b = pattern(i);
    }
    map
}

/// A segment mapped read-only (as the worker maps a sealed segment):
/// `tcp;ofi_rxm` registers and serves it; `verbs;ofi_rxm` refuses it with
/// EFAULT, because rxm adds local write access to every registration and
/// the kernel will not pin read-only pages for writing. The error must say
/// so (map it writable), not blame the locked-memory limit.
#[test]
fn a_read_only_mapping_registers_only_where_the_provider_allows() {
    let fabric = Fabric::open_with(&options()).expect("open the fabric");
    let segment = memfd_segment(MIB)
        .make_read_only()
        .expect("map the segment read-only");
    let result = fabric.register_shared(Arc::new(segment));
    if !on_verbs() {
        result.expect("a read-only mapping registers for remote reads");
        return;
    }
    let err = result.err().expect("verbs refuses a read-only mapping");
    let efault = i64::from(rustix::io::Errno::FAULT.raw_os_error());
    assert!(
        matches!(err, RdmaError::Registration { code, .. } if code.abs() == efault),
        "{err:?}"
    );
    assert!(err.to_string().contains("map it writable"), "{err}");
}

fn reader(owner: &Owner) -> (Fabric, PeerId) {
    let fabric = Fabric::open_with(&options()).expect("reader: open the fabric");
    let peer = fabric.connect(&owner.address).expect("reader: connect");
    (fabric, peer)
}

#[test]
fn one_sided_reads_return_the_owners_bytes_at_every_size_and_offset() {
    let mut owner = Owner::start();
    let (fabric, peer) = reader(&owner);
    let mut buf = fabric.alloc_buf(16 * MIB).expect("reader buffer");
    let cases = [
        (1, 0),
        (1, SEGMENT - 1),
        (4096, 0),
        (4096, 4097),
        (MIB + 7, 3),
        (16 * MIB, 0),
        (16 * MIB, 2 * MIB - 1),
    ];
    for (len, offset) in cases {
        buf.set_len(len);
        let before = fabric.stats().reads_posted;
        let (back, result) = fabric.read(buf, peer, &owner.key, offset as u64);
        result.unwrap_or_else(|e| panic!("read {len} B at {offset}: {e}"));
        buf = back.expect("the buffer comes back");
        let posted = fabric.stats().reads_posted - before;
        assert_eq!(posted, len.div_ceil(MAX_READ) as u64, "reads for {len} B");
        let wrong = (0..len).find(|&i| buf.as_slice()[i] != pattern(offset + i));
        assert_eq!(
            wrong, None,
            "first wrong byte of {len} B at offset {offset}"
        );
    }
    // A window in the middle of the buffer: the read lands there, the
    // bytes around it stay as they were.
    buf.whole_mut().fill(0xee);
    buf.set_window(MIB + 3, 2 * MIB + 5);
    let (back, result) = fabric.read(buf, peer, &owner.key, 11);
    result.expect("a read into a window");
    buf = back.expect("the buffer comes back");
    let whole = buf.whole();
    assert!(
        whole[..MIB + 3].iter().all(|&b| b == 0xee),
        "before the window"
    );
    assert!(
        whole[3 * MIB + 8..].iter().all(|&b| b == 0xee),
        "after the window"
    );
    let wrong = (0..2 * MIB + 5).find(|&i| buf.as_slice()[i] != pattern(11 + i));
    assert_eq!(wrong, None, "first wrong byte in the window");
    // The owner posted nothing and completed nothing (it has no send or
    // receive path at all): every byte came by one-sided reads, served by
    // its progress thread's polls alone.
    let stats = owner.ask("stats");
    let f = fields(&stats);
    assert_eq!(f("reads_posted"), "0", "{stats}");
    assert_eq!(f("completions"), "0", "{stats}");
    assert!(f("polls").parse::<u64>().expect("polls") > 0, "{stats}");
}

fn assert_refused_quickly(
    fabric: &Fabric,
    peer: PeerId,
    remote: &RemoteKey,
    offset: u64,
    len: usize,
) -> RdmaError {
    let mut buf = fabric.alloc_buf(len).expect("buffer");
    buf.set_len(len);
    let started = Instant::now();
    let (back, result) = fabric.read(buf, peer, remote, offset);
    let err = result.expect_err("the read must be refused");
    assert!(
        back.is_some(),
        "a refused read gives its buffer back ({err})"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "refused only after {:?}: {err}",
        started.elapsed()
    );
    err
}

#[test]
fn a_wrong_key_is_refused_with_the_providers_error_not_a_hang() {
    let owner = Owner::start();
    let (fabric, peer) = reader(&owner);
    let forged = RemoteKey {
        key: owner.key.key ^ 0x5a5a,
        ..owner.key
    };
    let err = assert_refused_quickly(&fabric, peer, &forged, 0, 4096);
    assert_key_refused(&err);
    assert!(
        err.to_string().contains("ask the owner for a new one"),
        "{err}"
    );
    // tcp;ofi_rxm drops the connection that carried the refused read, and
    // a verbs queue pair goes to its error state, so the next read to that
    // peer may fail (ENOTCONN, flushed) or, once rxm has reconnected,
    // succeed: either way at once, never a hang.
    let mut buf = fabric.alloc_buf(4096).expect("buffer");
    buf.set_len(4096);
    let started = Instant::now();
    let (back, result) = fabric.read(buf, peer, &owner.key, 0);
    assert!(started.elapsed() < Duration::from_secs(4), "{result:?}");
    assert!(back.is_some(), "{result:?}");
    // The owner is unharmed: a fresh endpoint reads with the right key.
    let (fresh, peer) = reader(&owner);
    let mut buf = fresh.alloc_buf(4096).expect("buffer");
    buf.set_len(4096);
    let (back, result) = fresh.read(buf, peer, &owner.key, 0);
    result.expect("the right key reads from a fresh endpoint");
    let want: Vec<u8> = (0..4096).map(pattern).collect();
    assert_eq!(back.expect("buffer").as_slice(), want);
}

#[test]
fn reads_past_the_registered_length_are_refused() {
    let owner = Owner::start();
    let (fabric, peer) = reader(&owner);
    // Checked before posting, from the key's length.
    let err = assert_refused_quickly(&fabric, peer, &owner.key, SEGMENT as u64 - 10, 11);
    assert!(matches!(err, RdmaError::OutOfRange { region, .. } if region == SEGMENT as u64));
    let err = assert_refused_quickly(&fabric, peer, &owner.key, u64::MAX, 1);
    assert!(matches!(err, RdmaError::OutOfRange { .. }), "{err:?}");
    // A key claiming more than was registered: the provider refuses it.
    let stretched = RemoteKey {
        len: owner.key.len + 4096,
        ..owner.key
    };
    let err = assert_refused_quickly(&fabric, peer, &stretched, SEGMENT as u64, 4096);
    assert!(matches!(err, RdmaError::Read { .. }), "{err:?}");
}

#[test]
fn a_dropped_registration_revokes_its_key() {
    let mut owner = Owner::start();
    let (fabric, peer) = reader(&owner);
    let mut buf = fabric.alloc_buf(4096).expect("buffer");
    buf.set_len(4096);
    let (back, result) = fabric.read(buf, peer, &owner.key, 0);
    result.expect("read while registered");
    assert_eq!(owner.ask("deregister"), "deregistered=true");
    let (_, result) = fabric.read(back.expect("buffer"), peer, &owner.key, 0);
    let err = result.expect_err("the key of a dropped registration must not read");
    assert_key_refused(&err);
}

#[test]
fn an_unknown_provider_is_named_in_the_error() {
    let err = Fabric::open("no-such-provider")
        .err()
        .expect("no such provider");
    assert!(
        matches!(&err, RdmaError::NoProvider { provider, .. } if provider == "no-such-provider"),
        "{err:?}"
    );
    assert!(err.to_string().contains("\"no-such-provider\""), "{err}");
    assert!(err.to_string().contains("fi_info -l"), "{err}");
    assert_eq!(err.code(), "NO_PROVIDER");
}

/// A stopped owner (SIGSTOP): with a manual-progress provider nobody
/// answers, so the read times out and keeps its buffer; on verbs the RDMA
/// device answers from the registered pages, so the read returns the
/// owner's bytes (the proof that no owner CPU takes part).
#[test]
fn a_read_from_a_stopped_owner_times_out_or_is_served_by_the_device() {
    use rustix::process::{Pid, Signal, kill_process};
    let owner = Owner::start();
    let fabric = Fabric::open_with(&options()).expect("reader");
    let peer = fabric.connect(&owner.address).expect("connect");
    let mut buf = fabric.alloc_buf(MIB).expect("buffer");
    // The first read sets up the connection (rxm connects on first use,
    // slow under emulation on a loaded host): it gets the usual deadline,
    // the timed read below the short one.
    let (back, result) = fabric.read(buf, peer, &owner.key, 0);
    result.expect("read while the owner runs");
    buf = back.expect("buffer");
    fabric.set_read_timeout(Duration::from_millis(800));
    let pid = Pid::from_raw(owner.child.id() as i32).expect("child pid");
    kill_process(pid, Signal::STOP).expect("stop the owner");
    wait_until_stopped(owner.child.id());
    let started = Instant::now();
    let (back, result) = fabric.read(buf, peer, &owner.key, MIB as u64);
    let waited = started.elapsed();
    kill_process(pid, Signal::CONT).expect("continue the owner");
    if on_verbs() {
        result.expect("the device serves a stopped owner's registered memory");
        let want: Vec<u8> = (MIB..2 * MIB).map(pattern).collect();
        assert!(
            back.expect("buffer").as_slice() == want.as_slice(),
            "a stopped owner's bytes differ"
        );
        return;
    }
    assert!(
        matches!(result, Err(RdmaError::Timeout { ms: 800 })),
        "{result:?}"
    );
    assert!(
        back.is_none(),
        "a buffer the provider may still write into must not come back"
    );
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // Closing the fabric frees the retired buffer after its endpoint.
    drop(fabric);
}

/// Waits until every thread of `pid` is in state T: SIGSTOP is delivered
/// asynchronously, and a progress thread mid-poll could still answer.
fn wait_until_stopped(pid: u32) {
    let deadline = Instant::now() + ANSWER;
    let tasks = format!("/proc/{pid}/task");
    loop {
        let all_stopped = std::fs::read_dir(&tasks)
            .expect("the owner's tasks")
            .filter_map(Result::ok)
            .all(|t| {
                let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
                // The state follows the parenthesised command name.
                stat.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('T'))
            });
        if all_stopped {
            return;
        }
        assert!(Instant::now() < deadline, "the owner did not stop");
        std::thread::yield_now();
    }
}

// ------------------------------------------------------------ ReadOp futures

/// Wakes the thread that waits in `block_on`.
struct Unpark(std::thread::Thread);

impl std::task::Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `f` on this thread until it is ready or `limit` passed (`None`).
/// Nothing here polls the fabric: only its progress thread can complete
/// the read, so a `Some` proves the thread's completions woke the future.
fn block_on<F: std::future::Future + Unpin>(f: &mut F, limit: Duration) -> Option<F::Output> {
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let deadline = Instant::now() + limit;
    loop {
        if let std::task::Poll::Ready(out) = std::pin::Pin::new(&mut *f).poll(&mut cx) {
            return Some(out);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        std::thread::park_timeout(left);
    }
}

#[test]
fn read_ops_in_flight_together_are_completed_by_the_progress_thread() {
    let owner = Owner::start();
    let (fabric, peer) = reader(&owner);
    let progress = Progress::start(&fabric).expect("reader: progress thread");
    assert!(
        Progress::start(&fabric).is_err(),
        "a second progress thread on one fabric is refused"
    );
    let cases = [(1, SEGMENT - 1), (4097, 4097), (16 * MIB, 2 * MIB - 1)];
    let mut ops: Vec<_> = cases
        .iter()
        .map(|&(len, offset)| {
            let mut buf = fabric.alloc_buf(len).expect("buffer");
            buf.set_len(len);
            fabric.read_op(buf, peer, &owner.key, offset as u64)
        })
        .collect();
    for (op, &(len, offset)) in ops.iter_mut().zip(&cases) {
        let (buf, r) = block_on(op, ANSWER).expect("the read completes");
        r.unwrap_or_else(|e| panic!("read {len} B at {offset}: {e}"));
        let buf = buf.expect("the buffer comes back");
        let wrong = (0..len).find(|&i| buf.as_slice()[i] != pattern(offset + i));
        assert_eq!(wrong, None, "first wrong byte of {len} B at {offset}");
    }
    let posted: u64 = cases.iter().map(|c| c.0.div_ceil(MAX_READ) as u64).sum();
    assert_eq!(fabric.stats().reads_posted, posted);
    // A read the fabric refuses ends at its first poll, with its buffer.
    let mut op = fabric.read_op(
        fabric.alloc_buf(2).expect("buffer"),
        peer,
        &owner.key,
        SEGMENT as u64 - 1,
    );
    let (buf, r) = block_on(&mut op, ANSWER).expect("ends at once");
    assert!(matches!(r, Err(RdmaError::OutOfRange { .. })), "{r:?}");
    assert!(buf.is_some(), "nothing was posted into it");
    drop(progress);
}

#[test]
fn a_dropped_read_op_leaves_its_buffer_with_the_fabric_until_it_completes() {
    use rustix::process::{Pid, Signal, kill_process};
    let owner = Owner::start();
    let (fabric, peer) = reader(&owner);
    let _progress = Progress::start(&fabric).expect("reader: progress thread");
    // Connected first (rxm connects on first use).
    let mut op = fabric.read_op(fabric.alloc_buf(MIB).expect("buffer"), peer, &owner.key, 0);
    block_on(&mut op, ANSWER)
        .expect("first read")
        .1
        .expect("first read");
    let pid = Pid::from_raw(owner.child.id() as i32).expect("child pid");
    let stopped = !on_verbs();
    if stopped {
        kill_process(pid, Signal::STOP).expect("stop the owner");
        wait_until_stopped(owner.child.id());
    }
    let mut op = fabric.read_op(fabric.alloc_buf(MIB).expect("buffer"), peer, &owner.key, 0);
    if stopped {
        assert!(
            block_on(&mut op, Duration::from_millis(50)).is_none(),
            "a stopped owner answered"
        );
        drop(op);
        let st = fabric.stats();
        assert_eq!(
            (st.retired_buffers, st.retired_bytes),
            (1, MIB as u64),
            "{st:?}"
        );
        kill_process(pid, Signal::CONT).expect("continue the owner");
    } else {
        // The device may answer at once: dropped at any point, the buffer
        // is freed or retired, never handed out while written.
        drop(op);
    }
    let deadline = Instant::now() + ANSWER;
    while fabric.stats().retired_buffers > 0 {
        assert!(
            Instant::now() < deadline,
            "the late completion never freed it: {:?}",
            fabric.stats()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    if stopped {
        assert_eq!(fabric.stats().retired_freed, 1);
    }
}
