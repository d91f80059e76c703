//! Permissions through the real `eddy` binary run as different OS users
//! (created by `common::users`: `eddy-alice` and `eddy-bob` share the
//! group `eddy-eng`, `eddy-carol` is alone) against a master run by root,
//! the superuser. Skipped, with a message, when not root or without
//! `useradd`/`setpriv`.

mod common;

use std::process::{Command, Output};

use common::users::{as_user, users};
use common::{EDDY, MasterProc};

/// `eddy --master ADDR args...` as OS user `user`, with `env` set (no
/// token file of root's, no user override: the OS user speaks).
fn eddy_as(m: &MasterProc, user: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = as_user(user, EDDY);
    c.args(["--master", &m.addr]).args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[track_caller]
fn ok(o: Output) -> String {
    assert!(
        o.status.success(),
        "expected success: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The one stderr line of a refused command, which must end in `code`.
#[track_caller]
fn refused(o: Output, code: &str) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "expected {code}, got success");
    assert!(err.trim_end().ends_with(&format!("({code})")), "{err}");
    err
}

#[track_caller]
fn denied(o: Output) -> String {
    refused(o, "PERMISSION_DENIED")
}

/// The tree every case uses: `/home/alice` alice:eddy-eng 0750 with a
/// file `f` 0600; `/tmp` 01777 with one file of bob's; `/pub` 0777.
fn tree(m: &MasterProc) {
    for args in [
        &["fs", "mkdir", "-p", "/home/alice"][..],
        &["fs", "chown", "eddy-alice:eddy-eng", "/home/alice"],
        &["fs", "chmod", "750", "/home/alice"],
        &["fs", "mkdir", "/tmp"],
        &["fs", "chmod", "1777", "/tmp"],
        &["fs", "mkdir", "/pub"],
        &["fs", "chmod", "777", "/pub"],
    ] {
        m.cli_ok(args);
    }
}

#[test]
fn users_get_what_their_permissions_allow_and_the_superuser_all() {
    if !users() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), "");
    tree(&m);
    let (alice, bob, carol) = ("eddy-alice", "eddy-bob", "eddy-carol");
    // New entries: the caller's user, the parent's group, 0666/0777 less
    // the umask (022).
    ok(eddy_as(&m, alice, &[], &["fs", "touch", "/home/alice/f"]));
    let st = ok(eddy_as(&m, alice, &[], &["fs", "stat", "/home/alice/f"]));
    assert!(st.contains("owner:           eddy-alice"), "{st}");
    assert!(st.contains("group:           eddy-eng"), "{st}");
    assert!(st.contains("mode:            -rw-r--r-- (644)"), "{st}");
    ok(eddy_as(
        &m,
        alice,
        &[],
        &["fs", "chmod", "600", "/home/alice/f"],
    ));

    // No x on /home/alice: carol cannot stat below it.
    let e = denied(eddy_as(&m, carol, &[], &["fs", "stat", "/home/alice/f"]));
    assert!(
        e.contains(
            "Permission denied: user=eddy-carol, access=EXECUTE, inode=\"/home/alice\":eddy-alice:eddy-eng:drwxr-x---"
        ),
        "{e}"
    );
    // bob (group r-x) may list and stat, but not read a 0600 file ...
    ok(eddy_as(&m, bob, &[], &["fs", "ls", "/home/alice"]));
    ok(eddy_as(&m, bob, &[], &["fs", "stat", "/home/alice/f"]));
    let e = denied(eddy_as(&m, bob, &[], &["fs", "cat", "/home/alice/f"]));
    assert!(e.contains("access=READ"), "{e}");
    // ... nor create, delete or rename without w on the parent.
    let e = denied(eddy_as(&m, bob, &[], &["fs", "mkdir", "/home/alice/b"]));
    assert!(e.contains("access=WRITE_EXECUTE"), "{e}");
    denied(eddy_as(&m, bob, &[], &["fs", "rm", "/home/alice/f"]));
    denied(eddy_as(
        &m,
        bob,
        &[],
        &["fs", "mv", "/home/alice/f", "/pub/f"],
    ));
    // chmod and chown are not bob's to do; chgrp only to one's groups.
    let e = denied(eddy_as(
        &m,
        bob,
        &[],
        &["fs", "chmod", "777", "/home/alice/f"],
    ));
    assert!(e.contains("is not the owner"), "{e}");
    let e = denied(eddy_as(
        &m,
        alice,
        &[],
        &["fs", "chown", "eddy-bob", "/home/alice/f"],
    ));
    assert!(e.contains("only the superuser (root)"), "{e}");
    denied(eddy_as(
        &m,
        alice,
        &[],
        &["fs", "chgrp", "eddy-carol", "/home/alice/f"],
    ));
    ok(eddy_as(
        &m,
        alice,
        &[],
        &["fs", "chgrp", "eddy-eng", "/home/alice/f"],
    ));

    // The sticky bit: in /tmp, carol may not remove bob's file.
    ok(eddy_as(&m, bob, &[], &["fs", "touch", "/tmp/b"]));
    let e = denied(eddy_as(&m, carol, &[], &["fs", "rm", "/tmp/b"]));
    assert!(e.contains("sticky bit"), "{e}");
    denied(eddy_as(&m, carol, &[], &["fs", "mv", "/tmp/b", "/tmp/c"]));
    ok(eddy_as(&m, bob, &[], &["fs", "mv", "/tmp/b", "/tmp/c"]));

    // Admin operations are the superuser's.
    let ext = tempfile::tempdir().unwrap();
    let e = denied(eddy_as(
        &m,
        alice,
        &[],
        &["fs", "mount", "/pub/m", ext.path().to_str().unwrap()],
    ));
    assert!(
        e.contains("may not mount /pub/m; only the superuser (root)"),
        "{e}"
    );
    denied(eddy_as(
        &m,
        alice,
        &[],
        &["fs", "setReplication", "--min", "1", "/home/alice/f"],
    ));

    // root, the superuser, may do all of it.
    m.cli_ok(&["fs", "stat", "/home/alice/f"]);
    m.cli_ok(&["fs", "chown", "eddy-bob", "/home/alice/f"]);
    m.cli_ok(&["fs", "rm", "/tmp/c"]);
    m.cli_ok(&["fs", "rm", "-R", "/home"]);
}

#[test]
fn token_mode_believes_only_signed_tokens() {
    if !users() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), "\n[security]\nauthentication = \"token\"\n");
    // The admin signs with the master's key file (master.key beside the
    // metastore directory, which this config names).
    let cfg = dir.path().join("eddy.toml");
    let cfg = cfg.to_str().unwrap();
    let sign = |user: &str| {
        let o = Command::new(EDDY)
            .args([
                "--config", cfg, "token", "create", "--user", user, "--ttl", "1h",
            ])
            .output()
            .unwrap();
        ok(o).trim().to_string()
    };
    let (root_token, alice_token) = (sign("root"), sign("eddy-alice"));
    let shown = ok(Command::new(EDDY)
        .args(["token", "show", &alice_token])
        .output()
        .unwrap());
    assert!(
        shown.contains("name:     eddy-alice") && shown.contains("not expired"),
        "{shown}"
    );

    // No token: UNAUTHENTICATED, saying what to set.
    let e = refused(
        eddy_as(&m, "eddy-alice", &[], &["fs", "ls", "/"]),
        "UNAUTHENTICATED",
    );
    assert!(e.contains("EDDY_TOKEN"), "{e}");
    let root = [("EDDY_TOKEN", root_token.as_str())];
    let alice = [("EDDY_TOKEN", alice_token.as_str())];
    for args in [
        &["fs", "mkdir", "/home"][..],
        &["fs", "mkdir", "/pub"],
        &["fs", "chmod", "777", "/pub"],
    ] {
        ok(eddy_as(&m, "eddy-bob", &root, args));
    }
    // bob running with alice's token is alice; the OS user is not believed.
    ok(eddy_as(&m, "eddy-bob", &alice, &["fs", "mkdir", "/pub/a"]));
    let st = ok(eddy_as(&m, "eddy-bob", &alice, &["fs", "stat", "/pub/a"]));
    assert!(st.contains("owner:           eddy-alice"), "{st}");
    let e = denied(eddy_as(&m, "eddy-bob", &alice, &["fs", "mkdir", "/home/x"]));
    assert!(e.contains("user=eddy-alice"), "{e}");
    // A forged token is refused.
    // One character of the signature changed (not the last: its low
    // bits are padding).
    let mut forged = alice_token.clone().into_bytes();
    let at = forged.len() - 5;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let forged = [("EDDY_TOKEN", forged.as_str())];
    refused(
        eddy_as(&m, "eddy-alice", &forged, &["fs", "ls", "/"]),
        "UNAUTHENTICATED",
    );
}
