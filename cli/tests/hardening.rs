//! Regression tests for the bugs the hardening review found in the master:
//! each failed before its fix.

mod common;

use common::{Cluster, MasterProc, code_of};
use eddy_client::{CreateOptions, EddyCode, OpenOptions, pb};

/// The root stays the root mount's persisted point across restarts, so files
/// the under-storage gains later are still found, and directory mtimes
/// changed by creates, renames and deletes are durable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_keeps_syncing_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), "");
    let c = m.client().await;
    c.mkdir("/d", false).await.unwrap();
    c.mkdir("/d/sub", false).await.unwrap();
    c.create_file("/d/gone", &CreateOptions::default())
        .await
        .unwrap();
    c.complete_file("/d/gone", 0, false).await.unwrap();
    c.delete("/d/gone", false).await.unwrap();
    let d_before = c.stat("/d").await.unwrap().mtime_ms;
    m.kill9();

    let m = MasterProc::start(dir.path(), "");
    let c = m.client().await;
    let root = c.stat("/").await.unwrap();
    assert!(root.persisted, "the root is persisted after a restart");
    assert_eq!(
        c.stat("/d").await.unwrap().mtime_ms,
        d_before,
        "a directory's mtime survives the restart"
    );
    std::fs::write(m.ufs().join("late.txt"), b"late").unwrap();
    assert_eq!(c.stat("/late.txt").await.unwrap().length, 4);
    std::fs::write(m.ufs().join("listed.txt"), b"x").unwrap();
    let (entries, _) = c.list_page("/", b"", 0, Some(0)).await.unwrap();
    assert!(
        entries.iter().any(|e| e.name == b"listed.txt"),
        "a synced listing of / finds new under-storage files"
    );
}

/// A directory's mtime moves with a child created in it and is recorded:
/// the value after a restart is the value before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parent_mtimes_do_not_roll_back() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), "");
    let c = m.client().await;
    c.mkdir("/p", false).await.unwrap();
    let created = c.stat("/p").await.unwrap().mtime_ms;
    // Let the clock move so the child's mtime is later than the parent's.
    while eddy_now() <= created {
        tokio::task::yield_now().await;
    }
    c.create_file("/p/f", &CreateOptions::default())
        .await
        .unwrap();
    c.complete_file("/p/f", 0, false).await.unwrap();
    c.mkdir("/q", false).await.unwrap();
    c.rename("/p/f", "/q/f").await.unwrap();
    let p_before = c.stat("/p").await.unwrap().mtime_ms;
    let q_before = c.stat("/q").await.unwrap().mtime_ms;
    assert!(p_before > created);
    m.kill9();
    let m = MasterProc::start(dir.path(), "");
    let c = m.client().await;
    assert_eq!(c.stat("/p").await.unwrap().mtime_ms, p_before);
    assert_eq!(c.stat("/q").await.unwrap().mtime_ms, q_before);
}

/// A file is readable the moment its writer's close returns: in the writing
/// client (which asked about it while it was incomplete) and in another
/// client that did the same, over TCP and short-circuit alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_file_is_readable_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, "", "");
    for fs in [c.fs().await, c.fs_local().await] {
        let other = c.fs().await;
        let path = format!("/raw-{}", rand_suffix());
        let mut w = fs.create(&path, &CreateOptions::default()).await.unwrap();
        w.write(b"payload").await.unwrap();
        for client in [&fs, &other] {
            let e = client
                .open(&path, &OpenOptions::default())
                .await
                .err()
                .expect("an incomplete file does not open");
            assert_eq!(code_of(e), EddyCode::FileIncomplete);
        }
        w.close().await.unwrap();
        for client in [&fs, &other] {
            let mut r = client
                .open(&path, &OpenOptions::default())
                .await
                .expect("readable right after close");
            assert_eq!(r.read_to_end().await.unwrap(), b"payload");
        }
    }
}

fn rand_suffix() -> usize {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn eddy_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn assert_code<T: std::fmt::Debug>(r: eddy_client::Result<T>, want: EddyCode) {
    let e = r.expect_err("the call must fail");
    assert_eq!(code_of(e), want);
}

/// Enum numbers no client can mean are refused, not read as the default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_enum_values_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), "");
    let c = m.client().await;
    let create = |write_type: i32, ttl_action: i32| pb::CreateFileRequest {
        path: b"/f".to_vec(),
        write_type,
        ttl_action,
        ..Default::default()
    };
    for req in [create(99, 0), create(0, 42), create(-1, 0)] {
        let r = c.fs_service().create_file(req).await;
        assert_code(r.map_err(Into::into), EddyCode::InvalidArgument);
    }
    assert!(!c.exists("/f").await.unwrap(), "nothing was created");
    c.mkdir("/d", false).await.unwrap();
    let r = c
        .fs_service()
        .set_attribute(pb::SetAttributeRequest {
            path: b"/d".to_vec(),
            ttl_ms: Some(1000),
            ttl_action: 7,
            ..Default::default()
        })
        .await;
    assert_code(r.map_err(Into::into), EddyCode::InvalidArgument);
    assert_eq!(c.stat("/d").await.unwrap().ttl_ms, -1, "no TTL was set");
    let r = c
        .block_service()
        .select_worker(pb::SelectWorkerRequest {
            policy: 12,
            ..Default::default()
        })
        .await;
    assert_code(r.map_err(Into::into), EddyCode::InvalidArgument);
}

/// Owners, groups and mount options too long for a metastore record are
/// refused up front; the master stays up, and nothing of the refused change
/// is in memory or comes back after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_strings_are_refused_and_never_half_applied() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), "");
    let c = m.client().await;
    c.mkdir("/d", false).await.unwrap();
    let huge = "o".repeat(70_000);
    for (owner, group) in [(Some(huge.clone()), None), (None, Some(huge.clone()))] {
        let r = c
            .set_attribute(pb::SetAttributeRequest {
                path: b"/d".to_vec(),
                owner,
                group,
                ..Default::default()
            })
            .await;
        assert_code(r, EddyCode::InvalidArgument);
    }
    let r = c
        .fs_service()
        .create_file(pb::CreateFileRequest {
            path: b"/d/f".to_vec(),
            owner: huge.clone(),
            ..Default::default()
        })
        .await;
    assert_code(r.map_err(Into::into), EddyCode::InvalidArgument);
    let ext = tempfile::tempdir().unwrap();
    let r = c
        .mount(
            "/m",
            ext.path().to_str().unwrap(),
            false,
            [("k".to_string(), huge.clone())].into(),
            None,
        )
        .await;
    assert_code(r, EddyCode::InvalidArgument);
    // Just inside the limits works, and survives a restart.
    let ok = "o".repeat(eddy_master::limits::MAX_OWNER);
    c.set_attribute(pb::SetAttributeRequest {
        path: b"/d".to_vec(),
        owner: Some(ok.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    let before = c.stat("/d").await.unwrap();
    assert!(!c.exists("/m").await.unwrap());
    m.kill9();
    let m = MasterProc::start(dir.path(), "");
    let c = m.client().await;
    let after = c.stat("/d").await.unwrap();
    assert_eq!(after.owner, ok);
    assert_eq!(after.group, before.group);
    assert!(!c.exists("/d/f").await.unwrap());
    assert!(
        c.list_mounts()
            .await
            .unwrap()
            .iter()
            .all(|m| m.path != b"/m")
    );
}

/// Credentials given as mount options never come back over the client RPCs
/// (only a live registered worker, which fills misses with them, gets them
/// in clear), and the files that hold them or cached data are the owner's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_masked_and_state_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let tier = dir.path().join("ssd");
    let c = Cluster::start(
        dir.path(),
        1,
        "",
        &format!(
            "tiers = [{{ alias = \"SSD\", dirs = [{:?}], quotas = [67108864] }}]",
            tier.display().to_string()
        ),
    );
    let m = c.master.client().await;
    let ext = tempfile::tempdir().unwrap();
    let opts = [
        ("secret_key", "hunter2"),
        ("access_key", "AKIDEXAMPLE"),
        ("region", "eu-west-1"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    m.mount(
        "/ext",
        ext.path().to_str().unwrap(),
        false,
        opts.into(),
        None,
    )
    .await
    .unwrap();
    let mounts = m.list_mounts().await.unwrap();
    let ext_mount = mounts.iter().find(|x| x.path == b"/ext").unwrap();
    assert_eq!(ext_mount.options["secret_key"], "******");
    assert_eq!(ext_mount.options["access_key"], "******");
    assert_eq!(ext_mount.options["region"], "eu-west-1");
    // A caller that is not a worker gets nothing at all; a worker token
    // with an id that is not a live worker's gets the options masked.
    let e = m
        .block_service()
        .get_mount(pb::GetMountRequest {
            mount_id: ext_mount.mount_id,
            worker_id: 0,
        })
        .await
        .unwrap_err();
    let e = eddy_proto::RpcError::from(e);
    assert_eq!(e.code, EddyCode::Unauthenticated);
    assert!(!e.message.contains("hunter2"));
    let as_worker = common::worker_client(&c.master.addr, dir.path()).await;
    for worker_id in [0, 987_654] {
        let got = as_worker
            .block_service()
            .get_mount(pb::GetMountRequest {
                mount_id: ext_mount.mount_id,
                worker_id,
            })
            .await
            .unwrap()
            .into_inner()
            .mount
            .unwrap();
        assert_eq!(got.options["secret_key"], "******", "worker id {worker_id}");
    }
    let out = c.master.cli(&["fs", "mounts"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("hunter2"));

    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let meta = dir.path().join("meta");
    assert_eq!(mode(&meta), 0o700);
    assert_eq!(mode(&meta.join("metastore.redb")), 0o600);
    // Every local user may connect (leases need block tokens); the
    // directory it is in is traversable, the state in it stays private.
    assert_eq!(mode(&dir.path().join("w0.sock")), 0o666);
    assert_eq!(mode(dir.path()) & 0o011, 0o011);
    let blocks: Vec<_> = std::fs::read_dir(&tier).unwrap().collect();
    assert!(!blocks.is_empty());
    for b in blocks {
        let p = b.unwrap().path();
        if p.is_dir() {
            assert_eq!(mode(&p), 0o700, "{}", p.display());
            for f in std::fs::read_dir(&p).unwrap() {
                let f = f.unwrap().path();
                if f.is_file() {
                    assert_eq!(mode(&f), 0o600, "block file {}", f.display());
                }
            }
        }
    }
}

/// Client calls end at their deadline: against a master that accepts but
/// never answers, and against a worker that stopped (SIGSTOP) mid-service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_calls_end_at_their_deadline() {
    let silent = common::SilentServer::start();
    let limit = std::time::Duration::from_millis(300);
    let start = std::time::Instant::now();
    let r = match eddy_client::MasterClient::connect_with_timeout(&silent.addr, limit).await {
        Ok(c) => c.stat("/").await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert_code(r, EddyCode::DeadlineExceeded);
    assert!(start.elapsed() < std::time::Duration::from_secs(5));

    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, "", "");
    let fs = c.fs().await;
    common::put(&fs, "/f", b"bytes", pb::WriteType::MustCache).await;
    let quick = eddy_client::FileSystem::connect_with(
        &c.master.addr,
        eddy_client::ClientOptions {
            short_circuit: false,
            timeout: limit,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let pid = c.workers[0].pid().to_string();
    let signal = |s: &str| {
        assert!(
            std::process::Command::new("kill")
                .args([s, &pid])
                .status()
                .unwrap()
                .success()
        )
    };
    signal("-STOP");
    let start = std::time::Instant::now();
    let r = async {
        let mut r = quick.open("/f", &OpenOptions::default()).await?;
        r.read_to_end().await
    }
    .await;
    signal("-CONT");
    assert_code(r, EddyCode::DeadlineExceeded);
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(
        common::get(&fs, "/f").await,
        b"bytes",
        "served again once resumed"
    );
}

/// `eddy fs ls` against a master that accepts but never answers ends with
/// DEADLINE_EXCEEDED after `--timeout` (and by default after 60 s, not never).
#[test]
fn the_cli_gives_up_at_its_timeout() {
    let silent = common::SilentServer::start();
    let start = std::time::Instant::now();
    let out = std::process::Command::new(common::EDDY)
        .args([
            "--master",
            &silent.addr,
            "--timeout",
            "500ms",
            "fs",
            "ls",
            "/",
        ])
        .output()
        .unwrap();
    assert!(start.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.trim_end().ends_with("(DEADLINE_EXCEEDED)"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let bad = std::process::Command::new(common::EDDY)
        .args(["--timeout", "soon", "fs", "ls", "/"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "a bad timeout is a usage error");
}

/// "No error message or log line prints a secret": a master and a worker
/// logging at debug level, a local mount and an S3 mount whose store is
/// not there, both with credentials as options, files read through the
/// local one (the worker fetches its options in clear), every failure
/// shown: the secrets appear in no output of any process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_output_of_any_process_prints_a_secret() {
    const SECRET: &str = "hunter2-s3cr3t";
    const ACCESS: &str = "AKIDLEAKCHECK";
    let dir = tempfile::tempdir().unwrap();
    let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
    let debug = [("EDDY_LOG", "debug")];
    let m = MasterProc::start_stderr(
        dir.path(),
        "127.0.0.1:0",
        "",
        &debug,
        log("master.log").into(),
    );
    let w = common::WorkerProc::start_stderr(
        dir.path(),
        &m.addr,
        "127.0.0.1:0",
        "",
        &debug,
        log("worker.log").into(),
    );
    let ext = tempfile::tempdir().unwrap();
    std::fs::write(ext.path().join("f"), b"through the mount").unwrap();
    let secret = format!("secret_key={SECRET}");
    let access = format!("access_key={ACCESS}");
    let mut outputs = Vec::new();
    let ext_uri = ext.path().to_str().unwrap();
    for args in [
        &[
            "fs", "mount", "/ext", ext_uri, "--option", &secret, "--option", &access,
        ][..],
        &["fs", "cat", "/ext/f"],
        &["fs", "mounts"],
        // A store that is not there: the failure is shown, the secret not.
        &[
            "fs",
            "mount",
            "/s3",
            "s3://no-bucket/x",
            "--option",
            &secret,
            "--option",
            &access,
            "--option",
            "endpoint=http://127.0.0.1:9",
            "--option",
            "region=us-east-1",
        ],
        &["fs", "ls", "/s3"],
        &["report"],
    ] {
        let o = m.cli(args);
        outputs.push((format!("eddy {args:?}"), o.stdout, o.stderr));
    }
    assert!(
        String::from_utf8_lossy(&outputs[1].1).contains("through the mount"),
        "the local mount reads: {:?}",
        String::from_utf8_lossy(&outputs[1].2)
    );
    drop(w);
    m.kill9();
    for name in ["master.log", "worker.log"] {
        let text = std::fs::read(dir.path().join(name)).unwrap();
        assert!(!text.is_empty(), "{name} logged something at debug level");
        outputs.push((name.to_string(), text, Vec::new()));
    }
    for (what, out, err) in &outputs {
        for (stream, bytes) in [("stdout", out), ("stderr", err)] {
            let text = String::from_utf8_lossy(bytes);
            assert!(
                !text.contains(SECRET) && !text.contains(ACCESS),
                "{what} {stream} prints a secret:\n{text}"
            );
        }
    }
}

/// A user's token, sent with every call, appears in no log either: the
/// master and the CLI at debug level, calls that pass and one refused.
#[test]
fn no_log_prints_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(dir.path().join("master.log")).unwrap();
    let m = MasterProc::start_stderr(
        dir.path(),
        "127.0.0.1:0",
        "\n[security]\nauthentication = \"token\"\n",
        &[("EDDY_LOG", "debug")],
        log.into(),
    );
    let keys = eddy_proto::auth::Keyring::load(&dir.path().join("master.key")).unwrap();
    let me = eddy_client::Credentials::current_user().user;
    let token = eddy_proto::auth::Credential::sign(
        &keys,
        eddy_proto::auth::Principal::User,
        &me,
        common::unix_ms_in(0),
        3_600_000,
    )
    .unwrap();
    // The signature's characters: what must never be seen.
    let tail = &token[token.len() - 40..];
    let mut printed = Vec::new();
    for args in [
        &["fs", "ls", "/"][..],
        &["fs", "mkdir", "/d"],
        &["fs", "ls", "/nope"],
    ] {
        let o = std::process::Command::new(common::EDDY)
            .args(["--master", &m.addr])
            .args(args)
            .env("EDDY_TOKEN", &token)
            .env("EDDY_LOG", "debug")
            .output()
            .unwrap();
        let ok = args[2] != "/nope";
        assert_eq!(o.status.success(), ok, "{args:?}: {o:?}");
        printed.push(o.stdout);
        printed.push(o.stderr);
    }
    m.kill9();
    let master_log = std::fs::read(dir.path().join("master.log")).unwrap();
    assert!(!master_log.is_empty());
    printed.push(master_log);
    for p in printed {
        let text = String::from_utf8_lossy(&p);
        assert!(!text.contains(tail), "a token in:\n{text}");
    }
}
