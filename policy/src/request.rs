//! Access requests: how an agreement comes about. A consumer department files a
//! request for fields of a provider's dataset, for named matters, on a legal basis;
//! the provider approves it, possibly narrowed, or refuses it with a reason; the
//! requester may withdraw it while it waits.
//!
//! ```text
//!              approve (narrowed or as asked) ─▶ approved ─▶ agreement created or renewed
//!  submitted ─┼ refuse (reason)               ─▶ refused
//!             ├ withdraw (requester)          ─▶ withdrawn
//!             └ its validity ends unreviewed  ─▶ expired
//! ```
//!
//! A request still `submitted` past its review deadline (`review_by`, counted in
//! working days) stays submitted and is *overdue*; it can still be approved.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::agreement::{check_consumer, is_matter, is_token_char, whole_number};
pub use crate::request_state::RequestState;
use crate::{Agreement, Effect, FieldRule, PolicyError};

/// What a consumer department asks for: the terms of the agreement it wants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestTerms {
    /// The provider's dataset.
    pub dataset: String,
    /// The identity the agreement is to name, `urn:tongban:<dept>:<system>` (a
    /// system of the requesting department).
    pub consumer: String,
    /// Fields asked, each `full` or `masked`.
    pub fields: BTreeMap<String, FieldRule>,
    /// Matters the data is needed for.
    pub matters: Vec<String>,
    /// The legal basis or justification.
    pub legal_basis: String,
    /// Start of the validity wanted.
    pub valid_from: DateTime<Utc>,
    /// End of the validity wanted (inclusive).
    pub valid_until: DateTime<Utc>,
    /// Lookups per day wanted; absent = no quota asked.
    #[serde(
        default,
        deserialize_with = "whole_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub daily_quota: Option<u32>,
    /// Whom the provider can ask about the request (name, phone, mail).
    pub contact: String,
    /// The agreement this request renews: approval replaces it rather than creating
    /// a second one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renews: Option<String>,
}

/// The longest legal basis, reason or contact kept (characters).
pub const MAX_TEXT: usize = 2000;

impl RequestTerms {
    /// Check the rules that need no knowledge of the world; the error names the
    /// field. `now` refuses a validity that has already ended.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), PolicyError> {
        let bad = |field: &str, message: String| PolicyError::BadRequest {
            field: field.to_owned(),
            message,
        };
        if self.dataset.is_empty() {
            return Err(bad("dataset", "must name a dataset".into()));
        }
        if self.consumer.starts_with("role:") {
            return Err(bad(
                "consumer",
                "a request names one identity of the requesting department, not a role (a role spans departments)".into(),
            ));
        }
        check_consumer(&self.consumer).map_err(|m| bad("consumer", m))?;
        if self.fields.is_empty() {
            return Err(bad("fields", "ask for at least one field".into()));
        }
        if self.matters.is_empty() {
            return Err(bad("matters", "name at least one matter".into()));
        }
        if let Some(m) = self.matters.iter().find(|m| !is_matter(m)) {
            return Err(bad(
                "matters",
                format!("{m:?} is not a matter code (1-64 of a-z 0-9 - _ . /)"),
            ));
        }
        text(&self.legal_basis).map_err(|m| bad("legal_basis", m))?;
        text(&self.contact).map_err(|m| bad("contact", m))?;
        if self.valid_until < self.valid_from {
            return Err(bad("valid_until", "is before valid_from".into()));
        }
        if self.valid_until < now {
            return Err(bad(
                "valid_until",
                "has already passed: nothing would be left to grant".into(),
            ));
        }
        if self.daily_quota == Some(0) {
            return Err(bad("daily_quota", "0 allows nothing".into()));
        }
        if let Some(id) = &self.renews {
            if !is_agreement_id(id) {
                return Err(bad(
                    "renews",
                    format!("{id:?} is not an agreement id (1-64 of a-z 0-9 - _)"),
                ));
            }
        }
        Ok(())
    }

    /// The department of the consumer identity (checked by [`Self::validate`]).
    pub fn consumer_department(&self) -> Option<String> {
        self.consumer
            .parse::<certs::Identity>()
            .ok()
            .map(|i| i.department().to_owned())
    }
}

/// A request as kept: its terms, who filed it, where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessRequest {
    /// The request id.
    pub id: String,
    /// Where it stands.
    pub state: RequestState,
    /// The department that owns the dataset and reviews the request.
    pub provider: String,
    /// The requesting department (the consumer identity's).
    pub consumer_department: String,
    /// Who filed it (an identity URI, `cli:<name>` for the CLI).
    pub requester: String,
    /// What it asks for.
    pub terms: RequestTerms,
    /// When it was filed.
    pub submitted_at: DateTime<Utc>,
    /// The review deadline: the end of the last working day allowed.
    pub review_by: DateTime<Utc>,
    /// When it was approved, refused, withdrawn or expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
    /// Who did it (the reviewer's identity, `system:…` for a rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// Why it was refused (or withdrawn, when the requester said).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The agreement its approval created or renewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement: Option<String>,
}

impl AccessRequest {
    /// Whether it waits for review past its deadline at `now`.
    pub fn overdue(&self, now: DateTime<Utc>) -> bool {
        self.state == RequestState::Submitted && now > self.review_by
    }

    /// Whether it can no longer be granted: still submitted, its validity over.
    pub fn lapsed(&self, now: DateTime<Utc>) -> bool {
        self.state == RequestState::Submitted && now > self.terms.valid_until
    }

    /// The id its agreement gets when the reviewer names none: the renewed
    /// agreement's, else `<consumer dept>-<dataset>-<last 8 of the request id>`.
    pub fn default_agreement_id(&self) -> String {
        if let Some(id) = &self.terms.renews {
            return id.clone();
        }
        let tail: String = {
            let chars: Vec<char> = self
                .id
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect();
            chars[chars.len().saturating_sub(8)..]
                .iter()
                .collect::<String>()
                .to_ascii_lowercase()
        };
        let id = format!("{}-{}-{tail}", self.consumer_department, self.terms.dataset);
        if is_agreement_id(&id) {
            id
        } else {
            format!("req-{tail}")
        }
    }

    /// The agreement approving it grants, narrowed by `n`, approved by `approver`.
    /// Narrowing only takes away: fewer fields or matters, masked instead of full, a
    /// lower quota, a shorter validity; anything wider is refused naming the field.
    pub fn grant(&self, n: &Narrowing, approver: &str) -> Result<Agreement, PolicyError> {
        let bad = |field: String, message: String| PolicyError::BadRequest { field, message };
        let t = &self.terms;
        let fields = match &n.fields {
            None => t.fields.clone(),
            Some(f) => {
                for (name, rule) in f {
                    match t.fields.get(name) {
                        None => {
                            return Err(bad(
                                format!("fields.{name}"),
                                "was not asked for; approval can only narrow".into(),
                            ))
                        }
                        Some(FieldRule::Masked) if *rule == FieldRule::Full => {
                            return Err(bad(
                                format!("fields.{name}"),
                                "was asked masked; approval cannot grant it in full".into(),
                            ))
                        }
                        Some(_) => {}
                    }
                }
                if f.is_empty() {
                    return Err(bad(
                        "fields".into(),
                        "grant at least one field (or refuse the request)".into(),
                    ));
                }
                f.clone()
            }
        };
        let matters = match &n.matters {
            None => t.matters.clone(),
            Some(m) => {
                if let Some(x) = m.iter().find(|x| !t.matters.contains(x)) {
                    return Err(bad(
                        "matters".into(),
                        format!("{x:?} was not asked for; approval can only narrow"),
                    ));
                }
                if m.is_empty() {
                    return Err(bad(
                        "matters".into(),
                        "grant at least one matter (or refuse the request)".into(),
                    ));
                }
                m.clone()
            }
        };
        let daily_quota = match (n.daily_quota, t.daily_quota) {
            (Some(q), Some(asked)) if q > asked => {
                return Err(bad(
                    "daily_quota".into(),
                    format!("{q} is more than the {asked} asked for"),
                ))
            }
            (Some(q), _) => Some(q),
            (None, asked) => asked,
        };
        let valid_from = match n.valid_from {
            Some(v) if v < t.valid_from => {
                return Err(bad(
                    "valid_from".into(),
                    "is before the validity asked for".into(),
                ))
            }
            Some(v) => v,
            None => t.valid_from,
        };
        let valid_until = match n.valid_until {
            Some(v) if v > t.valid_until => {
                return Err(bad(
                    "valid_until".into(),
                    "is after the validity asked for".into(),
                ))
            }
            Some(v) => v,
            None => t.valid_until,
        };
        let id = match (&n.agreement_id, &t.renews) {
            (Some(given), Some(renews)) if given != renews => {
                return Err(bad(
                    "agreement_id".into(),
                    format!("the request renews {renews}; its approval replaces that agreement"),
                ))
            }
            (Some(given), _) => given.clone(),
            (None, _) => self.default_agreement_id(),
        };
        Ok(Agreement {
            id,
            provider: self.provider.clone(),
            consumer: t.consumer.clone(),
            dataset: t.dataset.clone(),
            matters,
            valid_from,
            valid_until,
            hours: None,
            days: None,
            daily_quota,
            operator_rate: None,
            approver: approver.to_owned(),
            effect: Effect::Allow,
            request: Some(self.id.clone()),
            fields,
        })
    }
}

/// What a reviewer takes away when approving; every member optional (absent = as
/// asked).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Narrowing {
    /// The fields granted: a subset of those asked, `masked` where `full` was asked
    /// allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<BTreeMap<String, FieldRule>>,
    /// The matters granted, a subset of those asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matters: Option<Vec<String>>,
    /// A daily quota no higher than asked.
    #[serde(
        default,
        deserialize_with = "whole_number",
        skip_serializing_if = "Option::is_none"
    )]
    pub daily_quota: Option<u32>,
    /// A later start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<DateTime<Utc>>,
    /// An earlier end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<DateTime<Utc>>,
    /// The new agreement's id (default: see [`AccessRequest::default_agreement_id`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agreement_id: Option<String>,
}

/// A transition of a request, as its history keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestEvent {
    /// 1 for the filing, then one more per transition.
    pub seq: i64,
    /// `file`, `approve`, `refuse`, `withdraw`, `expire`.
    pub action: String,
    /// Who (an identity, `cli:<name>`, `system:<rule>`).
    pub actor: String,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// The request before (absent for the filing).
    pub before: Option<serde_json::Value>,
    /// The request after.
    pub after: Option<serde_json::Value>,
}

fn text(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        Err("must not be empty".into())
    } else if s.chars().count() > MAX_TEXT {
        Err(format!("at most {MAX_TEXT} characters"))
    } else {
        Ok(())
    }
}

/// Whether `id` is a well-formed agreement id.
pub(crate) fn is_agreement_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(is_token_char)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use chrono::TimeZone as _;

    use super::*;

    pub(crate) fn terms() -> RequestTerms {
        let mut fields = BTreeMap::new();
        fields.insert("name".to_owned(), FieldRule::Full);
        fields.insert("birth_date".to_owned(), FieldRule::Full);
        fields.insert("household_address".to_owned(), FieldRule::Masked);
        RequestTerms {
            dataset: "population".into(),
            consumer: "urn:tongban:sz-hf:counter-01".into(),
            fields,
            matters: vec!["housing-fund-withdrawal".into()],
            legal_basis: "Housing Provident Fund Regulations, art. 24".into(),
            valid_from: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            valid_until: Utc.with_ymd_and_hms(2027, 12, 31, 23, 59, 59).unwrap(),
            daily_quota: Some(500),
            contact: "Li Hua, 0755-1234".into(),
            renews: None,
        }
    }

    pub(crate) fn request() -> AccessRequest {
        AccessRequest {
            id: "0193a0b0-0000-7000-8000-00000000abcd".into(),
            state: RequestState::Submitted,
            provider: "sz-psb".into(),
            consumer_department: "sz-hf".into(),
            requester: "urn:tongban:sz-hf:admin-01".into(),
            terms: terms(),
            submitted_at: Utc.with_ymd_and_hms(2026, 6, 1, 2, 0, 0).unwrap(),
            review_by: Utc.with_ymd_and_hms(2026, 6, 15, 15, 59, 59).unwrap(),
            decided_at: None,
            decided_by: None,
            reason: None,
            agreement: None,
        }
    }

    fn field_of(r: Result<impl std::fmt::Debug, PolicyError>) -> String {
        match r {
            Err(PolicyError::BadRequest { field, .. }) => field,
            other => panic!("expected a bad field, got {other:?}"),
        }
    }

    #[test]
    fn terms_are_checked_naming_the_field() {
        let now = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
        terms().validate(now).unwrap();
        type Edit = Box<dyn Fn(&mut RequestTerms)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|t| t.dataset.clear()), "dataset"),
            (Box::new(|t| t.consumer = "role:counter".into()), "consumer"),
            (Box::new(|t| t.consumer = "counter-01".into()), "consumer"),
            (Box::new(|t| t.fields.clear()), "fields"),
            (Box::new(|t| t.matters.clear()), "matters"),
            (Box::new(|t| t.matters = vec!["a b".into()]), "matters"),
            (Box::new(|t| t.legal_basis = "  ".into()), "legal_basis"),
            (Box::new(|t| t.contact = "x".repeat(2001)), "contact"),
            (
                Box::new(|t| t.valid_until = t.valid_from - chrono::Duration::days(1)),
                "valid_until",
            ),
            (
                Box::new(|t| t.valid_until = Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap()),
                "valid_until",
            ),
            (Box::new(|t| t.daily_quota = Some(0)), "daily_quota"),
            (Box::new(|t| t.renews = Some("Bad Id".into())), "renews"),
        ];
        for (edit, want) in cases {
            let mut t = terms();
            edit(&mut t);
            assert_eq!(field_of(t.validate(now)), want, "{t:?}");
        }
        assert_eq!(terms().consumer_department().as_deref(), Some("sz-hf"));
    }

    #[test]
    fn approval_as_asked_grants_the_terms() {
        let r = request();
        let a = r
            .grant(&Narrowing::default(), "urn:tongban:sz-psb:admin-01")
            .unwrap();
        assert_eq!(a.fields, r.terms.fields);
        assert_eq!(a.daily_quota, Some(500));
        assert_eq!(a.request.as_deref(), Some(r.id.as_str()));
        assert_eq!(a.approver, "urn:tongban:sz-psb:admin-01");
        assert_eq!(a.id, "sz-hf-population-0000abcd");
        a.validate().unwrap();
    }

    #[test]
    fn approval_only_narrows() {
        let r = request();
        let mut fields = BTreeMap::new();
        fields.insert("name".to_owned(), FieldRule::Full);
        fields.insert("birth_date".to_owned(), FieldRule::Masked);
        let later = Utc.with_ymd_and_hms(2026, 12, 31, 0, 0, 0).unwrap();
        let n = Narrowing {
            fields: Some(fields.clone()),
            daily_quota: Some(100),
            valid_until: Some(later),
            ..Narrowing::default()
        };
        let a = r.grant(&n, "x").unwrap();
        assert_eq!(a.fields, fields);
        assert_eq!((a.daily_quota, a.valid_until), (Some(100), later));

        let wider: Vec<(Narrowing, &str)> = vec![
            (
                Narrowing {
                    fields: Some(BTreeMap::from([("ethnicity".into(), FieldRule::Full)])),
                    ..Narrowing::default()
                },
                "fields.ethnicity",
            ),
            (
                Narrowing {
                    fields: Some(BTreeMap::from([(
                        "household_address".into(),
                        FieldRule::Full,
                    )])),
                    ..Narrowing::default()
                },
                "fields.household_address",
            ),
            (
                Narrowing {
                    fields: Some(BTreeMap::new()),
                    ..Narrowing::default()
                },
                "fields",
            ),
            (
                Narrowing {
                    matters: Some(vec!["marketing".into()]),
                    ..Narrowing::default()
                },
                "matters",
            ),
            (
                Narrowing {
                    daily_quota: Some(501),
                    ..Narrowing::default()
                },
                "daily_quota",
            ),
            (
                Narrowing {
                    valid_from: Some(Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()),
                    ..Narrowing::default()
                },
                "valid_from",
            ),
            (
                Narrowing {
                    valid_until: Some(Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap()),
                    ..Narrowing::default()
                },
                "valid_until",
            ),
        ];
        for (n, want) in wider {
            assert_eq!(field_of(r.grant(&n, "x")), want, "{n:?}");
        }
    }

    #[test]
    fn a_renewal_replaces_the_agreement_it_names() {
        let mut r = request();
        r.terms.renews = Some("hf-population-2026".into());
        assert_eq!(
            r.grant(&Narrowing::default(), "x").unwrap().id,
            "hf-population-2026"
        );
        let other = Narrowing {
            agreement_id: Some("another".into()),
            ..Narrowing::default()
        };
        assert_eq!(field_of(r.grant(&other, "x")), "agreement_id");
    }

    #[test]
    fn overdue_and_lapsed_are_for_submitted_requests() {
        let mut r = request();
        let before = Utc.with_ymd_and_hms(2026, 6, 10, 0, 0, 0).unwrap();
        let after = Utc.with_ymd_and_hms(2026, 6, 16, 0, 0, 0).unwrap();
        assert!(!r.overdue(before) && r.overdue(after));
        assert!(!r.lapsed(after));
        assert!(r.lapsed(Utc.with_ymd_and_hms(2028, 1, 1, 0, 0, 0).unwrap()));
        r.state = RequestState::Refused;
        assert!(!r.overdue(after));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["state"], "refused");
        assert_eq!(json["terms"]["dataset"], "population");
        let back: AccessRequest = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
    }
}
