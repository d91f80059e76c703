//! Staged under-storage writes: a CACHE_THROUGH or THROUGH writer, and a
//! persist job, write a file's bytes to its *staging name*
//! (`.eddy-staging/<file id>` at the root of the file's mount), never to
//! the file's path. The master moves the object into place (`place`) when
//! the file completes or is persisted — at the path the file has *then*,
//! so a rename during the write moves nothing twice — and a crash, a
//! cancelled write or a concurrent delete leaves only a staging object,
//! which no listing shows and which start-up removes unless its file is
//! still being written. This is what Alluxio does with its temporary
//! names; the name is derived from the inode (ids are never reused), so
//! the master needs no record of it.
//!
//! Under-storage changes of one mount (rename, delete, place of persisted
//! entries) run one at a time under the mount's lock (`UfsLocks`), each
//! between its check and its commit, so two of them never interleave on
//! one path; loads from the store (syncs) share the lock, so they never
//! see a change's store half before its commit. Eddy-only changes take no
//! lock and instead check, in their commit, that the entry is still as
//! unpersisted as it was.

use std::sync::Arc;

use eddy_ufs::{UfsError, UfsPath, UnderFileSystem};

use crate::error::{MasterError, Result};
use crate::intent::Intent;
use crate::mount::MountPoint;
use crate::path::EddyPath;
use crate::service::MasterState;

/// The directory, at the root of every mount, holding staging objects.
pub const DIR: &str = ".eddy-staging";

/// The staging name of file `id`, relative to its mount's root.
pub fn key(id: u64) -> UfsPath {
    UfsPath::parse(&format!("{DIR}/{id}")).expect("a valid key")
}

/// Whether `key` (relative to a mount's root) is the staging directory or
/// inside it.
pub fn is_reserved(key: &UfsPath) -> bool {
    let k = key.as_str();
    k == DIR || k.strip_prefix(DIR).is_some_and(|r| r.starts_with('/'))
}

impl MasterState {
    /// Refuses a path that would land in a mount's staging directory.
    pub(crate) fn check_not_reserved(&self, path: &EddyPath) -> Result<()> {
        let (_, key) = self.ufs_target(path);
        if is_reserved(&key) {
            return Err(MasterError::InvalidPath(format!(
                "{path}: `{DIR}` at the root of a mount is reserved for writes in progress; choose another name"
            )));
        }
        Ok(())
    }

    /// Removes the staging objects of files `ids` on `mount` (deleted or
    /// cancelled while being written). Best effort: start-up removes what
    /// is left.
    pub(crate) async fn drop_staged(&self, mount: &MountPoint, ids: Vec<u64>) {
        if ids.is_empty() {
            return;
        }
        let Ok(ufs) = self.ufs(mount).await else {
            return;
        };
        for id in ids {
            match ufs.delete(&key(id), false).await {
                Ok(()) | Err(UfsError::NotFound(_)) => {}
                Err(e) => tracing::warn!("could not remove the staging object of file {id}: {e}"),
            }
        }
    }

    /// At start: removes every staging object whose file is not still
    /// being written or waiting to be persisted.
    pub(crate) async fn reconcile_staging(&self) {
        let mounts: Vec<MountPoint> = self.ns.read().mounts.iter().cloned().collect();
        for m in mounts {
            if m.read_only {
                continue;
            }
            if let Err(e) = self.reconcile_mount(&m).await {
                tracing::warn!("staging objects of {} left for the next start: {e}", m.uri);
            }
        }
    }

    async fn reconcile_mount(&self, m: &MountPoint) -> Result<()> {
        let ufs = self.ufs(m).await?;
        let dir = UfsPath::parse(DIR).expect("valid");
        let mut after: Option<String> = None;
        let mut removed = 0;
        loop {
            let page = match ufs.list(&dir, after.as_deref(), 1000).await {
                Ok(p) => p,
                Err(UfsError::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            for e in &page.entries {
                let keep = e.name.parse::<u64>().is_ok_and(|id| self.still_staging(id));
                if keep {
                    continue;
                }
                let k = dir.join(&e.name).expect("a listed name is valid");
                match ufs.delete(&k, true).await {
                    Ok(()) | Err(UfsError::NotFound(_)) => removed += 1,
                    Err(e) => tracing::warn!("could not remove staging object {k}: {e}"),
                }
            }
            match page.next_start_after {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        if removed > 0 {
            tracing::info!("removed {removed} abandoned staging objects from {}", m.uri);
        }
        Ok(())
    }

    /// Whether file `id`'s staging object may still be needed: it is being
    /// written, or waits to be persisted (a persist job may be writing it).
    fn still_staging(&self, id: u64) -> bool {
        let ns = self.ns.read();
        ns.is_staged(id)
            || ns
                .get(id)
                .is_some_and(|i| i.flag(crate::inode::FLAG_PERSIST_PENDING))
    }

    /// Moves file `id`'s staging object to where `path` lives, under the
    /// mount's lock and with a place intent, and returns what is there now
    /// (its fingerprint and length are what the file records). The caller
    /// commits (deleting `Placed::intent` in the batch) or [`Self::unplace`]s.
    pub(crate) async fn place_at(&self, id: u64, path: &EddyPath) -> Result<Placed> {
        let (mount, key) = self.ufs_target(path);
        let held = self.ufs_locks.exclusive(mount.id).await;
        let ufs = self.ufs(&mount).await?;
        let intent = self
            .begin_intent(&Intent::Place {
                path: path.clone(),
                ino: id,
            })
            .await?;
        let moved = ufs.place(&self::key(id), &key).await.map_err(|e| match e {
            UfsError::NotFound(_) => MasterError::NotFound(format!(
                "the under-storage copy of file id {id} (staging name {}; the write did not finish, write the file again)",
                self::key(id)
            )),
            e => e.into(),
        });
        if let Err(e) = moved {
            self.drop_intent(intent);
            return Err(e);
        }
        crate::service::failpoint("after-ufs-place");
        let st = match ufs.stat(&key).await {
            Ok(st) => st,
            Err(e) => {
                self.put_back(&ufs, &key, id, intent).await;
                return Err(e.into());
            }
        };
        Ok(Placed {
            _held: held,
            ufs,
            mount,
            key,
            id,
            intent,
            st,
        })
    }

    /// Undoes a [`Self::place_at`] whose commit did not happen: the object
    /// goes back to its staging name and the intent goes. A failure to move
    /// it back leaves the intent for the next start.
    pub(crate) async fn unplace(&self, p: &Placed) {
        self.put_back(&p.ufs, &p.key, p.id, p.intent).await;
    }

    async fn put_back(&self, ufs: &Arc<dyn UnderFileSystem>, at: &UfsPath, id: u64, intent: u64) {
        match ufs.place(at, &key(id)).await {
            Ok(()) => self.drop_intent(intent),
            Err(e) => {
                tracing::warn!("could not move {at} back to the staging name of file {id}: {e}")
            }
        }
    }
}

/// A staged object moved into place, its commit pending; holds the mount's
/// under-storage lock until dropped.
pub(crate) struct Placed {
    _held: tokio::sync::OwnedRwLockWriteGuard<()>,
    ufs: Arc<dyn UnderFileSystem>,
    pub mount: MountPoint,
    pub key: UfsPath,
    id: u64,
    pub intent: u64,
    /// What is at `key` now.
    pub st: eddy_ufs::UfsStatus,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_names_are_reserved_and_derived_from_the_id() {
        assert_eq!(key(42).as_str(), ".eddy-staging/42");
        assert!(is_reserved(&key(1)));
        assert!(is_reserved(&UfsPath::parse(".eddy-staging").unwrap()));
        assert!(!is_reserved(&UfsPath::parse(".eddy-stagingx").unwrap()));
        assert!(!is_reserved(&UfsPath::parse("a/.eddy-staging").unwrap()));
    }
}
