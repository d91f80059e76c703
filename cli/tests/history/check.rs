//! The linearizability checker: Wing & Gong's search with Lowe's and
//! Porcupine's memoisation of (linearized set, model state), per partition
//! of the key space (the directories an operation touches, joined).
//!
//! Rules beyond the model's (docs/CONSISTENCY.md):
//! - an indeterminate operation is optional: it linearizes between its
//!   invocation and the moment its failure was reported, or never; after a
//!   `DEADLINE_EXCEEDED` (the server may still be working on it), or with
//!   [`CheckOptions::indeterminate_forever`], at any time after its
//!   invocation or never;
//! - a create whose close did not succeed gets an optional clean-up
//!   ([`Op::Discard`]) from the create's invocation to the close's answer
//!   (for ever, without a close or after an indeterminate create or close
//!   that may take effect for ever): the client library deletes the file
//!   when a create or close fails, and a master crash may lose a create
//!   that no one else saw before its close (docs/CONSISTENCY.md);
//! - a read by a client may linearize as early as `stale_bound` before its
//!   invocation (the client's metadata cache), but never before the end of
//!   that client's own last mutation of that path (read-your-writes);
//! - a read-only call that failed in transport says nothing and is dropped;
//!   an error code the model has no rule for, and bytes that are no
//!   create's content, are violations on their own.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use eddy_client::EddyCode;

use super::model::{KeySpace, NEVER, Op, PathIdx, Res, State, Time, code_has_rule};

/// One recorded call.
#[derive(Debug, Clone)]
pub struct Entry {
    pub client: u32,
    pub op: Op,
    pub res: Res,
    pub invoke: Time,
    pub ret: Time,
    /// The error's message, when it failed (for explanations only).
    pub note: String,
}

#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// How much earlier than its invocation a read by a client may observe
    /// the namespace (0: strict).
    pub stale_bound: Time,
    /// DATA_LOST is a legal answer for a complete MUST_CACHE file (a worker
    /// was killed and memory is lost with it).
    pub worker_loss: bool,
    /// Indeterminate operations may take effect at any later time.
    pub indeterminate_forever: bool,
    /// Search nodes per partition before answering "unknown".
    pub max_nodes: u64,
    /// Search time per partition (all its searches together) before
    /// answering "unknown".
    pub time_limit: Duration,
    /// Violations reported per partition before its search stops.
    pub max_violations_per_partition: u32,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            stale_bound: 0,
            worker_loss: false,
            indeterminate_forever: false,
            max_nodes: 5_000_000,
            time_limit: Duration::from_secs(30),
            max_violations_per_partition: 10,
        }
    }
}

/// The time left for finding further violations in a partition after its
/// first (they are approximate anyway; the verdict is already known).
const RECOUNT_TIME: Duration = Duration::from_secs(5);

/// The checker's answer for a whole history.
#[derive(Debug, Default)]
pub struct Report {
    pub ops: usize,
    pub indeterminate: usize,
    pub partitions: usize,
    /// Of the violations: partitions' histories with no linearization (and
    /// the further ones found after leaving the unplaceable op out).
    pub not_linearizable: usize,
    /// Of the violations: errors the model has no rule for.
    pub no_rule: usize,
    /// Of the violations: reads of bytes that are no create's content.
    pub garbled: usize,
    /// Of the violations: file (inode) ids that two creates were given
    /// (found by the recorder, not the checker).
    pub id_reused: usize,
    /// One explanation per violation.
    pub violations: Vec<String>,
    /// Partitions whose search hit a bound: neither ok nor a violation.
    pub unknown: Vec<String>,
    /// Per partition: its ops, searches, search nodes and time.
    pub effort: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.violations.is_empty() && self.unknown.is_empty()
    }
}

/// An operation as the search sees it.
#[derive(Clone)]
struct SOp {
    entry: usize,
    op: Op,
    res: Res,
    inv: Time,
    ret: Time,
    optional: bool,
}

/// Checks `history` against the namespace model.
pub fn check(history: &[Entry], ks: &KeySpace, opts: &CheckOptions) -> Report {
    let mut report = Report {
        ops: history.len(),
        ..Default::default()
    };
    let sops = prepare(history, ks, opts, &mut report);
    let parts = partition(sops, history, ks);
    report.partitions = parts.len();
    for (dirs, mut ops) in parts {
        ops.sort_by_key(|o| (o.inv, o.ret));
        // After a violation the op that could not be placed is made optional
        // and the search goes on from the longest prefix it found, so one run
        // reports more than its first violation per partition. Only the first
        // is exact: the op left out may not be the culprit, and another
        // prefix might have gone further.
        let started = Instant::now();
        let mut deadline = started + opts.time_limit;
        let mut root: Option<Stuck> = None;
        let (mut searches, mut nodes) = (0, 0);
        for _ in 0..opts.max_violations_per_partition {
            searches += 1;
            match search(&ops, ks, opts, deadline, root.as_ref(), &mut nodes) {
                Outcome::Ok => break,
                Outcome::Violation(why) => {
                    report.not_linearizable += 1;
                    report.violations.push(format!(
                        "partition {}: not linearizable\n{}",
                        show_dirs(ks, &dirs),
                        explain(&ops, &why, history, ks)
                    ));
                    match ops.get_mut(why.at) {
                        Some(o) => o.optional = true,
                        None => break,
                    }
                    root = Some(why);
                    // The partition is known to be violated; further counting
                    // gets a short budget of its own.
                    deadline = deadline.min(Instant::now() + RECOUNT_TIME);
                }
                // Past the first violation a bound only ends the counting.
                Outcome::Unknown(_) if root.is_some() => break,
                Outcome::Unknown(why) => {
                    report
                        .unknown
                        .push(format!("partition {}: {why}", show_dirs(ks, &dirs)));
                    break;
                }
            }
        }
        report.effort.push(format!(
            "{}: {} ops, {searches} searches, {nodes} nodes, {:?}",
            show_dirs(ks, &dirs),
            ops.len(),
            started.elapsed()
        ));
    }
    report
}

fn show_dirs(ks: &KeySpace, dirs: &[u16]) -> String {
    let v: Vec<String> = dirs.iter().map(|d| ks.dir_path(*d)).collect();
    v.join(",")
}

/// Classifies results, adds clean-ups, widens reads by the staleness bound.
fn prepare(history: &[Entry], ks: &KeySpace, opts: &CheckOptions, report: &mut Report) -> Vec<SOp> {
    let mut order: Vec<usize> = (0..history.len()).collect();
    order.sort_by_key(|&i| (history[i].client, history[i].invoke));
    // Per client and path: when its last mutation of that path returned.
    let mut own: HashMap<(u32, PathIdx), Time> = HashMap::new();
    let mut create_path: HashMap<u64, PathIdx> = HashMap::new();
    let closes: HashMap<u64, &Entry> = history
        .iter()
        .filter_map(|e| match e.op {
            Op::Close { id } => Some((id, e)),
            _ => None,
        })
        .collect();
    let lasts_forever = |e: &Entry| {
        opts.indeterminate_forever || matches!(e.res, Res::Unknown(EddyCode::DeadlineExceeded))
    };
    let mut out = Vec::new();
    for i in order {
        let e = &history[i];
        let line = || {
            format!(
                "{}  [client {}] {} -> {:?}: {}",
                stamp(e.invoke, e.ret),
                e.client,
                e.op.show(ks),
                e.res,
                e.note
            )
        };
        let mut res = e.res.clone();
        match &e.res {
            Res::Garbled(_) => {
                report.garbled += 1;
                report
                    .violations
                    .push(format!("a read returned bytes of no create: {}", line()));
                continue;
            }
            Res::Err(c) if !code_has_rule(&e.op, *c, opts.worker_loss) => {
                report.no_rule += 1;
                report
                    .violations
                    .push(format!("an error the model has no rule for: {}", line()));
                if !e.op.is_mutation() {
                    continue;
                }
                res = Res::Unknown(*c);
            }
            Res::Unknown(_) if !e.op.is_mutation() => continue,
            // The file was made, then deleted or moved by another client
            // before it could be written: the create is optional (it may have
            // been seen), and nothing of it may be left when it answered.
            Res::Err(EddyCode::NotFound) if matches!(e.op, Op::Create { .. }) => {
                res = Res::Unknown(EddyCode::NotFound);
                if let Op::Create { id, .. } = e.op {
                    out.push(SOp {
                        entry: i,
                        op: Op::Gone { id },
                        res: e.res.clone(),
                        inv: e.ret,
                        ret: e.ret,
                        optional: false,
                    });
                }
            }
            _ => {}
        }
        let indeterminate = matches!(res, Res::Unknown(_));
        report.indeterminate += matches!(e.res, Res::Unknown(_)) as usize;
        let forever = opts.indeterminate_forever
            || matches!(res, Res::Unknown(eddy_client::EddyCode::DeadlineExceeded));
        let ret = if indeterminate && forever {
            NEVER
        } else {
            e.ret
        };
        let mut inv = e.invoke;
        let mut touched = e.op.paths();
        if let Op::Create { path, id, .. } = e.op {
            create_path.insert(id, path);
        }
        if let Op::Close { id } = e.op {
            touched.extend(create_path.get(&id));
        }
        if let Op::Read { path } = e.op {
            let floor = own.get(&(e.client, path)).copied().unwrap_or(0);
            inv = inv
                .saturating_sub(opts.stale_bound)
                .max(floor)
                .min(e.invoke);
        }
        // Only a change the client made (or may have made) binds its reads:
        // a definite failure changed nothing, and nothing of the cache.
        if e.op.is_mutation() && matches!(e.res, Res::Done | Res::Unknown(_)) {
            for p in touched {
                // Strictly after it: a tie would let the read come first.
                own.insert((e.client, p), e.ret.saturating_add(1));
            }
        }
        if let (Res::Done | Res::Unknown(_), Op::Create { id, .. }) = (&res, &e.op) {
            let close = closes.get(id);
            let end = match close {
                Some(c) if c.res == Res::Done => None,
                Some(c) if !lasts_forever(c) => Some(c.ret.max(ret)),
                _ => Some(NEVER),
            };
            if let Some(end) = end {
                out.push(SOp {
                    entry: i,
                    op: Op::Discard { id: *id },
                    res: res.clone(),
                    inv,
                    ret: end,
                    optional: true,
                });
            }
        }
        out.push(SOp {
            entry: i,
            op: e.op,
            res,
            inv,
            ret,
            optional: indeterminate,
        });
    }
    out
}

/// Groups operations by the connected sets of directories they touch.
fn partition(sops: Vec<SOp>, history: &[Entry], ks: &KeySpace) -> Vec<(Vec<u16>, Vec<SOp>)> {
    let mut parent: Vec<u16> = (0..ks.dirs).collect();
    fn find(p: &mut [u16], x: u16) -> u16 {
        let mut r = x;
        while p[r as usize] != r {
            r = p[r as usize];
        }
        p[x as usize] = r;
        r
    }
    let mut create_dir: HashMap<u64, u16> = HashMap::new();
    let dirs_of = |op: &Op, create_dir: &HashMap<u64, u16>| -> Vec<u16> {
        match op {
            Op::List { dir } => vec![*dir],
            Op::Close { id } | Op::Discard { id } | Op::Gone { id } => {
                create_dir.get(id).copied().into_iter().collect()
            }
            op => op.paths().iter().map(|p| ks.dir_of(*p)).collect(),
        }
    };
    for e in history {
        if let Op::Create { path, id, .. } = e.op {
            create_dir.insert(id, ks.dir_of(path));
        }
    }
    for s in &sops {
        let ds = dirs_of(&s.op, &create_dir);
        for w in ds.windows(2) {
            let (a, b) = (find(&mut parent, w[0]), find(&mut parent, w[1]));
            parent[a as usize] = b;
        }
    }
    let mut groups: HashMap<u16, (Vec<u16>, Vec<SOp>)> = HashMap::new();
    for d in 0..ks.dirs {
        let r = find(&mut parent, d);
        groups.entry(r).or_default().0.push(d);
    }
    for s in sops {
        // A close of a create never recorded belongs nowhere: nothing to check.
        let Some(&d) = dirs_of(&s.op, &create_dir).first() else {
            continue;
        };
        let r = find(&mut parent, d);
        groups
            .get_mut(&r)
            .expect("every directory has a group")
            .1
            .push(s);
    }
    let mut v: Vec<_> = groups.into_values().filter(|g| !g.1.is_empty()).collect();
    v.sort_by_key(|g| g.0[0]);
    v
}

enum Outcome {
    Ok,
    Violation(Stuck),
    Unknown(String),
}

/// Where the search got furthest: the first operation it could not place.
struct Stuck {
    /// Index (in the partition's order) of the first unplaced required op.
    at: usize,
    state: State,
    placed: Vec<bool>,
}

/// A search node: the state after the ops placed so far.
struct Frame {
    state: State,
    /// Every op below `low` is placed, or optional and out of its window.
    low: usize,
    /// The latest invocation among placed ops.
    max_inv: Time,
    cands: Vec<usize>,
    next: usize,
    /// The op this frame placed (to unplace on the way back).
    placed: Option<usize>,
}

/// Whether placing `o` cannot change the state: a read-only call, or a
/// definite failure.
fn read_only(o: &SOp) -> bool {
    !o.op.is_mutation() || matches!(o.res, Res::Err(_))
}

/// A 128-bit fingerprint of a model state (memo keys stay small; a
/// collision, at odds near 2^-64 per pair, could only hide a linearization).
fn state_hash(s: &State) -> u128 {
    use std::hash::{Hash, Hasher};
    let mut a = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut a);
    let mut b = std::collections::hash_map::DefaultHasher::new();
    0x5eed_u64.hash(&mut b);
    s.hash(&mut b);
    ((a.finish() as u128) << 64) | b.finish() as u128
}

/// Searches for a linearization of `ops`, from scratch or extending the
/// prefix `root`.
fn search(
    ops: &[SOp],
    ks: &KeySpace,
    opts: &CheckOptions,
    deadline: Instant,
    root: Option<&Stuck>,
    total_nodes: &mut u64,
) -> Outcome {
    let n = ops.len();
    let started = Instant::now();
    let mut placed = root.map_or_else(|| vec![false; n], |r| r.placed.clone());
    let state = root.map_or_else(State::default, |r| r.state.clone());
    // Zobrist keys: the placed set's fingerprint is the xor of its ops'.
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut key = || {
        let mut k = 0u128;
        for _ in 0..2 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            k = (k << 64) | rng as u128;
        }
        k
    };
    let zob: Vec<u128> = (0..n).map(|_| key()).collect();
    let mut set_key = (0..n).filter(|&i| placed[i]).fold(0, |k, i| k ^ zob[i]);
    let max_inv = (0..n)
        .filter(|&i| placed[i])
        .map(|i| ops[i].inv)
        .max()
        .unwrap_or(0);
    let mut required_left = (0..n).filter(|&i| !placed[i] && !ops[i].optional).count();
    let mut seen: HashSet<(u128, u128)> = HashSet::new();
    let mut best: Option<Stuck> = None;
    let mut best_count = usize::MAX;
    let mut nodes = 0u64;
    let ctx = Ctx {
        ops,
        ks,
        worker_loss: opts.worker_loss,
    };
    let mut stack = vec![ctx.node(&placed, state, 0, max_inv, None)];
    while let Some(top) = stack.last_mut() {
        if required_left == 0 {
            return Outcome::Ok;
        }
        if top.next == 0 && required_left < best_count {
            best_count = required_left;
            // The op that most needed placing: the earliest to return.
            let at = (top.low..n)
                .filter(|&i| !placed[i] && !ops[i].optional)
                .min_by_key(|&i| ops[i].ret)
                .unwrap_or(n);
            best = Some(Stuck {
                at,
                state: top.state.clone(),
                placed: placed.clone(),
            });
        }
        let Some(&c) = top.cands.get(top.next) else {
            let f = stack.pop().expect("top exists");
            if let Some(i) = f.placed {
                placed[i] = false;
                set_key ^= zob[i];
                required_left += !ops[i].optional as usize;
            }
            continue;
        };
        top.next += 1;
        let Some(state) = top
            .state
            .step(ks, &ops[c].op, &ops[c].res, opts.worker_loss)
        else {
            continue;
        };
        nodes += 1;
        *total_nodes += 1;
        if nodes > opts.max_nodes || (nodes.is_multiple_of(4096) && Instant::now() > deadline) {
            return Outcome::Unknown(format!(
                "search bound hit ({nodes} nodes, {:?}, {n} ops): unknown",
                started.elapsed()
            ));
        }
        if !seen.insert((set_key ^ zob[c], state_hash(&state))) {
            continue;
        }
        set_key ^= zob[c];
        placed[c] = true;
        required_left -= !ops[c].optional as usize;
        let (low, max_inv) = (top.low, top.max_inv.max(ops[c].inv));
        stack.push(ctx.node(&placed, state, low, max_inv, Some(c)));
    }
    Outcome::Violation(best.expect("the root was visited"))
}

struct Ctx<'a> {
    ops: &'a [SOp],
    ks: &'a KeySpace,
    worker_loss: bool,
}

impl Ctx<'_> {
    /// A frame for `state` with its candidates: unplaced ops that no
    /// unplaced required op precedes in real time (returned before they were
    /// invoked).
    ///
    /// A read-only candidate legal in `state` is placed at once, alone: if
    /// any order works, one with it here does (it changes nothing, and
    /// everything after it may still follow it), unless an optional op that
    /// must precede it is still open.
    fn node(
        &self,
        placed: &[bool],
        state: State,
        low: usize,
        max_inv: Time,
        p: Option<usize>,
    ) -> Frame {
        let ops = self.ops;
        let dead = |i: usize| ops[i].optional && ops[i].ret < max_inv;
        let mut low = low;
        while low < ops.len() && (placed[low] || dead(low)) {
            low += 1;
        }
        let mut min_ret = NEVER;
        let mut min_opt_ret = NEVER;
        let (mut req, mut opt) = (Vec::new(), Vec::new());
        for i in low..ops.len() {
            if ops[i].inv > min_ret {
                break;
            }
            if placed[i] || dead(i) {
                continue;
            }
            if ops[i].optional {
                opt.push(i);
                min_opt_ret = min_opt_ret.min(ops[i].ret);
            } else {
                req.push(i);
                min_ret = min_ret.min(ops[i].ret);
            }
        }
        let free = req.iter().copied().find(|&i| {
            read_only(&ops[i])
                && ops[i].inv <= min_opt_ret
                && state.unchanged(self.ks, &ops[i].op, &ops[i].res, self.worker_loss) == Some(true)
        });
        let cands = match free {
            Some(i) => vec![i],
            None => {
                // Required ops first, earliest return first: the likeliest order.
                req.sort_by_key(|&i| ops[i].ret);
                req.extend(opt.into_iter().filter(|&i| ops[i].inv <= min_ret));
                req
            }
        };
        Frame {
            state,
            low,
            max_inv,
            cands,
            next: 0,
            placed: p,
        }
    }
}

fn stamp(inv: Time, ret: Time) -> String {
    let ms = |t: Time| {
        if t == NEVER {
            "never".to_string()
        } else {
            format!("{:.3}", t as f64 / 1e9)
        }
    };
    format!("{}..{}", ms(inv), ms(ret))
}

/// The op no linearization could place, the model state before it, and
/// the ops overlapping it in real time on the same paths (as recorded: a
/// read's window may reach back by the staleness bound), with a few earlier
/// ones on those paths.
fn explain(ops: &[SOp], s: &Stuck, history: &[Entry], ks: &KeySpace) -> String {
    let mut out = format!(
        "  longest linearizable prefix ends in state: {}\n  no order places the op marked >>>; ops on its paths around it (* = in that prefix):\n",
        s.state.show(ks)
    );
    let Some(stuck) = ops.get(s.at) else {
        return out;
    };
    let dir = |o: &SOp| match (&o.op, o.op.paths().first()) {
        (Op::List { dir }, _) => Some(*dir),
        (_, Some(p)) => Some(ks.dir_of(*p)),
        _ => None,
    };
    let ids = |o: &SOp| match (&o.op, &o.res) {
        (Op::Create { id, .. } | Op::Close { id } | Op::Discard { id } | Op::Gone { id }, _)
        | (_, Res::Read(id)) => Some(*id),
        _ => None,
    };
    // A close names no path: take its create's and where the file is now.
    let mut paths = stuck.op.paths();
    if let Op::Close { id } | Op::Discard { id } | Op::Gone { id } = stuck.op {
        paths.extend(ops.iter().find_map(|o| match o.op {
            Op::Create { path, id: c, .. } if c == id => Some(path),
            _ => None,
        }));
        paths.extend(s.state.path_of(id));
    }
    let related = |o: &SOp| {
        o.op.paths().iter().any(|p| paths.contains(p))
            || (ids(o).is_some() && ids(o) == ids(stuck))
            || (matches!(o.op, Op::List { .. }) || matches!(stuck.op, Op::List { .. }))
                && dir(o) == dir(stuck)
    };
    let mut order: Vec<usize> = (0..ops.len()).filter(|&i| related(&ops[i])).collect();
    order.sort_by_key(|&i| history[ops[i].entry].invoke);
    let pos = order.iter().position(|&i| i == s.at).unwrap_or(0);
    let before = order[..pos].iter().rev().take(8).count();
    let shown = order[pos - before..]
        .iter()
        .filter(|&&i| {
            i == s.at || history[ops[i].entry].invoke <= stuck.ret || order[..pos].contains(&i)
        })
        .take(24);
    for &i in shown {
        let o = &ops[i];
        let e = &history[o.entry];
        let mark = if i == s.at {
            ">>>"
        } else if s.placed[i] {
            "  *"
        } else {
            "   "
        };
        let opt = if o.optional { " (optional)" } else { "" };
        let ret = if o.ret == NEVER { NEVER } else { e.ret };
        out.push_str(&format!(
            "  {mark} {}  [client {}] {} -> {:?}{opt}\n",
            stamp(e.invoke, ret),
            e.client,
            o.op.show(ks),
            o.res
        ));
    }
    out
}
