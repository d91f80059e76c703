//! Little-endian record encoding shared by the metastore's records.

use crate::error::MasterError;

/// Why a metastore record does not decode (the metastore is corrupt, or
/// was written by a newer master).
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("truncated record")]
    Truncated,
    #[error("record string is not UTF-8")]
    NotUtf8,
    #[error("unknown {what} record version {version}")]
    Version { what: &'static str, version: u8 },
    /// What a mount record of an unknown version says.
    #[error("unknown record version")]
    MountVersion,
    #[error("unknown {what} {value}")]
    Unknown { what: &'static str, value: u8 },
    /// A path in a record that is not a valid path.
    #[error("{what} path: {source}")]
    Path {
        what: &'static str,
        #[source]
        source: Box<MasterError>,
    },
    #[error(transparent)]
    BadPath(Box<MasterError>),
    #[error("mount record for {path}: {source}")]
    Mount {
        path: String,
        #[source]
        source: Box<RecordError>,
    },
}

/// A record that does not decode stops the master's start (INTERNAL).
impl From<RecordError> for MasterError {
    fn from(e: RecordError) -> Self {
        MasterError::Metastore(e.to_string())
    }
}

/// Appends a u16 little-endian length and the UTF-8 bytes. Strings in
/// records are bounded well below 64 KiB (names <= 255 bytes, paths <= 4096).
pub fn put_str(b: &mut Vec<u8>, s: &str) {
    let n = u16::try_from(s.len()).expect("record strings are shorter than 64 KiB");
    b.extend_from_slice(&n.to_le_bytes());
    b.extend_from_slice(s.as_bytes());
}

/// Reads what the `put_*` side wrote; every read checks the remaining length.
pub struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Self { b }
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.b.len() < n {
            return Err(RecordError::Truncated);
        }
        let (head, tail) = self.b.split_at(n);
        self.b = tail;
        Ok(head)
    }
    pub fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, RecordError> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    pub fn u32(&mut self) -> Result<u32, RecordError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    pub fn u64(&mut self) -> Result<u64, RecordError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    pub fn bytes<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }
    pub fn str(&mut self) -> Result<&'a str, RecordError> {
        let n = u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")) as usize;
        std::str::from_utf8(self.take(n)?).map_err(|_| RecordError::NotUtf8)
    }
}
