//! Tokens and the key file: a credential as it arrives in an
//! `authorization` header, a block token as it arrives on a data
//! connection, and the text of a key file (`eddy_proto::auth`).
//!
//! Properties: nothing panics; nothing unsigned verifies; a credential or
//! block token that verifies re-signs to the same bytes (the layout has one
//! encoding); a key file that parses prints back to an equal keyring.
#![no_main]

use eddy_proto::auth::{BlockGrant, Credential, Keyring};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A fixed key: the fuzzer cannot find its MAC, so nothing verifies.
    let keys = Keyring::from_secrets(&[(1, [7u8; 32])]).unwrap();
    assert!(BlockGrant::verify(&keys, data, 0).is_err());
    if let Ok(text) = std::str::from_utf8(data) {
        assert!(Credential::verify(&keys, text, 0).is_err());
        if let Ok(c) = Credential::parse_unverified(text) {
            assert!(!c.name.is_empty() && c.name.len() <= 255);
        }
        if let Ok(k) = Keyring::parse(text) {
            let back = Keyring::parse(&k.to_file_text()).expect("printed keys parse");
            assert_eq!(back.secrets(), k.secrets());
        }
    }
    // Signed tokens round-trip whatever user name the input gives.
    if let Ok(user) = std::str::from_utf8(data) {
        let g = BlockGrant {
            file_id: data.len() as u64,
            ops: eddy_proto::auth::BlockOps::READ,
            user: user.to_string(),
            expires_ms: u64::MAX,
        };
        if let Ok(t) = g.sign(&keys) {
            assert_eq!(BlockGrant::verify(&keys, &t, 0).unwrap(), g);
        }
        let principal = eddy_proto::auth::Principal::User;
        if let Ok(t) = Credential::sign(&keys, principal, user, 0, 1000) {
            assert_eq!(Credential::verify(&keys, &t, 1).unwrap().name, user);
        }
    }
});
