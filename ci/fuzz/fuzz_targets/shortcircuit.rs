//! The Unix-socket short-circuit messages (docs/SHORT-CIRCUIT.md), read the
//! way each side reads them: the worker's socket loop takes LEASE, RELEASE,
//! STATS and the write steps (WRITE_OPEN, SEGMENT_REQUEST, SEGMENT_COMMIT,
//! WRITE_CLOSE, WRITE_CANCEL) and refuses every other kind; the client takes
//! LEASE_OK (grants matched to the descriptors that came with it), SEGMENT_OK,
//! OK, WRITE_OK, STATS_OK or ERROR.
//!
//! On the worker's side the first frame must be the handshake (HELLO, whose
//! user the worker then compares with the peer's uid); anything else first
//! closes the connection.
//!
//! The first input byte picks the side, the second the descriptor count
//! that arrived with a client-side frame; the rest is the byte stream.
//! Properties: nothing panics, requests that pass their checks satisfy
//! the limits the worker relies on, and every decoded message re-encodes
//! to its bytes.
#![no_main]

use eddy_wire::{
    ErrorFrame, HEADER_LEN, Header, Hello, Kind, MAX_BLOCK_LENGTH, MAX_LEASE_BATCH, WriteOk,
    WriteOpen, decode_lease, decode_lease_ok, decode_release, decode_stats, decode_u64,
    decode_u64_pair, encode_lease, encode_lease_ok, encode_release,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [side, fds, stream @ ..] = data else {
        return;
    };
    let mut rest = stream;
    let mut greeted = side & 1 == 1;
    while rest.len() >= HEADER_LEN {
        let (head, tail) = rest.split_at(HEADER_LEN);
        let Ok(h) = Header::decode(head.try_into().expect("12 bytes")) else {
            return; // the connection closes
        };
        let n = (h.body_len as usize).min(tail.len());
        let (body, next) = tail.split_at(n);
        let ok = if !greeted {
            greeted = true;
            worker_greeted(h.kind, body)
        } else if side & 1 == 0 {
            worker_reads(h.kind, body)
        } else {
            client_reads(h.kind, body, usize::from(*fds))
        };
        if !ok {
            return; // a protocol error closes the connection
        }
        rest = next;
    }
});

/// The handshake: a HELLO that decodes (user at most 255 bytes), or the
/// connection closes.
fn worker_greeted(kind: Kind, body: &[u8]) -> bool {
    if kind != Kind::Hello {
        return false;
    }
    match Hello::decode(body) {
        Ok(h) => {
            assert!(h.user.len() <= eddy_proto::auth::NAME_MAX);
            assert_eq!(h.encode(), body);
            true
        }
        Err(_) => false,
    }
}

/// What the worker's socket loop decodes; false where it would close.
fn worker_reads(kind: Kind, body: &[u8]) -> bool {
    match kind {
        Kind::Lease => match decode_lease(body) {
            Ok(items) => {
                assert!((1..=MAX_LEASE_BATCH).contains(&items.len()));
                // Each item is checked before use; one that fails is refused
                // in its grant, and one that passes is safe to use.
                // Tokens are never longer than any the master signs.
                assert!(
                    items
                        .iter()
                        .all(|it| it.token.len() <= eddy_proto::auth::BLOCK_TOKEN_MAX)
                );
                for it in items.iter().filter(|it| it.check().is_ok()) {
                    let end = it.offset.checked_add(it.length).expect("range checked");
                    assert!(end <= it.block_length && it.block_length <= MAX_BLOCK_LENGTH);
                    assert!(it.file_offset.checked_add(it.block_length).is_some());
                }
                assert_eq!(decode_lease(&encode_lease(&items)).unwrap(), items);
                true
            }
            Err(_) => false,
        },
        Kind::Release => match decode_release(body) {
            Ok(ids) => {
                assert_eq!(encode_release(&ids), body);
                true
            }
            Err(_) => false,
        },
        Kind::Stats | Kind::WriteCancel => true,
        Kind::WriteOpen => match WriteOpen::decode(body) {
            Ok(o) => {
                assert!(o.block_size > 0);
                if o.check().is_ok() {
                    assert!(o.block_size <= MAX_BLOCK_LENGTH);
                }
                assert_eq!(WriteOpen::decode(&o.encode()).unwrap(), o);
                true
            }
            Err(_) => false,
        },
        Kind::SegmentRequest | Kind::WriteClose => decode_u64(kind, body).is_ok(),
        Kind::SegmentCommit => decode_u64_pair(kind, body).is_ok(),
        // "expected LEASE, RELEASE, STATS or a write step"
        _ => false,
    }
}

/// What the client decodes from an answer that came with `fds` descriptors.
fn client_reads(kind: Kind, body: &[u8], fds: usize) -> bool {
    match kind {
        Kind::LeaseOk => match decode_lease_ok(body) {
            Ok((ttl, grants)) => {
                assert_eq!(encode_lease_ok(ttl, &grants), body);
                // Each granted lease takes the next descriptor; the client
                // refuses an answer with fewer descriptors than grants.
                let granted = grants.iter().filter(|g| g.code == 0).count();
                for g in grants.iter().filter(|g| g.code != 0) {
                    let code = eddy_proto::EddyCode::try_from(i32::from(g.code))
                        .unwrap_or(eddy_proto::EddyCode::Internal);
                    let _ = code.name();
                }
                granted <= fds
            }
            Err(_) => false,
        },
        Kind::SegmentOk => decode_u64_pair(kind, body).is_ok() && fds == 1,
        Kind::Ok => decode_u64(kind, body).is_ok(),
        Kind::WriteOk => match WriteOk::decode(body) {
            Ok(o) => {
                assert_eq!(o.encode(), body);
                true
            }
            Err(_) => false,
        },
        Kind::StatsOk => decode_stats(body).is_ok(),
        Kind::Error => match ErrorFrame::decode(body) {
            Ok(e) => {
                assert_eq!(ErrorFrame::decode(&e.encode()).unwrap(), e);
                true
            }
            Err(_) => false,
        },
        _ => false,
    }
}
