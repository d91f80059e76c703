//! Bounds on what a request may carry, checked before anything is applied.
//!
//! Every string the master keeps is written into a metastore record with a
//! u16 length, so anything longer could never be made durable; and a value
//! applied in memory but not durable is lost at the next restart. So each
//! limit is checked at the door, and an enum number the master does not know
//! is refused rather than read as the default. The limits are listed in
//! docs/ERRORS.md (INVALID_ARGUMENT).

use std::collections::BTreeMap;

use eddy_proto::pb;

use crate::error::{MasterError, Result};

/// Longest owner or group name, in bytes.
pub const MAX_OWNER: usize = 255;
/// Longest under-storage URI of a mount, in bytes.
pub const MAX_URI: usize = 4096;
/// Most options one mount may have.
pub const MAX_MOUNT_OPTIONS: usize = 64;
/// Longest mount option key, in bytes.
pub const MAX_OPTION_KEY: usize = 255;
/// Longest mount option value, in bytes.
pub const MAX_OPTION_VALUE: usize = 4096;

fn too_long(what: &str, len: usize, max: usize) -> MasterError {
    MasterError::InvalidArgument(format!(
        "{what} is {len} bytes long; the limit is {max} bytes"
    ))
}

/// An owner or group name: at most [`MAX_OWNER`] bytes, no NUL or line break.
pub fn owner(what: &str, name: &str) -> Result<()> {
    if name.len() > MAX_OWNER {
        return Err(too_long(what, name.len(), MAX_OWNER));
    }
    if name.bytes().any(|b| b == 0 || b == b'\n' || b == b'\r') {
        return Err(MasterError::InvalidArgument(format!(
            "{what} {name:?} contains a NUL or a line break"
        )));
    }
    Ok(())
}

/// A mount's URI and options.
pub fn mount(uri: &str, options: &BTreeMap<String, String>) -> Result<()> {
    if uri.len() > MAX_URI {
        return Err(too_long("the under-storage URI", uri.len(), MAX_URI));
    }
    if options.len() > MAX_MOUNT_OPTIONS {
        return Err(MasterError::InvalidArgument(format!(
            "{} mount options given; the limit is {MAX_MOUNT_OPTIONS}",
            options.len()
        )));
    }
    for (k, v) in options {
        if k.is_empty() || k.len() > MAX_OPTION_KEY {
            return Err(MasterError::InvalidArgument(format!(
                "mount option key of {} bytes: keys are 1 to {MAX_OPTION_KEY} bytes",
                k.len()
            )));
        }
        if v.len() > MAX_OPTION_VALUE {
            return Err(too_long(
                &format!("mount option {k:?}"),
                v.len(),
                MAX_OPTION_VALUE,
            ));
        }
    }
    Ok(())
}

fn unknown(field: &str, v: i32) -> MasterError {
    MasterError::InvalidArgument(format!("{field} {v} is not a known value"))
}

/// A `WriteType` number from a request.
pub fn write_type(v: i32) -> Result<pb::WriteType> {
    pb::WriteType::try_from(v).map_err(|_| unknown("write type", v))
}

/// A `TtlAction` number from a request.
pub fn ttl_action(v: i32) -> Result<pb::TtlAction> {
    pb::TtlAction::try_from(v).map_err(|_| unknown("ttl action", v))
}

/// A `PlacementKind` number from a request.
pub fn placement(v: i32) -> Result<pb::PlacementKind> {
    pb::PlacementKind::try_from(v).map_err(|_| unknown("placement policy", v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_hold_at_their_edges() {
        assert!(owner("owner", &"u".repeat(MAX_OWNER)).is_ok());
        assert!(owner("owner", &"u".repeat(MAX_OWNER + 1)).is_err());
        assert!(owner("group", "a\nb").is_err());
        let mut o = BTreeMap::new();
        o.insert("k".to_string(), "v".repeat(MAX_OPTION_VALUE));
        assert!(mount("s3://b", &o).is_ok());
        o.insert("k".to_string(), "v".repeat(MAX_OPTION_VALUE + 1));
        assert!(mount("s3://b", &o).is_err());
        assert!(mount(&"x".repeat(MAX_URI + 1), &BTreeMap::new()).is_err());
        assert!(write_type(99).is_err());
        assert_eq!(write_type(2).unwrap(), pb::WriteType::CacheThrough);
        assert!(ttl_action(-1).is_err());
        assert!(placement(7).is_err());
    }
}
