//! Background work the master asks for in heartbeat answers, queued by the
//! master link and worked through by `replicate::run`. Its own module so the
//! link does not depend on the code that does the work.

use eddy_client::pb;

/// Background work the master asks for in heartbeat answers.
pub enum Job {
    /// Cache copies of blocks (replication bounds).
    Replicate(Vec<pb::ReplicateBlock>),
    /// Write a file's blocks to the under-storage (ASYNC_THROUGH, persist).
    Persist(pb::PersistFile),
}

#[cfg(test)]
mod tests;
