use super::*;
use proptest::prelude::*;

#[test]
fn header_layout_is_pinned() {
    let h = Header {
        kind: Kind::Read,
        body_len: 0x0102_0304,
    };
    assert_eq!(
        h.encode(),
        [b'E', b'D', b'D', b'Y', 1, 1, 0, 0, 0x04, 0x03, 0x02, 0x01]
    );
    assert!(
        matches!(Header::decode(&h.encode()), Err(WireError::TooLarge { .. })),
        "a control body over 64 KiB is refused"
    );
    let small = Header {
        kind: Kind::Read,
        body_len: 60,
    };
    assert_eq!(Header::decode(&small.encode()).unwrap(), small);
}

#[test]
fn bad_headers_are_rejected() {
    let ok = Header {
        kind: Kind::Data,
        body_len: 10,
    }
    .encode();
    let mut b = ok;
    b[0] = b'X';
    assert!(matches!(Header::decode(&b), Err(WireError::BadMagic(_))));
    let mut b = ok;
    b[4] = 9;
    assert!(matches!(Header::decode(&b), Err(WireError::BadVersion(9))));
    let mut b = ok;
    b[5] = 200;
    assert!(matches!(
        Header::decode(&b),
        Err(WireError::UnknownKind(200))
    ));
    let big = Header {
        kind: Kind::Read,
        body_len: MAX_CONTROL_BODY + 1,
    }
    .encode();
    assert!(matches!(
        Header::decode(&big),
        Err(WireError::TooLarge { .. })
    ));
    let data = Header {
        kind: Kind::Data,
        body_len: MAX_DATA_BODY,
    }
    .encode();
    assert!(Header::decode(&data).is_ok(), "data frames may be large");
}

#[test]
fn read_request_layout_and_checks() {
    let r = ReadRequest {
        block_id: 7,
        offset: 8,
        length: 9,
        block_length: 100,
        file_offset: 64 << 20,
        read_type: ReadType::NoCache,
        source: Some(UfsSource {
            mount_id: 3,
            key: "a/b".into(),
        }),
        token: b"tok".to_vec(),
    };
    let b = r.encode();
    // The fields, the source (mount, key), then the token (u16 length).
    assert_eq!(b.len(), 5 * 8 + 1 + 8 + 2 + 3 + 2 + 3);
    assert_eq!(&b[0..8], &7u64.to_le_bytes());
    assert_eq!(&b[b.len() - 5..], b"\x03\x00tok");
    assert_eq!(ReadRequest::decode(Kind::Read, &b).unwrap(), r);
    // A token longer than any the master signs is malformed.
    let mut long = b[..b.len() - 5].to_vec();
    long.extend_from_slice(&(eddy_proto::auth::BLOCK_TOKEN_MAX as u16 + 1).to_le_bytes());
    long.extend(std::iter::repeat_n(
        0u8,
        eddy_proto::auth::BLOCK_TOKEN_MAX + 1,
    ));
    assert!(ReadRequest::decode(Kind::Read, &long).is_err());
    let out_of_block = ReadRequest {
        offset: 95,
        length: 10,
        ..r.clone()
    };
    assert!(r.check().is_ok());
    assert!(out_of_block.check().is_err());
    let overflow = ReadRequest {
        offset: u64::MAX,
        length: 2,
        ..r.clone()
    };
    assert!(overflow.check().is_err());
    let huge = ReadRequest {
        offset: 0,
        length: 0,
        block_length: u64::MAX,
        ..r.clone()
    };
    assert!(huge.check().is_err(), "a 2^64-1 block");
    let past_the_file = ReadRequest {
        file_offset: u64::MAX - 50,
        ..r.clone()
    };
    assert!(past_the_file.check().is_err());
    let mut trailing = b.clone();
    trailing.push(0);
    assert!(ReadRequest::decode(Kind::Read, &trailing).is_err());
}

#[test]
fn other_bodies_round_trip() {
    let o = WriteOpen {
        file_id: 5,
        block_size: 1 << 20,
        write_type: WriteType::CacheThrough,
        target: Some(UfsSource {
            mount_id: 1,
            key: "x".into(),
        }),
        token: Vec::new(),
    };
    assert_eq!(WriteOpen::decode(&o.encode()).unwrap(), o);
    let no_target = WriteOpen {
        target: None,
        ..o.clone()
    };
    assert!(WriteOpen::decode(&no_target.encode()).is_err());
    let w = WriteOk {
        length: 3,
        blocks: 1,
        fingerprint: "3:4".into(),
    };
    assert_eq!(WriteOk::decode(&w.encode()).unwrap(), w);
    let e = ErrorFrame::new(EddyCode::NotFound, "gone");
    assert_eq!(ErrorFrame::decode(&e.encode()).unwrap(), e);
    let s = vec![("ufs_reads".to_string(), 4)];
    assert_eq!(decode_stats(&encode_stats(&s)).unwrap(), s);
    let item = ReadRequest {
        block_id: 1,
        offset: 0,
        length: 10,
        block_length: 10,
        file_offset: 0,
        read_type: ReadType::Cache,
        source: None,
        token: Vec::new(),
    };
    let items = vec![item.clone(), item];
    assert_eq!(decode_lease(&encode_lease(&items)).unwrap(), items);
    assert!(decode_lease(&encode_lease(&[])).is_err(), "an empty batch");
    let g = vec![LeaseGrant {
        block_id: 1,
        lease_id: 2,
        length: 3,
        code: 0,
        message: String::new(),
    }];
    assert_eq!(
        decode_lease_ok(&encode_lease_ok(60_000, &g)).unwrap(),
        (60_000, g)
    );
    assert_eq!(
        decode_release(&encode_release(&[4, 5])).unwrap(),
        vec![4, 5]
    );
}

proptest! {
    /// Arbitrary bytes never panic a decoder.
    #[test]
    fn decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = ReadRequest::decode(Kind::Read, &b);
        let _ = WriteOpen::decode(&b);
        let _ = WriteOk::decode(&b);
        let _ = ErrorFrame::decode(&b);
        let _ = decode_stats(&b);
        let _ = decode_lease(&b);
        let _ = decode_lease_ok(&b);
        let _ = decode_release(&b);
        if b.len() >= HEADER_LEN {
            let _ = Header::decode(b[..HEADER_LEN].try_into().unwrap());
        }
    }
}

#[test]
fn hello_layout_and_limits() {
    let h = Hello {
        version: HELLO_VERSION,
        user: "alice".into(),
    };
    let b = h.encode();
    assert_eq!(b, b"\x01\x00\x05\x00alice");
    assert_eq!(Hello::decode(&b).unwrap(), h);
    let long = Hello {
        version: 1,
        user: "a".repeat(256),
    };
    assert!(Hello::decode(&long.encode()).is_err(), "a 256-byte user");
    for bad in [
        &b""[..],
        b"\x01",
        b"\x01\x00\x09\x00ab",
        b"\x01\x00\x00\x00x",
    ] {
        assert!(Hello::decode(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn a_worker_agrees_to_the_lower_version_and_refuses_zero() {
    // A worker whose newest is 3 speaks 1, 2 and 3: the lower of the two.
    for theirs in 1..=3 {
        assert_eq!(agree(theirs, 3).unwrap(), theirs);
    }
    for theirs in [4u16, u16::MAX] {
        assert_eq!(agree(theirs, 3).unwrap(), 3, "a newer client speaks ours");
    }
    let e = agree(0, 3).unwrap_err();
    assert_eq!(e.code, eddy_proto::EddyCode::Protocol);
    assert!(
        e.message.contains("version 0 ") && e.message.contains("1 to 3"),
        "both versions named: {}",
        e.message
    );
    assert_eq!(agree_version(HELLO_VERSION).unwrap(), HELLO_VERSION);
    assert_eq!(agree_version(HELLO_VERSION + 1).unwrap(), HELLO_VERSION);
}

#[test]
fn a_client_accepts_an_answer_up_to_what_it_offered() {
    for v in 1..=3u64 {
        assert_eq!(accept(v, 3).unwrap(), v as u16);
    }
    for bad in [0u64, 4, 1 << 16, u64::MAX] {
        let e = accept(bad, 3).unwrap_err();
        assert!(
            matches!(e, WireError::Malformed { kind: Kind::Ok, .. }),
            "{bad}: {e}"
        );
    }
    // Offering more than this build speaks is capped at what it speaks.
    assert!(accept_version(u64::from(HELLO_VERSION) + 1, u16::MAX).is_err());
    assert_eq!(accept_version(1, 1).unwrap(), 1);
}
