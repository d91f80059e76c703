//! File lifecycle RPCs that change the under-storage too: create, complete,
//! a worker's persist report, rename and delete. Each names the inode it
//! started on and finishes on that inode or not at all (see
//! `Namespace::expect`); under-storage changes of persisted entries run
//! under their mount's lock (`crate::staging`) with an intent
//! (`crate::intent`); answers come from the committed change itself, never
//! from a second lookup by path.

use eddy_proto::pb;
use eddy_ufs::UfsError;

use crate::error::{MasterError, Result};
use crate::inode::FLAG_PERSIST_PENDING;
use crate::intent::Intent;
use crate::limits;
use crate::metastore::MetaOp;
use crate::namespace::{Completion, CreateOpts, DeleteOpts, MkdirOpts, Namespace, NewAttrs};
use crate::path::EddyPath;
use crate::service::{MasterState, failpoint, now_ms};
use crate::staging;

/// How often an operation that lost a race with an Eddy-only change (a
/// rename of a file being written, a completion) starts over before
/// giving up with UNAVAILABLE.
const ATTEMPTS: usize = 8;

fn raced(what: &str, path: &EddyPath) -> MasterError {
    MasterError::Unavailable(format!(
        "{what} {path} kept racing other changes of it; try again"
    ))
}

impl MasterState {
    /// Creates a directory, in the under-storage first, then in Eddy.
    pub async fn mkdir(&self, r: pb::MkdirRequest) -> Result<pb::FileStatus> {
        let path = EddyPath::parse_bytes(&r.path)?;
        let who = self.who();
        let (owner, group) = self.authz.new_owner(&who, r.owner, r.group)?;
        let attrs = NewAttrs {
            mode: r.mode,
            owner,
            group,
            ..Default::default()
        };
        let opts = MkdirOpts {
            recursive: r.recursive,
            allow_exists: r.allow_exists,
            persisted: true,
        };
        self.load_parent(&path).await?;
        let exists = {
            let ns = self.ns.read();
            ns.permit_create(&who, &path)?;
            ns.check_mkdir(&path, opts, &attrs)?
        };
        if exists.is_none() {
            let (mount, key) = self.ufs_target(&path);
            self.ufs(&mount).await?.mkdir(&key).await?;
            let now = now_ms();
            self.mutate(|ns, fx| {
                ns.permit_create(&who, &path)?;
                ns.mkdir(&path, opts, &attrs, now, fx)
            })
            .await?;
        } else {
            // Already there: an answer read from the namespace, as a stat.
            self.settle_reads().await;
        }
        self.status_of(&path)
    }

    /// The status of file `id` as `ns` has it (inside a mutation).
    fn status_in(&self, ns: &Namespace, id: u64) -> Result<pb::FileStatus> {
        let ino = ns
            .get(id)
            .ok_or_else(|| MasterError::NotFound(format!("file id {id} no longer exists")))?;
        let path = ns.path_of(id).ok_or_else(|| {
            MasterError::NotFound(format!("file id {id} is not in the namespace"))
        })?;
        let reg = self.reg.lock();
        Ok(Self::status(ns, Some(&reg), ino, &path))
    }

    /// Creates an incomplete file; returns its status and where its writer
    /// puts the bytes in the under-storage (its staging name, for write
    /// types that write through).
    pub async fn create_file(
        &self,
        r: pb::CreateFileRequest,
    ) -> Result<(pb::FileStatus, pb::UfsLocation)> {
        let path = EddyPath::parse_bytes(&r.path)?;
        let write_type = limits::write_type(r.write_type)?;
        let who = self.who();
        let (owner, group) = self.authz.new_owner(&who, r.owner, r.group)?;
        let attrs = NewAttrs {
            mode: r.mode,
            owner,
            group,
            block_size: r.block_size,
            replication_min: r.replication_min,
            replication_max: r.replication_max,
            ttl_ms: if r.ttl_ms == 0 { -1 } else { r.ttl_ms },
            ttl_action: limits::ttl_action(r.ttl_action)?,
            staged: matches!(
                write_type,
                pb::WriteType::CacheThrough | pb::WriteType::Through
            ),
        };
        if r.ttl_ms < -1 {
            return Err(MasterError::InvalidArgument(format!(
                "ttl {} ms is negative",
                r.ttl_ms
            )));
        }
        self.check_not_reserved(&path)?;
        self.load_parent(&path).await?;
        let missing = {
            let ns = self.ns.read();
            ns.permit_create(&who, &path)?;
            ns.check_create(&path, r.recursive, &attrs)?;
            ns.missing_ancestors(&path)
        };
        if missing > 0 {
            let parent = path.parent().expect("a file is not the root");
            let (mount, key) = self.ufs_target(&parent);
            self.ufs(&mount).await?.mkdir(&key).await?;
        }
        let now = now_ms();
        self.mutate(|ns, fx| {
            ns.permit_create(&who, &path)?;
            let id = ns.create_file(
                &path,
                CreateOpts {
                    recursive: r.recursive,
                    parents_persisted: true,
                },
                &attrs,
                now,
                fx,
            )?;
            let ino = ns.get(id).expect("just created");
            let status = Self::status(ns, None, ino, &path);
            let (m, key) = ns.mounts.ufs_path(&path);
            let key = if attrs.staged { staging::key(id) } else { key };
            let loc = pb::UfsLocation {
                mount_id: m.id,
                key: key.as_str().to_string(),
            };
            Ok((status, loc))
        })
        .await
    }

    pub async fn complete_file(&self, r: pb::CompleteFileRequest) -> Result<pb::FileStatus> {
        failpoint("before-complete");
        let path = EddyPath::parse_bytes(&r.path)?;
        let id = match r.file_id {
            0 => self.ns.read().resolve(&path)?,
            id => id,
        };
        // The writer completes its file (HDFS: the lease holder): its
        // owner, as created.
        self.ns.read().permit_id_owner(&self.who(), id)?;
        let staged = self.ns.read().is_staged(id);
        if staged && r.persisted {
            return self.complete_staged(id, &path, &r).await;
        }
        let now = now_ms();
        let persist_async = r.persist_async && !r.persisted;
        let done = Completion {
            path: path.as_str(),
            length: r.length,
            persisted: r.persisted,
            fingerprint: &r.ufs_fingerprint,
        };
        let status = self
            .mutate(|ns, fx| {
                ns.complete_id(id, &done, now, fx)?;
                if persist_async && let Some(p) = ns.path_of(id) {
                    ns.mark_persist(&p, fx)?;
                }
                self.status_in(ns, id)
            })
            .await;
        let status = match status {
            Err(MasterError::NotFound(m)) if r.persisted => {
                // Deleted while being written: what its writer put at its
                // staging name is no one's.
                let (mount, _) = self.ufs_target(&path);
                self.drop_staged(&mount, vec![id]).await;
                return Err(MasterError::NotFound(m));
            }
            s => s?,
        };
        if staged {
            // Written to the cache only after all: nothing to move.
            let (mount, _) = self.ufs_target(&path);
            self.drop_staged(&mount, vec![id]).await;
        }
        if persist_async {
            self.persist_soon(vec![id]);
        }
        Ok(status)
    }

    /// Completes a file whose bytes are at its staging name: moves them to
    /// the file's path (as it is now) and commits, under the mount's lock.
    async fn complete_staged(
        &self,
        id: u64,
        shown: &EddyPath,
        r: &pb::CompleteFileRequest,
    ) -> Result<pb::FileStatus> {
        for _ in 0..ATTEMPTS {
            let Some(path) = self.ns.read().path_of(id) else {
                return Err(MasterError::NotFound(format!(
                    "{shown} (file id {id}, deleted while being written)"
                )));
            };
            let placed = self.place_at(id, &path).await?;
            let st = &placed.st;
            if st.length != r.length {
                self.unplace(&placed).await;
                return Err(MasterError::InvalidArgument(format!(
                    "{shown}: the under-storage copy is {} bytes, the writer reported {}; write the file again",
                    st.length, r.length
                )));
            }
            let now = now_ms();
            let done = Completion {
                path: shown.as_str(),
                length: r.length,
                persisted: true,
                fingerprint: &st.fingerprint,
            };
            let committed = self
                .mutate(|ns, fx| {
                    if ns.path_of(id).as_ref() != Some(&path) {
                        return Ok(None);
                    }
                    ns.complete_id(id, &done, now, fx)?;
                    fx.ops.push(MetaOp::DeleteIntent(placed.intent));
                    self.status_in(ns, id).map(Some)
                })
                .await;
            match committed {
                Ok(Some(status)) => return Ok(status),
                // Renamed meanwhile (that takes no lock): move it again.
                Ok(None) => self.unplace(&placed).await,
                Err(e) => {
                    self.unplace(&placed).await;
                    if self.ns.read().get(id).is_none() {
                        self.drop_staged(&placed.mount, vec![id]).await;
                    }
                    return Err(e);
                }
            }
        }
        Err(raced("completing", shown))
    }

    /// A worker's answer to a persist request: the file's bytes are at its
    /// staging name; they are moved to where the file is now.
    pub async fn file_persisted(&self, r: pb::FilePersistedRequest) -> Result<()> {
        let now = self.mono_ms();
        if !r.error.is_empty() {
            let failed = self
                .reg
                .lock()
                .persist_failed_by(r.file_id, r.worker_id, now);
            match failed {
                Some(attempts) => tracing::warn!(
                    "persisting file {} failed (attempt {attempts}), retrying: {}",
                    r.file_id,
                    r.error
                ),
                None => tracing::info!(
                    "an earlier attempt at persisting file {} on worker {} failed; another is in flight: {}",
                    r.file_id,
                    r.worker_id,
                    r.error
                ),
            }
            return Ok(());
        }
        // The file stays "in flight" until its placement is committed, with
        // a deadline counted from now: the persist checker would otherwise
        // see it pending with no job out (or its first deadline passed) and
        // hand the same persist to a worker again while this one places it.
        self.reg.lock().persist_placing(r.file_id, r.worker_id, now);
        let out = self.place_persisted(&r).await;
        let mut reg = self.reg.lock();
        match &out {
            Ok(()) => reg.persist_finished(r.file_id),
            Err(_) => {
                reg.persist_failed_by(r.file_id, r.worker_id, self.mono_ms());
            }
        }
        out
    }

    /// Moves a persisted file's staging object to where the file is now and
    /// records it, or drops the object if the file no longer waits for it.
    async fn place_persisted(&self, r: &pb::FilePersistedRequest) -> Result<()> {
        let id = r.file_id;
        for _ in 0..ATTEMPTS {
            // Still waiting, with the length that was written?
            let current = {
                let ns = self.ns.read();
                ns.get(id)
                    .filter(|i| i.flag(FLAG_PERSIST_PENDING) && i.length == r.length)
                    .and_then(|_| ns.path_of(id))
            };
            let Some(path) = current else {
                // Deleted, rewritten or persisted meanwhile: the object is no one's.
                let mount = {
                    let ns = self.ns.read();
                    let m = r.ufs.as_ref().map_or(0, |u| u.mount_id);
                    ns.mounts.iter().find(|x| x.id == m).cloned()
                };
                if let Some(m) = mount {
                    self.drop_staged(&m, vec![id]).await;
                }
                return Ok(());
            };
            let placed = self.place_at(id, &path).await?;
            let st = &placed.st;
            let committed = self
                .mutate(|ns, fx| {
                    let same = ns.path_of(id).as_ref() == Some(&path)
                        && ns
                            .get(id)
                            .is_some_and(|i| i.flag(FLAG_PERSIST_PENDING) && i.length == st.length);
                    if !same {
                        return Ok(false);
                    }
                    ns.persist_done(id, &st.fingerprint, fx);
                    fx.ops.push(MetaOp::DeleteIntent(placed.intent));
                    Ok(true)
                })
                .await;
            match committed {
                Ok(true) => {
                    tracing::info!("file {id} persisted to {}", placed.key);
                    return Ok(());
                }
                Ok(false) => self.unplace(&placed).await,
                Err(e) => {
                    self.unplace(&placed).await;
                    return Err(e);
                }
            }
        }
        Err(MasterError::Unavailable(format!(
            "persisting file {id} kept racing renames of it; it is persisted again later"
        )))
    }

    pub async fn rename(&self, r: pb::RenameRequest) -> Result<()> {
        let src = EddyPath::parse_bytes(&r.src)?;
        let dst = EddyPath::parse_bytes(&r.dst)?;
        self.check_not_reserved(&dst)?;
        self.sync_path(&src, None).await?;
        self.load_parent(&dst).await?;
        let who = self.who();
        let mut held = None;
        for _ in 0..ATTEMPTS {
            let (id, persisted, _) = {
                let ns = self.ns.read();
                ns.permit_rename(&who, &src, &dst)?;
                ns.check_rename(&src, &dst)?
            };
            let moves_ufs = persisted && src != dst;
            if moves_ufs && held.is_none() {
                // Checked again under the lock.
                held = Some(self.ufs_locks.exclusive(self.ufs_target(&src).0.id).await);
                continue;
            }
            let ufs_move = if moves_ufs {
                self.rename_in_ufs(&src, &dst, id).await?
            } else {
                None
            };
            let now = now_ms();
            let intent = ufs_move.as_ref().map(|m| m.intent);
            let fps = ufs_move.as_ref().and_then(|m| m.fingerprints.as_ref());
            let result = self
                .mutate(|ns, fx| {
                    let at = ns.expect(&src, id)?;
                    if ns.persisted(at) != persisted {
                        return Ok(false);
                    }
                    ns.permit_rename(&who, &src, &dst)?;
                    ns.rename(&src, &dst, now, fx)?;
                    if let Some(fps) = fps {
                        ns.set_fingerprints(&dst, fps, fx);
                    }
                    fx.ops.extend(intent.map(MetaOp::DeleteIntent));
                    Ok(true)
                })
                .await;
            match (result, ufs_move) {
                (Ok(true), _) => return Ok(()),
                (Ok(false), None) => {}
                (r, Some(m)) => {
                    // Something changed between check and apply: put the store back.
                    match m.ufs.rename(&m.to, &m.from).await {
                        Ok(()) => self.drop_intent(m.intent),
                        // The intent stays: the next start adopts the store's state.
                        Err(e) => tracing::warn!(
                            "could not undo under-storage rename {} -> {}: {e}",
                            m.to,
                            m.from
                        ),
                    }
                    r?;
                }
                (Err(e), None) => return Err(e),
            }
        }
        Err(raced("renaming", &src))
    }

    /// The under-storage half of renaming persisted inode `id`; `None` if
    /// the store no longer has it (an Eddy-side move is all that is left).
    async fn rename_in_ufs(
        &self,
        src: &EddyPath,
        dst: &EddyPath,
        id: u64,
    ) -> Result<Option<UfsMove>> {
        let (mount, from) = self.ufs_target(src);
        let (_, to) = self.ufs_target(dst);
        let ufs = self.ufs(&mount).await?;
        let intent = self
            .begin_intent(&Intent::Rename {
                src: src.clone(),
                dst: dst.clone(),
                ino: id,
            })
            .await?;
        failpoint("before-ufs-rename");
        let moved = ufs.rename(&from, &to).await;
        failpoint("after-ufs-rename");
        match moved {
            Ok(()) => {
                // A failure here only leaves the old fingerprints, which
                // the next sync corrects; the rename itself happened.
                let fingerprints = crate::refingerprint::after_rename(&ufs, &to)
                    .await
                    .unwrap_or_else(|e| {
                        tracing::warn!("fingerprints after renaming {from} -> {to}: {e}");
                        None
                    });
                Ok(Some(UfsMove {
                    ufs,
                    from,
                    to,
                    intent,
                    fingerprints,
                }))
            }
            Err(UfsError::NotFound(_)) => {
                self.drop_intent(intent);
                Ok(None)
            }
            Err(e) => {
                self.drop_intent(intent);
                Err(e.into())
            }
        }
    }

    pub async fn delete(&self, r: pb::DeleteRequest) -> Result<()> {
        let path = EddyPath::parse_bytes(&r.path)?;
        let opts = DeleteOpts {
            recursive: r.recursive,
            eddy_only: r.eddy_only,
        };
        self.sync_path(&path, None).await?;
        if !r.recursive {
            // Emptiness must count what the under-storage holds, too.
            self.sync_listing(&path, None).await?;
        }
        let who = self.who();
        let mut held = None;
        for _ in 0..ATTEMPTS {
            let (id, persisted) = {
                let ns = self.ns.read();
                ns.permit_delete(&who, &path, r.recursive)?;
                ns.check_delete(&path, opts)?
            };
            if r.file_id != 0 && id != r.file_id {
                return Err(MasterError::NotFound(format!(
                    "{path} (no longer file id {}; nothing was deleted)",
                    r.file_id
                )));
            }
            let touches_ufs = persisted && !r.eddy_only;
            let (mount, key) = self.ufs_target(&path);
            if touches_ufs && held.is_none() {
                // Checked again under the lock.
                held = Some(self.ufs_locks.exclusive(mount.id).await);
                continue;
            }
            let mut intent = None;
            if touches_ufs {
                let ufs = self.ufs(&mount).await?;
                let i = self
                    .begin_intent(&Intent::Delete {
                        path: path.clone(),
                        ino: id,
                    })
                    .await?;
                let deleted = ufs.delete(&key, r.recursive).await;
                failpoint("after-ufs-delete");
                match deleted {
                    Ok(()) | Err(UfsError::NotFound(_)) => intent = Some(i),
                    Err(e) => {
                        self.drop_intent(i);
                        return Err(match e {
                            UfsError::DirectoryNotEmpty(_) => {
                                MasterError::DirectoryNotEmpty(path.to_string())
                            }
                            e => e.into(),
                        });
                    }
                }
            }
            let now = now_ms();
            let result = self
                .mutate(|ns, fx| {
                    let at = ns.expect(&path, id)?;
                    if ns.persisted(at) != persisted {
                        return Ok(None);
                    }
                    let staged = ns.staged_in(at);
                    ns.delete(&path, opts, now, fx)?;
                    fx.ops.extend(intent.map(MetaOp::DeleteIntent));
                    Ok(Some(staged))
                })
                .await;
            match result {
                Ok(Some(staged)) => {
                    self.drop_staged(&mount, staged).await;
                    return Ok(());
                }
                // A file being written completed meanwhile: again, under the lock.
                Ok(None) => {}
                Err(e) => {
                    // Nothing at the path is this inode any more; the
                    // store's half (if any) concerned it alone.
                    if let Some(i) = intent {
                        self.drop_intent(i);
                    }
                    return Err(e);
                }
            }
        }
        Err(raced("deleting", &path))
    }
}

/// An under-storage rename done, waiting for its Eddy half.
struct UfsMove {
    ufs: std::sync::Arc<dyn eddy_ufs::UnderFileSystem>,
    from: eddy_ufs::UfsPath,
    to: eddy_ufs::UfsPath,
    intent: u64,
    fingerprints: Option<std::collections::HashMap<String, String>>,
}
