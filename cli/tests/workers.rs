//! Worker registration, heartbeats, lost workers and block locations, driven
//! through the real BlockMaster gRPC service.

mod common;

use std::time::{Duration, Instant};

use common::MasterProc;
use eddy_client::{CreateOptions, EddyCode, RpcError, pb};

fn addr(host: &str, port: u32) -> pb::WorkerAddress {
    pb::WorkerAddress {
        host: host.into(),
        rpc_port: 0,
        data_port: port,
        domain_socket: "/tmp/w.sock".into(),
        ..Default::default()
    }
}

fn mem(cap: u64, used: u64) -> Vec<pb::TierUsage> {
    vec![pb::TierUsage {
        tier: "MEM".into(),
        capacity_bytes: cap,
        used_bytes: used,
        ..Default::default()
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_register_heartbeat_get_lost_and_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(
        dir.path(),
        "worker_heartbeat_interval_ms = 50\nworker_lost_after_ms = 1500",
    );
    let c = m.client().await;
    let mut bm = common::worker_client(&m.addr, dir.path())
        .await
        .block_service();

    // A complete 2-block file.
    c.create_file(
        "/f",
        &CreateOptions {
            block_size: 1 << 20,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let f = c.complete_file("/f", (1 << 20) + 100, true).await.unwrap();
    let (b0, b1) = (f.block_ids[0], f.block_ids[1]);

    let reg = bm
        .register_worker(pb::RegisterWorkerRequest {
            address: Some(addr("hostA", 29999)),
            tiers: mem(1 << 30, 0),
            // b0 is valid; a block of an unknown file is stale.
            blocks: vec![
                pb::BlockReport {
                    block_id: b0,
                    length: 1 << 20,
                    tier: "MEM".into(),
                },
                pb::BlockReport {
                    block_id: eddy_proto::block_id(9999, 0),
                    length: 1,
                    tier: "MEM".into(),
                },
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let wid = reg.worker_id;
    assert_eq!(reg.heartbeat_interval_ms, 50);
    assert_eq!(reg.lost_after_ms, 1500);

    bm.commit_block(pb::CommitBlockRequest {
        worker_id: wid,
        block_id: b1,
        length: 100,
        tier: "MEM".into(),
        written: false,
    })
    .await
    .unwrap();
    let e = RpcError::from(
        bm.commit_block(pb::CommitBlockRequest {
            worker_id: wid,
            block_id: b1,
            length: 5,
            tier: "MEM".into(),
            written: false,
        })
        .await
        .unwrap_err(),
    );
    assert_eq!(
        e.code,
        EddyCode::InvalidArgument,
        "a block length that does not match its file"
    );
    let e = RpcError::from(
        bm.commit_block(pb::CommitBlockRequest {
            worker_id: 777,
            block_id: b1,
            length: 100,
            tier: "MEM".into(),
            written: false,
        })
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, EddyCode::UnknownWorker);

    let blocks = c.file_blocks("/f").await.unwrap();
    assert_eq!(blocks.status.unwrap().percent_cached, 100);
    assert_eq!(blocks.blocks.len(), 2);
    assert_eq!(blocks.blocks[1].offset, 1 << 20);
    assert_eq!(blocks.blocks[1].length, 100);
    assert_eq!(blocks.blocks[0].locations[0].host, "hostA");
    assert_eq!(blocks.blocks[0].locations[0].domain_socket, "/tmp/w.sock");

    // The first heartbeat carries the removal of the stale block.
    let hb = bm
        .heartbeat(pb::HeartbeatRequest {
            worker_id: wid,
            tiers: mem(1 << 30, 2 << 20),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let Some(pb::worker_command::Command::RemoveBlocks(rb)) = &hb.commands[0].command else {
        panic!("expected RemoveBlocks, got {hb:?}")
    };
    assert_eq!(rb.block_ids, vec![eddy_proto::block_id(9999, 0)]);

    // Placement: local-first picks the worker on the client's host.
    let mut bm2 = bm.clone();
    let other = bm2
        .register_worker(pb::RegisterWorkerRequest {
            address: Some(addr("hostB", 29999)),
            tiers: mem(1 << 40, 0),
            blocks: vec![],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .worker_id;
    // Placements are asked for by the file's users, not by workers.
    let mut placer = c.block_service();
    let pick = |host: &str| pb::SelectWorkerRequest {
        block_id: b0,
        client_host: host.into(),
        bytes_needed: 1 << 20,
        policy: 0,
        exclude_workers: vec![],
    };
    assert_eq!(
        placer
            .select_worker(pick("hostA"))
            .await
            .unwrap()
            .into_inner()
            .worker_id,
        wid
    );
    assert_eq!(
        placer
            .select_worker(pick("elsewhere"))
            .await
            .unwrap()
            .into_inner()
            .worker_id,
        other,
        "most free"
    );

    // Deleting the file tells the worker to drop its blocks.
    c.delete("/f", false).await.unwrap();
    let hb = bm
        .heartbeat(pb::HeartbeatRequest {
            worker_id: wid,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let Some(pb::worker_command::Command::RemoveBlocks(rb)) = &hb.commands[0].command else {
        panic!("expected RemoveBlocks, got {hb:?}")
    };
    let mut ids = rb.block_ids.clone();
    ids.sort();
    assert_eq!(ids, vec![b0, b1]);

    // Silence: worker A is declared lost (B keeps heartbeating).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        bm2.heartbeat(pb::HeartbeatRequest {
            worker_id: other,
            ..Default::default()
        })
        .await
        .unwrap();
        let info = c.cluster_info().await.unwrap();
        let a = info.workers.iter().find(|w| w.worker_id == wid).unwrap();
        if !a.live {
            assert!(
                info.workers
                    .iter()
                    .find(|w| w.worker_id == other)
                    .unwrap()
                    .live
            );
            assert_eq!(
                info.tiers[0].capacity_bytes,
                1 << 40,
                "only live workers count"
            );
            break;
        }
        assert!(Instant::now() < deadline, "worker never declared lost");
        tokio::time::sleep(Duration::from_millis(50)).await; // heartbeat period of worker B
    }
    let e = RpcError::from(
        bm.heartbeat(pb::HeartbeatRequest {
            worker_id: wid,
            ..Default::default()
        })
        .await
        .unwrap_err(),
    );
    assert_eq!(
        e.code,
        EddyCode::UnknownWorker,
        "a lost worker is told to register again"
    );
    let back = bm
        .register_worker(pb::RegisterWorkerRequest {
            address: Some(addr("hostA", 29999)),
            tiers: mem(1 << 30, 0),
            blocks: vec![],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(back.worker_id, wid, "a returning worker keeps its id");
    assert!(
        c.cluster_info()
            .await
            .unwrap()
            .workers
            .iter()
            .all(|w| w.live)
    );

    let e = RpcError::from(
        bm.heartbeat(pb::HeartbeatRequest {
            worker_id: 4242,
            ..Default::default()
        })
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, EddyCode::UnknownWorker);
    let e = RpcError::from(
        bm.register_worker(pb::RegisterWorkerRequest {
            address: None,
            tiers: vec![],
            blocks: vec![],
            ..Default::default()
        })
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, EddyCode::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_worker_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), "");
    let c = m.client().await;
    // A placement is for a block of a file (SelectWorker checks it).
    let f = c.create_file("/f", &Default::default()).await.unwrap();
    let mut bm = c.block_service();
    let e = RpcError::from(
        bm.select_worker(pb::SelectWorkerRequest {
            block_id: eddy_proto::block_id(f.id, 0),
            client_host: String::new(),
            bytes_needed: 1,
            policy: 2,
            exclude_workers: vec![],
        })
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, EddyCode::NoWorkerAvailable);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_is_not_a_worker_cannot_register_or_get_placements() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), "");
    let c = m.client().await;
    let mut rogue = c.block_service();
    let e = RpcError::from(
        rogue
            .register_worker(pb::RegisterWorkerRequest {
                address: Some(addr("rogue", 29999)),
                tiers: mem(1 << 40, 0),
                ..Default::default()
            })
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, EddyCode::Unauthenticated, "{e:?}");
    assert!(
        e.message.contains("worker token") && e.message.contains("key_file"),
        "says what a worker must set: {}",
        e.message
    );
    // Nor may it heartbeat, commit, look blocks up or read mount secrets.
    let hb = rogue.heartbeat(pb::HeartbeatRequest::default()).await;
    let mount = rogue.get_mount(pb::GetMountRequest::default()).await;
    let info = rogue
        .get_block_info(pb::GetBlockInfoRequest { block_id: 1 })
        .await;
    for r in [hb.err(), mount.err(), info.err()] {
        assert_eq!(RpcError::from(r.unwrap()).code, EddyCode::Unauthenticated);
    }
    // No placement goes to it: there is no worker at all.
    let f = c.create_file("/f", &Default::default()).await.unwrap();
    let e = RpcError::from(
        rogue
            .select_worker(pb::SelectWorkerRequest {
                block_id: eddy_proto::block_id(f.id, 0),
                bytes_needed: 1,
                policy: 2,
                ..Default::default()
            })
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, EddyCode::NoWorkerAvailable);
    let text = common::scrape(&m.metrics);
    let refused = common::sample(
        &text,
        "eddy_master_worker_refused_total{method=\"RegisterWorker\"}",
    );
    assert_eq!(refused, Some(1.0), "counted");

    // A real worker token registers, and gets the block keys.
    let reg = common::worker_client(&m.addr, dir.path())
        .await
        .block_service()
        .register_worker(pb::RegisterWorkerRequest {
            address: Some(addr("hostA", 29999)),
            tiers: mem(1 << 30, 0),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(reg.block_tokens_required);
    assert_eq!(reg.authentication, "simple");
    assert!(!reg.block_keys.is_empty());
    assert!(reg.block_keys.iter().all(|k| k.secret.len() == 32));
}

/// Credential refusals the master counted (every service).
fn unauthenticated(m: &MasterProc) -> f64 {
    common::scrape(&m.metrics)
        .lines()
        .filter(|l| l.starts_with("eddy_master_unauthenticated_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Writes through the cluster's only worker: its admission and commit are
/// calls to the master with the worker's credential, so this works only
/// while the master accepts it.
async fn write_works(fs: &eddy_client::FileSystem, path: &str) -> bool {
    let o = CreateOptions {
        write_type: pb::WriteType::MustCache,
        ..Default::default()
    };
    let Ok(mut w) = fs.create(path, &o).await else {
        return false;
    };
    w.write(b"bytes").await.is_ok() && w.close().await.is_ok()
}

/// An operator replaces a worker's token file while it runs: the worker
/// reads it again when the master refuses the old token, and ahead of a
/// token's expiry, so it stays registered without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_reads_its_replaced_token_file_again() {
    let dir = tempfile::tempdir().unwrap();
    let m = MasterProc::start(dir.path(), "");
    let keys = eddy_proto::auth::Keyring::load(&dir.path().join("master.key")).unwrap();
    let file = dir.path().join("worker.token");
    let replace = |ttl_ms: u64| {
        let t = eddy_proto::auth::Credential::sign(
            &keys,
            eddy_proto::auth::Principal::Worker,
            "w1",
            common::unix_ms_in(0),
            ttl_ms,
        )
        .unwrap();
        // As an operator would: a new file renamed over the old one.
        let tmp = file.with_extension("new");
        std::fs::write(&tmp, t).unwrap();
        std::fs::rename(&tmp, &file).unwrap();
    };
    replace(1_500);
    let extra = format!(
        "[security]\ntoken_file = {:?}\n",
        file.display().to_string()
    );
    let _w = common::WorkerProc::start(dir.path(), &m.addr, &extra);
    let fs = eddy_client::FileSystem::connect(&m.addr).await.unwrap();
    assert!(write_works(&fs, "/first").await);
    // The token expires and nobody replaced it: the master refuses it.
    common::eventually(
        Duration::from_secs(20),
        "the expired token refused",
        || async { unauthenticated(&m) >= 1.0 },
    )
    .await;
    // Replaced: the next refusal has the worker read the file again.
    replace(6_000);
    let t2 = Instant::now();
    let mut n = 0;
    common::eventually(Duration::from_secs(20), "writes again", || {
        n += 1;
        let (fs, path) = (&fs, format!("/again-{n}"));
        async move { write_works(fs, &path).await }
    })
    .await;
    // Replaced again well before the new token's half life: the worker
    // reads it ahead of the expiry, and the master never refuses it.
    replace(3_600_000);
    let refused = unauthenticated(&m);
    // No signal says "expired": the token's life is wall-clock time.
    tokio::time::sleep(Duration::from_millis(6_500).saturating_sub(t2.elapsed())).await;
    assert!(write_works(&fs, "/after").await, "still registered");
    assert_eq!(unauthenticated(&m), refused, "re-read before it expired");
}
