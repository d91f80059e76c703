use std::io::{Read, Write};

use rustls::{ClientConnection, ServerConnection};

use super::*;

fn sec(certs: &LocalCerts) -> SecurityConfig {
    SecurityConfig {
        tls_cert: certs.cert.clone(),
        tls_key: certs.key.clone(),
        tls_ca: certs.ca.clone(),
        ..Default::default()
    }
}

/// Runs a handshake between `client` and `server` in memory (and sends
/// one byte each way, so TLS 1.3 client-certificate checks happen);
/// returns the first error either side hit.
fn handshake(client: &ClientTls, server: &ServerTls, alpn_data: bool) -> Result<(), rustls::Error> {
    let cfg = if alpn_data {
        client.data()
    } else {
        client.grpc()
    };
    let mut c = ClientConnection::new(cfg, server_name("127.0.0.1:1").unwrap()).unwrap();
    let mut s = ServerConnection::new(server.config()).unwrap();
    c.writer().write_all(b"x").unwrap();
    for _ in 0..20 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            s.read_tls(&mut &buf[..]).unwrap();
            let r = s.process_new_packets();
            // Whatever alert the server queued goes to the client too.
            let mut alert = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut alert).unwrap();
            }
            if !alert.is_empty() {
                c.read_tls(&mut &alert[..]).unwrap();
                c.process_new_packets()?;
            }
            r?;
        }
        let mut got = [0u8; 1];
        if s.reader().read(&mut got).is_ok_and(|n| n == 1) {
            return Ok(());
        }
    }
    panic!("handshake did not finish");
}

#[test]
fn generated_files_load_and_shake_hands_and_a_wrong_ca_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let certs = generate_local(&dir.path().join("a"), &["127.0.0.1", "localhost"]).unwrap();
    let other = generate_local(&dir.path().join("b"), &["127.0.0.1"]).unwrap();
    let s = sec(&certs);
    let server = ServerTls::from_security(&s, ALPN_GRPC).unwrap().unwrap();
    let client = ClientTls::from_security(&s).unwrap().unwrap();
    handshake(&client, &server, false).unwrap();

    // Trusting another CA: refused, and the message names verification.
    let wrong = ClientTls::new(&other.ca, None).unwrap();
    let e = handshake(&wrong, &server, false).unwrap_err();
    let text = wrong.explain("the Eddy master at 127.0.0.1:1", &e);
    assert!(
        text.contains("certificate verification failed") && text.contains("tls_ca"),
        "{text}"
    );

    // A data-port ALPN against the gRPC port's: refused as such.
    let e = handshake(&client, &server, true).unwrap_err();
    assert!(client.explain("x", &e).contains("ALPN"), "{e}");

    // Kept on a second run: the same CA, so configured clients still work.
    let again = generate_local(&dir.path().join("a"), &["127.0.0.1"]).unwrap();
    assert_eq!(
        std::fs::read(&again.ca).unwrap(),
        std::fs::read(&certs.ca).unwrap()
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&certs.key).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the key is private: {mode:o}");
}

#[test]
fn mutual_tls_refuses_a_client_without_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certs = generate_local(dir.path(), &["127.0.0.1"]).unwrap();
    let s = SecurityConfig {
        tls_client_auth: true,
        ..sec(&certs)
    };
    let server = ServerTls::from_security(&s, ALPN_DATA).unwrap().unwrap();
    let anonymous = ClientTls::new(&certs.ca, None).unwrap();
    let e = handshake(&anonymous, &server, true).unwrap_err();
    let text = anonymous.explain("the worker at 127.0.0.1:1", &e);
    assert!(
        text.contains("requires a client certificate") && text.contains("tls_cert"),
        "{text}"
    );
    let with_cert = ClientTls::from_security(&s).unwrap().unwrap();
    handshake(&with_cert, &server, true).unwrap();
}

#[test]
fn bad_settings_name_the_key_to_fix() {
    let dir = tempfile::tempdir().unwrap();
    let certs = generate_local(dir.path(), &["127.0.0.1"]).unwrap();
    let half = SecurityConfig {
        tls_cert: certs.cert.clone(),
        ..Default::default()
    };
    let e = ServerTls::from_security(&half, ALPN_GRPC).unwrap_err();
    assert!(e.to_string().contains("tls_key"), "{e}");

    let missing = SecurityConfig {
        tls_ca: dir.path().join("nope.pem"),
        ..Default::default()
    };
    let e = ClientTls::from_security(&missing).unwrap_err().to_string();
    assert!(e.contains("nope.pem") && e.contains("tls_ca"), "{e}");

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not pem at all\n").unwrap();
    let e = ClientTls::new(&garbage, None).unwrap_err().to_string();
    assert!(
        e.contains("BEGIN CERTIFICATE") && e.contains("tls_ca"),
        "{e}"
    );

    // A key file holding a certificate: no private key there.
    let swapped = SecurityConfig {
        tls_cert: certs.cert.clone(),
        tls_key: certs.cert.clone(),
        ..Default::default()
    };
    let e = ServerTls::from_security(&swapped, ALPN_GRPC).unwrap_err();
    assert!(e.to_string().contains("PRIVATE KEY"), "{e}");

    let mtls_without_ca = SecurityConfig {
        tls_client_auth: true,
        ..sec(&certs)
    };
    let mtls_without_ca = SecurityConfig {
        tls_ca: PathBuf::new(),
        ..mtls_without_ca
    };
    let e = ServerTls::from_security(&mtls_without_ca, ALPN_GRPC).unwrap_err();
    assert!(matches!(e, TlsError::ClientAuthWithoutCa), "{e}");

    // Nothing set: plaintext on both sides.
    let none = SecurityConfig::default();
    assert!(
        ServerTls::from_security(&none, ALPN_GRPC)
            .unwrap()
            .is_none()
    );
    assert!(ClientTls::from_security(&none).unwrap().is_none());
}

#[test]
fn server_names_come_from_addresses() {
    assert!(matches!(
        server_name("127.0.0.1:19998").unwrap(),
        ServerName::IpAddress(_)
    ));
    assert!(matches!(
        server_name("[::1]:5").unwrap(),
        ServerName::IpAddress(_)
    ));
    assert!(matches!(
        server_name("master.example:1").unwrap(),
        ServerName::DnsName(_)
    ));
    assert!(server_name("bad host:1").is_err());
}
