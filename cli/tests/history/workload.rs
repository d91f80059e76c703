//! The clients: each its own `FileSystem` (own connections, own metadata
//! cache) running random operations on the key space until a deadline, and
//! recording every call's invocation, completion and result.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_client::{
    ClientError, ClientOptions, CreateOptions, EddyCode, FileSystem, OpenOptions, pb,
};

use super::check::Entry;
use super::model::{
    ContentId, KeySpace, Op, PathIdx, Res, Time, WriteKind, content, is_indeterminate,
    parse_content,
};

/// Who may change a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Any client creates, renames and deletes any path.
    Shared,
    /// Each path has one writer (paths go to clients in pairs, so renames
    /// within a pair stay in one directory); everyone reads everything.
    Owner,
}

#[derive(Debug, Clone)]
pub struct WorkloadOptions {
    pub clients: u32,
    pub ks: KeySpace,
    pub mode: Mode,
    pub seed: u64,
    /// Percentage of renames that go to another directory (joins partitions).
    pub cross_dir_renames: u32,
    /// Percentage of creates that write through to the under-storage.
    pub cache_through: u32,
    /// The clients' per-exchange timeout.
    pub timeout: Duration,
    /// The clients' `ClientOptions::metadata_ttl`: how stale their view of
    /// other clients' changes may be (zero: none).
    pub metadata_ttl: Duration,
}

/// A small seeded generator (xorshift64*): runs repeat from their seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn range(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_millis() as u64;
        lo + Duration::from_millis(self.below(span + 1))
    }
}

/// The run's clock: nanoseconds since it started.
#[derive(Clone, Copy)]
pub struct Clock(pub Instant);

impl Clock {
    pub fn now(&self) -> Time {
        self.0.elapsed().as_nanos() as Time
    }
}

/// Creates the directories of the key space (retrying while the master is
/// not up yet).
pub async fn setup(fs: &FileSystem, ks: &KeySpace) {
    for d in 0..ks.dirs {
        fs.mkdir(ks.dir_path(d), true).await.expect("mkdir");
    }
}

/// A client of the cluster whose masters are `masters`. The client takes
/// one address today; with several masters it will take the list.
fn fs_for(
    masters: &[String],
    client: u32,
    timeout: Duration,
    metadata_ttl: Duration,
) -> FileSystem {
    let master =
        eddy_client::MasterClient::lazy_with_timeout(&masters[0], timeout).expect("master address");
    let opts = ClientOptions {
        // Half the clients read and write through shared memory.
        short_circuit: client.is_multiple_of(2),
        timeout,
        metadata_ttl,
        ..Default::default()
    };
    FileSystem::with_master_opts(master, opts)
}

/// What the clients recorded: every call, and the inode id each successful
/// close reported for its create.
#[derive(Default)]
pub struct Recorded {
    pub entries: Vec<Entry>,
    pub inodes: std::collections::HashMap<u64, ContentId>,
    /// Inode ids that two successful closes reported (for two creates):
    /// file ids are never reused (block ids are made from them).
    pub reused: Vec<String>,
}

/// Runs the clients until `deadline`; returns what they recorded.
pub async fn run(
    masters: &[String],
    opts: &WorkloadOptions,
    clock: Clock,
    deadline: Instant,
) -> Recorded {
    let opts = Arc::new(opts.clone());
    let mut tasks = Vec::new();
    for c in 0..opts.clients {
        let fs = fs_for(masters, c, opts.timeout, opts.metadata_ttl);
        let opts = opts.clone();
        tasks.push(tokio::spawn(async move {
            client(fs, c, &opts, clock, deadline).await
        }));
    }
    let mut all = Recorded::default();
    for t in tasks {
        let (entries, inodes) = t.await.expect("client task");
        all.entries.extend(entries);
        for (inode, id) in inodes {
            if let Some(old) = all.inodes.insert(inode, id) {
                all.reused.push(format!(
                    "inode id {inode} was reported by the closes of two creates: {old:#x} and {id:#x}"
                ));
            }
        }
    }
    all
}

/// The paths client `c` may change in owner mode (all in shared mode).
fn owned(opts: &WorkloadOptions, c: u32) -> Vec<PathIdx> {
    (0..opts.ks.paths())
        .filter(|p| opts.mode == Mode::Shared || (p / 2) as u32 % opts.clients == c)
        .collect()
}

fn pick(rng: &mut Rng, v: &[PathIdx]) -> PathIdx {
    v[rng.below(v.len() as u64) as usize]
}

/// A rename target: the other path of the pair (owner mode), another name
/// in the directory, or (sometimes) a path of another directory.
fn rename_target(
    rng: &mut Rng,
    opts: &WorkloadOptions,
    mine: &[PathIdx],
    from: PathIdx,
) -> PathIdx {
    let ks = &opts.ks;
    if opts.mode == Mode::Owner {
        return from ^ 1;
    }
    if rng.below(100) < opts.cross_dir_renames as u64 {
        let to = pick(rng, mine);
        if to != from {
            return to;
        }
    }
    let d = ks.dir_of(from);
    let n = (from % ks.names + 1 + rng.below(ks.names as u64 - 1) as u16) % ks.names;
    d * ks.names + n
}

async fn client(
    fs: FileSystem,
    c: u32,
    opts: &WorkloadOptions,
    clock: Clock,
    deadline: Instant,
) -> (Vec<Entry>, Vec<(u64, ContentId)>) {
    let mut rng = Rng::new(opts.seed ^ ((c as u64 + 1) << 32));
    let mine = owned(opts, c);
    let ks = opts.ks;
    let mut seq = 0u64;
    let mut out = Vec::new();
    let mut inodes = Vec::new();
    while Instant::now() < deadline {
        let roll = rng.below(100);
        let any = rng.below(ks.paths() as u64) as PathIdx;
        let n = out.len();
        match roll {
            0..30 => {
                seq += 1;
                let id = ((c as u64 + 1) << 40) | (opts.seed & 0xff) << 32 | seq;
                let wt = if rng.below(100) < opts.cache_through as u64 {
                    WriteKind::CacheThrough
                } else {
                    WriteKind::MustCache
                };
                let path = pick(&mut rng, &mine);
                let at = Site {
                    fs: &fs,
                    c,
                    ks: &ks,
                    clock,
                };
                if let Some(inode) = create(at, path, id, wt, &mut out).await {
                    inodes.push((inode, id));
                }
            }
            30..45 => {
                let from = pick(&mut rng, &mine);
                let to = rename_target(&mut rng, opts, &mine, from);
                let op = Op::Rename { from, to };
                let r = record(
                    c,
                    op,
                    clock,
                    &mut out,
                    fs.rename(ks.path(from), ks.path(to)),
                )
                .await;
                finish(&mut out, r.map(|()| Res::Done));
            }
            45..57 => {
                let path = pick(&mut rng, &mine);
                let r = record(
                    c,
                    Op::Delete { path },
                    clock,
                    &mut out,
                    fs.delete(ks.path(path), false),
                )
                .await;
                finish(&mut out, r.map(|()| Res::Done));
            }
            57..67 => {
                let r = record(
                    c,
                    Op::Stat { path: any },
                    clock,
                    &mut out,
                    fs.stat(ks.path(any)),
                )
                .await;
                finish(&mut out, r.map(stat_res));
            }
            67..77 => {
                let dir = ks.dir_of(any);
                let r = record(
                    c,
                    Op::List { dir },
                    clock,
                    &mut out,
                    fs.list(ks.dir_path(dir)),
                )
                .await;
                finish(&mut out, r.map(|l| list_res(&ks, dir, l)));
            }
            _ => {
                let r = record(
                    c,
                    Op::Read { path: any },
                    clock,
                    &mut out,
                    read(&fs, &ks.path(any)),
                )
                .await;
                finish(&mut out, r);
            }
        }
        // While the master is down, calls fail at once: do not spin.
        if out[n..].iter().any(|e| matches!(e.res, Res::Unknown(_))) {
            tokio::time::sleep(Duration::from_millis(20 + rng.below(30))).await;
        }
    }
    (out, inodes)
}

/// Pushes the entry for `op` (invoked now), runs `f` and stamps its return.
async fn record<T, F>(
    c: u32,
    op: Op,
    clock: Clock,
    out: &mut Vec<Entry>,
    f: F,
) -> Result<T, ClientError>
where
    F: std::future::Future<Output = Result<T, ClientError>>,
{
    let invoke = clock.now();
    out.push(Entry {
        client: c,
        op,
        res: Res::Unknown(EddyCode::Unspecified),
        invoke,
        ret: 0,
        note: String::new(),
    });
    let r = f.await;
    out.last_mut().expect("pushed").ret = clock.now();
    r
}

/// Sets the last entry's result.
fn finish(out: &mut [Entry], r: Result<Res, ClientError>) {
    let e = out.last_mut().expect("pushed");
    e.res = match r {
        Ok(res) => res,
        Err(err) => {
            e.note = err.to_string();
            res_of(err.code())
        }
    };
}

fn res_of(code: EddyCode) -> Res {
    if is_indeterminate(code) {
        Res::Unknown(code)
    } else {
        Res::Err(code)
    }
}

/// Who is calling: the client's file system, number, key space and clock.
#[derive(Clone, Copy)]
struct Site<'a> {
    fs: &'a FileSystem,
    c: u32,
    ks: &'a KeySpace,
    clock: Clock,
}

/// A create, then (if it succeeded) the write and close, as two entries;
/// returns the inode id the close reported.
async fn create(
    at: Site<'_>,
    path: PathIdx,
    id: ContentId,
    wt: WriteKind,
    out: &mut Vec<Entry>,
) -> Option<u64> {
    let Site { fs, c, ks, clock } = at;
    let o = CreateOptions {
        write_type: match wt {
            WriteKind::MustCache => pb::WriteType::MustCache,
            WriteKind::CacheThrough => pb::WriteType::CacheThrough,
        },
        ..Default::default()
    };
    let op = Op::Create { path, id, wt };
    let w = record(c, op, clock, out, fs.create(ks.path(path), &o)).await;
    let mut w = match w {
        Ok(w) => {
            finish(out, Ok(Res::Done));
            w
        }
        Err(e) => {
            finish(out, Err(e));
            return None;
        }
    };
    let data = content(id);
    let written = record(c, Op::Close { id }, clock, out, async {
        for chunk in data.chunks(20_000) {
            w.write(chunk).await?;
        }
        w.close().await
    })
    .await;
    let inode = written.as_ref().ok().map(|s| s.id);
    finish(out, written.map(|_| Res::Done));
    inode
}

async fn read(fs: &FileSystem, path: &str) -> Result<Res, ClientError> {
    let bytes = fs
        .open(path, &OpenOptions::default())
        .await?
        .read_to_end()
        .await?;
    Ok(match parse_content(&bytes) {
        Ok(id) => Res::Read(id),
        Err(why) => Res::Garbled(why),
    })
}

/// The inode id of a stat is resolved to a create later, by the closes
/// that reported it ([`resolve_inodes`]).
fn stat_res(s: pb::FileStatus) -> Res {
    Res::Stat {
        complete: s.complete,
        length: s.length,
        id: Some(s.id),
    }
}

fn list_res(ks: &KeySpace, dir: u16, l: Vec<pb::FileStatus>) -> Res {
    let mut v: Vec<(PathIdx, bool)> = l
        .iter()
        .map(|s| {
            let name = String::from_utf8_lossy(&s.name);
            // A name outside the key space (no create made it) matches no
            // model state: index past the key space.
            (
                ks.parse_name(dir, &name).unwrap_or(PathIdx::MAX),
                s.complete,
            )
        })
        .collect();
    v.sort();
    Res::List(v)
}

/// Final reads by a fresh client after the nemesis stopped: every
/// directory listed and every path read, strictly (no cache yet).
pub async fn final_reads(
    masters: &[String],
    ks: &KeySpace,
    client: u32,
    clock: Clock,
    timeout: Duration,
) -> Vec<Entry> {
    let fs = fs_for(masters, 1, timeout, Duration::ZERO);
    let mut out = Vec::new();
    for d in 0..ks.dirs {
        let r = record(
            client,
            Op::List { dir: d },
            clock,
            &mut out,
            fs.list(ks.dir_path(d)),
        )
        .await;
        finish(&mut out, r.map(|l| list_res(ks, d, l)));
    }
    for p in 0..ks.paths() {
        let r = record(
            client,
            Op::Read { path: p },
            clock,
            &mut out,
            read(&fs, &ks.path(p)),
        )
        .await;
        finish(&mut out, r);
    }
    out
}

/// Replaces stat results' inode ids by the create they belong to: the
/// inode a successful close reported for it (a stat of an inode no close
/// reported keeps `None`: only completeness and length are checked).
pub fn resolve_inodes(history: &mut [Entry], inodes: &std::collections::HashMap<u64, ContentId>) {
    for e in history {
        if let Res::Stat { id, .. } = &mut e.res {
            *id = id.and_then(|inode| inodes.get(&inode).copied());
        }
    }
}
