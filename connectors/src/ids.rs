//! Validation of the identifiers that key Tongban's datasets.
//!
//! - resident ID number, GB 11643-1999 (`population`);
//! - unified social credit code, GB 32100-2015 (`legal_person`);
//! - e-license identifier, GB/T 36904-2018 (`e_license`).
//!
//! Every check is structural and arithmetic: a valid identifier is well formed and
//! carries the right check character. Whether the administrative division code or
//! the organisation exists is the owning department's business, answered by a
//! lookup (404), not by the validator (400).

use chrono::{Datelike, FixedOffset, NaiveDate, Utc};

/// Why an identifier was refused. [`IdError::rule`] names the rule for clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Wrong number of characters.
    #[error("must be {expected} characters, got {found}")]
    Length {
        /// Characters the identifier must have.
        expected: usize,
        /// Characters it has.
        found: usize,
    },
    /// A character not allowed at its position.
    #[error("character {position} is {found:?}, allowed: {allowed}")]
    Character {
        /// 1-based position of the offending character.
        position: usize,
        /// The character found there.
        found: char,
        /// Human-readable description of the characters allowed there.
        allowed: &'static str,
    },
    /// The embedded birth date is impossible, in the future or before 1900.
    #[error("{0}")]
    BirthDate(String),
    /// The check character does not match the rest of the identifier.
    #[error("check character should be {expected:?}, got {found:?}")]
    CheckCharacter {
        /// The check character computed from the identifier's body.
        expected: char,
        /// The check character the identifier carries.
        found: char,
    },
    /// A structural problem, e.g. a missing part of an e-license identifier.
    #[error("{0}")]
    Format(String),
    /// The identifier does not match the pattern its dataset declares.
    #[error("does not match the pattern {0}")]
    Pattern(String),
}

impl IdError {
    /// Short, stable name of the rule broken: `length`, `characters`, `birth-date`,
    /// `check-character`, `format` or `pattern`.
    pub fn rule(&self) -> &'static str {
        match self {
            IdError::Length { .. } => "length",
            IdError::Character { .. } => "characters",
            IdError::BirthDate(_) => "birth-date",
            IdError::CheckCharacter { .. } => "check-character",
            IdError::Format(_) => "format",
            IdError::Pattern(_) => "pattern",
        }
    }
}

const RESIDENT_ID_LEN: usize = 18;
/// ISO 7064 MOD 11-2 weights, 2^(17-i) mod 11.
const RESIDENT_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const RESIDENT_CHECK: &[u8; 11] = b"10X98765432";

const CREDIT_CODE_LEN: usize = 18;
/// GB 32100 alphabet: digits and capitals without I, O, S, V, Z.
const CREDIT_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const CREDIT_ALLOWED: &str = "0-9 and A-H J-N P-R T U W X Y (no I, O, S, V, Z; uppercase)";
/// 3^i mod 31.
const CREDIT_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

/// OID arc every e-license identifier starts with (GB/T 36904).
pub const LICENSE_ID_PREFIX: &str = "1.2.156.3005.2.";
const LICENSE_ALPHABET: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const LICENSE_ALLOWED: &str = "0-9 and A-Z (uppercase), parts separated by '.'";
const LICENSE_TYPE_LEN: usize = CREDIT_CODE_LEN + 3;
const LICENSE_SERIAL_MAX: usize = 40;

/// Checks a GB 11643-1999 resident ID number.
///
/// 18 characters: 17 digits and a final digit or uppercase `X` (lowercase `x` is
/// refused: the standard prints it uppercase and a canonical form keeps audit
/// records searchable). The birth date (characters 7-14) must exist, be on or after
/// 1900-01-01 and not after today in China Standard Time (UTC+8). The check character
/// is ISO 7064 MOD 11-2. The legacy 15-digit form is not accepted.
pub fn check_resident_id(s: &str) -> Result<(), IdError> {
    check_length(s, RESIDENT_ID_LEN)?;
    for (i, c) in s.chars().enumerate() {
        let ok = c.is_ascii_digit() || (i == RESIDENT_ID_LEN - 1 && c == 'X');
        if !ok {
            let allowed = if i == RESIDENT_ID_LEN - 1 {
                "a digit or uppercase X"
            } else {
                "digits 0-9"
            };
            return Err(IdError::Character {
                position: i + 1,
                found: c,
                allowed,
            });
        }
    }
    check_birth_date(&s[6..14])?;
    let expected = resident_id_check_char(&s[..17])
        .ok_or_else(|| IdError::Format("first 17 characters must be digits".to_owned()))?;
    check_final_char(s, expected)
}

/// Computes the ISO 7064 MOD 11-2 check character of a resident ID number from its
/// first 17 characters; `None` unless they are exactly 17 ASCII digits.
pub fn resident_id_check_char(first17: &str) -> Option<char> {
    if first17.len() != 17 || !first17.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sum: u32 = first17
        .bytes()
        .zip(RESIDENT_WEIGHTS)
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    RESIDENT_CHECK
        .get((sum % 11) as usize)
        .map(|&b| char::from(b))
}

/// Checks a GB 32100-2015 unified social credit code.
///
/// 18 characters from the alphabet `0-9A-HJ-NP-RTUWXY` (no I, O, S, V, Z; uppercase
/// only) with the weighted MOD 31 check character last.
///
/// The organisation code inside (characters 9-17, GB 11714, ending in its own MOD 11
/// check) is deliberately *not* verified: codes in circulation are known to fail that
/// inner check, and refusing a real enterprise's code at the gateway would block a
/// lawful lookup. Only the outer GB 32100 check character is enforced. Registration
/// authority and entity type codes (characters 1-2) are not restricted to the
/// currently assigned values either.
pub fn check_credit_code(s: &str) -> Result<(), IdError> {
    check_length(s, CREDIT_CODE_LEN)?;
    check_credit_alphabet(s, 1)?;
    let expected = credit_code_check_char(&s[..17])
        .ok_or_else(|| IdError::Format("first 17 characters out of alphabet".to_owned()))?;
    check_final_char(s, expected)
}

/// Computes the GB 32100 check character from the first 17 characters of a credit
/// code; `None` unless they are exactly 17 characters of the credit-code alphabet.
pub fn credit_code_check_char(first17: &str) -> Option<char> {
    if first17.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (b, w) in first17.bytes().zip(CREDIT_WEIGHTS) {
        sum += credit_value(b)? * w;
    }
    let index = (31 - sum % 31) % 31;
    CREDIT_ALPHABET.get(index as usize).map(|&b| char::from(b))
}

/// Checks a GB/T 36904-2018 e-license identifier, in its dotted public form:
///
/// `1.2.156.3005.2.<type>.<issuer>.<serial>.<version>.<check>`
///
/// - `type`: the competent department's 18-character credit code followed by a
///   3-digit license-type number;
/// - `issuer`: the issuing department's 18-character credit code;
/// - `serial`: 1 to 40 characters of `0-9A-Z`;
/// - `version`: 3 digits;
/// - `check`: ISO 7064 hybrid MOD 37,36 over type + issuer + serial + version with the
///   dots removed (see [`license_id_check_char`]).
///
/// The embedded credit codes are checked with [`check_credit_code`] (alphabet and
/// GB 32100 check character); the published example passes that check.
pub fn check_license_id(s: &str) -> Result<(), IdError> {
    let rest = s.strip_prefix(LICENSE_ID_PREFIX).ok_or_else(|| {
        IdError::Format(format!(
            "must start with the e-license OID {LICENSE_ID_PREFIX}"
        ))
    })?;
    let offset = LICENSE_ID_PREFIX.len();
    for (i, c) in rest.chars().enumerate() {
        if !(c == '.' || c.is_ascii_digit() || c.is_ascii_uppercase()) {
            return Err(IdError::Character {
                position: offset + i + 1,
                found: c,
                allowed: LICENSE_ALLOWED,
            });
        }
    }
    let parts: Vec<&str> = rest.split('.').collect();
    let [license_type, issuer, serial, version, check] = parts.as_slice() else {
        return Err(IdError::Format(format!(
            "after {LICENSE_ID_PREFIX} expected 5 dot-separated parts \
             (type.issuer.serial.version.check), got {}",
            parts.len()
        )));
    };
    check_license_parts(license_type, issuer, serial, version, check)?;
    let body = format!("{license_type}{issuer}{serial}{version}");
    let expected = license_id_check_char(&body)
        .ok_or_else(|| IdError::Format("body out of alphabet".to_owned()))?;
    check_final_char(check, expected)
}

/// Computes the ISO 7064 hybrid MOD 37,36 check character over an e-license body
/// (type + issuer + serial + version). Dots in `body` are ignored, so the dotted
/// form works too. `None` if the body is empty or holds a character outside `0-9A-Z`.
pub fn license_id_check_char(body: &str) -> Option<char> {
    const M: u32 = 36;
    let mut p = M;
    let mut any = false;
    for b in body.bytes().filter(|&b| b != b'.') {
        let value = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            b'A'..=b'Z' => u32::from(b - b'A') + 10,
            _ => return None,
        };
        any = true;
        let mut s = (p + value) % M;
        if s == 0 {
            s = M;
        }
        p = (s * 2) % (M + 1);
    }
    if !any {
        return None;
    }
    let check = (M + 1 - p) % M;
    LICENSE_ALPHABET.get(check as usize).map(|&b| char::from(b))
}

fn check_license_parts(
    license_type: &str,
    issuer: &str,
    serial: &str,
    version: &str,
    check: &str,
) -> Result<(), IdError> {
    let part_err = |part: &str, what: &str| IdError::Format(format!("{part} {what}"));
    if license_type.len() != LICENSE_TYPE_LEN {
        return Err(part_err(
            "license type",
            "must be an 18-character credit code followed by a 3-digit type number",
        ));
    }
    let (competent, type_number) = license_type.split_at(CREDIT_CODE_LEN);
    if !type_number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(part_err("license type number", "must be 3 digits"));
    }
    embedded_credit_code("license type's department code", competent)?;
    embedded_credit_code("issuer code", issuer)?;
    if serial.is_empty() || serial.len() > LICENSE_SERIAL_MAX {
        return Err(part_err("serial", "must be 1 to 40 characters"));
    }
    if version.len() != 3 || !version.bytes().all(|b| b.is_ascii_digit()) {
        return Err(part_err("version", "must be 3 digits"));
    }
    if check.len() != 1 {
        return Err(part_err("check", "must be a single character"));
    }
    Ok(())
}

fn embedded_credit_code(part: &str, code: &str) -> Result<(), IdError> {
    check_credit_code(code).map_err(|e| IdError::Format(format!("{part} {code}: {e}")))
}

fn check_length(s: &str, expected: usize) -> Result<(), IdError> {
    let found = s.chars().count();
    if found == expected && s.len() == expected {
        return Ok(());
    }
    if found == expected {
        // Right count but multi-byte characters: name the first one.
        if let Some((position, found)) = s.chars().enumerate().find(|(_, c)| !c.is_ascii()) {
            return Err(IdError::Character {
                position: position + 1,
                found,
                allowed: "ASCII letters and digits",
            });
        }
    }
    Err(IdError::Length { expected, found })
}

fn check_credit_alphabet(s: &str, first_position: usize) -> Result<(), IdError> {
    match s.char_indices().find(|&(_, c)| !is_credit_char(c)) {
        Some((i, found)) => Err(IdError::Character {
            position: first_position + i,
            found,
            allowed: CREDIT_ALLOWED,
        }),
        None => Ok(()),
    }
}

fn is_credit_char(c: char) -> bool {
    c.is_ascii() && CREDIT_ALPHABET.contains(&(c as u8))
}

fn credit_value(b: u8) -> Option<u32> {
    CREDIT_ALPHABET
        .iter()
        .position(|&a| a == b)
        .and_then(|p| u32::try_from(p).ok())
}

fn check_final_char(s: &str, expected: char) -> Result<(), IdError> {
    match s.chars().last() {
        Some(found) if found == expected => Ok(()),
        Some(found) => Err(IdError::CheckCharacter { expected, found }),
        None => Err(IdError::Format("missing check character".to_owned())),
    }
}

fn check_birth_date(yyyymmdd: &str) -> Result<(), IdError> {
    let field = |range: std::ops::Range<usize>| {
        yyyymmdd
            .get(range)
            .and_then(|v| v.parse::<u32>().ok())
            .ok_or_else(|| IdError::BirthDate(format!("birth date {yyyymmdd} is not a date")))
    };
    let (year, month, day) = (field(0..4)?, field(4..6)?, field(6..8)?);
    let date = i32::try_from(year)
        .ok()
        .and_then(|y| NaiveDate::from_ymd_opt(y, month, day))
        .ok_or_else(|| IdError::BirthDate(format!("birth date {yyyymmdd} is not a real date")))?;
    if date.year() < 1900 {
        return Err(IdError::BirthDate(format!(
            "birth date {yyyymmdd} is before 1900-01-01"
        )));
    }
    if date > today_in_china() {
        return Err(IdError::BirthDate(format!(
            "birth date {yyyymmdd} is in the future"
        )));
    }
    Ok(())
}

/// Today's date in China Standard Time: a child born this morning in Beijing must
/// validate even while it is still yesterday in UTC.
fn today_in_china() -> NaiveDate {
    const CST_SECONDS: i32 = 8 * 3600;
    match FixedOffset::east_opt(CST_SECONDS) {
        Some(cst) => Utc::now().with_timezone(&cst).date_naive(),
        None => Utc::now().date_naive(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const LICENSE_EXAMPLE: &str =
        "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.001.U";

    /// Replaces the last character of `s` with the "next" wrong one from `alphabet`.
    fn with_wrong_last(s: &str, alphabet: &str) -> String {
        let last = s.chars().last().unwrap();
        let wrong = alphabet.chars().find(|&c| c != last).unwrap();
        format!("{}{}", &s[..s.len() - 1], wrong)
    }

    #[test]
    fn resident_examples_are_valid() {
        for id in ["11010519491231002X", "34052419800101001X"] {
            assert_eq!(check_resident_id(id), Ok(()), "{id}");
        }
        assert_eq!(resident_id_check_char("11010519491231002"), Some('X'));
    }

    #[test]
    fn resident_length() {
        let e = check_resident_id("11010519491231002").unwrap_err();
        assert_eq!(
            e,
            IdError::Length {
                expected: 18,
                found: 17
            }
        );
        assert_eq!(e.rule(), "length");
        assert_eq!(e.to_string(), "must be 18 characters, got 17");
        assert_eq!(check_resident_id("").unwrap_err().rule(), "length");
    }

    #[test]
    fn resident_letter_inside() {
        let e = check_resident_id("1101051949A231002X").unwrap_err();
        assert!(
            matches!(
                e,
                IdError::Character {
                    position: 11,
                    found: 'A',
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(e.rule(), "characters");
    }

    #[test]
    fn resident_lowercase_x() {
        let e = check_resident_id("11010519491231002x").unwrap_err();
        assert!(
            matches!(
                e,
                IdError::Character {
                    position: 18,
                    found: 'x',
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn resident_multibyte_same_count() {
        let e = check_resident_id("11010519491231002é").unwrap_err();
        assert_eq!(e.rule(), "characters");
    }

    #[test]
    fn resident_impossible_birth_date() {
        let first17 = "11010519900230001";
        let id = format!("{first17}{}", resident_id_check_char(first17).unwrap());
        let e = check_resident_id(&id).unwrap_err();
        assert_eq!(e.rule(), "birth-date");
        assert_eq!(e.to_string(), "birth date 19900230 is not a real date");
    }

    #[test]
    fn resident_future_and_ancient_birth_dates() {
        for (first17, why) in [
            ("11010521990101001", "in the future"),
            ("11010518991231001", "before 1900"),
        ] {
            let id = format!("{first17}{}", resident_id_check_char(first17).unwrap());
            let e = check_resident_id(&id).unwrap_err();
            assert_eq!(e.rule(), "birth-date", "{id}");
            assert!(e.to_string().contains(why), "{e}");
        }
    }

    #[test]
    fn resident_today_is_fine() {
        let today = today_in_china().format("%Y%m%d").to_string();
        let first17 = format!("440304{today}001");
        let id = format!("{first17}{}", resident_id_check_char(&first17).unwrap());
        assert_eq!(check_resident_id(&id), Ok(()));
    }

    #[test]
    fn resident_wrong_check_char() {
        let e = check_resident_id("110105194912310021").unwrap_err();
        assert_eq!(
            e,
            IdError::CheckCharacter {
                expected: 'X',
                found: '1'
            }
        );
        assert_eq!(e.rule(), "check-character");
    }

    #[test]
    fn resident_check_char_input() {
        assert_eq!(resident_id_check_char("1101051949123100"), None);
        assert_eq!(resident_id_check_char("1101051949123100A"), None);
    }

    #[test]
    fn credit_examples_are_valid() {
        for code in ["91350100M000100Y43", "91350200776049653A"] {
            assert_eq!(check_credit_code(code), Ok(()), "{code}");
        }
        assert_eq!(credit_code_check_char("91350200776049653"), Some('A'));
    }

    #[test]
    fn credit_forbidden_letters() {
        for bad in ['I', 'O', 'S', 'V', 'Z'] {
            let code = format!("91350100M{bad}00100Y43");
            let e = check_credit_code(&code).unwrap_err();
            assert!(
                matches!(e, IdError::Character { position: 10, found, .. } if found == bad),
                "{e:?}"
            );
        }
    }

    #[test]
    fn credit_lowercase() {
        let e = check_credit_code("91350100m000100Y43").unwrap_err();
        assert!(
            matches!(
                e,
                IdError::Character {
                    position: 9,
                    found: 'm',
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[test]
    fn credit_wrong_check_char_and_length() {
        let bad = with_wrong_last("91350200776049653A", "0123456789ABC");
        let e = check_credit_code(&bad).unwrap_err();
        assert_eq!(
            e,
            IdError::CheckCharacter {
                expected: 'A',
                found: '0'
            }
        );
        let e = check_credit_code("91350200776049653").unwrap_err();
        assert_eq!(
            e,
            IdError::Length {
                expected: 18,
                found: 17
            }
        );
    }

    #[test]
    fn license_example_is_valid() {
        assert_eq!(check_license_id(LICENSE_EXAMPLE), Ok(()));
        assert_eq!(
            license_id_check_char("11100000000013338W01111430000006122244L20230000403001"),
            Some('U')
        );
        // Dots are ignored.
        assert_eq!(
            license_id_check_char("11100000000013338W011.11430000006122244L.20230000403.001"),
            Some('U')
        );
        // The embedded codes pass GB 32100, which is why they are checked in full.
        assert_eq!(check_credit_code("11100000000013338W"), Ok(()));
        assert_eq!(check_credit_code("11430000006122244L"), Ok(()));
    }

    #[test]
    fn license_wrong_check_char() {
        let bad = with_wrong_last(LICENSE_EXAMPLE, "0123456789");
        let e = check_license_id(&bad).unwrap_err();
        assert_eq!(
            e,
            IdError::CheckCharacter {
                expected: 'U',
                found: '0'
            }
        );
    }

    #[test]
    fn license_changed_serial_is_detected() {
        let bad = LICENSE_EXAMPLE.replace("20230000403", "20230000404");
        assert_eq!(
            check_license_id(&bad).unwrap_err().rule(),
            "check-character"
        );
    }

    #[test]
    fn license_structure() {
        let cases = [
            (
                "2.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.001.U",
                "format",
            ),
            (
                "1.2.156.3005.2.11100000000013338W011.11430000006122244L.001.U",
                "format",
            ),
            (
                "1.2.156.3005.2.11100000000013338W01.11430000006122244L.20230000403.001.U",
                "format",
            ),
            (
                "1.2.156.3005.2.11100000000013338W011.11430000006122244L.20230000403.01.U",
                "format",
            ),
            (
                "1.2.156.3005.2.11100000000013338W011.11430000006122244L..001.U",
                "format",
            ),
            (
                "1.2.156.3005.2.11100000000013338W011.11430000006122244l.20230000403.001.U",
                "characters",
            ),
            // Embedded issuer code with a wrong GB 32100 check character.
            (
                "1.2.156.3005.2.11100000000013338W011.11430000006122244M.20230000403.001.U",
                "format",
            ),
            ("", "format"),
        ];
        for (id, rule) in cases {
            let e = check_license_id(id).unwrap_err();
            assert_eq!(e.rule(), rule, "{id}: {e}");
        }
    }

    #[test]
    fn license_check_char_input() {
        assert_eq!(license_id_check_char(""), None);
        assert_eq!(license_id_check_char("abc"), None);
    }
}

/// Property tests: arbitrary input never panics, generated valid identifiers pass, and
/// every single-character change to one is refused. `PROPTEST_CASES` raises the count.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    const RULES: [&str; 5] = [
        "length",
        "characters",
        "birth-date",
        "check-character",
        "format",
    ];

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 256,
            ..ProptestConfig::default()
        }
    }

    fn named(e: &IdError) -> bool {
        RULES.contains(&e.rule()) && !e.to_string().is_empty()
    }

    fn resident_id() -> impl Strategy<Value = String> {
        // Birth dates up to 2020: never in the future, whatever day the test runs.
        ("[0-9]{6}", 1900i32..=2020, 1u32..=12, 1u32..=28, "[0-9]{3}").prop_map(
            |(region, y, m, d, seq)| {
                let first17 = format!("{region}{y:04}{m:02}{d:02}{seq}");
                let check = resident_id_check_char(&first17).unwrap();
                format!("{first17}{check}")
            },
        )
    }

    fn credit_code() -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(CREDIT_ALPHABET.to_vec()), 17).prop_map(
            |bytes| {
                let first17 = String::from_utf8(bytes).unwrap();
                let check = credit_code_check_char(&first17).unwrap();
                format!("{first17}{check}")
            },
        )
    }

    fn license_id() -> impl Strategy<Value = String> {
        (
            credit_code(),
            "[0-9]{3}",
            credit_code(),
            "[0-9A-Z]{1,40}",
            "[0-9]{3}",
        )
            .prop_map(|(competent, number, issuer, serial, version)| {
                let body = format!("{competent}{number}.{issuer}.{serial}.{version}");
                let check = license_id_check_char(&body).unwrap();
                format!("{LICENSE_ID_PREFIX}{body}.{check}")
            })
    }

    /// Any character the checks could meet: the identifiers' alphabets, the
    /// separators, lowercase, and anything else.
    fn any_char() -> impl Strategy<Value = char> {
        prop_oneof![
            proptest::char::range('0', '9'),
            proptest::char::range('A', 'Z'),
            Just('.'),
            Just('x'),
            any::<char>(),
        ]
    }

    /// `s` with its `index`-th character replaced by `c` (`None` if that changes nothing).
    fn replaced(s: &str, index: usize, c: char) -> Option<String> {
        let mut chars: Vec<char> = s.chars().collect();
        let i = index % chars.len();
        if chars[i] == c {
            return None;
        }
        chars[i] = c;
        Some(chars.into_iter().collect())
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn arbitrary_text_is_refused_with_a_rule(s in "\\PC{0,80}|[0-9X.A-Z]{0,80}") {
            for result in [check_resident_id(&s), check_credit_code(&s), check_license_id(&s)] {
                if let Err(e) = result {
                    prop_assert!(named(&e), "{e:?}");
                }
            }
        }

        #[test]
        fn check_char_functions_never_panic(s in "\\PC{0,60}") {
            let _ = resident_id_check_char(&s);
            let _ = credit_code_check_char(&s);
            let _ = license_id_check_char(&s);
        }

        #[test]
        fn generated_resident_ids_are_valid(id in resident_id()) {
            prop_assert_eq!(check_resident_id(&id), Ok(()));
        }

        #[test]
        fn generated_credit_codes_are_valid(code in credit_code()) {
            prop_assert_eq!(check_credit_code(&code), Ok(()));
        }

        #[test]
        fn generated_license_ids_are_valid(id in license_id()) {
            prop_assert_eq!(check_license_id(&id), Ok(()));
        }

        // MOD 11-2 has weights 2^k mod 11, never 0, and a digit changes by less than
        // 11, so the weighted sum always moves: every one-character change is refused
        // (a changed birth-date digit may be refused as a date first).
        #[test]
        fn one_change_to_a_resident_id_is_refused(id in resident_id(), i in any::<usize>(), c in any_char()) {
            if let Some(changed) = replaced(&id, i, c) {
                let e = check_resident_id(&changed).unwrap_err();
                prop_assert!(named(&e), "{e:?}");
            }
        }

        // GB 32100 weights are 3^k mod 31, never 0, over a 31-character alphabet, so the
        // same argument holds modulo 31.
        #[test]
        fn one_change_to_a_credit_code_is_refused(code in credit_code(), i in any::<usize>(), c in any_char()) {
            if let Some(changed) = replaced(&code, i, c) {
                let e = check_credit_code(&changed).unwrap_err();
                prop_assert!(named(&e), "{e:?}");
            }
        }

        // Hybrid MOD 37,36 detects every single substitution; a change inside an
        // embedded credit code fails that code's own check, and one to a dot or the
        // prefix breaks the structure.
        #[test]
        fn one_change_to_a_license_id_is_refused(id in license_id(), i in any::<usize>(), c in any_char()) {
            if let Some(changed) = replaced(&id, i, c) {
                let e = check_license_id(&changed).unwrap_err();
                prop_assert!(named(&e), "{e:?}");
            }
        }
    }
}
