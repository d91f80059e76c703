//! The io_uring engine: one ring on a dedicated thread, fed by a channel.
//! Each operation owns its buffer and file until its completion comes back,
//! so the kernel never writes into memory Rust could free or touch.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::mpsc;

use io_uring::{IoUring, opcode, types};
use tokio::sync::oneshot;

use super::buf::FixedPool;
use super::{AlignedBuf, BufResult};

#[derive(Clone, Copy)]
pub(super) enum Kind {
    Read,
    Write,
}

pub(super) struct Op {
    pub kind: Kind,
    pub file: Arc<File>,
    pub offset: u64,
    pub buf: AlignedBuf,
    /// Bytes to read (reads) or the buffer's length (writes).
    pub len: usize,
    pub done: oneshot::Sender<BufResult<usize>>,
}

pub(super) struct Uring {
    tx: mpsc::Sender<Op>,
    /// Registered buffers, when registration worked.
    pub pool: Option<Arc<FixedPool>>,
    /// Why there are no registered buffers (for the log and reports).
    pub pool_note: String,
}

impl Uring {
    /// A ring of `depth` entries on its own thread, or the reason it cannot
    /// work here (no kernel support, io_uring_disabled, seccomp). Registers
    /// up to `fixed_bytes` of buffers in `slot`-byte slots, held within the
    /// locked-memory limit; without them, unregistered buffers are used.
    pub fn start(
        depth: u32,
        fixed_bytes: u64,
        slot: usize,
        sqpoll_idle_ms: u32,
    ) -> std::io::Result<Self> {
        let mut ring = if sqpoll_idle_ms > 0 {
            IoUring::builder()
                .setup_sqpoll(sqpoll_idle_ms)
                .build(depth)?
        } else {
            IoUring::new(depth)?
        };
        // Setup can succeed where submission is filtered: prove a NOP runs.
        let nop = opcode::Nop::new().build().user_data(u64::MAX);
        // SAFETY: a NOP references no memory.
        unsafe { ring.submission().push(&nop) }
            .map_err(|_| std::io::Error::other("submission queue full"))?;
        ring.submit_and_wait(1)?;
        let cqe = ring
            .completion()
            .next()
            .ok_or_else(|| std::io::Error::other("no completion for a NOP"))?;
        if cqe.result() < 0 {
            return Err(std::io::Error::from_raw_os_error(-cqe.result()));
        }
        let (pool, pool_note) = register(&ring, fixed_bytes, slot);
        let (tx, rx) = mpsc::channel::<Op>();
        let keep = pool.clone();
        std::thread::Builder::new()
            .name("eddy-uring".into())
            .spawn(move || {
                run(ring, rx, depth as usize);
                // The ring (and its registration) is gone: the pool may go.
                drop(keep);
            })?;
        let pool_note = if sqpoll_idle_ms > 0 {
            format!("{pool_note}; SQPOLL")
        } else {
            pool_note
        };
        Ok(Self {
            tx,
            pool,
            pool_note,
        })
    }

    pub fn submit(&self, op: Op) {
        if let Err(mpsc::SendError(op)) = self.tx.send(op) {
            let _ = op.done.send((
                Err(std::io::Error::other("the io_uring thread stopped")),
                op.buf,
            ));
        }
    }
}

/// Registers a buffer pool sized within RLIMIT_MEMLOCK (raised to the hard
/// limit where allowed). Registered memory is locked, and the kernel counts
/// it against that limit; `ENOMEM` or `EPERM` leaves the ring without.
fn register(ring: &IoUring, want: u64, slot: usize) -> (Option<Arc<FixedPool>>, String) {
    if want < slot as u64 {
        return (None, "registered buffers off".into());
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } == 0
        && lim.rlim_cur < lim.rlim_max
    {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct; failure leaves the limit as is.
        if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) } == 0 {
            lim = raised;
        }
    }
    // Half the limit: other locked memory (the ring itself on older
    // kernels, other libraries) needs room too.
    let budget = if lim.rlim_cur == libc::RLIM_INFINITY {
        want
    } else {
        want.min(lim.rlim_cur / 2)
    };
    let count = (budget / slot as u64).min(u16::MAX as u64) as usize;
    if count == 0 {
        return (
            None,
            format!(
                "no registered buffers: the locked-memory limit is {} bytes",
                lim.rlim_cur
            ),
        );
    }
    let pool = FixedPool::new(slot, count);
    let iov = pool.iovecs();
    // SAFETY: the iovecs describe the pool's allocation, which the ring
    // thread keeps alive (an Arc) until after the ring is dropped.
    match unsafe { ring.submitter().register_buffers(&iov) } {
        Ok(()) => {
            let note = format!("{count} registered buffers of {slot} bytes");
            (Some(pool), note)
        }
        Err(e) => {
            let note = format!("registered buffers unavailable ({e}); using unregistered buffers");
            tracing::info!("{note}");
            (None, note)
        }
    }
}

/// Rounds the ring thread polls (channel and completions, yielding the CPU
/// between rounds) before it sleeps in the kernel: about a millisecond
/// after the last activity. Waking a sleeping thread on another vCPU costs
/// tens of microseconds here, more than a 4 KiB read, so staying awake
/// under load keeps the queue full (random 4 KiB reads measured ~78K IOPS
/// with 64 rounds, ~100K with 1024). Bounded, so an idle ring sleeps.
const SPIN_ROUNDS: u32 = 1024;

fn run(mut ring: IoUring, rx: mpsc::Receiver<Op>, depth: usize) {
    let mut inflight: HashMap<u64, Op> = HashMap::new();
    let mut next: u64 = 0;
    let mut open = true;
    let mut idle = 0u32;
    while open || !inflight.is_empty() {
        // Block for work only when nothing is in flight and spinning found none.
        if inflight.is_empty() && idle >= SPIN_ROUNDS {
            match rx.recv() {
                Ok(op) => push(&mut ring, &mut inflight, &mut next, op),
                Err(_) => break,
            }
            idle = 0;
        }
        let mut progressed = false;
        while inflight.len() < depth {
            match rx.try_recv() {
                Ok(op) => {
                    push(&mut ring, &mut inflight, &mut next, op);
                    progressed = true;
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        // Submit what is queued; wait in the kernel only after spinning.
        let wait = usize::from(!progressed && idle >= SPIN_ROUNDS && !inflight.is_empty());
        if (progressed || wait > 0)
            && let Err(e) = ring.submit_and_wait(wait)
        {
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            // The ring is unusable: fail everything in flight.
            for (_, op) in inflight.drain() {
                let _ = op
                    .done
                    .send((Err(std::io::Error::other(format!("io_uring: {e}"))), op.buf));
            }
            return;
        }
        for cqe in ring.completion() {
            progressed = true;
            if let Some(mut op) = inflight.remove(&cqe.user_data()) {
                let r = cqe.result();
                let result = if r < 0 {
                    Err(std::io::Error::from_raw_os_error(-r))
                } else {
                    if matches!(op.kind, Kind::Read) {
                        op.buf.set_len(r as usize);
                    }
                    Ok(r as usize)
                };
                let _ = op.done.send((result, op.buf));
            }
        }
        if progressed {
            idle = 0;
        } else {
            idle += 1;
            std::thread::yield_now();
        }
    }
}

fn push(ring: &mut IoUring, inflight: &mut HashMap<u64, Op>, next: &mut u64, mut op: Op) {
    let id = *next;
    *next += 1;
    let fd = types::Fd(op.file.as_raw_fd());
    let ptr = op.buf.as_mut_ptr();
    let len = op.len.min(op.buf.capacity()) as u32;
    let entry = match (op.kind, op.buf.fixed_index()) {
        (Kind::Read, None) => opcode::Read::new(fd, ptr, len).offset(op.offset).build(),
        (Kind::Write, None) => opcode::Write::new(fd, ptr, len).offset(op.offset).build(),
        (Kind::Read, Some(i)) => opcode::ReadFixed::new(fd, ptr, len, i)
            .offset(op.offset)
            .build(),
        (Kind::Write, Some(i)) => opcode::WriteFixed::new(fd, ptr, len, i)
            .offset(op.offset)
            .build(),
    }
    .user_data(id);
    // SAFETY: the buffer (`len` bytes at `ptr`) and the file stay owned by
    // `op`, which stays in `inflight` until this entry's completion is
    // reaped, so both outlive the kernel's use of them. A fixed buffer's
    // index names the registered slot that `ptr` points into.
    let pushed = unsafe { ring.submission().push(&entry) }.is_ok();
    if pushed {
        inflight.insert(id, op);
    } else {
        let _ = op.done.send((
            Err(std::io::Error::other("io_uring submission queue full")),
            op.buf,
        ));
    }
}
