//! The namespace model a history is checked against, and the rule for every
//! (operation, result) pair (docs/CONSISTENCY.md lists them).
//!
//! The key space is `dirs` directories `/h/dK` (created before the run and
//! never changed) of `names` file names `fN` each. A directory maps a name
//! to a file: the content id of the create that made it, whether it is
//! complete, and its write type. Files are write-once: their content id
//! never changes, so a read names the create it observed.

use eddy_client::EddyCode;

/// Nanoseconds since the run started. [`NEVER`] is the return time of an
/// operation whose effect may come at any later time.
pub type Time = u64;
pub const NEVER: Time = Time::MAX;

/// The unique id of one create: its bytes are this id repeated.
pub type ContentId = u64;

/// A path of the key space: `dir * names + name`.
pub type PathIdx = u16;

/// The directories and names a run uses.
#[derive(Debug, Clone, Copy)]
pub struct KeySpace {
    pub dirs: u16,
    pub names: u16,
}

impl KeySpace {
    pub const ROOT: &'static str = "/h";

    pub fn paths(&self) -> u16 {
        self.dirs * self.names
    }

    pub fn dir_of(&self, p: PathIdx) -> u16 {
        p / self.names
    }

    pub fn dir_path(&self, d: u16) -> String {
        format!("{}/d{d}", Self::ROOT)
    }

    pub fn path(&self, p: PathIdx) -> String {
        format!("{}/f{}", self.dir_path(self.dir_of(p)), p % self.names)
    }

    /// The path index of `name` (`fN`) in directory `d`, if it is one.
    pub fn parse_name(&self, d: u16, name: &str) -> Option<PathIdx> {
        let n: u16 = name.strip_prefix('f')?.parse().ok()?;
        (n < self.names).then_some(d * self.names + n)
    }
}

/// The length of the content of create `id`: mostly a few KiB, one create
/// in sixteen spans two 64 KiB blocks. A function of the id, so a read of
/// the wrong length is caught.
pub fn content_len(id: ContentId) -> usize {
    let h = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
    if h.is_multiple_of(16) {
        70_000 + (h % 4096) as usize * 8
    } else {
        512 + (h % 1024) as usize * 8
    }
}

/// The bytes of create `id`.
pub fn content(id: ContentId) -> Vec<u8> {
    let len = content_len(id);
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

/// What a read returned: `Ok(id)` when the bytes are exactly create `id`'s,
/// else a description of what they are.
pub fn parse_content(bytes: &[u8]) -> Result<ContentId, String> {
    if bytes.len() < 8 {
        return Err(format!("{} bytes, no content id", bytes.len()));
    }
    let id = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let want = content_len(id);
    if bytes.len() != want {
        return Err(format!(
            "{} bytes starting with id {id:#x}, whose content is {want} bytes",
            bytes.len()
        ));
    }
    match bytes
        .chunks(8)
        .position(|c| c != &id.to_le_bytes()[..c.len()])
    {
        None => Ok(id),
        Some(i) => Err(format!(
            "id {id:#x}'s length, but other bytes at offset {}",
            i * 8
        )),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteKind {
    MustCache,
    CacheThrough,
}

/// One operation as a client invoked it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `FileSystem::create`: the path appears, incomplete, holding `id`.
    Create {
        path: PathIdx,
        id: ContentId,
        wt: WriteKind,
    },
    /// Writing create `id`'s bytes and `FileWriter::close`: that file (the
    /// inode, wherever it is now) becomes complete.
    Close {
        id: ContentId,
    },
    /// The client library's clean-up after a create or close that failed:
    /// the file of create `id` is deleted. Never recorded by a client; the
    /// checker adds one, optional, beside every indeterminate create/close.
    Discard {
        id: ContentId,
    },
    /// A create that answered NOT_FOUND: another client deleted (or moved)
    /// its file before it could be written. Never recorded by a client; the
    /// checker adds one at the create's return: no file of create `id` is
    /// left then.
    Gone {
        id: ContentId,
    },
    Rename {
        from: PathIdx,
        to: PathIdx,
    },
    Delete {
        path: PathIdx,
    },
    Stat {
        path: PathIdx,
    },
    Read {
        path: PathIdx,
    },
    List {
        dir: u16,
    },
}

impl Op {
    pub fn is_mutation(&self) -> bool {
        !matches!(
            self,
            Op::Stat { .. } | Op::Read { .. } | Op::List { .. } | Op::Gone { .. }
        )
    }

    /// The paths whose state this operation depends on or changes (none for
    /// close and discard, which name a file by its create).
    pub fn paths(&self) -> Vec<PathIdx> {
        match *self {
            Op::Create { path, .. }
            | Op::Delete { path }
            | Op::Stat { path }
            | Op::Read { path } => vec![path],
            Op::Rename { from, to } => vec![from, to],
            Op::Close { .. } | Op::Discard { .. } | Op::Gone { .. } | Op::List { .. } => vec![],
        }
    }

    pub fn show(&self, ks: &KeySpace) -> String {
        match self {
            Op::Create { path, id, wt } => format!("create {} id={id:#x} {wt:?}", ks.path(*path)),
            Op::Close { id } => format!("write+close id={id:#x}"),
            Op::Discard { id } => format!("(library clean-up) delete id={id:#x}"),
            Op::Gone { id } => format!("(create answered NOT_FOUND) no file of id={id:#x} is left"),
            Op::Rename { from, to } => format!("rename {} {}", ks.path(*from), ks.path(*to)),
            Op::Delete { path } => format!("delete {}", ks.path(*path)),
            Op::Stat { path } => format!("stat {}", ks.path(*path)),
            Op::Read { path } => format!("read {}", ks.path(*path)),
            Op::List { dir } => format!("list {}", ks.dir_path(*dir)),
        }
    }
}

/// What the operation returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Res {
    /// A mutation succeeded.
    Done,
    /// A read returned exactly create `id`'s bytes.
    Read(ContentId),
    /// A read returned bytes that are no create's content (always a violation).
    Garbled(String),
    /// A stat: completeness, length, and the create the inode id belongs to
    /// when a close reported that inode (else `None`).
    Stat {
        complete: bool,
        length: u64,
        id: Option<ContentId>,
    },
    /// A list: the names (path indices) with their completeness, sorted.
    List(Vec<(PathIdx, bool)>),
    /// A definite failure with this code.
    Err(EddyCode),
    /// Indeterminate: the call failed in transport (connection lost, master
    /// down, deadline); it may or may not have taken effect.
    Unknown(EddyCode),
}

/// Codes that leave the outcome unknown: the call may or may not have taken
/// effect (Jepsen's `:info`).
pub fn is_indeterminate(code: EddyCode) -> bool {
    matches!(
        code,
        EddyCode::Unavailable
            | EddyCode::DeadlineExceeded
            | EddyCode::NoWorkerAvailable
            | EddyCode::UfsUnavailable
    )
}

/// The definite failure codes the model has a rule for, per operation; any
/// other code is a violation of its own (an error where none is allowed).
pub fn code_has_rule(op: &Op, code: EddyCode, worker_loss: bool) -> bool {
    use EddyCode as C;
    match op {
        Op::Create { .. } => matches!(code, C::AlreadyExists | C::NotFound),
        Op::Close { .. } => code == C::NotFound,
        Op::Rename { .. } => matches!(code, C::NotFound | C::AlreadyExists),
        Op::Delete { .. } | Op::Stat { .. } => code == C::NotFound,
        Op::Read { .. } => {
            matches!(code, C::NotFound | C::FileIncomplete) || (worker_loss && code == C::DataLost)
        }
        Op::List { .. } | Op::Discard { .. } | Op::Gone { .. } => false,
    }
}

/// One file of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct File {
    pub id: ContentId,
    pub complete: bool,
    pub wt: WriteKind,
}

/// The state of one partition: its paths' files, sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct State {
    files: Vec<(PathIdx, File)>,
}

impl State {
    pub fn get(&self, p: PathIdx) -> Option<&File> {
        self.files
            .binary_search_by_key(&p, |e| e.0)
            .ok()
            .map(|i| &self.files[i].1)
    }

    /// Where the file of create `id` is.
    pub fn path_of(&self, id: ContentId) -> Option<PathIdx> {
        self.by_id(id).map(|i| self.files[i].0)
    }

    fn by_id(&self, id: ContentId) -> Option<usize> {
        self.files.iter().position(|e| e.1.id == id)
    }

    fn insert(&mut self, p: PathIdx, f: File) {
        match self.files.binary_search_by_key(&p, |e| e.0) {
            Ok(i) => self.files[i].1 = f,
            Err(i) => self.files.insert(i, (p, f)),
        }
    }

    fn remove(&mut self, p: PathIdx) -> Option<File> {
        let i = self.files.binary_search_by_key(&p, |e| e.0).ok()?;
        Some(self.files.remove(i).1)
    }

    /// The state after `op` returned `res`, or `None` if that result is
    /// impossible in this state. An indeterminate result is its operation's
    /// success (the search may also leave it out: it never happened).
    pub fn step(&self, ks: &KeySpace, op: &Op, res: &Res, worker_loss: bool) -> Option<State> {
        if let Some(legal) = self.unchanged(ks, op, res, worker_loss) {
            return legal.then(|| self.clone());
        }
        let mut next = self.clone();
        match *op {
            Op::Create { path, id, wt } => {
                self.get(path).is_none().then_some(())?;
                next.insert(
                    path,
                    File {
                        id,
                        complete: false,
                        wt,
                    },
                );
            }
            Op::Close { id } => {
                let i = self.by_id(id)?;
                (!self.files[i].1.complete).then_some(())?;
                next.files[i].1.complete = true;
            }
            Op::Discard { id } => {
                next.files.remove(self.by_id(id)?);
            }
            Op::Rename { from, to } => {
                (from != to && self.get(to).is_none()).then_some(())?;
                let f = next.remove(from)?;
                next.insert(to, f);
            }
            Op::Delete { path } => {
                next.remove(path)?;
            }
            Op::Stat { .. } | Op::Read { .. } | Op::List { .. } | Op::Gone { .. } => return None,
        }
        Some(next)
    }

    /// For a call that leaves the state as it is (a read, stat or list; a
    /// definite failure): whether its result is legal here. `None` for a
    /// success (or indeterminate result) of a mutation.
    pub fn unchanged(&self, ks: &KeySpace, op: &Op, res: &Res, worker_loss: bool) -> Option<bool> {
        let present = |p: PathIdx| self.get(p).is_some();
        Some(match (*op, res) {
            (Op::Stat { path }, _) => self.check_stat(path, res),
            (Op::Read { path }, _) => match (res, self.get(path)) {
                (Res::Read(id), Some(f)) => f.complete && f.id == *id,
                (Res::Err(EddyCode::NotFound), None) => true,
                (Res::Err(EddyCode::FileIncomplete), Some(f)) => !f.complete,
                (Res::Err(EddyCode::DataLost), Some(f)) => {
                    worker_loss && f.complete && f.wt == WriteKind::MustCache
                }
                _ => false,
            },
            (Op::List { dir }, Res::List(names)) => self
                .files
                .iter()
                .filter(|(p, _)| ks.dir_of(*p) == dir)
                .map(|(p, f)| (*p, f.complete))
                .eq(names.iter().copied()),
            (Op::List { .. }, _) => false,
            (Op::Gone { id }, _) => self.by_id(id).is_none(),
            (Op::Create { path, .. }, Res::Err(c)) => {
                *c == EddyCode::AlreadyExists && present(path)
            }
            (Op::Close { id }, Res::Err(c)) => *c == EddyCode::NotFound && self.by_id(id).is_none(),
            (Op::Rename { from, to }, Res::Err(c)) => {
                (*c == EddyCode::NotFound && !present(from))
                    || (*c == EddyCode::AlreadyExists && present(to))
            }
            (Op::Delete { path }, Res::Err(c)) => *c == EddyCode::NotFound && !present(path),
            (Op::Discard { .. }, Res::Err(_)) => false,
            _ => return None,
        })
    }

    fn check_stat(&self, path: PathIdx, res: &Res) -> bool {
        match (res, self.get(path)) {
            (Res::Err(EddyCode::NotFound), None) => true,
            (
                Res::Stat {
                    complete,
                    length,
                    id,
                },
                Some(f),
            ) => {
                *complete == f.complete
                    && (!f.complete || *length == content_len(f.id) as u64)
                    && id.is_none_or(|id| id == f.id)
            }
            _ => false,
        }
    }

    pub fn show(&self, ks: &KeySpace) -> String {
        if self.files.is_empty() {
            return "(no files)".into();
        }
        let v: Vec<String> = self
            .files
            .iter()
            .map(|(p, f)| {
                let c = if f.complete { "" } else { " incomplete" };
                format!("{}={:#x}{c}", ks.path(*p), f.id)
            })
            .collect();
        v.join(" ")
    }
}
