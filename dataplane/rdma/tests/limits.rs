//! Production limits: the locked-memory limit, memory on 2 MiB pages,
//! fork, and the buffers of timed-out reads. The provider and the local
//! address come from EDDY_RDMA_TEST_PROVIDER (default "tcp;ofi_rxm") and
//! EDDY_RDMA_TEST_NODE (default "127.0.0.1"), so the same tests run inside
//! the soft-RoCE VM over "verbs;ofi_rxm" as root. Child processes are this
//! test binary re-executed with ROLE_ENV naming what to do.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use eddy_rdma::{Fabric, FabricOptions, PeerId, Progress, RdmaError, RemoteKey};

const MIB: usize = 1 << 20;
/// Reads split at 4 MiB (verbs caps a message at 8 MiB).
const MAX_READ: usize = 4 * MIB;
const ROLE_ENV: &str = "EDDY_RDMA_LIMITS_ROLE";
const ANSWER: Duration = Duration::from_secs(30);

fn provider() -> String {
    std::env::var("EDDY_RDMA_TEST_PROVIDER").unwrap_or_else(|_| "tcp;ofi_rxm".into())
}

fn node() -> String {
    std::env::var("EDDY_RDMA_TEST_NODE").unwrap_or_else(|_| "127.0.0.1".into())
}

fn verbs() -> bool {
    provider().starts_with("verbs")
}

fn root() -> bool {
    rustix::process::geteuid().is_root()
}

fn options() -> FabricOptions {
    let mut o = FabricOptions::new(&provider());
    o.node = Some(node());
    o.max_read = Some(MAX_READ);
    o.read_timeout = Duration::from_secs(10);
    o
}

fn open() -> Fabric {
    Fabric::open_with(&options()).unwrap_or_else(|e| panic!("open {}: {e}", provider()))
}

/// Position-dependent bytes, salted so two regions differ.
fn pattern(salt: u64, i: usize) -> u8 {
    ((i as u64 ^ salt).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

/// A memfd of `len` bytes mapped MAP_SHARED, filled with `pattern(salt)`.
/// It stays mapped writable: verbs through rxm registers every region for
/// local write too, which the kernel refuses for read-only pages.
fn memfd_segment(
    len: usize,
    flags: rustix::fs::MemfdFlags,
    salt: u64,
) -> std::io::Result<memmap2::MmapMut> {
    use rustix::fs::{MemfdFlags, memfd_create};
    let fd = memfd_create("eddy-rdma-limits", MemfdFlags::CLOEXEC | flags)?;
    let file = std::fs::File::from(fd);
    file.set_len(len as u64)?;
    // SAFETY: the memfd was just created and is not shared with anyone, so
    // nothing else can change or shrink it while mapped.
    let mut map = unsafe { memmap2::MmapOptions::new().len(len).map_mut(&file) }?;
    for (i, b) in map.iter_mut().enumerate() {
        *b = pattern(salt, i);
    }
    Ok(map)
}

/// Reads all of `remote` through `buf` (in pieces of its capacity) and
/// returns the offset of the first byte that is not `pattern(salt)`.
fn first_wrong_byte(
    fabric: &Fabric,
    peer: PeerId,
    remote: &RemoteKey,
    salt: u64,
    mut buf: eddy_rdma::RegisteredBuf,
) -> (eddy_rdma::RegisteredBuf, Option<usize>) {
    let total = remote.len as usize;
    let mut at = 0;
    while at < total {
        buf.set_len((total - at).min(buf.capacity()));
        let (back, result) = fabric.read(buf, peer, remote, at as u64);
        result.unwrap_or_else(|e| panic!("read {} B at {at}: {e}", total.min(at + MAX_READ)));
        buf = back.expect("a completed read gives its buffer back");
        if let Some(i) = (0..buf.len()).find(|&i| buf.as_slice()[i] != pattern(salt, at + i)) {
            return (buf, Some(at + i));
        }
        at += buf.len();
    }
    (buf, None)
}

/// Two fabrics in this process: an owner with a progress thread (whose
/// registrations are read) and a reader connected to it.
struct Pair {
    owner: Fabric,
    _progress: Progress,
    reader: Fabric,
    peer: PeerId,
}

fn pair() -> Pair {
    let owner = open();
    let progress = Progress::start(&owner).expect("progress thread");
    let reader = open();
    let peer = reader.connect(owner.address()).expect("connect");
    Pair {
        owner,
        _progress: progress,
        reader,
        peer,
    }
}

// ---------------------------------------------------------------- memlock

#[test]
fn raise_memlock_reports_the_limits_it_found_and_left() {
    let report = eddy_rdma::raise_memlock();
    println!("{report}");
    assert_eq!(report.root, root());
    match (&report.raise_error, report.hard) {
        // The soft limit now equals the hard one, unless raising failed.
        (None, hard) => assert_eq!(report.soft, hard, "{report}"),
        (Some(e), _) => println!("raising failed (allowed, reported): {e}"),
    }
    assert!(report.covers(0));
    let needed = report.soft.map_or(1 << 40, |s| s.saturating_mul(2).max(1));
    let text = report.clone().needing(needed).to_string();
    if report.covers(needed) {
        assert!(report.privileged() || report.unlimited(), "{report}");
        assert!(text.contains("enough to pin"), "{text}");
    } else {
        for fix in ["ulimit -l", "LimitMEMLOCK=", "limits.conf"] {
            assert!(text.contains(fix), "{fix} missing from {text}");
        }
    }
    // A second raise finds nothing left to raise.
    let again = eddy_rdma::raise_memlock();
    assert!(!again.raised() || again.raise_error.is_some(), "{again}");
}

/// What the unprivileged child sees: its pinned pages, from VmPin.
fn pinned_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmPin:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// The child of `a_small_memlock_limit_refuses_a_larger_registration`: not
/// root, its limit set to what it has pinned plus 4 MiB.
fn memlock_child() {
    use rustix::process::{Resource, Rlimit, setrlimit};
    let fabric = open();
    let limit = pinned_bytes() + 4 * MIB as u64;
    let capped = Rlimit {
        current: Some(limit),
        maximum: Some(limit),
    };
    setrlimit(Resource::Memlock, capped).expect("lower RLIMIT_MEMLOCK");
    let report = eddy_rdma::memlock_report();
    assert!(
        !report.privileged(),
        "the child must not be privileged: {report}"
    );
    assert!(!report.needing(32 * MIB as u64).covers(32 * MIB as u64));
    let small = Arc::new(memfd_segment(MIB, rustix::fs::MemfdFlags::empty(), 1).expect("memfd"));
    let small = fabric
        .register_shared(small)
        .expect("1 MiB fits in the limit");
    let big = Arc::new(memfd_segment(32 * MIB, rustix::fs::MemfdFlags::empty(), 2).expect("memfd"));
    let err = fabric
        .register_shared(big)
        .err()
        .expect("32 MiB must not fit in a limit of 4 MiB more than is pinned");
    assert!(matches!(err, RdmaError::Registration { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("RLIMIT_MEMLOCK soft"), "{text}");
    assert!(text.contains("ulimit -l"), "{text}");
    assert_eq!(fabric.stats().registration_failures, 1);
    drop(small);
    println!("EDDY-RDMA refused {text}");
}

#[test]
fn a_small_memlock_limit_refuses_a_larger_registration() {
    if !verbs() || !root() {
        println!(
            "skipped: needs a verbs provider (pinning; EDDY_RDMA_TEST_PROVIDER is {:?}) and \
             root (to start a non-root child); the soft-RoCE VM stage runs it",
            provider()
        );
        return;
    }
    use std::os::unix::process::CommandExt;
    // nobody:nogroup; the limit is lowered by the child itself (anyone may).
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args(["role_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE_ENV, "memlock")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("spawn the non-root child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the child failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let refused = stdout
        .lines()
        .find_map(|l| l.split_once("EDDY-RDMA refused ").map(|(_, t)| t))
        .unwrap_or_else(|| panic!("the child said nothing of a refusal:\n{stdout}\n{stderr}"));
    println!("the non-root child was refused: {refused}");
}

/// The entry point of every child role; does nothing unless ROLE_ENV is set.
#[test]
fn role_child() {
    match std::env::var(ROLE_ENV).as_deref() {
        Ok("memlock") => memlock_child(),
        Ok("owner") => owner_child(),
        Ok("exit") => {}
        Ok(other) => panic!("unknown role {other}"),
        Err(_) => {}
    }
}

// ------------------------------------------------------------- huge pages

/// HugePages_Free and HugePages_Total from /proc/meminfo.
fn huge_pages() -> (u64, u64) {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let get = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    (get("HugePages_Free:"), get("HugePages_Total:"))
}

const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

/// Puts nr_hugepages back as it was when dropped.
struct RestoreHugePages(String);

impl Drop for RestoreHugePages {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(NR_HUGEPAGES, &self.0) {
            eprintln!("could not restore {NR_HUGEPAGES} to {}: {e}", self.0.trim());
        }
    }
}

/// Makes room for `pages` free 2 MiB pages (raising the pool as root);
/// the guard restores it. `Err` says why not.
fn reserve_huge_pages(pages: u64) -> Result<Option<RestoreHugePages>, String> {
    let (free, total) = huge_pages();
    if free >= pages {
        return Ok(None);
    }
    if !root() {
        return Err(format!(
            "HugePages_Free is {free}, {pages} needed, and only root may raise {NR_HUGEPAGES}"
        ));
    }
    let old = std::fs::read_to_string(NR_HUGEPAGES).map_err(|e| format!("{NR_HUGEPAGES}: {e}"))?;
    let guard = RestoreHugePages(old);
    let want = total + (pages - free);
    std::fs::write(NR_HUGEPAGES, want.to_string())
        .map_err(|e| format!("writing {want} to {NR_HUGEPAGES}: {e}"))?;
    let (free, _) = huge_pages();
    if free < pages {
        return Err(format!(
            "the kernel found only {free} free 2 MiB pages of {pages} after raising the pool"
        ));
    }
    Ok(Some(guard))
}

#[test]
fn a_segment_on_2_mib_pages_is_registered_and_read_back_byte_exact() {
    use rustix::fs::MemfdFlags;
    const LEN: usize = 8 * MIB;
    let guard = match reserve_huge_pages((LEN / (2 * MIB)) as u64) {
        Ok(g) => g,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let map = memfd_segment(LEN, MemfdFlags::HUGETLB | MemfdFlags::HUGE_2MB, 7)
        .expect("a memfd on 2 MiB pages with the pool reserved");
    assert_eq!(
        map.as_ptr().addr() % (2 * MIB),
        0,
        "hugetlb mappings are 2 MiB aligned"
    );
    let p = pair();
    let registration = p
        .owner
        .register_shared(Arc::new(map))
        .unwrap_or_else(|e| panic!("registering 2 MiB pages: {e}"));
    let buf = p.reader.alloc_buf(MAX_READ).expect("read buffer");
    let remote = registration.remote_key();
    assert_eq!(remote.len, LEN as u64);
    let (_, wrong) = first_wrong_byte(&p.reader, p.peer, &remote, 7, buf);
    assert_eq!(wrong, None, "first wrong byte of the 2 MiB-page segment");
    println!("read {LEN} bytes of a memfd on 2 MiB pages back byte-exact");
    drop(registration);
    drop(guard);
}

// ------------------------------------------------------------------- fork

/// Reads every page of `[ptr, ptr + len)` in a forked child (volatile, so
/// the reads happen), writing `fill` over the pages of `write` if given.
/// Only async-signal-safe work: the parent has other threads.
///
/// # Safety
/// Both ranges must be mapped in the parent when it forks.
unsafe fn fork_and_touch(read: &[(*const u8, usize)], write: (*mut u8, usize), fill: u8) -> i32 {
    // SAFETY: the child only reads and writes memory mapped before the
    // fork (its own copy-on-write or shared view of it) and calls _exit,
    // all async-signal-safe; no lock, allocation or unwinding.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            let mut sum = 0u8;
            for &(p, len) in read {
                for at in (0..len).step_by(4096) {
                    sum = sum.wrapping_add(std::ptr::read_volatile(p.add(at)));
                }
            }
            for at in 0..write.1 {
                std::ptr::write_volatile(write.0.add(at), fill);
            }
            std::hint::black_box(sum);
            libc::_exit(0);
        }
        let mut status = 0;
        let rc = libc::waitpid(pid, &mut status, 0);
        assert_eq!(rc, pid, "waitpid: {}", std::io::Error::last_os_error());
        status
    }
}

#[test]
fn fork_and_spawned_children_leave_registrations_and_reads_working() {
    const LEN: usize = 2 * MIB;
    let p = pair();
    // A shared segment (as the worker maps blocks) and private anonymous
    // memory (copy-on-write at fork: the case pinned pages used to break).
    let segment = Arc::new(memfd_segment(LEN, rustix::fs::MemfdFlags::empty(), 3).expect("memfd"));
    let mut private = memmap2::MmapMut::map_anon(LEN).expect("anonymous memory");
    for (i, b) in private.iter_mut().enumerate() {
        *b = pattern(4, i);
    }
    let private_ptr = private.as_mut_ptr();
    let private = Arc::new(private);
    let shared_reg = p
        .owner
        .register_shared(segment.clone())
        .expect("register segment");
    let private_reg = p.owner.register_shared(private).expect("register private");
    let buf = p.reader.alloc_buf(MIB).expect("read buffer");
    let (buf, wrong) = first_wrong_byte(&p.reader, p.peer, &shared_reg.remote_key(), 3, buf);
    assert_eq!(wrong, None, "before any fork");
    let live = p.owner.stats().registrations_live + p.reader.stats().registrations_live;

    // fork + exec, as the JVM and Spark start their children.
    let status = Command::new(std::env::current_exe().expect("test binary"))
        .args(["role_child", "--exact", "--test-threads=1"])
        .env(ROLE_ENV, "exit")
        .stdout(Stdio::null())
        .status()
        .expect("spawn a child");
    assert!(status.success(), "{status}");

    // A raw fork whose child touches every registered page, writes over
    // the private region (its copy) and exits.
    let reads = [
        (segment.as_ptr(), LEN),
        (buf.as_slice().as_ptr(), buf.capacity()),
    ];
    // SAFETY: all three ranges stay mapped: the registrations and `buf`
    // own them and live past the call.
    let status = unsafe { fork_and_touch(&reads, (private_ptr, LEN), 0xEE) };
    let exited = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    let segv = libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSEGV;
    if verbs() && segv {
        // rdma-core's fork support (ibv_fork_init, RDMAV_FORK_SAFE) marks
        // registered memory MADV_DONTFORK: the child has no such pages.
        println!("the forked child had no registered pages (MADV_DONTFORK in effect)");
    } else {
        assert!(exited, "the forked child failed: wait status {status:#x}");
    }

    // The parent's registrations and buffer still read its own bytes.
    let (buf, wrong) = first_wrong_byte(&p.reader, p.peer, &shared_reg.remote_key(), 3, buf);
    assert_eq!(wrong, None, "the shared segment after fork");
    let (buf, wrong) = first_wrong_byte(&p.reader, p.peer, &private_reg.remote_key(), 4, buf);
    assert_eq!(
        wrong, None,
        "the private region after fork (the child's writes must not show)"
    );
    // And registering after the fork works.
    let later = Arc::new(memfd_segment(LEN, rustix::fs::MemfdFlags::empty(), 5).expect("memfd"));
    let later = p.owner.register_shared(later).expect("register after fork");
    let (_buf, wrong) = first_wrong_byte(&p.reader, p.peer, &later.remote_key(), 5, buf);
    assert_eq!(wrong, None, "a registration made after the fork");
    let now = p.owner.stats().registrations_live + p.reader.stats().registrations_live;
    assert_eq!(now, live + 1);
}

#[test]
fn registration_counters_follow_registrations_and_failures() {
    let fabric = open();
    let base = fabric.stats();
    let reg = fabric
        .register_shared(Arc::new(vec![1u8; 4096]))
        .expect("register");
    let buf = fabric.alloc_buf(4096).expect("buffer");
    assert_eq!(
        fabric.stats().registrations_live,
        base.registrations_live + 2
    );
    let err = fabric
        .register_shared(Arc::new(Vec::<u8>::new()))
        .err()
        .expect("an empty region is refused");
    assert_eq!(err.code(), "REGISTRATION");
    let s = fabric.stats();
    assert_eq!(s.registration_failures, base.registration_failures + 1);
    assert_eq!(s.registrations_live, base.registrations_live + 2);
    drop((reg, buf));
    assert_eq!(fabric.stats().registrations_live, base.registrations_live);
}

// ------------------------------------------------------ timed-out reads

const OWNER_LEN: usize = 16 * MIB;

/// The owner role: a registered memfd segment and a progress thread; it
/// prints its address and key, then waits for its stdin to close.
fn owner_child() {
    let fabric = open();
    let segment = Arc::new(
        memfd_segment(OWNER_LEN, rustix::fs::MemfdFlags::empty(), 9).expect("owner: memfd"),
    );
    let registration = fabric.register_shared(segment).expect("owner: register");
    let key = registration.remote_key();
    let progress = Progress::start(&fabric).expect("owner: progress thread");
    let addr: String = fabric
        .address()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    println!(
        "EDDY-RDMA addr={addr} base={} len={} key={}",
        key.addr_or_offset, key.len, key.key
    );
    let mut rest = Vec::new();
    let _ = std::io::stdin().lock().read_to_end(&mut rest);
    progress.stop();
}

/// An owner child process; killed and reaped on drop.
struct Owner {
    child: Child,
    address: Vec<u8>,
    key: RemoteKey,
}

impl Owner {
    fn start() -> Self {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["role_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE_ENV, "owner")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the owner");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines): (_, Receiver<String>) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((_, msg)) = line.split_once("EDDY-RDMA ")
                    && tx.send(msg.to_string()).is_err()
                {
                    return;
                }
            }
        });
        let line = match lines.recv_timeout(ANSWER) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => panic!("the owner said nothing in {ANSWER:?}"),
            Err(RecvTimeoutError::Disconnected) => panic!("the owner exited early"),
        };
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("no {name} in {line:?}"))
                .to_string()
        };
        let hex = field("addr");
        let address = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        let key = RemoteKey {
            addr_or_offset: field("base").parse().expect("base"),
            len: field("len").parse().expect("len"),
            key: field("key").parse().expect("key"),
        };
        Owner {
            child,
            address,
            key,
        }
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        rustix::process::kill_process(pid, signal).expect("signal the owner");
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until every thread of `pid` is stopped (SIGSTOP is delivered
/// asynchronously; a progress thread mid-poll could still answer).
fn wait_until_stopped(pid: u32) {
    let deadline = Instant::now() + ANSWER;
    let tasks = format!("/proc/{pid}/task");
    loop {
        let all_stopped = std::fs::read_dir(&tasks)
            .expect("the owner's tasks")
            .filter_map(Result::ok)
            .all(|t| {
                let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
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

/// Times a read out with its operations still in the provider's hands:
/// over tcp by stopping the owner (which then answers nothing); verbs
/// serves a stopped owner's memory from the kernel, so there a 16 MiB read
/// gets 1 ms (soft-RoCE under emulation takes far longer), tried a
/// bounded number of times because a read with nothing in flight at its
/// deadline gives its buffer back. Returns the retired buffer's size.
fn time_a_read_out(fabric: &Fabric, peer: PeerId, owner: &Owner) -> usize {
    if !verbs() {
        owner.signal(rustix::process::Signal::STOP);
        wait_until_stopped(owner.child.id());
        let buf = fabric.alloc_buf(MIB).expect("buffer");
        let (back, result) = fabric.read(buf, peer, &owner.key, 0);
        let ms = fabric.read_timeout().as_millis() as u64;
        assert!(
            matches!(result, Err(RdmaError::Timeout { ms: m }) if m == ms),
            "{result:?}"
        );
        assert!(back.is_none(), "the provider may still write into it");
        return MIB;
    }
    let normal = fabric.read_timeout();
    fabric.set_read_timeout(Duration::from_millis(1));
    for attempt in 1..=5 {
        let buf = fabric.alloc_buf(16 * MIB).expect("buffer");
        let (back, result) = fabric.read(buf, peer, &owner.key, 0);
        println!(
            "attempt {attempt}: {result:?}, buffer back: {}",
            back.is_some()
        );
        if back.is_none() {
            assert!(
                matches!(result, Err(RdmaError::Timeout { ms: 1 })),
                "{result:?}"
            );
            fabric.set_read_timeout(normal);
            return 16 * MIB;
        }
    }
    panic!("no 16 MiB read over verbs was still in flight after 1 ms in 5 attempts");
}

#[test]
fn a_timed_out_reads_buffer_is_freed_when_its_late_completion_arrives() {
    let owner = Owner::start();
    let fabric = Fabric::open_with(&options()).expect("reader");
    let peer = fabric.connect(&owner.address).expect("connect");
    let spare = fabric.alloc_buf(MIB).expect("spare buffer");
    // The first reads set up the connection (slow under emulation on a
    // loaded host) with the usual deadline; a stopped owner's read then
    // times out after 800 ms (verbs sets its own 1 ms below).
    let (spare, wrong) = first_wrong_byte(&fabric, peer, &owner.key, 9, spare);
    assert_eq!(wrong, None, "while the owner runs");
    if !verbs() {
        fabric.set_read_timeout(Duration::from_millis(800));
    }
    let live = fabric.stats().registrations_live;

    let len = time_a_read_out(&fabric, peer, &owner);
    let s = fabric.stats();
    assert_eq!(
        (s.retired_bytes, s.retired_buffers),
        (len as u64, 1),
        "{s:?}"
    );
    assert_eq!(
        s.registrations_live,
        live + 1,
        "the retired buffer stays registered"
    );

    // One retired buffer fills the cap: the next read is refused at once,
    // its buffer given back. (Over verbs the late completion may have
    // come already: then the read goes ahead, which is right too.)
    fabric.set_retired_cap(len as u64);
    let started = Instant::now();
    let (spare, result) = fabric.read(spare, peer, &owner.key, 0);
    let spare = spare.expect("a refused or completed read gives its buffer back");
    match result {
        Err(err) => {
            assert_eq!(err.code(), "RETIRED_FULL", "{err}");
            assert!(err.to_string().contains("reopen the fabric"), "{err}");
            assert!(
                started.elapsed() < Duration::from_millis(400),
                "{:?}",
                started.elapsed()
            );
            assert_eq!(fabric.stats().reads_refused, 1);
        }
        Ok(()) => assert!(verbs(), "a stopped owner cannot have answered"),
    }

    // The owner resumes and answers the abandoned read: its completion
    // arrives at a later poll and the buffer is freed, not kept.
    if !verbs() {
        owner.signal(rustix::process::Signal::CONT);
    }
    let deadline = Instant::now() + ANSWER;
    while fabric.stats().retired_bytes > 0 {
        assert!(
            Instant::now() < deadline,
            "the late completion never came: {:?}",
            fabric.stats()
        );
        if fabric.poll() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let s = fabric.stats();
    assert_eq!((s.retired_buffers, s.retired_freed), (0, 1), "{s:?}");
    assert_eq!(s.registrations_live, live, "its region was closed");
    // And reads work again.
    let (_, wrong) = first_wrong_byte(&fabric, peer, &owner.key, 9, spare);
    assert_eq!(wrong, None, "after the late completion");
}
