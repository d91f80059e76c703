//! Idle data connections to workers, reused across requests.
//!
//! A connection goes back to the pool only after a request on it finished
//! cleanly (the stream is at a frame boundary); one that saw any error is
//! dropped, so a half-read stream is never reused.

use std::collections::HashMap;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::TcpStream;

use crate::{ClientError, EddyCode, Result};

/// Idle connections kept per worker.
const MAX_IDLE: usize = 16;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct Pool {
    idle: Mutex<HashMap<String, Vec<TcpStream>>>,
}

impl Pool {
    pub async fn get(&self, addr: &str) -> Result<TcpStream> {
        while let Some(c) = self.idle.lock().get_mut(addr).and_then(|v| v.pop()) {
            // Workers close connections idle past their idle timeout: one
            // that shows an end of stream (or stray bytes) is dropped here
            // rather than failing the request sent on it.
            let mut probe = [0u8; 1];
            if matches!(c.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            {
                return Ok(c);
            }
        }
        let unreachable = |message: String| ClientError::Worker {
            addr: addr.to_string(),
            code: EddyCode::Unavailable,
            message,
        };
        let sock = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| unreachable(format!("no answer within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| unreachable(format!("cannot connect: {e}")))?;
        let _ = sock.set_nodelay(true);
        Ok(sock)
    }

    pub fn put(&self, addr: &str, c: TcpStream) {
        let mut idle = self.idle.lock();
        let v = idle.entry(addr.to_string()).or_default();
        if v.len() < MAX_IDLE {
            v.push(c);
        }
    }

    /// Forgets idle connections to `addr` (after it failed).
    pub fn forget(&self, addr: &str) {
        self.idle.lock().remove(addr);
    }
}
