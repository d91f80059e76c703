//! One async lock per mount: under-storage changes of a mount take it
//! exclusively, loads from it (syncs) shared, so loads run side by side but
//! never between a change's store half and its commit (`staging` explains
//! why). Apart from `staging` so `MasterState` can hold the locks without
//! importing the code that takes them.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

/// The locks, by mount id, made on first use.
#[derive(Default)]
pub struct UfsLocks(parking_lot::Mutex<HashMap<u64, Arc<RwLock<()>>>>);

impl UfsLocks {
    fn of(&self, id: u64) -> Arc<RwLock<()>> {
        self.0.lock().entry(id).or_default().clone()
    }

    /// Holds changes of mount `id`'s store to one at a time.
    pub async fn exclusive(&self, id: u64) -> OwnedRwLockWriteGuard<()> {
        self.of(id).write_owned().await
    }

    /// Keeps changes of mount `id`'s store out while the guard lives.
    pub async fn shared(&self, id: u64) -> OwnedRwLockReadGuard<()> {
        self.of(id).read_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loads_share_and_changes_exclude() {
        let locks = UfsLocks::default();
        let a = locks.shared(1).await;
        let _b = locks.shared(1).await;
        assert!(locks.of(1).try_write().is_err(), "a change waits for loads");
        let _other = locks.exclusive(2).await;
        drop(a);
        drop(_b);
        let _w = locks.exclusive(1).await;
        assert!(locks.of(1).try_read().is_err(), "a load waits for a change");
    }
}
