//! [`MetaOp`]: one durable change, as the metastore commits it and the
//! journal records it (a module of its own so both can use it).

/// One durable change.
#[derive(Debug, Clone)]
pub enum MetaOp {
    PutInode { id: u64, record: Vec<u8> },
    DeleteInode(u64),
    PutMount { path: String, record: Vec<u8> },
    DeleteMount(String),
    SetNextId(u64),
    PutIntent { id: u64, record: Vec<u8> },
    DeleteIntent(u64),
}
