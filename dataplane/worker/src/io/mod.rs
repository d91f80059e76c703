//! Disk-tier I/O engines behind one interface: io_uring on a dedicated ring
//! thread, or a thread-pool `pread`/`pwrite` fallback where io_uring does
//! not work (old kernel, `io_uring_disabled`, seccomp). Buffers are owned
//! and travel with the operation (`BufResult`, tokio-uring's shape).

mod buf;
mod uring;

use std::fs::File;
use std::sync::Arc;

pub use buf::{ALIGN, AlignedBuf};
use tokio::sync::oneshot;

/// A result with the buffer handed back.
pub type BufResult<T> = (std::io::Result<T>, AlignedBuf);

pub struct Engine {
    uring: Option<uring::Uring>,
}

impl Engine {
    /// io_uring with a ring of `depth` entries when it works here, else the
    /// `pread` engine (the reason is logged once).
    pub fn detect(depth: u32) -> Self {
        match uring::Uring::start(depth.max(1)) {
            Ok(u) => Self { uring: Some(u) },
            Err(e) => {
                tracing::warn!("io_uring unavailable ({e}); disk tiers use the pread engine");
                Self::pread()
            }
        }
    }

    /// The thread-pool `pread`/`pwrite` engine.
    pub fn pread() -> Self {
        Self { uring: None }
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
        self.op(uring::Kind::Read, file, offset, buf, len).await
    }

    /// Writes the buffer's bytes at `offset`.
    pub async fn write_at(
        &self,
        file: Arc<File>,
        offset: u64,
        buf: AlignedBuf,
    ) -> BufResult<usize> {
        let len = buf.len();
        self.op(uring::Kind::Write, file, offset, buf, len).await
    }

    async fn op(
        &self,
        kind: uring::Kind,
        file: Arc<File>,
        offset: u64,
        buf: AlignedBuf,
        len: usize,
    ) -> BufResult<usize> {
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
                rx.await.unwrap_or_else(|_| {
                    (
                        Err(std::io::Error::other(
                            "the io_uring thread dropped an operation",
                        )),
                        AlignedBuf::new(0),
                    )
                })
            }
            None => {
                let job = tokio::task::spawn_blocking(move || {
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
                });
                job.await.unwrap_or_else(|e| {
                    (
                        Err(std::io::Error::other(e.to_string())),
                        AlignedBuf::new(0),
                    )
                })
            }
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
        // 32 concurrent aligned reads.
        let mut tasks = Vec::new();
        for k in 0..32u64 {
            let (file, chunk) = (file.clone(), chunk((k % 4) as u8));
            let e = &engine;
            tasks.push(async move {
                let (r, b) = e
                    .read_at(file, (k % 4) * 65536, AlignedBuf::new(65536), 65536)
                    .await;
                assert_eq!(r.unwrap(), 65536);
                assert!(b.as_slice() == &chunk[..], "{} read {k}", e.name());
            });
        }
        futures_join_all(tasks).await;
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

    async fn futures_join_all<F: std::future::Future<Output = ()>>(fs: Vec<F>) {
        for f in fs {
            f.await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pread_engine_passes_the_suite() {
        suite(&Engine::pread()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_detected_engine_passes_the_suite() {
        let e = Engine::detect(32);
        eprintln!("engine in use: {}", e.name());
        suite(&e).await;
    }
}
