//! Client-wide options (what every reader, writer and master call obeys).

use std::time::Duration;

pub use eddy_proto::tls::ClientTls;

/// Client-wide options.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Read blocks cached by a worker on this host through shared memory
    /// (mapped, no copy through a socket). Falls back to TCP, logged once,
    /// when there is no such worker or its socket cannot be reached.
    pub short_circuit: bool,
    /// The longest one exchange with the master or a worker may wait for its
    /// answer, connecting included (a block read or write on a worker, one
    /// RPC). Past it the call fails with `DEADLINE_EXCEEDED`; reads try
    /// another worker first.
    pub timeout: Duration,
    /// How long a complete file's metadata (status, block list, locations)
    /// may be reused by `open` without asking the master again: the
    /// staleness bound for changes made by *other* clients (a delete,
    /// rename or rewrite there may go unseen here for up to this long, also
    /// while no master is running). This client's own create, close,
    /// rename, delete, free and unmount drop what it cached at once, so it
    /// always reads its own writes. Zero: nothing is cached, every open
    /// asks the master.
    pub metadata_ttl: Duration,
    /// Who this client is to the master (`Credentials::from_config` reads
    /// `[security]` and the environment); default: the OS user, no token.
    pub credentials: crate::Credentials,
    /// Bits cleared from the modes of files (0666) and directories (0777)
    /// this client creates (`[security] umask`; default 022).
    pub umask: eddy_proto::auth::Umask,
    /// TLS to the master and to workers' data ports: the CA trusted and
    /// the client certificate presented (mutual TLS), loaded once
    /// ([`ClientTls::from_security`] reads `[security] tls_ca`, `tls_cert`,
    /// `tls_key`). `None`: plaintext, and an `https://` master address is
    /// refused. Short-circuit reads (Unix socket, same host) never use it.
    pub tls: Option<ClientTls>,
    /// Which transports reads may use (`[client] transport`; the
    /// `EDDY_TRANSPORT` environment variable overrides it): `Auto`
    /// (short-circuit, then RDMA where a worker offers it, then TCP),
    /// `Rdma` (RDMA where offered, else TCP; no short-circuit) or `Tcp`.
    pub transport: crate::TransportMode,
}

/// The default [`ClientOptions::metadata_ttl`].
pub const DEFAULT_METADATA_TTL: Duration = Duration::from_secs(1);

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            short_circuit: true,
            timeout: crate::transport::DEFAULT_TIMEOUT,
            metadata_ttl: DEFAULT_METADATA_TTL,
            credentials: crate::Credentials::current_user(),
            umask: Default::default(),
            tls: None,
            transport: Default::default(),
        }
    }
}
