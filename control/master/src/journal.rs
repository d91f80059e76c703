//! The metastore's journal for `[master] sync = "batch"`.
//!
//! With `batch`, a transaction commits to redb without a sync
//! (`Durability::None`), and redb keeps such commits in this process only:
//! a crash of the process would lose them. So each transaction's changes are
//! first appended to `metastore.journal` with one `write` (no `fsync`), which
//! puts them in the kernel's page cache, where they outlive the process. The
//! periodic sync commits redb durably and empties the journal; a start
//! replays what the journal holds on top of the last durable commit.
//!
//! What a crash loses, then: a crash of the master process (kill -9, OOM,
//! abort) loses nothing it answered; a crash of the host (power, kernel)
//! loses at most what was answered in the last `sync_batch_ms`.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! record := len:u32  crc:u32  body[len]        crc = CRC-32 (IEEE) of body
//! body   := epoch:u64  op*
//! op     := 1 id:u64 bytes      PutInode        bytes := n:u32 byte[n]
//!         | 2 id:u64            DeleteInode
//!         | 3 path:bytes bytes  PutMount
//!         | 4 path:bytes        DeleteMount
//!         | 5 n:u64             SetNextId
//!         | 6 id:u64 bytes      PutIntent
//!         | 7 id:u64            DeleteIntent
//! ```
//!
//! The epoch is why an emptied journal that the disk did not see emptied
//! cannot bring old changes back: every durable sync stores epoch + 1 in
//! redb (in the same transaction) before it truncates the journal, records
//! carry the epoch they were written in, and a replay takes only records of
//! the stored epoch. Replay stops at the first record that is short or fails
//! its checksum (a write the host crash tore): the records before it are a
//! prefix of what was answered, in order. Every op is a put or a delete of a
//! whole value, so replaying a record that redb already holds is harmless.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{MasterError, Result};
use crate::metaop::MetaOp;

pub const FILE_NAME: &str = "metastore.journal";

/// The open journal: appends records of the current epoch.
pub struct Journal {
    file: File,
    path: PathBuf,
    epoch: u64,
    buf: Vec<u8>,
}

/// What a start finds in the journal.
pub struct Replay {
    /// The ops of the records of the stored epoch, in order.
    pub ops: Vec<MetaOp>,
    /// Records of older epochs, skipped (already in redb).
    pub stale: usize,
    /// Bytes after the last whole record (a torn write), ignored.
    pub torn_bytes: usize,
}

impl Journal {
    /// Opens (or creates, mode 0600) `dir/metastore.journal` and reads what it
    /// holds for `epoch` (the epoch redb stored). Call [`Journal::reset`]
    /// once the replayed ops are durable, before appending.
    pub fn open(dir: &Path, epoch: u64) -> Result<(Self, Replay)> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(FILE_NAME);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_error(&path, "open", e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| io_error(&path, "read", e))?;
        let replay = read_records(&bytes, epoch).map_err(|newer| {
            MasterError::Metastore(format!(
                "{} holds changes of epoch {newer}, newer than the metastore's {epoch}: \
                 the metastore file was replaced by an older copy. Move the journal \
                 away to start from the metastore alone, or put the newer metastore back",
                path.display()
            ))
        })?;
        let journal = Self {
            file,
            path,
            epoch,
            buf: Vec::new(),
        };
        Ok((journal, replay))
    }

    /// Empties the journal after a durable commit stored `epoch`.
    pub fn reset(&mut self, epoch: u64) -> Result<()> {
        self.file
            .set_len(0)
            .map_err(|e| io_error(&self.path, "truncate", e))?;
        self.epoch = epoch;
        Ok(())
    }

    /// The epoch records are appended in.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Appends one record holding `ops` with one `write` (no sync).
    pub fn append<'a>(&mut self, ops: impl Iterator<Item = &'a MetaOp>) -> Result<()> {
        self.buf.clear();
        self.buf.extend_from_slice(&[0; 8]);
        self.buf.extend_from_slice(&self.epoch.to_le_bytes());
        for op in ops {
            encode_op(&mut self.buf, op);
        }
        let body_len = u32::try_from(self.buf.len() - 8).map_err(|_| {
            MasterError::Metastore("one metastore transaction exceeds 4 GiB".into())
        })?;
        let crc = crc32(&self.buf[8..]);
        self.buf[0..4].copy_from_slice(&body_len.to_le_bytes());
        self.buf[4..8].copy_from_slice(&crc.to_le_bytes());
        self.file
            .write_all(&self.buf)
            .map_err(|e| io_error(&self.path, "append to", e))
    }
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> MasterError {
    MasterError::Metastore(format!("cannot {what} {}: {e}", path.display()))
}

fn put_bytes(buf: &mut Vec<u8>, b: &[u8]) {
    // A record over 4 GiB is refused by `append` as a whole.
    buf.extend_from_slice(&(b.len() as u32).to_le_bytes());
    buf.extend_from_slice(b);
}

fn encode_op(buf: &mut Vec<u8>, op: &MetaOp) {
    match op {
        MetaOp::PutInode { id, record } => {
            buf.push(1);
            buf.extend_from_slice(&id.to_le_bytes());
            put_bytes(buf, record);
        }
        MetaOp::DeleteInode(id) => {
            buf.push(2);
            buf.extend_from_slice(&id.to_le_bytes());
        }
        MetaOp::PutMount { path, record } => {
            buf.push(3);
            put_bytes(buf, path.as_bytes());
            put_bytes(buf, record);
        }
        MetaOp::DeleteMount(path) => {
            buf.push(4);
            put_bytes(buf, path.as_bytes());
        }
        MetaOp::SetNextId(n) => {
            buf.push(5);
            buf.extend_from_slice(&n.to_le_bytes());
        }
        MetaOp::PutIntent { id, record } => {
            buf.push(6);
            buf.extend_from_slice(&id.to_le_bytes());
            put_bytes(buf, record);
        }
        MetaOp::DeleteIntent(id) => {
            buf.push(7);
            buf.extend_from_slice(&id.to_le_bytes());
        }
    }
}

/// Reads the records of `epoch`; `Err(e)` names a newer epoch found.
fn read_records(mut bytes: &[u8], epoch: u64) -> std::result::Result<Replay, u64> {
    let mut replay = Replay {
        ops: Vec::new(),
        stale: 0,
        torn_bytes: 0,
    };
    loop {
        let Some(body) = next_record(bytes) else {
            replay.torn_bytes = bytes.len();
            return Ok(replay);
        };
        bytes = &bytes[8 + body.len()..];
        let mut r = Reader(body);
        let Some(e) = r.u64() else {
            replay.torn_bytes = bytes.len() + 8 + body.len();
            return Ok(replay);
        };
        if e > epoch {
            return Err(e);
        }
        if e < epoch {
            replay.stale += 1;
            continue;
        }
        let mut ops = Vec::new();
        while !r.0.is_empty() {
            match decode_op(&mut r) {
                Some(op) => ops.push(op),
                // A checksummed body that does not decode: written by
                // another format. Stop, as at a torn write.
                None => {
                    replay.torn_bytes = bytes.len() + 8 + body.len();
                    return Ok(replay);
                }
            }
        }
        replay.ops.extend(ops);
    }
}

/// The body of the first whole, checksummed record in `bytes`.
fn next_record(bytes: &[u8]) -> Option<&[u8]> {
    let len = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    let body = bytes.get(8..8usize.checked_add(len)?)?;
    (crc32(body) == crc).then_some(body)
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        Some(self.take(n)?.to_vec())
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?).ok()
    }
}

fn decode_op(r: &mut Reader<'_>) -> Option<MetaOp> {
    let tag = *r.take(1)?.first()?;
    Some(match tag {
        1 => MetaOp::PutInode {
            id: r.u64()?,
            record: r.bytes()?,
        },
        2 => MetaOp::DeleteInode(r.u64()?),
        3 => MetaOp::PutMount {
            path: r.string()?,
            record: r.bytes()?,
        },
        4 => MetaOp::DeleteMount(r.string()?),
        5 => MetaOp::SetNextId(r.u64()?),
        6 => MetaOp::PutIntent {
            id: r.u64()?,
            record: r.bytes()?,
        },
        7 => MetaOp::DeleteIntent(r.u64()?),
        _ => return None,
    })
}

/// CRC-32 (IEEE 802.3, reflected), table-driven.
fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = !0u32;
    for &b in data {
        c = TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<MetaOp> {
        vec![
            MetaOp::PutInode {
                id: 7,
                record: b"inode".to_vec(),
            },
            MetaOp::DeleteInode(8),
            MetaOp::PutMount {
                path: "/m".into(),
                record: b"mount".to_vec(),
            },
            MetaOp::DeleteMount("/old".into()),
            MetaOp::SetNextId(99),
            MetaOp::PutIntent {
                id: 3,
                record: vec![],
            },
            MetaOp::DeleteIntent(4),
        ]
    }

    fn same(a: &[MetaOp], b: &[MetaOp]) -> bool {
        format!("{a:?}") == format!("{b:?}")
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn records_round_trip_and_only_the_stored_epoch_replays() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, r) = Journal::open(dir.path(), 5).unwrap();
        assert!(r.ops.is_empty());
        j.reset(4).unwrap();
        j.append(sample()[..2].iter()).unwrap();
        j.epoch = 5;
        j.append(sample().iter()).unwrap();
        drop(j);
        let (_, r) = Journal::open(dir.path(), 5).unwrap();
        assert!(same(&r.ops, &sample()), "{:?}", r.ops);
        assert_eq!((r.stale, r.torn_bytes), (1, 0));
        // A metastore older than the journal is refused, with what to do.
        let e = Journal::open(dir.path(), 4).err().unwrap().to_string();
        assert!(e.contains("Move the journal away"), "{e}");
    }

    #[test]
    fn a_torn_or_corrupt_tail_ends_the_replay_at_the_last_whole_record() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), 1).unwrap();
        j.append(sample()[..1].iter()).unwrap();
        j.append(sample()[1..].iter()).unwrap();
        drop(j);
        let path = dir.path().join(FILE_NAME);
        let whole = std::fs::read(&path).unwrap();
        let first_len = 8 + u32::from_le_bytes(whole[0..4].try_into().unwrap()) as usize;
        for cut in [first_len + 1, whole.len() - 1] {
            std::fs::write(&path, &whole[..cut]).unwrap();
            let (_, r) = Journal::open(dir.path(), 1).unwrap();
            assert!(same(&r.ops, &sample()[..1]), "cut {cut}: {:?}", r.ops);
            assert_eq!(r.torn_bytes, cut - first_len);
        }
        let mut flipped = whole.clone();
        *flipped.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        let (_, r) = Journal::open(dir.path(), 1).unwrap();
        assert!(same(&r.ops, &sample()[..1]));
    }

    #[test]
    fn reset_empties_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), 1).unwrap();
        j.append(sample().iter()).unwrap();
        j.reset(2).unwrap();
        j.append(sample()[..1].iter()).unwrap();
        drop(j);
        let (_, r) = Journal::open(dir.path(), 2).unwrap();
        assert!(same(&r.ops, &sample()[..1]));
        assert_eq!(r.stale, 0);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_replay_without_panicking(bytes in proptest::collection::vec(0u8..=255, 0..512), epoch in 0u64..3) {
            let _ = read_records(&bytes, epoch);
        }
    }
}
