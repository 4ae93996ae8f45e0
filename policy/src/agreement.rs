//! The sharing agreement and the rules every agreement keeps on its own. Rules that
//! need to know the world (which datasets, fields and matters exist) are the
//! [`crate::Catalogue`]'s.

use std::collections::BTreeMap;

use chrono::{DateTime, SubsecRound as _, Utc};
use serde::{Deserialize, Serialize};

use crate::schedule::{Clock, Days, Rate, ServiceHours};
use crate::PolicyError;

/// How a field may be returned under an agreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldRule {
    /// The value as the source holds it.
    Full,
    /// The value masked (see [`crate::mask_value`]).
    Masked,
}

impl FieldRule {
    /// `full` or `masked`.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldRule::Full => "full",
            FieldRule::Masked => "masked",
        }
    }
}

/// Whether an agreement grants or explicitly forbids access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Grants access (the usual case).
    #[default]
    Allow,
    /// Forbids access; overrides any allowing agreement.
    Deny,
}

impl Effect {
    /// The casbin effect token.
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        }
    }
}

/// A sharing agreement: what a provider department lets one consumer (an identity or
/// every holder of a role) do with one dataset, for which matters, when and how much.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agreement {
    /// Stable identifier, e.g. `hrss-population-2026`.
    pub id: String,
    /// Department code of the dataset's owner, e.g. `sz-psb`.
    pub provider: String,
    /// Consumer identity URI (`urn:tongban:<dept>:<system>`) or `role:<name>`.
    pub consumer: String,
    /// Dataset name, e.g. `population`.
    pub dataset: String,
    /// Matters (purposes) the data may be used for.
    pub matters: Vec<String>,
    /// Start of validity.
    pub valid_from: DateTime<Utc>,
    /// End of validity (inclusive).
    pub valid_until: DateTime<Utc>,
    /// Daily hours of service in the gateway's time zone; absent = all day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<ServiceHours>,
    /// Weekdays served; absent = every day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<Days>,
    /// Lookups per consumer identity per local day; absent = no quota.
    #[serde(
        default,
        deserialize_with = "whole_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub daily_quota: Option<u32>,
    /// Lookups per operator (clerk) of a consumer, e.g. `30/min`; absent = no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_rate: Option<Rate>,
    /// Who approved it (for an agreement made through the admin API, the caller when
    /// left out).
    #[serde(default)]
    pub approver: String,
    /// Allow (default) or an explicit deny.
    #[serde(default)]
    pub effect: Effect,
    /// The access request whose approval made (or last renewed) it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// Fields granted and how; a field absent here is refused. Last, so that the
    /// TOML form keeps it as a trailing `[agreement.fields]` table.
    #[serde(default)]
    pub fields: BTreeMap<String, FieldRule>,
}

/// Why an agreement does not cover a question, one condition at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// The matter is not among the agreement's matters.
    Matter,
    /// The moment is outside valid_from..=valid_until.
    Validity,
    /// The local day is not one of the agreement's days.
    Day,
    /// The local time is outside the hours of service.
    Hours,
}

impl Agreement {
    /// Check the rules every agreement must keep; the error names the field.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let invalid = |field: &str, message: String| PolicyError::Invalid {
            id: self.id.clone(),
            field: field.to_owned(),
            message,
        };
        if self.id.is_empty() || self.id.len() > 64 || !self.id.chars().all(is_token_char) {
            return Err(invalid(
                "id",
                "must be 1-64 lowercase letters, digits, '-' or '_'".into(),
            ));
        }
        certs::Identity::new(&self.provider, "check")
            .map_err(|e| invalid("provider", format!("not a department code: {e}")))?;
        check_consumer(&self.consumer).map_err(|m| invalid("consumer", m))?;
        if self.dataset.is_empty() {
            return Err(invalid("dataset", "must name a dataset".into()));
        }
        if self.matters.is_empty() {
            return Err(invalid("matters", "must name at least one matter".into()));
        }
        if let Some(m) = self.matters.iter().find(|m| !is_matter(m)) {
            return Err(invalid(
                "matters",
                format!("{m:?} is not a matter code (1-64 of a-z 0-9 - _ . /)"),
            ));
        }
        match self.effect {
            Effect::Allow if self.fields.is_empty() => {
                return Err(invalid(
                    "fields",
                    "an allowing agreement must grant at least one field".into(),
                ))
            }
            Effect::Deny if !self.fields.is_empty() => {
                return Err(invalid(
                    "fields",
                    "a deny agreement refuses the whole dataset; leave fields out".into(),
                ))
            }
            _ => {}
        }
        if self.valid_until < self.valid_from {
            return Err(invalid("valid_until", "is before valid_from".into()));
        }
        if self.daily_quota == Some(0) {
            return Err(invalid(
                "daily_quota",
                "0 allows nothing; use a deny agreement instead".into(),
            ));
        }
        if self.approver.trim().is_empty() {
            return Err(invalid("approver", "must name who approved it".into()));
        }
        Ok(())
    }

    /// Whether `at` lies within the validity window, to the second (the window is
    /// written to the second; a request's fraction of a second does not count).
    pub fn in_force(&self, at: DateTime<Utc>) -> bool {
        let at = at.trunc_subsecs(0);
        self.valid_from.trunc_subsecs(0) <= at && at <= self.valid_until.trunc_subsecs(0)
    }

    /// The first condition under which this agreement does not cover `matter` at
    /// `clock`; `None` when it covers. This is the one statement of the
    /// conditions: decisions hand casbin its result, and explanations show it.
    pub fn unmet(&self, matter: &str, clock: &Clock) -> Option<Condition> {
        if !self.matters.iter().any(|m| m == matter) {
            Some(Condition::Matter)
        } else if !self.in_force(clock.at) {
            Some(Condition::Validity)
        } else if !self.days.is_none_or(|d| d.contains(clock.weekday())) {
            Some(Condition::Day)
        } else if !self.hours.is_none_or(|h| h.contains(clock.minute())) {
            Some(Condition::Hours)
        } else {
            None
        }
    }

    /// The first of `asked` this agreement does not grant.
    pub fn missing_field<'a>(&self, asked: &'a [String]) -> Option<&'a String> {
        asked.iter().find(|f| !self.fields.contains_key(*f))
    }

    /// Human description of when it serves, e.g. `mon-fri 08:30-17:30`.
    pub fn schedule_text(&self) -> String {
        let days = self.days.map(|d| d.names().join(","));
        let hours = self.hours.map(|h| h.to_string());
        match (days, hours) {
            (None, None) => "at any time".into(),
            (Some(d), None) => format!("on {d}"),
            (None, Some(h)) => format!("{h} daily"),
            (Some(d), Some(h)) => format!("{h} on {d}"),
        }
    }
}

/// A quota as JSON may spell it: JSON has one kind of number, so `100` and `100.0` are
/// the same quota (JSON Schema's `integer`, the API document's, admits both), while
/// `100.5` or a number past `u32` is refused.
pub(crate) fn whole_number<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<u32>, D::Error> {
    use serde::de::{Error, Unexpected, Visitor};

    struct Whole;

    impl Visitor<'_> for Whole {
        type Value = u32;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a whole number from 0 to 4294967295")
        }

        fn visit_u64<E: Error>(self, v: u64) -> Result<u32, E> {
            u32::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
        }

        fn visit_i64<E: Error>(self, v: i64) -> Result<u32, E> {
            u32::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
        }

        fn visit_f64<E: Error>(self, v: f64) -> Result<u32, E> {
            let whole = v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&v);
            // Exact: a whole number within u32's range.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            whole
                .then_some(v as u32)
                .ok_or_else(|| E::invalid_value(Unexpected::Float(v), &self))
        }
    }

    struct Quota(u32);

    impl<'de> Deserialize<'de> for Quota {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(Whole).map(Quota)
        }
    }

    Ok(Option::<Quota>::deserialize(d)?.map(|q| q.0))
}

pub(crate) fn is_token_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'
}

/// A matter code, the same characters the lookup API accepts.
pub(crate) fn is_matter(m: &str) -> bool {
    !m.is_empty()
        && m.len() <= 64
        && m.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

/// A consumer is an identity URI that parses as a certificate identity, or
/// `role:<name>`.
/// A role name: what `role:<name>` may name.
pub(crate) fn is_role_name(role: &str) -> bool {
    !role.is_empty() && role.len() <= 64 && role.chars().all(is_token_char)
}

pub(crate) fn check_consumer(consumer: &str) -> Result<(), String> {
    if let Some(role) = consumer.strip_prefix("role:") {
        if !is_role_name(role) {
            return Err(format!(
                "{consumer:?}: a role name is 1-64 lowercase letters, digits, '-' or '_'"
            ));
        }
        return Ok(());
    }
    consumer.parse::<certs::Identity>().map(|_| ()).map_err(|e| {
        format!("{consumer:?} is neither an identity urn:tongban:<dept>:<system> nor role:<name>: {e}")
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use chrono::TimeZone as _;

    pub(crate) fn sample() -> Agreement {
        let mut fields = BTreeMap::new();
        fields.insert("name".to_owned(), FieldRule::Full);
        fields.insert("household_address".to_owned(), FieldRule::Masked);
        Agreement {
            id: "hrss-population-2026".into(),
            provider: "sz-psb".into(),
            consumer: "urn:tongban:sz-hrss:counter-01".into(),
            dataset: "population".into(),
            matters: vec!["social-insurance-enrollment".into()],
            valid_from: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            valid_until: Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).unwrap(),
            hours: None,
            days: None,
            daily_quota: None,
            operator_rate: None,
            approver: "urn:tongban:sz-psb:admin-01".into(),
            effect: Effect::Allow,
            request: None,
            fields,
        }
    }

    fn field_of(a: &Agreement) -> String {
        match a.validate() {
            Err(PolicyError::Invalid { field, .. }) => field,
            other => panic!("expected an invalid field, got {other:?}"),
        }
    }

    type Edit = Box<dyn Fn(&mut Agreement)>;

    #[test]
    fn validation_names_the_field() {
        assert!(sample().validate().is_ok());
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|a| a.id = "Bad Id".into()), "id"),
            (Box::new(|a| a.provider = "SZ_PSB".into()), "provider"),
            (Box::new(|a| a.consumer = "counter-01".into()), "consumer"),
            (
                Box::new(|a| a.consumer = "urn:tongban:sz-hrss".into()),
                "consumer",
            ),
            (Box::new(|a| a.consumer = "role:".into()), "consumer"),
            (Box::new(|a| a.matters.clear()), "matters"),
            (Box::new(|a| a.matters = vec!["a b".into()]), "matters"),
            (Box::new(|a| a.fields.clear()), "fields"),
            (Box::new(|a| a.effect = Effect::Deny), "fields"),
            (
                Box::new(|a| a.valid_until = a.valid_from - chrono::Duration::days(1)),
                "valid_until",
            ),
            (Box::new(|a| a.daily_quota = Some(0)), "daily_quota"),
            (Box::new(|a| a.approver.clear()), "approver"),
        ];
        for (change, want) in cases {
            let mut a = sample();
            change(&mut a);
            assert_eq!(field_of(&a), want, "{a:?}");
        }
        let mut role = sample();
        role.consumer = "role:counter".into();
        assert!(role.validate().is_ok());
    }

    #[test]
    fn conditions_in_order() {
        let tz = crate::TimeZone::default();
        let mut a = sample();
        a.hours = Some("09:00-17:00".parse().unwrap());
        a.days = Some(Days::from_names(&["mon", "tue", "wed", "thu", "fri"]).unwrap());
        // Monday 2026-06-01 10:00 in Beijing.
        let monday = Clock::new(Utc.with_ymd_and_hms(2026, 6, 1, 2, 0, 0).unwrap(), tz);
        assert_eq!(a.unmet("social-insurance-enrollment", &monday), None);
        assert_eq!(a.unmet("marketing", &monday), Some(Condition::Matter));
        let evening = Clock::new(Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap(), tz);
        assert_eq!(
            a.unmet("social-insurance-enrollment", &evening),
            Some(Condition::Hours)
        );
        let sunday = Clock::new(Utc.with_ymd_and_hms(2026, 6, 7, 2, 0, 0).unwrap(), tz);
        assert_eq!(
            a.unmet("social-insurance-enrollment", &sunday),
            Some(Condition::Day)
        );
        let later = Clock::new(Utc.with_ymd_and_hms(2027, 6, 1, 2, 0, 0).unwrap(), tz);
        assert_eq!(
            a.unmet("social-insurance-enrollment", &later),
            Some(Condition::Validity)
        );
        assert_eq!(a.schedule_text(), "09:00-17:00 on mon,tue,wed,thu,fri");
    }

    #[test]
    fn json_round_trip_keeps_every_field() {
        let mut a = sample();
        a.hours = Some("08:30-17:30".parse().unwrap());
        a.daily_quota = Some(100);
        a.operator_rate = Some("30/min".parse().unwrap());
        let text = serde_json::to_string(&a).unwrap();
        assert!(text.contains("\"hours\":\"08:30-17:30\""), "{text}");
        assert!(text.contains("\"operator_rate\":\"30/min\""), "{text}");
        let back: Agreement = serde_json::from_str(&text).unwrap();
        assert_eq!(back, a);
    }

    /// Schemathesis sends JSON Schema `integer`s as `100.0` too; the same number.
    #[test]
    fn a_quota_is_a_whole_number_however_spelled() {
        let with = |quota: serde_json::Value| {
            let mut v = serde_json::to_value(sample()).unwrap();
            v["daily_quota"] = quota;
            serde_json::from_value::<Agreement>(v).map(|a| a.daily_quota)
        };
        assert_eq!(with(serde_json::json!(100)).unwrap(), Some(100));
        assert_eq!(with(serde_json::json!(100.0)).unwrap(), Some(100));
        assert_eq!(
            with(serde_json::json!(4294967295.0)).unwrap(),
            Some(u32::MAX)
        );
        assert_eq!(with(serde_json::Value::Null).unwrap(), None);
        for bad in [
            serde_json::json!(100.5),
            serde_json::json!(4294967296_u64),
            serde_json::json!(-1),
            serde_json::json!(4294967296.0),
            serde_json::json!("100"),
        ] {
            assert!(with(bad.clone()).is_err(), "{bad}");
        }
    }
}

/// Property tests of the agreement JSON the admin API accepts: a good agreement with
/// any one member replaced by any JSON is read and checked, or refused, never a panic.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod fuzz {
    use chrono::{TimeZone as _, Utc};
    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;
    use crate::schedule::{Clock, TimeZone};

    fn good() -> Value {
        json!({
            "id": "hrss-population-2026", "provider": "sz-psb",
            "consumer": "urn:tongban:sz-hrss:counter-01", "dataset": "population",
            "matters": ["social-insurance-enrollment"],
            "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2027-12-31T23:59:59Z",
            "hours": "08:30-17:30", "daily_quota": 500,
            "approver": "urn:tongban:sz-psb:admin-01",
            "fields": {"name": "full", "household_address": "masked"}
        })
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "\\PC{0,20}".prop_map(Value::from),
            "[0-9:TZ+-]{0,25}".prop_map(Value::from),
        ];
        leaf.prop_recursive(2, 12, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map("\\PC{0,10}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn the_good_agreement_is_valid() {
        let a: Agreement = serde_json::from_value(good()).unwrap();
        a.validate().unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn any_member_replaced_is_read_or_refused(
            member in proptest::sample::select(vec![
                "id", "provider", "consumer", "dataset", "matters", "valid_from",
                "valid_until", "hours", "days", "daily_quota", "approver", "fields",
                "unknown",
            ]),
            v in json_value(),
            hour in 0u32..24,
        ) {
            let mut body = good();
            body[member] = v;
            if let Ok(a) = serde_json::from_value::<Agreement>(body) {
                if a.validate().is_ok() {
                    let at = Utc.with_ymd_and_hms(2026, 6, 1, hour, 0, 0).unwrap();
                    let _ = a.unmet("social-insurance-enrollment", &Clock::new(at, TimeZone::default()));
                }
            }
        }
    }
}
