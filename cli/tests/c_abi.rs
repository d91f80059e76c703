//! The C ABI through real compilers: the programs in ffi/tests are built
//! with gcc/g++ against `libeddy.a` and run against a real cluster; the C
//! one also under AddressSanitizer and UndefinedBehaviorSanitizer (leaks
//! included). `ci/test.sh` builds the library first
//! (`cargo build -p eddy-ffi`). TLS options: `c_clients_dial_tls`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Cluster;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn libeddy() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let lib = target.join("debug/libeddy.a");
    assert!(
        lib.exists(),
        "{} is missing: build it with `cargo build -p eddy-ffi` (ci/test.sh does)",
        lib.display()
    );
    lib
}

/// The flags most C tests compile with: warnings are errors, C11 with
/// POSIX names.
const C11_STRICT: &[&str] = &[
    "-Wall",
    "-Wextra",
    "-Werror",
    "-std=c11",
    "-D_DEFAULT_SOURCE",
];

/// Compiles `src` with `compiler` and `flags` into `out`.
fn build(compiler: &str, src: &str, out: &Path, flags: &[&str]) {
    let o = Command::new(compiler)
        .args(flags)
        .arg("-I")
        .arg(root().join("include"))
        .arg(root().join(src))
        .arg(libeddy())
        .args(["-lpthread", "-ldl", "-lm", "-o"])
        .arg(out)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {compiler}: {e}"));
    assert!(
        o.status.success(),
        "{compiler} {src} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn run(exe: &Path, master: &str, env: &[(&str, &str)]) {
    let o = Command::new(exe)
        .arg(master)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{} failed ({:?}):\nstdout: {}\nstderr: {}",
        exe.display(),
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn c_and_cpp_programs_use_the_abi() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, "default_block_size = 1048576", "");
    let strict = ["-Wall", "-Wextra", "-Werror", "-g"];

    let plain = dir.path().join("basic");
    build(
        "gcc",
        "ffi/tests/c/basic.c",
        &plain,
        &[&strict[..], &["-std=c11", "-D_DEFAULT_SOURCE"]].concat(),
    );
    run(&plain, &c.master.addr, &[]);

    let asan = dir.path().join("basic-asan");
    build(
        "gcc",
        "ffi/tests/c/basic.c",
        &asan,
        &[
            &strict[..],
            &[
                "-std=c11",
                "-D_DEFAULT_SOURCE",
                "-fsanitize=address,undefined",
                "-fno-omit-frame-pointer",
            ],
        ]
        .concat(),
    );
    run(
        &asan,
        &c.master.addr,
        &[
            (
                "ASAN_OPTIONS",
                "detect_leaks=1:abort_on_error=0:exitcode=23",
            ),
            ("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1"),
        ],
    );

    let cpp = dir.path().join("raii");
    build(
        "g++",
        "ffi/tests/cpp/raii.cpp",
        &cpp,
        &[&strict[..], &["-std=c++17"]].concat(),
    );
    run(&cpp, &c.master.addr, &[]);
}

/// A master that accepts but never answers: C calls end with
/// EDDY_ERR_DEADLINE_EXCEEDED within the connect option's timeout.
#[test]
fn c_calls_end_at_their_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let silent = common::SilentServer::start();
    let exe = dir.path().join("deadline");
    build("gcc", "ffi/tests/c/deadline.c", &exe, C11_STRICT);
    run(&exe, &silent.addr, &[]);
}

/// The "metadata_cache_ms" option of eddy_connect: 0 sees another client's
/// delete at once, a client's own rename is seen at once, bad values are
/// refused.
#[test]
fn c_clients_bound_their_metadata_cache() {
    let dir = tempfile::tempdir().unwrap();
    let c = Cluster::start(dir.path(), 1, "default_block_size = 1048576", "");
    let exe = dir.path().join("metadata_cache");
    build("gcc", "ffi/tests/c/metadata_cache.c", &exe, C11_STRICT);
    run(&exe, &c.master.addr, &[]);
}

/// Options "token" and "umask" of eddy_connect against a master with
/// authentication "token": no token is EDDY_ERR_UNAUTHENTICATED, a user's
/// token writing the superuser's root is EDDY_ERR_PERMISSION_DENIED.
#[test]
fn c_clients_authenticate_and_are_refused_what_they_may_not_do() {
    let dir = tempfile::tempdir().unwrap();
    let m = common::MasterProc::start(dir.path(), "\n[security]\nauthentication = \"token\"\n");
    let o = Command::new(common::EDDY)
        .arg("--config")
        .arg(dir.path().join("eddy.toml"))
        .args(["token", "create", "--user", "eddy-c-user", "--ttl", "1h"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let token = String::from_utf8(o.stdout).unwrap().trim().to_string();
    let exe = dir.path().join("security");
    build(
        "gcc",
        "ffi/tests/c/security.c",
        &exe,
        &["-Wall", "-Wextra", "-Werror", "-std=c11"],
    );
    let o = Command::new(&exe)
        .args([&m.addr, &token])
        .env_remove("EDDY_TOKEN")
        .env_remove("EDDY_TOKEN_FILE")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The TLS options of eddy_connect ("tls_ca", "tls_cert", "tls_key")
/// against a master and worker serving TLS: mismatches are refused with
/// what to set, bytes over the TLS data port match (ffi/tests/c/tls.c).
#[test]
fn c_clients_dial_tls() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = ["127.0.0.1", "localhost"];
    let good = eddy_proto::tls::generate_local(&dir.path().join("ca"), &hosts).unwrap();
    let other = eddy_proto::tls::generate_local(&dir.path().join("other"), &hosts).unwrap();
    let sec = format!(
        "\n[security]\ntls_cert = {:?}\ntls_key = {:?}\ntls_ca = {:?}\n",
        good.cert.display().to_string(),
        good.key.display().to_string(),
        good.ca.display().to_string()
    );
    let c = Cluster::start(&dir.path().join("c"), 1, &sec, &sec);
    let exe = dir.path().join("tls");
    build("gcc", "ffi/tests/c/tls.c", &exe, C11_STRICT);
    let o = Command::new(&exe)
        .arg(&c.master.addr)
        .arg(&good.ca)
        .arg(&other.ca)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "tls.c failed ({:?}):\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Library-owned read buffers (`eddy_buf_new`, `eddy_pread_buf`) against a
/// worker serving remote leases, the client forced to RDMA: the bytes are
/// right at every offset, and the worker leased the blocks (the reads went
/// by one-sided reads into the buffer's memory). Under ASan and UBSan too.
#[test]
fn c_reads_into_library_buffers_go_by_rdma() {
    let dir = tempfile::tempdir().unwrap();
    let rdma = "rdma = true\nrdma_provider = \"tcp;ofi_rxm\"\n";
    let c = Cluster::start(dir.path(), 1, "default_block_size = 1048576", rdma);
    let asan = [
        C11_STRICT,
        &[
            "-g",
            "-fsanitize=address,undefined",
            "-fno-omit-frame-pointer",
        ],
    ]
    .concat();
    for (name, flags) in [("read_buf", C11_STRICT), ("read_buf-asan", &asan[..])] {
        let exe = dir.path().join(name);
        build("gcc", "ffi/tests/c/read_buf.c", &exe, flags);
        let o = Command::new(&exe)
            .args([c.master.addr.as_str(), "rdma", &format!("/{name}")])
            .env(
                "ASAN_OPTIONS",
                "detect_leaks=1:abort_on_error=0:exitcode=23",
            )
            .env("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{name} failed ({:?}):\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let leased = rt.block_on(async { c.stat_sum(&c.fs().await, "rdma_leases_granted").await });
    assert!(leased > 0, "the C client's reads went by RDMA");
}
