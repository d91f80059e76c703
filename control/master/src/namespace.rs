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
pub use by_id::Completion;

/// Largest accepted block size (1 TiB) and smallest (4 KiB, a page).
pub const MAX_BLOCK_SIZE: u64 = 1 << 40;
pub const MIN_BLOCK_SIZE: u64 = 4096;
/// Largest number of blocks a file may have (the index bits of a block id).
pub const MAX_BLOCKS_PER_FILE: u64 = 1 << eddy_proto::BLOCK_INDEX_BITS;

/// Durable changes and side effects of one mutation.
#[derive(Debug, Default)]
pub struct Effects {
    pub ops: Vec<MetaOp>,
    /// Cached blocks that no longer belong to any file's current content.
    pub dropped_blocks: Vec<u64>,
    /// Incomplete files removed: their committed blocks are found by file id.
    pub dropped_files: Vec<u64>,
    next_id: Option<u64>,
}

impl Effects {
    pub fn into_ops(mut self) -> Vec<MetaOp> {
        if let Some(n) = self.next_id.take() {
            self.ops.push(MetaOp::SetNextId(n));
        }
        self.ops
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.next_id.is_none()
    }
}

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

pub struct Namespace {
    inodes: InodeTable,
    next_id: u64,
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
    /// A fresh namespace holding only the root directory.
    pub fn new(root_mount: MountPoint, default_block_size: u64, now: i64) -> (Self, Effects) {
        let mut ns = Namespace {
            inodes: InodeTable::default(),
            next_id: ROOT_ID + 1,
            mounts: MountTable::default(),
            owners: HashSet::new(),
            pinned: BTreeSet::new(),
            pin_demotable: BTreeSet::new(),
            persist_pending: BTreeSet::new(),
            pin_version: 1,
            default_block_size,
        };
        let mut root = ns.new_inode(ROOT_ID, 0, "", true, &NewAttrs::default(), now);
        // The flags go on before the record is made: a root recorded without
        // them comes back from a restart unpersisted, and sync skips it.
        root.set_flag(FLAG_PERSISTED | FLAG_MOUNT_POINT, true);
        let mut fx = Effects::default();
        fx.ops.push(metastore::put(&root));
        fx.ops.push(MetaOp::PutMount {
            path: "/".into(),
            record: root_mount.encode(),
        });
        fx.next_id = Some(ns.next_id);
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
            let ino = Inode::decode(rec, &mut |u, g| intern(owners, u, g))
                .map_err(MasterError::Metastore)?;
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
        ns.next_id = ns.next_id.max(after_max);
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
            ns.mounts
                .insert(MountPoint::decode(path, rec).map_err(MasterError::Metastore)?);
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
        fx.next_id = Some(self.next_id);
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
        let owner = self.intern(&a.owner, &a.group);
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
    /// already exists and `allow_exists` accepts that.
    pub fn check_mkdir(
        &self,
        path: &EddyPath,
        recursive: bool,
        allow_exists: bool,
        attrs: &NewAttrs,
    ) -> Result<Option<u64>> {
        if let Some(id) = self.lookup(path) {
            return if self.inodes[&id].is_dir() && allow_exists {
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
        self.parent_for_create(path, recursive)?;
        Ok(None)
    }

    /// Creates directory `path` (and missing ancestors if `recursive`).
    // Each flag is a distinct request field; a struct would only rename them.
    #[allow(clippy::too_many_arguments)]
    /// Returns the directory's id. `persisted`: the directory exists in the
    /// under-storage too.
    pub fn mkdir(
        &mut self,
        path: &EddyPath,
        recursive: bool,
        allow_exists: bool,
        attrs: &NewAttrs,
        persisted: bool,
        now: i64,
        fx: &mut Effects,
    ) -> Result<u64> {
        if let Some(id) = self.check_mkdir(path, recursive, allow_exists, attrs)? {
            return Ok(id);
        }
        let (mut parent, missing) = self.parent_for_create(path, recursive)?;
        for name in missing {
            let id = self.alloc_id(fx);
            let mut ino = self.new_inode(id, parent, name, true, attrs, now);
            ino.set_flag(FLAG_PERSISTED, persisted);
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
        recursive: bool,
        attrs: &NewAttrs,
        parents_persisted: bool,
        now: i64,
        fx: &mut Effects,
    ) -> Result<u64> {
        self.check_create(path, recursive, attrs)?;
        let (mut parent, missing) = self.parent_for_create(path, recursive)?;
        let dir_attrs = NewAttrs {
            mode: None,
            ..attrs.clone()
        };
        let (last, dirs) = missing.split_last().expect("the file itself is missing");
        for name in dirs {
            let id = self.alloc_id(fx);
            let mut ino = self.new_inode(id, parent, name, true, &dir_attrs, now);
            ino.set_flag(FLAG_PERSISTED, parents_persisted);
            parent = self.attach(ino, fx);
        }
        let id = self.alloc_id(fx);
        let mut ino = self.new_inode(id, parent, last, false, attrs, now);
        ino.set_flag(FLAG_STAGED, attrs.staged);
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

    /// Entries whose TTL has run out at `now` (mtime + ttl), outermost
    /// first, with their action. An entry below an expired directory is
    /// left to the directory's action.
    pub fn expired_ttls(&self, now: i64) -> Vec<(EddyPath, TtlAction)> {
        let mut out: Vec<(EddyPath, TtlAction)> = self
            .inodes
            .values()
            .filter(|i| i.id != ROOT_ID && i.ttl_ms >= 0)
            .filter(|i| i.mtime_ms.saturating_add(i.ttl_ms) <= now)
            .filter_map(|i| Some((self.path_of(i.id)?, i.ttl_action)))
            .collect();
        out.sort_by_key(|(p, _)| p.depth());
        let mut kept: Vec<(EddyPath, TtlAction)> = Vec::new();
        for (p, a) in out {
            if !kept.iter().any(|(k, _)| p.starts_with(k)) {
                kept.push((p, a));
            }
        }
        kept
    }

    /// Complete files with a replication bound (min > 0 or max > 0), with
    /// their block ids and bounds.
    pub fn replicated_files(&self) -> Vec<(u64, Vec<u64>, u32, u32)> {
        self.inodes
            .values()
            .filter(|i| !i.is_dir() && i.flag(FLAG_COMPLETE))
            .filter(|i| i.replication_min > 0 || i.replication_max > 0)
            .map(|i| {
                let blocks = (0..i.block_count())
                    .map(|k| eddy_proto::block_id(i.id, k))
                    .collect();
                (i.id, blocks, i.replication_min, i.replication_max)
            })
            .collect()
    }

    /// The pinned files (files waiting to be persisted count as pinned) and
    /// the version of that set.
    pub fn pinned_files(&self) -> (u64, Vec<u64>) {
        let all: BTreeSet<u64> = self
            .pinned
            .iter()
            .chain(&self.persist_pending)
            .copied()
            .collect();
        (self.pin_version, all.into_iter().collect())
    }

    /// Files waiting to be persisted.
    pub fn persist_pending(&self) -> Vec<u64> {
        self.persist_pending.iter().copied().collect()
    }

    /// How many files wait to be persisted.
    pub fn persist_pending_count(&self) -> usize {
        self.persist_pending.len()
    }

    /// Marks complete, unpersisted files at `path` (a file, or every such
    /// file below a directory) as waiting to be persisted. Returns how many
    /// are waiting now.
    pub fn mark_persist(&mut self, path: &EddyPath, fx: &mut Effects) -> Result<u64> {
        let id = self.resolve(path)?;
        let mut n = 0;
        for i in self.subtree(id) {
            let ino = &self.inodes[&i];
            if ino.is_dir() || ino.flag(FLAG_PERSISTED) {
                continue;
            }
            if !ino.flag(FLAG_COMPLETE) {
                if i == id {
                    return Err(MasterError::FileIncomplete(path.to_string()));
                }
                continue;
            }
            n += 1;
            if self.persist_pending.insert(i) {
                let ino = self.inode_mut(i);
                ino.set_flag(FLAG_PERSIST_PENDING, true);
                fx.ops.push(metastore::put(ino));
                self.pin_version += 1;
            }
        }
        Ok(n)
    }

    /// Records the under-storage fingerprints of the persisted files at or
    /// below `path`, keyed by their path relative to it ("" for `path`
    /// itself); files the map does not name keep theirs.
    pub fn set_fingerprints(
        &mut self,
        path: &EddyPath,
        fps: &HashMap<String, String>,
        fx: &mut Effects,
    ) {
        let Some(top) = self.lookup(path) else {
            return;
        };
        let mut stack = vec![(top, String::new())];
        while let Some((id, rel)) = stack.pop() {
            let ino = self.inode_mut(id);
            if let Some(d) = &ino.dir {
                for (name, &child) in &d.children {
                    let r = if rel.is_empty() {
                        name.to_string()
                    } else {
                        format!("{rel}/{name}")
                    };
                    stack.push((child, r));
                }
                continue;
            }
            if let Some(fp) = fps.get(&rel).map(|f| Fingerprint::of(f))
                && ino.flag(FLAG_PERSISTED)
                && ino.fingerprint != fp
            {
                ino.fingerprint = fp;
                fx.ops.push(metastore::put(ino));
            }
        }
    }

    /// Records that file `id` is now persisted with `fingerprint`.
    pub fn persist_done(&mut self, id: u64, fingerprint: &str, fx: &mut Effects) {
        if !self.persist_pending.remove(&id) {
            return;
        }
        self.pin_version += 1;
        if let Some(ino) = self.inodes.get_mut(&id) {
            ino.set_flag(FLAG_PERSIST_PENDING, false);
            ino.set_flag(FLAG_PERSISTED, true);
            ino.fingerprint = Fingerprint::of(fingerprint);
            fx.ops.push(metastore::put(ino));
        }
    }

    /// The pinned files whose pin allows demotion to disk tiers. Files that
    /// are pinned only because they wait to be persisted may move down too:
    /// they must stay on the worker, not in its memory.
    pub fn pin_demotable(&self) -> Vec<u64> {
        let waiting = self
            .persist_pending
            .iter()
            .filter(|id| !self.pinned.contains(id));
        let all: BTreeSet<u64> = self.pin_demotable.iter().chain(waiting).copied().collect();
        all.into_iter().collect()
    }

    pub fn pin_version(&self) -> u64 {
        self.pin_version
    }

    /// The cached blocks `free` must drop for `path`. Only complete,
    /// persisted files can be freed (otherwise the cache holds the only
    /// copy); pinned ones only when `force`. A directory needs `recursive`
    /// unless empty.
    pub fn free_targets(&self, path: &EddyPath, recursive: bool, force: bool) -> Result<Vec<u64>> {
        let id = self.resolve(path)?;
        let ino = &self.inodes[&id];
        if ino.children().is_some_and(|c| !c.is_empty()) && !recursive {
            return Err(MasterError::DirectoryNotEmpty(format!(
                "{path} is a directory; free it with the recursive option"
            )));
        }
        let mut blocks = Vec::new();
        for i in self.subtree(id) {
            let f = &self.inodes[&i];
            if f.is_dir() {
                continue;
            }
            let name = || {
                if i == id {
                    path.to_string()
                } else {
                    match self.path_of(i) {
                        Some(p) => p.to_string(),
                        None => format!("a file under {path}"),
                    }
                }
            };
            if !f.flag(FLAG_COMPLETE) || !f.flag(FLAG_PERSISTED) {
                return Err(MasterError::InvalidArgument(format!(
                    "cannot free {}: it is not persisted to the under-storage, so the cache holds its only copy",
                    name()
                )));
            }
            if f.flag(FLAG_PINNED) && !force {
                return Err(MasterError::InvalidArgument(format!(
                    "cannot free {}: it is pinned (unpin it, or free with force)",
                    name()
                )));
            }
            blocks.extend(file_blocks(f));
        }
        Ok(blocks)
    }

    /// Every inode id in the subtree rooted at `id`, `id` first.
    pub fn subtree(&self, id: u64) -> Vec<u64> {
        let mut out = vec![id];
        let mut i = 0;
        while i < out.len() {
            if let Some(ch) = self.inodes[&out[i]].children() {
                out.extend(ch.values().copied());
            }
            i += 1;
        }
        out
    }

    fn check_no_mounts_below(&self, path: &EddyPath, what: &str) -> Result<()> {
        if self.mounts.is_mount_point(path) {
            return Err(MasterError::MountConflict(format!(
                "{path} is a mount point; unmount it instead of trying to {what} it"
            )));
        }
        if let Some(m) = self.mounts.below(path).next() {
            return Err(MasterError::MountConflict(format!(
                "cannot {what} {path}: it contains the mount point {}; unmount that first",
                m.path
            )));
        }
        Ok(())
    }

    /// Checks a delete without doing it; returns the id and whether the entry
    /// exists in the under-storage.
    pub fn check_delete(
        &self,
        path: &EddyPath,
        recursive: bool,
        eddy_only: bool,
    ) -> Result<(u64, bool)> {
        if path.is_root() {
            return Err(MasterError::InvalidArgument(
                "cannot delete the root directory".into(),
            ));
        }
        let id = self.resolve(path)?;
        self.check_no_mounts_below(path, "delete")?;
        if !eddy_only {
            self.check_writable(path)?;
        }
        let ino = &self.inodes[&id];
        if !recursive && ino.children().is_some_and(|c| !c.is_empty()) {
            return Err(MasterError::DirectoryNotEmpty(path.to_string()));
        }
        Ok((id, ino.flag(FLAG_PERSISTED)))
    }

    /// Deletes `path` (recursively if asked).
    pub fn delete(
        &mut self,
        path: &EddyPath,
        recursive: bool,
        eddy_only: bool,
        now: i64,
        fx: &mut Effects,
    ) -> Result<()> {
        let (id, _) = self.check_delete(path, recursive, eddy_only)?;
        let parent = self.inodes[&id].parent;
        self.remove_subtree(id, fx);
        let p = self.inode_mut(parent);
        p.mtime_ms = now;
        fx.ops.push(metastore::put(p));
        Ok(())
    }

    fn remove_subtree(&mut self, id: u64, fx: &mut Effects) {
        let ids = self.subtree(id);
        let (parent, name) = {
            let ino = &self.inodes[&id];
            (ino.parent, ino.name.clone())
        };
        if let Some(d) = self.inodes.get_mut(&parent).and_then(|p| p.dir.as_mut()) {
            d.children.remove(&name);
        }
        for i in ids {
            let ino = self.inodes.remove(&i).expect("subtree ids exist");
            if self.pinned.remove(&i) {
                self.pin_demotable.remove(&i);
                self.pin_version += 1;
            }
            if self.persist_pending.remove(&i) {
                self.pin_version += 1;
            }
            fx.dropped_blocks.extend(file_blocks(&ino));
            if !ino.is_dir() && !ino.flag(FLAG_COMPLETE) {
                fx.dropped_files.push(ino.id);
            }
            fx.ops.push(MetaOp::DeleteInode(i));
        }
    }

    /// Checks a rename; returns (src id, src persisted, destination parent id).
    pub fn check_rename(&self, src: &EddyPath, dst: &EddyPath) -> Result<(u64, bool, u64)> {
        if src.is_root() || dst.is_root() {
            return Err(MasterError::InvalidArgument(
                "cannot rename the root directory".into(),
            ));
        }
        let id = self.resolve(src)?;
        if dst.starts_with(src) && dst != src {
            return Err(MasterError::InvalidArgument(format!(
                "cannot rename {src} into its own subtree ({dst})"
            )));
        }
        self.check_no_mounts_below(src, "rename")?;
        let dst_parent = dst.parent().expect("not root");
        let pid = self.resolve(&dst_parent)?;
        if !self.inodes[&pid].is_dir() {
            return Err(MasterError::NotADirectory(dst_parent.to_string()));
        }
        if src != dst && self.lookup(dst).is_some() {
            return Err(MasterError::AlreadyExists(dst.to_string()));
        }
        if self.mounts.resolve(src).id != self.mounts.resolve(dst).id {
            return Err(MasterError::InvalidArgument(format!(
                "cannot rename {src} to {dst}: they are on different mounts"
            )));
        }
        self.check_writable(src)?;
        Ok((id, self.inodes[&id].flag(FLAG_PERSISTED), pid))
    }

    /// Renames `src` to `dst`: one inode record changes, so it is atomic.
    pub fn rename(
        &mut self,
        src: &EddyPath,
        dst: &EddyPath,
        now: i64,
        fx: &mut Effects,
    ) -> Result<()> {
        let (id, _, new_parent) = self.check_rename(src, dst)?;
        if src == dst {
            return Ok(());
        }
        let old_parent = self.inodes[&id].parent;
        let old_name = self.inodes[&id].name.clone();
        self.inode_mut(old_parent)
            .dir
            .as_mut()
            .expect("parent is a directory")
            .children
            .remove(&old_name);
        let name: Arc<str> = Arc::from(dst.name());
        let ino = self.inode_mut(id);
        ino.parent = new_parent;
        ino.name = name.clone();
        fx.ops.push(metastore::put(ino));
        let parents = if old_parent == new_parent {
            &[old_parent][..]
        } else {
            &[old_parent, new_parent][..]
        };
        for &p in parents {
            let p = self.inode_mut(p);
            p.mtime_ms = now;
            fx.ops.push(metastore::put(p));
        }
        self.inode_mut(new_parent)
            .dir
            .as_mut()
            .expect("checked")
            .children
            .insert(name, id);
        Ok(())
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

    // ---- under-storage sync ----

    /// Records that `id` was just checked against the under-storage.
    pub fn mark_synced(&mut self, id: u64, now: i64) {
        if let Some(i) = self.inodes.get_mut(&id) {
            i.synced_ms = now;
        }
    }

    pub fn mark_listed(&mut self, id: u64, now: i64) {
        if let Some(d) = self.inodes.get_mut(&id).and_then(|i| i.dir.as_mut()) {
            d.listed_ms = now;
        }
    }

    /// Whether a subtree may be dropped because the under-storage no longer
    /// has it: only when everything in it came from there and no mount lies
    /// inside. Eddy-only files (not persisted) are never dropped by a sync.
    fn droppable(&self, id: u64) -> bool {
        self.subtree(id).into_iter().all(|i| {
            let ino = &self.inodes[&i];
            ino.flag(FLAG_PERSISTED)
                && !ino.flag(FLAG_MOUNT_POINT)
                && (ino.is_dir() || ino.flag(FLAG_COMPLETE))
        })
    }

    /// Merges one under-storage entry into directory `parent`: adds it if
    /// unknown, refreshes it if changed (a new fingerprint drops the file's
    /// cached blocks), and replaces it if it changed between file and directory.
    /// Returns the child's id, or `None` if Eddy keeps its own entry.
    pub fn merge_ufs_child(
        &mut self,
        parent: u64,
        st: &UfsStatus,
        now: i64,
        fx: &mut Effects,
    ) -> Option<u64> {
        if !crate::path::valid_name(&st.name) {
            return None;
        }
        let existing = self
            .inodes
            .get(&parent)?
            .children()?
            .get(st.name.as_str())
            .copied();
        if let Some(id) = existing {
            let ino = &self.inodes[&id];
            if !ino.flag(FLAG_PERSISTED) || ino.flag(FLAG_MOUNT_POINT) {
                return None;
            }
            if ino.is_dir() == st.is_dir {
                let changed = !st.is_dir && ino.fingerprint != Fingerprint::of(&st.fingerprint);
                if changed {
                    // New content gets a new inode id, hence new block ids:
                    // a worker still holding the old blocks (until it hears
                    // they are dropped) can never serve them for the new
                    // bytes. Attributes (mode, owner, pin, TTL, bounds) carry over.
                    let mut ino = self.inodes.remove(&id).expect("listed above");
                    fx.dropped_blocks.extend(file_blocks(&ino));
                    fx.ops.push(MetaOp::DeleteInode(id));
                    let new_id = self.alloc_id(fx);
                    if self.pinned.remove(&id) {
                        self.pinned.insert(new_id);
                        if self.pin_demotable.remove(&id) {
                            self.pin_demotable.insert(new_id);
                        }
                        self.pin_version += 1;
                    }
                    ino.id = new_id;
                    ino.length = st.length;
                    ino.mtime_ms = st.mtime_ms;
                    ino.fingerprint = Fingerprint::of(&st.fingerprint);
                    ino.set_flag(FLAG_COMPLETE, true);
                    ino.synced_ms = now;
                    fx.ops.push(metastore::put(&ino));
                    let name = ino.name.clone();
                    self.inodes.insert(new_id, ino);
                    self.inode_mut(parent)
                        .dir
                        .as_mut()
                        .expect("parent is a directory")
                        .children
                        .insert(name, new_id);
                    return Some(new_id);
                }
                self.inode_mut(id).synced_ms = now;
                return Some(id);
            }
            if !self.droppable(id) {
                return None;
            }
            self.remove_subtree(id, fx);
        }
        let id = self.alloc_id(fx);
        let mut ino = self.new_inode(id, parent, &st.name, st.is_dir, &NewAttrs::default(), now);
        ino.flags |= FLAG_PERSISTED | FLAG_COMPLETE;
        ino.length = st.length;
        ino.mtime_ms = st.mtime_ms;
        ino.created_ms = st.mtime_ms;
        ino.fingerprint = Fingerprint::of(&st.fingerprint);
        fx.ops.push(metastore::put(&ino));
        self.inodes.insert(id, ino);
        self.inode_mut(parent)
            .dir
            .as_mut()
            .expect("parent is a directory")
            .children
            .insert(Arc::from(st.name.as_str()), id);
        Some(id)
    }

    /// Drops `id` because the under-storage no longer has it (if droppable).
    pub fn drop_if_gone(&mut self, id: u64, fx: &mut Effects) -> bool {
        if id == ROOT_ID || !self.inodes.contains_key(&id) || !self.droppable(id) {
            return false;
        }
        self.remove_subtree(id, fx);
        true
    }

    /// After listing names in `(after, upto]` (`upto` None = to the end) from
    /// the under-storage, drops persisted children in that range it did not list.
    pub fn drop_unlisted(
        &mut self,
        dir: u64,
        after: Option<&str>,
        upto: Option<&str>,
        listed: &HashSet<&str>,
        fx: &mut Effects,
    ) {
        use std::ops::Bound;
        let Some(children) = self.inodes.get(&dir).and_then(|d| d.children()) else {
            return;
        };
        // The page covers listing keys (after, upto] (eddy_ufs::listing_key:
        // a directory is its name and `/`). By name, that is a superset
        // starting at the part of `after` before its first byte <= `/`:
        // only such prefixes of `after` can be directories whose key sorts
        // after it.
        let lo = after.map_or(Bound::Unbounded, |a| {
            let cut = a.bytes().position(|b| b <= b'/').unwrap_or(a.len());
            Bound::Included(&a[..cut])
        });
        let hi = upto.map_or(Bound::Unbounded, Bound::Included);
        let in_page = |key: &str| after.is_none_or(|a| key > a) && upto.is_none_or(|u| key <= u);
        let gone: Vec<u64> = children
            .range::<str, _>((lo, hi))
            .filter(|(n, _)| !listed.contains(&***n))
            .filter(|(n, id)| {
                let is_dir = self.inodes.get(id).is_some_and(|i| i.is_dir());
                in_page(&eddy_ufs::listing_key(n, is_dir))
            })
            .map(|(_, &id)| id)
            .collect();
        for id in gone {
            self.drop_if_gone(id, fx);
        }
    }

    // ---- mounts ----

    /// Adds a mount at `path`, creating the mount point directory if needed.
    pub fn mount(&mut self, m: MountPoint, now: i64, fx: &mut Effects) -> Result<()> {
        let path = m.path.clone();
        if path.is_root() || self.mounts.is_mount_point(&path) {
            return Err(MasterError::MountConflict(format!(
                "{path} is already a mount point"
            )));
        }
        let parent = path.parent().expect("not root");
        let pid = self.resolve(&parent)?;
        if !self.inodes[&pid].is_dir() {
            return Err(MasterError::NotADirectory(parent.to_string()));
        }
        let enclosing = self.mounts.resolve(&path);
        if enclosing.read_only {
            return Err(MasterError::ReadOnly(format!(
                "{path}: cannot mount under the read-only mount {}",
                enclosing.path
            )));
        }
        if let Some(other) = self.mounts.iter().find(|o| uris_overlap(&o.uri, &m.uri)) {
            return Err(MasterError::MountConflict(format!(
                "{} overlaps {}, already mounted at {}",
                m.uri, other.uri, other.path
            )));
        }
        let id = match self.lookup(&path) {
            Some(id) => {
                let ino = &self.inodes[&id];
                if !ino.is_dir() {
                    return Err(MasterError::MountConflict(format!(
                        "{path} is an existing file"
                    )));
                }
                if ino.children().is_some_and(|c| !c.is_empty()) {
                    return Err(MasterError::MountConflict(format!(
                        "{path} is a non-empty directory; mount on an empty or new path"
                    )));
                }
                id
            }
            None => {
                let nid = self.alloc_id(fx);
                let ino = self.new_inode(nid, pid, path.name(), true, &NewAttrs::default(), now);
                self.attach(ino, fx)
            }
        };
        let ino = self.inode_mut(id);
        ino.set_flag(FLAG_MOUNT_POINT | FLAG_PERSISTED, true);
        ino.synced_ms = 0;
        ino.dir.as_mut().expect("directory").listed_ms = 0;
        fx.ops.push(metastore::put(ino));
        fx.ops.push(MetaOp::PutMount {
            path: path.to_string(),
            record: m.encode(),
        });
        self.mounts.insert(m);
        Ok(())
    }

    /// Removes the mount at `path` and everything Eddy knew below it (the
    /// under-storage is untouched).
    pub fn unmount(&mut self, path: &EddyPath, fx: &mut Effects) -> Result<MountPoint> {
        if path.is_root() {
            return Err(MasterError::InvalidArgument(
                "cannot unmount the root mount".into(),
            ));
        }
        if !self.mounts.is_mount_point(path) {
            return Err(MasterError::NotFound(format!(
                "{path} is not a mount point"
            )));
        }
        if let Some(inner) = self.mounts.below(path).next() {
            return Err(MasterError::MountConflict(format!(
                "{path} contains the mount point {}; unmount that first",
                inner.path
            )));
        }
        let m = self.mounts.remove(path).expect("checked");
        fx.ops.push(MetaOp::DeleteMount(path.to_string()));
        if let Some(id) = self.lookup(path) {
            self.remove_subtree(id, fx);
        }
        Ok(m)
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
mod tests {
    use super::*;

    const NOW: i64 = 1_000;

    fn p(s: &str) -> EddyPath {
        EddyPath::parse(s).unwrap()
    }

    fn root_mount(uri: &str) -> MountPoint {
        MountPoint {
            id: 1,
            path: EddyPath::root(),
            uri: uri.into(),
            read_only: false,
            options: Default::default(),
            sync_interval_ms: -1,
        }
    }

    fn ns() -> Namespace {
        Namespace::new(root_mount("file:///ufs"), 64 << 20, NOW).0
    }

    fn fx() -> Effects {
        Effects::default()
    }

    #[test]
    fn expired_ttls_are_found_outermost_first_and_bounds_listed() {
        let mut n = ns();
        let mut f = fx();
        let a = NewAttrs::default();
        n.mkdir(&p("/d"), false, false, &a, true, NOW, &mut f)
            .unwrap();
        for name in ["/d/x", "/y", "/z"] {
            n.create_file(&p(name), false, &a, true, NOW, &mut f)
                .unwrap();
            n.complete_file(&p(name), 100 << 20, true, "", NOW, &mut f)
                .unwrap();
        }
        let ttl = |ms, action| AttrChange {
            ttl_ms: Some(ms),
            ttl_action: Some(action),
            ..Default::default()
        };
        n.set_attribute(&p("/d"), &ttl(1000, TtlAction::Free), &mut f)
            .unwrap();
        n.set_attribute(&p("/d/x"), &ttl(10, TtlAction::Delete), &mut f)
            .unwrap();
        n.set_attribute(&p("/y"), &ttl(5000, TtlAction::Delete), &mut f)
            .unwrap();
        assert!(n.expired_ttls(NOW + 5).is_empty());
        // Only /d/x has run out.
        let got = n.expired_ttls(NOW + 10);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].0.as_str(), got[0].1), ("/d/x", TtlAction::Delete));
        // /d too: its action covers /d/x, which is left out.
        let got = n.expired_ttls(NOW + 1000);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].0.as_str(), got[0].1), ("/d", TtlAction::Free));
        assert_eq!(n.expired_ttls(NOW + 6000).len(), 2);
        assert_eq!(
            n.path_of(n.resolve(&p("/d/x")).unwrap()).unwrap().as_str(),
            "/d/x"
        );

        assert!(n.replicated_files().is_empty());
        let bounds = AttrChange {
            replication_min: Some(2),
            replication_max: Some(3),
            ..Default::default()
        };
        let z = n.set_attribute(&p("/z"), &bounds, &mut f).unwrap();
        let r = n.replicated_files();
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].0, r[0].1.len(), r[0].2, r[0].3), (z, 2, 2, 3));
    }

    #[test]
    fn pins_are_tracked_and_free_refuses_what_it_must() {
        let mut n = ns();
        let mut f = fx();
        let a = NewAttrs::default();
        n.mkdir(&p("/d"), false, false, &a, true, NOW, &mut f)
            .unwrap();
        for (name, persisted) in [("/d/a", true), ("/d/b", true), ("/d/mem", false)] {
            n.create_file(&p(name), false, &a, true, NOW, &mut f)
                .unwrap();
            n.complete_file(&p(name), 100 << 20, persisted, "", NOW, &mut f)
                .unwrap();
        }
        let (v0, none) = n.pinned_files();
        assert!(none.is_empty());
        let pin = |pinned| AttrChange {
            pinned: Some(pinned),
            ..Default::default()
        };
        let a_id = n.set_attribute(&p("/d/a"), &pin(true), &mut f).unwrap();
        let (v1, pinned) = n.pinned_files();
        assert!(v1 > v0);
        assert_eq!(pinned, [a_id]);

        // Two blocks of 64 MiB for a 100 MiB file.
        assert_eq!(n.free_targets(&p("/d/b"), false, false).unwrap().len(), 2);
        let e = n.free_targets(&p("/d/a"), false, false).unwrap_err();
        assert!(e.to_string().contains("pinned"), "{e}");
        assert_eq!(n.free_targets(&p("/d/a"), false, true).unwrap().len(), 2);
        let e = n.free_targets(&p("/d/mem"), false, false).unwrap_err();
        assert!(e.to_string().contains("not persisted"), "{e}");
        let e = n.free_targets(&p("/d"), false, false).unwrap_err();
        assert_eq!(e.code(), eddy_proto::EddyCode::DirectoryNotEmpty);
        n.delete(&p("/d/mem"), false, false, NOW, &mut f).unwrap();
        assert_eq!(n.free_targets(&p("/d"), true, true).unwrap().len(), 4);

        // Deleting a pinned file unpins it.
        n.delete(&p("/d/a"), false, false, NOW, &mut f).unwrap();
        let (v2, pinned) = n.pinned_files();
        assert!(v2 > v1);
        assert!(pinned.is_empty());
    }

    #[test]
    fn mkdir_create_complete() {
        let mut n = ns();
        let mut f = fx();
        assert!(matches!(
            n.mkdir(
                &p("/a/b"),
                false,
                false,
                &NewAttrs::default(),
                true,
                NOW,
                &mut f
            ),
            Err(MasterError::NotFound(_))
        ));
        assert!(f.is_empty(), "a refused mkdir records nothing");
        n.mkdir(
            &p("/a/b"),
            true,
            false,
            &NewAttrs::default(),
            true,
            NOW,
            &mut f,
        )
        .unwrap();
        assert!(n.lookup(&p("/a")).is_some());
        assert!(matches!(
            n.mkdir(
                &p("/a/b"),
                true,
                false,
                &NewAttrs::default(),
                true,
                NOW,
                &mut f
            ),
            Err(MasterError::AlreadyExists(_))
        ));
        n.mkdir(
            &p("/a/b"),
            true,
            true,
            &NewAttrs::default(),
            true,
            NOW,
            &mut f,
        )
        .unwrap();
        let id = n
            .create_file(&p("/a/b/f"), false, &NewAttrs::default(), true, NOW, &mut f)
            .unwrap();
        assert!(!n.get(id).unwrap().flag(FLAG_COMPLETE));
        assert!(matches!(
            n.create_file(&p("/a/b/f"), false, &NewAttrs::default(), true, NOW, &mut f),
            Err(MasterError::AlreadyExists(_))
        ));
        assert!(matches!(
            n.mkdir(
                &p("/a/b/f"),
                true,
                false,
                &NewAttrs::default(),
                true,
                NOW,
                &mut f
            ),
            Err(MasterError::AlreadyExists(_))
        ));
        assert!(matches!(
            n.mkdir(
                &p("/a/b/f/g"),
                true,
                false,
                &NewAttrs::default(),
                true,
                NOW,
                &mut f
            ),
            Err(MasterError::NotADirectory(_))
        ));
        n.complete_file(&p("/a/b/f"), 200 << 20, false, "", NOW, &mut f)
            .unwrap();
        let ino = n.get(id).unwrap();
        assert_eq!(ino.block_count(), 4);
        assert_eq!(ino.block_length(3), 8 << 20);
        assert!(matches!(
            n.complete_file(&p("/a/b/f"), 1, false, "", NOW, &mut f),
            Err(MasterError::FileAlreadyComplete(_))
        ));
    }

    #[test]
    fn bad_block_sizes_and_replication_are_refused() {
        let mut n = ns();
        let mut f = fx();
        for bs in [1, MAX_BLOCK_SIZE + 1] {
            let a = NewAttrs {
                block_size: bs,
                ..Default::default()
            };
            assert!(matches!(
                n.create_file(&p("/f"), false, &a, true, NOW, &mut f),
                Err(MasterError::InvalidArgument(_))
            ));
        }
        let a = NewAttrs {
            replication_min: 3,
            replication_max: 2,
            ..Default::default()
        };
        assert!(matches!(
            n.create_file(&p("/f"), false, &a, true, NOW, &mut f),
            Err(MasterError::InvalidArgument(_))
        ));
        assert!(f.is_empty());
    }

    #[test]
    fn rename_rules() {
        let mut n = ns();
        let mut f = fx();
        n.mkdir(
            &p("/a/b/c"),
            true,
            false,
            &NewAttrs::default(),
            true,
            NOW,
            &mut f,
        )
        .unwrap();
        n.create_file(&p("/x"), false, &NewAttrs::default(), true, NOW, &mut f)
            .unwrap();
        assert!(matches!(
            n.rename(&p("/a"), &p("/a/b/c/d"), NOW, &mut f),
            Err(MasterError::InvalidArgument(_))
        ));
        assert!(matches!(
            n.rename(&p("/a"), &p("/x"), NOW, &mut f),
            Err(MasterError::AlreadyExists(_))
        ));
        assert!(matches!(
            n.rename(&p("/a"), &p("/nope/a"), NOW, &mut f),
            Err(MasterError::NotFound(_))
        ));
        assert!(matches!(
            n.rename(&p("/a"), &p("/x/a"), NOW, &mut f),
            Err(MasterError::NotADirectory(_))
        ));
        let id = n.lookup(&p("/a/b/c")).unwrap();
        let mut f = fx();
        n.rename(&p("/a/b"), &p("/moved"), NOW, &mut f).unwrap();
        assert_eq!(
            f.ops.len(),
            3,
            "a rename is the moved inode's record and both parents' (their mtimes)"
        );
        assert_eq!(n.lookup(&p("/moved/c")), Some(id));
        assert!(n.lookup(&p("/a/b")).is_none());
    }

    #[test]
    fn delete_rules() {
        let mut n = ns();
        let mut f = fx();
        n.mkdir(
            &p("/d/e"),
            true,
            false,
            &NewAttrs::default(),
            true,
            NOW,
            &mut f,
        )
        .unwrap();
        assert!(matches!(
            n.delete(&p("/d"), false, false, NOW, &mut f),
            Err(MasterError::DirectoryNotEmpty(_))
        ));
        assert!(matches!(
            n.delete(&p("/"), true, false, NOW, &mut f),
            Err(MasterError::InvalidArgument(_))
        ));
        let before = n.inode_count();
        n.delete(&p("/d"), true, false, NOW, &mut f).unwrap();
        assert_eq!(n.inode_count(), before - 2);
        assert!(n.lookup(&p("/d")).is_none());
    }

    #[test]
    fn mounts_guard_the_tree() {
        let mut n = ns();
        let mut f = fx();
        let m = |id, path: &str, uri: &str, ro| MountPoint {
            id,
            path: p(path),
            uri: uri.into(),
            read_only: ro,
            options: Default::default(),
            sync_interval_ms: -1,
        };
        n.mount(m(2, "/ro", "file:///other", true), NOW, &mut f)
            .unwrap();
        assert!(matches!(
            n.mount(m(3, "/ro/x", "file:///third", false), NOW, &mut f),
            Err(MasterError::ReadOnly(_))
        ));
        assert!(matches!(
            n.mount(m(3, "/y", "file:///other/sub", false), NOW, &mut f),
            Err(MasterError::MountConflict(_))
        ));
        assert!(matches!(
            n.create_file(&p("/ro/f"), false, &NewAttrs::default(), true, NOW, &mut f),
            Err(MasterError::ReadOnly(_))
        ));
        assert!(matches!(
            n.delete(&p("/ro"), true, false, NOW, &mut f),
            Err(MasterError::MountConflict(_))
        ));
        assert!(matches!(
            n.rename(&p("/ro"), &p("/ro2"), NOW, &mut f),
            Err(MasterError::MountConflict(_))
        ));
        n.mkdir(
            &p("/full/x"),
            true,
            false,
            &NewAttrs::default(),
            true,
            NOW,
            &mut f,
        )
        .unwrap();
        assert!(matches!(
            n.mount(m(4, "/full", "file:///fourth", false), NOW, &mut f),
            Err(MasterError::MountConflict(_))
        ));
        n.create_file(&p("/w"), false, &NewAttrs::default(), true, NOW, &mut f)
            .unwrap();
        assert!(matches!(
            n.rename(&p("/w"), &p("/ro/w"), NOW, &mut f),
            Err(MasterError::InvalidArgument(_))
        ));
        n.unmount(&p("/ro"), &mut f).unwrap();
        assert!(n.lookup(&p("/ro")).is_none());
        assert!(matches!(
            n.unmount(&p("/ro"), &mut f),
            Err(MasterError::NotFound(_))
        ));
    }

    #[test]
    fn ufs_merge_adds_updates_and_drops() {
        let mut n = ns();
        let mut f = fx();
        let st = |name: &str, dir, fp: &str| UfsStatus {
            name: name.into(),
            is_dir: dir,
            length: 100,
            mtime_ms: 5,
            fingerprint: fp.into(),
        };
        let id = n
            .merge_ufs_child(ROOT_ID, &st("f", false, "a"), NOW, &mut f)
            .unwrap();
        n.complete_file(&p("/f"), 1, false, "", NOW, &mut f)
            .unwrap_err();
        // A changed fingerprint refreshes the file and drops its cached blocks.
        let mut f = fx();
        let mut changed = st("f", false, "b");
        changed.length = 200 << 20;
        let new_id = n.merge_ufs_child(ROOT_ID, &changed, NOW, &mut f).unwrap();
        assert_ne!(new_id, id, "new content, new block ids");
        assert_eq!(f.dropped_blocks, vec![eddy_proto::block_id(id, 0)]);
        assert!(n.get(id).is_none());
        assert_eq!(n.get(new_id).unwrap().length, 200 << 20);
        assert_eq!(n.lookup(&p("/f")), Some(new_id));
        // Unchanged: same id.
        assert_eq!(
            n.merge_ufs_child(ROOT_ID, &changed, NOW, &mut f),
            Some(new_id)
        );
        // Eddy-only files are never replaced or dropped by a sync.
        n.create_file(&p("/mine"), false, &NewAttrs::default(), true, NOW, &mut f)
            .unwrap();
        assert_eq!(
            n.merge_ufs_child(ROOT_ID, &st("mine", false, "z"), NOW, &mut f),
            None
        );
        let listed: HashSet<&str> = HashSet::new();
        n.drop_unlisted(ROOT_ID, None, None, &listed, &mut f);
        assert!(n.lookup(&p("/f")).is_none(), "gone from the under-storage");
        assert!(n.lookup(&p("/mine")).is_some(), "Eddy-only file kept");

        // Pages in listing order (a directory sorts as `name/`): each page
        // drops only what falls in its own key range and was not listed.
        for (name, dir) in [
            ("abb", false),
            ("abc", true),
            ("abc-1", false),
            ("abc.txt", false),
        ] {
            n.merge_ufs_child(ROOT_ID, &st(name, dir, "x"), NOW, &mut f)
                .unwrap();
        }
        let page1: HashSet<&str> = ["abc-1", "abc.txt"].into();
        n.drop_unlisted(ROOT_ID, Some("abb0"), Some("abc.txt"), &page1, &mut f);
        assert!(
            n.lookup(&p("/abc")).is_some(),
            "the directory `abc/` sorts after abc.txt"
        );
        assert!(n.lookup(&p("/abb")).is_some(), "outside the page");
        let page2: HashSet<&str> = ["abc"].into();
        n.drop_unlisted(ROOT_ID, Some("abc.txt"), Some("abc/"), &page2, &mut f);
        assert!(n.lookup(&p("/abc")).is_some() && n.lookup(&p("/abc-1")).is_some());
        let none: HashSet<&str> = HashSet::new();
        n.drop_unlisted(ROOT_ID, None, Some("abb"), &none, &mut f);
        assert!(n.lookup(&p("/abb")).is_none(), "unlisted in its own range");
        assert!(n.lookup(&p("/abc.txt")).is_some());
    }

    #[test]
    fn list_pages() {
        let mut n = ns();
        let mut f = fx();
        for i in 0..25 {
            n.create_file(
                &p(&format!("/f{i:02}")),
                false,
                &NewAttrs::default(),
                true,
                NOW,
                &mut f,
            )
            .unwrap();
        }
        let mut after = String::new();
        let mut seen = 0;
        loop {
            let (page, next) = n.list(ROOT_ID, &after, 10);
            seen += page.len();
            match next {
                Some(nx) => after = nx,
                None => break,
            }
        }
        assert_eq!(seen, 25);
    }

    #[test]
    fn load_rebuilds_the_tree() {
        let (mut n, mut f) = Namespace::new(root_mount("file:///u"), 1 << 20, NOW);
        n.mkdir(
            &p("/a/b"),
            true,
            false,
            &NewAttrs::default(),
            true,
            NOW,
            &mut f,
        )
        .unwrap();
        n.create_file(&p("/a/b/f"), false, &NewAttrs::default(), true, NOW, &mut f)
            .unwrap();
        n.rename(&p("/a/b"), &p("/c"), NOW, &mut f).unwrap();
        // Replay the ops the way the metastore would store them.
        let mut inodes = std::collections::HashMap::new();
        let mut mounts = Vec::new();
        let mut next_id = 0;
        for op in f.into_ops() {
            match op {
                MetaOp::PutInode { id, record } => {
                    inodes.insert(id, record);
                }
                MetaOp::DeleteInode(id) => {
                    inodes.remove(&id);
                }
                MetaOp::PutMount { path, record } => mounts.push((path, record)),
                MetaOp::DeleteMount(_) => {}
                MetaOp::SetNextId(x) => next_id = x,
                MetaOp::PutIntent { .. } | MetaOp::DeleteIntent(_) => {}
            }
        }
        let loaded = Loaded {
            inodes: inodes.into_values().collect(),
            mounts,
            next_id,
            intents: Vec::new(),
        };
        let back = Namespace::load(loaded, 1 << 20).unwrap().unwrap();
        assert_eq!(back.inode_count(), n.inode_count());
        assert_eq!(back.lookup(&p("/c/f")), n.lookup(&p("/c/f")));
        assert!(back.lookup(&p("/a/b")).is_none());
        assert_eq!(back.next_id, n.next_id);
    }

    #[test]
    fn an_inode_id_at_the_top_of_the_range_is_an_error_not_a_panic() {
        // Found by the metastore fuzz target (ci/fuzz): `max_id + 1` overflowed.
        let n = ns();
        let root = n.inodes.get(&ROOT_ID).unwrap().encode();
        let mut top = crate::inode::tests::sample(u64::MAX);
        top.parent = ROOT_ID;
        let loaded = Loaded {
            inodes: vec![root, top.encode()],
            mounts: vec![("/".into(), root_mount("file:///ufs").encode())],
            next_id: 0,
            intents: Vec::new(),
        };
        let e = Namespace::load(loaded, 1 << 20).err().expect("refused");
        assert!(
            matches!(&e, MasterError::Metastore(m) if m.contains(&u64::MAX.to_string())),
            "{e}"
        );
    }
}
