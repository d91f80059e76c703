//! Data-protocol frames as a worker's TCP port and a client read them: a
//! stream of frames (header, then a body of the header's length), each body
//! decoded by the decoder of its kind.
//!
//! Properties: nothing panics; every decoded header and body encodes back to
//! something that decodes to the same value.
#![no_main]

use eddy_wire::{
    ErrorFrame, HEADER_LEN, Header, Hello, Kind, ReadRequest, RemoteLease, RemoteLeaseOk, WriteOk,
    WriteOpen, decode_lease, decode_lease_ok, decode_release, decode_stats, decode_u64,
    decode_u64_pair, encode_lease, encode_lease_ok, encode_release, encode_stats,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    // Bounded: at most one frame per 12 input bytes.
    while rest.len() >= HEADER_LEN {
        let (head, tail) = rest.split_at(HEADER_LEN);
        let head: &[u8; HEADER_LEN] = head.try_into().expect("12 bytes");
        let Ok(h) = Header::decode(head) else {
            // A bad header closes the connection; try the same bytes as a
            // body of every kind instead, so bodies get fuzzed even when
            // the fuzzer has not found a valid header.
            decode_body_of_every_kind(tail);
            return;
        };
        assert_eq!(Header::decode(&h.encode()).unwrap(), h);
        let n = (h.body_len as usize).min(tail.len());
        let (body, next) = tail.split_at(n);
        decode_body(h.kind, body);
        rest = next;
    }
});

fn decode_body_of_every_kind(body: &[u8]) {
    for k in 0..=u8::MAX {
        if let Some(kind) = Kind::from_u8(k) {
            decode_body(kind, body);
        }
    }
}

/// Decodes `body` as the worker (requests) or the client (answers) would,
/// and checks the round trip of whatever decodes.
fn decode_body(kind: Kind, body: &[u8]) {
    match kind {
        Kind::Read | Kind::Load => {
            if let Ok(r) = ReadRequest::decode(kind, body) {
                assert!(r.token.len() <= eddy_proto::auth::BLOCK_TOKEN_MAX);
                // What the worker checks before using the numbers.
                if r.check().is_ok() {
                    let end = r.offset.checked_add(r.length).expect("range checked");
                    assert!(end <= r.block_length);
                    assert!(r.file_offset.checked_add(r.block_length).is_some());
                }
                // Not byte-exact: a key without a mount (id 0) is dropped.
                assert_eq!(ReadRequest::decode(kind, &r.encode()).unwrap(), r);
            }
        }
        Kind::Hello => {
            if let Ok(h) = Hello::decode(body) {
                assert!(h.user.len() <= eddy_proto::auth::NAME_MAX);
                assert_eq!(h.encode(), body);
            }
        }
        Kind::WriteOpen => {
            if let Ok(o) = WriteOpen::decode(body) {
                assert!(o.token.len() <= eddy_proto::auth::BLOCK_TOKEN_MAX);
                let _ = o.check();
                assert_eq!(WriteOpen::decode(&o.encode()).unwrap(), o);
            }
        }
        Kind::WriteOk => {
            if let Ok(o) = WriteOk::decode(body) {
                assert_eq!(o.encode(), body);
            }
        }
        Kind::Error => {
            if let Ok(e) = ErrorFrame::decode(body) {
                // Unknown codes become INTERNAL, so compare decoded values.
                assert_eq!(ErrorFrame::decode(&e.encode()).unwrap(), e);
                let _ = e.to_string();
            }
        }
        Kind::Lease => {
            if let Ok(items) = decode_lease(body) {
                assert_eq!(decode_lease(&encode_lease(&items)).unwrap(), items);
            }
        }
        Kind::LeaseOk => {
            if let Ok((ttl, grants)) = decode_lease_ok(body) {
                assert_eq!(encode_lease_ok(ttl, &grants), body);
            }
        }
        Kind::RemoteLease => {
            if let Ok(r) = RemoteLease::decode(body) {
                for it in &r.items {
                    assert!(it.token.len() <= eddy_proto::auth::BLOCK_TOKEN_MAX);
                }
                assert_eq!(RemoteLease::decode(&r.encode()).unwrap(), r);
            }
        }
        Kind::RemoteLeaseOk => {
            if let Ok(o) = RemoteLeaseOk::decode(body) {
                assert_eq!(RemoteLeaseOk::decode(&o.encode()).unwrap(), o);
            }
        }
        Kind::Release => {
            if let Ok(ids) = decode_release(body) {
                assert_eq!(encode_release(&ids), body);
            }
        }
        Kind::StatsOk => {
            if let Ok(s) = decode_stats(body) {
                assert_eq!(encode_stats(&s), body);
            }
        }
        Kind::SegmentCommit | Kind::SegmentOk => {
            if let Ok((a, b)) = decode_u64_pair(kind, body) {
                assert_eq!(eddy_wire::u64_pair(a, b), body);
            }
        }
        Kind::ReadOk | Kind::Ok | Kind::WriteClose | Kind::SegmentRequest => {
            if let Ok(v) = decode_u64(kind, body) {
                assert_eq!(eddy_wire::u64_body(v), body);
            }
        }
        // Raw bytes and empty bodies: nothing to decode.
        Kind::Data | Kind::Stats | Kind::WriteCancel => {}
    }
}
