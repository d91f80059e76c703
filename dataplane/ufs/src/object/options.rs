//! Mount options: the keys each scheme accepts, and the per-process
//! defaults for them (`[ufs.s3]`, `[ufs.gcs]`, `[ufs.azure]`).

use std::collections::BTreeMap;

/// A key in a `[ufs.*]` table that no mount of its scheme accepts.
#[derive(Debug, thiserror::Error)]
#[error("[{table}] has unknown key {key:?}; accepted: {accepted}")]
pub struct UnknownOption {
    pub table: &'static str,
    pub key: String,
    pub accepted: String,
}

/// Mount options each scheme accepts (values are never logged).
pub(super) const S3_OPTIONS: &[&str] = &[
    "endpoint",
    "region",
    "access_key",
    "secret_key",
    "session_token",
    "virtual_hosted",
    "allow_http",
    "proxy",
    "retries",
    "timeout_ms",
];
pub(super) const GCS_OPTIONS: &[&str] = &[
    "endpoint",
    "service_account_key",
    "service_account_path",
    "anonymous",
    "proxy",
    "retries",
    "timeout_ms",
];
pub(super) const AZURE_OPTIONS: &[&str] = &[
    "account",
    "access_key",
    "endpoint",
    "use_emulator",
    "allow_http",
    "proxy",
    "retries",
    "timeout_ms",
];

/// Per-scheme defaults for object-store mounts, from the config file:
/// `[ufs.s3]` (s3:// and s3a://), `[ufs.gcs]` (gs://) and `[ufs.azure]`
/// (az://), with the keys mount options take. Each process (master, worker)
/// applies its own file's defaults under the mount's options, so
/// credentials kept here never reach the master's metastore.
#[derive(Clone, Default, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UfsDefaults {
    #[serde(deserialize_with = "scalars")]
    pub s3: BTreeMap<String, String>,
    #[serde(deserialize_with = "scalars")]
    pub gcs: BTreeMap<String, String>,
    #[serde(deserialize_with = "scalars")]
    pub azure: BTreeMap<String, String>,
}

impl UfsDefaults {
    /// The defaults for URIs of `scheme`.
    pub fn for_scheme(&self, scheme: &str) -> &BTreeMap<String, String> {
        match scheme {
            "gs" => &self.gcs,
            "az" => &self.azure,
            _ => &self.s3,
        }
    }

    /// Refuses keys no mount of the table's scheme accepts, so a typo in
    /// the config file stops the process at start-up.
    pub fn check(&self) -> Result<(), UnknownOption> {
        for (table, map, allowed) in [
            ("ufs.s3", &self.s3, S3_OPTIONS),
            ("ufs.gcs", &self.gcs, GCS_OPTIONS),
            ("ufs.azure", &self.azure, AZURE_OPTIONS),
        ] {
            if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
                return Err(UnknownOption {
                    table,
                    key: k.clone(),
                    accepted: allowed.join(", "),
                });
            }
        }
        Ok(())
    }
}

/// Keys only: the values may be secrets.
impl std::fmt::Debug for UfsDefaults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UfsDefaults")
            .field("s3", &self.s3.keys().collect::<Vec<_>>())
            .field("gcs", &self.gcs.keys().collect::<Vec<_>>())
            .field("azure", &self.azure.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A table of strings, booleans or integers (`allow_http = true` as well as
/// `"true"`), kept as the strings mount options are.
fn scalars<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<BTreeMap<String, String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        S(String),
        B(bool),
        I(i64),
    }
    let m: BTreeMap<String, Scalar> = serde::Deserialize::deserialize(d)?;
    Ok(m.into_iter()
        .map(|(k, v)| {
            let v = match v {
                Scalar::S(s) => s,
                Scalar::B(b) => b.to_string(),
                Scalar::I(i) => i.to_string(),
            };
            (k, v)
        })
        .collect())
}
