//! OS users for tests that run clients as someone other than the worker's
//! and master's user (root): `eddy-alice` and `eddy-bob` share the group
//! `eddy-eng`, `eddy-carol` is alone. Created with `useradd` once per test
//! binary; tests skip, with a message, when not root or without
//! `useradd`/`setpriv`.

use std::process::Command;

/// Creates the test users once; false (and why, printed) if it cannot.
pub fn users() -> bool {
    static READY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *READY.get_or_init(|| {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if !root {
            eprintln!("skipped: permissions as other OS users need root (to useradd and setpriv)");
            return false;
        }
        let have = |tool: &str| {
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if !(have("useradd") && have("groupadd") && have("setpriv")) {
            eprintln!("skipped: useradd, groupadd or setpriv is missing");
            return false;
        }
        let run = |args: &[&str]| Command::new(args[0]).args(&args[1..]).output().unwrap();
        run(&["groupadd", "-f", "eddy-eng"]);
        for (u, g) in [
            ("eddy-alice", "eddy-eng"),
            ("eddy-bob", "eddy-eng"),
            ("eddy-carol", ""),
        ] {
            if run(&["id", u]).status.success() {
                continue;
            }
            let o = if g.is_empty() {
                run(&["useradd", "-M", "-U", u])
            } else {
                run(&["useradd", "-M", "-N", "-g", g, u])
            };
            // A concurrent test binary may have created it meanwhile.
            if !o.status.success() && !run(&["id", u]).status.success() {
                eprintln!(
                    "skipped: useradd {u} failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                );
                return false;
            }
        }
        true
    })
}

/// The primary group of `user`, for `setpriv --regid`.
pub fn primary_group(user: &str) -> String {
    let o = Command::new("id").args(["-gn", user]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// `program` run as `user` (its primary group and its other groups), with
/// no environment of root's that names an Eddy identity.
pub fn as_user(user: &str, program: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        &format!("--reuid={user}"),
        &format!("--regid={}", primary_group(user)),
        "--init-groups",
        "--",
        program,
    ])
    .env("HOME", "/nonexistent")
    .env_remove("EDDY_USER")
    .env_remove("EDDY_TOKEN")
    .env_remove("EDDY_TOKEN_FILE");
    c
}
