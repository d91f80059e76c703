//! [`Coalesce`]: one `send` per request instead of one per HTTP/2 frame.
//!
//! hyper's HTTP/2 client writes a unary call's HEADERS frame as soon as it
//! is queued and its DATA frame one task switch later (the body is handed
//! to the stream only once the connection grants it send capacity). On
//! loopback each `send` also delivers the segment and wakes the master, so
//! a small call cost two sends, two wake-ups and two reads on the far side.
//! This buffers what is written and, at a flush, lets the tasks already
//! woken run once before it sends: the DATA frame joins the HEADERS and the
//! call leaves in one segment. The delay is one pass of the scheduler, not
//! a timer: nothing waits for more bytes that may never come.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes held at most before they are sent without waiting for a flush;
/// a write at least this large goes straight through.
const HOLD: usize = 64 * 1024;

/// A write-coalescing wrapper around a byte stream (reads pass through).
pub(crate) struct Coalesce<IO> {
    io: IO,
    buf: Vec<u8>,
    /// Bytes of `buf` already sent.
    sent: usize,
    /// The current flush has yielded once already.
    yielded: bool,
}

impl<IO> Coalesce<IO> {
    pub(crate) fn new(io: IO) -> Self {
        Self {
            io,
            buf: Vec::new(),
            sent: 0,
            yielded: false,
        }
    }
}

impl<IO: AsyncWrite + Unpin> Coalesce<IO> {
    /// Sends everything held.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.buf.clear();
        self.sent = 0;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Coalesce<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Coalesce<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        if me.buf.len() + data.len() > HOLD {
            ready!(me.poll_drain(cx))?;
        }
        if data.len() >= HOLD {
            return Pin::new(&mut me.io).poll_write(cx, data);
        }
        me.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.buf.len() > me.sent && !me.yielded {
            // Let the tasks woken meanwhile (the request body's) add their
            // frames first; this task runs again after them.
            me.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        ready!(me.poll_drain(cx))?;
        me.yielded = false;
        Pin::new(&mut me.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        ready!(me.poll_drain(cx))?;
        Pin::new(&mut me.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Small writes reach the peer at the flush, in order and whole; a
    /// large one passes through after what was held.
    #[tokio::test]
    async fn bytes_arrive_whole_and_in_order() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut w = Coalesce::new(a);
        w.write_all(b"head").await.unwrap();
        w.write_all(b"-body").await.unwrap();
        let big = vec![7u8; HOLD + 1];
        w.write_all(&big).await.unwrap();
        w.write_all(b"tail").await.unwrap();
        w.flush().await.unwrap();
        let mut got = vec![0u8; 9 + big.len() + 4];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..9], b"head-body");
        assert_eq!(&got[9..9 + big.len()], &big[..]);
        assert_eq!(&got[9 + big.len()..], b"tail");
    }

    /// Nothing held is sent before the flush, and the flush sends it
    /// after one yield (not a timer).
    #[tokio::test]
    async fn a_flush_sends_after_one_yield() {
        let (a, mut b) = tokio::io::duplex(1 << 16);
        let mut w = Coalesce::new(a);
        w.write_all(b"abc").await.unwrap();
        let mut one = [0u8; 3];
        let mut rb = ReadBuf::new(&mut one);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let early = Pin::new(&mut b).poll_read(&mut cx, &mut rb);
        assert!(early.is_pending(), "held bytes were sent before a flush");
        w.flush().await.unwrap();
        b.read_exact(&mut one).await.unwrap();
        assert_eq!(&one, b"abc");
        w.shutdown().await.unwrap();
        assert_eq!(b.read(&mut one).await.unwrap(), 0);
    }
}
