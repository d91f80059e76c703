//! A self-signed CA and a certificate it signs, for `eddy local --tls` and
//! tests: a quick start, not a PKI (production certificates come from the
//! operator's CA).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::TlsError;

/// The files [`generate_local`] wrote (or found).
#[derive(Debug, Clone)]
pub struct LocalCerts {
    /// The CA certificate: what clients set as `tls_ca`.
    pub ca: PathBuf,
    /// The CA's private key (to sign more certificates; mode 0600).
    pub ca_key: PathBuf,
    /// A certificate for `hosts`, signed by the CA, good for serving and
    /// as a client certificate (`tls_cert`).
    pub cert: PathBuf,
    /// Its private key (`tls_key`, mode 0600).
    pub key: PathBuf,
}

/// Writes `ca.pem`, `ca-key.pem`, `cert.pem` and `key.pem` into `dir`
/// (created 0700 if absent): a new CA and a certificate for `hosts` (IP
/// addresses or DNS names) that it signs. Files already there are kept
/// and reused, so clients that trust the CA keep working across restarts.
pub fn generate_local(dir: &Path, hosts: &[&str]) -> Result<LocalCerts, TlsError> {
    let files = LocalCerts {
        ca: dir.join("ca.pem"),
        ca_key: dir.join("ca-key.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    if [&files.ca, &files.ca_key, &files.cert, &files.key]
        .iter()
        .all(|p| p.exists())
    {
        return Ok(files);
    }
    let gen_err = |e: rcgen::Error| TlsError::Certgen(format!("cannot generate certificates: {e}"));
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Read {
            what: "a generated file",
            key: "tls_cert",
            path,
            source,
        }
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))?;

    let ca_key = KeyPair::generate().map_err(gen_err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Eddy local CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).map_err(gen_err)?;
    let issuer = Issuer::new(ca, &ca_key);

    let key = KeyPair::generate().map_err(gen_err)?;
    let names: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
    let mut leaf = CertificateParams::new(names).map_err(gen_err)?;
    leaf.distinguished_name
        .push(DnType::CommonName, "Eddy local server");
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // One certificate for every role on a single host: the master and the
    // worker serve it, and present it when they dial each other.
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = leaf.signed_by(&key, &issuer).map_err(gen_err)?;

    write(&files.ca_key, &ca_key.serialize_pem(), 0o600).map_err(io_err(&files.ca_key))?;
    write(&files.key, &key.serialize_pem(), 0o600).map_err(io_err(&files.key))?;
    write(&files.cert, &cert.pem(), 0o644).map_err(io_err(&files.cert))?;
    // Last: its presence means the set is complete.
    write(&files.ca, &ca_cert.pem(), 0o644).map_err(io_err(&files.ca))?;
    Ok(files)
}

/// Creates (or replaces) `path` with `mode` from the start: a key is never
/// readable by others, not even for a moment.
fn write(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}
