//! Eddy's wire schema: the generated gRPC types and services, and the stable
//! error codes that cross the gRPC boundary.
//!
//! Architecture invariant: this is the only crate that depends on `prost` and
//! `tonic`'s code generation. Everything above it speaks these types.

pub mod auth;
mod bind;
mod error;
pub mod tls;

pub use bind::{BindError, Endpoint};
pub use error::{CODE_METADATA_KEY, EddyCode, RpcError};

/// Generated protobuf messages and gRPC services (package `eddy.v1`).
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("eddy.v1");
}

/// Default master RPC port (Alluxio's is 19998; Eddy keeps it for familiarity).
pub const DEFAULT_MASTER_PORT: u16 = 19998;

/// Bits of a block id that hold the block index; the rest hold the file id.
pub const BLOCK_INDEX_BITS: u32 = 24;

/// Block id of block `index` of file `file_id`: `file_id << 24 | index`.
/// A block id therefore names its file (`file_id_of_block`).
pub fn block_id(file_id: u64, index: u64) -> u64 {
    debug_assert!(index < (1 << BLOCK_INDEX_BITS));
    (file_id << BLOCK_INDEX_BITS) | index
}

/// File id that a block id belongs to.
pub fn file_id_of_block(block_id: u64) -> u64 {
    block_id >> BLOCK_INDEX_BITS
}

/// Index of a block within its file.
pub fn block_index(block_id: u64) -> u64 {
    block_id & ((1 << BLOCK_INDEX_BITS) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_id_round_trips() {
        for (file, index) in [(1, 0), (7, 3), ((1 << 40) - 1, (1 << 24) - 1)] {
            let b = block_id(file, index);
            assert_eq!(file_id_of_block(b), file);
            assert_eq!(block_index(b), index);
        }
    }
}
