//! A cursor over untrusted bytes, in the manner of rustls' `codec::Reader`:
//! every read is bounds-checked, no read panics, and `finish` refuses trailing
//! bytes. Every binary parser in Veil reads through it.

use crate::ParseError;

/// A bounds-checked cursor over a byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at offset 0.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// The current offset from the start of the input.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], ParseError> {
        let end = self.pos.checked_add(n).ok_or(ParseError::Truncated {
            field,
            offset: self.pos,
            needed: n,
        })?;
        let out = self.buf.get(self.pos..end).ok_or(ParseError::Truncated {
            field,
            offset: self.pos,
            needed: n,
        })?;
        self.pos = end;
        Ok(out)
    }

    /// Takes the next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], ParseError> {
        let s = self.take(field, N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, ParseError> {
        Ok(u8::from_le_bytes(self.array::<1>(field)?))
    }

    /// Reads a little-endian `u16`.
    pub fn u16_le(&mut self, field: &'static str) -> Result<u16, ParseError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    /// Reads a big-endian `u16` (TPM structures are big-endian).
    pub fn u16_be(&mut self, field: &'static str) -> Result<u16, ParseError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    /// Reads a big-endian `u32`.
    pub fn u32_be(&mut self, field: &'static str) -> Result<u32, ParseError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// Reads a big-endian `u64`.
    pub fn u64_be(&mut self, field: &'static str) -> Result<u64, ParseError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// Reads a little-endian `u32`.
    pub fn u32_le(&mut self, field: &'static str) -> Result<u32, ParseError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    /// Reads a little-endian `u64`.
    pub fn u64_le(&mut self, field: &'static str) -> Result<u64, ParseError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// Reads `n` bytes that must all be zero (a reserved field).
    pub fn zeros(&mut self, field: &'static str, n: usize) -> Result<(), ParseError> {
        let offset = self.pos;
        let s = self.take(field, n)?;
        if s.iter().any(|b| *b != 0) {
            return Err(ParseError::ReservedNonZero { field, offset });
        }
        Ok(())
    }

    /// Succeeds only if every byte has been consumed.
    pub fn finish(self, what: &'static str) -> Result<(), ParseError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(ParseError::TrailingBytes { what, count }),
        }
    }
}

/// The write-side twin of [`Reader`], used by encoders (the simulator and the
/// CoCo JSON → bytes conversion). Writes into a fixed buffer and fails instead
/// of growing or panicking.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// Starts writing at offset 0.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Writes `bytes` at the cursor.
    pub fn put(&mut self, field: &'static str, bytes: &[u8]) -> Result<(), ParseError> {
        let end = self
            .pos
            .checked_add(bytes.len())
            .ok_or(ParseError::Truncated {
                field,
                offset: self.pos,
                needed: bytes.len(),
            })?;
        let dst = self
            .buf
            .get_mut(self.pos..end)
            .ok_or(ParseError::Truncated {
                field,
                offset: self.pos,
                needed: bytes.len(),
            })?;
        dst.copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    /// Writes `n` zero bytes.
    pub fn zeros(&mut self, field: &'static str, n: usize) -> Result<(), ParseError> {
        let end = self.pos.checked_add(n).ok_or(ParseError::Truncated {
            field,
            offset: self.pos,
            needed: n,
        })?;
        let dst = self
            .buf
            .get_mut(self.pos..end)
            .ok_or(ParseError::Truncated {
                field,
                offset: self.pos,
                needed: n,
            })?;
        dst.fill(0);
        self.pos = end;
        Ok(())
    }

    /// The current offset.
    pub fn offset(&self) -> usize {
        self.pos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_refuses_overrun() {
        let data = [1u8, 0, 2, 0, 0, 0, 0];
        let mut r = Reader::new(&data);
        assert_eq!(r.u16_le("a").unwrap(), 1);
        assert_eq!(r.u32_le("b").unwrap(), 2);
        assert!(matches!(
            r.u16_le("c"),
            Err(ParseError::Truncated {
                field: "c",
                offset: 6,
                needed: 2
            })
        ));
    }

    #[test]
    fn zeros_and_trailing() {
        let data = [0u8, 0, 1];
        let mut r = Reader::new(&data);
        r.zeros("z", 2).unwrap();
        assert_eq!(
            r.clone().finish("x"),
            Err(ParseError::TrailingBytes {
                what: "x",
                count: 1
            })
        );
        assert_eq!(
            r.zeros("z2", 1),
            Err(ParseError::ReservedNonZero {
                field: "z2",
                offset: 2
            })
        );
    }

    #[test]
    fn huge_take_does_not_overflow() {
        let data = [0u8; 4];
        let mut r = Reader::new(&data);
        r.take("a", 2).unwrap();
        assert!(r.take("b", usize::MAX).is_err());
    }
}
