//! Idle data connections to workers, reused across requests.
//!
//! A connection is checked out as a [`PooledConn`], which goes back to the
//! pool when it is dropped — but only if the last exchange on it finished
//! cleanly (the stream is at a frame boundary). Taking the stream for an
//! exchange ([`PooledConn::stream`]) marks it unfinished until the exchange
//! says it ended ([`PooledConn::finished`]), so a path that fails half-way
//! (an error, a time-out, a dropped future) drops the connection instead:
//! a half-read stream is never reused, and no path has to remember to
//! return a good one. New connections come from [`dial_data`] (TLS when
//! the client has it), so a pooled one has done its handshake already.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::options::ClientTls;
use crate::stream::{DataStream, dial_data};
use crate::{ClientError, EddyCode, Result};

/// Idle connections kept per worker.
const MAX_IDLE: usize = 16;

type Idle = Mutex<HashMap<String, Vec<DataStream>>>;

/// Cheap to clone; clones share the idle connections.
#[derive(Clone)]
pub(crate) struct Pool {
    idle: Arc<Idle>,
    /// The user every new connection's handshake names.
    user: Arc<str>,
    /// The handshake's deadline.
    timeout: Duration,
    /// How new connections are dialled (`ClientOptions::tls`).
    tls: Option<ClientTls>,
}

/// A connection to one worker, checked out of a [`Pool`]. Dropped, it goes
/// back to the pool if its last exchange finished; otherwise it is closed.
pub(crate) struct PooledConn {
    sock: Option<DataStream>,
    addr: String,
    idle: Arc<Idle>,
    /// At a frame boundary: nothing of an exchange is left on the stream.
    clean: bool,
}

impl PooledConn {
    /// The stream, for an exchange: until [`PooledConn::finished`] is
    /// called, the connection is not returned to the pool.
    pub fn stream(&mut self) -> &mut DataStream {
        self.clean = false;
        self.sock.as_mut().expect("present until dropped")
    }

    /// The exchange ended at a frame boundary (with an answer, or with the
    /// worker's `Error` frame): the connection may serve the next request.
    pub fn finished(&mut self) {
        self.clean = true;
    }

    /// The worker this connection goes to.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

impl Drop for PooledConn {
    fn drop(&mut self) {
        let Some(c) = self.sock.take() else {
            return;
        };
        if !self.clean {
            return; // closed here: the stream may be mid-frame
        }
        let mut idle = self.idle.lock();
        match idle.get_mut(&self.addr) {
            Some(v) if v.len() < MAX_IDLE => v.push(c),
            Some(_) => {}
            None => {
                idle.insert(std::mem::take(&mut self.addr), vec![c]);
            }
        }
    }
}

impl Default for Pool {
    fn default() -> Self {
        Self::new("", crate::transport::DEFAULT_TIMEOUT, None)
    }
}

impl Pool {
    pub fn new(user: &str, timeout: Duration, tls: Option<ClientTls>) -> Self {
        Self {
            idle: Default::default(),
            user: Arc::from(user),
            timeout,
            tls,
        }
    }

    /// An idle connection to `addr`, or a new one (past the handshake).
    pub async fn get(&self, addr: &str) -> Result<PooledConn> {
        let conn = |sock| PooledConn {
            sock: Some(sock),
            addr: addr.to_string(),
            idle: self.idle.clone(),
            clean: true,
        };
        while let Some(c) = self.idle.lock().get_mut(addr).and_then(|v| v.pop()) {
            // Workers close connections idle past their idle timeout: one
            // that shows an end of stream (or stray bytes) is dropped here
            // rather than failing the request sent on it.
            if crate::stream::idle_and_open(&c) {
                return Ok(conn(c));
            }
        }
        let mut sock = dial_data(addr, self.tls.as_ref()).await?;
        // The handshake, right after connecting (and the TLS handshake,
        // when there is one).
        let hello = crate::deadline::within(self.timeout, eddy_wire::hello(&mut sock, &self.user));
        match hello.await {
            Ok(Ok(())) => Ok(conn(sock)),
            Ok(Err(refused)) => Err(ClientError::Worker {
                addr: addr.to_string(),
                code: refused.code,
                message: refused.message,
            }),
            Err(e) => Err(ClientError::Worker {
                addr: addr.to_string(),
                code: if crate::deadline::timed_out(&e) {
                    EddyCode::DeadlineExceeded
                } else {
                    EddyCode::Unavailable
                },
                message: format!("handshake: {e}"),
            }),
        }
    }

    /// Forgets idle connections to `addr` (after it failed).
    pub fn forget(&self, addr: &str) {
        self.idle.lock().remove(addr);
    }

    /// Idle connections kept for `addr` (for tests).
    #[cfg(test)]
    pub fn idle_count(&self, addr: &str) -> usize {
        self.idle.lock().get(addr).map_or(0, Vec::len)
    }
}
