//! The master's keys: a key file of one to four HMAC-SHA256 secrets, the
//! first of which signs and all of which verify (rotation: put a new key
//! first, keep the old one until its tokens have expired).
//!
//! File format (text, one key per line, `#` comments):
//! `eddy-key-v1 <id> <64 hex digits>`. Created with mode 0600 (its
//! directory 0700) at first start when absent; a file that others may read
//! is refused, as ssh refuses such a private key.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use super::TokenError;

/// The most keys a key file may hold (current plus older ones still
/// accepted).
pub const KEY_FILE_MAX_KEYS: usize = 4;

/// The most keys any keyring holds: a key file's, or the block keys derived
/// from it (each file key for each epoch still accepted; see
/// [`super::BlockKeySchedule`]).
pub const KEYRING_MAX_KEYS: usize = 32;

const LINE_TAG: &str = "eddy-key-v1";
const SECRET_LEN: usize = 32;

/// One to four keys; the first signs.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<Key>,
}

#[derive(Clone)]
struct Key {
    id: u32,
    secret: [u8; SECRET_LEN],
    hmac: hmac::Key,
}

impl std::fmt::Debug for Keyring {
    /// Ids only: a secret is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<u32> = self.keys.iter().map(|k| k.id).collect();
        write!(f, "Keyring(ids {ids:?})")
    }
}

/// Why the key file cannot be used (the master does not start).
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read key file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot create key file {}: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "key file {} may be read by others (mode {mode:o}): run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error("key file {} line {line}: {why}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        why: String,
    },
    #[error("keys: {0}")]
    Keys(String),
}

fn random_secret() -> [u8; SECRET_LEN] {
    let mut s = [0u8; SECRET_LEN];
    SystemRandom::new()
        .fill(&mut s)
        .expect("the OS random source is available");
    s
}

impl Key {
    fn new(id: u32, secret: [u8; SECRET_LEN]) -> Self {
        Self {
            id,
            hmac: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            secret,
        }
    }
}

impl Keyring {
    /// Keys from `(id, secret)` pairs, the first signing. Ids must differ.
    pub fn from_secrets(pairs: &[(u32, [u8; 32])]) -> Result<Self, KeyFileError> {
        if pairs.is_empty() || pairs.len() > KEYRING_MAX_KEYS {
            return Err(KeyFileError::Keys(format!(
                "{} keys given; 1 to {KEYRING_MAX_KEYS} are accepted",
                pairs.len()
            )));
        }
        for (i, (id, _)) in pairs.iter().enumerate() {
            if pairs[..i].iter().any(|(o, _)| o == id) {
                return Err(KeyFileError::Keys(format!("key id {id} appears twice")));
            }
        }
        Ok(Self {
            keys: pairs.iter().map(|(id, s)| Key::new(*id, *s)).collect(),
        })
    }

    /// One fresh random key with id `id`.
    pub fn generate(id: u32) -> Self {
        Self {
            keys: vec![Key::new(id, random_secret())],
        }
    }

    /// The id of the signing key.
    pub fn signing_id(&self) -> u32 {
        self.keys[0].id
    }

    /// The ids of all keys, the signing one first.
    pub fn ids(&self) -> Vec<u32> {
        self.keys.iter().map(|k| k.id).collect()
    }

    /// HMAC-SHA256 of `data` with the signing key, and that key's id.
    pub fn sign(&self, data: &[u8]) -> (u32, [u8; 32]) {
        self.sign_labelled(&[], data)
    }

    /// HMAC-SHA256 of `label` followed by `data` with the signing key, and
    /// that key's id: how tokens are signed, without joining the two.
    pub fn sign_labelled(&self, label: &[u8], data: &[u8]) -> (u32, [u8; 32]) {
        let k = &self.keys[0];
        let mut ctx = hmac::Context::with_key(&k.hmac);
        ctx.update(label);
        ctx.update(data);
        let mut mac = [0u8; 32];
        mac.copy_from_slice(ctx.sign().as_ref());
        (k.id, mac)
    }

    /// Checks `mac` over `data` with key `key_id`, in constant time.
    pub fn verify(&self, key_id: u32, data: &[u8], mac: &[u8]) -> Result<(), TokenError> {
        let k = self
            .keys
            .iter()
            .find(|k| k.id == key_id)
            .ok_or(TokenError::UnknownKey(key_id))?;
        hmac::verify(&k.hmac, data, mac).map_err(|_| TokenError::BadSignature)
    }

    /// A keyring of the same ids whose secrets are HMAC(secret, `label`):
    /// keys for one purpose (block tokens) that can be handed out without
    /// handing out the master's own (which sign credentials).
    pub fn derive(&self, label: &str) -> Keyring {
        let keys = self
            .keys
            .iter()
            .map(|k| {
                let tag = hmac::sign(&k.hmac, label.as_bytes());
                let mut s = [0u8; SECRET_LEN];
                s.copy_from_slice(tag.as_ref());
                Key::new(k.id, s)
            })
            .collect();
        Keyring { keys }
    }

    /// Keys for one purpose per epoch (rolling block keys): for each of
    /// `epochs` (the first signs) and each key of this ring (the signing one
    /// first), the secret HMAC(key, "`label` epoch `e`"). A derived key's id
    /// is taken from its own secret, so it stays the same across restarts
    /// whatever the position of its parent in the key file (ids that
    /// collide, a 2^-32 chance, keep the first key).
    pub fn derive_epochs(&self, label: &str, epochs: &[u64]) -> Keyring {
        let mut keys: Vec<Key> = Vec::with_capacity(epochs.len() * self.keys.len());
        for e in epochs {
            let text = format!("{label} epoch {e}");
            for k in &self.keys {
                let tag = hmac::sign(&k.hmac, text.as_bytes());
                let mut s = [0u8; SECRET_LEN];
                s.copy_from_slice(tag.as_ref());
                let key = Key::new(0, s);
                let idtag = hmac::sign(&key.hmac, b"eddy key id");
                let id = u32::from_be_bytes([
                    idtag.as_ref()[0],
                    idtag.as_ref()[1],
                    idtag.as_ref()[2],
                    idtag.as_ref()[3],
                ]);
                if keys.len() < KEYRING_MAX_KEYS && !keys.iter().any(|o| o.id == id) {
                    keys.push(Key { id, ..key });
                }
            }
        }
        Keyring { keys }
    }

    /// `(id, secret)` pairs, the signing key first: how derived keys travel
    /// to workers (`from_secrets` rebuilds them).
    pub fn secrets(&self) -> Vec<(u32, [u8; 32])> {
        self.keys.iter().map(|k| (k.id, k.secret)).collect()
    }

    /// Reads the key file at `path`, creating it with one random key (mode
    /// 0600, its directory 0700) when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyFileError> {
        match std::fs::metadata(path) {
            Ok(_) => Self::load(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match Self::create(path) {
                // Another process created it first: use that one.
                Err(KeyFileError::Create { source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists =>
                {
                    Self::load(path)
                }
                r => r,
            },
            Err(source) => Err(KeyFileError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Reads an existing key file; refuses one that group or others may
    /// read or write.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let read = |source| KeyFileError::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::Exposed {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        Self::parse(&text).map_err(|(line, why)| KeyFileError::Invalid {
            path: path.to_path_buf(),
            line,
            why,
        })
    }

    /// The key file's text; an error names the (1-based) line.
    pub fn parse(text: &str) -> Result<Self, (usize, String)> {
        let mut pairs = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut f = line.split_whitespace();
            let (Some(tag), Some(id), Some(hex), None) = (f.next(), f.next(), f.next(), f.next())
            else {
                return Err((n + 1, format!("expected `{LINE_TAG} ID HEX`")));
            };
            if tag != LINE_TAG {
                return Err((n + 1, format!("expected `{LINE_TAG}`, found `{tag}`")));
            }
            let id: u32 = id
                .parse()
                .map_err(|_| (n + 1, "the key id is not a number".to_string()))?;
            let secret = unhex(hex).ok_or((n + 1, "the key is not 64 hex digits".to_string()))?;
            pairs.push((id, secret));
        }
        if pairs.len() > KEY_FILE_MAX_KEYS {
            return Err((
                0,
                format!(
                    "{} keys; a key file holds 1 to {KEY_FILE_MAX_KEYS}",
                    pairs.len()
                ),
            ));
        }
        Self::from_secrets(&pairs).map_err(|e| (0, e.to_string()))
    }

    /// The key file's text for these keys.
    pub fn to_file_text(&self) -> String {
        let mut s = String::from(
            "# Eddy master keys: the first line signs tokens, every line verifies them.\n\
             # Keep this file mode 0600. To rotate: put a new key line first, restart\n\
             # the master, and drop the old line once tokens it signed have expired.\n",
        );
        for k in &self.keys {
            s.push_str(&format!("{LINE_TAG} {} {}\n", k.id, hex(&k.secret)));
        }
        s
    }

    fn create(path: &Path) -> Result<Self, KeyFileError> {
        let create = |source| KeyFileError::Create {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(create)?;
        }
        let ring = Self::generate(1);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(create)?;
        f.write_all(ring.to_file_text().as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(create)?;
        Ok(ring)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; SECRET_LEN]> {
    if s.len() != SECRET_LEN * 2 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; SECRET_LEN];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_created_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sec/master.key");
        let a = Keyring::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        let b = Keyring::load_or_create(&path).unwrap();
        let (id, mac) = a.sign(b"x");
        b.verify(id, b"x", &mac).unwrap();
    }

    #[test]
    fn an_exposed_key_file_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        Keyring::load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Keyring::load(&path).unwrap_err().to_string();
        assert!(e.contains("chmod 600") && e.contains("644"), "{e}");
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_and_signs_with_the_new_key() {
        let old = Keyring::generate(1);
        let (id, mac) = old.sign(b"t");
        let mut pairs = vec![(2, [7u8; 32])];
        pairs.extend(old.secrets());
        let rotated = Keyring::from_secrets(&pairs).unwrap();
        rotated.verify(id, b"t", &mac).unwrap();
        assert_eq!(rotated.sign(b"t").0, 2);
        let text = rotated.to_file_text();
        let back = Keyring::parse(&text).unwrap();
        assert_eq!(back.ids(), vec![2, 1]);
        back.verify(id, b"t", &mac).unwrap();
    }

    #[test]
    fn bad_key_files_name_the_line() {
        for (text, line) in [
            ("eddy-key-v1 1 abc\n", 1),
            ("# c\nnope 1 00\n", 2),
            ("eddy-key-v1 x 00\n", 1),
            (
                &format!(
                    "eddy-key-v1 1 {}\neddy-key-v1 1 {}\n",
                    "0".repeat(64),
                    "1".repeat(64)
                ),
                0,
            ),
            ("", 0),
        ] {
            let e = Keyring::parse(text).unwrap_err();
            assert_eq!(e.0, line, "{text}: {e:?}");
        }
    }

    #[test]
    fn derived_keys_differ_from_their_parents_and_between_labels() {
        let k = Keyring::generate(3);
        let (id, mac) = k.sign(b"m");
        let d = k.derive("block");
        assert_eq!(d.ids(), vec![3]);
        assert_eq!(d.verify(id, b"m", &mac), Err(TokenError::BadSignature));
        let (_, m2) = d.sign(b"m");
        assert!(k.derive("other").verify(3, b"m", &m2).is_err());
        assert!(k.derive("block").verify(3, b"m", &m2).is_ok());
        assert!(!format!("{d:?}").contains(&hex(&d.secrets()[0].1)));
    }

    #[test]
    fn epoch_keys_are_stable_distinct_and_signed_by_the_first() {
        let old = Keyring::generate(1);
        let a = old.derive_epochs("block", &[10, 11, 9]);
        assert_eq!(a.ids().len(), 3);
        // A new file key in front (rotation): the old key's epoch keys keep
        // their ids and secrets, so tokens they signed still verify.
        let mut pairs = vec![(2, [9u8; 32])];
        pairs.extend(old.secrets());
        let rotated = Keyring::from_secrets(&pairs).unwrap();
        let b = rotated.derive_epochs("block", &[10, 11, 9]);
        assert_eq!(b.ids().len(), 6);
        let (id, mac) = a.sign(b"t");
        b.verify(id, b"t", &mac).unwrap();
        assert_ne!(b.signing_id(), a.signing_id(), "the new key signs");
        // Another epoch set: epoch 9's keys are gone.
        let later = rotated.derive_epochs("block", &[12, 13, 11]);
        let (id9, mac9) = old.derive_epochs("block", &[9]).sign(b"t");
        assert!(b.verify(id9, b"t", &mac9).is_ok());
        assert_eq!(
            later.verify(id9, b"t", &mac9),
            Err(TokenError::UnknownKey(id9))
        );
        // Labels separate purposes.
        let other = old.derive_epochs("other", &[10]);
        assert_ne!(other.signing_id(), a.signing_id());
    }

    #[test]
    fn a_key_file_holds_at_most_four_keys() {
        let text: String = (1..=5)
            .map(|i| format!("{LINE_TAG} {i} {}\n", hex(&[i as u8; 32])))
            .collect();
        let e = Keyring::parse(&text).unwrap_err();
        assert!(e.1.contains("1 to 4"), "{e:?}");
    }
}
