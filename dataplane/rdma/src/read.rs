//! One-sided reads: `ReadOp`, a future a `Progress` thread completes (no
//! thread per read, and a completion wakes its reader at once instead of
//! at the reader's next poll), and the blocking `Fabric::read`, which
//! drives a `ReadOp` and progress itself. Reads split at the provider's
//! maximum message size and post every piece at once; a peer no piece can
//! be posted to for `UNPOSTED_LIMIT` is `Unreachable`.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::backoff::Backoff;
use crate::domain::{Inner, State};
use crate::error::RdmaError;
use crate::fabric::{Fabric, PeerId, fabric_id};
use crate::mr::{RegisteredBuf, RemoteKey};
use crate::sys;

impl Fabric {
    /// Starts reading `buf.len()` bytes at `offset` of the peer's region
    /// `remote` into `buf`, one-sided: the returned future completes with
    /// the buffer and the result. A `Progress` thread must run on this
    /// fabric (it reads the completions that wake the future). The future
    /// has no timeout of its own: dropping it abandons the read, and a
    /// buffer the provider may still write into then stays with the
    /// fabric until the late completions arrive (as a timed-out `read`).
    pub fn read_op(
        &self,
        buf: RegisteredBuf,
        peer: PeerId,
        remote: &RemoteKey,
        offset: u64,
    ) -> ReadOp {
        let early = self
            .check_read(&buf, peer, remote, offset)
            .and_then(|()| self.check_retired(&buf))
            .err();
        ReadOp {
            inner: self.inner.clone(),
            buf: Some(buf),
            peer,
            base: remote.addr_or_offset.saturating_add(offset),
            key: remote.key,
            next: 0,
            outstanding: HashSet::new(),
            failed: early,
            unposted_since: None,
        }
    }

    /// Reads `buf.len()` bytes at `offset` of the peer's region `remote`
    /// into `buf`, one-sided, in reads of at most the maximum message size.
    /// The buffer comes back with the result, unless the read timed out
    /// with operations still in the provider's hands: then the fabric
    /// keeps it (`None`) until their late completions arrive (a later
    /// `poll` or read frees it) or the fabric closes.
    pub fn read(
        &self,
        buf: RegisteredBuf,
        peer: PeerId,
        remote: &RemoteKey,
        offset: u64,
    ) -> (Option<RegisteredBuf>, Result<(), RdmaError>) {
        let timeout = self.read_timeout();
        let deadline = Instant::now().checked_add(timeout);
        // One post-and-collect loop for both shapes: this drives a
        // `ReadOp` itself, polling the queue between its steps (a Progress
        // thread, if one runs, only makes completions land sooner).
        let mut op = self.read_op(buf, peer, remote, offset);
        let mut cx = Context::from_waker(Waker::noop());
        let mut backoff = Backoff::new(Duration::from_micros(500));
        loop {
            if let Poll::Ready(r) = Pin::new(&mut op).poll(&mut cx) {
                return r;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
                return (op.abandon(), Err(RdmaError::Timeout { ms }));
            }
            let seen = {
                let mut st = self.inner.lock();
                let seen = self.inner.poll(&mut st);
                // As the progress thread does after each poll: tasks whose
                // posts were refused try again.
                for w in std::mem::take(&mut st.retry) {
                    w.wake();
                }
                seen
            };
            if seen > 0 {
                backoff.reset();
            } else {
                std::thread::sleep(backoff.next_pause());
            }
        }
    }

    fn check_read(
        &self,
        buf: &RegisteredBuf,
        peer: PeerId,
        remote: &RemoteKey,
        offset: u64,
    ) -> Result<(), RdmaError> {
        if !buf.made_by(&self.inner) {
            return Err(RdmaError::OtherFabric("the buffer"));
        }
        if peer.fabric != fabric_id(&self.inner) {
            return Err(RdmaError::OtherFabric("the peer"));
        }
        let len = buf.len() as u64;
        let out_of_range = RdmaError::OutOfRange {
            offset,
            len,
            region: remote.len,
        };
        match offset.checked_add(len) {
            Some(end) if end <= remote.len => {}
            _ => return Err(out_of_range),
        }
        remote
            .addr_or_offset
            .checked_add(remote.len)
            .map(|_| ())
            .ok_or(out_of_range)
    }

    /// Refuses a read whose buffer could take the retired bytes past the
    /// cap, after a poll that frees any buffer whose late completions
    /// have arrived.
    fn check_retired(&self, buf: &RegisteredBuf) -> Result<(), RdmaError> {
        let c = &self.inner.counters;
        if c.retired_bytes.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        self.inner.poll(&mut self.inner.lock());
        let retired = c.retired_bytes.load(Ordering::Relaxed);
        let cap = self.retired_cap();
        if retired == 0 || retired.saturating_add(buf.capacity() as u64) <= cap {
            return Ok(());
        }
        c.reads_refused.fetch_add(1, Ordering::Relaxed);
        Err(RdmaError::RetiredFull {
            retired,
            buffers: c.retired_buffers.load(Ordering::Relaxed),
            cap,
        })
    }
}

fn post(
    inner: &Inner,
    st: &mut MutexGuard<'_, State>,
    buf: &RegisteredBuf,
    (at, n): (usize, usize),
    peer: PeerId,
    (base, key): (u64, u64),
) -> Result<Option<u64>, RdmaError> {
    let id = st.next_op;
    let (ptr, desc) = buf.raw_parts(at);
    // SAFETY: `ptr..ptr + n` lies inside the buffer (at + n <= len,
    // checked by the caller's loop), which `read` owns and does not
    // hand back before every posted operation has completed or the
    // endpoint closed (retired); `desc` is the buffer's registration
    // descriptor; the context is an integer tag the provider hands back
    // and never dereferences (no FI_CONTEXT mode was accepted).
    let rc = unsafe {
        sys::eddy_fab_read(
            inner.raw(st),
            ptr,
            n,
            desc,
            peer.addr,
            base + at as u64,
            key,
            std::ptr::without_provenance_mut(id as usize),
        )
    };
    if rc as i64 == -sys::FI_EAGAIN {
        return Ok(None);
    }
    if rc != 0 {
        return Err(RdmaError::Read {
            code: rc as i64,
            text: format!("posting fi_read: {}", sys::strerror(rc as i64)),
        });
    }
    st.next_op += 1;
    st.pending.insert(id);
    inner.counters.reads_posted.fetch_add(1, Ordering::Relaxed);
    Ok(Some(id))
}

/// A one-sided read in flight (`Fabric::read_op`).
pub struct ReadOp {
    inner: Arc<Inner>,
    /// `Some` until the read ends (handed back, or retired on drop).
    buf: Option<RegisteredBuf>,
    peer: PeerId,
    /// Where the buffer's first byte comes from, and the region's key.
    base: u64,
    key: u64,
    /// Bytes of the buffer posted so far.
    next: usize,
    outstanding: HashSet<u64>,
    failed: Option<RdmaError>,
    /// When posting was first refused with nothing of ours in flight.
    unposted_since: Option<Instant>,
}

/// How long a `ReadOp` that cannot post its first piece keeps trying.
const UNPOSTED_LIMIT: Duration = Duration::from_secs(2);

impl Future for ReadOp {
    type Output = (Option<RegisteredBuf>, Result<(), RdmaError>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let Some(buf) = this.buf.as_ref() else {
            let text = "the read was polled after it ended".to_string();
            return Poll::Ready((None, Err(RdmaError::Read { code: 0, text })));
        };
        let (len, chunk) = (buf.len(), this.inner.max_read);
        let mut st = this.inner.lock();
        let posted = this.next;
        let mut progressed = false;
        while this.next < len && this.failed.is_none() {
            let n = chunk.min(len - this.next);
            let at = (this.next, n);
            match post(
                &this.inner,
                &mut st,
                buf,
                at,
                this.peer,
                (this.base, this.key),
            ) {
                Ok(Some(id)) => {
                    this.outstanding.insert(id);
                    this.next += n;
                }
                // The queue is full, or the connection to the peer is
                // being made (rxm): both need progress, driven here (as
                // `read` does), then the post is tried once more.
                Ok(None) if !progressed => {
                    progressed = true;
                    this.inner.poll(&mut st);
                }
                Ok(None) => break,
                Err(e) => this.failed = Some(e),
            }
        }
        let failed = &mut this.failed;
        this.outstanding.retain(|id| match st.done.remove(id) {
            None => true,
            Some(Ok(())) => false,
            Some(Err(e)) => {
                failed.get_or_insert(e);
                false
            }
        });
        if this.outstanding.is_empty() && (this.next >= len || this.failed.is_some()) {
            drop(st);
            let r = this.failed.take().map_or(Ok(()), Err);
            return Poll::Ready((this.buf.take(), r));
        }
        if this.outstanding.is_empty() {
            // A peer whose connection cannot be made (gone, restarted
            // elsewhere) leaves every post refused: give up in a bounded
            // time, so the caller falls back instead of waiting out its
            // timeout.
            let since = *this.unposted_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= UNPOSTED_LIMIT && this.next == 0 {
                drop(st);
                let ms = UNPOSTED_LIMIT.as_millis() as u64;
                return Poll::Ready((this.buf.take(), Err(RdmaError::Unreachable { ms })));
            }
            // Nothing of ours is in flight to wake us: the progress thread
            // wakes us after its next poll (which drives the connection or
            // drains the queue), polling often meanwhile.
            st.retry.push(cx.waker().clone());
            drop(st);
            this.inner.kick();
            return Poll::Pending;
        }
        // Registered under the lock the completions are read under, so
        // none can slip between the check above and the wait.
        for id in &this.outstanding {
            st.wakers.insert(*id, cx.waker().clone());
        }
        drop(st);
        if this.next > posted {
            this.inner.kick();
        }
        Poll::Pending
    }
}

impl ReadOp {
    /// Ends the read where it stands: the buffer comes back if nothing of
    /// it is in the provider's hands, else the fabric keeps it until the
    /// late completions arrive (`None`).
    fn abandon(mut self) -> Option<RegisteredBuf> {
        self.release()
    }

    fn release(&mut self) -> Option<RegisteredBuf> {
        let buf = self.buf.take()?;
        let mut st = self.inner.lock();
        self.outstanding.retain(|id| {
            st.wakers.remove(id);
            st.done.remove(id).is_none()
        });
        if self.outstanding.is_empty() {
            return Some(buf);
        }
        st.retire(buf.retire(), &self.outstanding, &self.inner.counters);
        None
    }
}

impl Drop for ReadOp {
    fn drop(&mut self) {
        // Nothing of it in the provider's hands: freed as usual.
        drop(self.release());
    }
}
