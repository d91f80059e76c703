//! A short-circuit write: the bytes go straight into segments a worker on
//! this host hands over (`SCM_RIGHTS`), over its Unix socket.

use std::time::Duration;

use eddy_wire::{Kind, WireError, WriteOk, WriteOpen, write_frame};

use super::conn::wire_err;
use crate::ClientError;
use crate::deadline::within;
use crate::shm::WritableSegment;

/// A short-circuit write session on its own Unix-socket connection.
pub(crate) struct ShmWrite {
    sock: tokio::net::UnixStream,
    path: String,
    block_size: u64,
    /// The segment being filled: (id, mapping, bytes written into it).
    seg: Option<(u64, WritableSegment, usize)>,
    /// Each exchange with the worker ends within this.
    timeout: Duration,
}

impl ShmWrite {
    pub async fn open(
        path: &str,
        open: &WriteOpen,
        user: &str,
        timeout: Duration,
    ) -> Result<Self, WireError> {
        within(timeout, async {
            let mut sock = tokio::net::UnixStream::connect(path).await?;
            eddy_wire::hello(&mut sock, user)
                .await?
                .map_err(WireError::Remote)?;
            write_frame(&mut sock, Kind::WriteOpen, &open.encode()).await?;
            match eddy_wire::expect(&mut sock, Kind::Ok).await? {
                Ok(_) => Ok(Self {
                    sock,
                    path: path.to_string(),
                    block_size: open.block_size,
                    seg: None,
                    timeout,
                }),
                Err(e) => Err(WireError::Remote(e)),
            }
        })
        .await
    }

    pub fn err(&self, e: WireError) -> ClientError {
        wire_err(&self.path, e)
    }

    pub async fn step(
        &mut self,
        kind: Kind,
        body: &[u8],
        want: Kind,
    ) -> Result<Vec<u8>, WireError> {
        let sock = &mut self.sock;
        within(self.timeout, async {
            write_frame(sock, kind, body).await?;
            eddy_wire::expect(sock, want)
                .await?
                .map_err(WireError::Remote)
        })
        .await
    }

    /// Copies `data` into segments (the one copy), committing full ones.
    pub async fn write(&mut self, mut data: &[u8]) -> Result<(), WireError> {
        while !data.is_empty() {
            if self.seg.is_none() {
                let (sock, size) = (&mut self.sock, self.block_size);
                let (h, body, fds) = within(self.timeout, async {
                    write_frame(sock, Kind::SegmentRequest, &eddy_wire::u64_body(size)).await?;
                    crate::shm::recv_frame_with_fds(sock, 1).await
                })
                .await?;
                if h.kind == Kind::Error {
                    let e = eddy_wire::ErrorFrame::decode(&body)?;
                    return Err(WireError::Remote(e));
                }
                let (id, cap) = eddy_wire::decode_u64_pair(Kind::SegmentOk, &body)?;
                let fd = fds.into_iter().next().ok_or_else(|| WireError::Malformed {
                    kind: Kind::SegmentOk,
                    reason: "no segment descriptor attached".into(),
                })?;
                self.seg = Some((id, WritableSegment::new(fd, cap)?, 0));
            }
            let (_, seg, pos) = self.seg.as_mut().expect("requested above");
            let n = data.len().min(seg.capacity - *pos);
            seg.write_at(*pos, &data[..n])?;
            *pos += n;
            data = &data[n..];
            if *pos == seg.capacity {
                self.commit().await?;
            }
        }
        Ok(())
    }

    /// Lets go of the segment and has the worker seal and keep it.
    async fn commit(&mut self) -> Result<(), WireError> {
        if let Some((id, mut seg, pos)) = self.seg.take() {
            seg.release();
            self.step(
                Kind::SegmentCommit,
                &eddy_wire::u64_pair(id, pos as u64),
                Kind::Ok,
            )
            .await?;
        }
        Ok(())
    }

    pub async fn close(&mut self, total: u64) -> Result<WriteOk, WireError> {
        self.commit().await?;
        let body = self
            .step(Kind::WriteClose, &eddy_wire::u64_body(total), Kind::WriteOk)
            .await?;
        WriteOk::decode(&body)
    }
}
