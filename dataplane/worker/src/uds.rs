//! Short-circuit for co-located clients: a Unix socket on which a client
//! leases blocks and receives their sealed memfds (`SCM_RIGHTS`), then reads
//! them from its own read-only mapping: one round trip per batch of blocks,
//! none per read.
//!
//! A lease pins its segment (an `Arc`): eviction skips it and `free` only
//! takes the block out of the table, so the memory goes when the last lease
//! ends. Leases end on `Release`, after the lease lifetime, or when the
//! connection closes for any reason (exit, kill -9): the lease table lives in
//! the connection's task and is dropped with it. State machine and layouts:
//! docs/SHORT-CIRCUIT.md.

use std::collections::HashMap;
use std::io::{IoSlice, Write};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_wire::{
    ErrorFrame, Kind, LeaseGrant, WireError, WriteOpen, decode_lease, decode_release,
    encode_lease_ok, read_body, read_header, write_frame,
};
use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
use tokio::io::{AsyncBufReadExt, BufReader, Interest};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use eddy_proto::auth::BlockOps;

use crate::access::{ConnAccess, Peer, handshake};
use crate::cache::cached;
use crate::conn::{PeerLimit, PeerSlot, Timed, Timeouts};
use crate::error::WorkerError;
use crate::segment::Segment;
use crate::session::WriteSession;
use crate::shared::{Shared, stats};
use crate::store::{Block, Stats};

pub use crate::conn::LeasePolicy;

/// Binds the socket, replacing a stale one left by a previous run.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if m.file_type().is_socket() {
            std::fs::remove_file(path)?;
        } else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
    }
    if let Some(dir) = path.parent() {
        reachable_dir(dir)?;
    }
    let l = UnixListener::bind(path)?;
    // Every local user may connect: who a peer is comes from the kernel
    // (SO_PEERCRED, checked in the handshake) and what it may read from its
    // block tokens, as on TCP, so a connect grants nothing by itself.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(l)
}

/// Makes the socket's directory traversable by every user (execute only:
/// others can reach a name they know, not list the directory). Missing
/// directories are created 0711; an existing one gets the execute bits
/// added, or a warning saying what to change when it is not ours to change.
/// The state directories (tiers, blocks) keep their own 0700.
fn reachable_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(dir)?;
    }
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o011 != 0o011 {
        let wanted = std::fs::Permissions::from_mode((mode | 0o011) & 0o7777);
        let r = std::fs::set_permissions(dir, wanted);
        if r.is_ok() {
            tracing::info!(
                "made the short-circuit socket's directory {} traversable by other users \
                 (g+x, o+x), so their clients can reach the socket",
                dir.display()
            );
        }
        if let Err(e) = r {
            tracing::warn!(
                "the short-circuit socket's directory {} is not traversable by other users \
                 ({e}); their clients will read over TCP: chmod o+x it, or set [worker] \
                 domain_socket inside a directory they can reach",
                dir.display()
            );
        }
    }
    // Ancestors are the operator's: said, not changed.
    for a in dir.ancestors().skip(1) {
        let Ok(m) = std::fs::metadata(a) else {
            continue;
        };
        if m.permissions().mode() & 0o001 == 0 {
            tracing::warn!(
                "{} (above the short-circuit socket's directory {}) is not traversable by \
                 other users: their clients will read over TCP; chmod o+x it, or set [worker] \
                 domain_socket inside a directory they can reach",
                a.display(),
                dir.display()
            );
            break;
        }
    }
    Ok(())
}

/// Accepts co-located clients until `stop`; removes the socket file at the end.
pub async fn accept_loop(
    listener: UnixListener,
    path: PathBuf,
    sh: Arc<Shared>,
    policy: LeasePolicy,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    // Per process: each client process is one peer (SO_PEERCRED).
    let peers = PeerLimit::new(sh.max_per_peer);
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((sock, _)) => {
                    let key = rustix::net::sockopt::socket_peercred(&sock)
                        .map(|c| (c.uid.as_raw(), c.pid.as_raw_nonzero().get()))
                        .unwrap_or((u32::MAX, 0));
                    let Some(slot) = peers.admit(key) else {
                        let who = format!("process {} (uid {})", key.1, key.0);
                        crate::conn::refuse(&sock, &who, peers.max());
                        continue;
                    };
                    conns.spawn(serve(sh.clone(), sock, slot, policy.clone(), stop.clone()));
                }
                Err(e) => {
                    tracing::warn!("unix socket accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    let _ = std::fs::remove_file(&path);
    while conns.join_next().await.is_some() {}
}

struct Held {
    block_id: u64,
    /// Holding the block (segment or disk file) is what the lease means.
    _pin: Block,
    since: Instant,
}

/// One client's leases: dropped, with every segment reference, when the
/// connection ends.
struct Table<'a> {
    held: HashMap<u64, Held>,
    next_id: u64,
    stats: &'a Stats,
}

impl Table<'_> {
    fn expire(&mut self, ttl: Duration) {
        let before = self.held.len();
        self.held.retain(|_, h| h.since.elapsed() < ttl);
        let gone = (before - self.held.len()) as u64;
        self.stats
            .leases
            .fetch_sub(gone, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for Table<'_> {
    fn drop(&mut self) {
        let n = self.held.len() as u64;
        self.stats
            .leases
            .fetch_sub(n, std::sync::atomic::Ordering::Relaxed);
        self.stats
            .lease_clients
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

async fn serve(
    sh: Arc<Shared>,
    sock: UnixStream,
    _slot: PeerSlot<(u32, i32)>,
    policy: LeasePolicy,
    mut stop: watch::Receiver<bool>,
) {
    // The idle rule is applied below (a connection holding leases is not
    // idle); the stream's own timers cover frames and stalled writes.
    let idle = sh.timeouts.idle;
    let limits = Timeouts {
        idle: Duration::MAX,
        ..sh.timeouts
    };
    // The kernel says who the peer is; the handshake must agree.
    let peer = match rustix::net::sockopt::socket_peercred(&sock) {
        Ok(c) => {
            let uid = c.uid.as_raw();
            // The client names itself with the same lookup (agreeing for
            // NSS users too); it may run `id`, so off the runtime's threads.
            let name = tokio::task::spawn_blocking(move || eddy_proto::auth::os_user(uid))
                .await
                .unwrap_or_else(|_| uid.to_string());
            Peer::Local { uid, name }
        }
        Err(e) => {
            tracing::warn!("cannot tell who a short-circuit client is (SO_PEERCRED: {e}); closing");
            return;
        }
    };
    // Buffered: a request's header and body (and releases sent ahead of
    // it) arrive in one read.
    let mut sock = BufReader::with_capacity(16 << 10, Timed::new(sock, limits));
    sock.get_mut().expect_frame();
    // The stream's idle timer is off here (leases keep a connection), so
    // the handshake gets the idle limit of its own.
    let hello = tokio::select! {
        a = tokio::time::timeout(idle, handshake(&mut sock, peer, &sh.store.stats)) => {
            a.ok().flatten()
        }
        _ = stop.changed() => return,
    };
    let Some(mut access) = hello else {
        return;
    };
    Stats::add(&sh.store.stats.lease_clients, 1);
    let mut table = Table {
        held: HashMap::new(),
        next_id: 1,
        stats: &sh.store.stats,
    };
    let mut session: Option<WriteSession> = None;
    let period = (policy.ttl / 4).min(idle / 4);
    let mut tick = tokio::time::interval(period.max(Duration::from_millis(10)));
    let mut last = Instant::now();
    loop {
        sock.get_mut().expect_frame();
        // Wait for bytes without consuming any (cancel-safe), so the lease
        // clock can tick between requests without cutting one in half.
        let ready = tokio::select! {
            r = sock.fill_buf() => r.map(|b| !b.is_empty()),
            _ = tick.tick() => {
                table.expire(policy.ttl);
                // Idle: closed unless it holds leases (and no write, whose
                // reservations must not wait on a client that went quiet).
                if last.elapsed() >= idle && (table.held.is_empty() || session.is_some()) {
                    tracing::debug!("closing a short-circuit connection idle for {idle:?}");
                    return;
                }
                continue;
            }
            _ = stop.changed() => return,
        };
        last = Instant::now();
        if !matches!(ready, Ok(true)) {
            return;
        }
        let h = read_header(&mut sock).await;
        let r = match h {
            Ok(h) => {
                let s = &mut session;
                dispatch(&sh, &mut sock, h, &mut table, &policy, s, &mut access).await
            }
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => {}
            Err(WireError::Closed) | Err(WireError::Io(_)) => return,
            Err(e) => {
                tracing::warn!("closing a short-circuit connection: {e}");
                let f = ErrorFrame::new(eddy_proto::EddyCode::Protocol, e.to_string());
                let _ = write_frame(sock.get_mut(), Kind::Error, &f.encode()).await;
                return;
            }
        }
    }
}

async fn dispatch(
    sh: &Shared,
    sock: &mut BufReader<Timed<UnixStream>>,
    h: eddy_wire::Header,
    table: &mut Table<'_>,
    policy: &LeasePolicy,
    session: &mut Option<WriteSession>,
    access: &mut ConnAccess,
) -> Result<(), WireError> {
    match h.kind {
        Kind::WriteOpen
        | Kind::SegmentRequest
        | Kind::SegmentCommit
        | Kind::WriteClose
        | Kind::WriteCancel => {
            let body = read_body(sock, h).await?;
            write_step(sh, sock, h.kind, &body, session, access).await
        }
        Kind::Lease => {
            let body = read_body(sock, h).await?;
            lease(sh, sock, &body, table, policy, access).await
        }
        Kind::Release => {
            let body = read_body(sock, h).await?;
            for id in decode_release(&body)? {
                if table.held.remove(&id).is_some() {
                    table
                        .stats
                        .leases
                        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            // Not answered: a client pipelines releases ahead of its next
            // request instead of paying a round trip for them.
            Ok(())
        }
        Kind::Stats => {
            let _ = read_body(sock, h).await?;
            write_frame(
                sock.get_mut(),
                Kind::StatsOk,
                &eddy_wire::encode_stats(&stats(sh)),
            )
            .await
        }
        other => Err(WireError::Unexpected {
            expected: "LEASE, RELEASE, STATS or a write step",
            got: other,
        }),
    }
}

/// Grants what it can of a `Lease` batch: one answer per block, with the
/// descriptors of the granted ones attached in grant order.
async fn lease(
    sh: &Shared,
    sock: &mut BufReader<Timed<UnixStream>>,
    body: &[u8],
    table: &mut Table<'_>,
    policy: &LeasePolicy,
    access: &mut ConnAccess,
) -> Result<(), WireError> {
    let items = decode_lease(body)?;
    table.expire(policy.ttl);
    let mut grants = Vec::with_capacity(items.len());
    // What the granted descriptors come from, in grant order.
    let mut handed: Vec<Handed> = Vec::new();
    for it in &items {
        let refuse = |e: WorkerError| LeaseGrant {
            block_id: it.block_id,
            lease_id: 0,
            length: 0,
            code: e.code() as i32 as u16,
            message: e.to_string(),
        };
        if let Err(e) = it.check() {
            grants.push(refuse(e.into()));
            continue;
        }
        let (keys, stats) = (&sh.link.keys, &sh.store.stats);
        if let Err(e) = access.check_block(keys, stats, it.block_id, &it.token, BlockOps::READ) {
            grants.push(refuse(e));
            continue;
        }
        if table.held.len() >= policy.max_per_client {
            grants.push(refuse(WorkerError::NoSpace(crate::store::NoSpace {
                needed: it.block_length,
                used: table.held.len() as u64,
                capacity: policy.max_per_client as u64,
            })));
            continue;
        }
        // A memory block hands its sealed segment; a disk-tier block
        // a read-only descriptor of its file (never changed after it
        // is written), and the grant names the tier.
        let got = cached(sh, it).await.and_then(|b| {
            let h = match &b {
                Block::Mem(s) => Handed::Mem(s.clone()),
                Block::Disk(d) => Handed::File(d.client_fd().map_err(|e| {
                    sh.store.drop_broken(d, &e);
                    WorkerError::NotFound(format!(
                        "block {} was lost from its disk tier ({e}); ask again",
                        it.block_id
                    ))
                })?),
            };
            Ok((b, h))
        });
        match got {
            Ok((b, h)) => {
                let id = table.next_id;
                table.next_id += 1;
                let tier = match &b {
                    Block::Mem(_) => String::new(),
                    d => sh.store.tier_name(d),
                };
                grants.push(LeaseGrant {
                    block_id: it.block_id,
                    lease_id: id,
                    length: b.len(),
                    code: 0,
                    message: tier,
                });
                handed.push(h);
                Stats::add(&sh.store.stats.leased_bytes, b.len());
                table.held.insert(
                    id,
                    Held {
                        block_id: it.block_id,
                        _pin: b,
                        since: Instant::now(),
                    },
                );
                Stats::add(&sh.store.stats.leases, 1);
                Stats::add(&sh.store.stats.leases_granted, 1);
            }
            Err(e) => grants.push(refuse(e)),
        }
    }
    let body = encode_lease_ok(policy.ttl.as_millis() as u64, &grants);
    let mut frame = eddy_wire::Header {
        kind: Kind::LeaseOk,
        body_len: body.len() as u32,
    }
    .encode()
    .to_vec();
    frame.write_all(&body).expect("Vec write");
    let fds: Vec<BorrowedFd<'_>> = handed
        .iter()
        .map(|h| match h {
            Handed::Mem(s) => s.fd(),
            Handed::File(f) => f.as_fd(),
        })
        .collect();
    send_with_fds(sock.get_ref().get_ref(), &frame, &fds, sh.timeouts.idle).await?;
    Ok(())
}

/// A descriptor to hand with a lease grant.
enum Handed {
    Mem(Arc<Segment>),
    File(std::fs::File),
}

/// Sends `bytes` with `fds` attached to its first byte, so the receiver gets
/// the descriptors with the frame's header. Fails if the peer reads nothing
/// for `limit` (the stream's own write timer is bypassed here).
async fn send_with_fds(
    sock: &UnixStream,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
    limit: Duration,
) -> Result<(), WireError> {
    let mut sent = 0;
    while sent < bytes.len() {
        let step = sock.async_io(Interest::WRITABLE, || {
            let attach = sent == 0 && !fds.is_empty();
            let mut space = vec![
                MaybeUninit::uninit();
                if attach {
                    rustix::cmsg_space!(ScmRights(fds.len()))
                } else {
                    0
                }
            ];
            let mut cmsg = SendAncillaryBuffer::new(&mut space);
            if attach {
                cmsg.push(SendAncillaryMessage::ScmRights(fds));
            }
            rustix::net::sendmsg(
                sock.as_fd(),
                &[IoSlice::new(&bytes[sent..])],
                &mut cmsg,
                SendFlags::NOSIGNAL,
            )
            .map_err(std::io::Error::from)
        });
        let n = tokio::time::timeout(limit, step).await.map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the client read nothing for {} ms", limit.as_millis()),
            )
        })??;
        sent += n;
    }
    Ok(())
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "lease of block {}", self.block_id)
    }
}

/// A short-circuit write step: the client fills segments the worker hands
/// it, one block each, and commits them; the session (`crate::session`)
/// seals each (which fails if the client still maps it writable), persists
/// it from the sealed bytes when the write type says so, and puts each
/// block in the store as it is committed (recorded with the master at
/// close). Every step is answered; a refused step leaves the session open.
async fn write_step(
    sh: &Shared,
    sock: &mut BufReader<Timed<UnixStream>>,
    kind: Kind,
    body: &[u8],
    session: &mut Option<WriteSession>,
    access: &mut ConnAccess,
) -> Result<(), WireError> {
    let out = sock.get_mut();
    let fail = |e: WorkerError| e.frame().encode();
    let none_open = || WorkerError::InvalidArgument("no write is open on this connection".into());
    match kind {
        Kind::WriteOpen => {
            let open = WriteOpen::decode(body)?;
            if let Err(e) = open.check() {
                return write_frame(out, Kind::Error, &fail(e.into())).await;
            }
            let (keys, stats) = (&sh.link.keys, &sh.store.stats);
            let allowed =
                access.check_file(keys, stats, open.file_id, &open.token, BlockOps::WRITE);
            if let Err(e) = allowed {
                return write_frame(out, Kind::Error, &fail(e)).await;
            }
            if session.is_some() {
                let e = WorkerError::InvalidArgument(
                    "a write is already open on this connection".into(),
                );
                return write_frame(out, Kind::Error, &fail(e)).await;
            }
            match WriteSession::open(sh, &open).await {
                Ok(s) => *session = Some(s),
                Err(e) => return write_frame(out, Kind::Error, &fail(e)).await,
            }
            write_frame(out, Kind::Ok, &eddy_wire::u64_body(0)).await
        }
        Kind::SegmentRequest => {
            let capacity = eddy_wire::decode_u64(kind, body)?;
            let Some(w) = session.as_mut() else {
                return write_frame(out, Kind::Error, &fail(none_open())).await;
            };
            let id = match w.hand_segment(capacity).await {
                Ok(id) => id,
                Err(e) => return write_frame(out, Kind::Error, &fail(e)).await,
            };
            let body = eddy_wire::u64_pair(id, capacity);
            let mut frame = eddy_wire::Header {
                kind: Kind::SegmentOk,
                body_len: body.len() as u32,
            }
            .encode()
            .to_vec();
            frame.extend_from_slice(&body);
            let fd = w.segment_fd().expect("a segment was just handed out");
            send_with_fds(sock.get_ref().get_ref(), &frame, &[fd], sh.timeouts.idle).await
        }
        Kind::SegmentCommit => {
            let (id, len) = eddy_wire::decode_u64_pair(kind, body)?;
            let Some(w) = session.as_mut() else {
                return write_frame(out, Kind::Error, &fail(none_open())).await;
            };
            match w.commit_segment(id, len).await {
                Ok(total) => write_frame(out, Kind::Ok, &eddy_wire::u64_body(total)).await,
                Err(e) => write_frame(out, Kind::Error, &fail(e)).await,
            }
        }
        Kind::WriteCancel => {
            if let Some(w) = session.take() {
                w.cancel().await;
            }
            write_frame(out, Kind::Ok, &eddy_wire::u64_body(0)).await
        }
        _ => {
            // WriteClose
            let length = eddy_wire::decode_u64(Kind::WriteClose, body)?;
            let Some(w) = session.take() else {
                return write_frame(out, Kind::Error, &fail(none_open())).await;
            };
            match w.close_committed(sh, length).await {
                Ok(ok) => write_frame(out, Kind::WriteOk, &ok.encode()).await,
                Err(e) => write_frame(out, Kind::Error, &fail(e)).await,
            }
        }
    }
}
