//! A strict CBOR (RFC 8949) decoder for attestation tokens, and the few
//! encoding helpers the simulator and COSE's `Sig_structure` need.
//!
//! Written by hand rather than taken from `ciborium`/`minicbor` because
//! evidence needs a narrower language than general CBOR, enforced at the
//! parser: definite lengths only, no floats or undefined/simple values,
//! unique map keys, valid UTF-8 text, bounded nesting, no pre-allocation
//! driven by attacker-supplied counts, and byte strings borrowed from the
//! input so that signatures are checked over the bytes as received. It is
//! about 200 lines and has its own fuzz target (`fuzz/cose`).

use crate::ParseError;

/// Nesting deeper than this is refused (tokens nest 4 levels at most).
const MAX_DEPTH: usize = 16;

/// A decoded CBOR data item; byte and text strings borrow the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Uint(u64),
    /// A negative integer `-1 - n`, stored as `n`.
    Nint(u64),
    Bytes(&'a [u8]),
    Text(&'a str),
    Array(Vec<Value<'a>>),
    Map(Vec<(Value<'a>, Value<'a>)>),
    Tag(u64, Box<Value<'a>>),
    Bool(bool),
    Null,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ParseError {
    ParseError::InvalidField {
        field,
        reason: reason.into(),
    }
}

impl<'a> Value<'a> {
    /// The value as a signed integer, when it is one that fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Uint(n) => i64::try_from(n).ok(),
            Value::Nint(n) => i64::try_from(n).ok().map(|n| !n),
            _ => None,
        }
    }

    /// The value of a map entry whose key is the integer `key`.
    pub fn get_int(&self, key: i64) -> Option<&Value<'a>> {
        match self {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_i64() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value of a map entry whose key is the text `key`.
    pub fn get_text(&self, key: &str) -> Option<&Value<'a>> {
        match self {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, Value::Text(t) if *t == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The contents when this is a byte string, else an error naming `field`.
    pub fn bytes(&self, field: &'static str) -> Result<&'a [u8], ParseError> {
        match *self {
            Value::Bytes(b) => Ok(b),
            _ => Err(invalid(field, "expected a byte string")),
        }
    }

    /// The contents when this is a text string.
    pub fn text(&self, field: &'static str) -> Result<&'a str, ParseError> {
        match *self {
            Value::Text(t) => Ok(t),
            _ => Err(invalid(field, "expected a text string")),
        }
    }

    /// The value when this is an unsigned integer.
    pub fn uint(&self, field: &'static str) -> Result<u64, ParseError> {
        match *self {
            Value::Uint(n) => Ok(n),
            _ => Err(invalid(field, "expected an unsigned integer")),
        }
    }

    /// The elements when this is an array.
    pub fn array(&self, field: &'static str) -> Result<&[Value<'a>], ParseError> {
        match self {
            Value::Array(a) => Ok(a),
            _ => Err(invalid(field, "expected an array")),
        }
    }

    /// The entries when this is a map.
    pub fn map(&self, field: &'static str) -> Result<&[(Value<'a>, Value<'a>)], ParseError> {
        match self {
            Value::Map(m) => Ok(m),
            _ => Err(invalid(field, "expected a map")),
        }
    }
}

/// Decodes exactly one data item that spans all of `buf`.
pub fn decode(buf: &[u8]) -> Result<Value<'_>, ParseError> {
    let mut d = Decoder { buf, pos: 0 };
    let v = d.item(0)?;
    let rest = buf.len().saturating_sub(d.pos);
    if rest != 0 {
        return Err(ParseError::TrailingBytes {
            what: "CBOR item",
            count: rest,
        });
    }
    Ok(v)
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    fn take(&mut self, n: u64) -> Result<&'a [u8], ParseError> {
        let truncated = ParseError::Truncated {
            field: "CBOR item",
            offset: self.pos,
            needed: usize::try_from(n).unwrap_or(usize::MAX),
        };
        let n = usize::try_from(n).map_err(|_| truncated.clone())?;
        let end = self.pos.checked_add(n).ok_or(truncated.clone())?;
        let out = self.buf.get(self.pos..end).ok_or(truncated)?;
        self.pos = end;
        Ok(out)
    }

    /// Reads an initial byte and its argument: (major type, argument).
    fn head(&mut self) -> Result<(u8, u64), ParseError> {
        let at = self.pos;
        let first = *self.take(1)?.first().ok_or(ParseError::Truncated {
            field: "CBOR item",
            offset: at,
            needed: 1,
        })?;
        let major = first.wrapping_shr(5);
        let info = first & 0x1f;
        let arg = match info {
            0..=23 => u64::from(info),
            24..=27 => {
                let n: u64 = match info {
                    24 => 1,
                    25 => 2,
                    26 => 4,
                    _ => 8,
                };
                let mut be = [0u8; 8];
                for (dst, src) in be.iter_mut().rev().zip(self.take(n)?.iter().rev()) {
                    *dst = *src;
                }
                u64::from_be_bytes(be)
            }
            31 => return Err(invalid("CBOR item", "indefinite lengths are not accepted")),
            _ => {
                return Err(invalid(
                    "CBOR item",
                    format!("reserved additional info {info}"),
                ));
            }
        };
        Ok((major, arg))
    }

    fn item(&mut self, depth: usize) -> Result<Value<'a>, ParseError> {
        if depth > MAX_DEPTH {
            return Err(invalid("CBOR item", "nested too deeply"));
        }
        let (major, arg) = self.head()?;
        Ok(match major {
            0 => Value::Uint(arg),
            1 => Value::Nint(arg),
            2 => Value::Bytes(self.take(arg)?),
            3 => Value::Text(
                std::str::from_utf8(self.take(arg)?)
                    .map_err(|_| invalid("CBOR text", "not valid UTF-8"))?,
            ),
            4 => {
                // Each element takes at least one byte: no allocation ahead
                // of the input that would back it.
                let mut items = Vec::new();
                for _ in 0..arg {
                    items.push(self.item(depth.saturating_add(1))?);
                }
                Value::Array(items)
            }
            5 => {
                let mut entries: Vec<(Value<'a>, Value<'a>)> = Vec::new();
                for _ in 0..arg {
                    let k = self.item(depth.saturating_add(1))?;
                    if !matches!(k, Value::Uint(_) | Value::Nint(_) | Value::Text(_)) {
                        return Err(invalid("CBOR map", "keys must be integers or text"));
                    }
                    if entries.iter().any(|(e, _)| *e == k) {
                        return Err(invalid("CBOR map", "duplicate key"));
                    }
                    let v = self.item(depth.saturating_add(1))?;
                    entries.push((k, v));
                }
                Value::Map(entries)
            }
            6 => Value::Tag(arg, Box::new(self.item(depth.saturating_add(1))?)),
            _ => match arg {
                20 => Value::Bool(false),
                21 => Value::Bool(true),
                22 => Value::Null,
                _ => {
                    return Err(invalid(
                        "CBOR item",
                        "floats and simple values other than true/false/null are not accepted",
                    ));
                }
            },
        })
    }
}

/// Encoding helpers (preferred serialisation: shortest argument form).
pub mod enc {
    /// Appends a head of `major` type with argument `arg`.
    pub fn head(out: &mut Vec<u8>, major: u8, arg: u64) {
        let m = major.wrapping_shl(5);
        match arg {
            0..=23 => out.push(m | arg as u8),
            24..=0xff => out.extend([m | 24, arg as u8]),
            0x100..=0xffff => {
                out.push(m | 25);
                out.extend((arg as u16).to_be_bytes());
            }
            0x1_0000..=0xffff_ffff => {
                out.push(m | 26);
                out.extend((arg as u32).to_be_bytes());
            }
            _ => {
                out.push(m | 27);
                out.extend(arg.to_be_bytes());
            }
        }
    }

    /// A signed integer.
    pub fn int(out: &mut Vec<u8>, v: i64) {
        if v >= 0 {
            head(out, 0, v.unsigned_abs());
        } else {
            head(out, 1, (!v).unsigned_abs());
        }
    }

    /// A byte string.
    pub fn bytes(out: &mut Vec<u8>, b: &[u8]) {
        head(out, 2, b.len() as u64);
        out.extend_from_slice(b);
    }

    /// A text string.
    pub fn text(out: &mut Vec<u8>, t: &str) {
        head(out, 3, t.len() as u64);
        out.extend_from_slice(t.as_bytes());
    }

    /// An array header for `n` elements (the elements follow).
    pub fn array(out: &mut Vec<u8>, n: usize) {
        head(out, 4, n as u64);
    }

    /// A map header for `n` entries (the key/value pairs follow).
    pub fn map(out: &mut Vec<u8>, n: usize) {
        head(out, 5, n as u64);
    }

    /// A tag (the tagged item follows).
    pub fn tag(out: &mut Vec<u8>, tag: u64) {
        head(out, 6, tag);
    }

    /// `null`.
    pub fn null(out: &mut Vec<u8>) {
        out.push(0xf6);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_the_shapes_tokens_use() {
        let mut b = Vec::new();
        enc::tag(&mut b, 399);
        enc::map(&mut b, 2);
        enc::int(&mut b, -35);
        enc::bytes(&mut b, &[1, 2, 3]);
        enc::text(&mut b, "pcrs");
        enc::array(&mut b, 3);
        enc::int(&mut b, 70000);
        enc::null(&mut b);
        enc::text(&mut b, "x");
        let v = decode(&b).unwrap();
        let Value::Tag(399, inner) = v else {
            panic!("tag")
        };
        assert_eq!(inner.get_int(-35), Some(&Value::Bytes(&[1, 2, 3])));
        let arr = inner.get_text("pcrs").unwrap().array("pcrs").unwrap();
        assert_eq!(arr[0], Value::Uint(70000));
        assert_eq!(arr[1], Value::Null);
    }

    #[test]
    fn refuses_what_evidence_never_needs() {
        // Indefinite-length byte string.
        assert!(decode(&[0x5f, 0x41, 0x00, 0xff]).is_err());
        // Float.
        assert!(decode(&[0xf9, 0x3c, 0x00]).is_err());
        // Duplicate map key.
        assert!(decode(&[0xa2, 0x01, 0x01, 0x01, 0x02]).is_err());
        // Trailing byte.
        assert!(decode(&[0x01, 0x01]).is_err());
        // Length beyond the input (no allocation, no panic).
        assert!(decode(&[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode(&[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
        // Invalid UTF-8 text.
        assert!(decode(&[0x61, 0xff]).is_err());
        // Deep nesting.
        assert!(decode(&[0x81; 40]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = decode(&bytes);
        }
    }
}
