//! `FileReader::read_at_owned`: a positioned read into a caller's
//! [`ReadBuf`], whose memory one-sided RDMA reads land in directly (no copy
//! out of a pooled buffer). Blocks that go another way (short-circuit,
//! TCP, a failed RDMA read) are read as `read_at` reads them, into the same
//! memory.

use eddy_wire::{ReadType, host_port};

use super::reader::{FileReader, block_at};
use crate::readbuf::{OwnedRead, ReadBuf};
use crate::shared::FileInfo;
use crate::{Result, pb};

impl FileReader {
    /// As [`FileReader::read_at`], into `buf` from its start (up to its
    /// capacity; fewer bytes only at the end of the file), which comes
    /// back with the result. Where a block is read by RDMA the bytes land
    /// in `buf`'s own memory, registered with the client's fabric on its
    /// first such read: reuse the buffer to read without copies.
    pub async fn read_at_owned(&self, pos: u64, mut buf: ReadBuf) -> (ReadBuf, Result<usize>) {
        let r = self.read_owned(pos, &mut buf).await;
        (buf, r)
    }

    async fn read_owned(&self, pos: u64, buf: &mut ReadBuf) -> Result<usize> {
        let info = self.info.lock().clone();
        let len = info.status.length;
        let cap = buf.capacity();
        if pos >= len || cap == 0 {
            return Ok(0);
        }
        let want = (cap as u64).min(len - pos) as usize;
        let mut done = 0usize;
        let mut rdma = true;
        while done < want {
            let at = pos + done as u64;
            let (index, b) = block_at(&info, at)?;
            let off = at - b.offset;
            let n = ((b.length - off) as usize).min(want - done);
            if rdma && self.lease_for(index).await.is_none() {
                match self
                    .rdma_piece(&info, index, &b, off, buf, done..done + n)
                    .await
                {
                    Some(OwnedRead::Done) => {
                        done += n;
                        continue;
                    }
                    Some(OwnedRead::Lost(_)) => {
                        // The memory went with a timed-out read: start over
                        // in the replacement, without RDMA.
                        let fresh = ReadBuf::new(cap);
                        *buf = fresh;
                        rdma = false;
                        done = 0;
                        continue;
                    }
                    Some(OwnedRead::NotRdma(_)) | None => {}
                }
            }
            let got = self
                .read_at(at, &mut buf.as_mut_slice()[done..done + n])
                .await?;
            if got < n {
                return Ok(done + got);
            }
            done += n;
        }
        Ok(done)
    }

    /// One block's piece by RDMA into `range` of `buf`, from the worker
    /// that served the block before or the first location with a provider
    /// this client tries. `None`: no such worker (or a NO_CACHE read).
    async fn rdma_piece(
        &self,
        info: &FileInfo,
        index: usize,
        b: &pb::FileBlock,
        off: u64,
        buf: &mut ReadBuf,
        range: std::ops::Range<usize>,
    ) -> Option<OwnedRead> {
        if self.read_type == ReadType::NoCache {
            return None;
        }
        let rdma = &self.shared.rdma;
        let chosen = self.chosen.lock().get(&index).map(|c| c.1.clone());
        let located = b.locations.iter().map(|l| {
            let a = host_port(&l.host, l.data_port);
            rdma.note_provider(&a, &l.rdma_provider);
            a
        });
        let (addr, provider) = chosen
            .into_iter()
            .chain(located)
            .find_map(|a| rdma.provider_of(&a).map(|p| (a, p)))?;
        let req = self.request(info, b, off, range.len() as u64);
        let r = rdma
            .fetch_owned(&self.shared.pool, (&addr, &provider), &req, buf, range)
            .await;
        if let OwnedRead::NotRdma(e) | OwnedRead::Lost(e) = &r {
            rdma.fell_back(&addr, e);
        }
        Some(r)
    }
}
