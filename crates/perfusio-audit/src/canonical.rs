//! Canonical JSON: the exact byte form that is hashed and written.
//!
//! The rules (also in `docs/audit-format.md`):
//!
//! * objects: members sorted by key, compared as UTF-8 byte strings (= Unicode code point order);
//!   no whitespace anywhere; `{"a":1,"b":[true,null]}`;
//! * strings: UTF-8, written literally except `"` → `\"`, `\` → `\\`, U+0008 → `\b`,
//!   U+000C → `\f`, U+000A → `\n`, U+000D → `\r`, U+0009 → `\t`, and the other code points below
//!   U+0020 → `\u00XX` with lowercase hex. Nothing else is escaped;
//! * integers (JSON numbers without `.` or exponent, in the range of `i64`/`u64`): plain decimal;
//! * floating-point numbers: the shortest decimal digit string `d₁d₂…dₙ` that reads back as the
//!   same IEEE-754 double (if several have that length, the one nearest the double's exact
//!   value), with decimal exponent `e` (value = `d₁.d₂…dₙ × 10^e`). If
//!   `-4 ≤ e ≤ 15` it is written positionally with at least one digit after the point
//!   (`0.1`, `100.0`, `0.0001`, `123456789.0`); otherwise as `d₁[.d₂…dₙ]e±XX` with an explicit
//!   sign and at least two exponent digits (`1e-05`, `1e+16`, `5e-324`, `1.5e+300`).
//!   Zero is `0.0` / `-0.0`. This is exactly Python's `repr(float)`, so
//!   `json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)` reproduces it;
//! * non-finite numbers cannot be represented: [`to_canonical_value`] rejects them with
//!   [`AuditError::NonFinite`] instead of silently writing `null`.

use serde::Serialize;
use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};

use crate::error::{AuditError, Result};

/// Convert any serialisable value into a [`serde_json::Value`], refusing NaN and infinities.
///
/// `serde_json` on its own turns a non-finite float into `null`, which would make a corrupted
/// reading indistinguishable from a missing one; this function returns
/// [`AuditError::NonFinite`] naming the offending field instead.
///
/// ```
/// use std::collections::BTreeMap;
/// use perfusio_audit::canonical::to_canonical_value;
/// let mut m = BTreeMap::new();
/// m.insert("Glc".to_string(), f64::NAN);
/// let err = to_canonical_value(&m).unwrap_err();
/// assert!(err.to_string().contains("`Glc`"));
/// m.insert("Glc".to_string(), 5.5);
/// assert_eq!(to_canonical_value(&m).unwrap()["Glc"].as_f64(), Some(5.5));
/// ```
pub fn to_canonical_value<T: Serialize + ?Sized>(value: &T) -> Result<Value> {
    let v = serde_json::to_value(value).map_err(|e| AuditError::Serialize(e.to_string()))?;
    // serde_json writes a non-finite float as `null`, so a tree without any `null` cannot have
    // held one; otherwise look for it (and its path) in the original value.
    if contains_null(&v) {
        finite::check(value)?;
    }
    Ok(v)
}

fn contains_null(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.iter().any(contains_null),
        Value::Object(m) => m.values().any(contains_null),
        _ => false,
    }
}

/// Append the canonical serialisation of `value` to `out`.
pub fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => write_object(map, out),
    }
}

fn write_object(map: &Map<String, Value>, out: &mut Vec<u8>) {
    // serde_json's map is ordered by key unless a crate in the build enables `preserve_order`;
    // sort explicitly so the result never depends on feature unification.
    let mut members: Vec<(&String, &Value)> = map.iter().collect();
    members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    out.push(b'{');
    for (i, (k, v)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(k, out);
        out.push(b':');
        write_canonical(v, out);
    }
    out.push(b'}');
}

/// The canonical serialisation of `value` as a `String`.
///
/// ```
/// use perfusio_audit::canonical::canonical_string;
/// let v = serde_json::json!({"b": [1, 2.0, 0.1, 1e-7], "a": "x\ny"});
/// assert_eq!(canonical_string(&v), r#"{"a":"x\ny","b":[1,2.0,0.1,1e-07]}"#);
/// ```
pub fn canonical_string(value: &Value) -> String {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    // Only valid UTF-8 is ever written: strings are copied from `str`, everything else is ASCII.
    String::from_utf8_lossy(&out).into_owned()
}

/// Lowercase hexadecimal SHA-256 of `bytes`.
///
/// ```
/// assert_eq!(
///     perfusio_audit::canonical::sha256_hex(b"abc"),
///     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/// );
/// ```
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// SHA-256 (lowercase hex) of the canonical serialisation of `value`.
pub fn canonical_sha256<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    let v = to_canonical_value(value)?;
    let mut out = Vec::with_capacity(256);
    write_canonical(&v, &mut out);
    Ok(sha256_hex(&out))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
}

fn write_number(n: &Number, out: &mut Vec<u8>) {
    if let Some(u) = n.as_u64() {
        out.extend_from_slice(u.to_string().as_bytes());
    } else if let Some(i) = n.as_i64() {
        out.extend_from_slice(i.to_string().as_bytes());
    } else if let Some(f) = n.as_f64() {
        write_f64(f, out);
    }
}

/// Append the canonical form of a finite `f64` (see the module docs); non-finite input writes
/// `null`, which callers prevent through [`to_canonical_value`].
pub fn write_f64(x: f64, out: &mut Vec<u8>) {
    if !x.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    if x.to_bits() << 1 == 0 {
        // ±0.0
        out.extend_from_slice(if x.is_sign_negative() {
            b"-0.0"
        } else {
            b"0.0"
        });
        return;
    }
    // Żmij (the formatter serde_json uses) gives the shortest digit string that round-trips and,
    // among those, the nearest; take its digits and exponent, whatever layout it chose.
    let mut buffer = zmij::Buffer::new();
    let printed = buffer.format_finite(x).as_bytes();
    let mut digits = [0u8; 32];
    let (negative, n, exp) = decompose(printed, &mut digits);
    let digits = &digits[..n];
    if negative {
        out.push(b'-');
    }
    if (-4..=15).contains(&exp) {
        if exp >= 0 {
            let int_len = usize::try_from(exp).unwrap_or(0) + 1;
            if digits.len() <= int_len {
                out.extend_from_slice(digits);
                out.extend(std::iter::repeat_n(b'0', int_len - digits.len()));
                out.extend_from_slice(b".0");
            } else {
                out.extend_from_slice(&digits[..int_len]);
                out.push(b'.');
                out.extend_from_slice(&digits[int_len..]);
            }
        } else {
            out.extend_from_slice(b"0.");
            let zeros = usize::try_from(-exp - 1).unwrap_or(0);
            out.extend(std::iter::repeat_n(b'0', zeros));
            out.extend_from_slice(digits);
        }
    } else {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        let mag = exp.unsigned_abs();
        if mag < 10 {
            out.push(b'0');
        }
        let mut itoa = [0u8; 10];
        let mut k = itoa.len();
        let mut m = mag;
        loop {
            k -= 1;
            itoa[k] = b'0' + (m % 10) as u8;
            m /= 10;
            if m == 0 {
                break;
            }
        }
        out.extend_from_slice(&itoa[k..]);
    }
}

/// Split a decimal number string (`-0.00125`, `1.5e-7`, `1e16`, `123.0`) into its sign, its
/// significant digits without leading or trailing zeros (written to `digits`, count returned),
/// and the decimal exponent of the first digit. Zero yields the single digit `0`.
fn decompose(s: &[u8], digits: &mut [u8; 32]) -> (bool, usize, i32) {
    let (negative, body) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    let e_pos = body.iter().position(|c| matches!(c, b'e' | b'E'));
    let (mantissa, exp) = match e_pos {
        Some(p) => {
            let text = std::str::from_utf8(&body[p + 1..]).unwrap_or("0");
            (
                &body[..p],
                text.trim_start_matches('+').parse::<i32>().unwrap_or(0),
            )
        }
        None => (body, 0),
    };
    let int_len = mantissa
        .iter()
        .position(|c| *c == b'.')
        .unwrap_or(mantissa.len());
    let mut n = 0usize;
    let mut leading = 0i32;
    for &c in mantissa.iter().filter(|c| c.is_ascii_digit()) {
        if n == 0 && c == b'0' {
            leading += 1;
        } else if n < digits.len() {
            digits[n] = c;
            n += 1;
        }
    }
    while n > 1 && digits[n - 1] == b'0' {
        n -= 1;
    }
    if n == 0 {
        digits[0] = b'0';
        return (negative, 1, 0);
    }
    let int_len = i32::try_from(int_len).unwrap_or(0);
    (negative, n, int_len - 1 + exp - leading)
}

pub(crate) fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if esc.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0x0f)]);
        } else {
            out.extend_from_slice(esc);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// A serde `Serializer` that only looks for non-finite floats and remembers where they are.
mod finite {
    use std::fmt;

    use serde::Serialize;
    use serde::ser;

    use crate::error::AuditError;

    #[derive(Debug)]
    pub(super) struct CheckError {
        nonfinite: Option<(String, f64)>,
        msg: String,
    }

    impl fmt::Display for CheckError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.msg)
        }
    }
    impl std::error::Error for CheckError {}
    impl ser::Error for CheckError {
        fn custom<T: fmt::Display>(msg: T) -> Self {
            Self {
                nonfinite: None,
                msg: msg.to_string(),
            }
        }
    }

    pub(super) fn check<T: Serialize + ?Sized>(value: &T) -> Result<(), AuditError> {
        let mut c = Checker { path: Vec::new() };
        value.serialize(&mut c).map_err(|e| match e.nonfinite {
            Some((path, value)) => AuditError::NonFinite { path, value },
            None => AuditError::Serialize(e.msg),
        })
    }

    pub(super) struct Checker {
        path: Vec<String>,
    }

    impl Checker {
        fn float(&self, v: f64) -> Result<(), CheckError> {
            if v.is_finite() {
                Ok(())
            } else {
                let path = if self.path.is_empty() {
                    "(root)".to_string()
                } else {
                    self.path.join(".")
                };
                Err(CheckError {
                    msg: format!("non-finite {v} at {path}"),
                    nonfinite: Some((path, v)),
                })
            }
        }
        fn nested<T: Serialize + ?Sized>(&mut self, seg: String, v: &T) -> Result<(), CheckError> {
            self.path.push(seg);
            let r = v.serialize(&mut *self);
            self.path.pop();
            r
        }
    }

    macro_rules! ok_scalars {
        ($($f:ident: $t:ty),*) => { $(fn $f(self, _v: $t) -> Result<(), CheckError> { Ok(()) })* };
    }

    impl<'a> ser::Serializer for &'a mut Checker {
        type Ok = ();
        type Error = CheckError;
        type SerializeSeq = Seq<'a>;
        type SerializeTuple = Seq<'a>;
        type SerializeTupleStruct = Seq<'a>;
        type SerializeTupleVariant = Seq<'a>;
        type SerializeMap = MapC<'a>;
        type SerializeStruct = &'a mut Checker;
        type SerializeStructVariant = &'a mut Checker;

        ok_scalars!(serialize_bool: bool, serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
            serialize_i64: i64, serialize_i128: i128, serialize_u8: u8, serialize_u16: u16,
            serialize_u32: u32, serialize_u64: u64, serialize_u128: u128, serialize_char: char,
            serialize_str: &str, serialize_bytes: &[u8]);

        fn serialize_f32(self, v: f32) -> Result<(), CheckError> {
            self.float(f64::from(v))
        }
        fn serialize_f64(self, v: f64) -> Result<(), CheckError> {
            self.float(v)
        }
        fn serialize_none(self) -> Result<(), CheckError> {
            Ok(())
        }
        fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), CheckError> {
            v.serialize(self)
        }
        fn serialize_unit(self) -> Result<(), CheckError> {
            Ok(())
        }
        fn serialize_unit_struct(self, _: &'static str) -> Result<(), CheckError> {
            Ok(())
        }
        fn serialize_unit_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
        ) -> Result<(), CheckError> {
            Ok(())
        }
        fn serialize_newtype_struct<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            v: &T,
        ) -> Result<(), CheckError> {
            v.serialize(self)
        }
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            variant: &'static str,
            v: &T,
        ) -> Result<(), CheckError> {
            self.nested(variant.to_string(), v)
        }
        fn serialize_seq(self, _: Option<usize>) -> Result<Seq<'a>, CheckError> {
            Ok(Seq { c: self, i: 0 })
        }
        fn serialize_tuple(self, _: usize) -> Result<Seq<'a>, CheckError> {
            Ok(Seq { c: self, i: 0 })
        }
        fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Seq<'a>, CheckError> {
            Ok(Seq { c: self, i: 0 })
        }
        fn serialize_tuple_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Seq<'a>, CheckError> {
            Ok(Seq { c: self, i: 0 })
        }
        fn serialize_map(self, _: Option<usize>) -> Result<MapC<'a>, CheckError> {
            Ok(MapC { c: self, key: None })
        }
        fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, CheckError> {
            Ok(self)
        }
        fn serialize_struct_variant(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: usize,
        ) -> Result<Self, CheckError> {
            Ok(self)
        }
    }

    pub(super) struct Seq<'a> {
        c: &'a mut Checker,
        i: usize,
    }

    impl Seq<'_> {
        fn elem<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), CheckError> {
            let seg = format!("[{}]", self.i);
            self.i += 1;
            self.c.nested(seg, v)
        }
    }

    macro_rules! seq_like {
        ($tr:ident, $m:ident) => {
            impl ser::$tr for Seq<'_> {
                type Ok = ();
                type Error = CheckError;
                fn $m<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), CheckError> {
                    self.elem(v)
                }
                fn end(self) -> Result<(), CheckError> {
                    Ok(())
                }
            }
        };
    }
    seq_like!(SerializeSeq, serialize_element);
    seq_like!(SerializeTuple, serialize_element);
    seq_like!(SerializeTupleStruct, serialize_field);
    seq_like!(SerializeTupleVariant, serialize_field);

    pub(super) struct MapC<'a> {
        c: &'a mut Checker,
        key: Option<String>,
    }

    impl ser::SerializeMap for MapC<'_> {
        type Ok = ();
        type Error = CheckError;
        fn serialize_key<T: Serialize + ?Sized>(&mut self, k: &T) -> Result<(), CheckError> {
            k.serialize(&mut *self.c)?;
            self.key = Some(match serde_json::to_value(k) {
                Ok(serde_json::Value::String(s)) => s,
                Ok(other) => other.to_string(),
                Err(_) => "?".to_string(),
            });
            Ok(())
        }
        fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), CheckError> {
            let seg = self.key.take().unwrap_or_else(|| "?".to_string());
            self.c.nested(seg, v)
        }
        fn end(self) -> Result<(), CheckError> {
            Ok(())
        }
    }

    macro_rules! struct_like {
        ($tr:ident) => {
            impl ser::$tr for &mut Checker {
                type Ok = ();
                type Error = CheckError;
                fn serialize_field<T: Serialize + ?Sized>(
                    &mut self,
                    key: &'static str,
                    v: &T,
                ) -> Result<(), CheckError> {
                    self.nested(key.to_string(), v)
                }
                fn end(self) -> Result<(), CheckError> {
                    Ok(())
                }
            }
        };
    }
    struct_like!(SerializeStruct);
    struct_like!(SerializeStructVariant);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(x: f64) -> String {
        let mut out = Vec::new();
        write_f64(x, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// Expected strings are Python 3 `repr(float)` outputs.
    #[test]
    fn floats_match_python_repr() {
        let cases = [
            (0.1, "0.1"),
            (1e-7, "1e-07"),
            (123456789.0, "123456789.0"),
            (5e-324, "5e-324"),
            (1.0, "1.0"),
            (-2.0, "-2.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (100.0, "100.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e300, "1.5e+300"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (-1.2345e-20, "-1.2345e-20"),
            (2.5e-5, "2.5e-05"),
            (123.456, "123.456"),
            (0.30000000000000004, "0.30000000000000004"),
            (9007199254740993.0, "9007199254740992.0"),
            (1234567890123456.7, "1234567890123456.8"),
            (1971401659434269.2, "1971401659434269.2"),
        ];
        for (x, want) in cases {
            assert_eq!(f(x), want, "formatting {x:e}");
            let back: f64 = want.parse().unwrap();
            assert_eq!(
                back.to_bits(),
                x.to_bits(),
                "{want} must read back as the same double"
            );
        }
    }

    #[test]
    fn integers_and_strings() {
        let v = serde_json::json!({"z": -3, "a": u64::MAX, "s": "q\"\\\u{1}\u{7f}é\t"});
        assert_eq!(
            canonical_string(&v),
            "{\"a\":18446744073709551615,\"s\":\"q\\\"\\\\\\u0001\u{7f}é\\t\",\"z\":-3}"
        );
    }

    #[test]
    fn keys_sorted_by_code_point() {
        let v = serde_json::json!({"é": 1, "z": 2, "Z": 3, "aa": 4, "a": 5});
        assert_eq!(canonical_string(&v), r#"{"Z":3,"a":5,"aa":4,"z":2,"é":1}"#);
    }

    #[derive(Serialize)]
    struct Inner {
        xs: Vec<f64>,
    }
    #[derive(Serialize)]
    struct Outer {
        inner: Inner,
    }

    #[test]
    fn non_finite_rejected_with_path() {
        let bad = Outer {
            inner: Inner {
                xs: vec![1.0, f64::INFINITY],
            },
        };
        match to_canonical_value(&bad) {
            Err(AuditError::NonFinite { path, value }) => {
                assert_eq!(path, "inner.xs.[1]");
                assert!(value.is_infinite());
            }
            other => panic!("expected NonFinite, got {other:?}"),
        }
        let good = Outer {
            inner: Inner { xs: vec![1.0, 2.5] },
        };
        assert_eq!(
            canonical_string(&to_canonical_value(&good).unwrap()),
            r#"{"inner":{"xs":[1.0,2.5]}}"#
        );
    }
}
