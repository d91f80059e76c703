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
    /// nor vanish under the mapping.
    pub fn map_sealed(fd: OwnedFd, len: u64) -> std::io::Result<Self> {
        let needed = SealFlags::WRITE | SealFlags::SHRINK | SealFlags::GROW;
        let seals = rustix::fs::fcntl_get_seals(&fd)?;
        if !seals.contains(needed) {
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
        let len = usize::try_from(len).map_err(std::io::Error::other)?;
        if len == 0 {
            return Ok(Self { map: None, len: 0 });
        }
        // SAFETY: the memfd is sealed against writes, shrinking and growing
        // (checked above) and is at least `len` bytes long, so the mapped
        // bytes can neither change nor disappear while the mapping lives.
        // The mapping keeps the pages after `file` is closed here.
        let map = unsafe { MmapOptions::new().len(len).map(&file)? };
        Ok(Self {
            map: Some(map),
            len,
        })
    }

    pub fn as_slice(&self) -> &[u8] {
        match &self.map {
            Some(m) => &m[..self.len],
            None => &[],
        }
    }
}

/// Reads a 12-byte frame header, collecting the descriptors that ride on
/// its first byte (at most `max_fds`).
pub async fn recv_header_with_fds(
    sock: &UnixStream,
    max_fds: usize,
) -> std::io::Result<([u8; eddy_wire::HEADER_LEN], Vec<OwnedFd>)> {
    let mut h = [0u8; eddy_wire::HEADER_LEN];
    let mut got = 0;
    let mut fds = Vec::new();
    while got < h.len() {
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
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
    }
    Ok((h, fds))
}
