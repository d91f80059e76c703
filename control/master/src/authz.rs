//! From a [`Caller`] to the [`Access`] the namespace checks: the user's
//! groups as the master's OS knows them (HDFS's default
//! `ShellBasedUnixGroupsMapping`: `id -gn USER`, `id -Gn USER`), cached
//! with the lookups bounded (`crate::groups`), and whether it is the
//! superuser.
//!
//! The caller's access travels with the RPC's task ([`scope`], set by
//! `rpc.rs`); code running outside an RPC (background checkers, tests
//! calling `MasterState` directly) acts as the superuser: it is the
//! master's own work.

use std::sync::Arc;
use std::time::Duration;

use eddy_proto::auth::{AuthMode, SecurityConfig, valid_name};

use crate::error::{MasterError, Result};
use crate::groups::{GroupCache, Groups};
use crate::identity::{Caller, CallerKind};
use crate::namespace::perm::Access;

/// How long one `id` may take before the user is taken to have no groups.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

tokio::task_local! {
    static WHO: Access;
}

/// Runs `f` as `who`: every [`current`] inside it answers `who`.
pub async fn scope<T>(who: Access, f: impl std::future::Future<Output = T>) -> T {
    WHO.scope(who, f).await
}

/// Who the running RPC acts for; the superuser outside an RPC.
pub fn current(admin: &str) -> Access {
    WHO.try_with(Access::clone)
        .unwrap_or_else(|_| Access::unchecked(admin))
}

/// The superuser, the supergroup, and the users' groups.
pub struct Authority {
    pub mode: AuthMode,
    pub superuser: Arc<str>,
    pub supergroup: String,
    cache: GroupCache,
}

impl Authority {
    /// `[security] superuser`, else the OS user running the master.
    pub fn new(cfg: &SecurityConfig) -> Self {
        let superuser = if cfg.superuser.is_empty() {
            process_user()
        } else {
            cfg.superuser.clone()
        };
        Self {
            mode: cfg.authentication,
            superuser: Arc::from(superuser),
            supergroup: cfg.supergroup.clone(),
            cache: GroupCache::new(Default::default()),
        }
    }

    /// The access `caller` has. A worker's credential names no user: it
    /// may not use the namespace's user operations.
    pub async fn access(&self, caller: &Caller) -> Result<Access> {
        match caller.kind {
            CallerKind::Unchecked => Ok(Access::unchecked(&self.superuser)),
            CallerKind::Worker => Err(MasterError::PermissionDenied(format!(
                "Permission denied: worker {} authenticated with a worker credential, which is not a user's; \
                 use a user token (`eddy token create --user NAME`) for file system calls",
                caller.name
            ))),
            CallerKind::User => {
                let groups = self.groups(&caller.name).await;
                let superuser = *caller.name == *self.superuser
                    || (!self.supergroup.is_empty()
                        && groups.iter().any(|g| **g == *self.supergroup));
                Ok(Access {
                    user: caller.name.clone(),
                    groups,
                    superuser,
                    admin: self.superuser.clone(),
                    unchecked: false,
                })
            }
        }
    }

    /// The owner and group an entry created by `who` records: its user,
    /// and no group (so the parent's, as HDFS); what the request names
    /// when nothing is checked. The request's are validated either way.
    pub fn new_owner(
        &self,
        who: &Access,
        owner: String,
        group: String,
    ) -> Result<(String, String)> {
        crate::limits::owner("owner", &owner)?;
        crate::limits::owner("group", &group)?;
        if who.unchecked {
            return Ok((owner, group));
        }
        Ok((who.user.to_string(), String::new()))
    }

    /// `user`'s groups, primary first; none for a user the OS does not know.
    pub async fn groups(&self, user: &str) -> Groups {
        self.cache
            .get(user, |u| async move { lookup_groups(&u).await })
            .await
    }
}

/// `id -gn USER` then `id -Gn USER`, as HDFS runs them; `None` when the
/// user is unknown, the name could be taken for an option, or `id` fails.
async fn lookup_groups(user: &str) -> Option<Vec<String>> {
    if !valid_name(user) {
        return None;
    }
    let primary = run_id(&["-gn", "--", user]).await?;
    let all = run_id(&["-Gn", "--", user]).await?;
    let mut groups = vec![primary.trim().to_string()];
    for g in all.split_whitespace() {
        if !groups.iter().any(|x| x == g) {
            groups.push(g.to_string());
        }
    }
    groups.retain(|g| !g.is_empty());
    Some(groups)
}

async fn run_id(args: &[&str]) -> Option<String> {
    let out = tokio::process::Command::new("id")
        .args(args)
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(LOOKUP_TIMEOUT, out).await {
        Ok(Ok(o)) if o.status.success() => String::from_utf8(o.stdout).ok(),
        Ok(Ok(_)) => None,
        Ok(Err(e)) => {
            tracing::warn!("cannot run `id` to resolve groups: {e}");
            None
        }
        Err(_) => {
            tracing::warn!("`id {}` took over {LOOKUP_TIMEOUT:?}", args.join(" "));
            None
        }
    }
}

/// The OS user running this process (`id -un`), else $USER, else root.
fn process_user() -> String {
    std::process::Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| valid_name(s))
        .or_else(|| std::env::var("USER").ok().filter(|u| valid_name(u)))
        .unwrap_or_else(|| "root".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn groups_come_from_the_os_and_strangers_have_none() {
        let a = Authority::new(&SecurityConfig::default());
        let me = process_user();
        let g = a.groups(&me).await;
        assert!(!g.is_empty(), "{me} has a primary group");
        assert!(a.groups("eddy-no-such-user-x").await.is_empty());
        assert!(a.groups("-n").await.is_empty());
        let root = a.access(&Caller::user(&me)).await.unwrap();
        assert!(root.superuser);
        let other = a
            .access(&Caller::user("eddy-no-such-user-x"))
            .await
            .unwrap();
        assert!(!other.superuser);
        let w = Caller {
            kind: CallerKind::Worker,
            name: Arc::from("w1"),
        };
        let e = a.access(&w).await.unwrap_err();
        assert_eq!(e.code(), eddy_proto::EddyCode::PermissionDenied);
    }

    #[tokio::test]
    async fn the_access_follows_its_task_and_defaults_to_the_superuser() {
        assert!(current("root").superuser);
        let alice = Access::user("alice", &[], "root");
        let seen = scope(alice.clone(), async { current("root") }).await;
        assert_eq!(seen, alice);
    }
}
