use super::*;

fn addr(host: &str, port: u32) -> pb::WorkerAddress {
    pb::WorkerAddress {
        host: host.into(),
        rpc_port: 0,
        data_port: port,
        domain_socket: String::new(),
        ..Default::default()
    }
}

fn rep(b: u64) -> pb::BlockReport {
    pb::BlockReport {
        block_id: b,
        length: 10,
        tier: "MEM".into(),
    }
}

#[test]
fn room_counts_evictable_bytes_and_only_healthy_directories() {
    let dir = |cap, used, error: &str| pb::TierDir {
        capacity_bytes: cap,
        used_bytes: used,
        error: error.into(),
        ..Default::default()
    };
    let tiers = vec![
        // Memory full, three quarters of it evictable.
        pb::TierUsage {
            tier: "MEM".into(),
            capacity_bytes: 400,
            used_bytes: 400,
            evictable_bytes: 300,
            ..Default::default()
        },
        // A full directory taken out, and a healthy one with 60 free.
        pb::TierUsage {
            tier: "SSD".into(),
            capacity_bytes: 100,
            used_bytes: 140,
            evictable_bytes: 10,
            dirs: vec![dir(100, 100, "full"), dir(100, 40, "")],
            ..Default::default()
        },
    ];
    let mut r = Registry::default();
    let id = r
        .register(addr("a", 1), tiers, &[], |_, _| true, 0, 0)
        .unwrap();
    let w = r.worker(id).unwrap();
    assert_eq!(
        w.free_bytes(),
        60,
        "the bad directory's blocks hide nothing"
    );
    assert_eq!(w.room_bytes(), 60 + 300 + 10);
    assert_eq!(r.candidates()[0].free_bytes, 370, "placement sees the room");
}

#[test]
fn persists_are_asked_once_and_retried_with_backoff() {
    assert_eq!(
        [1, 2, 3, 7, 20].map(persist_backoff_ms),
        [1000, 2000, 4000, 60_000, 60_000]
    );
    let mut r = Registry::default();
    let all = |_: u64, _: u64| true;
    let a = r
        .register(addr("a", 1), vec![], &[rep(100), rep(101)], all, 0, 0)
        .unwrap();
    let b = r
        .register(addr("b", 1), vec![], &[rep(100)], all, 0, 0)
        .unwrap();
    assert_eq!(r.holder_of_all(&[100, 101]), Some(a));
    assert_eq!(r.holder_of_all(&[102]), None);
    assert!(r.persist_due(7, 0));
    let cmd = pb::PersistFile {
        file_id: 7,
        ..Default::default()
    };
    r.ask_persist(a, cmd, 0);
    assert!(!r.persist_due(7, 10), "in flight");
    assert!(
        r.persist_due(7, PERSIST_TIMEOUT_MS),
        "asked again after the timeout"
    );
    let hb = |r: &mut Registry, id| {
        r.heartbeat(
            &pb::HeartbeatRequest {
                worker_id: id,
                ..Default::default()
            },
            all,
            1,
        )
        .unwrap()
    };
    let cmds = hb(&mut r, a);
    assert!(matches!(
        cmds.as_slice(),
        [pb::WorkerCommand {
            command: Some(pb::worker_command::Command::PersistFile(p))
        }] if p.file_id == 7
    ));
    assert!(hb(&mut r, a).is_empty(), "asked once");
    assert!(hb(&mut r, b).is_empty());
    assert_eq!(r.persist_failed(7, 100), 1);
    assert!(!r.persist_due(7, 500), "backing off");
    assert!(r.persist_due(7, 1100));
    r.persist_finished(7);
    assert!(r.persist_due(7, 0));
    // A worker that registers again is asked again at once.
    let cmd = pb::PersistFile {
        file_id: 8,
        ..Default::default()
    };
    r.ask_persist(a, cmd, 0);
    assert!(!r.persist_due(8, 10));
    r.register(addr("a", 1), vec![], &[rep(100)], all, 10, 10)
        .unwrap();
    assert!(r.persist_due(8, 10));
}

#[test]
fn a_stale_persist_failure_does_not_cancel_the_attempt_in_flight() {
    let mut r = Registry::default();
    let all = |_: u64, _: u64| true;
    let a = r
        .register(addr("a", 1), vec![], &[rep(100)], all, 0, 0)
        .unwrap();
    let b = r
        .register(addr("b", 1), vec![], &[rep(100)], all, 0, 0)
        .unwrap();
    let cmd = |file_id| pb::PersistFile {
        file_id,
        ..Default::default()
    };
    // Asked of a, which timed out; asked again of b.
    r.ask_persist(a, cmd(7), 0);
    r.ask_persist(b, cmd(7), PERSIST_TIMEOUT_MS);
    assert_eq!(r.persist_failed_by(7, a, PERSIST_TIMEOUT_MS + 5), None);
    assert!(
        !r.persist_due(7, PERSIST_TIMEOUT_MS + 5_000),
        "b's attempt is still in flight"
    );
    // b's own failure backs off as before (its second attempt: 2 s).
    assert_eq!(r.persist_failed_by(7, b, PERSIST_TIMEOUT_MS + 10), Some(2));
    assert!(!r.persist_due(7, PERSIST_TIMEOUT_MS + 1_000));
    assert!(r.persist_due(7, PERSIST_TIMEOUT_MS + 2_010));
    // A report for a file the registry does not know (the master
    // restarted since asking) still backs off.
    assert_eq!(r.persist_failed_by(9, a, 0), Some(0));
    assert!(!r.persist_due(9, 500));
}

#[test]
fn a_persist_being_placed_stays_in_flight_past_the_asked_deadline() {
    let mut r = Registry::default();
    let all = |_: u64, _: u64| true;
    let a = r
        .register(addr("a", 1), vec![], &[rep(100)], all, 0, 0)
        .unwrap();
    let b = r
        .register(addr("b", 1), vec![], &[rep(100)], all, 0, 0)
        .unwrap();
    let cmd = pb::PersistFile {
        file_id: 7,
        ..Default::default()
    };
    r.ask_persist(a, cmd, 0);
    // The worker reports just before the deadline; placing is slow.
    r.persist_placing(7, a, PERSIST_TIMEOUT_MS - 1);
    assert!(!r.persist_due(7, PERSIST_TIMEOUT_MS));
    assert!(!r.persist_due(7, 2 * PERSIST_TIMEOUT_MS - 2));
    assert!(r.persist_due(7, 2 * PERSIST_TIMEOUT_MS - 1), "bounded");
    // A stale report being placed extends the deadline but a's attempt
    // stays the current one: a's failure still counts.
    r.persist_placing(7, b, PERSIST_TIMEOUT_MS);
    assert_eq!(r.persist_failed_by(7, b, PERSIST_TIMEOUT_MS + 1), None);
    assert_eq!(r.persist_failed_by(7, a, PERSIST_TIMEOUT_MS + 1), Some(1));
    // A report the registry did not ask for (the master restarted) is
    // protected too.
    r.persist_placing(8, b, 0);
    assert!(!r.persist_due(8, 10));
    r.persist_finished(8);
    assert!(r.persist_due(8, 10));
}

#[test]
fn register_heartbeat_lose_and_return() {
    let mut r = Registry::default();
    let all = |_: u64, _: u64| true;
    let id = r
        .register(addr("h", 1), vec![], &[rep(100), rep(101)], all, 0, 0)
        .unwrap();
    assert_eq!(r.block(100).unwrap().workers, vec![id]);
    let hb = pb::HeartbeatRequest {
        worker_id: id,
        removed_blocks: vec![100],
        added_blocks: vec![rep(102)],
        ..Default::default()
    };
    assert!(r.heartbeat(&hb, all, 500).unwrap().is_empty());
    assert!(r.block(100).is_none());
    assert!(r.block(102).is_some());
    assert_eq!(
        r.expire(1_000, 1_000),
        Vec::<u64>::new(),
        "heard from 500 ms ago"
    );
    assert_eq!(r.expire(2_000, 1_000), vec![id]);
    assert!(
        r.block(101).is_none(),
        "a lost worker's locations are dropped"
    );
    assert!(matches!(
        r.heartbeat(&hb, all, 2_001),
        Err(MasterError::UnknownWorker(_))
    ));
    assert!(matches!(
        r.heartbeat(
            &pb::HeartbeatRequest {
                worker_id: 999,
                ..Default::default()
            },
            all,
            0
        ),
        Err(MasterError::UnknownWorker(999))
    ));
    let again = r
        .register(addr("h", 1), vec![], &[rep(101)], all, 2_002, 0)
        .unwrap();
    assert_eq!(again, id, "same address, same id");
    assert_eq!(r.block(101).unwrap().workers, vec![id]);
}

#[test]
fn stale_blocks_become_remove_commands() {
    let mut r = Registry::default();
    let id = r
        .register(addr("h", 1), vec![], &[rep(1), rep(2)], |b, _| b != 2, 0, 0)
        .unwrap();
    r.commit_block(id, 3, 10, "MEM").unwrap();
    r.drop_blocks([3]);
    let cmds = r
        .heartbeat(
            &pb::HeartbeatRequest {
                worker_id: id,
                ..Default::default()
            },
            |_, _| true,
            1,
        )
        .unwrap();
    let Some(pb::worker_command::Command::RemoveBlocks(rb)) = &cmds[0].command else {
        panic!()
    };
    let mut ids = rb.block_ids.clone();
    ids.sort();
    assert_eq!(ids, vec![2, 3]);
    assert!(
        r.heartbeat(
            &pb::HeartbeatRequest {
                worker_id: id,
                ..Default::default()
            },
            |_, _| true,
            2
        )
        .unwrap()
        .is_empty(),
        "commands are sent once"
    );
}

#[test]
fn a_recommitted_block_is_no_longer_removed() {
    let mut r = Registry::default();
    let id = r
        .register(addr("h", 1), vec![], &[], |_, _| true, 0, 0)
        .unwrap();
    r.commit_block(id, 7, 10, "MEM").unwrap();
    assert_eq!(r.drop_blocks([7]), 1, "freed");
    r.commit_block(id, 7, 10, "MEM").unwrap(); // loaded again before the heartbeat
    let hb = pb::HeartbeatRequest {
        worker_id: id,
        ..Default::default()
    };
    assert!(r.heartbeat(&hb, |_, _| true, 1).unwrap().is_empty());
    assert_eq!(r.block(7).unwrap().workers, vec![id]);
}

#[test]
fn bad_registration_is_refused() {
    let mut r = Registry::default();
    assert!(
        r.register(addr("", 1), vec![], &[], |_, _| true, 0, 0)
            .is_err()
    );
    assert!(
        r.register(addr("h", 70_000), vec![], &[], |_, _| true, 0, 0)
            .is_err()
    );
}
