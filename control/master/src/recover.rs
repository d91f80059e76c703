//! Start-up recovery of under-storage changes whose Eddy half never
//! committed (`crate::intent`), and of staging objects (`crate::staging`).

use eddy_ufs::UfsError;

use crate::error::{MasterError, Result};
use crate::intent::Intent;
use crate::metastore::MetaOp;
use crate::namespace::DeleteOpts;
use crate::service::{MasterState, now_ms};

/// What recovery does with one intent.
enum Settle {
    /// Nothing to do (it never happened, or acts on another inode now).
    Drop,
    /// The under-storage half happened: apply the Eddy half.
    Apply,
    /// A place whose commit never happened: move the object back.
    Unplace,
}

impl MasterState {
    /// Settles intents left by a master that stopped between an
    /// under-storage change and its metastore commit. An intent whose store
    /// cannot be reached stays for the next start.
    pub(crate) async fn resolve_intents(&self, intents: Vec<(u64, Vec<u8>)>) -> Result<()> {
        for (id, record) in intents {
            self.next_intent
                .fetch_max(id + 1, std::sync::atomic::Ordering::Relaxed);
            let intent = match Intent::decode(&record) {
                Ok(i) => i,
                Err(e) => {
                    tracing::warn!("dropping unreadable intent {id}: {e}");
                    self.drop_intent(id);
                    continue;
                }
            };
            match self.settle(&intent).await {
                Ok(Settle::Drop) => self.drop_intent(id),
                Ok(Settle::Apply) => self.apply_intent(id, &intent).await,
                Ok(Settle::Unplace) => {
                    let Intent::Place { path, ino } = &intent else {
                        unreachable!("only places are unplaced")
                    };
                    let (mount, key) = self.ufs_target(path);
                    let ufs = self.ufs(&mount).await?;
                    tracing::info!("moving {key} back to the staging name of file {ino}");
                    match ufs.place(&key, &crate::staging::key(*ino)).await {
                        Ok(()) => self.drop_intent(id),
                        Err(e) => {
                            tracing::warn!("intent {id} ({intent:?}) left for the next start: {e}")
                        }
                    }
                }
                Err(e) => tracing::warn!("intent {id} ({intent:?}) left for the next start: {e}"),
            }
        }
        Ok(())
    }

    /// Decides an intent: only while its path still names its inode, and
    /// by what the under-storage shows.
    async fn settle(&self, intent: &Intent) -> Result<Settle> {
        let (probe, ino) = intent.subject();
        {
            let ns = self.ns.read();
            match ns.lookup(probe) {
                Some(at) if ino == 0 || at == ino => {}
                _ => return Ok(Settle::Drop),
            }
            if let Intent::Place { .. } = intent
                && ns.persisted(ino)
            {
                // Its commit happened (the file completed or persisted).
                return Ok(Settle::Drop);
            }
        }
        let (mount, key) = self.ufs_target(probe);
        let ufs = self.ufs(&mount).await?;
        let there = |r: std::result::Result<eddy_ufs::UfsStatus, UfsError>| match r {
            Ok(_) => Ok(true),
            Err(UfsError::NotFound(_)) => Ok(false),
            Err(e) => Err(MasterError::from(e)),
        };
        let at_probe = there(ufs.stat(&key).await)?;
        Ok(match intent {
            Intent::Delete { .. } if !at_probe => Settle::Apply,
            Intent::Rename { dst, .. }
                if !at_probe && there(ufs.stat(&self.ufs_target(dst).1).await)? =>
            {
                Settle::Apply
            }
            Intent::Place { ino, .. }
                if at_probe && !there(ufs.stat(&crate::staging::key(*ino)).await)? =>
            {
                Settle::Unplace
            }
            _ => Settle::Drop,
        })
    }

    async fn apply_intent(&self, id: u64, intent: &Intent) {
        tracing::info!("completing in Eddy what the under-storage already did: {intent:?}");
        let now = now_ms();
        let applied = self
            .mutate(|ns, fx| {
                match intent {
                    Intent::Rename { src, dst, ino } => {
                        ns.expect(src, *ino)?;
                        ns.rename(src, dst, now, fx)?
                    }
                    Intent::Delete { path, ino } => {
                        ns.expect(path, *ino)?;
                        ns.delete(
                            path,
                            DeleteOpts {
                                recursive: true,
                                eddy_only: false,
                            },
                            now,
                            fx,
                        )?
                    }
                    Intent::Place { .. } => unreachable!("places are undone, not applied"),
                }
                fx.ops.push(MetaOp::DeleteIntent(id));
                Ok(())
            })
            .await;
        if let Err(e) = applied {
            // The tree no longer allows it; a sync adopts the store's state.
            tracing::warn!("could not complete {intent:?} in Eddy: {e}");
            self.drop_intent(id);
        }
    }
}
