//! The history (Jepsen-style) consistency test: clients on a small key
//! space, the master (or a worker) killed with SIGKILL and restarted, every
//! call recorded and the history checked for linearizability against a
//! namespace model (docs/CONSISTENCY.md). The checker itself is tested here
//! on hand-made good and bad histories.
//!
//! Long runs by hand:
//! `EDDY_HISTORY_SECS=30 EDDY_HISTORY_RUNS=10 EDDY_HISTORY_MODE=shared
//! EDDY_HISTORY_NEMESIS=master cargo test -p eddy-cli --test history --
//! --ignored history_long --nocapture`

mod common;
#[path = "history/mod.rs"]
mod history;

use eddy_client::EddyCode;
use history::check::{CheckOptions, Entry, check};
use history::model::{KeySpace, NEVER, Op, Res, WriteKind, content, content_len, parse_content};
use history::nemesis::Target;
use history::workload::Mode;
use history::{RunOptions, run_once};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn seed() -> u64 {
    env_or(
        "EDDY_HISTORY_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1),
    )
}

/// The CI run: shared paths, then one writer per path, 25 s each with the
/// master killed every 3-6 s; no violation and no "unknown" allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn history_ci() {
    let seed = seed();
    let mut failed = Vec::new();
    for (i, mode) in [Mode::Shared, Mode::Owner].into_iter().enumerate() {
        let s = run_once(&RunOptions::standard(
            mode,
            Target::Master,
            25,
            seed + i as u64,
        ))
        .await;
        s.print(5);
        if !s.report.ok() {
            failed.push(s.line());
        }
    }
    assert!(
        failed.is_empty(),
        "history runs with violations or unknown results: {failed:#?}"
    );
}

/// Long runs by hand, driven by EDDY_HISTORY_SECS (per run, default 30),
/// EDDY_HISTORY_RUNS (10), EDDY_HISTORY_MODE (shared|owner),
/// EDDY_HISTORY_NEMESIS (master|worker|none), EDDY_HISTORY_SEED,
/// EDDY_HISTORY_CT (percent of creates CACHE_THROUGH, 50),
/// EDDY_HISTORY_TTL_MS (the clients' metadata cache, 0: none; reads of
/// other clients' changes may then be that stale plus 250 ms),
/// EDDY_HISTORY_STALE_MS (overrides that allowance) and EDDY_HISTORY_CROSS
/// (percent of renames across directories, 0; joins the partitions).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long: run by hand (see the file's doc)"]
async fn history_long() {
    let secs = env_or("EDDY_HISTORY_SECS", 30u64);
    let runs = env_or("EDDY_HISTORY_RUNS", 10u32);
    let mode = match std::env::var("EDDY_HISTORY_MODE").as_deref() {
        Ok("owner") => Mode::Owner,
        _ => Mode::Shared,
    };
    let nemesis = std::env::var("EDDY_HISTORY_NEMESIS");
    let target = match nemesis.as_deref() {
        Ok("worker") => Target::Worker,
        _ => Target::Master,
    };
    let seed = seed();
    let mut bad = 0;
    for r in 0..runs {
        let mut o = RunOptions::standard(mode, target, secs, seed + r as u64);
        o.workload.cache_through = env_or("EDDY_HISTORY_CT", 50);
        o.workload.cross_dir_renames = env_or("EDDY_HISTORY_CROSS", 0);
        let ttl = std::time::Duration::from_millis(env_or("EDDY_HISTORY_TTL_MS", 0));
        o = o.with_metadata_ttl(ttl);
        if let Some(ms) = std::env::var("EDDY_HISTORY_STALE_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            o.check.stale_bound = ms * MS;
        }
        if nemesis.as_deref() == Ok("none") {
            // No kills: races alone.
            o.nemesis.max_kills = 0;
        }
        let s = run_once(&o).await;
        s.print(10);
        bad += !s.report.ok() as u32;
    }
    assert_eq!(
        bad, 0,
        "{bad} of {runs} runs had violations or unknown results"
    );
}

/// Checks a history written by `EDDY_HISTORY_DUMP` again, without a
/// cluster: `EDDY_HISTORY_REPLAY=FILE` (`EDDY_HISTORY_STALE_MS`, 0 unless
/// given; `EDDY_HISTORY_NEMESIS=worker` for DATA_LOST as the worker nemesis
/// allows).
#[test]
#[ignore = "by hand: checks a dumped history again"]
fn history_replay() {
    let path = std::env::var("EDDY_HISTORY_REPLAY").expect("EDDY_HISTORY_REPLAY=FILE");
    let text = std::fs::read_to_string(&path).expect("read the dump");
    let o = RunOptions::standard(Mode::Shared, Target::Master, 0, 0);
    let ks = o.workload.ks;
    let h = history::replay::parse(&ks, &text).expect("parse the dump");
    let opts = CheckOptions {
        stale_bound: env_or("EDDY_HISTORY_STALE_MS", 0u64) * MS,
        worker_loss: std::env::var("EDDY_HISTORY_NEMESIS").as_deref() == Ok("worker"),
        ..o.check
    };
    let started = std::time::Instant::now();
    let r = check(&h, &ks, &opts);
    println!(
        "replay {path}: ops={} indeterminate={} violations={} (not-linearizable={} no-rule={} garbled={}) unknown={} in {:?}",
        r.ops,
        r.indeterminate,
        r.violations.len(),
        r.not_linearizable,
        r.no_rule,
        r.garbled,
        r.unknown.len(),
        started.elapsed()
    );
    println!("effort: {}", r.effort.join("; "));
    for v in r.violations.iter().take(5).chain(&r.unknown) {
        println!("---\n{v}");
    }
}

// ---- the checker on hand-made histories ----

const KS: KeySpace = KeySpace { dirs: 2, names: 4 };
const A: u16 = 0;
const B: u16 = 1;
/// A path of the other directory.
const X: u16 = 4;
const MS: u64 = 1_000_000;

fn e(client: u32, from_ms: u64, to_ms: u64, op: Op, res: Res) -> Entry {
    let ret = if to_ms == u64::MAX { NEVER } else { to_ms * MS };
    Entry {
        client,
        op,
        res,
        invoke: from_ms * MS,
        ret,
        note: String::new(),
    }
}

fn create(client: u32, at: u64, path: u16, id: u64) -> [Entry; 2] {
    [
        e(
            client,
            at,
            at + 1,
            Op::Create {
                path,
                id,
                wt: WriteKind::MustCache,
            },
            Res::Done,
        ),
        e(client, at + 2, at + 3, Op::Close { id }, Res::Done),
    ]
}

fn strict() -> CheckOptions {
    CheckOptions::default()
}

fn violations(h: &[Entry], o: &CheckOptions) -> Vec<String> {
    let r = check(h, &KS, o);
    assert!(r.unknown.is_empty(), "{:?}", r.unknown);
    r.violations
}

#[test]
fn content_names_its_create_and_catches_other_bytes() {
    for id in [1u64, 0xdead_beef, (3 << 40) | 77] {
        let c = content(id);
        assert_eq!(c.len(), content_len(id));
        assert_eq!(parse_content(&c), Ok(id));
        assert!(parse_content(&c[..c.len() - 8]).is_err(), "cut short");
        let mut other = c.clone();
        other[100] ^= 1;
        assert!(parse_content(&other).is_err(), "a changed byte");
    }
    assert!(parse_content(b"").is_err());
}

#[test]
fn a_dumped_history_reads_back_the_same() {
    let mut h = Vec::new();
    h.extend(create(0, 0, A, 7));
    h.push(e(
        1,
        4,
        5,
        Op::Create {
            path: X,
            id: 9,
            wt: WriteKind::CacheThrough,
        },
        Res::Unknown(EddyCode::DeadlineExceeded),
    ));
    h.push(e(1, 10, 11, Op::Read { path: A }, Res::Read(7)));
    h.push(e(
        1,
        12,
        13,
        Op::Read { path: B },
        Res::Garbled("8 bytes".into()),
    ));
    h.push(e(
        1,
        14,
        15,
        Op::Stat { path: A },
        Res::Stat {
            complete: true,
            length: 99,
            id: Some(7),
        },
    ));
    h.push(e(
        1,
        16,
        17,
        Op::Stat { path: B },
        Res::Stat {
            complete: false,
            length: 0,
            id: None,
        },
    ));
    h.push(e(
        0,
        20,
        21,
        Op::Rename { from: A, to: B },
        Res::Err(EddyCode::AlreadyExists),
    ));
    h.push(e(
        1,
        34,
        35,
        Op::List { dir: 0 },
        Res::List(vec![(B, true), (2, false)]),
    ));
    h.push(e(1, 36, 37, Op::List { dir: 1 }, Res::List(vec![])));
    h.push(e(
        2,
        40,
        41,
        Op::Delete { path: B },
        Res::Err(EddyCode::FileIncomplete),
    ));
    h[2].note = "a message (NOT_FOUND)".into();
    let text = history::dump_text(&KS, &h, &["1.000 kill -9 master 0".into()]);
    let back = history::replay::parse(&KS, &text).unwrap();
    assert_eq!(format!("{back:?}"), format!("{h:?}"));
}

#[test]
fn checker_accepts_a_sequential_history() {
    let mut h = Vec::new();
    h.extend(create(0, 0, A, 7));
    h.push(e(1, 10, 11, Op::Read { path: A }, Res::Read(7)));
    h.push(e(
        1,
        12,
        13,
        Op::Stat { path: A },
        Res::Stat {
            complete: true,
            length: content_len(7) as u64,
            id: Some(7),
        },
    ));
    h.push(e(0, 20, 21, Op::Rename { from: A, to: B }, Res::Done));
    h.push(e(1, 30, 31, Op::Read { path: B }, Res::Read(7)));
    h.push(e(
        1,
        32,
        33,
        Op::Read { path: A },
        Res::Err(EddyCode::NotFound),
    ));
    h.push(e(
        1,
        34,
        35,
        Op::List { dir: 0 },
        Res::List(vec![(B, true)]),
    ));
    h.push(e(
        2,
        36,
        37,
        Op::Create {
            path: B,
            id: 8,
            wt: WriteKind::CacheThrough,
        },
        Res::Err(EddyCode::AlreadyExists),
    ));
    h.push(e(2, 40, 41, Op::Delete { path: B }, Res::Done));
    h.push(e(
        1,
        50,
        51,
        Op::Read { path: B },
        Res::Err(EddyCode::NotFound),
    ));
    h.push(e(
        1,
        52,
        53,
        Op::Delete { path: B },
        Res::Err(EddyCode::NotFound),
    ));
    let r = check(&h, &KS, &strict());
    assert!(r.ok(), "{:#?}", r);
    assert_eq!(r.partitions, 1);
}

#[test]
fn checker_rejects_a_lost_acknowledged_create() {
    let mut h = Vec::new();
    h.extend(create(0, 0, A, 7));
    h.push(e(
        1,
        100,
        101,
        Op::Read { path: A },
        Res::Err(EddyCode::NotFound),
    ));
    let v = violations(&h, &strict());
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        v[0].contains("not linearizable") && v[0].contains(">>>"),
        "{}",
        v[0]
    );
    // Even a reader allowed to be stale cannot miss it forever.
    let lax = CheckOptions {
        stale_bound: 50 * MS,
        ..strict()
    };
    assert_eq!(violations(&h, &lax).len(), 1);
}

#[test]
fn checker_rejects_a_read_of_a_deleted_file_after_the_delete() {
    let mut h = Vec::new();
    h.extend(create(0, 0, A, 7));
    h.push(e(0, 10, 11, Op::Delete { path: A }, Res::Done));
    h.push(e(1, 20, 21, Op::Read { path: A }, Res::Read(7)));
    assert_eq!(violations(&h, &strict()).len(), 1);
    // Another client's cache may lag by the staleness bound, not more.
    let lax = CheckOptions {
        stale_bound: 15 * MS,
        ..strict()
    };
    assert!(violations(&h, &lax).is_empty());
    let tight = CheckOptions {
        stale_bound: 5 * MS,
        ..strict()
    };
    assert_eq!(violations(&h, &tight).len(), 1);
}

#[test]
fn checker_rejects_a_stale_read_by_the_writing_client() {
    let mut h = Vec::new();
    h.extend(create(0, 0, A, 7));
    h.push(e(0, 10, 11, Op::Delete { path: A }, Res::Done));
    h.push(e(0, 20, 21, Op::Read { path: A }, Res::Read(7)));
    // Strict for the client's own writes whatever the bound for others.
    let lax = CheckOptions {
        stale_bound: 1000 * MS,
        ..strict()
    };
    assert_eq!(violations(&h, &lax).len(), 1);
    // Its own rename too: the old name must be gone for it.
    let mut h = Vec::new();
    h.extend(create(0, 0, A, 7));
    h.push(e(0, 10, 11, Op::Rename { from: A, to: B }, Res::Done));
    h.push(e(0, 20, 21, Op::Read { path: A }, Res::Read(7)));
    assert_eq!(violations(&h, &lax).len(), 1);
}

#[test]
fn checker_lets_a_failed_change_leave_the_cache_alone() {
    // Client 1 read A (cached), client 0 replaced it; client 1's own create
    // of A then failed: it changed nothing, so its next read may still be
    // within the staleness bound of the other client's changes.
    let mut h = Vec::new();
    h.extend(create(0, 0, A, 7));
    h.push(e(1, 5, 6, Op::Read { path: A }, Res::Read(7)));
    h.push(e(0, 10, 11, Op::Delete { path: A }, Res::Done));
    h.extend(create(0, 12, A, 8));
    h.push(e(
        1,
        20,
        21,
        Op::Create {
            path: A,
            id: 9,
            wt: WriteKind::MustCache,
        },
        Res::Err(EddyCode::AlreadyExists),
    ));
    h.push(e(1, 22, 23, Op::Read { path: A }, Res::Read(7)));
    let lax = CheckOptions {
        stale_bound: 15 * MS,
        ..strict()
    };
    assert!(violations(&h, &lax).is_empty());
    assert_eq!(violations(&h, &strict()).len(), 1);
}

#[test]
fn checker_holds_a_create_that_answered_not_found_to_its_word() {
    // Another client deleted the new file before it could be written.
    let c = e(
        0,
        0,
        10,
        Op::Create {
            path: A,
            id: 7,
            wt: WriteKind::CacheThrough,
        },
        Res::Err(EddyCode::NotFound),
    );
    let seen = e(
        1,
        2,
        3,
        Op::Stat { path: A },
        Res::Stat {
            complete: false,
            length: 0,
            id: None,
        },
    );
    let deleted = e(1, 4, 5, Op::Delete { path: A }, Res::Done);
    assert!(violations(&[c.clone(), seen.clone(), deleted], &strict()).is_empty());
    // Said NOT_FOUND, yet its file is still there afterwards.
    let after = e(
        1,
        20,
        21,
        Op::Stat { path: A },
        Res::Stat {
            complete: false,
            length: 0,
            id: None,
        },
    );
    assert_eq!(violations(&[c, seen, after], &strict()).len(), 1);
}

#[test]
fn checker_accepts_an_indeterminate_create_either_way() {
    let unknown = Res::Unknown(EddyCode::Unavailable);
    let c = e(
        0,
        0,
        10,
        Op::Create {
            path: A,
            id: 7,
            wt: WriteKind::CacheThrough,
        },
        unknown.clone(),
    );
    let seen = e(
        1,
        5,
        20,
        Op::Stat { path: A },
        Res::Stat {
            complete: false,
            length: 0,
            id: None,
        },
    );
    let absent = e(
        1,
        30,
        31,
        Op::Stat { path: A },
        Res::Err(EddyCode::NotFound),
    );
    // It took effect, and the library's clean-up deleted it again...
    assert!(violations(&[c.clone(), seen.clone(), absent.clone()], &strict()).is_empty());
    // ...or it never happened.
    assert!(violations(&[c.clone(), absent.clone()], &strict()).is_empty());
    // An indeterminate close: the content may show up, or the file goes.
    let mut h = vec![e(
        0,
        0,
        1,
        Op::Create {
            path: A,
            id: 7,
            wt: WriteKind::MustCache,
        },
        Res::Done,
    )];
    h.push(e(0, 2, 10, Op::Close { id: 7 }, unknown.clone()));
    let read = e(1, 20, 21, Op::Read { path: A }, Res::Read(7));
    let gone = e(
        1,
        20,
        21,
        Op::Read { path: A },
        Res::Err(EddyCode::NotFound),
    );
    let mut h1 = h.clone();
    h1.push(read);
    assert!(violations(&h1, &strict()).is_empty());
    h.push(gone);
    assert!(violations(&h, &strict()).is_empty());
}

#[test]
fn checker_rejects_an_indeterminate_create_appearing_after_its_failure() {
    // Absent after the failure was reported, then there: the effect came
    // late (an orphaned write surfacing), unless effects may come forever.
    let c = e(
        0,
        0,
        10,
        Op::Create {
            path: A,
            id: 7,
            wt: WriteKind::CacheThrough,
        },
        Res::Unknown(EddyCode::Unavailable),
    );
    let absent = e(
        1,
        20,
        21,
        Op::Stat { path: A },
        Res::Err(EddyCode::NotFound),
    );
    let later = e(1, 30, 31, Op::List { dir: 0 }, Res::List(vec![(A, false)]));
    let h = [c, absent, later];
    assert_eq!(violations(&h, &strict()).len(), 1);
    let forever = CheckOptions {
        indeterminate_forever: true,
        ..strict()
    };
    assert!(violations(&h, &forever).is_empty());
}

#[test]
fn checker_lets_an_unclosed_create_vanish_only_until_its_close_answers() {
    // A master crash lost a create no one else saw: a reader finds nothing,
    // and the writer's close answers NOT_FOUND.
    let [c, _] = create(0, 0, A, 7);
    let gone = e(
        1,
        20,
        21,
        Op::Stat { path: A },
        Res::Err(EddyCode::NotFound),
    );
    let close = e(0, 30, 31, Op::Close { id: 7 }, Res::Err(EddyCode::NotFound));
    let h = [c.clone(), gone.clone(), close.clone()];
    assert!(violations(&h, &strict()).is_empty());
    // A close that answered OK made the file whole: it cannot vanish.
    let ok = e(0, 30, 31, Op::Close { id: 7 }, Res::Done);
    let later = e(
        1,
        40,
        41,
        Op::Stat { path: A },
        Res::Err(EddyCode::NotFound),
    );
    assert_eq!(violations(&[c.clone(), ok, later], &strict()).len(), 1);
    // Nor does a file its close found gone come back.
    let back = e(1, 40, 41, Op::List { dir: 0 }, Res::List(vec![(A, false)]));
    assert_eq!(violations(&[c, close, back], &strict()).len(), 1);
}

#[test]
fn checker_accepts_concurrent_ops_that_fit_in_one_order() {
    let mut h = Vec::new();
    h.extend(create(0, 0, A, 7));
    // Two creates of one path at once: one wins, in either real-time order.
    h.push(e(
        1,
        10,
        30,
        Op::Create {
            path: B,
            id: 8,
            wt: WriteKind::MustCache,
        },
        Res::Err(EddyCode::AlreadyExists),
    ));
    h.push(e(
        2,
        12,
        20,
        Op::Create {
            path: B,
            id: 9,
            wt: WriteKind::MustCache,
        },
        Res::Done,
    ));
    h.push(e(2, 21, 22, Op::Close { id: 9 }, Res::Done));
    // A rename overlapping reads of both names: the read of the new name
    // saw it done, the later-invoked read of the old name too.
    h.push(e(0, 40, 100, Op::Rename { from: A, to: 2 }, Res::Done));
    h.push(e(1, 41, 50, Op::Read { path: 2 }, Res::Read(7)));
    h.push(e(
        3,
        45,
        60,
        Op::Read { path: A },
        Res::Err(EddyCode::NotFound),
    ));
    // A list overlapping a delete of B saw it gone.
    h.push(e(2, 70, 90, Op::Delete { path: B }, Res::Done));
    h.push(e(
        3,
        65,
        95,
        Op::List { dir: 0 },
        Res::List(vec![(2, true)]),
    ));
    let r = check(&h, &KS, &strict());
    assert!(r.ok(), "{r:#?}");
    // The same reads in the other real-time order are a violation: the
    // old name was gone before the new name appeared.
    let mut bad = h.clone();
    bad.push(e(3, 61, 62, Op::Read { path: A }, Res::Read(7)));
    assert_eq!(violations(&bad, &strict()).len(), 1);
}

#[test]
fn checker_flags_codes_without_a_rule_and_foreign_bytes() {
    let mut h = Vec::new();
    h.extend(create(0, 0, A, 7));
    h.push(e(
        1,
        10,
        11,
        Op::Read { path: A },
        Res::Err(EddyCode::DataLost),
    ));
    h.push(e(
        1,
        12,
        13,
        Op::Read { path: A },
        Res::Garbled("other bytes".into()),
    ));
    h.push(e(
        1,
        14,
        15,
        Op::Read { path: A },
        Res::Unknown(EddyCode::Unavailable),
    ));
    let v = violations(&h, &strict());
    assert_eq!(v.len(), 2, "{v:#?}");
    assert!(v.iter().any(|v| v.contains("no rule")) && v.iter().any(|v| v.contains("no create")));
    // DATA_LOST of a MUST_CACHE file is the worker nemesis's loss.
    let loss = CheckOptions {
        worker_loss: true,
        ..strict()
    };
    assert_eq!(violations(&h, &loss).len(), 1);
}

#[test]
fn checker_partitions_by_connected_directories() {
    let mut h = Vec::new();
    h.extend(create(0, 0, A, 7));
    h.extend(create(1, 0, X, 8));
    assert_eq!(check(&h, &KS, &strict()).partitions, 2);
    h.push(e(0, 10, 11, Op::Rename { from: A, to: X + 1 }, Res::Done));
    h.push(e(1, 20, 21, Op::Read { path: X + 1 }, Res::Read(7)));
    h.push(e(1, 22, 23, Op::List { dir: 0 }, Res::List(vec![])));
    let r = check(&h, &KS, &strict());
    assert!(r.ok(), "{r:#?}");
    assert_eq!(r.partitions, 1);
}

#[test]
fn checker_says_unknown_when_its_bound_is_hit() {
    // Many overlapping indeterminate creates: more orders than the bound.
    let h: Vec<Entry> = (0..24)
        .map(|i| {
            e(
                i,
                0,
                100,
                Op::Create {
                    path: (i % 4) as u16,
                    id: 100 + i as u64,
                    wt: WriteKind::MustCache,
                },
                Res::Unknown(EddyCode::DeadlineExceeded),
            )
        })
        .chain([e(99, 200, 201, Op::Read { path: A }, Res::Read(1))])
        .collect();
    let o = CheckOptions {
        max_nodes: 50,
        ..strict()
    };
    let r = check(&h, &KS, &o);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_eq!(r.unknown.len(), 1, "{r:#?}");
}
