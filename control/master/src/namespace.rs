//! The namespace tree: pure in-memory decisions, no I/O.
//!
//! Every mutating method validates first and changes nothing on error; on
//! success it records the durable changes in [`Effects`], which the caller
//! submits to the metastore while still holding the namespace lock. Under-
//! storage I/O happens outside, in `service.rs`, before or after these calls.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use eddy_proto::pb::TtlAction;
use eddy_ufs::UfsStatus;

use crate::error::{MasterError, Result};
use crate::inode::*;
use crate::metastore::{self, Loaded, MetaOp};
use crate::mount::{MountPoint, MountTable};
use crate::path::EddyPath;
use crate::table::InodeTable;

mod by_id;
mod effects;
mod mounts;
pub mod perm;
mod tree;
mod ufs_merge;
mod upkeep;
pub use by_id::Completion;
pub use effects::{Effects, ID_RESERVATION};

/// Largest accepted block size (1 TiB) and smallest (4 KiB, a page).
pub const MAX_BLOCK_SIZE: u64 = 1 << 40;
pub const MIN_BLOCK_SIZE: u64 = 4096;
/// Largest number of blocks a file may have (the index bits of a block id).
pub const MAX_BLOCKS_PER_FILE: u64 = 1 << eddy_proto::BLOCK_INDEX_BITS;

/// Attributes of a new inode.
#[derive(Debug, Clone)]
pub struct NewAttrs {
    pub mode: Option<u32>,
    pub owner: String,
    pub group: String,
    pub block_size: u64,
    pub replication_min: u32,
    pub replication_max: u32,
    pub ttl_ms: i64,
    pub ttl_action: TtlAction,
    /// A file whose writer puts its bytes at its staging name in the
    /// under-storage (CACHE_THROUGH, THROUGH), moved into place on complete.
    pub staged: bool,
}

impl Default for NewAttrs {
    fn default() -> Self {
        Self {
            mode: None,
            owner: String::new(),
            group: String::new(),
            block_size: 0,
            replication_min: 0,
            replication_max: 0,
            ttl_ms: -1,
            ttl_action: TtlAction::Unspecified,
            staged: false,
        }
    }
}

/// A change of attributes; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct AttrChange {
    pub mode: Option<u32>,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub pinned: Option<bool>,
    /// With `pinned: Some(true)`: whether the pin lets blocks move down to
    /// disk tiers (they still never leave the worker).
    pub pin_allow_demotion: Option<bool>,
    pub ttl_ms: Option<i64>,
    pub ttl_action: Option<TtlAction>,
    pub replication_min: Option<u32>,
    pub replication_max: Option<u32>,
    pub recursive: bool,
}

/// How `mkdir` treats missing ancestors and an existing directory.
#[derive(Clone, Copy, Debug, Default)]
pub struct MkdirOpts {
    /// Create missing ancestors too (`mkdir -p`).
    pub recursive: bool,
    /// An existing directory is success, not ALREADY_EXISTS.
    pub allow_exists: bool,
    /// The new directories exist in the under-storage too.
    pub persisted: bool,
}

/// How `create_file` treats missing ancestors.
#[derive(Clone, Copy, Debug, Default)]
pub struct CreateOpts {
    /// Create missing ancestor directories too.
    pub recursive: bool,
    /// Those ancestors exist in the under-storage too.
    pub parents_persisted: bool,
}

/// What a `delete` may remove.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeleteOpts {
    /// A non-empty directory is removed with everything below it.
    pub recursive: bool,
    /// Eddy's entry only: the under-storage copy stays (so read-only
    /// mounts allow it).
    pub eddy_only: bool,
}

/// What a `free` may drop.
#[derive(Clone, Copy, Debug, Default)]
pub struct FreeOpts {
    /// A non-empty directory is freed with everything below it.
    pub recursive: bool,
    /// Pinned files are freed too.
    pub force: bool,
}

pub struct Namespace {
    inodes: InodeTable,
    next_id: u64,
    /// Ids below this are reserved durably (`ID_RESERVATION`).
    id_reserved: u64,
    pub mounts: MountTable,
    /// Interned owners (see [`Owner`]).
    owners: HashSet<Arc<Owner>>,
    /// Pinned files (workers never evict their blocks), and a version that
    /// changes with the set so heartbeats send it only when it changed.
    pinned: BTreeSet<u64>,
    /// Pinned files whose pin allows demotion to disk tiers.
    pin_demotable: BTreeSet<u64>,
    /// Files waiting to be persisted; workers treat them as pinned.
    persist_pending: BTreeSet<u64>,
    pin_version: u64,
    pub default_block_size: u64,
}

fn validate_replication(min: u32, max: u32) -> Result<()> {
    if max != 0 && min > max {
        return Err(MasterError::InvalidArgument(format!(
            "replication_min {min} is larger than replication_max {max}"
        )));
    }
    Ok(())
}

fn validate_owner(owner: &str, group: &str) -> Result<()> {
    crate::limits::owner("owner", owner)?;
    crate::limits::owner("group", group)
}

fn validate_mode(mode: u32) -> Result<()> {
    if mode > 0o7777 {
        return Err(MasterError::InvalidArgument(format!(
            "mode {mode:o} has bits beyond 07777"
        )));
    }
    Ok(())
}

impl Namespace {
    /// A fresh namespace holding only the root directory, owned by no one
    /// recorded (that is, by the superuser).
    pub fn new(root_mount: MountPoint, default_block_size: u64, now: i64) -> (Self, Effects) {
        Self::new_owned(root_mount, default_block_size, now, "", "")
    }

    /// A fresh namespace whose root belongs to `owner`:`group`, mode 0755
    /// (HDFS: the superuser and the supergroup).
    pub fn new_owned(
        root_mount: MountPoint,
        default_block_size: u64,
        now: i64,
        owner: &str,
        group: &str,
    ) -> (Self, Effects) {
        let mut ns = Namespace {
            inodes: InodeTable::default(),
            next_id: ROOT_ID + 1,
            id_reserved: ROOT_ID + 1 + ID_RESERVATION,
            mounts: MountTable::default(),
            owners: HashSet::new(),
            pinned: BTreeSet::new(),
            pin_demotable: BTreeSet::new(),
            persist_pending: BTreeSet::new(),
            pin_version: 1,
            default_block_size,
        };
        let attrs = NewAttrs {
            mode: Some(0o755),
            owner: owner.into(),
            group: group.into(),
            ..NewAttrs::default()
        };
        let mut root = ns.new_inode(ROOT_ID, 0, "", true, &attrs, now);
        // The flags go on before the record is made: a root recorded without
        // them comes back from a restart unpersisted, and sync skips it.
        root.set_flag(FLAG_PERSISTED | FLAG_MOUNT_POINT, true);
        let mut fx = Effects::default();
        fx.ops.push(metastore::put(&root));
        fx.ops.push(MetaOp::PutMount {
            path: "/".into(),
            record: root_mount.encode(),
        });
        fx.next_id = Some(ns.id_reserved);
        ns.inodes.insert(ROOT_ID, root);
        ns.mounts.insert(root_mount);
        (ns, fx)
    }

    /// Rebuilds the namespace from the metastore. `None` if it is empty.
    pub fn load(loaded: Loaded, default_block_size: u64) -> Result<Option<Self>> {
        if loaded.inodes.is_empty() {
            return Ok(None);
        }
        let mut ns = Namespace {
            inodes: InodeTable::with_capacity(loaded.inodes.len()),
            next_id: loaded.next_id,
            id_reserved: 0,
            mounts: MountTable::default(),
            owners: HashSet::new(),
            pinned: BTreeSet::new(),
            pin_demotable: BTreeSet::new(),
            persist_pending: BTreeSet::new(),
            pin_version: 1,
            default_block_size,
        };
        let mut max_id = 0;
        for rec in &loaded.inodes {
            let owners = &mut ns.owners;
            let ino = Inode::decode(rec, &mut |u, g| intern(owners, u, g))?;
            max_id = max_id.max(ino.id);
            if !ino.is_dir() && ino.flag(FLAG_PERSIST_PENDING) {
                ns.persist_pending.insert(ino.id);
            }
            if !ino.is_dir() && ino.flag(FLAG_PINNED) {
                ns.pinned.insert(ino.id);
                if ino.flag(FLAG_PIN_DEMOTE) {
                    ns.pin_demotable.insert(ino.id);
                }
            }
            ns.inodes.insert(ino.id, ino);
        }
        // A corrupt record may carry any id; the top one leaves no next id.
        let after_max = max_id.checked_add(1).ok_or_else(|| {
            MasterError::Metastore(format!(
                "inode id {max_id} leaves no id for the next inode; the metastore is corrupt"
            ))
        })?;
        // The stored next id is the end of the last reservation: ids a
        // lost create was given lie below it. The first new id reserves.
        ns.next_id = ns.next_id.max(after_max);
        ns.id_reserved = ns.next_id;
        // Children are derived from parent links, never stored.
        let links: Vec<(u64, u64, Arc<str>)> = ns
            .inodes
            .values()
            .filter(|i| i.id != ROOT_ID)
            .map(|i| (i.parent, i.id, i.name.clone()))
            .collect();
        for (parent, id, name) in links {
            match ns.inodes.get_mut(&parent).and_then(|p| p.dir.as_mut()) {
                Some(d) => {
                    d.children.insert(name, id);
                }
                None => {
                    return Err(MasterError::Metastore(format!(
                        "inode {id} names parent {parent}, which is not a directory in the metastore"
                    )));
                }
            }
        }
        match ns.inodes.get_mut(&ROOT_ID) {
            // Metastores written before the root was recorded with its flags
            // hold it without them; the root is always the root mount's
            // point and always exists in its under-storage.
            Some(root) => root.set_flag(FLAG_PERSISTED | FLAG_MOUNT_POINT, true),
            None => return Err(MasterError::Metastore("the root inode is missing".into())),
        }
        for (path, rec) in &loaded.mounts {
            ns.mounts.insert(MountPoint::decode(path, rec)?);
        }
        if ns.mounts.get(&EddyPath::root()).is_none() {
            return Err(MasterError::Metastore("the root mount is missing".into()));
        }
        Ok(Some(ns))
    }

    pub fn inode_count(&self) -> usize {
        self.inodes.len()
    }

    pub fn get(&self, id: u64) -> Option<&Inode> {
        self.inodes.get(&id)
    }

    fn inode_mut(&mut self, id: u64) -> &mut Inode {
        self.inodes
            .get_mut(&id)
            .expect("inode ids held by the tree exist")
    }

    fn intern(&mut self, user: &str, group: &str) -> Arc<Owner> {
        intern(&mut self.owners, user, group)
    }

    fn alloc_id(&mut self, fx: &mut Effects) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        if self.next_id > self.id_reserved {
            self.id_reserved = id.saturating_add(ID_RESERVATION);
            fx.next_id = Some(self.id_reserved);
        }
        id
    }

    fn new_inode(
        &mut self,
        id: u64,
        parent: u64,
        name: &str,
        is_dir: bool,
        a: &NewAttrs,
        now: i64,
    ) -> Inode {
        // No group given: the parent's, as HDFS (BSD semantics), so a
        // directory's group carries down to what is created in it.
        let group = match self.inodes.get(&parent) {
            Some(p) if a.group.is_empty() && id != ROOT_ID => p.owner.group.clone(),
            _ => a.group.as_str().into(),
        };
        let owner = self.intern(&a.owner, &group);
        Inode {
            id,
            parent,
            name: Arc::from(name),
            flags: if is_dir { FLAG_DIR | FLAG_COMPLETE } else { 0 },
            length: 0,
            block_size: if is_dir {
                0
            } else if a.block_size == 0 {
                self.default_block_size
            } else {
                a.block_size
            },
            mtime_ms: now,
            created_ms: now,
            mode: a.mode.unwrap_or(if is_dir { 0o755 } else { 0o644 }),
            owner,
            ttl_ms: a.ttl_ms,
            ttl_action: a.ttl_action,
            replication_min: a.replication_min,
            replication_max: a.replication_max,
            fingerprint: Fingerprint::NONE,
            synced_ms: now,
            dir: is_dir.then(Default::default),
        }
    }

    /// Attributes of an entry that first appears from the under-storage
    /// below `parent`: the owner and group of the mount point it is under
    /// (stores carry no Eddy owner; the mount's owner is the superuser
    /// unless chown'ed), the default modes.
    fn loaded_attrs(&self, parent: u64) -> NewAttrs {
        let mut at = parent;
        while at != ROOT_ID && !self.inodes[&at].flag(FLAG_MOUNT_POINT) {
            at = self.inodes[&at].parent;
        }
        let o = &self.inodes[&at].owner;
        NewAttrs {
            owner: o.user.to_string(),
            group: o.group.to_string(),
            ..NewAttrs::default()
        }
    }

    /// Inserts `ino` under its parent and records it.
    fn attach(&mut self, ino: Inode, fx: &mut Effects) -> u64 {
        let (id, parent, name) = (ino.id, ino.parent, ino.name.clone());
        fx.ops.push(metastore::put(&ino));
        self.inodes.insert(id, ino);
        let mtime = self.inodes[&id].mtime_ms;
        let p = self.inode_mut(parent);
        p.dir
            .as_mut()
            .expect("parent is a directory")
            .children
            .insert(name, id);
        if mtime > p.mtime_ms {
            // The parent's new mtime is durable with the child, or a restart
            // rolls it back.
            p.mtime_ms = mtime;
            fx.ops.push(metastore::put(p));
        }
        id
    }

    /// The inode at `path`, if Eddy knows it.
    pub fn lookup(&self, path: &EddyPath) -> Option<u64> {
        let mut id = ROOT_ID;
        for c in path.components() {
            id = *self.inodes.get(&id)?.children()?.get(c)?;
        }
        Some(id)
    }

    /// Walks `path` and returns how far Eddy knows it: the id of the deepest
    /// known inode and how many components were resolved.
    pub fn deepest_known(&self, path: &EddyPath) -> (u64, usize) {
        let mut id = ROOT_ID;
        let mut depth = 0;
        for c in path.components() {
            match self.inodes[&id].children().and_then(|ch| ch.get(c)) {
                Some(&next) => {
                    id = next;
                    depth += 1;
                }
                None => break,
            }
        }
        (id, depth)
    }

    /// Like [`lookup`](Self::lookup), but with the errors a user expects:
    /// a file in the middle of the path is `NotADirectory`, a gap is `NotFound`.
    pub fn resolve(&self, path: &EddyPath) -> Result<u64> {
        let mut id = ROOT_ID;
        let mut walked = EddyPath::root();
        for c in path.components() {
            let ino = &self.inodes[&id];
            let Some(children) = ino.children() else {
                return Err(MasterError::NotADirectory(walked.to_string()));
            };
            walked = walked.join(c);
            id = *children
                .get(c)
                .ok_or_else(|| MasterError::NotFound(path.to_string()))?;
        }
        Ok(id)
    }

    fn check_writable(&self, path: &EddyPath) -> Result<()> {
        let m = self.mounts.resolve(path);
        if m.read_only {
            return Err(MasterError::ReadOnly(format!(
                "{path} (mounted from {})",
                m.uri
            )));
        }
        Ok(())
    }

    /// The directory that will hold `path`, with `recursive` allowing missing
    /// ancestors. Returns the deepest existing ancestor's id and the names still to create.
    fn parent_for_create<'p>(
        &self,
        path: &'p EddyPath,
        recursive: bool,
    ) -> Result<(u64, Vec<&'p str>)> {
        let parent = path
            .parent()
            .ok_or_else(|| MasterError::AlreadyExists("/".into()))?;
        let (id, depth) = self.deepest_known(&parent);
        let ino = &self.inodes[&id];
        let missing: Vec<&str> = path.components().skip(depth).collect();
        if !ino.is_dir() {
            let mut at = EddyPath::root();
            for c in path.components().take(depth) {
                at = at.join(c);
            }
            return Err(MasterError::NotADirectory(at.to_string()));
        }
        if missing.len() > 1 && !recursive {
            // Name the fix a user can type: neither `put` nor `cp` has a
            // recursive option to point at.
            return Err(MasterError::NotFound(format!(
                "{parent} (the parent directory; create it first with `eddy fs mkdir -p {parent}`)"
            )));
        }
        Ok((id, missing))
    }

    /// Ancestors of `path` that `mkdir`/`create` would have to create.
    pub fn missing_ancestors(&self, path: &EddyPath) -> usize {
        let parent = path.parent().unwrap_or_else(EddyPath::root);
        let (_, depth) = self.deepest_known(&parent);
        parent.depth() - depth
    }

    /// Validates a mkdir without doing it: `Some(id)` when the directory
    /// already exists and `opts.allow_exists` accepts that.
    pub fn check_mkdir(
        &self,
        path: &EddyPath,
        opts: MkdirOpts,
        attrs: &NewAttrs,
    ) -> Result<Option<u64>> {
        if let Some(id) = self.lookup(path) {
            return if self.inodes[&id].is_dir() && opts.allow_exists {
                Ok(Some(id))
            } else if self.inodes[&id].is_dir() {
                Err(MasterError::AlreadyExists(path.to_string()))
            } else {
                Err(MasterError::AlreadyExists(format!("{path} (a file)")))
            };
        }
        if let Some(m) = attrs.mode {
            validate_mode(m)?;
        }
        validate_owner(&attrs.owner, &attrs.group)?;
        self.check_writable(path)?;
        self.parent_for_create(path, opts.recursive)?;
        Ok(None)
    }

    /// Creates directory `path` (and missing ancestors if `opts.recursive`).
    /// Returns the directory's id.
    pub fn mkdir(
        &mut self,
        path: &EddyPath,
        opts: MkdirOpts,
        attrs: &NewAttrs,
        now: i64,
        fx: &mut Effects,
    ) -> Result<u64> {
        if let Some(id) = self.check_mkdir(path, opts, attrs)? {
            return Ok(id);
        }
        let (mut parent, missing) = self.parent_for_create(path, opts.recursive)?;
        for name in missing {
            let id = self.alloc_id(fx);
            let mut ino = self.new_inode(id, parent, name, true, attrs, now);
            ino.set_flag(FLAG_PERSISTED, opts.persisted);
            parent = self.attach(ino, fx);
        }
        Ok(parent)
    }

    /// Validates a create without doing it.
    pub fn check_create(&self, path: &EddyPath, recursive: bool, attrs: &NewAttrs) -> Result<()> {
        if path.is_root() {
            return Err(MasterError::AlreadyExists("/".into()));
        }
        if self.lookup(path).is_some() {
            return Err(MasterError::AlreadyExists(path.to_string()));
        }
        if attrs.block_size != 0 && !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&attrs.block_size) {
            return Err(MasterError::InvalidArgument(format!(
                "block size {} is outside {MIN_BLOCK_SIZE}..={MAX_BLOCK_SIZE} bytes",
                attrs.block_size
            )));
        }
        if let Some(m) = attrs.mode {
            validate_mode(m)?;
        }
        validate_owner(&attrs.owner, &attrs.group)?;
        validate_replication(attrs.replication_min, attrs.replication_max)?;
        self.check_writable(path)?;
        self.parent_for_create(path, recursive)?;
        Ok(())
    }

    /// Creates an incomplete file at `path`.
    pub fn create_file(
        &mut self,
        path: &EddyPath,
        opts: CreateOpts,
        attrs: &NewAttrs,
        now: i64,
        fx: &mut Effects,
    ) -> Result<u64> {
        self.check_create(path, opts.recursive, attrs)?;
        let alone = fx.is_empty();
        let (mut parent, missing) = self.parent_for_create(path, opts.recursive)?;
        let dir_attrs = NewAttrs {
            mode: None,
            ..attrs.clone()
        };
        let (last, dirs) = missing.split_last().expect("the file itself is missing");
        for name in dirs {
            let id = self.alloc_id(fx);
            let mut ino = self.new_inode(id, parent, name, true, &dir_attrs, now);
            ino.set_flag(FLAG_PERSISTED, opts.parents_persisted);
            parent = self.attach(ino, fx);
        }
        let id = self.alloc_id(fx);
        let mut ino = self.new_inode(id, parent, last, false, attrs, now);
        ino.set_flag(FLAG_STAGED, attrs.staged);
        fx.deferrable = alone && dirs.is_empty() && fx.next_id.is_none();
        Ok(self.attach(ino, fx))
    }

    /// Marks the file at `path` complete with its final length.
    pub fn complete_file(
        &mut self,
        path: &EddyPath,
        length: u64,
        persisted: bool,
        fingerprint: &str,
        now: i64,
        fx: &mut Effects,
    ) -> Result<u64> {
        let id = self.resolve(path)?;
        let done = Completion {
            path: path.as_str(),
            length,
            persisted,
            fingerprint,
        };
        self.complete_id(id, &done, now, fx)?;
        Ok(id)
    }

    pub fn set_attribute(
        &mut self,
        path: &EddyPath,
        ch: &AttrChange,
        fx: &mut Effects,
    ) -> Result<u64> {
        let id = self.resolve(path)?;
        if let Some(m) = ch.mode {
            validate_mode(m)?;
        }
        validate_owner(
            ch.owner.as_deref().unwrap_or(""),
            ch.group.as_deref().unwrap_or(""),
        )?;
        if let Some(t) = ch.ttl_ms
            && t < -1
        {
            return Err(MasterError::InvalidArgument(format!(
                "ttl {t} ms is negative (use -1 for no TTL)"
            )));
        }
        let ids = if ch.recursive {
            self.subtree(id)
        } else {
            vec![id]
        };
        for &i in &ids {
            let ino = &self.inodes[&i];
            validate_replication(
                ch.replication_min.unwrap_or(ino.replication_min),
                ch.replication_max.unwrap_or(ino.replication_max),
            )?;
        }
        for i in ids {
            if ch.owner.is_some() || ch.group.is_some() {
                let cur = self.inodes[&i].owner.clone();
                let user = ch.owner.as_deref().unwrap_or(&cur.user);
                let group = ch.group.as_deref().unwrap_or(&cur.group);
                let owner = self.intern(user, group);
                self.inode_mut(i).owner = owner;
            }
            let ino = self
                .inodes
                .get_mut(&i)
                .expect("inode ids held by the tree exist");
            if let Some(m) = ch.mode {
                ino.mode = m;
            }
            if let Some(p) = ch.pinned {
                let demote = p && ch.pin_allow_demotion.unwrap_or(false);
                ino.set_flag(FLAG_PINNED, p);
                ino.set_flag(FLAG_PIN_DEMOTE, demote);
                if !ino.is_dir() {
                    let mut changed = if p {
                        self.pinned.insert(i)
                    } else {
                        self.pinned.remove(&i)
                    };
                    changed |= if demote {
                        self.pin_demotable.insert(i)
                    } else {
                        self.pin_demotable.remove(&i)
                    };
                    self.pin_version += u64::from(changed);
                }
            }
            if let Some(t) = ch.ttl_ms {
                ino.ttl_ms = t;
            }
            if let Some(a) = ch.ttl_action {
                ino.ttl_action = a;
            }
            if let Some(r) = ch.replication_min {
                ino.replication_min = r;
            }
            if let Some(r) = ch.replication_max {
                ino.replication_max = r;
            }
            fx.ops.push(metastore::put(ino));
        }
        Ok(id)
    }

    /// The path of inode `id` (None if it is not in the tree).
    pub fn path_of(&self, id: u64) -> Option<EddyPath> {
        let mut names = Vec::new();
        let mut at = id;
        while at != ROOT_ID {
            let ino = self.inodes.get(&at)?;
            names.push(ino.name.clone());
            at = ino.parent;
        }
        let mut p = EddyPath::root();
        for n in names.iter().rev() {
            p = p.join(n);
        }
        Some(p)
    }

    /// One page of a directory's children (or the file itself for a file).
    pub fn list(&self, id: u64, start_after: &str, limit: usize) -> (Vec<u64>, Option<String>) {
        let ino = &self.inodes[&id];
        let Some(children) = ino.children() else {
            return (vec![id], None);
        };
        use std::ops::Bound;
        let lower = if start_after.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(start_after)
        };
        let mut it = children.range::<str, _>((lower, Bound::Unbounded));
        let page: Vec<(&Arc<str>, &u64)> = it.by_ref().take(limit).collect();
        let next = if it.next().is_some() {
            page.last().map(|(n, _)| n.to_string())
        } else {
            None
        };
        (page.into_iter().map(|(_, &id)| id).collect(), next)
    }
}

fn intern(owners: &mut HashSet<Arc<Owner>>, user: &str, group: &str) -> Arc<Owner> {
    let o = Owner::new(user, group);
    if let Some(a) = owners.get(&o) {
        return a.clone();
    }
    let a = Arc::new(o);
    owners.insert(a.clone());
    a
}

/// Block ids of a file's current content.
pub fn file_blocks(ino: &Inode) -> impl Iterator<Item = u64> + use<> {
    let id = ino.id;
    let n = if ino.flag(FLAG_COMPLETE) {
        ino.block_count()
    } else {
        // An incomplete file may have blocks committed up to any index the
        // writer reached; the registry drops those by file id.
        0
    };
    (0..n).map(move |i| eddy_proto::block_id(id, i))
}

/// Two under-storage URIs overlap when one is a prefix of the other by path
/// component: mounting both would show the same data twice.
fn uris_overlap(a: &str, b: &str) -> bool {
    let norm = |u: &str| {
        let u = u.strip_prefix("file://").unwrap_or(u);
        let mut s = u.trim_end_matches('/').to_string();
        s.push('/');
        s
    };
    let (a, b) = (norm(a), norm(b));
    a.starts_with(&b) || b.starts_with(&a)
}

#[cfg(test)]
mod tests;
