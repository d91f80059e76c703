//! A Jepsen-style history test of the namespace: clients on a small key
//! space, a nemesis killing the master or a worker, and a linearizability
//! checker over the recorded history (docs/CONSISTENCY.md).

pub mod check;
pub mod model;
pub mod nemesis;
pub mod replay;
pub mod workload;

use std::time::{Duration, Instant};

use check::{CheckOptions, Report};
use nemesis::{ClusterHandle, LocalCluster, NemesisOptions, Target};
use workload::{Clock, Mode, WorkloadOptions};

/// One run: its workload, its nemesis, how its history is checked.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub secs: Duration,
    pub workload: WorkloadOptions,
    pub nemesis: NemesisOptions,
    pub check: CheckOptions,
}

impl RunOptions {
    /// The standard run: 6 clients on 4 directories of 6 names, half the
    /// creates CACHE_THROUGH, a kill every 3-6 s, no metadata cache (every
    /// read is checked strictly).
    pub fn standard(mode: Mode, target: Target, secs: u64, seed: u64) -> Self {
        RunOptions {
            secs: Duration::from_secs(secs),
            workload: WorkloadOptions {
                clients: 6,
                ks: model::KeySpace { dirs: 4, names: 6 },
                mode,
                seed,
                cross_dir_renames: 0,
                cache_through: 50,
                timeout: Duration::from_secs(5),
                metadata_ttl: Duration::ZERO,
            },
            nemesis: NemesisOptions {
                target,
                gap: (Duration::from_secs(3), Duration::from_secs(6)),
                down: (Duration::from_millis(0), Duration::from_millis(300)),
                max_kills: 1000,
                seed,
            },
            check: CheckOptions {
                stale_bound: 0,
                worker_loss: target == Target::Worker,
                ..Default::default()
            },
        }
    }

    /// With the clients' metadata cache on for `ttl`: the checker lets
    /// reads of other clients' changes be that stale, plus a margin (the
    /// cached answer was fetched during an earlier call), and still holds
    /// each client strictly to its own changes.
    pub fn with_metadata_ttl(mut self, ttl: Duration) -> Self {
        self.workload.metadata_ttl = ttl;
        self.check.stale_bound = if ttl.is_zero() {
            0
        } else {
            (ttl + STALE_MARGIN).as_nanos() as u64
        };
        self
    }
}

/// How much older than the cache's TTL a cached answer may be: it was
/// fetched during a call that began before it was stored.
pub const STALE_MARGIN: Duration = Duration::from_millis(250);

/// What a run did and what the checker found.
#[derive(Debug)]
pub struct Summary {
    pub opts: RunOptions,
    pub kills: u32,
    pub report: Report,
    pub nemesis: Vec<String>,
}

impl Summary {
    /// The one-line summary (docs/CONSISTENCY.md records these).
    pub fn line(&self) -> String {
        let o = &self.opts;
        format!(
            "history: mode={:?} nemesis={:?} secs={} seed={} ops={} kills={} indeterminate={} partitions={} violations={} (not-linearizable={} no-rule={} garbled={} id-reused={}) unknown={}",
            o.workload.mode,
            o.nemesis.target,
            o.secs.as_secs(),
            o.workload.seed,
            self.report.ops,
            self.kills,
            self.report.indeterminate,
            self.report.partitions,
            self.report.violations.len(),
            self.report.not_linearizable,
            self.report.no_rule,
            self.report.garbled,
            self.report.id_reused,
            self.report.unknown.len()
        )
    }

    /// The summary line, then up to `max` violation explanations of each
    /// kind (no linearization first: those are the subtle ones).
    pub fn print(&self, max: usize) {
        println!("{}", self.line());
        println!("nemesis: {}", self.nemesis.join("; "));
        println!("checker: {}", self.report.effort.join("; "));
        let v = &self.report.violations;
        let (nl, other): (Vec<_>, Vec<_>) = v.iter().partition(|v| v.contains("not linearizable"));
        for v in nl.iter().take(max).chain(other.iter().take(max)) {
            println!("--- violation\n{v}");
        }
        for u in &self.report.unknown {
            println!("--- unknown\n{u}");
        }
    }
}

/// Waits until the master answers and every worker is live again.
async fn settle(fs: &eddy_client::FileSystem, workers: usize) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if let Ok(info) = fs.master().cluster_info().await
            && info.workers.iter().filter(|w| w.live).count() >= workers
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the cluster did not settle within 20 s");
}

/// Starts a cluster in a temp dir, runs clients and nemesis for
/// `opts.secs`, reads everything back and checks the history.
pub async fn run_once(opts: &RunOptions) -> Summary {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cluster = LocalCluster::start(dir.path(), 1, "default_block_size = 65536", "");
    let masters = cluster.master_addrs();
    let addr = masters[0].clone();
    let ks = opts.workload.ks;
    let setup = eddy_client::FileSystem::connect(&addr)
        .await
        .expect("connect");
    settle(&setup, 1).await;
    workload::setup(&setup, &ks).await;

    let clock = Clock(Instant::now());
    let deadline = Instant::now() + opts.secs;
    let nopts = opts.nemesis.clone();
    let nemesis = std::thread::spawn(move || {
        let log = nemesis::run(&mut cluster, &nopts, clock, deadline);
        (cluster, log)
    });
    let mut rec = workload::run(&masters, &opts.workload, clock, deadline).await;
    let (cluster, nlog) =
        tokio::task::spawn_blocking(move || nemesis.join().expect("nemesis thread"))
            .await
            .expect("join");
    settle(&setup, cluster.workers()).await;
    let timeout = opts.workload.timeout;
    rec.entries
        .extend(workload::final_reads(&masters, &ks, opts.workload.clients, clock, timeout).await);
    workload::resolve_inodes(&mut rec.entries, &rec.inodes);
    dump(opts, &rec.entries, &nlog.events);
    let o = opts.check.clone();
    let entries = rec.entries;
    let mut report = tokio::task::spawn_blocking(move || check::check(&entries, &ks, &o))
        .await
        .expect("checker");
    report.id_reused = rec.reused.len();
    report.violations.extend(rec.reused);
    drop(cluster);
    Summary {
        opts: opts.clone(),
        kills: nlog.kills,
        report,
        nemesis: nlog.events,
    }
}

/// With `EDDY_HISTORY_DUMP=DIR`, writes the run's history to
/// `DIR/history-MODE-NEMESIS-SEED.txt`: a line per call (invocation and
/// return in ns, client, operation, result) sorted by invocation, then the
/// nemesis's events, for reading a violation in full.
fn dump(opts: &RunOptions, entries: &[check::Entry], events: &[String]) {
    let Ok(dir) = std::env::var("EDDY_HISTORY_DUMP") else {
        return;
    };
    let text = dump_text(&opts.workload.ks, entries, events);
    let name = format!(
        "history-{:?}-{:?}-{}.txt",
        opts.workload.mode, opts.nemesis.target, opts.workload.seed
    );
    let path = std::path::Path::new(&dir).join(name);
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, text)) {
        eprintln!("cannot write {}: {e}", path.display());
    } else {
        println!("history written to {}", path.display());
    }
}

/// The text of a dump (see [`dump`]); [`replay::parse`] reads it back.
pub fn dump_text(ks: &model::KeySpace, entries: &[check::Entry], events: &[String]) -> String {
    let mut sorted: Vec<&check::Entry> = entries.iter().collect();
    sorted.sort_by_key(|e| e.invoke);
    let mut text = String::new();
    for e in sorted {
        text.push_str(&format!(
            "{} {} c{} {} -> {:?} {}\n",
            e.invoke,
            e.ret,
            e.client,
            e.op.show(ks),
            e.res,
            e.note
        ));
    }
    for ev in events {
        text.push_str(&format!("nemesis {ev}\n"));
    }
    text
}
