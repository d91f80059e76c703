//! Disk-tier I/O engines behind one interface: io_uring on a dedicated ring
//! thread, or a thread-pool `pread`/`pwrite` fallback where io_uring does
//! not work (old kernel, `io_uring_disabled`, seccomp). Buffers are owned
//! and travel with the operation (`BufResult`, tokio-uring's shape).

mod buf;
mod uring;

use std::fs::File;
use std::sync::Arc;

pub use buf::{ALIGN, AlignedBuf, FixedPool};
use tokio::sync::oneshot;

/// A result with the buffer handed back.
pub type BufResult<T> = (std::io::Result<T>, AlignedBuf);

/// Bytes per disk I/O operation for block copies and streaming reads, and
/// the size of a registered buffer.
pub const IO_CHUNK: usize = 1 << 20;

/// How an io_uring ring is set up.
#[derive(Debug, Clone)]
pub struct UringOptions {
    /// Submission queue entries (operations in flight).
    pub depth: u32,
    /// Bytes of registered buffers wanted (held within RLIMIT_MEMLOCK).
    pub fixed_bytes: u64,
    /// 0: no SQPOLL (the default: a kernel polling thread costs a whole
    /// core). Otherwise the kernel thread's idle time before it sleeps.
    pub sqpoll_idle_ms: u32,
}

impl UringOptions {
    /// `depth` entries and up to `fixed_bytes` of registered buffers, no SQPOLL.
    pub fn new(depth: u32, fixed_bytes: u64) -> Self {
        Self {
            depth,
            fixed_bytes,
            sqpoll_idle_ms: 0,
        }
    }
}

pub struct Engine {
    uring: Option<uring::Uring>,
    /// Why the pread engine is in use, when io_uring was wanted.
    fallback: Option<String>,
    /// Plain [`IO_CHUNK`] buffers given back, reused before allocating: a
    /// fresh allocation of that size is a fresh mapping, and faulting its
    /// pages in costs more than a 4 KiB read.
    spare: parking_lot::Mutex<Vec<AlignedBuf>>,
}

/// Most plain buffers an engine keeps for reuse (16 MiB).
const SPARE_BUFFERS: usize = 16;

impl Engine {
    /// io_uring with a ring of `depth` entries when it works here, else the
    /// `pread` engine (the reason is logged once). Up to `fixed_bytes` of
    /// registered buffers.
    pub fn detect(depth: u32, fixed_bytes: u64) -> Self {
        Self::detect_with(&UringOptions::new(depth, fixed_bytes))
    }

    /// [`Engine::detect`] with every io_uring option.
    pub fn detect_with(o: &UringOptions) -> Self {
        match Self::uring_with(o) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("io_uring unavailable ({e}); disk tiers use the pread engine");
                Self {
                    uring: None,
                    fallback: Some(format!("io_uring unavailable: {e}")),
                    spare: Default::default(),
                }
            }
        }
    }

    /// io_uring or the reason it cannot run here.
    pub fn uring(depth: u32, fixed_bytes: u64) -> std::io::Result<Self> {
        Self::uring_with(&UringOptions::new(depth, fixed_bytes))
    }

    /// [`Engine::uring`] with every io_uring option.
    pub fn uring_with(o: &UringOptions) -> std::io::Result<Self> {
        // Test-only: stands in for a host where io_uring cannot run
        // (io_uring_disabled, seccomp), which tests cannot arrange.
        if std::env::var("EDDY_FAILPOINT").as_deref() == Ok("io-uring-unavailable") {
            return Err(std::io::Error::other("disabled by EDDY_FAILPOINT"));
        }
        let u = uring::Uring::start(o.depth.max(1), o.fixed_bytes, IO_CHUNK, o.sqpoll_idle_ms)?;
        Ok(Self {
            uring: Some(u),
            fallback: None,
            spare: Default::default(),
        })
    }

    /// The thread-pool `pread`/`pwrite` engine.
    pub fn pread() -> Self {
        Self {
            uring: None,
            fallback: None,
            spare: Default::default(),
        }
    }

    /// The engine and its setup in a few words, for logs and `eddy report`.
    pub fn describe(&self) -> String {
        match (&self.uring, &self.fallback) {
            (Some(u), _) => format!("io_uring ({})", u.pool_note),
            (None, Some(why)) => format!("pread ({why})"),
            (None, None) => "pread".into(),
        }
    }

    /// A buffer of at least `cap` bytes: a registered one when the pool has
    /// a free slot that fits, else a fresh allocation.
    pub fn buffer(&self, cap: usize) -> AlignedBuf {
        if let Some(b) = self
            .uring
            .as_ref()
            .and_then(|u| u.pool.as_ref())
            .filter(|p| p.slot_size() >= cap)
            .and_then(|p| p.take())
        {
            return b;
        }
        if cap <= IO_CHUNK
            && let Some(mut b) = self.spare.lock().pop()
        {
            b.set_len(0);
            return b;
        }
        AlignedBuf::new(cap.max(if cap <= IO_CHUNK { IO_CHUNK } else { cap }))
    }

    /// Gives a buffer back for reuse (registered slots go back to their
    /// pool on drop anyway).
    pub fn recycle(&self, buf: AlignedBuf) {
        if buf.fixed_index().is_none() && buf.capacity() == IO_CHUNK {
            let mut s = self.spare.lock();
            if s.len() < SPARE_BUFFERS {
                s.push(buf);
            }
        }
    }

    pub fn name(&self) -> &'static str {
        if self.uring.is_some() {
            "io_uring"
        } else {
            "pread"
        }
    }

    /// Reads up to `len` bytes at `offset` into `buf` (whose length becomes
    /// the bytes read). With O_DIRECT, offset, length and buffer are 4 KiB
    /// aligned.
    pub async fn read_at(
        &self,
        file: Arc<File>,
        offset: u64,
        buf: AlignedBuf,
        len: usize,
    ) -> BufResult<usize> {
        self.start(uring::Kind::Read, file, offset, buf, len).await
    }

    /// Writes the buffer's bytes at `offset`.
    pub async fn write_at(
        &self,
        file: Arc<File>,
        offset: u64,
        buf: AlignedBuf,
    ) -> BufResult<usize> {
        let len = buf.len();
        self.start(uring::Kind::Write, file, offset, buf, len).await
    }

    /// Submits a read now and returns its completion: the operation is in
    /// flight before the caller awaits (no task needed to keep reads ahead).
    pub fn start_read(&self, file: Arc<File>, offset: u64, buf: AlignedBuf, len: usize) -> Pending {
        self.start(uring::Kind::Read, file, offset, buf, len)
    }

    fn start(
        &self,
        kind: uring::Kind,
        file: Arc<File>,
        offset: u64,
        buf: AlignedBuf,
        len: usize,
    ) -> Pending {
        match &self.uring {
            Some(u) => {
                let (done, rx) = oneshot::channel();
                u.submit(uring::Op {
                    kind,
                    file,
                    offset,
                    buf,
                    len,
                    done,
                });
                Pending::Ring(rx)
            }
            None => Pending::Pool(tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::FileExt;
                let mut buf = buf;
                let r = match kind {
                    uring::Kind::Read => {
                        let n = len.min(buf.capacity());
                        let r = file.read_at(&mut buf.as_mut_slice()[..n], offset);
                        if let Ok(k) = r {
                            buf.set_len(k);
                        }
                        r
                    }
                    // Straight from the aligned buffer (O_DIRECT needs it).
                    uring::Kind::Write => file.write_at(buf.as_slice(), offset),
                };
                (r, buf)
            })),
        }
    }
}

/// An operation in flight; resolves to its result and the buffer.
pub enum Pending {
    Ring(oneshot::Receiver<BufResult<usize>>),
    Pool(tokio::task::JoinHandle<BufResult<usize>>),
}

impl std::future::Future for Pending {
    type Output = BufResult<usize>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        match self.get_mut() {
            Pending::Ring(rx) => match std::pin::Pin::new(rx).poll(cx) {
                Poll::Ready(Ok(r)) => Poll::Ready(r),
                Poll::Ready(Err(_)) => Poll::Ready((
                    Err(std::io::Error::other(
                        "the io_uring thread dropped an operation",
                    )),
                    AlignedBuf::new(0),
                )),
                Poll::Pending => Poll::Pending,
            },
            Pending::Pool(job) => match std::pin::Pin::new(job).poll(cx) {
                Poll::Ready(Ok(r)) => Poll::Ready(r),
                Poll::Ready(Err(e)) => Poll::Ready((
                    Err(std::io::Error::other(e.to_string())),
                    AlignedBuf::new(0),
                )),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::OpenOptionsExt;

    /// The shared suite: every engine passes it.
    async fn suite(engine: &Engine) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blocks");
        // O_DIRECT where the filesystem takes it (not tmpfs).
        let open = |direct: bool| {
            let mut o = std::fs::OpenOptions::new();
            o.read(true).write(true).create(true);
            if direct {
                o.custom_flags(libc::O_DIRECT);
            }
            o.open(&path)
        };
        let file = Arc::new(open(true).or_else(|_| open(false)).unwrap());
        let chunk = |i: u8| -> Vec<u8> {
            (0..64 * 1024)
                .map(|k| (k as u8).wrapping_mul(7).wrapping_add(i))
                .collect()
        };
        for i in 0..4u8 {
            let mut b = AlignedBuf::new(64 * 1024);
            b.fill(&chunk(i));
            let (r, _) = engine.write_at(file.clone(), u64::from(i) * 65536, b).await;
            assert_eq!(r.unwrap(), 65536, "{} write", engine.name());
        }
        // 32 concurrent aligned reads: every one is submitted (in flight)
        // before the first is awaited, so the engine holds all 32 at once.
        let pending: Vec<_> = (0..32u64)
            .map(|k| {
                engine.start_read(file.clone(), (k % 4) * 65536, AlignedBuf::new(65536), 65536)
            })
            .collect();
        for (k, p) in pending.into_iter().enumerate() {
            let (r, b) = p.await;
            assert_eq!(r.unwrap(), 65536, "{} read {k}", engine.name());
            assert!(
                b.as_slice() == &chunk((k % 4) as u8)[..],
                "{} read {k}",
                engine.name()
            );
        }
        // The same through `read_at`, polled together rather than one by one.
        let reads = (0..32u64).map(|k| {
            let file = file.clone();
            async move {
                let (r, b) = engine
                    .read_at(file, (k % 4) * 65536, AlignedBuf::new(65536), 65536)
                    .await;
                (k, r, b)
            }
        });
        for (k, r, b) in join_all(reads.map(Box::pin).collect()).await {
            assert_eq!(r.unwrap(), 65536, "{} read_at {k}", engine.name());
            assert!(
                b.as_slice() == &chunk((k % 4) as u8)[..],
                "{} read_at {k}",
                engine.name()
            );
        }
        // Reading past the end: 0 bytes, not an error.
        let (r, b) = engine
            .read_at(file.clone(), 4 * 65536, AlignedBuf::new(4096), 4096)
            .await;
        assert_eq!(r.unwrap(), 0);
        assert!(b.is_empty());
        // A file not open for writing: the error comes back with the buffer.
        let ro = Arc::new(std::fs::File::open(&path).unwrap());
        let mut b = AlignedBuf::new(4096);
        b.fill(&[1; 4096]);
        let (r, b) = engine.write_at(ro, 0, b).await;
        assert!(
            r.is_err(),
            "{}: writing a read-only file fails",
            engine.name()
        );
        assert_eq!(b.capacity(), 4096, "the buffer comes back");
    }

    /// Polls all of `fs` together (each is polled before any has to finish)
    /// and returns their outputs in order.
    async fn join_all<F: std::future::Future + Unpin>(mut fs: Vec<F>) -> Vec<F::Output> {
        let mut out: Vec<Option<F::Output>> = fs.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for (f, o) in fs.iter_mut().zip(out.iter_mut()) {
                if o.is_none() {
                    match std::pin::Pin::new(f).poll(cx) {
                        std::task::Poll::Ready(v) => *o = Some(v),
                        std::task::Poll::Pending => pending = true,
                    }
                }
            }
            if pending {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(())
            }
        })
        .await;
        out.into_iter().map(|o| o.expect("finished")).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pread_engine_passes_the_suite() {
        suite(&Engine::pread()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_detected_engine_passes_the_suite() {
        let e = Engine::detect(32, 0);
        eprintln!("engine in use: {}", e.describe());
        suite(&e).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_sqpoll_ring_passes_the_suite() {
        let e = Engine::detect_with(&UringOptions {
            depth: 32,
            fixed_bytes: 0,
            sqpoll_idle_ms: 10,
        });
        eprintln!("engine in use: {}", e.describe());
        suite(&e).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn registered_buffers_pass_the_suite_and_come_back() {
        let e = Engine::detect(32, 2 * IO_CHUNK as u64);
        eprintln!("engine in use: {}", e.describe());
        let pool = e.uring.as_ref().and_then(|u| u.pool.clone());
        if let Some(p) = &pool {
            assert_eq!(
                p.bytes(),
                2 * IO_CHUNK,
                "within the 8 MiB locked-memory limit"
            );
            let (a, b) = (e.buffer(4096), e.buffer(IO_CHUNK));
            assert!(a.fixed_index().is_some() && b.fixed_index().is_some());
            assert!(
                e.buffer(4096).fixed_index().is_none(),
                "pool exhausted: plain buffer"
            );
            assert!(
                e.buffer(2 * IO_CHUNK).fixed_index().is_none(),
                "too big for a slot"
            );
            drop((a, b));
            // Fixed reads and writes through a registered slot.
            let dir = tempfile::tempdir().unwrap();
            let f = Arc::new(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(dir.path().join("f"))
                    .unwrap(),
            );
            let mut w = e.buffer(8192);
            assert!(w.fixed_index().is_some());
            w.fill(&[7u8; 8192]);
            let (r, _) = e.write_at(f.clone(), 4096, w).await;
            assert_eq!(r.unwrap(), 8192);
            let (r, got) = e.read_at(f, 0, e.buffer(IO_CHUNK), 16384).await;
            assert_eq!(r.unwrap(), 12288);
            assert!(got.fixed_index().is_some());
            assert!(got.as_slice()[..4096].iter().all(|b| *b == 0));
            assert!(got.as_slice()[4096..].iter().all(|b| *b == 7));
            drop(got);
            assert_eq!(p.free_slots(), 2, "every slot came back");
        }
        suite(&e).await;
    }
}
