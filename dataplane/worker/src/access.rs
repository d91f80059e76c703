//! Who may touch which blocks on this worker: the block keys the master
//! hands over at registration, the data-plane handshake (`Hello`, the first
//! frame on every connection), and each connection's cache of the block
//! tokens it verified (docs/SECURITY.md, "Block access tokens").
//!
//! A token is verified (one HMAC) the first time a connection shows it for
//! a file; after that the same bytes for the same file are a map lookup and
//! a compare, checked against the expiry and operations remembered with
//! them. Nothing here asks the master.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use eddy_proto::EddyCode;
use eddy_proto::auth::{BlockGrant, BlockOps, Keyring, TokenError, unix_ms};
use eddy_wire::{ErrorFrame, Hello, Kind, WireError, agree_version, read_body, read_header};
use parking_lot::RwLock;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::WorkerError;
use crate::store::Stats;

/// The user a worker names itself when it reads from a peer (replication):
/// the user of the READ grant it signs for itself. The name carries no
/// power: nothing on any worker is granted to it, so a client that claims
/// it (in a `Hello`, or to the master in `simple` mode) gets only what its
/// block tokens allow. The peer's access comes from the grant, which only
/// holders of the block keys (workers, after proving a worker credential to
/// the master) can sign.
pub const WORKER_USER: &str = "eddy-worker";

/// Most files one connection keeps verified tokens for; past it the cache
/// starts again (a client cycling through more files pays one HMAC each).
const MAX_VERIFIED: usize = 4096;

/// The block keys and whether tokens are required, as the master said at
/// the last registration. Kept in memory only.
#[derive(Default)]
pub struct BlockKeys {
    state: RwLock<KeyState>,
    /// Bumped whenever the key set changes: what a connection verified
    /// under another set is verified again (a key that rolled out must stop
    /// opening blocks on connections that already saw its tokens too).
    generation: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct KeyState {
    keys: Option<Keyring>,
    /// Authentication is not `none`: every data request needs a token.
    required: bool,
    /// Authentication is `simple`: on the Unix socket a token must name the
    /// peer's own user (the master believed whatever user was claimed).
    bind_peer: bool,
}

impl BlockKeys {
    /// Installs what a registration answer carries. A key of the wrong
    /// size is skipped (and said, without its bytes).
    pub fn install(&self, keys: &[eddy_client::pb::BlockKey], required: bool, mode: &str) {
        let keys = keyring_of(keys);
        let mut s = self.state.write();
        s.keys = keys;
        s.required = required;
        s.bind_peer = mode == "simple";
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The block keys a heartbeat brought (they roll: docs/SECURITY.md). An
    /// answer without keys (a master of an older version) leaves them be.
    pub fn roll(&self, keys: &[eddy_client::pb::BlockKey]) {
        if keys.is_empty() {
            return;
        }
        if let Some(k) = keyring_of(keys) {
            let mut s = self.state.write();
            if s.keys.as_ref().map(Keyring::ids) != Some(k.ids()) {
                s.keys = Some(k);
                self.generation.fetch_add(1, Ordering::Release);
            }
        }
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn required(&self) -> bool {
        self.state.read().required
    }

    /// A READ token for `file_id` this worker signs for itself (copying a
    /// block from a peer, which checks it as any other); empty when the
    /// cluster requires none or no keys are known.
    pub fn self_grant(&self, file_id: u64, ttl_ms: u64) -> Vec<u8> {
        let s = self.state.read();
        let (true, Some(keys)) = (s.required, &s.keys) else {
            return Vec::new();
        };
        BlockGrant {
            file_id,
            ops: BlockOps::READ,
            user: WORKER_USER.into(),
            expires_ms: unix_ms().saturating_add(ttl_ms),
        }
        .sign(keys)
        .unwrap_or_default()
    }
}

/// What the worker knows of a connection's peer.
#[derive(Debug, Clone)]
pub enum Peer {
    /// TCP: the user its `Hello` named, unchecked (the tokens prove access).
    Tcp,
    /// The Unix socket: the kernel's word (SO_PEERCRED) on who it is.
    Local { uid: u32, name: String },
}

/// One connection's identity and the tokens it showed.
pub struct ConnAccess {
    /// The user the `Hello` named (on the Unix socket: checked).
    pub user: String,
    peer: Peer,
    verified: HashMap<u64, Verified>,
}

struct Verified {
    token: Vec<u8>,
    ops: BlockOps,
    expires_ms: u64,
    /// `BlockKeys::generation` when it was verified.
    generation: u64,
}

fn op_name(op: BlockOps) -> &'static str {
    if op == BlockOps::WRITE {
        "write"
    } else {
        "read"
    }
}

impl ConnAccess {
    pub fn new(user: String, peer: Peer) -> Self {
        Self {
            user,
            peer,
            verified: HashMap::new(),
        }
    }

    /// Whether `token` allows `op` on block `block_id`.
    pub fn check_block(
        &mut self,
        keys: &BlockKeys,
        stats: &Stats,
        block_id: u64,
        token: &[u8],
        op: BlockOps,
    ) -> Result<(), WorkerError> {
        let file_id = eddy_proto::file_id_of_block(block_id);
        self.check(keys, file_id, token, op)
            .map_err(|why| denied(stats, format!("block {block_id}: {why}")))
    }

    /// Whether `token` allows `op` on the blocks of file `file_id`.
    pub fn check_file(
        &mut self,
        keys: &BlockKeys,
        stats: &Stats,
        file_id: u64,
        token: &[u8],
        op: BlockOps,
    ) -> Result<(), WorkerError> {
        self.check(keys, file_id, token, op)
            .map_err(|why| denied(stats, format!("file {file_id}: {why}")))
    }

    fn check(
        &mut self,
        keys: &BlockKeys,
        file_id: u64,
        token: &[u8],
        op: BlockOps,
    ) -> Result<(), String> {
        let now = unix_ms();
        // The hot path: these bytes were verified on this connection.
        let generation = keys.generation();
        if let Some(v) = self.verified.get(&file_id)
            && v.token == token
            && v.generation == generation
        {
            if v.expires_ms <= now {
                return Err(
                    "the block token expired: open the file again for a fresh one".to_string(),
                );
            }
            if !v.ops.contains(op) {
                return Err(format!(
                    "the block token does not allow {}: it was issued for {}",
                    op_name(op),
                    if v.ops.contains(BlockOps::WRITE) {
                        "writing"
                    } else {
                        "reading"
                    }
                ));
            }
            return Ok(());
        }
        let s = keys.state.read();
        if !s.required {
            return Ok(());
        }
        if token.is_empty() {
            return Err("no block token was sent, and this cluster requires one: \
                 a client gets it from the master with the file's blocks (open the file \
                 through Eddy; block ids cannot be guessed into access)"
                .to_string());
        }
        let Some(ring) = &s.keys else {
            return Err("this worker has no block keys yet (it has not registered \
                 with the master): retry"
                .to_string());
        };
        let g = BlockGrant::verify(ring, token, now).map_err(|e| match e {
            TokenError::UnknownKey(id) => format!(
                "the block token was signed with block key {id}, which this worker does not \
                 hold: block keys roll ([security] block_key_update_ms) and old ones are \
                 dropped, or the token is another cluster's; open the file again for a fresh one"
            ),
            e => format!("the block token was refused: {e}"),
        })?;
        if g.file_id != file_id {
            return Err(format!(
                "the block token is for file {}, not this one",
                g.file_id
            ));
        }
        if !g.ops.contains(op) {
            return Err(format!(
                "the block token does not allow {}: it was issued for {}",
                op_name(op),
                if g.ops.contains(BlockOps::WRITE) {
                    "writing"
                } else {
                    "reading"
                }
            ));
        }
        // No exception for this worker's own user: replication dials peers
        // over TCP only, so a token naming `WORKER_USER` on the socket was
        // asked for by a client claiming that name to the master.
        if let Peer::Local { uid, name } = &self.peer
            && s.bind_peer
            && g.user != *name
        {
            return Err(format!(
                "the block token was issued to user {:?}, but this Unix socket identifies \
                 you as uid {uid} ({name}); with authentication = \"simple\" a short-circuit \
                 client reads with its own user's tokens only (read over TCP, or open the \
                 file as {name})",
                g.user
            ));
        }
        drop(s);
        if self.verified.len() >= MAX_VERIFIED {
            self.verified.clear();
        }
        self.verified.insert(
            file_id,
            Verified {
                token: token.to_vec(),
                ops: g.ops,
                expires_ms: g.expires_ms,
                generation,
            },
        );
        Ok(())
    }
}

/// A refusal: counted, and PERMISSION_DENIED in the error frame.
fn denied(stats: &Stats, why: String) -> WorkerError {
    Stats::add(&stats.access_denied, 1);
    tracing::debug!("data request refused: {why}");
    WorkerError::PermissionDenied(why)
}

/// The master's block keys as a keyring; `None` when none is usable (the
/// worker then refuses every token, saying so).
fn keyring_of(keys: &[eddy_client::pb::BlockKey]) -> Option<Keyring> {
    let pairs: Vec<(u32, [u8; 32])> = keys
        .iter()
        .filter_map(|k| match <[u8; 32]>::try_from(k.secret.as_slice()) {
            Ok(s) => Some((k.id, s)),
            Err(_) => {
                tracing::warn!(
                    "the master sent block key {} of a wrong size; skipped",
                    k.id
                );
                None
            }
        })
        .collect();
    if pairs.is_empty() {
        return None;
    }
    Keyring::from_secrets(&pairs)
        .map_err(|e| tracing::warn!("the master's block keys are unusable: {e}"))
        .ok()
}

/// The worker's side of the handshake: the first frame must be a `Hello`
/// this worker speaks; on the Unix socket its user must be the peer's.
/// Answers `Ok` and returns the connection's access state, or answers an
/// `Error` frame and returns `None` (the caller closes the connection).
/// Runs right after accept, on whatever stream the transport gives (TLS
/// wraps it first).
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    sock: &mut S,
    peer: Peer,
    stats: &Stats,
) -> Option<ConnAccess> {
    let refusal = match read_hello(sock).await {
        Ok(h) => match &peer {
            Peer::Local { uid, name } if h.user != *name => {
                Stats::add(&stats.access_denied, 1);
                ErrorFrame::new(
                    EddyCode::PermissionDenied,
                    format!(
                        "this Unix socket identifies you as uid {uid} ({name}), not {:?}: \
                         a co-located client is who the kernel says (unset EDDY_USER, or \
                         read over TCP)",
                        h.user
                    ),
                )
            }
            _ => {
                let ok = eddy_wire::write_frame(
                    sock,
                    Kind::Ok,
                    &eddy_wire::u64_body(u64::from(h.version)),
                )
                .await;
                return ok.ok().map(|()| ConnAccess::new(h.user, peer));
            }
        },
        Err(WireError::Closed) => return None,
        Err(WireError::Remote(f)) => f,
        // A cut or stalled handshake is told why too (best effort: the
        // peer may be gone).
        Err(WireError::Io(e)) => ErrorFrame::new(
            EddyCode::Protocol,
            format!("the handshake did not arrive whole: {e}"),
        ),
        Err(e) => ErrorFrame::new(EddyCode::Protocol, e.to_string()),
    };
    tracing::debug!("refused a data connection's handshake: {}", refusal.message);
    let _ = eddy_wire::write_frame(sock, Kind::Error, &refusal.encode()).await;
    None
}

async fn read_hello<S: AsyncRead + Unpin>(sock: &mut S) -> Result<Hello, WireError> {
    let h = read_header(sock).await?;
    if h.kind != Kind::Hello {
        return Err(WireError::Unexpected {
            expected: "HELLO (the handshake comes first on every data connection)",
            got: h.kind,
        });
    }
    let mut hello = Hello::decode(&read_body(sock, h).await?)?;
    // Any version from 1 up to this worker's; the answer is the one both speak.
    hello.version = agree_version(hello.version).map_err(WireError::Remote)?;
    Ok(hello)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(mode: &str) -> (BlockKeys, Keyring) {
        let ring = Keyring::generate(7);
        let k = BlockKeys::default();
        let pb: Vec<_> = ring
            .secrets()
            .into_iter()
            .map(|(id, s)| eddy_client::pb::BlockKey {
                id,
                secret: s.to_vec(),
            })
            .collect();
        k.install(&pb, true, mode);
        (k, ring)
    }

    fn token(ring: &Keyring, file_id: u64, ops: BlockOps, user: &str, exp: u64) -> Vec<u8> {
        BlockGrant {
            file_id,
            ops,
            user: user.into(),
            expires_ms: exp,
        }
        .sign(ring)
        .unwrap()
    }

    #[test]
    fn a_token_is_verified_once_and_refused_for_other_files_ops_and_keys() {
        let (k, ring) = keys("token");
        let stats = Stats::default();
        let mut c = ConnAccess::new("alice".into(), Peer::Tcp);
        let later = unix_ms() + 60_000;
        let t = token(&ring, 5, BlockOps::READ, "alice", later);
        let b = eddy_proto::block_id(5, 2);
        c.check_block(&k, &stats, b, &t, BlockOps::READ).unwrap();
        assert_eq!(c.verified.len(), 1);
        c.check_block(&k, &stats, b, &t, BlockOps::READ).unwrap();
        let refused = |r: Result<(), WorkerError>| {
            let e = r.unwrap_err();
            assert_eq!(e.code(), EddyCode::PermissionDenied, "{e}");
            e.to_string()
        };
        let other = eddy_proto::block_id(6, 0);
        refused(c.check_block(&k, &stats, other, &t, BlockOps::READ));
        refused(c.check_block(&k, &stats, b, &t, BlockOps::WRITE));
        refused(c.check_block(&k, &stats, b, &[], BlockOps::READ));
        let forged = token(&Keyring::generate(7), 5, BlockOps::READ, "alice", later);
        let m = refused(c.check_block(&k, &stats, b, &forged, BlockOps::READ));
        assert!(m.contains("signature"), "{m}");
        let old = token(&ring, 5, BlockOps::READ, "alice", 1);
        let m = refused(c.check_block(&k, &stats, b, &old, BlockOps::READ));
        assert!(m.contains("expired"), "{m}");
        assert_eq!(
            stats
                .access_denied
                .load(std::sync::atomic::Ordering::Relaxed),
            5
        );
    }

    #[test]
    fn on_the_unix_socket_in_simple_mode_a_token_must_name_the_peer() {
        let (k, ring) = keys("simple");
        let stats = Stats::default();
        let peer = Peer::Local {
            uid: 1000,
            name: "bob".into(),
        };
        let mut c = ConnAccess::new("bob".into(), peer);
        let later = unix_ms() + 60_000;
        let theirs = token(&ring, 5, BlockOps::READ, "alice", later);
        let e = c
            .check_file(&k, &stats, 5, &theirs, BlockOps::READ)
            .unwrap_err();
        assert!(e.to_string().contains("uid 1000"), "{e}");
        let own = token(&ring, 5, BlockOps::READ, "bob", later);
        c.check_file(&k, &stats, 5, &own, BlockOps::READ).unwrap();
    }

    #[test]
    fn nothing_is_required_when_the_master_requires_nothing() {
        let k = BlockKeys::default();
        k.install(&[], false, "none");
        let mut c = ConnAccess::new(String::new(), Peer::Tcp);
        c.check_file(&k, &Stats::default(), 1, &[], BlockOps::WRITE)
            .unwrap();
        assert!(k.self_grant(1, 1000).is_empty());
    }
}
