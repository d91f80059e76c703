//! Master throughput over loopback gRPC (issue: control plane).
//!
//! - `null_rpc`: ListMounts, the baseline: a gRPC round trip that does almost
//!   nothing, measured in the same run. Ratios against it show what the
//!   namespace costs on top of gRPC.
//! - `get_status`: 32 concurrent clients stat an existing file.
//! - `create_complete`: 32 concurrent clients create + complete new files;
//!   each acknowledged pair is durable (group commit).
//! - `create_complete_durable_x16`, `delete_durable_x16`: the same with 16
//!   clients, and deletes of empty files (created untimed first).
//! - `list_10k`: list a 10,000-entry directory, all pages.
//! - `auth_get_status_{none,token}`: `get_status` of 32 clients against a
//!   master with authentication `none` and one with `token` (each call
//!   carrying a user's credential, verified and permission-checked), in
//!   the same run, one after the other.
//! - `one_client_*` (issue 18): one client, one call at a time: a null RPC,
//!   `get_status`, and create + complete of an empty file against a master
//!   with `[master] sync = "always"` and one with `sync = "batch"`, in the
//!   same run, on the same disk; and the second baseline,
//!   `one_client_metastore_commit`: one durable metastore transaction of
//!   what a create + complete writes (the file's record twice, its
//!   parent's once), straight to a metastore on that disk. The target is
//!   create + complete (`always`) at most that commit plus two null RPCs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use eddy_client::{CreateOptions, MasterClient};

const CLIENTS: u64 = 32;

fn bench_master(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let master = rt.block_on(eddy_bench::start_master(dir.path()));
    let addr = master.addr.to_string();
    // One connection per client, as separate processes would have.
    let clients: Vec<MasterClient> = rt.block_on(async {
        let mut v = Vec::new();
        for _ in 0..CLIENTS {
            v.push(MasterClient::connect(&addr).await.unwrap());
        }
        v
    });
    rt.block_on(async {
        clients[0].mkdir("/bench", false).await.unwrap();
        clients[0]
            .create_file("/bench/f", &CreateOptions::default())
            .await
            .unwrap();
        clients[0]
            .complete_file("/bench/f", 1 << 20, false)
            .await
            .unwrap();
    });

    let mut g = c.benchmark_group("master");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));

    g.bench_function("null_rpc_x32", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let clients = clients.clone();
            async move {
                run_spread(&clients, iters, |c, _| async move {
                    c.list_mounts().await.unwrap();
                })
                .await
            }
        })
    });
    g.bench_function("get_status_x32", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let clients = clients.clone();
            async move {
                run_spread(&clients, iters, |c, _| async move {
                    c.stat("/bench/f").await.unwrap();
                })
                .await
            }
        })
    });
    let seq = Arc::new(AtomicU64::new(0));
    g.bench_function("create_complete_durable_x32", |b| {
        b.to_async(&rt)
            .iter_custom(|iters| run_creates(clients.clone(), seq.clone(), iters))
    });
    // The 16 threads: creates, then deletes of files made untimed.
    let sixteen = clients[..16].to_vec();
    g.bench_function("create_complete_durable_x16", |b| {
        b.to_async(&rt)
            .iter_custom(|iters| run_creates(sixteen.clone(), seq.clone(), iters))
    });
    let del = Arc::new(AtomicU64::new(0));
    g.bench_function("delete_durable_x16", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (sixteen, del) = (sixteen.clone(), del.clone());
            async move {
                let first = del.fetch_add(iters, Ordering::Relaxed);
                run_spread(&sixteen, iters, move |c, i| async move {
                    let p = format!("/bench/d{}", first + i);
                    c.create_file(&p, &CreateOptions::default()).await.unwrap();
                    c.complete_file(&p, 0, false).await.unwrap();
                })
                .await;
                run_spread(&sixteen, iters, move |c, i| async move {
                    c.delete(format!("/bench/d{}", first + i), false)
                        .await
                        .unwrap();
                })
                .await
            }
        })
    });
    g.finish();

    // A 10,000-entry directory.
    rt.block_on(async {
        clients[0].mkdir("/big", false).await.unwrap();
        run_spread(&clients, 10_000, |c, i| async move {
            c.create_file(format!("/big/e{i:05}"), &CreateOptions::default())
                .await
                .unwrap();
        })
        .await;
    });
    let mut g = c.benchmark_group("master");
    g.throughput(Throughput::Elements(10_000));
    g.sample_size(20);
    g.bench_function("list_status_10k", |b| {
        b.to_async(&rt).iter(|| async {
            let n = clients[0].list("/big").await.unwrap().len();
            assert_eq!(n, 10_000);
        })
    });
    g.finish();
    rt.block_on(master.shutdown());
    bench_auth(c, &rt);
    bench_one_client(c, &rt);
}

/// One client, one call at a time: latency as a single-threaded program
/// sees it, durable (`always`) and `batch` masters side by side.
fn bench_one_client(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    use eddy_master::config::MetastoreSync;
    let setup = |sync: MetastoreSync| {
        let dir = tempfile::tempdir().unwrap();
        let m = rt.block_on(eddy_bench::start_master_with(dir.path(), |cfg| {
            cfg.sync = sync;
        }));
        let client = rt.block_on(async {
            let c = MasterClient::connect(&m.addr.to_string()).await.unwrap();
            c.mkdir("/bench", false).await.unwrap();
            c.create_file("/bench/f", &CreateOptions::default())
                .await
                .unwrap();
            c.complete_file("/bench/f", 1 << 20, false).await.unwrap();
            c
        });
        (dir, m, client)
    };
    let always = setup(MetastoreSync::Always);
    let batch = setup(MetastoreSync::Batch);
    let mut g = c.benchmark_group("master");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));
    let one = vec![always.2.clone()];
    g.bench_function("one_client_null_rpc", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let one = one.clone();
            async move {
                run_spread(&one, iters, |c, _| async move {
                    c.list_mounts().await.unwrap();
                })
                .await
            }
        })
    });
    g.bench_function("one_client_get_status", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let one = one.clone();
            async move {
                run_spread(&one, iters, |c, _| async move {
                    c.stat("/bench/f").await.unwrap();
                })
                .await
            }
        })
    });
    g.bench_function("one_client_metastore_commit", |b| {
        use eddy_master::metastore::{MetaOp, Metastore, SyncPolicy};
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Metastore::open(dir.path(), SyncPolicy::default()).unwrap();
        let record = vec![7u8; 96];
        let next = AtomicU64::new(2);
        b.to_async(rt).iter(|| {
            let id = next.fetch_add(1, Ordering::Relaxed);
            let put = |id: u64| MetaOp::PutInode {
                id,
                record: record.clone(),
            };
            store.submit(vec![put(id), put(1), put(id)])
        })
    });
    let seq = Arc::new(AtomicU64::new(0));
    for (name, client) in [
        ("one_client_create_complete_always", &always.2),
        ("one_client_create_complete_batch", &batch.2),
    ] {
        g.bench_function(name, |b| {
            b.to_async(rt)
                .iter_custom(|iters| run_creates(vec![client.clone()], seq.clone(), iters))
        });
    }
    g.finish();
    for (_, m, _) in [always, batch] {
        rt.block_on(m.shutdown());
    }
}

/// `get_status` with authentication `none` vs `token`, in one run.
fn bench_auth(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    use eddy_proto::auth::{AuthMode, Credential, Principal};
    let setup = |mode: AuthMode| {
        let dir = tempfile::tempdir().unwrap();
        let m = rt.block_on(eddy_bench::start_master_with(dir.path(), |cfg| {
            cfg.security.authentication = mode;
        }));
        let addr = m.addr.to_string();
        let keys = &m.state.keys.credentials;
        let token = |user: &str| {
            (mode == AuthMode::Token).then(|| {
                Credential::sign(keys, Principal::User, user, now_ms(), 3_600_000).unwrap()
            })
        };
        let creds = |user: &str| eddy_client::Credentials {
            user: user.into(),
            token: token(user),
        };
        let (admin, user) = (creds(&m.state.authz.superuser), creds("eddy-bench"));
        let clients: Vec<MasterClient> = rt.block_on(async {
            let a = MasterClient::connect_with(
                &addr,
                eddy_client::ClientOptions::default().timeout,
                &admin,
            )
            .await
            .unwrap();
            a.mkdir("/bench", false).await.unwrap();
            a.create_file("/bench/f", &CreateOptions::default())
                .await
                .unwrap();
            a.complete_file("/bench/f", 1 << 20, false).await.unwrap();
            let mut v = Vec::new();
            for _ in 0..CLIENTS {
                let t = eddy_client::ClientOptions::default().timeout;
                v.push(MasterClient::connect_with(&addr, t, &user).await.unwrap());
            }
            v
        });
        (dir, m, clients)
    };
    let none = setup(AuthMode::None);
    let token = setup(AuthMode::Token);
    let mut g = c.benchmark_group("master");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));
    for (name, clients) in [
        ("auth_get_status_none_x32", &none.2),
        ("auth_get_status_token_x32", &token.2),
    ] {
        g.bench_function(name, |b| {
            b.to_async(rt).iter_custom(|iters| {
                let clients = clients.clone();
                async move {
                    run_spread(&clients, iters, |c, _| async move {
                        c.stat("/bench/f").await.unwrap();
                    })
                    .await
                }
            })
        });
    }
    g.finish();
    for (_, m, _) in [none, token] {
        rt.block_on(m.shutdown());
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Creates and completes `iters` empty files `/bench/c<n>` (n from `seq`),
/// spread over `clients`; returns the wall time.
async fn run_creates(clients: Vec<MasterClient>, seq: Arc<AtomicU64>, iters: u64) -> Duration {
    run_spread(&clients, iters, move |c, _| {
        let n = seq.fetch_add(1, Ordering::Relaxed);
        async move {
            let p = format!("/bench/c{n}");
            c.create_file(&p, &CreateOptions::default()).await.unwrap();
            c.complete_file(&p, 0, false).await.unwrap();
        }
    })
    .await
}

/// Runs `op(client, i)` for i in 0..iters, spread over all clients
/// concurrently; returns the wall time.
async fn run_spread<F, Fut>(clients: &[MasterClient], iters: u64, op: F) -> Duration
where
    F: Fn(MasterClient, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let n = clients.len() as u64;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients.len());
    for (k, c) in clients.iter().enumerate() {
        let (c, op) = (c.clone(), op.clone());
        let k = k as u64;
        tasks.push(tokio::spawn(async move {
            let mut i = k;
            while i < iters {
                op(c.clone(), i).await;
                i += n;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

criterion_group!(benches, bench_master);
criterion_main!(benches);
