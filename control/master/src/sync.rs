//! Under-storage sync: bringing Eddy's view of a path or a directory
//! listing up to date with the under-storage, as the mount's sync interval
//! (or the request's policy) says. Store I/O runs outside the namespace
//! lock; what it found is merged through `MasterState::mutate`.

use std::collections::HashSet;

use eddy_proto::pb;
use eddy_ufs::{UfsError, UfsPath};

use crate::error::Result;
use crate::inode::*;
use crate::mount::MountPoint;
use crate::namespace::perm::Need;
use crate::path::EddyPath;
use crate::service::{MasterState, now_ms};

/// Page size used when listing the under-storage during a sync.
const UFS_LIST_PAGE: usize = 1_000;

impl MasterState {
    fn interval(requested: Option<&pb::SyncPolicy>, mount: &MountPoint) -> i64 {
        requested
            .and_then(|s| s.interval_ms)
            .unwrap_or(mount.sync_interval_ms)
    }

    fn due(last_ms: i64, interval: i64, now: i64) -> bool {
        interval >= 0 && (interval == 0 || now - last_ms >= interval)
    }

    /// Brings Eddy's view of `path` up to date with the under-storage: loads
    /// it if Eddy has not seen it, re-checks it when the sync interval says so,
    /// and drops it if the under-storage no longer has it.
    pub(crate) async fn sync_path(
        &self,
        path: &EddyPath,
        policy: Option<&pb::SyncPolicy>,
    ) -> Result<()> {
        let now = now_ms();
        enum Plan {
            Done,
            Recheck { id: u64, parent: u64 },
            Load { from: u64, depth: usize },
        }
        let (plan, mount, key) = {
            let ns = self.ns.read();
            // Traversal first, on what Eddy already knows: a caller without
            // execute on an ancestor must not make the master stat the
            // under-storage below it (its answers and their timing would
            // tell what exists there). Checked again after the sync.
            ns.permit(&self.who(), path, Need::default())?;
            let (m, key) = ns.mounts.ufs_path(path);
            let interval = Self::interval(policy, m);
            let (id, depth) = ns.deepest_known(path);
            let ino = ns.get(id).expect("known");
            let plan = if !ino.flag(FLAG_PERSISTED) {
                Plan::Done
            } else if depth == path.depth() {
                if ino.flag(FLAG_MOUNT_POINT) || !Self::due(ino.synced_ms, interval, now) {
                    Plan::Done
                } else {
                    Plan::Recheck {
                        id,
                        parent: ino.parent,
                    }
                }
            } else if ino.is_dir() {
                Plan::Load { from: id, depth }
            } else {
                Plan::Done
            };
            (plan, m.clone(), key)
        };
        if matches!(plan, Plan::Done) {
            return Ok(());
        }
        // Not while the mount's store changes: a stat between a rename's
        // store half and its commit would load the new name as a new file.
        let _held = self.ufs_locks.shared(mount.id).await;
        match plan {
            Plan::Done => Ok(()),
            Plan::Recheck { id, parent } => {
                let ufs = self.ufs(&mount).await?;
                match ufs.stat(&key).await {
                    Ok(st) => {
                        self.mutate(|ns, fx| {
                            if ns.get(id).is_some_and(|i| i.parent == parent) {
                                ns.merge_ufs_child(parent, &st, now, fx);
                            }
                            Ok(())
                        })
                        .await
                    }
                    Err(UfsError::NotFound(_)) => {
                        self.mutate(|ns, fx| {
                            ns.drop_if_gone(id, fx);
                            Ok(())
                        })
                        .await
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Plan::Load { from, depth } => {
                let ufs = self.ufs(&mount).await?;
                // Stat each missing component below the deepest known one.
                let comps: Vec<&str> = path.components().collect();
                let mount_depth = mount.path.depth();
                let mut found = Vec::new();
                for d in depth + 1..=comps.len() {
                    let k = UfsPath::from_components(comps[mount_depth..d].iter().copied())
                        .expect("valid components");
                    if crate::staging::is_reserved(&k) {
                        // Writes in progress are not files (yet).
                        break;
                    }
                    match ufs.stat(&k).await {
                        Ok(mut st) => {
                            st.name = comps[d - 1].to_string();
                            let is_dir = st.is_dir;
                            found.push(st);
                            if !is_dir {
                                break;
                            }
                        }
                        Err(UfsError::NotFound(_)) | Err(UfsError::NotADirectory(_)) => break,
                        Err(e) => return Err(e.into()),
                    }
                }
                if found.is_empty() {
                    return Ok(());
                }
                self.mutate(|ns, fx| {
                    let mut parent = from;
                    for st in &found {
                        match ns.merge_ufs_child(parent, st, now, fx) {
                            Some(c) => parent = c,
                            None => break,
                        }
                    }
                    Ok(())
                })
                .await
            }
        }
    }

    /// Lists directory `dir` from the under-storage and merges it, when it
    /// was never listed or the sync interval says so. Pages through the store
    /// and merges page by page, so a huge directory is never held whole.
    pub(crate) async fn sync_listing(
        &self,
        path: &EddyPath,
        policy: Option<&pb::SyncPolicy>,
    ) -> Result<()> {
        let now = now_ms();
        let (dir, mount, key) = {
            let ns = self.ns.read();
            // As in `sync_path`: no listing of the store below a directory
            // the caller may not traverse to.
            ns.permit(&self.who(), path, Need::default())?;
            let Some(id) = ns.lookup(path) else {
                return Ok(());
            };
            let ino = ns.get(id).expect("known");
            let Some(d) = ino.dir.as_ref() else {
                return Ok(());
            };
            if !ino.flag(FLAG_PERSISTED) {
                return Ok(());
            }
            let (m, key) = ns.mounts.ufs_path(path);
            let interval = Self::interval(policy, m);
            if d.listed_ms != 0 && !Self::due(d.listed_ms, interval, now) {
                return Ok(());
            }
            (id, m.clone(), key)
        };
        let ufs = self.ufs(&mount).await?;
        let mut after: Option<String> = None;
        // As in `sync_path`; released before the path sync below takes it.
        let held = self.ufs_locks.shared(mount.id).await;
        loop {
            let page = match ufs.list(&key, after.as_deref(), UFS_LIST_PAGE).await {
                Ok(p) => p,
                Err(UfsError::NotFound(_)) | Err(UfsError::NotADirectory(_)) => {
                    // Gone (or now a file): the path sync sorts out which.
                    drop(held);
                    return self
                        .sync_path(
                            path,
                            Some(&pb::SyncPolicy {
                                interval_ms: Some(0),
                            }),
                        )
                        .await;
                }
                Err(e) => return Err(e.into()),
            };
            let next = page.next_start_after.clone();
            self.mutate(|ns, fx| {
                if !ns.get(dir).is_some_and(|i| i.is_dir()) {
                    return Ok(());
                }
                let names: HashSet<&str> = page.entries.iter().map(|e| e.name.as_str()).collect();
                for st in &page.entries {
                    if key.is_root() && st.name == crate::staging::DIR {
                        continue;
                    }
                    ns.merge_ufs_child(dir, st, now, fx);
                }
                ns.drop_unlisted(dir, after.as_deref(), next.as_deref(), &names, fx);
                if next.is_none() {
                    ns.mark_listed(dir, now);
                    ns.mark_synced(dir, now);
                }
                Ok(())
            })
            .await?;
            match next {
                Some(n) => after = Some(n),
                None => return Ok(()),
            }
        }
    }

    /// Loads `path` and its parent from the under-storage if Eddy has not seen
    /// them, so creates and mkdirs see what is already there.
    pub(crate) async fn load_parent(&self, path: &EddyPath) -> Result<()> {
        self.sync_path(path, None).await?;
        if let Some(parent) = path.parent() {
            self.sync_path(&parent, None).await?;
        }
        Ok(())
    }
}
