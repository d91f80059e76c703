//! Test harness: real `eddy` processes on loopback ephemeral ports, each in
//! its own temp dir, killed and reaped on drop (also when a test panics).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const EDDY: &str = env!("CARGO_BIN_EXE_eddy");

/// A running `eddy master` process.
pub struct MasterProc {
    child: Child,
    pub addr: String,
    pub dir: PathBuf,
}

impl MasterProc {
    /// Starts a master whose metastore and root under-storage live in `dir`.
    /// `extra` is appended to the `[master]` table of its config.
    pub fn start(dir: &Path, extra: &str) -> Self {
        Self::start_bound(dir, "127.0.0.1:0", extra)
    }

    /// As [`MasterProc::start`], listening on `bind`.
    pub fn start_bound(dir: &Path, bind: &str, extra: &str) -> Self {
        Self::start_full(dir, bind, extra, &[])
    }

    /// As [`MasterProc::start_bound`], with extra environment variables.
    pub fn start_full(dir: &Path, bind: &str, extra: &str, env: &[(&str, &str)]) -> Self {
        std::fs::create_dir_all(dir.join("ufs")).unwrap();
        let cfg = dir.join("eddy.toml");
        std::fs::write(
            &cfg,
            format!(
                "[master]\nbind = {bind:?}\nmetastore_dir = {:?}\nroot_ufs = {:?}\n{extra}\n",
                dir.join("meta").display().to_string(),
                dir.join("ufs").display().to_string()
            ),
        )
        .unwrap();
        let mut child = Command::new(EDDY)
            .arg("--config")
            .arg(&cfg)
            .arg("master")
            .env("EDDY_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn eddy master");
        // Wait for the line that names the bound address, then keep draining
        // stdout so the master never blocks on a full pipe.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("eddy master listening on ")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                panic!("eddy master did not report its address ({status:?})");
            }
        };
        MasterProc {
            child,
            addr,
            dir: dir.to_path_buf(),
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit by itself.
    pub fn wait(mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    pub fn ufs(&self) -> PathBuf {
        self.dir.join("ufs")
    }

    pub async fn client(&self) -> eddy_client::MasterClient {
        eddy_client::MasterClient::connect(&self.addr)
            .await
            .unwrap()
    }

    /// Runs `eddy --master ADDR args...` and returns its output.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(EDDY)
            .arg("--master")
            .arg(&self.addr)
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for MasterProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn code_of(e: eddy_client::ClientError) -> eddy_client::EddyCode {
    e.code()
}
