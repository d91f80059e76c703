//! Fingerprints after an under-storage rename.
//!
//! A rename in an object store is a copy and a delete, and the copy may get
//! a new fingerprint (a multipart object's ETag is not its copy's). Left
//! alone, the next sync would take the moved file for a changed one and
//! drop its cache, and `checkConsistency` would report drift that is not
//! there. So after a store without atomic rename moves something, the
//! master reads the new fingerprints back and records them with the rename.

use std::collections::HashMap;
use std::sync::Arc;

use eddy_ufs::{UfsPath, UnderFileSystem};

use crate::error::Result;

/// Page size for walking a moved directory.
const PAGE: usize = 1000;

/// Fingerprints of the files at or below `to` after a rename: keyed by the
/// path relative to `to` ("" for `to` itself when it is a file). `None`
/// when the store renames atomically, which keeps fingerprints as they are.
pub(crate) async fn after_rename(
    ufs: &Arc<dyn UnderFileSystem>,
    to: &UfsPath,
) -> Result<Option<HashMap<String, String>>> {
    if ufs.capabilities().atomic_rename {
        return Ok(None);
    }
    let top = ufs.stat(to).await?;
    let mut out = HashMap::new();
    if !top.is_dir {
        out.insert(String::new(), top.fingerprint);
        return Ok(Some(out));
    }
    let mut dirs = vec![(to.clone(), String::new())];
    while let Some((dir, rel)) = dirs.pop() {
        let mut after: Option<String> = None;
        loop {
            let page = ufs.list(&dir, after.as_deref(), PAGE).await?;
            for e in page.entries {
                let child_rel = if rel.is_empty() {
                    e.name.clone()
                } else {
                    format!("{rel}/{}", e.name)
                };
                // A name that is no path component cannot be an Eddy file.
                let Some(child) = dir.join(&e.name) else {
                    continue;
                };
                if e.is_dir {
                    dirs.push((child, child_rel));
                } else {
                    out.insert(child_rel, e.fingerprint);
                }
            }
            match page.next_start_after {
                Some(n) => after = Some(n),
                None => break,
            }
        }
    }
    Ok(Some(out))
}
