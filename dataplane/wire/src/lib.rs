//! Eddy's data protocol: how clients move block bytes to and from workers
//! over TCP (and, later, Unix sockets).
//!
//! Why not gRPC: bulk bytes should not pay protobuf framing, HTTP/2 flow
//! control and a copy into a message. A read answers with one small header
//! and then the raw bytes, written by the worker straight from the block's
//! shared-memory mapping and read by the client straight into the caller's
//! buffer.
//!
//! Every message is a [`Frame`]: a fixed 12-byte little-endian header and a
//! body whose layout depends on the frame kind. The byte-by-byte layout is in
//! `docs/DATA-PROTOCOL.md`; the tests in this crate pin it.
//!
//! Architecture invariant: this crate knows frames and nothing else: no
//! sockets policy, no worker or client state. The one exchange both sides
//! run as peers (a block read, [`read_block`]) lives here so it is written
//! once. Workers and clients both
//! depend on it; it depends only on the schema crate (for error codes).

mod codec;
mod exchange;
mod frames;
mod remote;

pub use codec::{BodyError, BodyReader, BodyWriter};
pub use exchange::{hello, hello_version, host_port, read_block};
pub use frames::*;
pub use remote::{Fabric, RemoteGrant, RemoteLease, RemoteLeaseOk};

/// `"EDDY"` in the first four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"EDDY";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 12;
/// Largest body of a control frame (everything but `Data`).
pub const MAX_CONTROL_BODY: u32 = 64 << 10;
/// Largest body of a `Data` frame.
pub const MAX_DATA_BODY: u32 = 8 << 20;

/// Largest block length (and write block size) a request may name: the
/// master's largest block size, 1 TiB. Anything larger is refused before a
/// byte is reserved or allocated.
pub const MAX_BLOCK_LENGTH: u64 = 1 << 40;

/// Lengths and offsets of a request that do not fit together or the
/// protocol's limits (`ReadRequest::check`, `WriteOpen::check`): the
/// request is answered INVALID_ARGUMENT, the connection stays.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error(
        "block {block_id}: a block length of {block_length} bytes is over the limit of {MAX_BLOCK_LENGTH}"
    )]
    BlockTooLong { block_id: u64, block_length: u64 },
    #[error(
        "block {block_id}: range {offset}+{length} is outside the block's {block_length} bytes"
    )]
    OutsideBlock {
        block_id: u64,
        offset: u64,
        length: u64,
        block_length: u64,
    },
    #[error("block {block_id}: file offset {file_offset} + block length {block_length} overflows")]
    FileOffsetOverflow {
        block_id: u64,
        file_offset: u64,
        block_length: u64,
    },
    #[error(
        "file {file_id}: a block size of {block_size} bytes is over the limit of {MAX_BLOCK_LENGTH}"
    )]
    BlockSizeTooLarge { file_id: u64, block_size: u64 },
}

/// A protocol violation: the peer sent something this side cannot accept.
/// The connection is closed; other connections are unaffected.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("bad magic {0:02x?}: not an Eddy data connection")]
    BadMagic([u8; 4]),
    #[error("unsupported protocol version {0} (this side speaks {VERSION})")]
    BadVersion(u8),
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("{kind:?} frame body of {len} bytes exceeds the limit of {max}")]
    TooLarge { kind: Kind, len: u32, max: u32 },
    #[error("malformed {kind:?} frame: {reason}")]
    Malformed { kind: Kind, reason: String },
    #[error("expected {expected}, got a {got:?} frame")]
    Unexpected { expected: &'static str, got: Kind },
    #[error("connection closed by the peer")]
    Closed,
    #[error("I/O error on the data connection: {0}")]
    Io(#[from] std::io::Error),
    /// The peer answered with an `Error` frame: its code is kept.
    #[error("{} ({})", .0.message, .0.code.name())]
    Remote(ErrorFrame),
}
