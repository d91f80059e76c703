//! The nemesis: kills (SIGKILL) and restarts the master, or in the second
//! mode a worker, at random seeded intervals, through a [`ClusterHandle`]
//! so the same loop can later drive several masters.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{MasterProc, WorkerProc};

use super::workload::{Clock, Rng};

/// What the nemesis can do to a cluster. Masters and workers are numbered
/// from 0; one master today, several once the master is replicated.
pub trait ClusterHandle: Send {
    /// The addresses clients are given.
    fn master_addrs(&self) -> Vec<String>;
    fn masters(&self) -> usize;
    fn workers(&self) -> usize;
    fn kill_master(&mut self, i: usize);
    /// Starts master `i` again on its old address and metastore.
    fn restart_master(&mut self, i: usize);
    fn kill_worker(&mut self, i: usize);
    /// Starts worker `i` again on its old address, socket and directories.
    fn restart_worker(&mut self, i: usize);
}

/// One master and `n` workers as local processes, their logs in the run's
/// directory (`master.log`, `worker-N.log`, appended across restarts).
pub struct LocalCluster {
    dir: PathBuf,
    master_extra: String,
    master: Option<MasterProc>,
    addr: String,
    worker_extra: String,
    workers: Vec<(Option<WorkerProc>, String)>,
}

fn log(dir: &Path, name: &str) -> Stdio {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(name))
        .expect("open a log file");
    Stdio::from(f)
}

impl LocalCluster {
    pub fn start(dir: &Path, workers: usize, master_extra: &str, worker_extra: &str) -> Self {
        let master = MasterProc::start_stderr(
            dir,
            "127.0.0.1:0",
            master_extra,
            &[],
            log(dir, "master.log"),
        );
        let addr = master.addr.clone();
        let mut c = LocalCluster {
            dir: dir.to_path_buf(),
            master_extra: master_extra.into(),
            master: Some(master),
            addr,
            worker_extra: worker_extra.into(),
            workers: Vec::new(),
        };
        for i in 0..workers {
            let w = c.spawn_worker(i, "127.0.0.1:0");
            let a = w.addr.clone();
            c.workers.push((Some(w), a));
        }
        c
    }

    fn spawn_worker(&self, i: usize, bind: &str) -> WorkerProc {
        let wdir = self.dir.join(format!("w{i}"));
        let extra = format!(
            "domain_socket = {:?}\n{}",
            self.dir.join(format!("w{i}.sock")).display().to_string(),
            self.worker_extra
        );
        let stderr = log(&self.dir, &format!("worker-{i}.log"));
        WorkerProc::start_stderr(&wdir, &self.addr, bind, &extra, &[], stderr)
    }
}

impl ClusterHandle for LocalCluster {
    fn master_addrs(&self) -> Vec<String> {
        vec![self.addr.clone()]
    }

    fn masters(&self) -> usize {
        1
    }

    fn workers(&self) -> usize {
        self.workers.len()
    }

    fn kill_master(&mut self, i: usize) {
        assert_eq!(i, 0, "one master");
        if let Some(m) = self.master.take() {
            m.kill9();
        }
    }

    fn restart_master(&mut self, i: usize) {
        assert_eq!(i, 0, "one master");
        assert!(self.master.is_none(), "master {i} is running");
        let m = MasterProc::start_stderr(
            &self.dir,
            &self.addr,
            &self.master_extra,
            &[],
            log(&self.dir, "master.log"),
        );
        self.master = Some(m);
    }

    fn kill_worker(&mut self, i: usize) {
        if let Some(w) = self.workers[i].0.take() {
            w.kill9();
        }
    }

    fn restart_worker(&mut self, i: usize) {
        assert!(self.workers[i].0.is_none(), "worker {i} is running");
        let bind = self.workers[i].1.clone();
        let w = self.spawn_worker(i, &bind);
        self.workers[i].0 = Some(w);
    }
}

/// What the nemesis attacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Master,
    Worker,
}

#[derive(Debug, Clone)]
pub struct NemesisOptions {
    pub target: Target,
    /// A kill comes after a random pause in this range.
    pub gap: (Duration, Duration),
    /// How long the process stays down before its restart.
    pub down: (Duration, Duration),
    pub max_kills: u32,
    pub seed: u64,
}

/// What the nemesis did: kills, and a line per event with its time.
#[derive(Debug, Default)]
pub struct NemesisLog {
    pub kills: u32,
    pub events: Vec<String>,
}

/// Sleeps `d`, or until `deadline` if sooner; false if the deadline came.
fn nap(d: Duration, deadline: Instant) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    std::thread::sleep(d.min(left));
    d < left
}

/// Kills and restarts until `deadline` (or `max_kills`); every process is
/// running when it returns. Blocking: run it on its own thread.
pub fn run(
    cluster: &mut dyn ClusterHandle,
    opts: &NemesisOptions,
    clock: Clock,
    deadline: Instant,
) -> NemesisLog {
    let mut rng = Rng::new(opts.seed ^ 0x6e656d65);
    let mut log = NemesisLog::default();
    let t = |clock: Clock| format!("{:.3}", clock.now() as f64 / 1e9);
    while log.kills < opts.max_kills && nap(rng.range(opts.gap.0, opts.gap.1), deadline) {
        let down = rng.range(opts.down.0, opts.down.1);
        match opts.target {
            Target::Master => {
                let i = rng.below(cluster.masters() as u64) as usize;
                cluster.kill_master(i);
                log.events.push(format!("{} kill -9 master {i}", t(clock)));
                std::thread::sleep(down);
                cluster.restart_master(i);
                log.events
                    .push(format!("{} master {i} listening again", t(clock)));
            }
            Target::Worker => {
                let i = rng.below(cluster.workers() as u64) as usize;
                cluster.kill_worker(i);
                log.events.push(format!("{} kill -9 worker {i}", t(clock)));
                std::thread::sleep(down);
                cluster.restart_worker(i);
                log.events
                    .push(format!("{} worker {i} listening again", t(clock)));
            }
        }
        log.kills += 1;
    }
    log
}
