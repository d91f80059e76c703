//! What a user meets in the first hour with the `eddy` command: which
//! master it talks to, closed pipes, the shape of errors, and the small
//! commands (`ls`, `checksum`, `touch`, `chown`, `get`, `load`).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Cluster, EDDY, MasterProc};

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A `host:port` nothing listens on: bound, noted, closed.
fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// Asserts the error contract: exit `status`, one stderr line
/// `eddy: MESSAGE (CODE)` containing every `want`; returns the line.
fn fails_with(o: &Output, status: i32, code: &str, want: &[&str]) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(status), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    let line = err.trim_end();
    assert!(line.starts_with("eddy: "), "{line}");
    assert!(
        line.ends_with(&format!(" ({code})")),
        "ends in ({code}): {line}"
    );
    for w in want {
        assert!(line.contains(w), "{w:?} in {line}");
    }
    line.to_string()
}

#[test]
fn an_eddy_uri_names_the_master_and_two_masters_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), "");
    std::fs::write(m.ufs().join("f.txt"), b"12345").unwrap();
    let wrong = closed_port();
    let eddy = |args: &[&str]| {
        Command::new(EDDY)
            .args(["--master", &wrong])
            .args(args)
            .env("EDDY_MASTER", &wrong)
            .output()
            .unwrap()
    };
    // The path's master wins over --master and EDDY_MASTER.
    let o = eddy(&["fs", "stat", &format!("eddy://{}/f.txt", m.addr)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("length:          5"), "{}", stdout(&o));
    // Plain paths beside it go to the same master.
    let o = eddy(&["fs", "mv", &format!("eddy://{}/f.txt", m.addr), "/g.txt"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(m.ufs().join("g.txt").exists());
    // No port: the default one (nothing listens there in this test).
    let o = eddy(&["fs", "stat", "eddy://127.0.0.1/g.txt"]);
    fails_with(&o, 1, "UNAVAILABLE", &["127.0.0.1:19998"]);
    // Two masters in one command: a usage error, nothing is sent.
    let o = eddy(&[
        "fs",
        "mv",
        &format!("eddy://{}/g.txt", m.addr),
        &format!("eddy://{wrong}/h.txt"),
    ]);
    fails_with(&o, 2, "INVALID_ARGUMENT", &["two masters"]);
    assert!(m.ufs().join("g.txt").exists());
    // `eddy:///path` names no master: --master still applies.
    let o = m.cli(&["fs", "stat", "eddy:///g.txt"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_closed_pipe_ends_a_listing_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), "");
    // Far more output than a pipe buffers (about 100 bytes a line).
    let many = m.ufs().join("many");
    std::fs::create_dir(&many).unwrap();
    for i in 0..3000 {
        std::fs::write(many.join(format!("file-{i:05}")), b"x").unwrap();
    }
    let mut child = Command::new(EDDY)
        .args(["--master", &m.addr, "fs", "ls", "-R", "/"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -1`: read one line, then close the pipe.
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(first.starts_with("PERMISSION"), "{first}");
    drop(out);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "quiet success, not a panic: {err}");
    assert!(err.is_empty(), "nothing on stderr: {err}");

    // A reader gone before the first byte (`eddy ... | true`).
    for args in [&["--print-sample-config"][..], &["fs", "ls", "-R", "/"]] {
        let mut child = Command::new(EDDY)
            .args(["--master", &m.addr])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert!(o.stderr.is_empty(), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn errors_are_one_line_ending_in_their_code() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), "");
    let local = dir.path().join("local.txt");
    std::fs::write(&local, b"abc").unwrap();
    let local = local.to_str().unwrap();

    // Not a master: a closed port, and an HTTP server (the metrics port).
    let ls_at = |addr: &str| {
        Command::new(EDDY)
            .args(["--master", addr, "fs", "ls", "/"])
            .output()
            .unwrap()
    };
    for addr in [closed_port(), m.metrics.clone()] {
        let line = fails_with(
            &ls_at(&addr),
            1,
            "UNAVAILABLE",
            &[
                &format!("no Eddy master at {addr}"),
                "--master",
                "EDDY_MASTER",
            ],
        );
        assert!(!line.contains("grpc-status"), "{line}");
    }
    // Not even an address: a usage error.
    let line = fails_with(&ls_at("no-port"), 2, "INVALID_ARGUMENT", &["\"no-port\""]);
    assert!(line.contains("host:port"), "{line}");
    // Into a missing folder: say how to make it (neither put nor cp has a
    // recursive option).
    let o = m.cli(&["fs", "put", local, "/no/such/dir/f"]);
    let line = fails_with(&o, 1, "NOT_FOUND", &["eddy fs mkdir -p /no/such/dir"]);
    assert!(!line.contains("recursive option"), "{line}");
    // `free /` names the file that blocks it, not an inode id.
    assert!(m.cli(&["fs", "mkdir", "/d"]).status.success());
    assert!(m.cli(&["fs", "touch", "/d/only-copy"]).status.success());
    let o = m.cli(&["fs", "free", "/"]);
    let line = fails_with(
        &o,
        1,
        "INVALID_ARGUMENT",
        &["/d/only-copy", "not persisted"],
    );
    assert!(!line.contains("id "), "{line}");
    // The rest of the shapes: the master's, a local file's, a usage error.
    let o = m.cli(&["fs", "cat", "/nope"]);
    fails_with(&o, 1, "NOT_FOUND", &["/nope"]);
    let o = m.cli(&["fs", "put", "/no/such/local/file", "/x"]);
    fails_with(&o, 1, "NOT_FOUND", &["/no/such/local/file"]);
    let o = m.cli(&["fs", "mount", "--option", "novalue", "/m", "/tmp"]);
    fails_with(&o, 2, "INVALID_ARGUMENT", &["KEY=VALUE"]);
    // Clap's own usage errors keep status 2.
    let o = m.cli(&["fs", "ls"]);
    assert_eq!(o.status.code(), Some(2));

    let help = Command::new(EDDY).arg("--help").output().unwrap();
    let help = stdout(&help);
    assert!(
        help.contains("Exit status: 0 success; 1") && help.contains("2 a usage error"),
        "{help}"
    );
    let help = Command::new(EDDY).args(["fs", "--help"]).output().unwrap();
    let help = stdout(&help);
    assert!(
        help.contains("eddy://HOST:PORT/path") && help.contains("Exit status"),
        "{help}"
    );
}

#[test]
fn load_reports_what_it_loaded_not_a_rate_over_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, "", "");
    let local = dir.path().join("a.bin");
    std::fs::write(&local, vec![7u8; 100_000]).unwrap();
    let ok = |args: &[&str]| c.master.cli_ok(args);
    ok(&["fs", "put", local.to_str().unwrap(), "/a.bin"]);
    let out = ok(&["fs", "load", "/a.bin"]);
    assert!(
        out.contains("nothing to load") && out.contains("already cached"),
        "{out}"
    );
    assert!(!out.contains("/s"), "no rate over nothing: {out}");
    // Under-storage bytes not cached yet: the rate is over what moved.
    std::fs::write(c.ufs().join("u.bin"), vec![1u8; 50_000]).unwrap();
    let out = ok(&["fs", "load", "/u.bin"]);
    assert!(
        out.starts_with("loaded 48.8 KiB into the workers") && out.contains("/s)"),
        "{out}"
    );
}

#[test]
fn ls_checksum_touch_chown_and_get_behave_like_their_unix_namesakes() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, "", "");
    let m = &c.master;
    let ok = |args: &[&str]| m.cli_ok(args);
    std::fs::write(m.ufs().join("a"), b"hello").unwrap();
    std::fs::write(m.ufs().join("b"), b"world").unwrap();
    // ls: a header line, several paths.
    let ls = ok(&["fs", "ls", "/a", "/b"]);
    let lines: Vec<&str> = ls.lines().collect();
    assert_eq!(lines.len(), 3, "{ls}");
    assert!(
        lines[0].starts_with("PERMISSION") && lines[0].ends_with("PATH"),
        "{ls}"
    );
    assert!(
        lines[1].ends_with(" /a") && lines[2].ends_with(" /b"),
        "{ls}"
    );
    // A missing path among them: the others are still listed, exit 1.
    let o = m.cli(&["fs", "ls", "/a", "/missing", "/b"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o).lines().count(), 3, "{}", stdout(&o));
    fails_with(&o, 1, "NOT_FOUND", &["/missing"]);
    // checksum: md5sum's format, one line per path.
    let sums = ok(&["fs", "checksum", "/a", "/b"]);
    assert_eq!(
        sums,
        "5d41402abc4b2a76b9719d911017c592  /a\n7d793037a0760186574b0282f2f435e7  /b\n"
    );
    // touch of an existing file: success, nothing changed.
    ok(&["fs", "touch", "/a"]);
    assert!(ok(&["fs", "stat", "/a"]).contains("length:          5"));
    ok(&["fs", "touch", "/"]);
    // chown :GROUP sets the group only.
    ok(&["fs", "chown", "alice", "/a"]);
    ok(&["fs", "chown", ":staff", "/a"]);
    let st = ok(&["fs", "stat", "/a"]);
    assert!(
        st.contains("owner:           alice") && st.contains("group:           staff"),
        "{st}"
    );
    let o = m.cli(&["fs", "chown", ":", "/a"]);
    fails_with(&o, 2, "INVALID_ARGUMENT", &[":GROUP"]);
    // get keeps an existing local file unless -f.
    let local = dir.path().join("out.txt");
    std::fs::write(&local, b"mine").unwrap();
    let o = m.cli(&["fs", "get", "/a", local.to_str().unwrap()]);
    fails_with(&o, 1, "ALREADY_EXISTS", &["-f"]);
    assert_eq!(std::fs::read(&local).unwrap(), b"mine");
    ok(&["fs", "get", "-f", "/a", local.to_str().unwrap()]);
    assert_eq!(std::fs::read(&local).unwrap(), b"hello");
}

#[test]
fn local_names_its_master_in_the_hint_and_logs_carry_no_colour() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(EDDY)
        .args(["local", "--port", "0", "--metrics-port", "0", "--memory"])
        .arg((64u64 << 20).to_string())
        .arg("--data-dir")
        .arg(dir.path())
        .env("EDDY_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Lines arrive through a thread, so a silent child cannot hang the test.
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut addr, mut hint) = (String::new(), String::new());
    let deadline = Instant::now() + Duration::from_secs(60);
    while hint.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            break;
        };
        if let Some(a) = line.strip_prefix("eddy master listening on ") {
            addr = a.to_string();
        }
        if line.starts_with("root under-storage") {
            hint = line;
        }
    }
    child.kill().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    child.wait().unwrap();
    assert!(!addr.is_empty() && !addr.ends_with(":19998"), "{addr}");
    assert!(
        hint.contains(&format!("`eddy --master {addr} fs put FILE /`")),
        "the hint works when pasted: {hint}"
    );
    assert!(err.contains("INFO"), "logs were written: {err}");
    assert!(!err.contains('\x1b'), "no ANSI codes in a pipe: {err:?}");
}

#[test]
fn object_store_errors_say_what_to_do_and_directories_have_an_mtime() {
    use eddy_ufs::testkit::S3Server;
    let s3 = S3Server::start();
    s3.create_bucket("eddy-ux");
    let dir = tempfile::tempdir().unwrap();
    // No credentials anywhere: the chain ends at the instance metadata
    // service, here a closed loopback port instead of 169.254.169.254.
    let imds = format!("http://{}", closed_port());
    let m = MasterProc::start_full(
        dir.path(),
        "127.0.0.1:0",
        "",
        &[("AWS_METADATA_ENDPOINT", imds.as_str())],
    );
    let o = s3.options();
    let endpoint = format!("endpoint={}", o["endpoint"]);
    let mount = |extra: &[&str], at: &str, uri: &str| {
        let mut args = vec![
            "fs",
            "mount",
            "--option",
            &endpoint,
            "--option",
            "region=us-east-1",
            "--option",
            "allow_http=true",
            "--option",
            "retries=0",
        ];
        for kv in extra {
            args.extend(["--option", kv]);
        }
        args.extend([at, uri]);
        m.cli(&args)
    };
    // (Unless this machine has keys in its environment: they would be used.)
    if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
        let out = mount(&[], "/s3", "s3://eddy-ux/x");
        let line = fails_with(
            &out,
            1,
            "UFS_UNAVAILABLE",
            &["no S3 credentials", "access_key"],
        );
        assert!(
            !line.contains("403") && !line.contains("api/token"),
            "{line}"
        );
    }
    let keys = ["access_key=a", "secret_key=b"];
    let out = mount(&keys, "/s3", "s3://missing-bucket/x");
    let line = fails_with(
        &out,
        1,
        "UFS_UNAVAILABLE",
        &["bucket missing-bucket does not exist"],
    );
    assert!(!line.contains('<'), "no XML: {line}");

    // A directory is a prefix: its mtime is its newest object's, not 1970.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let bucket = eddy_ufs::open("s3://eddy-ux/data", &o).await.unwrap();
        let p = eddy_ufs::UfsPath::parse("sub/deeper/f").unwrap();
        bucket
            .write(&p, bytes::Bytes::from_static(b"x"))
            .await
            .unwrap();
        let p = eddy_ufs::UfsPath::parse("other/g").unwrap();
        bucket
            .write(&p, bytes::Bytes::from_static(b"y"))
            .await
            .unwrap();
    });
    let opts: Vec<String> = o.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let opts: Vec<&str> = opts.iter().map(String::as_str).collect();
    let out = mount(&opts, "/data", "s3://eddy-ux/data");
    assert!(out.status.success(), "{}", stderr(&out));
    let year = |text: &str, path: &str| {
        let line = text
            .lines()
            .find(|l| l.ends_with(&format!(" {path}")))
            .unwrap_or_else(|| panic!("{path} in {text}"));
        assert!(!line.contains("1970-"), "{line}");
        line.to_string()
    };
    // Listed (the listing walks the objects under each prefix) ...
    let ls = stdout(&m.cli(&["fs", "ls", "/data"]));
    year(&ls, "/data/sub");
    // ... and looked up by name (a stat sees the first object).
    let st = stdout(&m.cli(&["fs", "stat", "/data/other"]));
    assert!(!st.contains("1970-"), "{st}");
    let st = m.cli(&["fs", "stat", "/data/sub/deeper"]);
    assert!(!stdout(&st).contains("1970-"), "{}", stdout(&st));
}

/// Runs `eddy --config CFG WHAT` (`master` or `worker`) with `toml` as its
/// config file, to completion.
fn run_with_config(dir: &std::path::Path, what: &str, toml: &str) -> Output {
    let cfg = dir.join(format!("{what}.toml"));
    std::fs::write(&cfg, toml).unwrap();
    Command::new(EDDY)
        .arg("--config")
        .arg(&cfg)
        .arg(what)
        .env("EDDY_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn a_port_in_use_or_an_unusable_socket_path_stops_the_server_saying_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("ufs")).unwrap();
    // Another process holds the port (here: this test).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let in_use = format!("port {} is in use", addr.port());
    let o = run_with_config(
        dir.path(),
        "master",
        &format!(
            "[master]\nbind = \"{addr}\"\nmetastore_dir = {:?}\nroot_ufs = {:?}\nmetrics_bind = \"\"\n",
            dir.path().join("meta").display().to_string(),
            dir.path().join("ufs").display().to_string()
        ),
    );
    fails_with(
        &o,
        1,
        "UNAVAILABLE",
        &[
            &format!("cannot bind the master to {addr}"),
            &in_use,
            "stop the other process using it or set [master] bind to another port",
        ],
    );
    let worker = |extra: &str| {
        run_with_config(
            dir.path(),
            "worker",
            &format!("[worker]\nmaster = \"127.0.0.1:1\"\nmetrics_bind = \"\"\n{extra}"),
        )
    };
    let o = worker(&format!("bind = \"{addr}\"\n"));
    fails_with(
        &o,
        1,
        "UNAVAILABLE",
        &[
            &format!("cannot bind the worker's data server to {addr}"),
            &in_use,
            "set [worker] bind to another port",
        ],
    );
    // The short-circuit socket's directory cannot be created: a file is
    // in the way.
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let sock = file.join("w.sock");
    let o = worker(&format!(
        "bind = \"127.0.0.1:0\"\ndomain_socket = {:?}\n",
        sock.display().to_string()
    ));
    fails_with(
        &o,
        1,
        "INVALID_ARGUMENT",
        &[
            &format!(
                "cannot bind the worker's short-circuit socket to {}",
                sock.display()
            ),
            "set [worker] domain_socket to such a path",
        ],
    );
    drop(taken);
}
