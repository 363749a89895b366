//! A strict, allocation-light check that a line is already in canonical form.
//!
//! `line == canonical(parse(line))` is the definition; this module decides it directly on the
//! bytes, without building a `serde_json::Value`, which makes verification several times
//! faster. It accepts exactly the canonical lines: objects with keys in strictly increasing
//! order, no whitespace, only the canonical string escapes, integers in 64-bit range without
//! `-0` or leading zeros, and floats whose text is the canonical form of the value it denotes.
//! The `canonical_check_agrees_with_definition` property test compares it with the definition.

use std::borrow::Cow;

use crate::canonical::write_f64;

/// Maximum nesting depth of arrays and objects (as in `serde_json`).
const MAX_DEPTH: usize = 128;

/// Top-level members of a canonical object: raw key bytes (between the quotes) and raw value
/// bytes.
pub(crate) type Members<'a> = Vec<(&'a [u8], &'a [u8])>;

/// Check that `line` is one canonical JSON object; return its top-level members.
///
/// `utf8_checked` says the caller has already validated `line` as UTF-8.
pub(crate) fn canonical_object(line: &[u8], utf8_checked: bool) -> Result<Members<'_>, String> {
    if !utf8_checked {
        std::str::from_utf8(line).map_err(|e| format!("not valid UTF-8: {e}"))?;
    }
    let mut p = Parser {
        b: line,
        i: 0,
        fbuf: Vec::with_capacity(32),
    };
    if p.peek() != Some(b'{') {
        return Err("a record must be a JSON object starting with `{`".into());
    }
    let mut members = Vec::with_capacity(12);
    p.object(0, Some(&mut members))?;
    if p.i != line.len() {
        return Err(format!(
            "unexpected bytes after the record object at byte {}",
            p.i
        ));
    }
    Ok(members)
}

/// Whether `bytes` is exactly the canonical serialisation of some JSON value.
#[cfg(test)]
pub(crate) fn is_canonical(bytes: &[u8]) -> bool {
    if std::str::from_utf8(bytes).is_err() {
        return false;
    }
    let mut p = Parser {
        b: bytes,
        i: 0,
        fbuf: Vec::new(),
    };
    p.value(0).is_ok() && p.i == bytes.len()
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
    fbuf: Vec<u8>,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!(
            "{what} at byte {} (the line is not in canonical form)",
            self.i
        ))
    }

    fn value(&mut self, depth: usize) -> Result<(), String> {
        match self.peek() {
            Some(b'{') => self.object(depth + 1, None),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string().map(drop),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => self.err("expected a JSON value"),
        }
    }

    fn literal(&mut self, lit: &[u8]) -> Result<(), String> {
        if self.b[self.i..].starts_with(lit) {
            self.i += lit.len();
            Ok(())
        } else {
            self.err("invalid literal")
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return self.err("nesting too deep");
        }
        self.i += 1;
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.value(depth)?;
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return self.err("expected `,` or `]`"),
            }
        }
    }

    fn object(
        &mut self,
        depth: usize,
        mut members: Option<&mut Members<'a>>,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return self.err("nesting too deep");
        }
        self.i += 1;
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        let mut prev: Option<Cow<'a, [u8]>> = None;
        loop {
            if self.peek() != Some(b'"') {
                return self.err("expected a string key");
            }
            let (start, end, escaped) = self.string()?;
            let b = self.b;
            let raw = &b[start..end];
            // Compare decoded keys; without escapes the raw bytes are the key.
            let key: Cow<'a, [u8]> = if escaped {
                Cow::Owned(decode(raw))
            } else {
                Cow::Borrowed(raw)
            };
            if prev.as_ref().is_some_and(|p| **p >= *key) {
                return self.err("object keys are not unique and sorted");
            }
            prev = Some(key);
            if self.peek() != Some(b':') {
                return self.err("expected `:`");
            }
            self.i += 1;
            let vstart = self.i;
            self.value(depth)?;
            if let Some(m) = members.as_deref_mut() {
                m.push((raw, &self.b[vstart..self.i]));
            }
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return self.err("expected `,` or `}`"),
            }
        }
    }

    /// Scan a string starting at `"`; returns the raw content range and whether it has escapes.
    fn string(&mut self) -> Result<(usize, usize, bool), String> {
        self.i += 1;
        let start = self.i;
        let mut escaped = false;
        loop {
            let Some(c) = self.peek() else {
                return self.err("unterminated string");
            };
            match c {
                b'"' => {
                    let end = self.i;
                    self.i += 1;
                    return Ok((start, end, escaped));
                }
                b'\\' => {
                    escaped = true;
                    match self.b.get(self.i + 1) {
                        Some(b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 2,
                        Some(b'u') => {
                            let hex = self.b.get(self.i + 2..self.i + 6).unwrap_or(&[]);
                            let ok = hex.len() == 4
                                && hex[0] == b'0'
                                && hex[1] == b'0'
                                && matches!(hex[2], b'0' | b'1')
                                && (hex[3].is_ascii_digit() || (b'a'..=b'f').contains(&hex[3]));
                            let code = if ok {
                                u8::from_str_radix(
                                    std::str::from_utf8(&hex[2..]).unwrap_or("ff"),
                                    16,
                                )
                                .ok()
                            } else {
                                None
                            };
                            match code {
                                Some(c)
                                    if c < 0x20
                                        && !matches!(c, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) =>
                                {
                                    self.i += 6
                                }
                                _ => return self.err("non-canonical `\\u` escape"),
                            }
                        }
                        _ => return self.err("non-canonical escape"),
                    }
                }
                0x00..=0x1f => return self.err("unescaped control character in a string"),
                _ => self.i += 1,
            }
        }
    }

    fn number(&mut self) -> Result<(), String> {
        let start = self.i;
        while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        let text = &self.b[start..self.i];
        let is_float = text.iter().any(|c| matches!(c, b'.' | b'e' | b'E'));
        if !is_float {
            let digits = text.strip_prefix(b"-").unwrap_or(text);
            let ok = !digits.is_empty()
                && digits.iter().all(u8::is_ascii_digit)
                && (digits == b"0" || digits[0] != b'0')
                && text != b"-0";
            let s = std::str::from_utf8(text).unwrap_or("x");
            if ok && (s.parse::<u64>().is_ok() || s.parse::<i64>().is_ok()) {
                return Ok(());
            }
            return self.err("non-canonical integer");
        }
        let Some(x) = std::str::from_utf8(text)
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|x| x.is_finite())
        else {
            return self.err("invalid number");
        };
        self.fbuf.clear();
        write_f64(x, &mut self.fbuf);
        if self.fbuf.as_slice() == text {
            Ok(())
        } else {
            self.err("non-canonical number")
        }
    }
}

/// Decode the canonical escapes of a raw string body (only called for keys with escapes).
fn decode(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' && i + 1 < raw.len() {
            let c = raw[i + 1];
            let (byte, len) = match c {
                b'b' => (0x08, 2),
                b'f' => (0x0c, 2),
                b'n' => (b'\n', 2),
                b'r' => (b'\r', 2),
                b't' => (b'\t', 2),
                b'u' => (
                    raw.get(i + 4..i + 6)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .unwrap_or(0),
                    6,
                ),
                other => (other, 2),
            };
            out.push(byte);
            i += len;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngSeed};
    use serde_json::Value;

    use super::is_canonical;
    use crate::canonical::write_canonical;

    /// The definition: the bytes parse and re-serialise to themselves.
    fn by_definition(bytes: &[u8]) -> bool {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(v) => {
                let mut out = Vec::new();
                write_canonical(&v, &mut out);
                out == bytes
            }
            Err(_) => false,
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |x| x.is_finite())
                .prop_map(Value::from),
            "[a-z\\\\\"\u{0}-\u{1f}é✓]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::btree_map("[a-c\\\\\u{1}é]{0,3}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(Config { cases: 1000, rng_seed: RngSeed::Fixed(0x5eed_0003), failure_persistence: None, ..Config::default() })]

        #[test]
        fn canonical_check_agrees_with_definition(v in json_value(), pos in 0usize..10_000, byte in any::<u8>()) {
            let mut bytes = Vec::new();
            write_canonical(&v, &mut bytes);
            prop_assert!(is_canonical(&bytes), "{}", String::from_utf8_lossy(&bytes));
            // A one-byte variation: both checks must agree on it.
            let mut changed = bytes.clone();
            if !changed.is_empty() {
                let p = pos % changed.len();
                changed[p] = byte;
            }
            prop_assert_eq!(is_canonical(&changed), by_definition(&changed), "{}", String::from_utf8_lossy(&changed));
        }
    }

    #[test]
    fn rejects_non_canonical_forms() {
        for bad in [
            &b"{\"b\":1,\"a\":2}"[..],
            b"{\"a\":1,\"a\":1}",
            b"{\"a\": 1}",
            b"[1.50]",
            b"[1e5]",
            b"[1E+16]",
            b"[-0]",
            b"[01]",
            b"[1.0e+16]",
            b"[\"\\/\"]",
            b"[\"\\u0041\"]",
            b"[\"\\u000a\"]",
            b"[\"\\u001F\"]",
            b"[18446744073709551616]",
            b"[NaN]",
            b"[1]x",
        ] {
            assert!(!is_canonical(bad), "{}", String::from_utf8_lossy(bad));
            assert!(!by_definition(bad), "{}", String::from_utf8_lossy(bad));
        }
        for good in [
            &b"{\"a\":2,\"b\":[1,-2.5,1e+16,\"\\u001f\\n\"]}"[..],
            b"[]",
            b"{}",
            b"[-9223372036854775808]",
        ] {
            assert!(is_canonical(good), "{}", String::from_utf8_lossy(good));
            assert!(by_definition(good));
        }
    }
}
