//! The users' groups, cached, with the lookups bounded: in `simple` mode
//! a client names whatever user it likes, so each name it invents could
//! otherwise make the master run `id` for it, as often and as many at once
//! as it asks. Here a name is looked up by one caller at a time (the
//! others wait for that answer), at most `max_lookups` names at once, an
//! unknown user is remembered as having no groups (`negative_ttl`), and
//! the cache holds at most `max_entries` users, forgetting the oldest
//! answer first.
//!
//! The lookup itself is the caller's (`authz` runs `id`); this module is
//! the decision around it, tested without processes.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{OnceCell, Semaphore};

/// A user's groups, primary first.
pub type Groups = Arc<[Arc<str>]>;

/// How long answers are kept and how many lookups run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a user's groups are believed (HDFS: 5 minutes).
    pub ttl: Duration,
    /// How long "no such user" is believed.
    pub negative_ttl: Duration,
    /// Most users remembered; past it the oldest answer is forgotten.
    pub max_entries: usize,
    /// Most lookups running at once; others wait for a place.
    pub max_lookups: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(30),
            max_entries: 10_000,
            max_lookups: 4,
        }
    }
}

/// One lookup under way for a name: every caller asking for that name
/// meanwhile waits on the same cell (`None`: the user is unknown).
type Flight = Arc<OnceCell<Option<Groups>>>;

struct Entry {
    at: Instant,
    /// Insertion order: the smallest is forgotten first.
    seq: u64,
    groups: Groups,
    found: bool,
}

#[derive(Default)]
struct Inner {
    ready: HashMap<Arc<str>, Entry>,
    flights: HashMap<Arc<str>, Flight>,
    seq: u64,
}

pub struct GroupCache {
    limits: Limits,
    inner: Mutex<Inner>,
    lookups: Semaphore,
}

impl GroupCache {
    pub fn new(limits: Limits) -> Self {
        Self {
            lookups: Semaphore::new(limits.max_lookups.max(1)),
            limits,
            inner: Mutex::default(),
        }
    }

    /// `user`'s groups: the cached answer while it is fresh, else the one
    /// `lookup` gives (`None`: no such user, so no groups), shared with
    /// every caller asking for `user` meanwhile.
    pub async fn get<F, Fut>(&self, user: &str, lookup: F) -> Groups
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Option<Vec<String>>>,
    {
        let flight = {
            let mut inner = self.inner.lock();
            if let Some(e) = inner.ready.get(user) {
                let ttl = if e.found {
                    self.limits.ttl
                } else {
                    self.limits.negative_ttl
                };
                if e.at.elapsed() < ttl {
                    return e.groups.clone();
                }
            }
            if !inner.flights.contains_key(user) && inner.flights.len() >= self.limits.max_entries {
                // Lookups whose callers all gave up (dropped RPCs) and that
                // nobody asked for again: nothing waits on them.
                inner.flights.retain(|_, f| Arc::strong_count(f) > 1);
            }
            inner.flights.entry(Arc::from(user)).or_default().clone()
        };
        // No lock is held here: a slow lookup delays only those waiting
        // for the same name (and, past `max_lookups`, for a place).
        let found = flight
            .get_or_init(|| async {
                let _place = self.lookups.acquire().await.expect("never closed");
                lookup(user.to_string())
                    .await
                    .map(|g| g.into_iter().map(Arc::from).collect::<Groups>())
            })
            .await
            .clone();
        self.settle(user, &flight, found.clone());
        found.unwrap_or_else(|| Arc::from(Vec::new()))
    }

    /// Moves the answer of `flight` into the cache, once (the first of its
    /// waiters to get here does it).
    fn settle(&self, user: &str, flight: &Flight, found: Option<Groups>) {
        let mut inner = self.inner.lock();
        if !inner
            .flights
            .get(user)
            .is_some_and(|f| Arc::ptr_eq(f, flight))
        {
            return;
        }
        inner.flights.remove(user);
        if !inner.ready.contains_key(user) && inner.ready.len() >= self.limits.max_entries {
            // A scan, but only when a lookup (a process) was just run.
            let oldest = inner
                .ready
                .iter()
                .min_by_key(|(_, e)| e.seq)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                inner.ready.remove(&k);
            }
        }
        inner.seq += 1;
        let entry = Entry {
            at: Instant::now(),
            seq: inner.seq,
            found: found.is_some(),
            groups: found.unwrap_or_else(|| Arc::from(Vec::new())),
        };
        inner.ready.insert(Arc::from(user), entry);
    }

    /// How many callers wait on a lookup of `user` now (tests).
    #[cfg(test)]
    fn waiting(&self, user: &str) -> usize {
        self.inner
            .lock()
            .flights
            .get(user)
            .map_or(0, |f| Arc::strong_count(f) - 1)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn names(g: &Groups) -> Vec<&str> {
        g.iter().map(|s| &**s).collect()
    }

    /// Yields until `cond` holds (the other futures of the test's join run
    /// meanwhile); bounded, so a broken cache fails instead of hanging.
    async fn until(what: &str, cond: impl Fn() -> bool) {
        for _ in 0..10_000 {
            if cond() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("never: {what}");
    }

    #[tokio::test]
    async fn concurrent_callers_for_one_name_share_one_lookup() {
        let cache = GroupCache::new(Limits::default());
        let calls = AtomicUsize::new(0);
        let gate = tokio::sync::Notify::new();
        let (calls, gate) = (&calls, &gate);
        let lookup = move |_: String| async move {
            calls.fetch_add(1, Ordering::SeqCst);
            gate.notified().await;
            Some(vec!["eng".to_string()])
        };
        let (a, b, ()) = tokio::join!(
            cache.get("alice", lookup),
            cache.get("alice", lookup),
            async {
                until("both callers wait on the lookup", || {
                    cache.waiting("alice") == 2
                })
                .await;
                gate.notify_one();
            }
        );
        assert_eq!((names(&a), names(&b)), (vec!["eng"], vec!["eng"]));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // And later callers get the cached answer.
        let c = cache.get("alice", |_| async { panic!("cached") }).await;
        assert_eq!(names(&c), ["eng"]);
    }

    #[tokio::test]
    async fn at_most_max_lookups_run_at_once() {
        let cache = GroupCache::new(Limits {
            max_lookups: 2,
            ..Limits::default()
        });
        let (running, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let gate = tokio::sync::Semaphore::new(0);
        let (running, most, gate) = (&running, &most, &gate);
        let lookup = move |_: String| async move {
            let n = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(n, Ordering::SeqCst);
            gate.acquire().await.unwrap().forget();
            running.fetch_sub(1, Ordering::SeqCst);
            Some(Vec::new())
        };
        let users = ["u1", "u2", "u3", "u4", "u5"];
        let all = futures::future::join_all(users.iter().map(|u| cache.get(u, lookup)));
        let open = async {
            until("two lookups run", || running.load(Ordering::SeqCst) == 2).await;
            // The others stay queued however long these take.
            for _ in 0..100 {
                tokio::task::yield_now().await;
            }
            assert_eq!(running.load(Ordering::SeqCst), 2);
            gate.add_permits(users.len());
        };
        let (got, ()) = tokio::join!(all, open);
        assert_eq!(got.len(), 5);
        assert_eq!(most.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn unknown_users_are_remembered_for_the_negative_ttl() {
        let calls = AtomicUsize::new(0);
        let calls = &calls;
        let unknown = move |_: String| async move {
            calls.fetch_add(1, Ordering::SeqCst);
            None
        };
        let cache = GroupCache::new(Limits::default());
        assert!(cache.get("nobody", unknown).await.is_empty());
        assert!(cache.get("nobody", unknown).await.is_empty());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "cached as no groups");

        // Past the negative TTL (zero here) it is asked again; a known
        // user's answer is still believed.
        let cache = GroupCache::new(Limits {
            negative_ttl: Duration::ZERO,
            ..Limits::default()
        });
        calls.store(0, Ordering::SeqCst);
        cache.get("nobody", unknown).await;
        cache.get("nobody", unknown).await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        cache
            .get("bob", |_| async { Some(vec!["bob".into()]) })
            .await;
        let g = cache.get("bob", |_| async { panic!("cached") }).await;
        assert_eq!(names(&g), ["bob"]);
    }

    #[tokio::test]
    async fn the_cache_forgets_its_oldest_answer_when_full() {
        let cache = GroupCache::new(Limits {
            max_entries: 3,
            ..Limits::default()
        });
        let calls = AtomicUsize::new(0);
        let calls = &calls;
        let lookup = move |u: String| async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Some(vec![u])
        };
        for u in ["a", "b", "c", "d"] {
            cache.get(u, lookup).await;
        }
        assert_eq!(cache.inner.lock().ready.len(), 3);
        for u in ["b", "c", "d"] {
            cache.get(u, |_| async { panic!("{u} was kept") }).await;
        }
        let before = calls.load(Ordering::SeqCst);
        assert_eq!(names(&cache.get("a", lookup).await), ["a"]);
        assert_eq!(calls.load(Ordering::SeqCst), before + 1, "a was forgotten");
    }
}
