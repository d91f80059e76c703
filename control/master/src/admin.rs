//! Administration: mounts, attributes, freeing cached copies, asking for
//! persists and checking persisted files against their under-storage.

use std::collections::BTreeMap;

use eddy_proto::pb;
use eddy_ufs::UfsPath;

use crate::error::{MasterError, Result};
use crate::inode::*;
use crate::limits;
use crate::mount::{MountPoint, SYNC_NEVER};
use crate::namespace::perm::{Need, WRITE};
use crate::namespace::{AttrChange, FreeOpts};
use crate::path::EddyPath;
use crate::service::{MasterState, now_ms};

pub(crate) fn mount_info(m: &MountPoint, mask: bool) -> pb::MountInfo {
    let options = m
        .options
        .iter()
        .map(|(k, v)| {
            let v = if mask && eddy_ufs::is_secret_option(k) {
                eddy_ufs::MASKED.to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    pb::MountInfo {
        path: m.path.as_str().as_bytes().to_vec(),
        ufs_uri: m.uri.clone(),
        read_only: m.read_only,
        options,
        sync_interval_ms: m.sync_interval_ms,
        mount_id: m.id,
    }
}

impl MasterState {
    /// Has the unpersisted files at `path` persisted in the background.
    pub async fn persist(&self, r: pb::PersistRequest) -> Result<u64> {
        let path = EddyPath::parse_bytes(&r.path)?;
        self.check_writable_ufs(&path)?;
        let write = Need {
            access: WRITE,
            ..Need::default()
        };
        self.ns.read().permit(&self.who(), &path, write)?;
        {
            // A lost file can never be persisted: say so instead of queueing.
            let ns = self.ns.read();
            let ino = ns.get(ns.resolve(&path)?).expect("resolved");
            if Self::lost(&self.reg.lock(), ino) {
                return Err(MasterError::DataLost(path.to_string()));
            }
        }
        let mut marked = Vec::new();
        self.mutate(|ns, fx| {
            marked = ns.mark_persist(&path, fx)?;
            Ok(())
        })
        .await?;
        let n = marked.len() as u64;
        self.persist_soon(marked);
        Ok(n)
    }

    /// See `CheckConsistencyRequest`: the persisted files at or below the
    /// path against their under-storage copies, 32 stats at a time.
    pub async fn check_consistency(
        &self,
        r: pb::CheckConsistencyRequest,
    ) -> Result<pb::CheckConsistencyResponse> {
        use futures::StreamExt;
        const MAX_LISTED: usize = 1000;
        let path = EddyPath::parse_bytes(&r.path)?;
        self.who()
            .require_superuser("check persisted files against their under-storage")?;
        // What Eddy believes, gathered under the lock; the stores asked after.
        let files: Vec<(EddyPath, MountPoint, UfsPath, u64, Fingerprint)> = {
            let ns = self.ns.read();
            let id = ns.resolve(&path)?;
            ns.subtree(id)
                .into_iter()
                .filter_map(|i| {
                    let ino = ns.get(i)?;
                    if ino.is_dir() || !ino.flag(FLAG_COMPLETE) || !ino.flag(FLAG_PERSISTED) {
                        return None;
                    }
                    let p = ns.path_of(i)?;
                    let (m, key) = ns.mounts.ufs_path(&p);
                    Some((p, m.clone(), key, ino.length, ino.fingerprint))
                })
                .collect()
        };
        let files_checked = files.len() as u64;
        let mut found = futures::stream::iter(files)
            .map(|(p, m, key, length, fingerprint)| async move {
                let reason = match self.ufs(&m).await {
                    Err(e) => Some(format!("the under-storage cannot be opened: {e}")),
                    Ok(u) => match u.stat(&key).await {
                        Err(eddy_ufs::UfsError::NotFound(_)) => {
                            Some("missing from the under-storage".to_string())
                        }
                        Err(e) => Some(format!("cannot stat it in the under-storage: {e}")),
                        Ok(st) if st.is_dir => Some("a directory in the under-storage".to_string()),
                        Ok(st) if st.length != length => Some(format!(
                            "{length} bytes in Eddy, {} in the under-storage",
                            st.length
                        )),
                        Ok(st)
                            if !fingerprint.is_none()
                                && Fingerprint::of(&st.fingerprint) != fingerprint =>
                        {
                            Some(
                                "changed in the under-storage (its fingerprint differs)"
                                    .to_string(),
                            )
                        }
                        Ok(_) => None,
                    },
                };
                reason.map(|reason| pb::Inconsistency {
                    path: p.as_str().as_bytes().to_vec(),
                    reason,
                })
            })
            .buffer_unordered(32);
        let mut inconsistent = Vec::new();
        let mut truncated = false;
        while let Some(x) = found.next().await {
            if let Some(x) = x {
                if inconsistent.len() < MAX_LISTED {
                    inconsistent.push(x);
                } else {
                    truncated = true;
                }
            }
        }
        inconsistent.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(pb::CheckConsistencyResponse {
            files_checked,
            inconsistent,
            truncated,
        })
    }

    fn check_writable_ufs(&self, path: &EddyPath) -> Result<()> {
        let ns = self.ns.read();
        let (m, _) = ns.mounts.ufs_path(path);
        if m.read_only {
            return Err(MasterError::ReadOnly(format!(
                "{path} is in read-only mount {}",
                m.path
            )));
        }
        Ok(())
    }

    pub async fn set_attribute(&self, r: pb::SetAttributeRequest) -> Result<pb::FileStatus> {
        let path = EddyPath::parse_bytes(&r.path)?;
        self.sync_path(&path, None).await?;
        let ch = AttrChange {
            mode: r.mode,
            owner: r.owner,
            group: r.group,
            pinned: r.pinned,
            pin_allow_demotion: r.pin_allow_demotion,
            ttl_ms: r.ttl_ms,
            ttl_action: match r.ttl_action {
                0 => None,
                a => Some(limits::ttl_action(a)?),
            },
            replication_min: r.replication_min,
            replication_max: r.replication_max,
            recursive: r.recursive,
        };
        let who = self.who();
        self.mutate(|ns, fx| {
            ns.permit_set_attribute(&who, &path, &ch)?;
            ns.set_attribute(&path, &ch, fx)
        })
        .await?;
        self.status_of(&path)
    }

    pub async fn mount(&self, r: pb::MountRequest) -> Result<()> {
        let path = EddyPath::parse_bytes(&r.path)?;
        self.who().require_superuser(&format!("mount {path}"))?;
        if r.ufs_uri.is_empty() {
            return Err(MasterError::InvalidArgument(
                "a mount needs an under-storage URI".into(),
            ));
        }
        let sync_interval_ms = r.sync_interval_ms.unwrap_or(SYNC_NEVER);
        if sync_interval_ms < -1 {
            return Err(MasterError::InvalidArgument(format!(
                "sync interval {sync_interval_ms} ms is invalid (-1 never, 0 always, or a positive interval)"
            )));
        }
        let options: BTreeMap<String, String> = r.options.into_iter().collect();
        limits::mount(&r.ufs_uri, &options)?;
        // Reachability first: a mount that cannot be opened is refused.
        let ufs = eddy_ufs::open_configured(&r.ufs_uri, &options, &self.cfg.ufs).await?;
        self.load_parent(&path).await?;
        self.sync_listing(&path, None).await?;
        let now = now_ms();
        let id = self
            .mutate(|ns, fx| {
                let id = ns.mounts.next_id();
                ns.mount(
                    MountPoint {
                        id,
                        path: path.clone(),
                        uri: r.ufs_uri.clone(),
                        read_only: r.read_only,
                        options,
                        sync_interval_ms,
                    },
                    now,
                    fx,
                )?;
                Ok(id)
            })
            .await?;
        self.ufs.lock().insert(id, ufs);
        Ok(())
    }

    pub async fn unmount(&self, r: pb::UnmountRequest) -> Result<()> {
        let path = EddyPath::parse_bytes(&r.path)?;
        self.who().require_superuser(&format!("unmount {path}"))?;
        let m = self.mutate(|ns, fx| ns.unmount(&path, fx)).await?;
        self.ufs.lock().remove(&m.id);
        Ok(())
    }

    /// Every mount, secret options masked.
    pub fn list_mounts(&self) -> Vec<pb::MountInfo> {
        self.ns
            .read()
            .mounts
            .iter()
            .map(|m| mount_info(m, true))
            .collect()
    }

    /// Drops the cached copies of `path`'s blocks from every worker (on their
    /// next heartbeat). Returns how many block copies were dropped.
    pub async fn free(&self, r: pb::FreeRequest) -> Result<u64> {
        let path = EddyPath::parse_bytes(&r.path)?;
        self.sync_path(&path, None).await?;
        let ns = self.ns.read();
        ns.permit_free(&self.who(), &path)?;
        let blocks = ns.free_targets(
            &path,
            FreeOpts {
                recursive: r.recursive,
                force: r.force,
            },
        )?;
        drop(ns);
        Ok(self.reg.lock().drop_blocks(blocks))
    }
}
