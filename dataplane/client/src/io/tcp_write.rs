//! A write session over TCP: one pooled connection held from `WriteOpen`
//! to `WriteOk`. It goes back to the pool only after the worker answered
//! the close (or refused the open: no session then); a session that
//! failed, was cancelled or was dropped closes its connection (the worker
//! drops the session with it).

use std::time::Duration;

use eddy_wire::{Kind, WireError, WriteOk, WriteOpen, write_frame};
use tokio::io::AsyncWriteExt;

use super::conn::{exchange, wire_err, worker_err};
use crate::Result;
use crate::deadline::within;
use crate::pool::PooledConn;
use crate::shared::Shared;
use crate::stream::DataStream;

/// Bytes buffered before a `Data` frame goes out.
pub(crate) const WRITE_CHUNK: usize = 1 << 20;

pub(crate) struct TcpWrite {
    conn: PooledConn,
    buf: Vec<u8>,
    /// Each exchange with the worker ends within this.
    timeout: Duration,
}

impl TcpWrite {
    /// Opens the session on the worker at `addr`. A refused open leaves
    /// the connection at a frame boundary, back in the pool (the worker
    /// holds no session on it); an accepted one holds it until close.
    pub async fn open(shared: &Shared, addr: &str, open: &WriteOpen) -> Result<Self> {
        let (conn, _) = exchange(shared, addr, Kind::WriteOpen, &open.encode(), Kind::Ok).await?;
        Ok(Self {
            conn,
            buf: Vec::new(),
            timeout: shared.opts.timeout,
        })
    }

    pub fn addr(&self) -> &str {
        self.conn.addr()
    }

    /// Sends `data`: large writes go out straight from the caller's buffer,
    /// small ones are gathered into [`WRITE_CHUNK`]s.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), WireError> {
        let c = self.conn.stream();
        if self.buf.is_empty() {
            while data.len() >= WRITE_CHUNK {
                let n = data.len().min(eddy_wire::MAX_DATA_BODY as usize);
                send_data(c, &data[..n], self.timeout).await?;
                data = &data[n..];
            }
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= WRITE_CHUNK {
            send_data(c, &self.buf, self.timeout).await?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Sends what is buffered and closes the session (`total` bytes in
    /// all): the worker commits the blocks and answers `WriteOk`.
    pub async fn close(mut self, total: u64) -> Result<WriteOk> {
        let addr = self.conn.addr().to_string();
        let (c, buf, limit) = (self.conn.stream(), &self.buf, self.timeout);
        let r = within(limit, async {
            if !buf.is_empty() {
                send_data(c, buf, limit).await?;
            }
            write_frame(c, Kind::WriteClose, &eddy_wire::u64_body(total)).await?;
            eddy_wire::expect(c, Kind::WriteOk).await
        })
        .await
        .map_err(|e| wire_err(&addr, e))?;
        let ok = r
            .map_err(|e| worker_err(&addr, e))
            .and_then(|body| WriteOk::decode(&body).map_err(|e| wire_err(&addr, e)))?;
        // Answered: the stream is at a frame boundary and serves the next
        // request when `self` drops.
        self.conn.finished();
        Ok(ok)
    }

    /// Tells the worker to drop the session; the connection is closed.
    pub async fn cancel(mut self) {
        let _ = write_frame(self.conn.stream(), Kind::WriteCancel, &[]).await;
    }
}

/// One `Data` frame (at most `MAX_DATA_BODY` bytes), sent within `limit`:
/// a worker that stops reading fails the write instead of stalling it.
async fn send_data(c: &mut DataStream, data: &[u8], limit: Duration) -> Result<(), WireError> {
    let h = eddy_wire::Header {
        kind: Kind::Data,
        body_len: data.len() as u32,
    };
    within(limit, async {
        c.write_all(&h.encode()).await?;
        c.write_all(data).await?;
        Ok(())
    })
    .await
}
