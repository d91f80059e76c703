//! Rolling block keys: which keys sign block tokens now and which still
//! verify them, as plain arithmetic over the clock (HDFS's block keys roll
//! the same way, every `dfs.block.access.key.update.interval`).
//!
//! Time is cut into epochs of `block_key_update_ms`. The master signs with
//! the current epoch's key; a token signed at epoch `e` lives at most
//! `block_token_ttl_ms`, so it is still valid up to epoch
//! `e + ceil(ttl / update)`. Workers are handed the keys of the current
//! epoch, of the next one (so a worker that has not heard from the master
//! since an epoch began still knows the key the master signs with), and of
//! the epochs whose tokens can still be valid; a key older than that is
//! gone from every worker after its next heartbeat, so a leaked block key
//! (or a token forged with one) is useless within one epoch plus a token
//! lifetime.

use super::{Keyring, SecurityConfig};

/// What the block keys are derived with (docs/SECURITY.md).
pub const BLOCK_KEY_LABEL: &str = "eddy block tokens v1";

/// The shortest `block_key_update_ms` accepted: epochs must outlast a few
/// heartbeats.
pub const BLOCK_KEY_UPDATE_MIN_MS: u64 = 1_000;

/// At most this many epochs behind the current one are accepted, which
/// bounds `block_token_ttl_ms` to this many `block_key_update_ms`.
pub const MAX_EPOCHS_BACK: u64 = 4;

/// When block keys roll, from `[security]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockKeySchedule {
    update_ms: u64,
    back: u64,
}

/// Why the `[security]` block key settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "[security] block_key_update_ms = {0} is too short: give at least {BLOCK_KEY_UPDATE_MIN_MS} (ms)"
    )]
    UpdateTooShort(u64),
    #[error("[security] block_token_ttl_ms must be at least 1 (ms)")]
    NoLifetime,
    #[error(
        "[security] block_token_ttl_ms = {ttl} is more than {MAX_EPOCHS_BACK} x block_key_update_ms = {update}: \
         raise block_key_update_ms to at least {min}"
    )]
    TtlTooLong { ttl: u64, update: u64, min: u64 },
}

impl BlockKeySchedule {
    pub fn new(update_ms: u64, ttl_ms: u64) -> Result<Self, ScheduleError> {
        if update_ms < BLOCK_KEY_UPDATE_MIN_MS {
            return Err(ScheduleError::UpdateTooShort(update_ms));
        }
        if ttl_ms == 0 {
            return Err(ScheduleError::NoLifetime);
        }
        let back = ttl_ms.div_ceil(update_ms);
        if back > MAX_EPOCHS_BACK {
            return Err(ScheduleError::TtlTooLong {
                ttl: ttl_ms,
                update: update_ms,
                min: ttl_ms.div_ceil(MAX_EPOCHS_BACK),
            });
        }
        Ok(Self { update_ms, back })
    }

    pub fn from_config(cfg: &SecurityConfig) -> Result<Self, ScheduleError> {
        Self::new(cfg.block_key_update_ms, cfg.block_token_ttl_ms)
    }

    /// The epoch `now_ms` (Unix ms) falls in.
    pub fn epoch(&self, now_ms: u64) -> u64 {
        now_ms / self.update_ms
    }

    /// The epochs whose keys workers hold during epoch `e`: `e` first (it
    /// signs), then `e + 1`, then those back to `e - back`.
    pub fn epochs(&self, e: u64) -> Vec<u64> {
        let mut v = vec![e, e + 1];
        v.extend((1..=self.back).filter_map(|d| e.checked_sub(d)));
        v
    }

    /// The block keys of epoch `e`, derived from the master's `keys`; the
    /// first signs.
    pub fn keys(&self, keys: &Keyring, e: u64) -> Keyring {
        keys.derive_epochs(BLOCK_KEY_LABEL, &self.epochs(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{BlockGrant, BlockOps, TokenError};

    fn grant(expires_ms: u64) -> BlockGrant {
        BlockGrant {
            file_id: 7,
            ops: BlockOps::READ,
            user: "alice".into(),
            expires_ms,
        }
    }

    #[test]
    fn settings_are_checked_with_the_fix() {
        let e = BlockKeySchedule::new(10, 10).unwrap_err();
        assert!(e.to_string().contains("at least 1000"), "{e}");
        assert_eq!(
            BlockKeySchedule::new(1000, 0),
            Err(ScheduleError::NoLifetime)
        );
        let e = BlockKeySchedule::new(1000, 4001).unwrap_err().to_string();
        assert!(
            e.contains("raise block_key_update_ms to at least 1001"),
            "{e}"
        );
        assert!(BlockKeySchedule::new(1000, 4000).is_ok());
        let d = SecurityConfig::default();
        assert!(BlockKeySchedule::from_config(&d).is_ok(), "defaults fit");
    }

    #[test]
    fn a_token_verifies_for_its_whole_life_and_its_key_then_leaves() {
        let master = Keyring::generate(1);
        // update 1000 ms, ttl 1500 ms: tokens of epoch e verify through e+2.
        let s = BlockKeySchedule::new(1000, 1500).unwrap();
        assert_eq!(s.epochs(5), vec![5, 6, 4, 3]);
        assert_eq!(s.epochs(0), vec![0, 1]);
        let signed_at = 5_999; // the end of epoch 5
        let t = grant(signed_at + 1500)
            .sign(&s.keys(&master, s.epoch(signed_at)))
            .unwrap();
        for now in [signed_at, 6_500, 7_498] {
            let ring = s.keys(&master, s.epoch(now));
            BlockGrant::verify(&ring, &t, now).unwrap();
        }
        // A worker a whole epoch behind (no heartbeat since epoch 4) knows
        // the key of epoch 5 too.
        BlockGrant::verify(&s.keys(&master, 4), &t, signed_at).unwrap();
        // Epoch 8 no longer holds epoch 5's key: even a token forged with it
        // to live forever is refused.
        let forged = grant(u64::MAX).sign(&s.keys(&master, 5)).unwrap();
        let ring8 = s.keys(&master, 8);
        assert!(matches!(
            BlockGrant::verify(&ring8, &forged, 8_000),
            Err(TokenError::UnknownKey(_))
        ));
    }
}
