//! Test harness: real `eddy` processes on loopback ephemeral ports, each in
//! its own temp dir, killed and reaped on drop (also when a test panics).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub mod users;

pub const EDDY: &str = env!("CARGO_BIN_EXE_eddy");

/// A running `eddy master` process.
pub struct MasterProc {
    child: Child,
    pub addr: String,
    pub dir: PathBuf,
    /// The Prometheus endpoint's `host:port`.
    pub metrics: String,
}

impl MasterProc {
    /// Starts a master whose metastore and root under-storage live in `dir`.
    /// `extra` is appended to the `[master]` table of its config.
    pub fn start(dir: &Path, extra: &str) -> Self {
        Self::start_bound(dir, "127.0.0.1:0", extra)
    }

    /// As [`MasterProc::start`], listening on `bind`.
    pub fn start_bound(dir: &Path, bind: &str, extra: &str) -> Self {
        Self::start_full(dir, bind, extra, &[])
    }

    /// As [`MasterProc::start_bound`], with extra environment variables.
    pub fn start_full(dir: &Path, bind: &str, extra: &str, env: &[(&str, &str)]) -> Self {
        Self::start_stderr(dir, bind, extra, env, Stdio::inherit())
    }

    /// As [`MasterProc::start_full`], its stderr going to `stderr` (a log
    /// file a test reads, e.g. for panics).
    pub fn start_stderr(
        dir: &Path,
        bind: &str,
        extra: &str,
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Self {
        std::fs::create_dir_all(dir.join("ufs")).unwrap();
        let cfg = dir.join("eddy.toml");
        std::fs::write(
            &cfg,
            format!(
                "[master]\nbind = {bind:?}\nmetastore_dir = {:?}\nroot_ufs = {:?}\nmetrics_bind = \"127.0.0.1:0\"\n{extra}\n",
                dir.join("meta").display().to_string(),
                dir.join("ufs").display().to_string()
            ),
        )
        .unwrap();
        let mut child = Command::new(EDDY)
            .arg("--config")
            .arg(&cfg)
            .arg("master")
            .env("EDDY_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn eddy master");
        let (addr, metrics) = wait_for_line(&mut child, "eddy master listening on ");
        // Its key file (beside the metastore, unless the test names one):
        // workers started for this master sign their worker tokens with it.
        let key_file = extra
            .lines()
            .find_map(|l| l.trim().strip_prefix("key_file = "))
            .map(|v| PathBuf::from(v.trim_matches('"')))
            .unwrap_or_else(|| dir.join("master.key"));
        key_files().lock().unwrap().insert(addr.clone(), key_file);
        MasterProc {
            child,
            addr,
            metrics,
            dir: dir.to_path_buf(),
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit by itself.
    pub fn wait(mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    pub fn ufs(&self) -> PathBuf {
        self.dir.join("ufs")
    }

    pub async fn client(&self) -> eddy_client::MasterClient {
        eddy_client::MasterClient::connect(&self.addr)
            .await
            .unwrap()
    }

    /// Runs `eddy --master ADDR args...` and returns its output.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(EDDY)
            .arg("--master")
            .arg(&self.addr)
            .args(args)
            .output()
            .unwrap()
    }

    /// As [`MasterProc::cli`] for a command that must succeed: its stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let o = self.cli(args);
        assert!(
            o.status.success(),
            "eddy {args:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

/// The key file of each master started here, by address.
fn key_files() -> &'static std::sync::Mutex<std::collections::HashMap<String, PathBuf>> {
    static M: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, PathBuf>>> =
        std::sync::OnceLock::new();
    M.get_or_init(Default::default)
}

/// The `[security]` table a worker for `master` gets: the master's key
/// file, when this process started that master and it has one (none with
/// authentication = "none"), so the worker signs its own worker token.
pub fn worker_security(master: &str) -> String {
    match key_files().lock().unwrap().get(master) {
        Some(k) if k.exists() => format!("[security]\nkey_file = {:?}\n", k.display().to_string()),
        _ => String::new(),
    }
}

/// A worker's config around `extra`: the master's key file goes in the
/// `[security]` table `extra` has (unless it names its own key or token),
/// else in one of its own before everything (returned first).
fn with_worker_key(master: &str, extra: &str) -> (String, String) {
    let own = worker_security(master);
    if !extra.contains("[security]") {
        return (own, extra.to_string());
    }
    if own.is_empty() || extra.contains("key_file") || extra.contains("token") {
        return (String::new(), extra.to_string());
    }
    (String::new(), extra.replacen("[security]\n", &own, 1))
}

/// Waits for the stdout line starting with `prefix` and returns the first
/// word after it, with the metrics endpoint announced before it (`eddy WHO
/// metrics on http://ADDR/metrics`; empty if none was); then keeps draining
/// stdout so the child never blocks on a full pipe. Kills the child and
/// panics if the line does not come.
fn wait_for_line(child: &mut Child, prefix: &'static str) -> (String, String) {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        let mut metrics = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some((_, rest)) = line.split_once(" metrics on http://") {
                metrics = rest.trim_end_matches("/metrics").to_string();
            }
            if let Some(rest) = line.strip_prefix(prefix)
                && let Some(tx) = tx.take()
            {
                let word = rest.split_whitespace().next().unwrap_or("").to_string();
                let _ = tx.send((word, metrics.clone()));
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(a) => a,
        Err(_) => {
            let _ = child.kill();
            let status = child.wait();
            panic!("no {prefix:?} line from the child ({status:?})");
        }
    }
}

/// A running `eddy worker` process.
pub struct WorkerProc {
    child: Child,
    /// The data server's `host:port`.
    pub addr: String,
    /// The Prometheus endpoint's `host:port`.
    pub metrics: String,
}

impl WorkerProc {
    /// Starts a worker for `master`; `extra` is appended to its `[worker]` table.
    pub fn start(dir: &Path, master: &str, extra: &str) -> Self {
        Self::start_bound(dir, master, "127.0.0.1:0", extra)
    }

    pub fn start_bound(dir: &Path, master: &str, bind: &str, extra: &str) -> Self {
        Self::start_full(dir, master, bind, extra, &[])
    }

    /// As `start_bound`, with environment variables for the process.
    pub fn start_full(
        dir: &Path,
        master: &str,
        bind: &str,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Self {
        Self::start_stderr(dir, master, bind, extra, env, Stdio::inherit())
    }

    /// As [`WorkerProc::start_full`], its stderr going to `stderr`.
    pub fn start_stderr(
        dir: &Path,
        master: &str,
        bind: &str,
        extra: &str,
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let cfg = dir.join(format!("worker-{}.toml", std::process::id()));
        let cfg = unique(cfg);
        let (head, extra) = with_worker_key(master, extra);
        // No write pool unless a test asks for one: tests count a worker's
        // memfds (one per cached block), and dozens of workers each
        // allocating their pool would slow the suite for nothing.
        let pool = match extra.contains("write_pool_bytes") {
            true => "",
            false => "write_pool_bytes = 0",
        };
        std::fs::write(
            &cfg,
            format!(
                "{head}[worker]
master = {master:?}
bind = {bind:?}
metrics_bind = \"127.0.0.1:0\"
{pool}
{extra}
"
            ),
        )
        .unwrap();
        let mut child = Command::new(EDDY)
            .arg("--config")
            .arg(&cfg)
            .arg("worker")
            .env("EDDY_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn eddy worker");
        let (addr, metrics) = wait_for_line(&mut child, "eddy worker listening on ");
        WorkerProc {
            child,
            addr,
            metrics,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Open file descriptors of the worker process.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `path`, or `path` with a counter appended if it exists.
fn unique(path: PathBuf) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    path.with_extension(format!("{n}.toml"))
}

/// A master and `n` workers, each a real process on loopback.
pub struct Cluster {
    pub master: MasterProc,
    pub workers: Vec<WorkerProc>,
    pub dir: PathBuf,
}

impl Cluster {
    /// `worker_extra` goes into every worker's `[worker]` table.
    pub fn start(dir: &Path, workers: usize, master_extra: &str, worker_extra: &str) -> Self {
        let master = MasterProc::start(dir, master_extra);
        let workers = (0..workers)
            .map(|i| {
                let sock = dir.join(format!("w{i}.sock"));
                let extra = format!(
                    "domain_socket = {:?}\n{worker_extra}",
                    sock.display().to_string()
                );
                WorkerProc::start(dir, &master.addr, &extra)
            })
            .collect();
        Cluster {
            master,
            workers,
            dir: dir.to_path_buf(),
        }
    }

    /// Kills every worker (SIGKILL) and starts the first again on its old
    /// address and socket with `worker_extra`: memory is gone, disk tiers
    /// stay. Returns the master and the new worker.
    pub fn restart_first_worker(self, worker_extra: &str) -> (MasterProc, WorkerProc) {
        let Cluster {
            master,
            workers,
            dir,
        } = self;
        let waddr = workers[0].addr.clone();
        for w in workers {
            w.kill9();
        }
        let extra = format!(
            "domain_socket = {:?}\n{worker_extra}",
            dir.join("w0.sock").display().to_string()
        );
        let w = WorkerProc::start_bound(&dir, &master.addr, &waddr, &extra);
        (master, w)
    }

    /// A client that reads over TCP only.
    pub async fn fs(&self) -> eddy_client::FileSystem {
        let opts = eddy_client::ClientOptions {
            short_circuit: false,
            ..Default::default()
        };
        eddy_client::FileSystem::connect_with(&self.master.addr, opts)
            .await
            .unwrap()
    }

    /// A client that maps blocks of workers on this host (short-circuit).
    pub async fn fs_local(&self) -> eddy_client::FileSystem {
        eddy_client::FileSystem::connect(&self.master.addr)
            .await
            .unwrap()
    }

    pub fn ufs(&self) -> PathBuf {
        self.dir.join("ufs")
    }

    /// A counter summed over every live worker (see the `Stats` frame).
    pub async fn stat_sum(&self, fs: &eddy_client::FileSystem, name: &str) -> u64 {
        let mut total = 0;
        for w in &self.workers {
            if let Ok(stats) = fs.worker_stats(&w.addr).await {
                total += stats.iter().find(|(k, _)| k == name).map_or(0, |(_, v)| *v);
            }
        }
        total
    }
}

/// Polls `check` every 20 ms until it holds, for at most `limit`: for state
/// that another process changes on its own schedule (heartbeats), where no
/// signal reaches the test.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Open memfd segments of process `pid` ("self" for this one).
pub fn memfds(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|t| t.to_string_lossy().starts_with("/memfd:"))
        .count()
}

/// Receives into `buf` on a Unix socket with `recvmsg`, collecting the
/// descriptors attached (up to 64); returns the bytes read and them.
pub async fn recv_with_fds(
    s: &tokio::net::UnixStream,
    buf: &mut [u8],
) -> (usize, Vec<std::os::fd::OwnedFd>) {
    use std::os::fd::AsFd;
    let mut space = vec![std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(64))];
    let mut cmsg = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let n = loop {
        s.readable().await.unwrap();
        match rustix::net::recvmsg(
            s.as_fd(),
            &mut [std::io::IoSliceMut::new(buf)],
            &mut cmsg,
            rustix::net::RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(r) => break r.bytes,
            Err(rustix::io::Errno::AGAIN) => {}
            Err(e) => panic!("{e}"),
        }
    };
    let mut fds = Vec::new();
    for m in cmsg.drain() {
        if let rustix::net::RecvAncillaryMessage::ScmRights(it) = m {
            fds.extend(it);
        }
    }
    (n, fds)
}

/// File sizes around block size `bs` that every data-path test covers:
/// empty, one byte, a block minus, exactly and plus one, several blocks.
pub fn file_shapes(bs: u64) -> [u64; 6] {
    [0, 1, bs - 1, bs, bs + 1, 3 * bs + 5]
}

/// The write types every data-path test covers, with short names for paths.
pub const WRITE_TYPES: [(eddy_client::pb::WriteType, &str); 3] = [
    (eddy_client::pb::WriteType::MustCache, "mc"),
    (eddy_client::pb::WriteType::CacheThrough, "ct"),
    (eddy_client::pb::WriteType::Through, "th"),
];

/// Deterministic test bytes: chunk `i` of a file is a fixed pattern with `i`
/// stamped in, so misplaced chunks are caught and comparing stays cheap.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

impl Drop for MasterProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn code_of(e: eddy_client::ClientError) -> eddy_client::EddyCode {
    e.code()
}

/// Writes `data` to a new Eddy file with write type `wt`, in odd-sized
/// pieces (they exercise buffering across block boundaries).
pub async fn put(
    fs: &eddy_client::FileSystem,
    path: &str,
    data: &[u8],
    wt: eddy_client::pb::WriteType,
) -> eddy_client::pb::FileStatus {
    let o = eddy_client::CreateOptions {
        write_type: wt,
        ..Default::default()
    };
    let mut w = fs.create(path, &o).await.unwrap();
    for chunk in data.chunks(300_007) {
        w.write(chunk).await.unwrap();
    }
    w.close().await.unwrap()
}

/// A whole Eddy file (default read type).
pub async fn get(fs: &eddy_client::FileSystem, path: &str) -> Vec<u8> {
    fs.open(path, &eddy_client::OpenOptions::default())
        .await
        .unwrap()
        .read_to_end()
        .await
        .unwrap()
}

/// Scrapes a Prometheus endpoint (`host:port`); returns the exposition text.
pub fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the metrics endpoint");
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

/// The value of the sample `name{labels}` (labels as printed, `""` for
/// none) in exposition `text`, or None.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A TCP server on loopback that accepts connections, reads whatever comes
/// and never answers: a master or worker that hangs.
pub struct SilentServer {
    pub addr: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl SilentServer {
    pub fn start() -> Self {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for c in l.incoming() {
                if s.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                let Ok(mut c) = c else { continue };
                let mut dup = c.try_clone().unwrap();
                // Drain what the client sends so its writes never block.
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut dup, &mut std::io::sink());
                });
                let _ = std::io::Write::flush(&mut c);
                held.push(c);
            }
        });
        SilentServer { addr, stop }
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = std::net::TcpStream::connect(&self.addr);
    }
}

/// A data connection to the worker at `addr`, past the handshake (the
/// `Hello` every client sends first).
pub async fn data_conn(addr: &str) -> tokio::net::TcpStream {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    eddy_wire::hello(&mut s, &eddy_client::Credentials::current_user().user)
        .await
        .unwrap()
        .unwrap();
    s
}

/// A short-circuit connection to the worker's Unix socket `path`, past
/// the handshake.
pub async fn uds_conn(path: impl AsRef<Path>) -> tokio::net::UnixStream {
    let mut s = tokio::net::UnixStream::connect(path).await.unwrap();
    eddy_wire::hello(&mut s, &eddy_client::Credentials::current_user().user)
        .await
        .unwrap()
        .unwrap();
    s
}

/// A block token for `file_id` signed with the block keys of the master
/// whose key file is `key_file` (as the master signs them), for `user`,
/// expiring at `expires_ms` (Unix ms): what tests use to get past the
/// token check to the checks behind it, or to forge on purpose.
pub fn mint_block_token(
    key_file: &Path,
    file_id: u64,
    ops: eddy_proto::auth::BlockOps,
    user: &str,
    expires_ms: u64,
) -> Vec<u8> {
    let keys = eddy_proto::auth::Keyring::load(key_file).unwrap();
    eddy_proto::auth::BlockGrant {
        file_id,
        ops,
        user: user.into(),
        expires_ms,
    }
    .sign(&block_keys_now(&keys, &Default::default()))
    .unwrap()
}

/// The block keys a master with these keys and `[security]` settings
/// signs with now.
pub fn block_keys_now(
    keys: &eddy_proto::auth::Keyring,
    sec: &eddy_proto::auth::SecurityConfig,
) -> eddy_proto::auth::Keyring {
    let s = eddy_proto::auth::BlockKeySchedule::from_config(sec).unwrap();
    s.keys(keys, s.epoch(unix_ms_in(0)))
}

/// Unix time in ms, `ahead_ms` from now.
pub fn unix_ms_in(ahead_ms: u64) -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + ahead_ms
}

/// A READ|WRITE token for `file_id` of the cluster whose master runs in
/// `dir`, valid for an hour.
pub fn rw_token(dir: &Path, file_id: u64) -> Vec<u8> {
    mint_block_token(
        &dir.join("master.key"),
        file_id,
        eddy_proto::auth::BlockOps::READ_WRITE,
        &eddy_client::Credentials::current_user().user,
        unix_ms_in(3_600_000),
    )
}

/// A master client that proves it is a worker (a worker token signed with
/// the key file of the master in `dir`), for tests that call the workers'
/// RPCs themselves.
pub async fn worker_client(addr: &str, dir: &Path) -> eddy_client::MasterClient {
    let keys = eddy_proto::auth::Keyring::load(&dir.join("master.key")).unwrap();
    let token = eddy_proto::auth::Credential::sign(
        &keys,
        eddy_proto::auth::Principal::Worker,
        "test-worker",
        unix_ms_in(0),
        3_600_000,
    )
    .unwrap();
    let creds = eddy_client::Credentials {
        user: "test-worker".into(),
        token: Some(token),
    };
    eddy_client::MasterClient::connect_with(addr, Duration::from_secs(60), &creds)
        .await
        .unwrap()
}

/// The handshake on `s`; false if the worker refused it or closed.
pub async fn try_hello<S>(s: &mut S) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let me = eddy_client::Credentials::current_user().user;
    matches!(eddy_wire::hello(s, &me).await, Ok(Ok(())))
}
