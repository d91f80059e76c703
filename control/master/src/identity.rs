//! Who is calling: the layer in front of every RPC that turns a request's
//! headers into a [`Caller`] (put in the request's extensions, where the
//! RPC methods find it) or refuses it with UNAUTHENTICATED before any
//! method runs; and the master's keys.
//!
//! The decision is [`authenticate`], plain code over headers (unit-tested
//! below); the layer only applies it. Authorization (what a caller may do)
//! is the namespace's business, not this module's.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use eddy_proto::auth::{
    AUTHORIZATION_HEADER, AuthMode, BEARER, BlockGrant, BlockKeySchedule, BlockOps, Credential,
    Keyring, Principal, SecurityConfig, TOKEN_MAX, USER_HEADER, unix_ms, valid_name,
};

use crate::error::{MasterError, Result};

/// The master's keys: its own (they sign credentials) and the rolling
/// block keys derived from them (they sign block tokens; workers get these).
#[derive(Debug)]
pub struct MasterKeys {
    pub credentials: Keyring,
    schedule: BlockKeySchedule,
    /// The block keys of one epoch, derived once per epoch rather than per
    /// token.
    blocks: parking_lot::RwLock<(u64, Arc<Keyring>)>,
}

impl MasterKeys {
    /// The key file of `cfg`, created at first start. With authentication
    /// `none` nothing is read: fresh keys live in memory only (no token is
    /// checked then).
    pub fn load(cfg: &SecurityConfig, metastore_dir: &Path) -> Result<Self> {
        let schedule = BlockKeySchedule::from_config(cfg)
            .map_err(|e| MasterError::InvalidArgument(e.to_string()))?;
        let credentials = match cfg.authentication {
            AuthMode::None => Keyring::generate(1),
            AuthMode::Simple | AuthMode::Token => {
                Keyring::load_or_create(&key_file(cfg, metastore_dir))?
            }
        };
        Ok(Self::new(credentials, schedule))
    }

    /// Keys from a keyring already loaded (tests, `eddy token create`).
    pub fn new(credentials: Keyring, schedule: BlockKeySchedule) -> Self {
        let blocks = Arc::new(schedule.keys(&credentials, 0));
        Self {
            credentials,
            schedule,
            blocks: parking_lot::RwLock::new((0, blocks)),
        }
    }

    /// The block keys in force at `now_ms`, the signing one first.
    pub fn blocks_at(&self, now_ms: u64) -> Arc<Keyring> {
        let e = self.schedule.epoch(now_ms);
        {
            let b = self.blocks.read();
            if b.0 == e {
                return b.1.clone();
            }
        }
        let ring = Arc::new(self.schedule.keys(&self.credentials, e));
        let mut b = self.blocks.write();
        // Another call may have moved on to a later epoch meanwhile.
        if b.0 < e {
            *b = (e, ring.clone());
        }
        ring
    }
}

/// The key file `cfg` names, or `master.key` beside the metastore
/// directory when it names none.
pub fn key_file(cfg: &SecurityConfig, metastore_dir: &Path) -> PathBuf {
    if !cfg.key_file.as_os_str().is_empty() {
        return cfg.key_file.clone();
    }
    let parent = metastore_dir.parent().unwrap_or(Path::new(""));
    parent.join("master.key")
}

/// Who made a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub kind: CallerKind,
    /// The user (or the worker's name): from a verified credential, or as
    /// claimed in `simple` mode; in `none` mode whatever was claimed
    /// (possibly empty).
    pub name: Arc<str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerKind {
    /// A user; namespace permissions apply.
    User,
    /// A worker that proved it is one (a worker credential).
    Worker,
    /// Authentication is `none`: nothing is checked for anyone.
    Unchecked,
}

impl Caller {
    /// The caller the authentication layer put on `req`. A request that
    /// did not pass the layer is refused, never taken as anyone: every
    /// server is built with [`AuthLayer`] (`server::serve`), so a request
    /// without a caller means a service was served without it, and failing
    /// closed keeps that bug from opening the namespace. Code that calls
    /// the RPC methods directly says who it is with [`Caller::request`].
    pub fn of<T>(req: &tonic::Request<T>) -> Result<Caller> {
        req.extensions().get::<Caller>().cloned().ok_or_else(|| {
            tracing::error!("a request reached an RPC method without passing the AuthLayer");
            MasterError::Unauthenticated(
                "this request reached the master's method without passing its authentication \
                 layer, so who sent it is unknown and it is refused (a bug in how the master \
                 serves: its gRPC services must be built with identity::AuthLayer)"
                    .into(),
            )
        })
    }

    /// `msg` as a request from this caller, as the layer would pass it on:
    /// for callers of the RPC methods that are not behind a server (tests).
    pub fn request<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.extensions_mut().insert(self.clone());
        r
    }

    pub fn unchecked() -> Caller {
        Caller {
            kind: CallerKind::Unchecked,
            name: Arc::from(""),
        }
    }

    pub fn user(name: &str) -> Caller {
        Caller {
            kind: CallerKind::User,
            name: Arc::from(name),
        }
    }
}

/// Why a call is refused before any method runs. The messages say what to
/// set; they never echo a token.
fn unauthenticated(mode: AuthMode, why: impl std::fmt::Display) -> MasterError {
    let fix = match mode {
        AuthMode::Token => {
            "this master requires a token (authentication = \"token\"): set EDDY_TOKEN, \
             [security] token or token_file, or ~/.eddy/token, with a token from \
             `eddy token create --user NAME` (run by an admin)"
        }
        _ => {
            "this master takes the caller's user name from the eddy-user header \
             (authentication = \"simple\"); Eddy's clients send the OS user"
        }
    };
    MasterError::Unauthenticated(format!("{why}; {fix}"))
}

/// The caller of a request with these headers, or why it is refused.
pub fn authenticate(
    mode: AuthMode,
    keys: &Keyring,
    headers: &http::HeaderMap,
    now_ms: u64,
) -> Result<Caller> {
    let claimed = match headers.get(USER_HEADER) {
        None => None,
        Some(v) => match v.to_str() {
            Ok(s) if valid_name(s) => Some(s),
            _ => {
                return Err(unauthenticated(
                    mode,
                    "the eddy-user header is not a valid user name",
                ));
            }
        },
    };
    if mode == AuthMode::None {
        return Ok(Caller {
            kind: CallerKind::Unchecked,
            name: Arc::from(claimed.unwrap_or("")),
        });
    }
    if let Some(v) = headers.get(AUTHORIZATION_HEADER) {
        let text = v
            .to_str()
            .ok()
            .filter(|t| t.len() <= TOKEN_MAX + BEARER.len())
            .and_then(|t| t.strip_prefix(BEARER))
            .ok_or_else(|| {
                unauthenticated(mode, "the authorization header is not `Bearer <token>`")
            })?;
        let c = Credential::verify(keys, text, now_ms)
            .map_err(|e| unauthenticated(mode, format_args!("the token was refused: {e}")))?;
        return Ok(Caller {
            kind: match c.principal {
                Principal::User => CallerKind::User,
                Principal::Worker => CallerKind::Worker,
            },
            name: Arc::from(c.name.as_str()),
        });
    }
    match (mode, claimed) {
        (AuthMode::Simple, Some(u)) => Ok(Caller::user(u)),
        (AuthMode::Simple, None) => Err(unauthenticated(mode, "no user name was sent")),
        _ => Err(unauthenticated(mode, "no token was sent")),
    }
}

/// Refuses a worker-only RPC (registration, heartbeats, block commits and
/// checks, mount secrets) from a caller that did not prove it is a worker.
/// With authentication `none` every caller is unchecked and passes.
pub fn require_worker(caller: &Caller, rpc: &'static str) -> Result<()> {
    if caller.kind != CallerKind::User {
        return Ok(());
    }
    eddy_metrics::counter!("eddy_master_worker_refused_total", "method" => rpc).increment(1);
    tracing::warn!("refused {rpc} from {:?}: not a worker", &*caller.name);
    Err(MasterError::Unauthenticated(format!(
        "{rpc} is for workers only, and this caller ({}) did not prove it is one: \
         a worker sends a worker token (set EDDY_TOKEN, or [security] token or token_file \
         in the worker's config, with a token from `eddy token create --worker NAME`), \
         or give the worker read access to the master's key file ([security] key_file) \
         so it signs its own",
        caller.name
    )))
}

impl MasterKeys {
    /// The block token for `caller` on `file_id` (`ops`, valid `ttl_ms`
    /// from `now_ms`); empty with authentication `none`, where workers
    /// require none. A caller without a name a token can carry (none was
    /// sent) gets an empty token too: workers refuse it, saying why.
    pub fn block_token(
        &self,
        mode: AuthMode,
        caller: &Caller,
        file_id: u64,
        ops: BlockOps,
        ttl_ms: u64,
        now_ms: u64,
    ) -> Vec<u8> {
        if mode == AuthMode::None {
            return Vec::new();
        }
        BlockGrant {
            file_id,
            ops,
            user: caller.name.to_string(),
            expires_ms: now_ms.saturating_add(ttl_ms),
        }
        .sign(&self.blocks_at(now_ms))
        .unwrap_or_default()
    }

    /// A worker credential signed with the master's own key: how a worker
    /// started in the same process (`eddy local`, tests, benchmarks) proves
    /// itself without a token file. Valid for `ttl_ms`.
    pub fn worker_token(&self, name: &str, ttl_ms: u64) -> Result<String> {
        Credential::sign(
            &self.credentials,
            Principal::Worker,
            name,
            unix_ms(),
            ttl_ms,
        )
        .map_err(|e| MasterError::InvalidArgument(format!("worker name {name:?}: {e}")))
    }

    /// The block keys as a worker receives them, at registration and with
    /// every heartbeat (so they roll on workers too).
    pub fn block_keys(&self, now_ms: u64) -> Vec<eddy_proto::pb::BlockKey> {
        self.blocks_at(now_ms)
            .secrets()
            .into_iter()
            .map(|(id, secret)| eddy_proto::pb::BlockKey {
                id,
                secret: secret.to_vec(),
            })
            .collect()
    }
}

/// The tower layer: authenticates every request with [`authenticate`].
#[derive(Clone)]
pub struct AuthLayer {
    pub mode: AuthMode,
    pub keys: Arc<MasterKeys>,
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = Authenticated<S>;
    fn layer(&self, inner: S) -> Authenticated<S> {
        Authenticated {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    layer: AuthLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower_service::Service<http::Request<B>> for Authenticated<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    R: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<std::result::Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let now = unix_ms();
        match authenticate(
            self.layer.mode,
            &self.layer.keys.credentials,
            req.headers(),
            now,
        ) {
            Ok(caller) => {
                req.extensions_mut().insert(caller);
                Box::pin(self.inner.call(req))
            }
            Err(e) => {
                refused(req.uri().path());
                tracing::debug!("refused {}: {e}", req.uri().path());
                let status = tonic::Status::from(e);
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

/// Counts a call refused before any method ran, by service (bounded: a
/// client sending made-up paths counts as `other`).
fn refused(path: &str) {
    let service = match path
        .strip_prefix("/eddy.v1.")
        .and_then(|p| p.split_once('/'))
    {
        Some(("FileSystemMaster", _)) => "FileSystemMaster",
        Some(("BlockMaster", _)) => "BlockMaster",
        Some(("MetaMaster", _)) => "MetaMaster",
        _ => "other",
    };
    eddy_metrics::counter!("eddy_master_unauthenticated_total", "service" => service).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn simple_mode_takes_the_claimed_user_and_a_token_wins() {
        let k = Keyring::generate(1);
        let c = authenticate(AuthMode::Simple, &k, &headers(&[("eddy-user", "bob")]), 0).unwrap();
        assert_eq!(c, Caller::user("bob"));
        let t = Credential::sign(&k, Principal::Worker, "w1", 0, 1000).unwrap();
        let h = headers(&[
            ("eddy-user", "bob"),
            ("authorization", &format!("Bearer {t}")),
        ]);
        let c = authenticate(AuthMode::Simple, &k, &h, 1).unwrap();
        assert_eq!((c.kind, &*c.name), (CallerKind::Worker, "w1"));
        let e = authenticate(AuthMode::Simple, &k, &headers(&[]), 0).unwrap_err();
        assert_eq!(e.code(), eddy_proto::EddyCode::Unauthenticated);
    }

    #[test]
    fn token_mode_believes_only_a_valid_token_and_says_what_to_set() {
        let k = Keyring::generate(1);
        for h in [
            headers(&[("eddy-user", "root")]),
            headers(&[("authorization", "Bearer eddy1.AAAA")]),
            headers(&[("authorization", "Basic x")]),
        ] {
            let e = authenticate(AuthMode::Token, &k, &h, 0).unwrap_err();
            assert_eq!(e.code(), eddy_proto::EddyCode::Unauthenticated);
            let m = e.to_string();
            assert!(m.contains("EDDY_TOKEN") && !m.contains("eddy1.AAAA"), "{m}");
        }
        let t = Credential::sign(&k, Principal::User, "alice", 0, 1000).unwrap();
        let h = headers(&[
            ("eddy-user", "root"),
            ("authorization", &format!("Bearer {t}")),
        ]);
        assert_eq!(
            authenticate(AuthMode::Token, &k, &h, 1).unwrap(),
            Caller::user("alice")
        );
        let e = authenticate(AuthMode::Token, &k, &h, 5000).unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
    }

    #[test]
    fn none_mode_checks_nothing() {
        let k = Keyring::generate(1);
        let c = authenticate(AuthMode::None, &k, &headers(&[]), 0).unwrap();
        assert_eq!(c.kind, CallerKind::Unchecked);
    }
}
