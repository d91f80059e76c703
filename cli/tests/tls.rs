//! TLS end to end (docs/SECURITY.md, "Encryption (TLS)"): real `eddy
//! master`, `eddy worker` and `eddy local` processes on loopback serving
//! certificates from `eddy_proto::tls::generate_local`, and clients through
//! the library and the real CLI. What is checked: mismatched settings fail
//! saying what to set; bytes read over TLS (the TCP data port, not
//! short-circuit) are the bytes written; mutual TLS refuses a client
//! without a certificate; `eddy local --tls` works with what it prints;
//! garbage instead of a ClientHello leaves both servers serving.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Cluster, EDDY, MasterProc, WRITE_TYPES, eventually, get, pattern, put};
use eddy_client::{ClientOptions, ClientTls, EddyCode, FileSystem, MasterClient};
use eddy_proto::tls::{LocalCerts, generate_local};

const BS: u64 = 1 << 20;

/// A CA with a certificate for 127.0.0.1 in `dir/NAME`.
fn certs(dir: &Path, name: &str) -> LocalCerts {
    generate_local(&dir.join(name), &["127.0.0.1", "localhost"]).unwrap()
}

/// A `[security]` table serving `c` and trusting its CA.
fn security(c: &LocalCerts, client_auth: bool) -> String {
    format!(
        "\n[security]\ntls_cert = {:?}\ntls_key = {:?}\ntls_ca = {:?}\ntls_client_auth = {client_auth}\n",
        c.cert.display().to_string(),
        c.key.display().to_string(),
        c.ca.display().to_string()
    )
}

/// A master and `workers` workers serving TLS with `c`.
fn tls_cluster(dir: &Path, workers: usize, c: &LocalCerts, mtls: bool) -> Cluster {
    let sec = security(c, mtls);
    let master = format!("default_block_size = {BS}\nreplication_check_interval_ms = 100\n{sec}");
    Cluster::start(dir, workers, &master, &sec)
}

/// TCP only (no short-circuit): the bytes cross the TLS data port.
fn tls_opts(ca: &Path, identity: Option<(&Path, &Path)>) -> ClientOptions {
    ClientOptions {
        short_circuit: false,
        tls: Some(ClientTls::new(ca, identity).unwrap()),
        ..Default::default()
    }
}

/// `eddy --master MASTER ARGS` with `env`: (success, stdout, stderr).
fn cli(master: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let o = Command::new(EDDY)
        .arg("--master")
        .arg(master)
        .args(args)
        .env_remove("EDDY_TLS_CA")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The error of the first call of a client that connected (plaintext
/// HTTP/2 dials lazily, so a mismatch shows on the first call).
async fn first_call_error(addr: &str, opts: &ClientOptions) -> eddy_client::ClientError {
    match MasterClient::connect_opts(addr, opts).await {
        Ok(m) => m.stat("/").await.unwrap_err(),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatched_tls_settings_fail_saying_what_to_set() {
    let dir = tempfile::tempdir().unwrap();
    let (good, other) = (certs(dir.path(), "ca"), certs(dir.path(), "other"));
    let c = tls_cluster(&dir.path().join("c"), 1, &good, false);
    let addr = c.master.addr.as_str();
    let ca = good.ca.to_str().unwrap();

    // A plaintext client against the TLS master: told to set the CA, the
    // one thing that turns TLS on (an https:// address without it is
    // refused, below), not to write the address as https://.
    let e = first_call_error(addr, &ClientOptions::default()).await;
    assert_eq!(e.code(), EddyCode::Unavailable, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("serves TLS")
            && text.contains("tls_ca")
            && text.contains("an https:// address alone does not"),
        "{text}"
    );
    let (ok, _, err) = cli(addr, &["fs", "ls", "/"], &[]);
    assert!(
        !ok && err.contains("serves TLS")
            && err.contains("tls_ca")
            && err.contains("(UNAVAILABLE)"),
        "{err}"
    );

    // Trusting another CA: refused, naming certificate verification.
    let wrong = tls_opts(&other.ca, None);
    let text = first_call_error(addr, &wrong).await.to_string();
    assert!(text.contains("certificate verification failed"), "{text}");
    let (ok, _, err) = cli(
        addr,
        &["fs", "ls", "/"],
        &[("EDDY_TLS_CA", other.ca.to_str().unwrap())],
    );
    assert!(
        !ok && err.contains("certificate verification failed") && err.contains("tls_ca"),
        "{err}"
    );

    // https:// insists on TLS: without a CA it says what to set; with one
    // (and with a plain host:port) it works.
    let https = format!("https://{addr}");
    let (ok, _, err) = cli(&https, &["fs", "ls", "/"], &[]);
    assert!(
        !ok && err.contains("https://") && err.contains("tls_ca"),
        "{err}"
    );
    assert!(cli(&https, &["fs", "ls", "/"], &[("EDDY_TLS_CA", ca)]).0);
    let (ok, _, err) = cli(addr, &["fs", "mkdir", "/d"], &[("EDDY_TLS_CA", ca)]);
    assert!(ok, "{err}");

    // A TLS client against a plaintext master.
    let plain = MasterProc::start(&dir.path().join("plain"), "");
    let e = first_call_error(&plain.addr, &tls_opts(&good.ca, None)).await;
    assert_eq!(e.code(), EddyCode::Unavailable, "{e}");
    assert!(e.to_string().contains("plaintext"), "{e}");
    let (ok, _, err) = cli(&plain.addr, &["fs", "ls", "/"], &[("EDDY_TLS_CA", ca)]);
    assert!(
        !ok && err.contains("plaintext") && err.contains("tls_ca"),
        "{err}"
    );

    // A CA file that is not there stops the command, naming the file.
    let (ok, _, err) = cli(
        addr,
        &["fs", "ls", "/"],
        &[("EDDY_TLS_CA", "/nonexistent/ca.pem")],
    );
    assert!(
        !ok && err.contains("/nonexistent/ca.pem") && err.contains("INVALID_ARGUMENT"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bytes_read_over_tls_equal_bytes_written() {
    let dir = tempfile::tempdir().unwrap();
    let good = certs(dir.path(), "ca");
    let c = tls_cluster(&dir.path().join("c"), 2, &good, false);
    let fs = FileSystem::connect_with(&c.master.addr, tls_opts(&good.ca, None))
        .await
        .unwrap();
    for (i, (wt, name)) in WRITE_TYPES.iter().enumerate() {
        let data = pattern(3 * BS as usize + 5, i as u64);
        let path = format!("/{name}");
        put(&fs, &path, &data, *wt).await;
        assert_eq!(get(&fs, &path).await, data, "{name}: read back over TLS");
    }
    assert!(c.stat_sum(&fs, "bytes_served").await >= 9 * BS, "TCP reads");

    // The data port speaks TLS only: a plaintext request gets no answer
    // frame, and the connection is closed.
    let mut raw = std::net::TcpStream::connect(&c.workers[0].addr).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let stats = eddy_wire::Header {
        kind: eddy_wire::Kind::Stats,
        body_len: 0,
    };
    raw.write_all(&stats.encode()).unwrap();
    let mut back = Vec::new();
    let _ = raw.read_to_end(&mut back);
    assert!(
        !back.starts_with(&stats.encode()[..4]),
        "no Eddy frame on a TLS port: {back:?}"
    );

    // A copy between workers (replication) goes over TLS too.
    let ca = good.ca.to_str().unwrap();
    let (ok, _, err) = cli(
        &c.master.addr,
        &["fs", "setReplication", "--min", "2", "/mc"],
        &[("EDDY_TLS_CA", ca)],
    );
    assert!(ok, "{err}");
    eventually(
        Duration::from_secs(20),
        "every block of /mc has two copies",
        || async {
            let r = fs.master().file_blocks("/mc").await.unwrap();
            r.blocks.iter().all(|b| b.locations.len() == 2)
        },
    )
    .await;
    assert!(c.stat_sum(&fs, "replicas_made").await >= 4);
    for w in &c.workers {
        let s = fs.worker_stats(&w.addr).await.unwrap();
        let n = s.iter().find(|(k, _)| k == "blocks_cached").unwrap().1;
        assert!(n >= 4, "{}: {n} blocks", w.addr);
    }
    assert_eq!(get(&fs, "/mc").await, pattern(3 * BS as usize + 5, 0));

    // And the CLI, over TCP: a config file with tls_ca and no short-circuit.
    let cfg = dir.path().join("client.toml");
    std::fs::write(
        &cfg,
        format!("[client]\nshort_circuit = false\n[security]\ntls_ca = {ca:?}\n"),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let local = dir.path().join("big.bin");
    let data = pattern(2 * BS as usize + 3, 9);
    std::fs::write(&local, &data).unwrap();
    let (ok, _, err) = cli(
        &c.master.addr,
        &[
            "--config",
            cfg,
            "fs",
            "put",
            local.to_str().unwrap(),
            "/big",
        ],
        &[],
    );
    assert!(ok, "{err}");
    let o = Command::new(EDDY)
        .args([
            "--config",
            cfg,
            "--master",
            &c.master.addr,
            "fs",
            "cat",
            "/big",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.stdout == data, "cat over TLS returns the bytes put");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_clients_without_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (good, other) = (certs(dir.path(), "ca"), certs(dir.path(), "other"));
    // Workers present their certificate to the master (and to each other).
    let c = tls_cluster(&dir.path().join("c"), 1, &good, true);
    let addr = c.master.addr.as_str();

    let anonymous = tls_opts(&good.ca, None);
    let text = first_call_error(addr, &anonymous).await.to_string();
    // "requires" when the server's alert arrives, "may require" when the
    // server's close overtook it.
    assert!(
        text.contains("require")
            && text.contains("a client certificate")
            && text.contains("tls_cert"),
        "{text}"
    );
    // A certificate from a CA the servers do not trust.
    let stranger = tls_opts(&good.ca, Some((&other.cert, &other.key)));
    let text = first_call_error(addr, &stranger).await.to_string();
    assert!(
        text.contains("this client's certificate") && text.contains("tls_cert"),
        "{text}"
    );

    // The data port asks too: a dial succeeds (TLS 1.3 checks the client
    // after the handshake), the first exchange is refused.
    let tls = anonymous.tls.as_ref().unwrap();
    let mut s = eddy_client::dial_data(&c.workers[0].addr, Some(tls))
        .await
        .unwrap();
    let r = async {
        eddy_wire::write_frame(&mut s, eddy_wire::Kind::Stats, &[]).await?;
        eddy_wire::read_header(&mut s).await
    };
    match r.await {
        Ok(h) => panic!("a worker answered a client without a certificate: {h:?}"),
        // The alert, or the close that overtook it.
        Err(eddy_wire::WireError::Io(e)) => {
            let text = eddy_proto::tls::diagnose("the worker", &e, None, false);
            let lost = matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            );
            assert!(
                lost || text.is_some_and(|t| t.contains("requires a client certificate")),
                "{e}"
            );
        }
        Err(eddy_wire::WireError::Closed) => {}
        Err(e) => panic!("{e}"),
    }

    // With the certificate: names and bytes over TCP.
    let fs = FileSystem::connect_with(addr, tls_opts(&good.ca, Some((&good.cert, &good.key))))
        .await
        .unwrap();
    let data = pattern(2 * BS as usize + 1, 4);
    put(&fs, "/m", &data, eddy_client::pb::WriteType::MustCache).await;
    assert_eq!(get(&fs, "/m").await, data);
}

/// Kills the child on drop (also when an assertion fails).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn eddy_local_tls_works_with_what_it_prints() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let mut child = Reaped(
        Command::new(EDDY)
            .args(["local", "--tls", "--port", "0", "--metrics-port", "0"])
            .args(["--memory", "268435456", "--data-dir"])
            .arg(&data_dir)
            .current_dir(dir.path())
            .env("EDDY_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let (mut master, mut ca) = (None, None);
    for line in BufReader::new(child.0.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(a) = line.strip_prefix("eddy master listening on ") {
            master = Some(a.to_string());
        }
        if let Some(rest) = line.split_once("EDDY_TLS_CA=").map(|(_, r)| r) {
            ca = rest.split([' ', ',', ')']).next().map(str::to_string);
        }
        if line.starts_with("root under-storage") {
            break;
        }
    }
    let (master, ca) = (master.expect("address printed"), ca.expect("CA printed"));
    assert_eq!(Path::new(&ca), data_dir.join("tls/ca.pem"));
    use std::os::unix::fs::PermissionsExt;
    let key = std::fs::metadata(data_dir.join("tls/key.pem")).unwrap();
    assert_eq!(key.permissions().mode() & 0o777, 0o600);

    let local = dir.path().join("f.bin");
    let data = pattern(3 << 20, 7);
    std::fs::write(&local, &data).unwrap();
    let env = [("EDDY_TLS_CA", ca.as_str())];
    let (ok, _, err) = cli(&master, &["fs", "put", local.to_str().unwrap(), "/f"], &env);
    assert!(ok, "{err}");
    // Through the remote data port (the TLS path) and short-circuit alike.
    let cfg = dir.path().join("tcp.toml");
    std::fs::write(&cfg, "[client]\nshort_circuit = false\n").unwrap();
    for extra in [&["--config", cfg.to_str().unwrap()][..], &[]] {
        let o = Command::new(EDDY)
            .args(extra)
            .args(["--master", &master, "fs", "cat", "/f"])
            .envs(env)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(o.stdout == data, "cat returns the bytes put ({extra:?})");
    }
    let (ok, _, err) = cli(&master, &["fs", "ls", "/"], &[]);
    assert!(!ok && err.contains("serves TLS"), "{err}");
}

/// Sends `bytes` (then nothing) to `addr` and waits for the server to
/// close the connection: it must, within `limit`.
fn closed_within(addr: &str, bytes: &[u8], limit: Duration) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    let _ = s.write_all(bytes);
    let start = Instant::now();
    let mut sink = [0u8; 4096];
    loop {
        match s.read(&mut sink) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("{addr} kept a connection open after {bytes:?}: {e}"),
        }
        assert!(start.elapsed() < limit, "{addr} kept talking to garbage");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_a_client_hello_leaves_servers_serving() {
    let dir = tempfile::tempdir().unwrap();
    let good = certs(dir.path(), "ca");
    let c = Cluster::start(
        &dir.path().join("c"),
        1,
        &format!("handshake_timeout_ms = 500{}", security(&good, false)),
        &format!("frame_timeout_ms = 500{}", security(&good, false)),
    );
    let truncated_hello = [0x16u8, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01];
    let huge_record = [0x16u8, 0x03, 0x03, 0xff, 0xff, 0x01];
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let garbage = pattern(64 << 10, 1);
    let eddy_frame = eddy_wire::Header {
        kind: eddy_wire::Kind::Read,
        body_len: 1 << 20,
    }
    .encode();
    let limit = Duration::from_secs(15);
    for addr in [&c.master.addr, &c.workers[0].addr] {
        for bytes in [
            &truncated_hello[..],
            &huge_record[..],
            &preface[..],
            &garbage[..],
            &eddy_frame[..],
            b"GET / HTTP/1.1\r\n\r\n",
            &[],
        ] {
            closed_within(addr, bytes, limit);
        }
    }
    // Both still serve a real client, names and bytes.
    let fs = FileSystem::connect_with(&c.master.addr, tls_opts(&good.ca, None))
        .await
        .unwrap();
    let data = pattern(BS as usize + 17, 3);
    put(&fs, "/after", &data, eddy_client::pb::WriteType::MustCache).await;
    assert_eq!(get(&fs, "/after").await, data);
}
