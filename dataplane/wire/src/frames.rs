//! Frame kinds, headers and bodies.

use eddy_proto::EddyCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::codec::{BodyError, BodyReader, BodyWriter};
use crate::{
    HEADER_LEN, MAGIC, MAX_BLOCK_LENGTH, MAX_CONTROL_BODY, MAX_DATA_BODY, RangeError, VERSION,
    WireError,
};

/// What a frame is. Client -> worker kinds are below 64, answers from 64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Read = 1,
    WriteOpen = 2,
    Data = 3,
    WriteClose = 4,
    WriteCancel = 5,
    Load = 6,
    Stats = 7,
    Lease = 8,
    Release = 9,
    SegmentRequest = 10,
    SegmentCommit = 11,
    Hello = 12,
    RemoteLease = 13,
    ReadOk = 64,
    Ok = 65,
    WriteOk = 66,
    StatsOk = 67,
    LeaseOk = 68,
    SegmentOk = 69,
    RemoteLeaseOk = 70,
    Error = 127,
}

impl Kind {
    pub fn from_u8(v: u8) -> Option<Kind> {
        use Kind::*;
        Some(match v {
            1 => Read,
            2 => WriteOpen,
            3 => Data,
            4 => WriteClose,
            5 => WriteCancel,
            6 => Load,
            7 => Stats,
            8 => Lease,
            9 => Release,
            10 => SegmentRequest,
            11 => SegmentCommit,
            12 => Hello,
            13 => RemoteLease,
            64 => ReadOk,
            65 => Ok,
            66 => WriteOk,
            67 => StatsOk,
            68 => LeaseOk,
            69 => SegmentOk,
            70 => RemoteLeaseOk,
            127 => Error,
            _ => return None,
        })
    }

    fn max_body(self) -> u32 {
        if self == Kind::Data {
            MAX_DATA_BODY
        } else {
            MAX_CONTROL_BODY
        }
    }
}

/// The fixed 12-byte frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub body_len: u32,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC);
        h[4] = VERSION;
        h[5] = self.kind as u8;
        // h[6..8]: flags, zero in version 1.
        h[8..12].copy_from_slice(&self.body_len.to_le_bytes());
        h
    }

    /// Checks magic, version, kind and the size limit of the kind.
    pub fn decode(h: &[u8; HEADER_LEN]) -> Result<Header, WireError> {
        let magic: [u8; 4] = h[0..4].try_into().expect("4 bytes");
        if magic != MAGIC {
            return Err(WireError::BadMagic(magic));
        }
        if h[4] != VERSION {
            return Err(WireError::BadVersion(h[4]));
        }
        let kind = Kind::from_u8(h[5]).ok_or(WireError::UnknownKind(h[5]))?;
        let body_len = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
        if body_len > kind.max_body() {
            return Err(WireError::TooLarge {
                kind,
                len: body_len,
                max: kind.max_body(),
            });
        }
        Ok(Header { kind, body_len })
    }
}

/// Reads one header. A clean end of stream before its first byte is
/// [`WireError::Closed`].
pub async fn read_header<R: AsyncRead + Unpin>(r: &mut R) -> Result<Header, WireError> {
    let mut h = [0u8; HEADER_LEN];
    let n = r.read(&mut h).await?;
    if n == 0 {
        return Err(WireError::Closed);
    }
    r.read_exact(&mut h[n..]).await?;
    Header::decode(&h)
}

/// Reads the body of a control frame.
pub async fn read_body<R: AsyncRead + Unpin>(r: &mut R, h: Header) -> Result<Vec<u8>, WireError> {
    let mut b = vec![0u8; h.body_len as usize];
    r.read_exact(&mut b).await?;
    Ok(b)
}

/// Writes a whole control frame in one buffer.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: Kind,
    body: &[u8],
) -> Result<(), WireError> {
    let mut buf = Vec::with_capacity(HEADER_LEN + body.len());
    buf.extend_from_slice(
        &Header {
            kind,
            body_len: body.len() as u32,
        }
        .encode(),
    );
    buf.extend_from_slice(body);
    w.write_all(&buf).await?;
    Ok(())
}

/// Reads the next frame, which must be of kind `want` (an `Error` frame
/// becomes `Err(Ok(ErrorFrame))`, so callers see the worker's typed error).
pub async fn expect<R: AsyncRead + Unpin>(
    r: &mut R,
    want: Kind,
) -> Result<Result<Vec<u8>, ErrorFrame>, WireError> {
    let h = read_header(r).await?;
    let body = read_body(r, h).await?;
    if h.kind == Kind::Error {
        return Ok(Err(ErrorFrame::decode(&body)?));
    }
    if h.kind != want {
        return Err(WireError::Unexpected {
            expected: kind_name(want),
            got: h.kind,
        });
    }
    Ok(Ok(body))
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::ReadOk => "READ_OK",
        Kind::Ok => "OK",
        Kind::WriteOk => "WRITE_OK",
        Kind::StatsOk => "STATS_OK",
        Kind::LeaseOk => "LEASE_OK",
        Kind::SegmentOk => "SEGMENT_OK",
        Kind::RemoteLeaseOk => "REMOTE_LEASE_OK",
        _ => "a request",
    }
}

pub(crate) fn malformed(kind: Kind) -> impl Fn(BodyError) -> WireError {
    move |e| WireError::Malformed {
        kind,
        reason: e.to_string(),
    }
}

/// How a read treats the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum ReadType {
    /// A miss is cached (the default).
    #[default]
    Cache = 0,
    /// A miss is read through without caching.
    NoCache = 1,
    /// As `Cache`, and a hit in a lower tier moves up (meaningful with tiers).
    CachePromote = 2,
}

/// Where a file's bytes live in the under-storage: its mount (resolved by
/// the worker with the master) and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UfsSource {
    pub mount_id: u64,
    pub key: String,
}

fn put_source(w: &mut BodyWriter, s: &Option<UfsSource>) {
    match s {
        Some(s) => w.u64(s.mount_id).str(&s.key),
        None => w.u64(0).str(""),
    };
}

fn get_source(r: &mut BodyReader) -> Result<Option<UfsSource>, BodyError> {
    let mount_id = r.u64()?;
    let key = r.str()?;
    Ok((mount_id != 0).then_some(UfsSource { mount_id, key }))
}

/// A block token: `u16` length, then its bytes (at most
/// [`eddy_proto::auth::BLOCK_TOKEN_MAX`]; longer is malformed, refused
/// before anything is verified).
fn put_token(w: &mut BodyWriter, t: &[u8]) {
    let n = t.len().min(eddy_proto::auth::BLOCK_TOKEN_MAX);
    w.u16(n as u16);
    w.0.extend_from_slice(&t[..n]);
}

fn get_token(r: &mut BodyReader) -> Result<Vec<u8>, BodyError> {
    let n = r.u16()? as usize;
    if n > eddy_proto::auth::BLOCK_TOKEN_MAX {
        return Err(BodyError::Invalid(
            "block token longer than any the master signs",
        ));
    }
    Ok(r.take_bytes(n)?.to_vec())
}

/// The protocol version a `Hello` names (the header's version byte is the
/// framing's; this one is what the connection speaks after it): the newest
/// this build speaks. It speaks every version from 1 up to it.
pub const HELLO_VERSION: u16 = 1;

/// The worker's side of version agreement: a client speaking `theirs` (any
/// version from 1 up to this build's) is answered the version both speak,
/// the lower of the two; anything else is the `Error` frame to send before
/// closing, naming both versions.
pub fn agree_version(theirs: u16) -> Result<u16, ErrorFrame> {
    agree(theirs, HELLO_VERSION)
}

/// The client's side: the version the worker answered must be one this
/// build speaks and at most the one it offered (`offered`).
pub fn accept_version(answered: u64, offered: u16) -> Result<u16, WireError> {
    accept(answered, offered.min(HELLO_VERSION))
}

/// [`agree_version`] for a worker whose newest version is `ours`.
pub(crate) fn agree(theirs: u16, ours: u16) -> Result<u16, ErrorFrame> {
    // A client offers its newest version; a newer client than this worker
    // speaks this worker's (it takes any answer up to what it offered).
    if theirs >= 1 {
        return Ok(theirs.min(ours));
    }
    Err(ErrorFrame::new(
        eddy_proto::EddyCode::Protocol,
        format!(
            "data protocol version {theirs} is not spoken here (0 is no version): this worker \
             speaks 1 to {ours}; use an Eddy client"
        ),
    ))
}

/// [`accept_version`] for a client that offered `offered` (its newest).
pub(crate) fn accept(answered: u64, offered: u16) -> Result<u16, WireError> {
    match u16::try_from(answered) {
        Ok(v) if (1..=offered).contains(&v) => Ok(v),
        _ => Err(WireError::Malformed {
            kind: Kind::Ok,
            reason: format!(
                "the worker answered the handshake with data protocol version {answered}, \
                 but this client offered {offered} and speaks 1 to {offered}"
            ),
        }),
    }
}

/// `Hello`: the first frame on every data connection (TCP and the Unix
/// socket), before any request. The worker answers `Ok` (body: the version
/// it speaks) or an `Error` frame; any other frame first is a protocol
/// error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub version: u16,
    /// The client's user (its OS user): on the Unix socket checked against
    /// the peer's uid, on TCP informational (the block token proves access).
    pub user: String,
}

impl Hello {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = BodyWriter::default();
        w.u16(self.version).str(&self.user);
        w.0
    }

    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        let mut r = BodyReader::new(b);
        (|| {
            let h = Hello {
                version: r.u16()?,
                user: r.str()?,
            };
            r.end()?;
            if h.user.len() > eddy_proto::auth::NAME_MAX {
                return Err(BodyError::Invalid("user name longer than 255 bytes"));
            }
            Ok(h)
        })()
        .map_err(malformed(Kind::Hello))
    }
}

/// `Read` (stream bytes back) and `Load` (cache only, answer `Ok`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    pub block_id: u64,
    /// Range within the block.
    pub offset: u64,
    pub length: u64,
    /// Full length of the block, and where it starts in its file: what a
    /// cache fill reads from the under-storage.
    pub block_length: u64,
    pub file_offset: u64,
    pub read_type: ReadType,
    /// Absent: the block must be cached (no under-storage copy).
    pub source: Option<UfsSource>,
    /// The block token the master handed out with the file's blocks
    /// (docs/SECURITY.md); empty when the cluster requires none.
    pub token: Vec<u8>,
}

impl ReadRequest {
    /// Checks the lengths and offsets against each other and the protocol's
    /// limits, with overflow: a receiver calls this before using any of them
    /// (an error here answers `INVALID_ARGUMENT`; the connection stays).
    pub fn check(&self) -> Result<(), RangeError> {
        if self.block_length > MAX_BLOCK_LENGTH {
            return Err(RangeError::BlockTooLong {
                block_id: self.block_id,
                block_length: self.block_length,
            });
        }
        if self
            .offset
            .checked_add(self.length)
            .is_none_or(|e| e > self.block_length)
        {
            return Err(RangeError::OutsideBlock {
                block_id: self.block_id,
                offset: self.offset,
                length: self.length,
                block_length: self.block_length,
            });
        }
        if self.file_offset.checked_add(self.block_length).is_none() {
            return Err(RangeError::FileOffsetOverflow {
                block_id: self.block_id,
                file_offset: self.file_offset,
                block_length: self.block_length,
            });
        }
        Ok(())
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = BodyWriter::default();
        w.u64(self.block_id)
            .u64(self.offset)
            .u64(self.length)
            .u64(self.block_length)
            .u64(self.file_offset)
            .u8(self.read_type as u8);
        put_source(&mut w, &self.source);
        put_token(&mut w, &self.token);
        w.0
    }

    pub fn decode(kind: Kind, b: &[u8]) -> Result<Self, WireError> {
        let m = malformed(kind);
        let mut r = BodyReader::new(b);
        let req = (|| {
            let req = ReadRequest {
                block_id: r.u64()?,
                offset: r.u64()?,
                length: r.u64()?,
                block_length: r.u64()?,
                file_offset: r.u64()?,
                read_type: match r.u8()? {
                    0 => ReadType::Cache,
                    1 => ReadType::NoCache,
                    2 => ReadType::CachePromote,
                    value => {
                        return Err(BodyError::Unknown {
                            field: "read type",
                            value,
                        });
                    }
                },
                source: get_source(&mut r)?,
                token: get_token(&mut r)?,
            };
            r.end()?;
            Ok(req)
        })()
        .map_err(m)?;
        Ok(req)
    }
}

/// How a written file reaches the under-storage (same numbers as the
/// schema's `WriteType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum WriteType {
    MustCache = 1,
    CacheThrough = 2,
    Through = 3,
    AsyncThrough = 4,
}

/// Opens a file write session: `Data` frames follow, then `WriteClose`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOpen {
    pub file_id: u64,
    pub block_size: u64,
    pub write_type: WriteType,
    /// Where the file is persisted (required unless MUST_CACHE).
    pub target: Option<UfsSource>,
    /// The block token from CreateFile (write access to the file); empty
    /// when the cluster requires none.
    pub token: Vec<u8>,
}

impl WriteOpen {
    /// Checks the block size against the protocol's limit (as
    /// [`ReadRequest::check`]).
    pub fn check(&self) -> Result<(), RangeError> {
        if self.block_size > MAX_BLOCK_LENGTH {
            return Err(RangeError::BlockSizeTooLarge {
                file_id: self.file_id,
                block_size: self.block_size,
            });
        }
        Ok(())
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = BodyWriter::default();
        w.u64(self.file_id)
            .u64(self.block_size)
            .u8(self.write_type as u8);
        put_source(&mut w, &self.target);
        put_token(&mut w, &self.token);
        w.0
    }

    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        let mut r = BodyReader::new(b);
        (|| {
            let o = WriteOpen {
                file_id: r.u64()?,
                block_size: r.u64()?,
                write_type: match r.u8()? {
                    1 => WriteType::MustCache,
                    2 => WriteType::CacheThrough,
                    3 => WriteType::Through,
                    4 => WriteType::AsyncThrough,
                    value => {
                        return Err(BodyError::Unknown {
                            field: "write type",
                            value,
                        });
                    }
                },
                target: get_source(&mut r)?,
                token: get_token(&mut r)?,
            };
            r.end()?;
            if o.block_size == 0 {
                return Err(BodyError::Invalid("block size 0"));
            }
            if o.write_type != WriteType::MustCache && o.target.is_none() {
                return Err(BodyError::Invalid(
                    "a persisted write type needs an under-storage target",
                ));
            }
            Ok(o)
        })()
        .map_err(malformed(Kind::WriteOpen))
    }
}

/// The answer to `WriteClose`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteOk {
    pub length: u64,
    /// Blocks cached and committed to the master.
    pub blocks: u32,
    /// Under-storage fingerprint when persisted, else empty.
    pub fingerprint: String,
}

impl WriteOk {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = BodyWriter::default();
        w.u64(self.length).u32(self.blocks).str(&self.fingerprint);
        w.0
    }
    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        let mut r = BodyReader::new(b);
        (|| {
            let o = WriteOk {
                length: r.u64()?,
                blocks: r.u32()?,
                fingerprint: r.str()?,
            };
            r.end()?;
            Ok(o)
        })()
        .map_err(malformed(Kind::WriteOk))
    }
}

/// A typed error from the worker; the request failed, the connection stays usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ErrorFrame {
    pub code: EddyCode,
    pub message: String,
}

impl ErrorFrame {
    pub fn new(code: EddyCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    pub fn encode(&self) -> Vec<u8> {
        let mut w = BodyWriter::default();
        w.u16(self.code as i32 as u16).str(&self.message);
        w.0
    }
    pub fn decode(b: &[u8]) -> Result<Self, WireError> {
        let mut r = BodyReader::new(b);
        (|| {
            let code = r.u16()?;
            let message = r.str()?;
            r.end()?;
            Ok(ErrorFrame {
                code: EddyCode::try_from(i32::from(code)).unwrap_or(EddyCode::Internal),
                message,
            })
        })()
        .map_err(malformed(Kind::Error))
    }
}

/// Most blocks one `Lease` request may name (each answer carries an fd, and
/// a message carries at most 253).
pub const MAX_LEASE_BATCH: usize = 64;

/// `Lease`: blocks a co-located client wants mapped. Each item is a read
/// request for the whole block (offset 0, length = block length).
pub fn encode_lease(items: &[ReadRequest]) -> Vec<u8> {
    let mut w = BodyWriter::default();
    w.u16(items.len() as u16);
    for it in items {
        let b = it.encode();
        w.u16(b.len() as u16);
        w.0.extend_from_slice(&b);
    }
    w.0
}

pub fn decode_lease(b: &[u8]) -> Result<Vec<ReadRequest>, WireError> {
    let mut r = BodyReader::new(b);
    let n = r.u16().map_err(malformed(Kind::Lease))? as usize;
    if n == 0 || n > MAX_LEASE_BATCH {
        return Err(WireError::Malformed {
            kind: Kind::Lease,
            reason: format!("{n} blocks in one request (1..={MAX_LEASE_BATCH})"),
        });
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let len = r.u16().map_err(malformed(Kind::Lease))? as usize;
        let item = r.take_bytes(len).map_err(malformed(Kind::Lease))?;
        out.push(ReadRequest::decode(Kind::Lease, item)?);
    }
    r.end().map_err(malformed(Kind::Lease))?;
    Ok(out)
}

/// One answer in `LeaseOk`, in request order. `code` 0: granted, and the
/// next file descriptor attached to the frame is the block's segment.
/// Otherwise the Eddy error code and a message; no descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseGrant {
    pub block_id: u64,
    pub lease_id: u64,
    /// Bytes of the block in the segment (from offset 0).
    pub length: u64,
    pub code: u16,
    pub message: String,
}

/// `LeaseOk`: the lease lifetime, then one grant per requested block.
pub fn encode_lease_ok(ttl_ms: u64, grants: &[LeaseGrant]) -> Vec<u8> {
    let mut w = BodyWriter::default();
    w.u64(ttl_ms).u16(grants.len() as u16);
    for g in grants {
        w.u64(g.block_id)
            .u64(g.lease_id)
            .u64(g.length)
            .u16(g.code)
            .str(&g.message);
    }
    w.0
}

pub fn decode_lease_ok(b: &[u8]) -> Result<(u64, Vec<LeaseGrant>), WireError> {
    let mut r = BodyReader::new(b);
    (|| {
        let ttl = r.u64()?;
        let n = r.u16()?;
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            out.push(LeaseGrant {
                block_id: r.u64()?,
                lease_id: r.u64()?,
                length: r.u64()?,
                code: r.u16()?,
                message: r.str()?,
            });
        }
        r.end()?;
        Ok((ttl, out))
    })()
    .map_err(malformed(Kind::LeaseOk))
}

/// `Release`: lease ids to give back.
pub fn encode_release(ids: &[u64]) -> Vec<u8> {
    let mut w = BodyWriter::default();
    w.u16(ids.len() as u16);
    for id in ids {
        w.u64(*id);
    }
    w.0
}

pub fn decode_release(b: &[u8]) -> Result<Vec<u64>, WireError> {
    let mut r = BodyReader::new(b);
    (|| {
        let n = r.u16()?;
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            out.push(r.u64()?);
        }
        r.end()?;
        Ok(out)
    })()
    .map_err(malformed(Kind::Release))
}

/// Two `u64`s (`SegmentOk`: segment id and capacity; `SegmentCommit`:
/// segment id and length).
pub fn u64_pair(a: u64, b: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&a.to_le_bytes());
    out[8..].copy_from_slice(&b.to_le_bytes());
    out
}

pub fn decode_u64_pair(kind: Kind, b: &[u8]) -> Result<(u64, u64), WireError> {
    if b.len() != 16 {
        return Err(WireError::Malformed {
            kind,
            reason: format!("expected 16 bytes, got {}", b.len()),
        });
    }
    let a = u64::from_le_bytes(b[..8].try_into().expect("8"));
    Ok((a, u64::from_le_bytes(b[8..].try_into().expect("8"))))
}

/// A single `u64` body (`ReadOk` length, `Ok` value, `WriteClose` length).
pub fn u64_body(v: u64) -> [u8; 8] {
    v.to_le_bytes()
}

pub fn decode_u64(kind: Kind, b: &[u8]) -> Result<u64, WireError> {
    let arr: [u8; 8] = b.try_into().map_err(|_| WireError::Malformed {
        kind,
        reason: format!("expected 8 bytes, got {}", b.len()),
    })?;
    Ok(u64::from_le_bytes(arr))
}

/// `StatsOk`: named counters.
pub fn encode_stats(stats: &[(String, u64)]) -> Vec<u8> {
    let mut w = BodyWriter::default();
    w.u16(stats.len() as u16);
    for (k, v) in stats {
        w.str(k).u64(*v);
    }
    w.0
}

pub fn decode_stats(b: &[u8]) -> Result<Vec<(String, u64)>, WireError> {
    let mut r = BodyReader::new(b);
    (|| {
        let n = r.u16()?;
        let mut out = Vec::with_capacity(n as usize);
        for _ in 0..n {
            out.push((r.str()?, r.u64()?));
        }
        r.end()?;
        Ok(out)
    })()
    .map_err(malformed(Kind::StatsOk))
}

#[cfg(test)]
mod tests;
