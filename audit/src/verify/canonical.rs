//! Is a stored record in RFC 8785 canonical form? A survey of its bytes a word at a
//! time, then one parse that builds nothing and also finds the record's top-level
//! `seq` and `prev_hash`, and the members the search columns copy.
//!
//! The chain hash covers the stored bytes, and `audit verify` hashes them as they are
//! rather than re-canonicalising every record. That is only sound if the bytes are the
//! canonical form of what they say: the writer only ever stores canonical JSON, and a
//! third party verifying an export re-canonicalises with its own JCS library. A record
//! in any other spelling (whitespace, unsorted or duplicate members, other escapes or
//! number forms) was not written by the gateway, and may read differently to another
//! parser than to this one, so it is refused even when its hash matches.

use std::cmp::Ordering;

use crate::batch::SEARCH_COLUMN_NAMES;

/// Why the bytes are not canonical JSON, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NotCanonical {
    /// What is wrong.
    pub what: &'static str,
    /// Byte offset in the record.
    pub at: usize,
}

/// What a canonical record says at its top level about its place in the chain, and
/// the members its search columns copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Head<'a> {
    /// The top-level `seq`, when it is an integer.
    pub seq: Option<i64>,
    /// The top-level `prev_hash` string's contents.
    pub prev_hash: Option<&'a [u8]>,
    /// The members named in [`crate::batch::SEARCH_COLUMN_NAMES`], in that order.
    pub columns: [Member<'a>; 8],
}

/// A top-level member of a record, as the record holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Member<'a> {
    /// Not in the record.
    #[default]
    Absent,
    /// `null`.
    Null,
    /// A string's contents as spelled (escapes not undone).
    Str(&'a [u8]),
    /// A number, `true`, `false`, an object or an array.
    Other,
}

impl<'a> Head<'a> {
    /// Note the value of the member being read, when it is one the columns copy.
    fn column(&mut self, want: Want, m: Member<'a>) {
        if let Want::Column(k) = want {
            if let Some(slot) = self.columns.get_mut(usize::from(k)) {
                *slot = m;
            }
        }
    }
}

/// The checker, holding its nesting stack between records so that checking allocates
/// nothing once warm.
///
/// It also remembers the top-level member names of the last record that passed, as
/// `"name":` back to back. Records of one log mostly have the same members in the same
/// order; a name that repeats the one in the same place, after names that all did,
/// was already found a valid string sorting after its predecessor, so it is matched
/// as bytes instead of being scanned and compared again.
#[derive(Debug, Clone, Default)]
pub(crate) struct Canonical {
    stack: Vec<Frame>,
    /// The remembered names, and for each where it ends in `names` and what it is.
    names: Vec<u8>,
    known: Vec<Known>,
    /// This record's top-level names, to remember when they differ.
    seen: Vec<Name>,
}

/// A remembered top-level member name.
#[derive(Debug, Clone, Copy)]
struct Known {
    /// End of `"name":` in [`Canonical::names`].
    end: usize,
    plain: bool,
    want: Want,
}

#[derive(Debug, Clone, Copy)]
enum Frame {
    Array,
    /// An object and the member name before the current one (none yet for the first).
    Object(Option<Name>),
}

/// A member name: where its escaped contents are, and whether they are plain ASCII
/// without escapes (so that byte order is UTF-16 code unit order).
#[derive(Debug, Clone, Copy)]
struct Name {
    start: usize,
    end: usize,
    plain: bool,
}

/// The top-level member whose value is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Nothing,
    Seq,
    PrevHash,
    /// The search column at this index.
    Column(u8),
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

impl Canonical {
    /// Check that `b` is exactly the RFC 8785 serialization of the value it holds.
    pub(crate) fn check<'a>(&mut self, b: &'a [u8]) -> Result<Head<'a>, NotCanonical> {
        let simple = survey(b)?;
        self.stack.clear();
        self.seen.clear();
        // Top-level names so far that repeated the remembered ones, all of them.
        let mut in_step = true;
        let mut head = Head::default();
        let mut want = Want::Nothing;
        let mut i = 0;
        'value: loop {
            match b.get(i) {
                Some(b'{') => {
                    head.column(want, Member::Other);
                    i += 1;
                    if b.get(i) == Some(&b'}') {
                        i += 1;
                    } else {
                        self.stack.push(Frame::Object(None));
                        (i, want) = self.member_name(b, i, simple, &mut in_step)?;
                        continue 'value;
                    }
                }
                Some(b'[') => {
                    head.column(want, Member::Other);
                    i += 1;
                    if b.get(i) == Some(&b']') {
                        i += 1;
                    } else {
                        self.stack.push(Frame::Array);
                        want = Want::Nothing;
                        continue 'value;
                    }
                }
                Some(b'"') => {
                    let name = string(b, i, simple)?;
                    match want {
                        Want::PrevHash => head.prev_hash = b.get(name.start..name.end),
                        Want::Column(_) => {
                            head.column(want, Member::Str(&b[name.start..name.end]));
                        }
                        _ => {}
                    }
                    i = name.end + 1;
                }
                Some(b't') => {
                    head.column(want, Member::Other);
                    i = literal(b, i, b"true")?;
                }
                Some(b'f') => {
                    head.column(want, Member::Other);
                    i = literal(b, i, b"false")?;
                }
                Some(b'n') => {
                    head.column(want, Member::Null);
                    i = literal(b, i, b"null")?;
                }
                Some(b'-' | b'0'..=b'9') => {
                    head.column(want, Member::Other);
                    let end = number(b, i)?;
                    if want == Want::Seq {
                        head.seq = std::str::from_utf8(&b[i..end])
                            .ok()
                            .and_then(|s| s.parse().ok());
                    }
                    i = end;
                }
                Some(_) => return Err(bad("not a JSON value (or whitespace)", i)),
                None => return Err(bad("ends inside a value", i)),
            }
            // After a value: the next element, or the end of its container(s).
            loop {
                match (self.stack.last(), b.get(i)) {
                    (None, None) => {
                        if !(in_step && self.seen.len() == self.known.len()) {
                            self.remember(b);
                        }
                        return Ok(head);
                    }
                    (None, Some(_)) => return Err(bad("bytes after the value", i)),
                    (Some(Frame::Array), Some(b',')) => {
                        i += 1;
                        want = Want::Nothing;
                        continue 'value;
                    }
                    (Some(Frame::Object(_)), Some(b',')) => {
                        (i, want) = self.member_name(b, i + 1, simple, &mut in_step)?;
                        continue 'value;
                    }
                    (Some(Frame::Array), Some(b']')) | (Some(Frame::Object(_)), Some(b'}')) => {
                        i += 1;
                        self.stack.pop();
                    }
                    (Some(_), _) => return Err(bad("expected , or the end of a container", i)),
                }
            }
        }
    }

    /// A member name at `i` and its `:`, sorting strictly after the one before it.
    /// Returns where the value starts and whether it is one the chain needs.
    fn member_name(
        &mut self,
        b: &[u8],
        i: usize,
        simple: bool,
        in_step: &mut bool,
    ) -> Result<(usize, Want), NotCanonical> {
        let top = self.stack.len() == 1;
        if top && *in_step {
            let at = self.seen.len();
            if let Some(known) = self.known.get(at) {
                let start = at.checked_sub(1).map_or(0, |p| self.known[p].end);
                let bytes = &self.names[start..known.end];
                if b.get(i..i + bytes.len())
                    .is_some_and(|here| same(here, bytes))
                {
                    let name = Name {
                        start: i + 1,
                        end: i + bytes.len() - 2,
                        plain: known.plain,
                    };
                    self.seen.push(name);
                    if let Some(Frame::Object(last)) = self.stack.last_mut() {
                        *last = Some(name);
                    }
                    return Ok((i + bytes.len(), known.want));
                }
            }
            *in_step = false;
        }
        if b.get(i) != Some(&b'"') {
            return Err(bad("expected a member name", i));
        }
        let name = string(b, i, simple)?;
        let Some(Frame::Object(last)) = self.stack.last_mut() else {
            return Err(bad("member outside an object", i));
        };
        if let Some(prev) = last {
            if compare(b, prev, &name) != Ordering::Less {
                return Err(bad("members not sorted, or a member twice", i));
            }
        }
        *last = Some(name);
        if b.get(name.end + 1) != Some(&b':') {
            return Err(bad("expected : after a member name", name.end + 1));
        }
        let want = if top {
            self.seen.push(name);
            want_of(&b[name.start..name.end])
        } else {
            Want::Nothing
        };
        Ok((name.end + 2, want))
    }

    /// Remember the top-level names of `b`, which passed.
    fn remember(&mut self, b: &[u8]) {
        self.names.clear();
        self.known.clear();
        for name in &self.seen {
            // `"name":`, from the opening quote to the colon.
            self.names
                .extend_from_slice(&b[name.start - 1..name.end + 2]);
            self.known.push(Known {
                end: self.names.len(),
                plain: name.plain,
                want: want_of(&b[name.start..name.end]),
            });
        }
    }
}

/// Whether two slices of equal length are equal. Names are short, and two overlapping
/// word compares cost less than a call to `memcmp`.
fn same(x: &[u8], y: &[u8]) -> bool {
    let n = x.len();
    let word = |s: &[u8], at: usize| s.get(at..at + 8).and_then(|w| <[u8; 8]>::try_from(w).ok());
    if (8..=16).contains(&n) && n == y.len() {
        word(x, 0) == word(y, 0) && word(x, n - 8) == word(y, n - 8)
    } else {
        x == y
    }
}

fn want_of(name: &[u8]) -> Want {
    match name {
        b"seq" => Want::Seq,
        b"prev_hash" => Want::PrevHash,
        _ => SEARCH_COLUMN_NAMES
            .iter()
            .position(|c| c.as_bytes() == name)
            .and_then(|k| u8::try_from(k).ok())
            .map_or(Want::Nothing, Want::Column),
    }
}

fn bad(what: &'static str, at: usize) -> NotCanonical {
    NotCanonical { what, at }
}

/// One pass over the whole record, a word at a time. Canonical JSON has no byte below
/// 0x20 anywhere (no whitespace between tokens, control characters escaped in
/// strings). Returns whether the record is ASCII without a backslash, so that its
/// strings end at the next quote and its names compare as bytes.
fn survey(b: &[u8]) -> Result<bool, NotCanonical> {
    let (mut control, mut backslash, mut high) = (0, 0, 0);
    let words = b.chunks_exact(8);
    let tail = words.remainder();
    for word in words.filter_map(|w| <[u8; 8]>::try_from(w).ok()) {
        let w = u64::from_le_bytes(word);
        control |= w.wrapping_sub(ONES * 0x20) & !w & HIGH;
        backslash |= zero_byte(w ^ (ONES * u64::from(b'\\')));
        high |= w & HIGH;
    }
    for &c in tail {
        control |= u64::from(c < 0x20);
        backslash |= u64::from(c == b'\\');
        high |= u64::from(c >= 0x80);
    }
    if control != 0 {
        let at = b.iter().position(|&c| c < 0x20).unwrap_or(0);
        return Err(bad("a control character or whitespace", at));
    }
    if high != 0 {
        if let Err(e) = std::str::from_utf8(b) {
            return Err(bad("not UTF-8", e.valid_up_to()));
        }
    }
    Ok(backslash == 0 && high == 0)
}

/// The string starting with the `"` at `i`: only the escapes RFC 8785 produces, no raw
/// control characters. `end` is the closing quote. In a `simple` record (see
/// [`survey`]) that is the next quote.
fn string(b: &[u8], i: usize, simple: bool) -> Result<Name, NotCanonical> {
    if simple {
        return match next_quote(b, i + 1) {
            Some(end) => Ok(Name {
                start: i + 1,
                end,
                plain: true,
            }),
            None => Err(bad("ends inside a string", b.len())),
        };
    }
    escaped_string(b, i)
}

/// The first `"` at or after `j`, eight bytes at a time.
fn next_quote(b: &[u8], mut j: usize) -> Option<usize> {
    while let Some(Ok(word)) = b.get(j..j + 8).map(<[u8; 8]>::try_from) {
        let quotes = zero_byte(u64::from_le_bytes(word) ^ (ONES * u64::from(b'"')));
        if quotes != 0 {
            return Some(j + (quotes.trailing_zeros() / 8) as usize);
        }
        j += 8;
    }
    b.get(j..)?.iter().position(|&c| c == b'"').map(|k| j + k)
}

/// [`string`] in a record that may hold escapes or non-ASCII characters.
fn escaped_string(b: &[u8], i: usize) -> Result<Name, NotCanonical> {
    let start = i + 1;
    let mut j = start;
    let mut plain = true;
    loop {
        // Eight bytes at a time up to the first quote, backslash or control byte. The
        // lowest flagged byte of each mask is exact (false flags only follow a true
        // one), and the little-endian load puts the first byte lowest.
        if let Some(Ok(word)) = b.get(j..j + 8).map(<[u8; 8]>::try_from) {
            let w = u64::from_le_bytes(word);
            let special = zero_byte(w ^ (ONES * u64::from(b'"')))
                | zero_byte(w ^ (ONES * u64::from(b'\\')))
                | (w.wrapping_sub(ONES * 0x20) & !w & HIGH);
            let skip = (special.trailing_zeros() / 8) as usize;
            let seen = if skip >= 8 {
                w
            } else {
                w & ((1 << (8 * skip)) - 1)
            };
            plain &= (seen & HIGH) == 0;
            j += skip;
            if skip >= 8 {
                continue;
            }
        }
        match b.get(j) {
            Some(b'"') => {
                return Ok(Name {
                    start,
                    end: j,
                    plain,
                })
            }
            Some(b'\\') => {
                plain = false;
                j += escape(b, j)?;
            }
            Some(&c) if c < 0x20 => return Err(bad("a control character not escaped", j)),
            Some(&c) => {
                plain &= c < 0x80;
                j += 1;
            }
            None => return Err(bad("ends inside a string", j)),
        }
    }
}

/// Nonzero when a byte of `w` is zero.
fn zero_byte(w: u64) -> u64 {
    w.wrapping_sub(ONES) & !w & HIGH
}

/// Length of the escape at `j`: `\"`, `\\`, the five short forms, or `\u00xx` in
/// lowercase for the other control characters — nothing else.
fn escape(b: &[u8], j: usize) -> Result<usize, NotCanonical> {
    match b.get(j + 1) {
        Some(b'"' | b'\\' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(2),
        Some(b'u') => {
            let hex = |c: Option<&u8>| match c {
                Some(&c @ b'0'..=b'9') => Some(c - b'0'),
                Some(&c @ b'a'..=b'f') => Some(c - b'a' + 10),
                _ => None,
            };
            let code = (b.get(j + 2..j + 4) == Some(b"00"))
                .then(|| Some(hex(b.get(j + 4))? * 16 + hex(b.get(j + 5))?))
                .flatten();
            match code {
                Some(c) if c < 0x20 && !matches!(c, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d) => Ok(6),
                _ => Err(bad("an escape RFC 8785 does not use", j)),
            }
        }
        _ => Err(bad("an escape RFC 8785 does not use", j)),
    }
}

fn literal<const N: usize>(b: &[u8], i: usize, word: &[u8; N]) -> Result<usize, NotCanonical> {
    // A fixed-size comparison, which compiles to a load and a compare.
    match b.get(i..i + N).map(<[u8; N]>::try_from) {
        Some(Ok(here)) if here == *word => Ok(i + N),
        _ => Err(bad("not a JSON value", i)),
    }
}

/// The number at `i`, which must be spelled as ECMAScript prints its double value.
/// Integers of up to 15 digits are exact and printed plainly; anything else is
/// compared with the JCS library's own rendering.
fn number(b: &[u8], i: usize) -> Result<usize, NotCanonical> {
    let len = b[i..]
        .iter()
        .take_while(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
        .count();
    let token = &b[i..i + len];
    let digits = token.strip_prefix(b"-").unwrap_or(token);
    let plain_integer = token == b"0"
        || (matches!(digits.first(), Some(b'1'..=b'9'))
            && digits.len() <= 15
            && digits.iter().all(u8::is_ascii_digit));
    if plain_integer {
        return Ok(i + len);
    }
    let canonical = serde_json::from_slice::<serde_json::Value>(token)
        .ok()
        .filter(serde_json::Value::is_number)
        .and_then(|v| serde_json_canonicalizer::to_vec(&v).ok());
    if canonical.as_deref() == Some(token) {
        Ok(i + len)
    } else {
        Err(bad("a number not in its shortest ECMAScript form", i))
    }
}

/// Order of two member names by UTF-16 code units of their unescaped text, as
/// RFC 8785 sorts them; plain ASCII names compare as bytes.
fn compare(b: &[u8], x: &Name, y: &Name) -> Ordering {
    let (xs, ys) = (&b[x.start..x.end], &b[y.start..y.end]);
    if x.plain && y.plain {
        return xs.cmp(ys);
    }
    // Rare: unescape both (they are valid strings, checked above).
    let text = |n: &Name| serde_json::from_slice::<String>(&b[n.start - 1..=n.end]).ok();
    match (text(x), text(y)) {
        (Some(xt), Some(yt)) => xt.encode_utf16().cmp(yt.encode_utf16()),
        // Not reached for checked strings; treat as out of order, never as fine.
        _ => Ordering::Greater,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(s: &str) -> Result<(), &'static str> {
        Canonical::default()
            .check(s.as_bytes())
            .map(|_| ())
            .map_err(|e| e.what)
    }

    #[test]
    fn what_the_jcs_library_writes_is_canonical() {
        let values = [
            json!({"b": [1, -2, 0, 1.5, -0.25, 1e21, 1e-7, 123456789012345678u64, true, false, null],
                   "a": {"z": "", "y": {}, "x": []}, "\u{e000}": 1, "\u{1f600}": 2, "é": 3,
                   "ctl": "\u{0}\u{8}\t\n\u{b}\u{c}\r\u{1f}\u{7f}\"\\/ 中文 \u{2028}", "\n": "key"}),
            json!([]),
            json!("x"),
            json!(7),
            json!({"prev_hash": "a", "seq": 1, "detail": {"seq": 2, "prev_hash": "b"}}),
        ];
        for v in values {
            let bytes = serde_json_canonicalizer::to_vec(&v).unwrap();
            let text = String::from_utf8(bytes).unwrap();
            assert_eq!(check(&text), Ok(()), "{text}");
        }
    }

    #[test]
    fn any_other_spelling_is_refused() {
        let cases = [
            r#"{"a":1,"b":2} "#,
            r#"{"a": 1}"#,
            r#" {"a":1}"#,
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":1}"#,
            r#"{"a":"\/"}"#,
            r#"{"a":"\u0041"}"#,
            r#"{"a":"\u000A"}"#,
            r#"{"a":"\u000a"}"#,
            r#"{"a":"\u001F"}"#,
            "{\"a\":\"\t\"}",
            r#"{"a":1.0}"#,
            r#"{"a":1E3}"#,
            r#"{"a":1e3}"#,
            r#"{"a":-0}"#,
            r#"{"a":01}"#,
            r#"{"a":+1}"#,
            r#"{"a":1234567890123456789}"#,
            r#"{"a":.5}"#,
            r#"{"a":TRUE}"#,
            r#"{"a":1,}"#,
            r#"{"a":[1,]}"#,
            r#"{"a":1"#,
            r#"{"a":"x"#,
            r#"{"a":1}{}"#,
            r#"{"\u00e9":1}"#,
            // U+E000 sorts after U+1F600 in UTF-16, though not in UTF-8 byte order.
            "{\"\u{e000}\":1,\"\u{1f600}\":2}",
            "",
        ];
        for case in cases {
            assert!(check(case).is_err(), "accepted {case:?}");
        }
        assert!(Canonical::default().check(b"{\"a\":\"\xff\"}").is_err());
    }

    #[test]
    fn remembered_names_let_no_wrong_order_through() {
        let mut c = Canonical::default();
        let good = r#"{"a":1,"b":{"x":1,"y":2},"c":"s"}"#;
        let bad = [
            r#"{"a":1,"c":"s","b":{"x":1,"y":2}}"#,
            r#"{"a":1,"b":{"x":1,"y":2},"b":"s"}"#,
            r#"{"a":1,"b":{"x":1,"y":2},"c":"s","a":0}"#,
            r#"{"a":1,"b":{"y":1,"x":2},"c":"s"}"#,
            r#"{"b":1,"a":{"x":1,"y":2},"c":"s"}"#,
            r#"{"a":1,"b":{"x":1,"y":2},"c":"s" }"#,
        ];
        for case in bad {
            assert!(c.check(good.as_bytes()).is_ok());
            assert!(c.check(case.as_bytes()).is_err(), "accepted {case}");
        }
        // Other names, fewer, more: each checked in full, and then remembered.
        for other in [
            r#"{"a":1,"b":2}"#,
            r#"{"a":1,"b":2,"c":3,"d":4}"#,
            r#"{"a":1,"bb":2,"c":3}"#,
            good,
        ] {
            assert!(c.check(other.as_bytes()).is_ok(), "{other}");
            assert!(c.check(other.as_bytes()).is_ok(), "{other}");
        }
        assert!(c.check(br#"{"a":1,"bb":2,"bb":3}"#).is_err());
        // Names of 8 to 16 bytes with their quotes and colon compare as two words.
        let long = r#"{"agreement":1,"agreemenu":2,"cert_fingerprint":3}"#;
        for case in [
            r#"{"agreement":1,"agreement":2,"cert_fingerprint":3}"#,
            r#"{"agreement":1,"agreemenu":2,"agreemenu":3}"#,
            r#"{"agreemenu":1,"agreement":2,"cert_fingerprint":3}"#,
            r#"{"agreement":1,"agreemenu":2,"cert_fingerprint":3,"cert_fingerprint":4}"#,
        ] {
            assert!(c.check(long.as_bytes()).is_ok());
            assert!(c.check(case.as_bytes()).is_err(), "accepted {case}");
        }
    }

    #[test]
    fn the_head_is_the_top_level_members() {
        let prev = "a".repeat(64);
        let rec = format!(
            "{{\"detail\":{{\"prev_hash\":\"{}\",\"seq\":9}},\"prev_hash\":\"{prev}\",\"reason\":\"x \\\"seq\\\":5\",\"seq\":12,\"time\":\"t\"}}",
            "b".repeat(64)
        );
        let head = Canonical::default().check(rec.as_bytes()).unwrap();
        assert_eq!(head.seq, Some(12));
        assert_eq!(head.prev_hash, Some(prev.as_bytes()));
        let none = Canonical::default()
            .check(br#"{"detail":{"prev_hash":"x","seq":9}}"#)
            .unwrap();
        assert_eq!(none, Head::default());
    }
}
