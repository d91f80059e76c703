//! The user name of a uid, as the worker (for a Unix-socket peer's
//! SO_PEERCRED uid) and the client (for its own effective uid) both need
//! it: the two must agree, or a co-located client's `Hello` is refused.
//!
//! /etc/passwd first (no process spawned for the common case), then the
//! system's name service through `id -nu UID` (LDAP, SSSD and other NSS
//! sources that /etc/passwd does not list; no libc call, so no `unsafe`),
//! else the uid as a decimal number. Answers are cached, so a worker
//! serving many connections spawns `id` once per uid and lifetime.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::valid_name;

/// How long a uid without a name keeps its decimal answer before the
/// name service is asked again (a user may be added meanwhile).
const MISS_TTL: Duration = Duration::from_secs(30);

/// How long a found name is kept (renames are rare; the cache is per process).
const HIT_TTL: Duration = Duration::from_secs(300);

fn cache() -> &'static Mutex<HashMap<u32, (String, Instant)>> {
    static CACHE: OnceLock<Mutex<HashMap<u32, (String, Instant)>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The name of `uid`: /etc/passwd, else `id -nu`, else `uid` in decimal.
/// A name that could not be a principal's ([`valid_name`]) counts as none.
pub fn os_user(uid: u32) -> String {
    let now = Instant::now();
    if let Some((name, until)) = cache().lock().ok().and_then(|c| c.get(&uid).cloned())
        && until > now
    {
        return name;
    }
    let found = passwd_name(
        &std::fs::read_to_string("/etc/passwd").unwrap_or_default(),
        uid,
    )
    .or_else(|| nss_name(uid));
    let ttl = if found.is_some() { HIT_TTL } else { MISS_TTL };
    let name = found.unwrap_or_else(|| uid.to_string());
    if let Ok(mut c) = cache().lock() {
        c.insert(uid, (name.clone(), now + ttl));
    }
    name
}

/// The name a passwd-format `text` gives `uid`.
fn passwd_name(text: &str, uid: u32) -> Option<String> {
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id: u32 = f.nth(1)?.parse().ok()?;
        (id == uid && valid_name(name)).then(|| name.to_string())
    })
}

/// The name service's answer for `uid` (`id -nu`), if it knows one.
fn nss_name(uid: u32) -> Option<String> {
    let out = Command::new("id")
        .args(["-nu", &uid.to_string()])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let name = String::from_utf8(out.stdout).ok()?.trim().to_string();
    // `id` prints the number itself for some unnamed uids: that is no name.
    (valid_name(&name) && name != uid.to_string()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines_are_matched_by_uid_and_odd_names_skipped() {
        let text = "root:x:0:0::/root:/bin/sh\n\
                    bad:line\n\
                    -dash:x:7:7::/:/bin/sh\n\
                    alice:x:1000:1000::/home/alice:/bin/sh\n";
        assert_eq!(passwd_name(text, 0).as_deref(), Some("root"));
        assert_eq!(passwd_name(text, 1000).as_deref(), Some("alice"));
        assert_eq!(passwd_name(text, 7), None, "not a valid principal name");
        assert_eq!(passwd_name(text, 42), None);
    }

    #[test]
    fn a_known_uid_has_its_name_and_an_unknown_one_its_number() {
        assert_eq!(os_user(0), "root");
        // Far above any allocated range (and below the (u32)-1 "no uid").
        let ghost = 3_999_999_917;
        assert_eq!(nss_name(ghost), None);
        assert_eq!(os_user(ghost), ghost.to_string());
        // Cached: the same answer again.
        assert_eq!(os_user(ghost), ghost.to_string());
    }

    #[test]
    fn the_name_service_is_asked_for_users_passwd_may_not_list() {
        // Every uid /etc/passwd names, the name service names the same way
        // (the fallback agrees with the fast path where both answer).
        let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        for uid in [0u32, 1, 2] {
            if let Some(p) = passwd_name(&text, uid) {
                assert_eq!(nss_name(uid).as_deref(), Some(p.as_str()), "uid {uid}");
            }
        }
    }
}
