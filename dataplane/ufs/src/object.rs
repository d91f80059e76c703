//! Object stores (S3 and S3-compatible servers, GCS, Azure Blob) behind the
//! under-storage trait, through the `object_store` crate.
//!
//! - Keys are `PREFIX/path`. Directories are prefixes; an empty directory is
//!   kept by an empty marker object `DIR/.eddy-dir` (object_store paths cannot
//!   end in `/`), which listings and stats hide.
//! - Reads are ranged GETs. Writes up to [`PART`](writer::PART) bytes are one PUT; larger
//!   streamed writes are multipart uploads, invisible until completed.
//! - Rename is copy + delete, object by object: **not atomic**
//!   ([`Capabilities::atomic_rename`] is false). A crash in the middle leaves
//!   both names partly present.
//! - Listings stream the store's key order (which is [`crate::listing_key`]
//!   order) and stop after one page: a prefix of any size is listed without
//!   holding it in memory. Skipping a large subdirectory while paging past it
//!   still reads its keys.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    ClientOptions, ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};

mod options;
mod version;
mod writer;

use options::{AZURE_OPTIONS, GCS_OPTIONS, S3_OPTIONS};
pub use options::{UfsDefaults, UnknownOption};
use writer::{ObjectWriter, fingerprint, now_ms};

use crate::{
    Capabilities, ListPage, Result, UfsError, UfsPath, UfsStatus, UfsWriter, UnderFileSystem,
    listing_key,
};

/// Marker object that keeps an empty directory.
pub const DIR_MARKER: &str = ".eddy-dir";

#[derive(Debug)]
pub struct ObjectUfs {
    uri: String,
    store: Arc<dyn ObjectStore>,
    /// Key prefix without leading or trailing `/` (empty: the bucket root).
    root: String,
}

fn bad_uri(uri: &str, reason: impl Into<String>) -> UfsError {
    UfsError::InvalidUri {
        uri: uri.to_string(),
        reason: reason.into(),
    }
}

fn flag(uri: &str, options: &BTreeMap<String, String>, key: &str) -> Result<Option<bool>> {
    match options.get(key).map(|v| v.to_ascii_lowercase()) {
        None => Ok(None),
        Some(v) if v == "true" => Ok(Some(true)),
        Some(v) if v == "false" => Ok(Some(false)),
        Some(v) => Err(bad_uri(
            uri,
            format!("option {key}={v}: expected true or false"),
        )),
    }
}

/// The endpoint of `bucket` under virtual-hosted addressing: the service
/// endpoint with the bucket as the first label of its host
/// (`http://s3.example:9000` -> `http://bucket.s3.example:9000`), unless it
/// already starts with it. object_store wants the bucket's own endpoint;
/// users give the service's, as with path-style addressing.
fn bucket_host(endpoint: &str, bucket: &str) -> String {
    let (scheme, host) = endpoint.split_once("://").unwrap_or(("https", endpoint));
    if host.starts_with(&format!("{bucket}.")) {
        endpoint.to_string()
    } else {
        format!("{scheme}://{bucket}.{host}")
    }
}

/// Splits `scheme://bucket/prefix`.
fn split(uri: &str) -> Result<(&str, &str, String)> {
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or_else(|| bad_uri(uri, "expected SCHEME://BUCKET/PREFIX"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad_uri(uri, "the bucket (or container) name is missing"));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|p| p == "." || p == "..") {
        return Err(bad_uri(uri, "the prefix may not contain `.` or `..`"));
    }
    Ok((scheme, bucket, prefix.to_string()))
}

/// What every scheme's store takes from the mount options.
struct Common {
    retry: RetryConfig,
    client: ClientOptions,
    endpoint: Option<String>,
}

/// Retries, timeouts, the endpoint and the HTTP client's options.
fn common(uri: &str, options: &BTreeMap<String, String>) -> Result<Common> {
    let retries: usize = match options.get("retries") {
        None => 3,
        Some(v) => v
            .parse()
            .map_err(|_| bad_uri(uri, format!("option retries={v}: expected a count")))?,
    };
    let retry = RetryConfig {
        max_retries: retries,
        retry_timeout: Duration::from_secs(30),
        ..Default::default()
    };
    let timeout =
        match options.get("timeout_ms") {
            None => Duration::from_secs(60),
            Some(v) => Duration::from_millis(v.parse().map_err(|_| {
                bad_uri(uri, format!("option timeout_ms={v}: expected milliseconds"))
            })?),
        };
    let endpoint = options.get("endpoint").cloned();
    let http = endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"));
    let mut client = ClientOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(timeout)
        .with_allow_http(flag(uri, options, "allow_http")?.unwrap_or(http));
    if let Some(p) = options.get("proxy") {
        client = client.with_proxy_url(p);
    }
    Ok(Common {
        retry,
        client,
        endpoint,
    })
}

fn built<S: ObjectStore>(
    uri: &str,
    b: std::result::Result<S, object_store::Error>,
) -> Result<Arc<dyn ObjectStore>> {
    b.map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        .map_err(|e| bad_uri(uri, e.to_string()))
}

fn s3(
    uri: &str,
    bucket: &str,
    options: &BTreeMap<String, String>,
    c: Common,
) -> Result<Arc<dyn ObjectStore>> {
    // AWS_* environment variables first; mount options win.
    let mut b = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_retry(c.retry)
        .with_client_options(c.client);
    let virtual_hosted = flag(uri, options, "virtual_hosted")?.unwrap_or(false);
    if let Some(e) = c.endpoint {
        b = b.with_endpoint(if virtual_hosted {
            bucket_host(&e, bucket)
        } else {
            e
        });
    }
    if let Some(r) = options.get("region") {
        b = b.with_region(r);
    }
    if let Some(k) = options.get("access_key") {
        b = b.with_access_key_id(k);
    }
    if let Some(k) = options.get("secret_key") {
        b = b.with_secret_access_key(k);
    }
    if let Some(t) = options.get("session_token") {
        b = b.with_token(t);
    }
    b = b.with_virtual_hosted_style_request(virtual_hosted);
    built(uri, b.build())
}

fn gcs(
    uri: &str,
    bucket: &str,
    options: &BTreeMap<String, String>,
    c: Common,
) -> Result<Arc<dyn ObjectStore>> {
    let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(bucket)
        .with_retry(c.retry)
        .with_client_options(c.client);
    if let Some(e) = c.endpoint {
        b = b.with_base_url(&e);
    }
    if let Some(k) = options.get("service_account_key") {
        b = b.with_service_account_key(k);
    }
    if let Some(p) = options.get("service_account_path") {
        b = b.with_service_account_path(p);
    }
    if let Some(v) = flag(uri, options, "anonymous")? {
        b = b.with_skip_signature(v);
    }
    built(uri, b.build())
}

fn azure(
    uri: &str,
    bucket: &str,
    options: &BTreeMap<String, String>,
    c: Common,
) -> Result<Arc<dyn ObjectStore>> {
    let mut b = object_store::azure::MicrosoftAzureBuilder::from_env()
        .with_container_name(bucket)
        .with_retry(c.retry)
        .with_client_options(c.client);
    if let Some(a) = options.get("account") {
        b = b.with_account(a);
    }
    if let Some(k) = options.get("access_key") {
        b = b.with_access_key(k);
    }
    if let Some(e) = c.endpoint {
        b = b.with_endpoint(e);
    }
    if let Some(v) = flag(uri, options, "use_emulator")? {
        b = b.with_use_emulator(v);
    }
    built(uri, b.build())
}

impl ObjectUfs {
    /// Opens `s3://`, `s3a://`, `gs://` or `az://` URIs with mount options,
    /// and checks the bucket answers (a wrong endpoint, bad credentials or
    /// a missing bucket fail here, at mount time, with the store's reason).
    pub async fn open(uri: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        let (scheme, bucket, root) = split(uri)?;
        let allowed = match scheme {
            "s3" | "s3a" => S3_OPTIONS,
            "gs" => GCS_OPTIONS,
            "az" => AZURE_OPTIONS,
            _ => unreachable!("open() dispatches only these schemes"),
        };
        if let Some(k) = options.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(bad_uri(
                uri,
                format!(
                    "unknown mount option {k:?} for {scheme}://; accepted: {}",
                    allowed.join(", ")
                ),
            ));
        }
        let c = common(uri, options)?;
        let store = match scheme {
            "s3" | "s3a" => s3(uri, bucket, options, c)?,
            "gs" => gcs(uri, bucket, options, c)?,
            _ => azure(uri, bucket, options, c)?,
        };
        let ufs = Self {
            uri: uri.to_string(),
            store,
            root,
        };
        // One request: a listing of at most one page.
        let probe = ufs
            .store
            .list(Some(&ufs.key(&UfsPath::root())))
            .next()
            .await;
        if let Some(Err(e)) = probe {
            return Err(ufs.unavailable(e));
        }
        Ok(ufs)
    }

    /// The object key of `p`.
    fn key(&self, p: &UfsPath) -> Path {
        match (self.root.is_empty(), p.is_root()) {
            (true, _) => Path::from(p.as_str()),
            (false, true) => Path::from(self.root.as_str()),
            (false, false) => Path::from(format!("{}/{}", self.root, p.as_str())),
        }
    }

    fn unavailable(&self, e: object_store::Error) -> UfsError {
        UfsError::Unavailable {
            uri: self.uri.clone(),
            reason: crate::store_error::describe(&self.uri, &e),
        }
    }

    /// Maps a store error for `p`.
    fn err(&self, p: &UfsPath, e: object_store::Error) -> UfsError {
        match e {
            object_store::Error::NotFound { .. } => UfsError::NotFound(p.to_string()),
            object_store::Error::AlreadyExists { .. } => UfsError::AlreadyExists(p.to_string()),
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => self.unavailable(e),
            e => UfsError::Io {
                path: p.to_string(),
                source: std::io::Error::other(crate::store_error::describe(&self.uri, &e)),
            },
        }
    }

    fn file_status(name: &str, m: &ObjectMeta) -> UfsStatus {
        UfsStatus {
            name: name.to_string(),
            is_dir: false,
            length: m.size,
            mtime_ms: m.last_modified.timestamp_millis(),
            fingerprint: fingerprint(
                m.e_tag.as_deref(),
                m.size,
                m.last_modified.timestamp_millis(),
            ),
        }
    }

    /// A prefix has no mtime: it gets the newest of the objects seen under
    /// it (a listing walks them all; a stat sees the first), not 1970.
    fn dir_status(name: &str, mtime_ms: i64) -> UfsStatus {
        UfsStatus {
            name: name.to_string(),
            is_dir: true,
            length: 0,
            mtime_ms,
            fingerprint: String::new(),
        }
    }

    /// The file at `p`, if there is one (directories are not objects).
    async fn head(&self, p: &UfsPath) -> Result<Option<ObjectMeta>> {
        if p.is_root() {
            return Ok(None);
        }
        match self.store.head(&self.key(p)).await {
            Ok(m) => Ok(Some(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(p, e)),
        }
    }

    /// The mtime of the first object under `p/` (a marker counts), if any
    /// (the root, a mount point dated by Eddy, costs no request).
    async fn first_under(&self, p: &UfsPath) -> Result<Option<i64>> {
        if p.is_root() {
            return Ok(Some(0));
        }
        match self.store.list(Some(&self.key(p))).next().await {
            None => Ok(None),
            Some(Ok(m)) => Ok(Some(m.last_modified.timestamp_millis())),
            Some(Err(e)) => Err(self.err(p, e)),
        }
    }

    /// Every object under `p/` (for recursive deletes and renames).
    async fn all_under(&self, p: &UfsPath) -> Result<Vec<Path>> {
        self.store
            .list(Some(&self.key(p)))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| self.err(p, e))
    }
}

#[async_trait]
impl UnderFileSystem for ObjectUfs {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            atomic_rename: false,
            real_directories: false,
        }
    }

    async fn stat(&self, path: &UfsPath) -> Result<UfsStatus> {
        if let Some(m) = self.head(path).await? {
            return Ok(Self::file_status(path.name(), &m));
        }
        if let Some(mtime_ms) = self.first_under(path).await? {
            return Ok(Self::dir_status(path.name(), mtime_ms));
        }
        Err(UfsError::NotFound(path.to_string()))
    }

    async fn list(
        &self,
        dir: &UfsPath,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage> {
        let limit = limit.max(1);
        if self.head(dir).await?.is_some() {
            return Err(UfsError::NotADirectory(dir.to_string()));
        }
        let base = self.key(dir);
        let mut stream = match start_after {
            Some(after) => {
                let offset = Path::from(format!(
                    "{}{}{}",
                    base.as_ref(),
                    if base.as_ref().is_empty() { "" } else { "/" },
                    after.trim_end_matches('/')
                ));
                self.store.list_with_offset(Some(&base), &offset)
            }
            None => self.store.list(Some(&base)),
        };
        let skip = base.as_ref().len() + usize::from(!base.as_ref().is_empty());
        let mut entries: Vec<UfsStatus> = Vec::new();
        let mut saw_any = false;
        let mut more = false;
        while let Some(item) = stream.next().await {
            let m = item.map_err(|e| self.err(dir, e))?;
            saw_any = true;
            let rel = &m.location.as_ref()[skip..];
            let (name, is_dir) = match rel.split_once('/') {
                Some((child, _)) => (child, true),
                None if rel == DIR_MARKER => continue,
                None => (rel, false),
            };
            let key = listing_key(name, is_dir);
            if start_after.is_some_and(|a| key.as_ref() <= a) {
                continue;
            }
            let mtime_ms = m.last_modified.timestamp_millis();
            if let Some(last) = entries.last_mut()
                && last.is_dir
                && is_dir
                && last.name == name
            {
                // More keys of the same subdirectory: the newest dates it.
                last.mtime_ms = last.mtime_ms.max(mtime_ms);
                continue;
            }
            if entries.len() == limit {
                more = true;
                break;
            }
            entries.push(if is_dir {
                Self::dir_status(name, mtime_ms)
            } else {
                Self::file_status(name, &m)
            });
        }
        if !saw_any && start_after.is_none() && !dir.is_root() {
            return Err(UfsError::NotFound(dir.to_string()));
        }
        let next_start_after = if more {
            entries
                .last()
                .map(|e| listing_key(&e.name, e.is_dir).into_owned())
        } else {
            None
        };
        Ok(ListPage {
            entries,
            next_start_after,
        })
    }

    async fn read(&self, path: &UfsPath, range: Range<u64>) -> Result<Bytes> {
        if range.start >= range.end {
            return Ok(Bytes::new());
        }
        let key = self.key(path);
        match self.store.get_range(&key, range.clone()).await {
            Ok(b) => Ok(b),
            Err(object_store::Error::NotFound { .. }) => Err(UfsError::NotFound(path.to_string())),
            // A range past the end: cut it at the object's size and ask again.
            Err(first) => {
                let size = match self.store.head(&key).await {
                    Ok(m) => m.size,
                    Err(object_store::Error::NotFound { .. }) => {
                        return Err(UfsError::NotFound(path.to_string()));
                    }
                    Err(_) => return Err(self.err(path, first)),
                };
                let end = range.end.min(size);
                if range.start >= end {
                    return Ok(Bytes::new());
                }
                self.store
                    .get_range(&key, range.start..end)
                    .await
                    .map_err(|e| self.err(path, e))
            }
        }
    }

    async fn read_into_version(
        &self,
        path: &UfsPath,
        offset: u64,
        buf: &mut [u8],
        want: &crate::Version,
    ) -> Result<usize> {
        self.read_version(path, offset, buf, want).await
    }

    async fn write(&self, path: &UfsPath, data: Bytes) -> Result<UfsStatus> {
        if path.is_root() {
            return Err(UfsError::IsADirectory(path.to_string()));
        }
        let len = data.len() as u64;
        let r = self
            .store
            .put(&self.key(path), PutPayload::from(data))
            .await
            .map_err(|e| self.err(path, e))?;
        match r.e_tag {
            Some(t) if !t.is_empty() => Ok(UfsStatus {
                name: path.name().to_string(),
                is_dir: false,
                length: len,
                mtime_ms: now_ms(),
                fingerprint: fingerprint(Some(&t), len, 0),
            }),
            // No etag: the store's own mtime makes the fingerprint.
            _ => self.stat(path).await,
        }
    }

    async fn create(&self, path: &UfsPath) -> Result<Box<dyn UfsWriter>> {
        if path.is_root() {
            return Err(UfsError::IsADirectory(path.to_string()));
        }
        Ok(Box::new(ObjectWriter {
            ufs_uri: self.uri.clone(),
            store: self.store.clone(),
            key: self.key(path),
            path: path.clone(),
            buf: Vec::new(),
            upload: None,
            written: 0,
        }))
    }

    async fn mkdir(&self, path: &UfsPath) -> Result<()> {
        if path.is_root() {
            return Ok(());
        }
        if self.head(path).await?.is_some() {
            return Err(UfsError::NotADirectory(path.to_string()));
        }
        let marker = path.join(DIR_MARKER).expect("a valid name");
        self.store
            .put(&self.key(&marker), PutPayload::default())
            .await
            .map_err(|e| self.err(path, e))?;
        Ok(())
    }

    async fn delete(&self, path: &UfsPath, recursive: bool) -> Result<()> {
        if self.head(path).await?.is_some() {
            return self
                .store
                .delete(&self.key(path))
                .await
                .map_err(|e| self.err(path, e));
        }
        let all = self.all_under(path).await?;
        if all.is_empty() && !path.is_root() {
            return Err(UfsError::NotFound(path.to_string()));
        }
        let marker = self.key(&path.join(DIR_MARKER).expect("a valid name"));
        if !recursive && all.iter().any(|k| *k != marker) {
            return Err(UfsError::DirectoryNotEmpty(path.to_string()));
        }
        let keys = futures::stream::iter(all.into_iter().map(Ok)).boxed();
        self.store
            .delete_stream(keys)
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| self.err(path, e))?;
        Ok(())
    }

    async fn rename(&self, from: &UfsPath, to: &UfsPath) -> Result<()> {
        if from.is_root() || to.is_root() {
            return Err(UfsError::Unsupported(
                "the root of a mount cannot be renamed".into(),
            ));
        }
        if self.head(to).await?.is_some() || self.first_under(to).await?.is_some() {
            return Err(UfsError::AlreadyExists(to.to_string()));
        }
        if self.head(from).await?.is_some() {
            let (a, b) = (self.key(from), self.key(to));
            self.store
                .copy(&a, &b)
                .await
                .map_err(|e| self.err(from, e))?;
            return self.store.delete(&a).await.map_err(|e| self.err(from, e));
        }
        // A directory: every object, copied then deleted (not atomic).
        let all = self.all_under(from).await?;
        if all.is_empty() {
            return Err(UfsError::NotFound(from.to_string()));
        }
        let (src, dst) = (self.key(from), self.key(to));
        let cut = src.as_ref().len();
        for k in &all {
            let target = Path::from(format!("{}{}", dst.as_ref(), &k.as_ref()[cut..]));
            self.store
                .copy(k, &target)
                .await
                .map_err(|e| self.err(from, e))?;
        }
        for k in &all {
            self.store.delete(k).await.map_err(|e| self.err(from, e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_and_options_are_checked() {
        assert_eq!(
            split("s3://b/a/b/").unwrap(),
            ("s3", "b", "a/b".to_string())
        );
        assert_eq!(split("gs://b").unwrap(), ("gs", "b", String::new()));
        assert!(split("s3:///x").is_err());
        assert!(split("s3://b/../x").is_err());
        assert!(split("bucket").is_err());
        let o: BTreeMap<String, String> = [("allow_http".into(), "yes".into())].into();
        assert!(flag("u", &o, "allow_http").is_err());
        assert_eq!(fingerprint(Some("\"abc\""), 1, 2), "etag:abc");
        assert_eq!(fingerprint(None, 1, 2), "size:1,mtime:2");
        assert_eq!(bucket_host("http://s3.x:9000", "b"), "http://b.s3.x:9000");
        assert_eq!(bucket_host("https://b.s3.x", "b"), "https://b.s3.x");
        assert_eq!(bucket_host("s3.x", "b"), "https://b.s3.x");
    }

    #[tokio::test]
    async fn unknown_options_are_refused_before_any_request() {
        let o: BTreeMap<String, String> = [("acess_key".into(), "k".into())].into();
        let e = ObjectUfs::open("s3://bucket/p", &o).await.unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("unknown mount option \"acess_key\"") && msg.contains("access_key"),
            "{msg}"
        );
    }
}
