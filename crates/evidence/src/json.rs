//! A strict pull reader for JSON documents of a known shape, used where
//! evidence arrives as JSON made mostly of byte strings written as arrays
//! of numbers (CoCo SNP evidence: ≈ 3,500 numbers in 11–12 KB of text).
//!
//! Written by hand because serde_json cannot read such a document in one
//! pass: a byte array read through serde's sequence path costs one
//! `SeqAccess` step and one integer deserialisation per element, and
//! capturing it as raw text first (`RawValue`) scans every number once to
//! find the array's end and then again to read it. In the key broker that
//! was 8 % of the CPU of a handshake, on top of the scan of the same
//! evidence inside the request body. This reader walks the text once.
//!
//! It accepts a subset of JSON and nothing that is not JSON:
//! * whitespace is JSON's (space, tab, line feed, carriage return);
//! * strings must be valid UTF-8 without control characters, and may not
//!   contain escape sequences (the documents read with it never need one;
//!   a string with a backslash is refused with a clear error rather than
//!   read differently from other JSON readers);
//! * numbers are read only where the caller expects an unsigned integer:
//!   `0` or a digit 1–9 followed by digits, no sign, fraction or exponent,
//!   no leading zeros, within the caller's bound;
//! * objects report their keys to the caller, which refuses unknown and
//!   repeated ones.
//!
//! Errors carry the byte offset, never the document's text.

/// Why a document could not be read: what was expected, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JsonError {
    pub(crate) at: usize,
    pub(crate) what: String,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

pub(crate) type Result<T> = std::result::Result<T, JsonError>;

pub(crate) struct Reader<'a> {
    text: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(text: &'a [u8]) -> Self {
        Reader { text, pos: 0 }
    }

    /// An error at the current position.
    pub(crate) fn error<T>(&self, what: impl Into<String>) -> Result<T> {
        Err(JsonError {
            at: self.pos,
            what: what.into(),
        })
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.get(self.pos) {
            self.pos = self.pos.saturating_add(1);
        }
    }

    /// The next character after whitespace, not consumed.
    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.text.get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> Result<()> {
        if self.peek() == Some(c) {
            self.pos = self.pos.saturating_add(1);
            Ok(())
        } else {
            self.error(format!("expected '{}'", char::from(c)))
        }
    }

    /// Only whitespace may follow the document.
    pub(crate) fn end(mut self) -> Result<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => self.error("trailing characters after the document"),
        }
    }

    /// A string without escape sequences.
    pub(crate) fn string(&mut self) -> Result<&'a str> {
        self.eat(b'"')?;
        let start = self.pos;
        loop {
            match self.text.get(self.pos) {
                None => return self.error("unterminated string"),
                Some(b'"') => break,
                Some(b'\\') => return self.error("escape sequences are not accepted in strings"),
                Some(c) if *c < 0x20 => return self.error("control character in a string"),
                Some(_) => self.pos = self.pos.saturating_add(1),
            }
        }
        let s = self.text.get(start..self.pos).unwrap_or_default();
        let s = match std::str::from_utf8(s) {
            Ok(s) => s,
            Err(e) => {
                self.pos = start.saturating_add(e.valid_up_to());
                return self.error("a string is not valid UTF-8");
            }
        };
        self.pos = self.pos.saturating_add(1);
        Ok(s)
    }

    /// `null`, consumed if it is next.
    pub(crate) fn null(&mut self) -> bool {
        self.skip_ws();
        let next = self.text.get(self.pos..self.pos.saturating_add(4));
        if next == Some(b"null") {
            self.pos = self.pos.saturating_add(4);
            true
        } else {
            false
        }
    }

    /// The digits of a JSON integer without sign, fraction or exponent, at
    /// most `max`.
    pub(crate) fn uint(&mut self, max: u64) -> Result<u64> {
        self.skip_ws();
        let start = self.pos;
        let mut value: u64 = 0;
        while let Some(c) = self.text.get(self.pos).filter(|c| c.is_ascii_digit()) {
            if self.pos > start && value == 0 {
                return self.error("a number has a leading zero");
            }
            value = match value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(c.wrapping_sub(b'0'))))
            {
                Some(v) => v,
                None => return self.error("a number is out of range"),
            };
            self.pos = self.pos.saturating_add(1);
        }
        if self.pos == start {
            return self.error("expected an unsigned integer");
        }
        if let Some(b'.' | b'e' | b'E') = self.text.get(self.pos) {
            return self.error("expected an integer, not a fraction or exponent");
        }
        if value > max {
            self.pos = start;
            return self.error(format!("a number is out of range (at most {max})"));
        }
        Ok(value)
    }

    /// An integer 0–255.
    pub(crate) fn u8(&mut self) -> Result<u8> {
        let v = self.uint(u8::MAX.into())?;
        u8::try_from(v).or_else(|_| self.error("a number is out of range"))
    }

    /// An integer 0–2³²−1.
    pub(crate) fn u32(&mut self) -> Result<u32> {
        let v = self.uint(u32::MAX.into())?;
        u32::try_from(v).or_else(|_| self.error("a number is out of range"))
    }

    /// `null` or an integer 0–255.
    pub(crate) fn opt_u8(&mut self) -> Result<Option<u8>> {
        if self.null() {
            Ok(None)
        } else {
            self.u8().map(Some)
        }
    }

    /// The next character after whitespace is `c` (not consumed).
    pub(crate) fn next_is(&mut self, c: u8) -> bool {
        self.peek() == Some(c)
    }

    /// `null` or an integer of at most `max`.
    pub(crate) fn opt_uint(&mut self, max: u64) -> Result<Option<u64>> {
        if self.null() {
            Ok(None)
        } else {
            self.uint(max).map(Some)
        }
    }

    /// An array of integers 0–255: a byte string as the `sev` crate's
    /// serde form writes it. The hot loop of this reader.
    pub(crate) fn bytes(&mut self) -> Result<Vec<u8>> {
        self.eat(b'[')?;
        // Most byte strings of a report are 16–72 bytes; certificates grow
        // by doubling.
        let mut out = Vec::with_capacity(64);
        if self.closes(b']') {
            return Ok(out);
        }
        const WS: [u8; 4] = [b' ', b'\t', b'\n', b'\r'];
        let t = self.text;
        let mut i = self.pos;
        let result = loop {
            while t.get(i).is_some_and(|c| WS.contains(c)) {
                i = i.saturating_add(1);
            }
            // One to three digits, no leading zero, at most 255.
            let start = i;
            let mut value = match t.get(i) {
                Some(c @ b'0'..=b'9') => u32::from(c.wrapping_sub(b'0')),
                _ => break Err("expected an array of integers 0-255"),
            };
            i = i.saturating_add(1);
            if value != 0 {
                for _ in 0..2 {
                    match t.get(i) {
                        Some(c @ b'0'..=b'9') => {
                            value = value
                                .wrapping_mul(10)
                                .wrapping_add(u32::from(c.wrapping_sub(b'0')));
                            i = i.saturating_add(1);
                        }
                        _ => break,
                    }
                }
            }
            if let Some(b'0'..=b'9') = t.get(i) {
                break Err("expected an array of integers 0-255");
            }
            let Ok(byte) = u8::try_from(value) else {
                i = start;
                break Err("a byte is out of range (0-255)");
            };
            out.push(byte);
            while t.get(i).is_some_and(|c| WS.contains(c)) {
                i = i.saturating_add(1);
            }
            match t.get(i) {
                Some(b',') => i = i.saturating_add(1),
                Some(b']') => {
                    i = i.saturating_add(1);
                    break Ok(());
                }
                _ => break Err("expected ',' or ']' in an array of bytes"),
            }
        };
        self.pos = i;
        match result {
            Ok(()) => Ok(out),
            Err(what) => self.error(what),
        }
    }

    /// An array: `element` reads each element.
    pub(crate) fn array(&mut self, mut element: impl FnMut(&mut Self) -> Result<()>) -> Result<()> {
        self.eat(b'[')?;
        if self.closes(b']') {
            return Ok(());
        }
        loop {
            element(self)?;
            if self.separator(b']')? {
                return Ok(());
            }
        }
    }

    /// An object: `member` is called with each key and reads its value.
    pub(crate) fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, &'a str) -> Result<()>,
    ) -> Result<()> {
        self.eat(b'{')?;
        if self.closes(b'}') {
            return Ok(());
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            member(self, key)?;
            if self.separator(b'}')? {
                return Ok(());
            }
        }
    }

    /// An object whose keys are among `names`, each at most once, and all
    /// but the `optional` ones present: `member` is called with the index
    /// in `names` of each key and reads its value.
    pub(crate) fn members(
        &mut self,
        names: &'static [&'static str],
        optional: &[&str],
        mut member: impl FnMut(&mut Self, usize) -> Result<()>,
    ) -> Result<()> {
        let mut fields = Fields::new(names);
        self.object(|r, key| {
            let i = fields.take(r, key)?;
            member(r, i)
        })?;
        fields.require(self, optional)
    }

    /// Consumes `close` if it is next (an empty array or object).
    fn closes(&mut self, close: u8) -> bool {
        let next = self.peek() == Some(close);
        if next {
            self.pos = self.pos.saturating_add(1);
        }
        next
    }

    /// After an element: `,` (another follows) or `close` (true: the end).
    fn separator(&mut self, close: u8) -> Result<bool> {
        match self.peek() {
            Some(b',') => {
                self.pos = self.pos.saturating_add(1);
                Ok(false)
            }
            Some(c) if c == close => {
                self.pos = self.pos.saturating_add(1);
                Ok(true)
            }
            _ => self.error(format!("expected ',' or '{}'", char::from(close))),
        }
    }
}

/// The members of an object with a fixed set of keys, each allowed once.
struct Fields {
    names: &'static [&'static str],
    seen: u64,
}

impl Fields {
    /// At most 64 names.
    const fn new(names: &'static [&'static str]) -> Self {
        Fields { names, seen: 0 }
    }

    /// The index of `key` among the names, the first time it is seen.
    fn take(&mut self, r: &Reader<'_>, key: &str) -> Result<usize> {
        let Some(i) = self.names.iter().position(|n| *n == key) else {
            // The key is named only when it looks like a field name: the
            // error may be reported to whoever sent the document.
            let named = key.len() <= 40
                && key
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
            return if named {
                r.error(format!("unknown field {key:?}"))
            } else {
                r.error("unknown field")
            };
        };
        // At most 64 names (`Fields::new`); a longer list is refused here
        // rather than shifting past the mask.
        let Some(bit) = u32::try_from(i).ok().and_then(|i| 1u64.checked_shl(i)) else {
            return r.error("too many fields for one object");
        };
        if self.seen & bit != 0 {
            return r.error(format!("duplicate field {key:?}"));
        }
        self.seen |= bit;
        Ok(i)
    }

    /// Fails unless every name not in `optional` was seen.
    fn require(&self, r: &Reader<'_>, optional: &[&str]) -> Result<()> {
        for (i, name) in self.names.iter().enumerate() {
            let seen = u32::try_from(i)
                .ok()
                .and_then(|i| 1u64.checked_shl(i))
                .is_some_and(|bit| self.seen & bit != 0);
            if !seen && !optional.contains(name) {
                return r.error(format!("missing field {name:?}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(text: &str) -> Result<Vec<u8>> {
        let mut r = Reader::new(text.as_bytes());
        let v = r.bytes()?;
        r.end()?;
        Ok(v)
    }

    fn uint(text: &str, max: u64) -> Result<u64> {
        let mut r = Reader::new(text.as_bytes());
        let v = r.uint(max)?;
        r.end()?;
        Ok(v)
    }

    #[test]
    fn byte_arrays_read_exactly_what_serde_reads() {
        for ok in [
            "[]",
            " [ ] ",
            "[0]",
            "[255,0,7]",
            "[ 1 ,\n\t2\r, 3 ]",
            "[10, 100, 200]",
        ] {
            let want: Vec<u8> = serde_json::from_str(ok).unwrap();
            assert_eq!(bytes(ok).unwrap(), want, "{ok}");
        }
        for bad in [
            "", "[", "]", "[256]", "[1000]", "[-1]", "[1.0]", "[1e2]", "[1,]", "[,1]", "[1 2]",
            "[\"1\"]", "[[1]]", "[null]", "[true]", "{}", "1", "[1]x", "[0001]", "[01]", "[00]",
            "[1\x0c]",
        ] {
            assert!(bytes(bad).is_err(), "{bad:?} was accepted");
            assert!(
                serde_json::from_str::<Vec<u8>>(bad).is_err(),
                "{bad:?} serde"
            );
        }
    }

    #[test]
    fn integers_are_json_integers_within_bounds() {
        assert_eq!(uint("0", 0), Ok(0));
        assert_eq!(uint(" 18446744073709551615 ", u64::MAX), Ok(u64::MAX));
        assert_eq!(uint("4294967295", u32::MAX.into()), Ok(u64::from(u32::MAX)));
        for (bad, max) in [
            ("18446744073709551616", u64::MAX),
            ("4294967296", u64::from(u32::MAX)),
            ("256", 255),
            ("-1", 255),
            ("-0", 255),
            ("01", 255),
            ("1.0", 255),
            ("1e1", 255),
            ("1E1", 255),
            ("", 255),
            ("\"1\"", 255),
            ("+1", 255),
        ] {
            assert!(uint(bad, max).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn strings_objects_and_errors() {
        let mut r = Reader::new(br#" {"a": "x\u00e9", "b": null} "#);
        let err = r.object(|r, _| r.string().map(|_| ())).unwrap_err();
        assert!(err.what.contains("escape"), "{err}");

        let text = "{\"a\":\"é\",\"b\":null,\"c\":[]}";
        let mut r = Reader::new(text.as_bytes());
        let mut fields = Fields::new(&["a", "b", "c"]);
        let mut got = Vec::new();
        r.object(|r, key| {
            match fields.take(r, key)? {
                0 => got.push(r.string()?.to_string()),
                1 => assert!(r.null()),
                _ => r.array(|_| unreachable!())?,
            }
            Ok(())
        })
        .unwrap();
        fields.require(&r, &[]).unwrap();
        r.end().unwrap();
        assert_eq!(got, ["é"]);

        for (bad, what) in [
            (r#"{"a":"x","a":"y"}"#, "duplicate field"),
            (r#"{"z":"x"}"#, "unknown field"),
            (r#"{"b":null}"#, "missing field \"a\""),
            (r#"{"a":"x" "b":null}"#, "expected ','"),
            ("{\"a\":\"\x01\"}", "control character"),
            (r#"{"a":"x"} x"#, "trailing"),
            (r#"{"a":"x"#, "unterminated"),
        ] {
            let mut r = Reader::new(bad.as_bytes());
            let mut fields = Fields::new(&["a", "b"]);
            let res = r
                .object(|r, key| {
                    match fields.take(r, key)? {
                        0 => {
                            r.string()?;
                        }
                        _ => {
                            r.null();
                        }
                    }
                    Ok(())
                })
                .and_then(|()| fields.require(&r, &["b"]))
                .and_then(|()| r.end());
            let err = res.unwrap_err();
            assert!(err.what.contains(what), "{bad}: {err}");
        }
        let mut r = Reader::new(&[b'"', 0xff, b'"']);
        assert!(r.string().unwrap_err().what.contains("UTF-8"));
    }
}
