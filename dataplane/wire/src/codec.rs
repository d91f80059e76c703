//! Little-endian body encoding helpers.

/// Appends fields to a frame body.
#[derive(Default)]
pub struct BodyWriter(pub Vec<u8>);

impl BodyWriter {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// `u16` length, then the UTF-8 bytes (cut at 65535 bytes on a char boundary).
    pub fn str(&mut self, s: &str) -> &mut Self {
        let mut end = s.len().min(u16::MAX as usize);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.u16(end as u16);
        self.0.extend_from_slice(&s.as_bytes()[..end]);
        self
    }
}

/// Why a frame body does not decode (the reason of
/// [`crate::WireError::Malformed`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body ends {0} bytes early")]
    Short(usize),
    #[error("string is not UTF-8")]
    NotUtf8,
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// A field holds a number its enum does not have.
    #[error("unknown {field} {value}")]
    Unknown { field: &'static str, value: u8 },
    /// The fields decode but do not make a valid frame together.
    #[error("{0}")]
    Invalid(&'static str),
}

/// Reads fields from a frame body; every read checks the bounds.
pub struct BodyReader<'a> {
    b: &'a [u8],
}

impl<'a> BodyReader<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Self { b }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], BodyError> {
        if self.b.len() < n {
            return Err(BodyError::Short(n - self.b.len()));
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Ok(h)
    }
    pub fn take_bytes(&mut self, n: usize) -> Result<&'a [u8], BodyError> {
        self.take(n)
    }
    pub fn u8(&mut self) -> Result<u8, BodyError> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, BodyError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    pub fn u32(&mut self) -> Result<u32, BodyError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    pub fn u64(&mut self) -> Result<u64, BodyError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    pub fn str(&mut self) -> Result<String, BodyError> {
        let n = self.u16()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| BodyError::NotUtf8)
    }
    /// Fails if bytes are left over: a body is exactly its fields.
    pub fn end(&self) -> Result<(), BodyError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(BodyError::Trailing(self.b.len()))
        }
    }
}
