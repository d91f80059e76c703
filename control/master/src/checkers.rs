//! The background checkers `crate::server` runs periodically: TTLs,
//! replication bounds and persists waiting for a worker. Each gathers what
//! it needs under the namespace lock, then acts through the ordinary
//! paths (RPC methods, worker commands on the next heartbeat).

use std::collections::HashMap;

use eddy_proto::pb;

use crate::inode::*;
use crate::replication;
use crate::service::{MasterState, now_ms};

/// A bounded file as `check_replication` plans it: its blocks (id, file
/// offset, length), its min and max copies, its under-storage copy.
type BoundedFile = (Vec<(u64, u64, u64)>, u32, u32, Option<pb::UfsLocation>);

impl MasterState {
    /// Asks workers to persist files waiting for it: one holding every
    /// block of the file, at most one attempt in flight per file, failed
    /// attempts retried with backoff. Returns how many were asked.
    pub fn check_persists(&self) -> usize {
        let pending = self.ns.read().persist_pending();
        self.persist_files(pending, true)
    }

    /// Asks for the persists of `files` now (a file just completed
    /// ASYNC_THROUGH, `eddy fs persist`), instead of at the checker's next
    /// tick; with the worker's heartbeat held open (`heartbeat_wait`) the
    /// command reaches it at once. A file no live worker holds whole yet is
    /// left to the checker, not counted as a failed attempt.
    pub fn persist_soon(&self, files: Vec<u64>) -> usize {
        if files.is_empty() || self.reg.lock().awaiting_workers {
            return 0;
        }
        self.persist_files(files, false)
    }

    /// Asks workers to persist those of `files` that wait for it and are
    /// due; `unplaced_fails`: a file no worker can take counts as a failed
    /// attempt (backoff) and is warned of.
    fn persist_files(&self, files: Vec<u64>, unplaced_fails: bool) -> usize {
        let now = self.mono_ms();
        // The requests, built under the namespace lock; workers chosen after.
        let jobs: Vec<pb::PersistFile> = {
            let ns = self.ns.read();
            let reg = self.reg.lock();
            files
                .into_iter()
                .filter(|id| ns.get(*id).is_some_and(|i| i.flag(FLAG_PERSIST_PENDING)))
                .filter(|id| reg.persist_due(*id, now))
                .filter_map(|id| {
                    let ino = ns.get(id)?;
                    let path = ns.path_of(id)?;
                    let (m, _) = ns.mounts.ufs_path(&path);
                    // Written to the staging name; moved into place when
                    // the worker reports back (`file_persisted`).
                    Some(pb::PersistFile {
                        file_id: id,
                        ufs: Some(pb::UfsLocation {
                            mount_id: m.id,
                            key: crate::staging::key(id).as_str().to_string(),
                        }),
                        blocks: (0..ino.block_count())
                            .map(|i| pb::BlockReport {
                                block_id: eddy_proto::block_id(id, i),
                                length: ino.block_length(i),
                                tier: String::new(),
                            })
                            .collect(),
                        length: ino.length,
                    })
                })
                .collect()
        };
        let mut reg = self.reg.lock();
        let mut asked = 0;
        for cmd in jobs {
            let ids: Vec<u64> = cmd.blocks.iter().map(|b| b.block_id).collect();
            let Some(worker) = reg.holder_of_all(&ids) else {
                if !unplaced_fails {
                    continue;
                }
                if ids.iter().any(|b| reg.block(*b).is_none()) {
                    tracing::warn!(
                        "file {} waits to be persisted but is lost: a block has no copy on any live worker (retried in case its worker returns)",
                        cmd.file_id
                    );
                } else {
                    tracing::warn!(
                        "file {} waits to be persisted but no live worker holds all its blocks",
                        cmd.file_id
                    );
                }
                reg.persist_failed(cmd.file_id, now);
                continue;
            };
            reg.ask_persist(worker, cmd, now);
            asked += 1;
        }
        asked
    }

    /// Runs the action of every entry whose TTL has run out: `free` drops
    /// its cached copies (persisted data only, pins respected) and clears
    /// the TTL; `delete` removes it, from the under-storage too, as
    /// `eddy fs rm -R` would. Returns how many actions succeeded.
    pub async fn check_ttls(&self) -> usize {
        let expired = self.ns.read().expired_ttls(now_ms());
        let mut done = 0;
        for (path, action) in expired {
            let bytes = path.to_string().into_bytes();
            let r = match action {
                pb::TtlAction::Free => {
                    let freed = self
                        .free(pb::FreeRequest {
                            path: bytes.clone(),
                            recursive: true,
                            force: false,
                        })
                        .await;
                    match freed {
                        Ok(_) => self
                            .set_attribute(pb::SetAttributeRequest {
                                path: bytes,
                                ttl_ms: Some(-1),
                                ..Default::default()
                            })
                            .await
                            .map(|_| ()),
                        Err(e) => Err(e),
                    }
                }
                _ => {
                    self.delete(pb::DeleteRequest {
                        path: bytes,
                        recursive: true,
                        eddy_only: false,
                        file_id: 0,
                    })
                    .await
                }
            };
            match r {
                Ok(()) => {
                    tracing::info!("TTL expired: {} ({})", path, action.as_str_name());
                    done += 1;
                }
                Err(e) => tracing::warn!("TTL action on {path} failed, retrying later: {e}"),
            }
        }
        done
    }

    /// What the namespace knows of every file with replication bounds:
    /// its blocks (id, offset, length), min, max and under-storage copy.
    fn bounded_files(&self) -> Vec<BoundedFile> {
        let ns = self.ns.read();
        ns.replicated_files()
            .into_iter()
            .filter_map(|(id, blocks, min, max)| {
                let ino = ns.get(id)?;
                let ufs = if ino.flag(FLAG_PERSISTED) {
                    let path = ns.path_of(id)?;
                    let (mount, key) = ns.mounts.ufs_path(&path);
                    Some(pb::UfsLocation {
                        mount_id: mount.id,
                        key: key.as_str().to_string(),
                    })
                } else {
                    None
                };
                let blocks: Vec<(u64, u64, u64)> = blocks
                    .iter()
                    .enumerate()
                    .map(|(i, b)| (*b, i as u64 * ino.block_size, ino.block_length(i as u64)))
                    .collect();
                Some((blocks, min, max, ufs))
            })
            .collect()
    }

    /// Checks every bounded file's blocks against its replication min and
    /// max, and asks workers (on their next heartbeats) to add or drop
    /// copies. Returns the plan's figures (for tests and logs).
    pub fn check_replication(&self) -> replication::Plan {
        let files = self.bounded_files();
        let now = self.mono_ms();
        let mut reg = self.reg.lock();
        let live: Vec<u64> = reg.workers().filter(|w| w.live).map(|w| w.id).collect();
        let targets: Vec<replication::Target> = reg
            .candidates()
            .into_iter()
            .map(|c| replication::Target {
                worker: c.worker_id,
                free_bytes: c.free_bytes,
            })
            .collect();
        let mut bounded = Vec::new();
        let mut source = HashMap::new();
        for (blocks, min, max, ufs) in &files {
            for &(block, offset, length) in blocks {
                let holders: Vec<u64> = reg
                    .block(block)
                    .map(|m| {
                        m.workers
                            .iter()
                            .copied()
                            .filter(|w| live.contains(w))
                            .collect()
                    })
                    .unwrap_or_default();
                bounded.push(replication::Bounded {
                    block,
                    length,
                    min: *min,
                    max: *max,
                    holders,
                    in_ufs: ufs.is_some(),
                });
                source.insert(block, (length, offset, ufs.clone()));
            }
        }
        let coming = reg.copies_coming(now);
        let plan = replication::plan(&bounded, &targets, &coming);
        for a in &plan.actions {
            match a {
                replication::Action::Copy { block, to, from } => {
                    let (length, file_offset, ufs) = source[block].clone();
                    let sources = from
                        .iter()
                        .filter_map(|w| reg.worker(*w))
                        .map(|w| w.address.clone())
                        .collect();
                    reg.ask_copy(
                        *to,
                        pb::ReplicateBlock {
                            block_id: *block,
                            length,
                            sources,
                            ufs,
                            file_offset,
                        },
                        now,
                    );
                }
                replication::Action::Drop { block, from } => reg.ask_drop(*from, *block),
            }
        }
        reg.under_replicated = plan.under;
        reg.unsatisfiable = plan.unsatisfiable;
        if !plan.actions.is_empty() {
            tracing::info!(
                "replication: {} copy or drop requests; {} blocks under their min, {} of them unsatisfiable",
                plan.actions.len(),
                plan.under,
                plan.unsatisfiable
            );
        }
        plan
    }
}
