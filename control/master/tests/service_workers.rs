//! The master's worker side, in process: registration, heartbeats, block
//! placement and commits, lost workers, and what the heartbeat reads from
//! the namespace (pinned files).

mod common;

use common::*;
use eddy_master::service::MasterState;
use eddy_proto::{EddyCode, pb};

fn address(port: u32) -> pb::WorkerAddress {
    pb::WorkerAddress {
        host: "127.0.0.1".into(),
        rpc_port: 0,
        data_port: port,
        domain_socket: String::new(),
        ..Default::default()
    }
}

fn mem_tier(capacity: u64, used: u64) -> pb::TierUsage {
    pb::TierUsage {
        tier: "MEM".into(),
        capacity_bytes: capacity,
        used_bytes: used,
        ..Default::default()
    }
}

fn register(port: u32, capacity: u64) -> pb::RegisterWorkerRequest {
    pb::RegisterWorkerRequest {
        address: Some(address(port)),
        tiers: vec![mem_tier(capacity, 0)],
        blocks: Vec::new(),
        io_engine: "pread".into(),
    }
}

fn heartbeat(worker_id: u64) -> pb::HeartbeatRequest {
    pb::HeartbeatRequest {
        worker_id,
        ..Default::default()
    }
}

fn select(block_id: u64) -> pb::SelectWorkerRequest {
    pb::SelectWorkerRequest {
        block_id,
        client_host: "127.0.0.1".into(),
        bytes_needed: 1 << 20,
        ..Default::default()
    }
}

fn locations(b: &pb::GetFileBlocksResponse) -> Vec<Vec<u64>> {
    b.blocks
        .iter()
        .map(|fb| fb.locations.iter().map(|l| l.worker_id).collect())
        .collect()
}

async fn blocks_of(m: &TestMaster, path: &str) -> pb::GetFileBlocksResponse {
    m.state()
        .get_file_blocks(pb::GetFileBlocksRequest { path: path.into() })
        .await
        .unwrap()
}

#[tokio::test]
async fn registration_is_checked_and_answers_the_intervals() {
    let m = TestMaster::start_with(|c| {
        c.worker_heartbeat_interval_ms = 250;
        c.worker_lost_after_ms = 4_000;
    })
    .await;
    let s = m.state();
    let r = s.register_worker(register(7001, 1 << 30)).unwrap();
    assert!(r.worker_id > 0);
    assert_eq!(r.heartbeat_interval_ms, 250);
    assert_eq!(r.lost_after_ms, 4_000);
    // The same address registering again is the same worker.
    let again = s.register_worker(register(7001, 1 << 30)).unwrap();
    assert_eq!(again.worker_id, r.worker_id);
    let other = s.register_worker(register(7002, 1 << 30)).unwrap();
    assert_ne!(other.worker_id, r.worker_id);

    let no_address = pb::RegisterWorkerRequest {
        address: None,
        ..register(1, 1)
    };
    assert_eq!(
        code(s.register_worker(no_address)),
        EddyCode::InvalidArgument
    );
    assert_eq!(
        code(s.register_worker(register(0, 1 << 30))),
        EddyCode::InvalidArgument,
        "data port 0"
    );
    assert_eq!(code(s.heartbeat(heartbeat(999))), EddyCode::UnknownWorker);

    let info = s.cluster_info();
    assert_eq!(info.workers.len(), 2);
    assert!(
        info.workers
            .iter()
            .all(|w| w.live && w.io_engine == "pread")
    );
    let mem: u64 = info.tiers.iter().map(|t| t.capacity_bytes).sum();
    assert_eq!(mem, 2 << 30, "live capacity summed per tier");
}

#[tokio::test]
async fn placement_and_block_commits_record_where_blocks_are() {
    let m = TestMaster::start().await;
    let s = m.state();
    assert_eq!(
        code(s.select_worker(select(1))),
        EddyCode::NoWorkerAvailable,
        "no workers yet"
    );
    let full = s.register_worker(register(7001, 0)).unwrap().worker_id;
    assert_eq!(
        code(s.select_worker(select(1))),
        EddyCode::NoWorkerAvailable,
        "a worker without room takes nothing"
    );
    let w = s
        .register_worker(register(7002, 1 << 30))
        .unwrap()
        .worker_id;

    let (st, _) = s.create_file(create("/f")).await.unwrap();
    let b0 = eddy_proto::block_id(st.id, 0);
    let b1 = eddy_proto::block_id(st.id, 1);
    let chosen = s.select_worker(select(b0)).unwrap();
    assert_eq!(chosen.worker_id, w, "the worker with room");
    assert_eq!(chosen.address.unwrap().data_port, 7002);
    assert_eq!(
        code(s.select_worker(pb::SelectWorkerRequest {
            exclude_workers: vec![w],
            ..select(b0)
        })),
        EddyCode::NoWorkerAvailable,
        "the only candidate excluded"
    );

    let commit = |block_id, length| pb::CommitBlockRequest {
        worker_id: w,
        block_id,
        length,
        tier: "MEM".into(),
        written: true,
    };
    s.commit_block(commit(b0, 1 << 20)).unwrap();
    s.commit_block(commit(b1, 100)).unwrap();
    assert_eq!(
        code(s.commit_block(commit(b1, (1 << 20) + 1))),
        EddyCode::InvalidArgument,
        "longer than the file's block size"
    );
    assert_eq!(
        code(s.commit_block(commit(eddy_proto::block_id(st.id + 100, 0), 1))),
        EddyCode::NotFound,
        "a block of no file"
    );
    assert_eq!(
        code(s.commit_block(pb::CommitBlockRequest {
            worker_id: full + 100,
            ..commit(b0, 1 << 20)
        })),
        EddyCode::UnknownWorker
    );
    s.complete_file(complete("/f", st.id, (1 << 20) + 100))
        .await
        .unwrap();
    assert_eq!(
        code(s.commit_block(commit(b0, 1 << 20))),
        EddyCode::FileAlreadyComplete,
        "blocks of a complete file are not written again"
    );

    let b = blocks_of(&m, "/f").await;
    assert_eq!(locations(&b), [vec![w], vec![w]]);
    assert_eq!(b.blocks[1].offset, 1 << 20);
    assert_eq!(b.blocks[1].length, 100);
    assert_eq!(b.blocks[0].locations[0].tier, "MEM");
    assert_eq!(b.status.unwrap().percent_cached, 100);
}

/// A complete file at `path` of a full block and 100 bytes, both cached on
/// worker `w`; returns the two block ids.
async fn cached_file(s: &MasterState, w: u64, path: &str) -> (u64, u64) {
    let (st, _) = s.create_file(create(path)).await.unwrap();
    let ids = (
        eddy_proto::block_id(st.id, 0),
        eddy_proto::block_id(st.id, 1),
    );
    for (block_id, length) in [(ids.0, 1 << 20), (ids.1, 100)] {
        s.commit_block(pb::CommitBlockRequest {
            worker_id: w,
            block_id,
            length,
            tier: "MEM".into(),
            written: true,
        })
        .unwrap();
    }
    s.complete_file(complete(path, st.id, (1 << 20) + 100))
        .await
        .unwrap();
    ids
}

#[tokio::test]
async fn heartbeats_move_block_locations_and_carry_removals_back() {
    let m = TestMaster::start().await;
    let s = m.state();
    let w = s
        .register_worker(register(7002, 1 << 30))
        .unwrap()
        .worker_id;
    let (b0, b1) = cached_file(s, w, "/f").await;
    assert_eq!(locations(&blocks_of(&m, "/f").await), [vec![w], vec![w]]);

    // The worker evicted block 1 and reports it.
    s.heartbeat(pb::HeartbeatRequest {
        removed_blocks: vec![b1],
        ..heartbeat(w)
    })
    .unwrap();
    assert_eq!(locations(&blocks_of(&m, "/f").await), [vec![w], vec![]]);
    // It cached it again (a read filled it), at the complete file's length.
    s.heartbeat(pb::HeartbeatRequest {
        added_blocks: vec![pb::BlockReport {
            block_id: b1,
            length: 100,
            tier: "SSD".into(),
        }],
        ..heartbeat(w)
    })
    .unwrap();
    let b = blocks_of(&m, "/f").await;
    assert_eq!(locations(&b), [vec![w], vec![w]]);
    assert_eq!(b.blocks[1].locations[0].tier, "SSD");
    assert_eq!(s.cluster_info().block_count, 2);

    // Deleting the file asks the worker to drop its copies.
    s.delete(delete("/f", false)).await.unwrap();
    let r = s.heartbeat(heartbeat(w)).unwrap();
    let mut removed: Vec<u64> = r
        .commands
        .iter()
        .filter_map(|c| match &c.command {
            Some(pb::worker_command::Command::RemoveBlocks(rb)) => Some(rb.block_ids.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    removed.sort();
    assert_eq!(removed, [b0, b1]);
}

#[tokio::test]
async fn a_block_report_that_does_not_match_its_file_is_refused() {
    let m = TestMaster::start().await;
    let s = m.state();
    let f = make_file(s, "/f", 10).await;
    let good = pb::BlockReport {
        block_id: f.block_ids[0],
        length: 10,
        tier: "MEM".into(),
    };
    let wrong_length = pb::BlockReport {
        length: 11,
        ..good.clone()
    };
    let w = s
        .register_worker(pb::RegisterWorkerRequest {
            blocks: vec![wrong_length],
            ..register(7001, 1 << 30)
        })
        .unwrap()
        .worker_id;
    assert_eq!(locations(&blocks_of(&m, "/f").await), [Vec::<u64>::new()]);
    s.heartbeat(pb::HeartbeatRequest {
        added_blocks: vec![good],
        ..heartbeat(w)
    })
    .unwrap();
    assert_eq!(locations(&blocks_of(&m, "/f").await), [vec![w]]);
}

#[tokio::test]
async fn a_silent_worker_is_declared_lost_and_its_blocks_with_it() {
    let m = TestMaster::start_with(|c| c.worker_lost_after_ms = 200).await;
    let s = m.state();
    let w = s
        .register_worker(register(7001, 1 << 30))
        .unwrap()
        .worker_id;
    let (st, _) = s.create_file(create("/f")).await.unwrap();
    s.commit_block(pb::CommitBlockRequest {
        worker_id: w,
        block_id: eddy_proto::block_id(st.id, 0),
        length: 10,
        tier: "MEM".into(),
        written: true,
    })
    .unwrap();
    s.complete_file(complete("/f", st.id, 10)).await.unwrap();
    assert!(!s.get_status(stat("/f")).await.unwrap().lost);

    // No heartbeat: the master's checker (every lost_after / 4) expires it.
    wait_for("the worker to be lost", || {
        s.cluster_info().workers.iter().all(|x| !x.live)
    })
    .await;
    assert_eq!(code(s.heartbeat(heartbeat(w))), EddyCode::UnknownWorker);
    let st = s.get_status(stat("/f")).await.unwrap();
    assert!(
        st.lost,
        "its only copy was on the lost worker, never persisted"
    );
    assert_eq!(st.percent_cached, 0);
    assert_eq!(
        code(s.select_worker(select(1))),
        EddyCode::NoWorkerAvailable
    );
    // Registering again brings it back (as a worker with no blocks).
    let back = s.register_worker(register(7001, 1 << 30)).unwrap();
    assert_eq!(back.worker_id, w);
    assert!(s.heartbeat(heartbeat(w)).is_ok());
}

#[tokio::test]
async fn the_heartbeat_hands_out_pinned_files_when_they_change() {
    let m = TestMaster::start().await;
    let s = m.state();
    let w = s
        .register_worker(register(7001, 1 << 30))
        .unwrap()
        .worker_id;
    let f = make_file(s, "/pinned", 10).await;
    let first = s.heartbeat(heartbeat(w)).unwrap();
    let v0 = first
        .pinned
        .expect("the worker knows no version yet")
        .version;
    s.set_attribute(pb::SetAttributeRequest {
        path: "/pinned".into(),
        pinned: Some(true),
        ..Default::default()
    })
    .await
    .unwrap();
    let r = s
        .heartbeat(pb::HeartbeatRequest {
            pinned_version: v0,
            ..heartbeat(w)
        })
        .unwrap();
    let pinned = r.pinned.expect("the pin set changed");
    assert_ne!(pinned.version, v0);
    assert_eq!(pinned.file_ids, [f.id]);
    let r = s
        .heartbeat(pb::HeartbeatRequest {
            pinned_version: pinned.version,
            ..heartbeat(w)
        })
        .unwrap();
    assert!(r.pinned.is_none(), "up to date: nothing sent");
}

/// A heartbeat that asks to wait (a long poll) is held while there is
/// nothing for its worker, answered at the end of its wait, and answered at
/// once with the commands when some are queued meanwhile.
#[tokio::test]
async fn a_held_heartbeat_is_answered_when_a_command_is_queued() {
    let m = TestMaster::start().await;
    let s = m.state().clone();
    let w = s
        .register_worker(register(7003, 1 << 30))
        .unwrap()
        .worker_id;
    let (b0, b1) = cached_file(&s, w, "/f").await;
    let version = s.heartbeat(heartbeat(w)).unwrap().pinned.map(|p| p.version);
    let waiting = move |wait_ms| pb::HeartbeatRequest {
        wait_ms,
        pinned_version: version.unwrap_or(0),
        ..heartbeat(w)
    };
    let r = s.heartbeat_wait(waiting(30)).await.unwrap();
    assert!(r.long_poll && r.commands.is_empty(), "{r:?}");

    // Held for up to a minute; the current-thread runtime runs it up to
    // its wait before the delete below queues the removals.
    let held = tokio::spawn({
        let s = s.clone();
        async move { s.heartbeat_wait(waiting(60_000)).await }
    });
    tokio::task::yield_now().await;
    assert!(!held.is_finished(), "nothing to say yet: held");
    s.delete(delete("/f", false)).await.unwrap();
    let r = tokio::time::timeout(std::time::Duration::from_secs(10), held)
        .await
        .expect("answered when the removals were queued, not after a minute")
        .unwrap()
        .unwrap();
    let mut removed: Vec<u64> = r
        .commands
        .iter()
        .filter_map(|c| match &c.command {
            Some(pb::worker_command::Command::RemoveBlocks(rb)) => Some(rb.block_ids.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    removed.sort();
    assert_eq!(removed, [b0, b1]);
    // A heartbeat without a wait is answered at once, as before.
    assert!(!s.heartbeat_wait(waiting(0)).await.unwrap().long_poll);
}
