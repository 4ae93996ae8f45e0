//! RFC 8785 (JCS) canonical JSON, written directly for the documents Tongban signs
//! and chains.
//!
//! `serde_json_canonicalizer` buffers and sorts every object's members through its
//! formatter; on a lookup that ran twice (the audit record and the signed answer)
//! and cost about a sixth of the server's CPU. The writers here emit the same bytes
//! in one pass: object members are sorted by UTF-16 code units (which is byte order
//! unless a key holds a character at or above U+E000), strings are escaped as
//! serde_json escapes them (the JCS rules: `\"`, `\\`, the five short control
//! escapes and `\u00xx` in lowercase hex for the other control characters), and
//! integers are written as decimals. A number JCS would write differently from a
//! plain decimal — a fraction, or an integer beyond 2^53 — sends the whole
//! document to the reference canonicalizer instead, so the output never differs
//! from it. The tests compare the two on awkward inputs.

use std::cmp::Ordering;
use std::io::Write as _;

use serde_json::{Map, Value};

/// A value that has no canonical form (a map with a non-string key, say).
#[derive(Debug, Clone, thiserror::Error)]
#[error("canonical JSON: {0}")]
pub struct CanonicalError(String);

impl CanonicalError {
    /// An error saying `why`.
    pub fn new(why: impl Into<String>) -> Self {
        Self(why.into())
    }
}

/// A value the direct writer leaves to the reference canonicalizer.
pub(crate) struct Unsupported;

/// RFC 8785 canonical JSON of a value, by the reference canonicalizer.
pub fn canonical<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    serde_json_canonicalizer::to_vec(value).map_err(|e| CanonicalError(e.to_string()))
}

/// Integers up to this magnitude are written the same by JCS (ES6 number to string)
/// and by plain decimal formatting.
const EXACT: u64 = 1 << 53;

/// Canonical JSON of an object.
pub fn map_to_vec(map: &Map<String, Value>) -> Result<Vec<u8>, CanonicalError> {
    // Room for an answer and the receipt spliced into it later (record, note, proof):
    // one allocation instead of a second one and a copy.
    let mut out = Vec::with_capacity(4096);
    match write_map(&mut out, map) {
        Ok(()) => Ok(out),
        Err(Unsupported) => canonical(map),
    }
}

/// Writes `{"k":v,…}` member by member; the caller writes the members in JCS
/// order.
pub(crate) struct Members<'a> {
    /// Where the document is written.
    pub(crate) out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Members<'a> {
    pub(crate) fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    pub(crate) fn key(&mut self, k: &str) -> &mut Self {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        write_str(self.out, k);
        self.out.push(b':');
        self
    }

    pub(crate) fn str(&mut self, s: &str) {
        write_str(self.out, s);
    }

    pub(crate) fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => write_str(self.out, s),
            None => self.null(),
        }
    }

    pub(crate) fn null(&mut self) {
        self.out.extend_from_slice(b"null");
    }

    pub(crate) fn int(&mut self, n: i64) -> Result<(), Unsupported> {
        write_int(self.out, n)
    }

    pub(crate) fn uint(&mut self, n: u64) -> Result<(), Unsupported> {
        write_uint(self.out, n)
    }

    pub(crate) fn close(self) {
        self.out.push(b'}');
    }
}

/// An integer every JSON reader holds exactly (|n| ≤ 2^53) is its plain decimal; a
/// larger one is left to the reference canonicalizer.
fn write_uint(out: &mut Vec<u8>, n: u64) -> Result<(), Unsupported> {
    if n > EXACT {
        return Err(Unsupported);
    }
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{n}");
    Ok(())
}

/// See [`write_uint`].
fn write_int(out: &mut Vec<u8>, n: i64) -> Result<(), Unsupported> {
    if n.unsigned_abs() > EXACT {
        return Err(Unsupported);
    }
    let _ = write!(out, "{n}");
    Ok(())
}

pub(crate) fn write_value(out: &mut Vec<u8>, v: &Value) -> Result<(), Unsupported> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                write_uint(out, u)?;
            } else if let Some(i) = n.as_i64() {
                write_int(out, i)?;
            } else {
                return Err(Unsupported);
            }
        }
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item)?;
            }
            out.push(b']');
        }
        Value::Object(map) => write_map(out, map)?,
    }
    Ok(())
}

fn write_map(out: &mut Vec<u8>, map: &Map<String, Value>) -> Result<(), Unsupported> {
    let mut members: Vec<(&String, &Value)> = map.iter().collect();
    if !members.is_sorted_by(|a, b| utf16_cmp(a.0, b.0) != Ordering::Greater) {
        members.sort_by(|a, b| utf16_cmp(a.0, b.0));
    }
    out.push(b'{');
    for (i, (k, v)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, k);
        out.push(b':');
        write_value(out, v)?;
    }
    out.push(b'}');
    Ok(())
}

/// Order of JCS member names: by UTF-16 code units. UTF-8 byte order is code point
/// order, which agrees unless a character at or above U+E000 meets a surrogate
/// pair; only then are the code units compared.
fn utf16_cmp(a: &str, b: &str) -> Ordering {
    // UTF-8 lead bytes 0xEE and above start the characters from U+E000 on.
    let plain = |s: &str| s.bytes().all(|c| c < 0xEE);
    if plain(a) && plain(b) {
        a.cmp(b)
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) {
    // serde_json's string escaping is the JCS one (see the module comment); writing
    // a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub(crate) fn reference<T: serde::Serialize>(v: &T) -> String {
        String::from_utf8(canonical(v).expect("reference")).expect("utf-8")
    }

    pub(crate) fn awkward() -> Vec<String> {
        vec![
            String::new(),
            "plain".into(),
            "quote \" backslash \\ slash /".into(),
            "\u{0}\u{1}\u{8}\t\n\u{b}\u{c}\r\u{1f}\u{7f}".into(),
            "张三 广东省深圳市南山区".into(),
            "emoji 😀 and \u{e000}\u{fffd}\u{2028}".into(),
        ]
    }

    #[test]
    fn objects_sort_by_utf16_code_units() {
        // U+E000 sorts after a surrogate pair (U+1F600) in UTF-16, before it in UTF-8.
        let mut m = Map::new();
        for text in awkward() {
            m.insert(text.clone(), json!(text));
        }
        m.insert("\u{e000}".into(), json!(1));
        m.insert("\u{1f600}".into(), json!(2));
        m.insert("nested".into(), json!({"z": [{"y": 1, "x": 2}], "a": null}));
        m.insert("n".into(), json!(9_007_199_254_740_992_u64));
        let ours = String::from_utf8(map_to_vec(&m).expect("canonical")).expect("utf-8");
        assert_eq!(ours, reference(&m));
        assert!(ours.find("\u{1f600}") < ours.find("\u{e000}"));
    }

    #[test]
    fn a_record_body_matches_the_reference() {
        let body = json!({
            "request_id": "0192", "dataset": "population", "subject": "440304197204188910",
            "record": {"name": "张三", "birth_date": "1972-04-18", "household_address": "广东省**"},
            "masked": ["household_address"],
            "source": {"department": "sz-psb", "connector": "population-db", "fetched_at": "t"},
            "agreement": "a", "audit": {"seq": 12, "hash": "ff"}, "verified": true,
        });
        let Value::Object(m) = body else {
            unreachable!("an object literal")
        };
        let ours = String::from_utf8(map_to_vec(&m).expect("canonical")).expect("utf-8");
        assert_eq!(ours, reference(&m));
    }
}
