mod codec;
pub mod error;
pub mod inode;
pub mod metastore;
pub mod mount;
pub mod namespace;
pub mod path;
