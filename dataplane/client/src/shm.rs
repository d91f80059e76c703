//! Mapping blocks a co-located worker hands over (`SCM_RIGHTS`), and
//! receiving those descriptors. The client's only `unsafe`.

use std::fs::File;
use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};

use memmap2::{Mmap, MmapOptions};
use rustix::fs::SealFlags;
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags};
use tokio::io::Interest;
use tokio::net::UnixStream;

/// A read-only mapping of one sealed block segment.
pub struct Mapping {
    map: Option<Mmap>,
    len: usize,
}

impl Mapping {
    /// Maps the first `len` bytes of a sealed memfd read-only. Refuses a
    /// descriptor that is not sealed against writing, shrinking and growing,
    /// or that is shorter than `len`: only then can the bytes neither change
    /// nor vanish under the mapping. The write seal is `F_SEAL_WRITE`, or
    /// `F_SEAL_FUTURE_WRITE` from a worker that keeps its own writable
    /// mapping for RDMA registration (a segment only it ever filled, never
    /// written after the seal; docs/SHORT-CIRCUIT.md).
    pub fn map_sealed(fd: OwnedFd, len: u64) -> std::io::Result<Self> {
        let seals = rustix::fs::fcntl_get_seals(&fd)?;
        let sized = seals.contains(SealFlags::SHRINK | SealFlags::GROW);
        let written = seals.intersects(SealFlags::WRITE | SealFlags::FUTURE_WRITE);
        if !(sized && written) {
            return Err(std::io::Error::other(
                "the worker handed a segment that is not sealed; refusing to map it",
            ));
        }
        let file = File::from(fd);
        if file.metadata()?.len() < len {
            return Err(std::io::Error::other(
                "the handed segment is shorter than its block",
            ));
        }
        // The memfd is sealed against writes, shrinking and growing (checked
        // above) and is at least `len` bytes long: the mapped bytes can
        // neither change nor disappear while the mapping lives.
        Self::map_immutable(&file, len)
    }

    /// Maps `len` bytes of `file`, which the caller has checked cannot
    /// change or shrink (a sealed memfd, or a block file, which Eddy never
    /// rewrites). The mapping keeps the pages after `file` is closed.
    fn map_immutable(file: &File, len: u64) -> std::io::Result<Self> {
        let len = usize::try_from(len).map_err(std::io::Error::other)?;
        if len == 0 {
            return Ok(Self { map: None, len: 0 });
        }
        // SAFETY: both callers check `file` is at least `len` bytes long and
        // cannot change or shrink while mapped (see `map_immutable`'s doc).
        let map = unsafe { MmapOptions::new().len(len).map(file)? };
        Ok(Self {
            map: Some(map),
            len,
        })
    }

    /// Maps the first `len` bytes of a disk-tier block file read-only. The
    /// worker writes a block file once, under a temporary name, and never
    /// changes or truncates it after the rename (it only unlinks it), so
    /// the bytes stay put while mapped. Refuses a descriptor that is not a
    /// read-only regular file of at least `len` bytes.
    pub fn map_block_file(fd: OwnedFd, len: u64) -> std::io::Result<Self> {
        let flags = rustix::fs::fcntl_getfl(&fd)?;
        if flags.contains(rustix::fs::OFlags::WRONLY) || flags.contains(rustix::fs::OFlags::RDWR) {
            return Err(std::io::Error::other(
                "the worker handed a writable block file; refusing to map it",
            ));
        }
        let file = File::from(fd);
        let meta = file.metadata()?;
        if !meta.is_file() || meta.len() < len {
            return Err(std::io::Error::other(
                "the handed block file is not a regular file of the block's length",
            ));
        }
        // A regular file at least `len` bytes long, open read-only, and
        // Eddy's worker never writes or truncates a block file once it is in
        // place (docs/TIERS.md); unlinking it leaves the pages mapped.
        Self::map_immutable(&file, len)
    }

    pub fn as_slice(&self) -> &[u8] {
        match &self.map {
            Some(m) => &m[..self.len],
            None => &[],
        }
    }
}

/// Reads one whole frame (the worker sends one answer per request, so
/// nothing follows it), collecting the descriptors that ride on its first
/// byte (at most `max_fds`). Usually one `recvmsg`.
pub async fn recv_frame_with_fds(
    sock: &mut UnixStream,
    max_fds: usize,
) -> Result<(eddy_wire::Header, Vec<u8>, Vec<OwnedFd>), eddy_wire::WireError> {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 4096];
    let mut got = 0;
    let mut fds = Vec::new();
    while got < eddy_wire::HEADER_LEN {
        let h = &mut buf;
        let n = sock
            .async_io(Interest::READABLE, || {
                let mut space =
                    vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(max_fds.max(1)))];
                let mut cmsg = RecvAncillaryBuffer::new(&mut space);
                let r = rustix::net::recvmsg(
                    sock.as_fd(),
                    &mut [IoSliceMut::new(&mut h[got..])],
                    &mut cmsg,
                    RecvFlags::CMSG_CLOEXEC,
                )?;
                for m in cmsg.drain() {
                    if let RecvAncillaryMessage::ScmRights(it) = m {
                        fds.extend(it);
                    }
                }
                if r.flags.contains(ReturnFlags::CTRUNC) {
                    return Err(std::io::Error::other(
                        "descriptors were cut off (too many in one frame)",
                    ));
                }
                Ok(r.bytes)
            })
            .await?;
        if n == 0 {
            return Err(eddy_wire::WireError::Closed);
        }
        got += n;
    }
    let head: [u8; eddy_wire::HEADER_LEN] =
        buf[..eddy_wire::HEADER_LEN].try_into().expect("12 bytes");
    let h = eddy_wire::Header::decode(&head)?;
    let end = eddy_wire::HEADER_LEN + h.body_len as usize;
    if got > end {
        return Err(eddy_wire::WireError::Malformed {
            kind: h.kind,
            reason: "bytes after the answer".into(),
        });
    }
    buf.resize(end.max(got), 0);
    sock.read_exact(&mut buf[got..end]).await?;
    Ok((h, buf[eddy_wire::HEADER_LEN..end].to_vec(), fds))
}

/// A segment handed to this client to fill (a short-circuit write). It is
/// filled with `pwrite(2)` on the memfd, not through a mapping: writing a
/// fresh shmem page through the file costs about half of faulting it into
/// a mapping and copying (the kernel neither traps nor zeroes a page
/// written whole), and with no writable mapping left nothing stops the
/// worker's seal at commit.
pub struct WritableSegment {
    file: Option<File>,
    pub capacity: usize,
}

impl WritableSegment {
    /// Takes an unsealed memfd of at least `capacity` bytes the worker
    /// created for this write.
    pub fn new(fd: OwnedFd, capacity: u64) -> std::io::Result<Self> {
        let file = File::from(fd);
        if file.metadata()?.len() < capacity {
            return Err(std::io::Error::other(
                "the handed segment is smaller than promised",
            ));
        }
        let capacity = usize::try_from(capacity).map_err(std::io::Error::other)?;
        Ok(Self {
            file: Some(file),
            capacity,
        })
    }

    /// Copies `data` in at `offset` (the caller keeps it within capacity).
    pub fn write_at(&mut self, offset: usize, data: &[u8]) -> std::io::Result<()> {
        let file = self.file.as_ref().expect("held until released");
        std::os::unix::fs::FileExt::write_all_at(file, data, offset as u64)
    }

    /// Lets go of the segment before the commit.
    pub fn release(&mut self) {
        self.file = None;
    }
}
