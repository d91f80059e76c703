//! The `eddy` command line against a real master.

mod common;

use std::process::Command;

use common::{EDDY, MasterProc};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn fs_commands_work_and_errors_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), "");
    let ok = |args: &[&str]| m.cli_ok(args);
    ok(&["fs", "mkdir", "-p", "/x/y"]);
    ok(&["fs", "touch", "/x/y/empty"]);
    std::fs::write(m.ufs().join("x/from-ufs.txt"), b"12345").unwrap();
    let ls = ok(&["fs", "ls", "-R", "/x"]);
    // Under the header line.
    let lines: Vec<&str> = ls.lines().skip(1).collect();
    assert_eq!(lines.len(), 3, "{ls}");
    assert!(
        lines[0].starts_with("-rw-r--r--")
            && lines[0].contains(" 5 ")
            && lines[0].contains("PERSISTED")
            && lines[0].ends_with("/x/from-ufs.txt"),
        "{ls}"
    );
    assert!(
        lines[1].starts_with("drwxr-xr-x") && lines[1].ends_with("/x/y"),
        "{ls}"
    );
    assert!(
        lines[2].contains("NOT_PERSISTED") && lines[2].ends_with("/x/y/empty"),
        "{ls}"
    );
    let st = ok(&["fs", "stat", &format!("eddy://{}/x/from-ufs.txt", m.addr)]);
    assert!(
        st.contains("length:          5") && st.contains("persisted:       true"),
        "{st}"
    );
    ok(&["fs", "mv", "/x/y", "/x/z"]);
    assert!(ok(&["fs", "ls", "/x"]).contains("/x/z"));
    ok(&["fs", "pin", "/x/z"]);
    assert!(ok(&["fs", "stat", "/x/z/empty"]).contains("pinned:          true"));

    let ext = tempfile::tempdir().unwrap();
    ok(&[
        "fs",
        "mount",
        "--readonly",
        "--option",
        "secret_key=hunter2",
        "--option",
        "region=eu",
        "/ext",
        ext.path().to_str().unwrap(),
    ]);
    let mounts = ok(&["fs", "mounts"]);
    assert!(
        mounts.contains("/ext") && mounts.contains("readonly") && mounts.contains("region=eu"),
        "{mounts}"
    );
    assert!(!mounts.contains("hunter2"), "secrets are masked: {mounts}");
    ok(&["fs", "unmount", "/ext"]);

    let report = ok(&["report"]);
    assert!(
        report.contains("Live workers:   0") && report.contains("Mounts:         1"),
        "{report}"
    );

    for (args, code) in [
        (&["fs", "rm", "/x"][..], "DIRECTORY_NOT_EMPTY"),
        (&["fs", "stat", "/missing"][..], "NOT_FOUND"),
        (&["fs", "mkdir", "relative"][..], "INVALID_PATH"),
        (&["fs", "mv", "/x", "/x/z/inside"][..], "INVALID_ARGUMENT"),
        (&["fs", "mkdir", "/x/z/empty"][..], "ALREADY_EXISTS"),
    ] {
        let o = m.cli(args);
        assert_eq!(o.status.code(), Some(1), "eddy {args:?}");
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            err.starts_with("eddy: ") && err.contains(code),
            "eddy {args:?}: {err}"
        );
    }
    ok(&["fs", "rm", "-r", "/x"]);
    assert!(!m.ufs().join("x").exists());
}

#[test]
fn master_address_comes_from_env_and_unreachable_is_clear() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), "");
    let o = Command::new(EDDY)
        .args(["fs", "ls", "/"])
        .env("EDDY_MASTER", &m.addr)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // A port nothing listens on: bind one, note it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = Command::new(EDDY)
        .args(["--master", &format!("127.0.0.1:{port}"), "fs", "ls", "/"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("no Eddy master at 127.0.0.1:{port}")) && err.contains("EDDY_MASTER"),
        "{err}"
    );
}

#[test]
fn sample_config_is_complete_and_loadable() {
    let o = Command::new(EDDY)
        .arg("--print-sample-config")
        .output()
        .unwrap();
    assert!(o.status.success());
    let text = stdout(&o);
    for key in [
        "bind",
        "metastore_dir",
        "root_ufs",
        "root_sync_interval_ms",
        "default_block_size",
        "worker_heartbeat_interval_ms",
        "worker_lost_after_ms",
        "master =",
    ] {
        assert!(text.contains(key), "sample config documents {key}");
    }
    // Every key is preceded by a comment.
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.contains(" = ") {
            assert!(lines[i - 1].starts_with('#'), "key without a comment: {l}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[master]\nbogus = 1\n").unwrap();
    let o = Command::new(EDDY)
        .args(["--config", cfg.to_str().unwrap(), "master"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("bogus"), "{}", stderr(&o));
}

#[test]
fn master_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), "");
    let pid = m.pid();
    // SAFETY: kill(2) on a child process id we own; no memory is involved.
    let r = unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    assert_eq!(r, 0);
    let status = m.wait();
    assert!(status.success(), "{status:?}");
}

/// A worker whose master never answers keeps retrying its registration;
/// SIGTERM still stops it, at once and cleanly.
#[test]
fn a_worker_waiting_for_its_master_stops_on_sigterm() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = dir.path().join("w.toml");
    std::fs::write(
        &cfg,
        format!(
            "[worker]\nmaster = \"127.0.0.1:{port}\"\nbind = \"127.0.0.1:0\"\n\
             memory_capacity = 67108864\nmetrics_bind = \"\"\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(EDDY)
        .arg("--config")
        .arg(&cfg)
        .arg("worker")
        .env("EDDY_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("cannot register with the master") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "worker ended early");
    }
    // SAFETY: kill(2) on a child process id we own; no memory is involved.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
        drop(err);
    });
    let status = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the worker stops on SIGTERM while it waits for its master")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn chmod_chown_and_chgrp_change_the_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), "");
    let ok = |args: &[&str]| m.cli_ok(args);
    ok(&["fs", "mkdir", "-p", "/d/e"]);
    ok(&["fs", "touch", "/d/e/f"]);
    ok(&["fs", "chmod", "640", "/d/e/f"]);
    let st = ok(&["fs", "stat", "/d/e/f"]);
    assert!(st.contains("-rw-r----- (640)"), "{st}");
    ok(&["fs", "chmod", "-R", "0700", "/d"]);
    for p in ["/d", "/d/e", "/d/e/f"] {
        assert!(ok(&["fs", "stat", p]).contains("(700)"), "{p}");
    }
    ok(&["fs", "chown", "alice:staff", "/d/e/f"]);
    let st = ok(&["fs", "stat", "/d/e/f"]);
    assert!(st.contains("owner:           alice"), "{st}");
    assert!(st.contains("group:           staff"), "{st}");
    ok(&["fs", "chgrp", "-R", "ops", "/d"]);
    let ls = ok(&["fs", "ls", "-R", "/d"]);
    assert_eq!(ls.matches(" ops ").count(), 2, "{ls}");
    assert!(ls.contains(" alice "), "{ls}");
    // Bad input: one clear line, nothing changed.
    for (args, want) in [
        (&["fs", "chmod", "rwx", "/d"][..], "expected octal"),
        (&["fs", "chmod", "17777", "/d"][..], "expected octal"),
        (&["fs", "chown", "a:", "/d"][..], "OWNER:GROUP"),
        (&["fs", "chmod", "755", "/missing"][..], "NOT_FOUND"),
    ] {
        let o = m.cli(args);
        assert!(!o.status.success(), "{args:?}");
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
    assert!(ok(&["fs", "stat", "/d"]).contains("(700)"));
}
