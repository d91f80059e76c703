//! Who may do what: POSIX permissions with HDFS's semantics (its
//! `FSPermissionChecker`), decided over the tree and nothing else. The
//! service asks here before any under-storage call and again inside the
//! mutation that applies a change, so a decision and the change it allows
//! see the same tree.
//!
//! A check names what an operation needs, as HDFS's `checkPermission`
//! does: execute on every ancestor of the path (traverse), and then some of
//! ownership of the target, access to the deepest existing ancestor, to the
//! parent, to the target itself, and to every directory below it.

use std::sync::Arc;

use crate::error::{MasterError, Result};
use crate::inode::{FLAG_DIR, Inode, ROOT_ID};
use crate::path::EddyPath;

use super::{AttrChange, Namespace};

pub const READ: u32 = 4;
pub const WRITE: u32 = 2;
pub const EXECUTE: u32 = 1;
pub const ALL: u32 = 7;
/// The sticky bit of a directory: only an entry's owner, the directory's
/// owner or the superuser may delete or rename the entry.
pub const STICKY: u32 = 0o1000;

/// The caller as permissions see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub user: Arc<str>,
    pub groups: Arc<[Arc<str>]>,
    /// The superuser (or a member of the supergroup, or a caller when
    /// authentication is `none`): every check passes.
    pub superuser: bool,
    /// The superuser's name: the owner of entries recorded with none
    /// (metastores from before permissions), and named in admin refusals.
    pub admin: Arc<str>,
    /// Nothing was checked (authentication `none`, or the master's own
    /// work): the owner and group a request names are taken as given.
    pub unchecked: bool,
}

impl Access {
    /// A caller for whom every check passes.
    pub fn superuser(admin: &str) -> Access {
        Access {
            user: Arc::from(admin),
            groups: Arc::from(Vec::new()),
            superuser: true,
            admin: Arc::from(admin),
            unchecked: false,
        }
    }

    /// A caller nothing was checked for: a superuser whose requests name
    /// the owner and group of what they create.
    pub fn unchecked(admin: &str) -> Access {
        Access {
            unchecked: true,
            ..Access::superuser(admin)
        }
    }

    /// An ordinary user in `groups`.
    pub fn user(user: &str, groups: &[&str], admin: &str) -> Access {
        Access {
            user: Arc::from(user),
            groups: groups.iter().map(|g| Arc::from(*g)).collect(),
            superuser: false,
            admin: Arc::from(admin),
            unchecked: false,
        }
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| &**g == group)
    }

    fn owner_of<'a>(&'a self, ino: &'a Inode) -> &'a str {
        if ino.owner.user.is_empty() {
            &self.admin
        } else {
            &ino.owner.user
        }
    }

    fn owns(&self, ino: &Inode) -> bool {
        self.superuser || self.owner_of(ino) == &*self.user
    }

    /// Whether the mode of `ino` grants all of `bits` (rwx) to this caller:
    /// the owner's bits if it owns it, else the group's if it is in the
    /// group, else the others' (POSIX: no fall-through between classes).
    fn allows(&self, ino: &Inode, bits: u32) -> bool {
        if self.superuser || bits == 0 {
            return true;
        }
        let granted = if self.owner_of(ino) == &*self.user {
            ino.mode >> 6
        } else if self.in_group(&ino.owner.group) {
            ino.mode >> 3
        } else {
            ino.mode
        } & 7;
        granted & bits == bits
    }

    /// Refuses an operation only the superuser may do.
    pub fn require_superuser(&self, what: &str) -> Result<()> {
        if self.superuser {
            return Ok(());
        }
        Err(MasterError::PermissionDenied(format!(
            "Permission denied: user={} may not {what}; only the superuser ({}) or a member of the supergroup may",
            self.user, self.admin
        )))
    }
}

/// What an operation needs beyond traversal (0: nothing).
#[derive(Debug, Clone, Copy, Default)]
pub struct Need {
    /// The caller owns the target.
    pub owner: bool,
    /// On the deepest existing ancestor (creating: `mkdir -p`).
    pub ancestor: u32,
    /// On the parent.
    pub parent: u32,
    /// On the target.
    pub access: u32,
    /// On every non-empty directory at or below the target.
    pub sub: u32,
}

/// HDFS's names for a set of rwx bits.
fn action(bits: u32) -> &'static str {
    match bits & 7 {
        0 => "NONE",
        1 => "EXECUTE",
        2 => "WRITE",
        3 => "WRITE_EXECUTE",
        4 => "READ",
        5 => "READ_EXECUTE",
        6 => "READ_WRITE",
        _ => "ALL",
    }
}

/// `drwxr-xr-x`, with `t`/`T` for the sticky bit, as `ls -l` (and HDFS).
pub fn mode_string(flags: u8, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(if flags & FLAG_DIR != 0 { 'd' } else { '-' });
    for shift in [6, 3, 0] {
        let b = mode >> shift;
        s.push(if b & 4 != 0 { 'r' } else { '-' });
        s.push(if b & 2 != 0 { 'w' } else { '-' });
        let x = b & 1 != 0;
        s.push(match (shift == 0 && mode & STICKY != 0, x) {
            (true, true) => 't',
            (true, false) => 'T',
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

impl Namespace {
    fn describe(&self, a: &Access, id: u64) -> String {
        let ino = &self.inodes[&id];
        let path = self.path_of(id).unwrap_or_else(EddyPath::root);
        let group = if ino.owner.group.is_empty() {
            "-"
        } else {
            &ino.owner.group
        };
        format!(
            "\"{path}\":{}:{group}:{}",
            a.owner_of(ino),
            mode_string(ino.flags, ino.mode)
        )
    }

    fn denied(&self, a: &Access, id: u64, bits: u32) -> MasterError {
        MasterError::PermissionDenied(format!(
            "Permission denied: user={}, access={}, inode={}",
            a.user,
            action(bits),
            self.describe(a, id)
        ))
    }

    fn need(&self, a: &Access, id: u64, bits: u32) -> Result<()> {
        if a.allows(&self.inodes[&id], bits) {
            Ok(())
        } else {
            Err(self.denied(a, id, bits))
        }
    }

    /// The inodes `path` resolves to, root first, as far as they exist
    /// (stopping below a file), and whether the whole path exists.
    fn chain(&self, path: &EddyPath) -> (Vec<u64>, bool) {
        let mut ids = vec![ROOT_ID];
        for c in path.components() {
            let at = *ids.last().expect("starts with the root");
            match self.inodes[&at].children().and_then(|ch| ch.get(c)) {
                Some(&next) => ids.push(next),
                None => return (ids, false),
            }
        }
        (ids, true)
    }

    /// Checks that `a` may do what `need` says to `path` (HDFS's
    /// `checkPermission`). Parts of the path that do not exist are not
    /// checked: the operation itself reports them missing.
    pub fn permit(&self, a: &Access, path: &EddyPath, need: Need) -> Result<()> {
        if a.superuser {
            return Ok(());
        }
        let (ids, whole) = self.chain(path);
        let target = whole.then(|| *ids.last().expect("not empty"));
        let ancestors = if whole {
            &ids[..ids.len() - 1]
        } else {
            &ids[..]
        };
        for &id in ancestors {
            if !self.inodes[&id].is_dir() {
                // The operation reports the file in the middle of the path.
                return Ok(());
            }
            self.need(a, id, EXECUTE)?;
        }
        if let Some(&anc) = ancestors.last() {
            self.need(a, anc, need.ancestor)?;
            if whole || ids.len() == path.depth() {
                self.need(a, anc, need.parent)?;
            }
        }
        let Some(t) = target else {
            return Ok(());
        };
        if need.owner && !a.owns(&self.inodes[&t]) {
            return Err(MasterError::PermissionDenied(format!(
                "Permission denied: user={} is not the owner of inode={}",
                a.user,
                self.describe(a, t)
            )));
        }
        self.need(a, t, need.access)?;
        if need.sub != 0 {
            for id in self.subtree(t) {
                let ino = &self.inodes[&id];
                if ino.children().is_some_and(|c| !c.is_empty()) {
                    self.need(a, id, need.sub)?;
                }
            }
        }
        Ok(())
    }

    /// The sticky-bit rule for removing or moving `path` out of its parent.
    fn permit_sticky(&self, a: &Access, path: &EddyPath) -> Result<()> {
        let Some(id) = self.lookup(path) else {
            return Ok(());
        };
        let parent = self.inodes[&id].parent;
        if id == ROOT_ID || a.superuser || self.inodes[&parent].mode & STICKY == 0 {
            return Ok(());
        }
        if a.owns(&self.inodes[&id]) || a.owns(&self.inodes[&parent]) {
            return Ok(());
        }
        Err(MasterError::PermissionDenied(format!(
            "Permission denied by sticky bit: user={}, path={}, parent={}",
            a.user,
            self.describe(a, id),
            self.describe(a, parent)
        )))
    }

    /// Delete: write on the parent, the sticky bit, and for a recursive
    /// delete everything on every directory below (HDFS's subAccess ALL).
    pub fn permit_delete(&self, a: &Access, path: &EddyPath, recursive: bool) -> Result<()> {
        self.permit(
            a,
            path,
            Need {
                parent: WRITE | EXECUTE,
                sub: if recursive { ALL } else { 0 },
                ..Need::default()
            },
        )?;
        self.permit_sticky(a, path)
    }

    /// Rename: write on both parents, the sticky bit of the source's.
    pub fn permit_rename(&self, a: &Access, src: &EddyPath, dst: &EddyPath) -> Result<()> {
        self.permit(
            a,
            src,
            Need {
                parent: WRITE | EXECUTE,
                ..Need::default()
            },
        )?;
        self.permit_sticky(a, src)?;
        self.permit(
            a,
            dst,
            Need {
                ancestor: WRITE | EXECUTE,
                ..Need::default()
            },
        )
    }

    /// Creating `path` (a file or `mkdir`, `-p` or not): write and execute
    /// on the deepest directory that exists. A directory that exists
    /// already (`mkdir -p`) needs only traversal, as in HDFS.
    pub fn permit_create(&self, a: &Access, path: &EddyPath) -> Result<()> {
        if self
            .lookup(path)
            .is_some_and(|id| self.inodes[&id].is_dir())
        {
            return self.permit(a, path, Need::default());
        }
        self.permit(
            a,
            path,
            Need {
                ancestor: WRITE | EXECUTE,
                ..Need::default()
            },
        )
    }

    /// A change of attributes, on the target (and everything below it with
    /// `recursive`): chmod by the owner; chown by the superuser; chgrp by
    /// the owner to a group it is in; pin and TTL need write; replication
    /// bounds are the superuser's.
    pub fn permit_set_attribute(&self, a: &Access, path: &EddyPath, ch: &AttrChange) -> Result<()> {
        self.permit(a, path, Need::default())?;
        if a.superuser {
            return Ok(());
        }
        if ch.owner.is_some() {
            a.require_superuser("change the owner of a file (chown)")?;
        }
        if ch.replication_min.is_some() || ch.replication_max.is_some() {
            a.require_superuser("change replication bounds")?;
        }
        if let Some(g) = &ch.group
            && !a.in_group(g)
        {
            return Err(MasterError::PermissionDenied(format!(
                "Permission denied: user={} does not belong to group {g}; only the superuser ({}) may give a file to a group its owner is not in",
                a.user, a.admin
            )));
        }
        let Some(id) = self.lookup(path) else {
            return Ok(());
        };
        let ids = if ch.recursive {
            self.subtree(id)
        } else {
            vec![id]
        };
        let owner = ch.mode.is_some() || ch.group.is_some();
        let write = ch.pinned.is_some() || ch.ttl_ms.is_some() || ch.ttl_action.is_some();
        for i in ids {
            let ino = &self.inodes[&i];
            if owner && !a.owns(ino) {
                return Err(MasterError::PermissionDenied(format!(
                    "Permission denied: user={} is not the owner of inode={}",
                    a.user,
                    self.describe(a, i)
                )));
            }
            if write {
                self.need(a, i, WRITE)?;
            }
        }
        Ok(())
    }

    /// Only the owner of inode `id` (or the superuser) passes.
    pub fn permit_id_owner(&self, a: &Access, id: u64) -> Result<()> {
        match self.inodes.get(&id) {
            Some(ino) if !a.owns(ino) => Err(MasterError::PermissionDenied(format!(
                "Permission denied: user={} is not the owner of inode={}",
                a.user,
                self.describe(a, id)
            ))),
            _ => Ok(()),
        }
    }

    /// Free: anyone may free what it owns; others' files are the
    /// superuser's to free.
    pub fn permit_free(&self, a: &Access, path: &EddyPath) -> Result<()> {
        self.permit(a, path, Need::default())?;
        let Some(id) = self.lookup(path) else {
            return Ok(());
        };
        match self
            .subtree(id)
            .into_iter()
            .find(|i| !self.inodes[i].is_dir() && !a.owns(&self.inodes[i]))
        {
            None => Ok(()),
            Some(_) => {
                a.require_superuser(&format!("free {path}, which holds files of other users"))
            }
        }
    }
}

#[cfg(test)]
mod tests;
