//! The one lookup path: validate → authorize → fetch (stacked in
//! [`super::stack::lookup_service`]). `/v1/lookup` sends the body it
//! parsed through it, and a bundle sends each of its items, so a lookup is checked,
//! decided, fetched and described to the audit log the same way wherever it comes
//! from.
//!
//! ```text
//!  LookupRequest (what was asked, unchecked)
//!   └▶ validate   dataset, identifier rules, matter, case id, fields (400)
//!    └▶ authorize sharing agreement, quota, operator rate (403 / 429)
//!     └▶ fetch    the owning department's source, fields filtered and masked
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use connectors::{Key, KeyError, Query, SubjectKind};
use serde::Deserialize;
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service};

use super::{take_ready, BoxFuture, Outcome, Principal, RequestMeta};
use crate::config::DatasetConfig;
use crate::error::ApiError;

/// The datasets a lookup may name, as configured.
pub type Datasets = Arc<[DatasetConfig]>;

/// What a caller asked for, before any check: the body of `/v1/lookup`, or one item
/// of a bundle.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Asked {
    /// Dataset name.
    pub dataset: String,
    /// Subject identifier (for a holder key, the holder).
    pub subject: String,
    /// Set for an e-licence found by its holder and type (bundle items only: a
    /// lookup body has no such member).
    #[serde(skip)]
    pub license_type: Option<String>,
    /// Matter.
    pub matter: String,
    /// Case id.
    pub case_id: String,
    /// Fields asked for; `None` = all the agreement grants.
    #[serde(default)]
    pub fields: Option<Vec<String>>,
}

impl Asked {
    /// Records what was asked on `o`, so a refusal is audited with it too.
    pub fn describe(&self, mut o: Outcome) -> Outcome {
        o.facts.dataset = Some(self.dataset.clone());
        o.facts.subject = Some(self.subject.clone());
        o.facts.matter = Some(self.matter.clone());
        o.facts.case_id = Some(self.case_id.clone());
        o
    }
}

/// A lookup on its way in: who asks, and what.
#[derive(Debug, Clone)]
pub struct LookupRequest {
    /// Request envelope.
    pub meta: RequestMeta,
    /// Who asks.
    pub principal: Principal,
    /// The clerk, already checked.
    pub operator: String,
    /// What.
    pub asked: Asked,
}

/// A lookup that passed validation.
#[derive(Debug, Clone)]
pub struct LookupCall {
    /// Request envelope.
    pub meta: RequestMeta,
    /// Who asks.
    pub principal: Principal,
    /// The clerk.
    pub operator: String,
    /// Dataset and validated key.
    pub query: Query,
    /// Matter.
    pub matter: String,
    /// Case id.
    pub case_id: String,
    /// Fields asked for; `None` = all the agreement grants.
    pub fields: Option<Vec<String>>,
}

/// The lookup path as one service (built by [`super::stack::lookup_service`]).
pub type LookupService = BoxCloneSyncService<LookupRequest, Outcome, Infallible>;

/// Checks a [`LookupRequest`] against the served datasets (400 naming the broken
/// rule) and describes it on the outcome for the audit record, whether it passed or
/// not.
#[derive(Clone)]
pub struct ValidateLayer {
    datasets: Datasets,
}

impl ValidateLayer {
    /// Check lookups against `datasets`.
    pub fn new(datasets: Datasets) -> Self {
        Self { datasets }
    }
}

impl<S> Layer<S> for ValidateLayer {
    type Service = Validate<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Validate {
            inner,
            datasets: Arc::clone(&self.datasets),
        }
    }
}

/// See [`ValidateLayer`].
#[derive(Clone)]
pub struct Validate<S> {
    inner: S,
    datasets: Datasets,
}

impl<S> Service<LookupRequest> for Validate<S>
where
    S: Service<LookupCall, Response = Outcome, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Outcome;
    type Error = Infallible;
    type Future = BoxFuture<Outcome>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: LookupRequest) -> Self::Future {
        let mut inner = take_ready(&mut self.inner);
        let datasets = Arc::clone(&self.datasets);
        Box::pin(async move {
            let asked = req.asked.clone();
            let outcome = match validate(&datasets, req) {
                Ok(call) => inner.call(call).await?,
                Err(e) => Outcome::error(e),
            };
            Ok(asked.describe(outcome))
        })
    }
}

/// Check everything but policy against `datasets`; the order is the order errors
/// are reported in.
pub fn validate(datasets: &[DatasetConfig], req: LookupRequest) -> Result<LookupCall, ApiError> {
    let LookupRequest {
        meta,
        principal,
        operator,
        asked,
    } = req;
    // A handful of datasets: a scan costs less than hashing the name.
    let Some(declared) = datasets
        .iter()
        .find(|d| d.dataset.as_str() == asked.dataset)
    else {
        let known: Vec<&str> = datasets.iter().map(|d| d.dataset.as_str()).collect();
        return Err(ApiError::BadRequest(format!(
            "dataset: unknown dataset {:?}; known datasets: {}",
            asked.dataset,
            known.join(", ")
        )));
    };
    let dataset = declared.dataset.clone();
    let key = match asked.license_type {
        Some(license_type) => Key::Holder {
            holder_id: asked.subject,
            license_type,
        },
        None => Key::Subject(asked.subject),
    };
    check_key(&declared.subject, &key)?;
    token("matter", &asked.matter)?;
    token("case_id", &asked.case_id)?;
    let fields = match asked.fields {
        None => None,
        Some(f) if f.is_empty() => {
            return Err(ApiError::BadRequest(
                "fields: must name at least one field, or be left out for all granted fields"
                    .into(),
            ))
        }
        Some(f) => {
            if let Some(unknown) = f.iter().find(|x| !declared.has_field(x)) {
                return Err(ApiError::BadRequest(format!(
                    "fields: {dataset} has no field {unknown:?}"
                )));
            }
            Some(f)
        }
    };
    Ok(LookupCall {
        meta,
        principal,
        operator,
        query: Query { dataset, key },
        matter: asked.matter,
        case_id: asked.case_id,
        fields,
    })
}

/// `key` as an identifier of a dataset keyed by `kind`: 400 naming the rule it
/// breaks.
fn check_key(kind: &SubjectKind, key: &Key) -> Result<(), ApiError> {
    key.validate(kind).map_err(|e| match e {
        KeyError::Identifier(error) => ApiError::InvalidIdentifier {
            kind: match key {
                Key::Holder { .. } => "resident ID number or unified social credit code".into(),
                Key::Subject(_) => kind.describe(),
            },
            subject: key.subject().to_owned(),
            error,
        },
        other => ApiError::BadRequest(format!("subject: {other}")),
    })
}

/// A matter or case id: 1-64 of `A-Z a-z 0-9 - _ . /`.
pub fn token(name: &str, value: &str) -> Result<(), ApiError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "{name}: must be 1-64 characters of A-Z a-z 0-9 - _ . /"
        )))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use http::StatusCode;
    use serde_json::json;
    use tower::ServiceExt as _;

    use super::*;
    use crate::http::test_support::{
        asked, datasets, lookup_request, recorder, Seen, CASE_ID, COUNTER, MATTER, OPERATOR,
        RESIDENT,
    };
    use crate::http::Answer;

    /// `asked` through a validate layer over a recorder that answers 200.
    async fn validated(asked: Asked) -> (Outcome, Seen<LookupCall>) {
        let (inner, seen) = recorder(|_: &LookupCall| {
            Outcome::answer(Answer::Json {
                status: StatusCode::OK,
                body: json!({}),
            })
        });
        let outcome = ValidateLayer::new(datasets())
            .layer(inner)
            .oneshot(lookup_request(COUNTER, asked))
            .await
            .unwrap();
        (outcome, seen)
    }

    fn assert_described(o: &Outcome, a: &Asked) {
        let f = &o.facts;
        assert_eq!(f.dataset.as_deref(), Some(&*a.dataset));
        assert_eq!(f.subject.as_deref(), Some(&*a.subject));
        assert_eq!(f.matter.as_deref(), Some(&*a.matter));
        assert_eq!(f.case_id.as_deref(), Some(&*a.case_id));
    }

    #[tokio::test]
    async fn a_valid_lookup_passes_as_a_call_and_is_described() {
        let a = Asked {
            fields: Some(vec!["name".into()]),
            ..asked("population", RESIDENT)
        };
        let (outcome, seen) = validated(a.clone()).await;
        assert_eq!(outcome.status(), StatusCode::OK);
        assert_described(&outcome, &a);
        let [call] = &seen.take()[..] else {
            panic!("one call expected")
        };
        assert_eq!(call.query.dataset.as_str(), "population");
        assert_eq!(call.query.key, Key::Subject(RESIDENT.into()));
        assert_eq!((&*call.matter, &*call.case_id), (MATTER, CASE_ID));
        assert_eq!(call.operator, OPERATOR);
        assert_eq!(call.fields, Some(vec!["name".to_owned()]));
    }

    #[tokio::test]
    async fn a_licence_type_makes_the_subject_a_holder() {
        let a = Asked {
            license_type: Some("营业执照".into()),
            ..asked("e_license", "91350100M000100Y43")
        };
        let (outcome, seen) = validated(a).await;
        assert_eq!(outcome.status(), StatusCode::OK);
        let [call] = &seen.take()[..] else {
            panic!("one call expected")
        };
        assert_eq!(
            call.query.key,
            Key::Holder {
                holder_id: "91350100M000100Y43".into(),
                license_type: "营业执照".into()
            }
        );
    }

    #[tokio::test]
    async fn each_rule_refuses_with_400_in_order_and_the_refusal_is_described() {
        let good = asked("population", RESIDENT);
        let cases: Vec<(Asked, &str)> = vec![
            // Dataset first: a bad subject is not even read then.
            (
                Asked {
                    dataset: "people".into(),
                    subject: "nope".into(),
                    ..good.clone()
                },
                "dataset:",
            ),
            (
                Asked {
                    subject: "110101199003074574".into(),
                    matter: String::new(),
                    ..good.clone()
                },
                "resident ID number",
            ),
            (
                Asked {
                    matter: "社保".into(),
                    case_id: String::new(),
                    ..good.clone()
                },
                "matter:",
            ),
            (
                Asked {
                    case_id: "SB 2026".into(),
                    fields: Some(vec![]),
                    ..good.clone()
                },
                "case_id:",
            ),
            (
                Asked {
                    fields: Some(vec![]),
                    ..good.clone()
                },
                "fields: must name at least one field",
            ),
            (
                Asked {
                    fields: Some(vec!["name".into(), "shoe_size".into()]),
                    ..good.clone()
                },
                "has no field \"shoe_size\"",
            ),
        ];
        for (a, expected) in cases {
            let (outcome, seen) = validated(a.clone()).await;
            let Err(e) = &outcome.result else {
                panic!("{a:?} passed")
            };
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{e}");
            assert!(e.to_string().contains(expected), "{e} lacks {expected}");
            assert_described(&outcome, &a);
            assert!(seen.take().is_empty(), "{a:?} reached fetch");
        }
    }

    #[tokio::test]
    async fn a_bad_identifier_names_the_rule_it_breaks() {
        for (subject, rule) in [
            ("110101199003074574", "check-character"),
            ("11010119900307457", "length"),
            ("110101199013074573", "birth-date"),
        ] {
            let (outcome, _) = validated(asked("population", subject)).await;
            let Err(e @ ApiError::InvalidIdentifier { .. }) = &outcome.result else {
                panic!("{subject}: {:?}", outcome.result)
            };
            assert_eq!(e.slug(), "invalid-identifier");
            assert_eq!(e.extension(), Some(("rule", rule.to_owned())), "{subject}");
        }
        let (outcome, _) = validated(asked("legal_person", RESIDENT)).await;
        let e = outcome.result.unwrap_err();
        assert!(e.to_string().contains("unified social credit code"), "{e}");
    }

    #[test]
    fn tokens_are_1_to_64_safe_characters() {
        for ok in ["a", "SB-2026/000_1.2", &"x".repeat(64)] {
            assert!(token("case_id", ok).is_ok(), "{ok}");
        }
        for bad in ["", &"x".repeat(65), "a b", "案件", "a;b", "a\n"] {
            let e = token("case_id", bad).unwrap_err();
            assert!(e.to_string().starts_with("case_id: "), "{e}");
            assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        }
    }
}

/// Property tests of what a client controls on the lookup path: any strings in a
/// lookup are refused with a 400 naming the member, never a panic.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod fuzz {
    use http::StatusCode;
    use proptest::prelude::*;

    use super::*;
    use crate::http::test_support::{datasets, lookup_request, COUNTER};

    /// Text that is sometimes close to valid and sometimes anything at all.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "\\PC{0,80}",
            "[0-9X]{17,19}",
            "[A-Za-z0-9./_-]{0,70}",
            Just("population".to_owned()),
            Just("legal_person".to_owned()),
            Just("e_license".to_owned()),
            any::<String>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn any_lookup_is_valid_or_a_400(
            dataset in text(),
            subject in text(),
            license_type in proptest::option::of(text()),
            matter in text(),
            case_id in text(),
            fields in proptest::option::of(proptest::collection::vec(text(), 0..4)),
        ) {
            let asked = Asked { dataset, subject, license_type, matter, case_id, fields };
            if let Err(e) = validate(&datasets(), lookup_request(COUNTER, asked)) {
                prop_assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{:?}", e);
            }
        }

        #[test]
        fn token_takes_exactly_its_alphabet(value in text()) {
            let ok = (1..=64).contains(&value.len())
                && value.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b));
            match token("case_id", &value) {
                Ok(()) => prop_assert!(ok),
                Err(e) => {
                    prop_assert!(!ok);
                    prop_assert!(e.to_string().contains("case_id"), "{}", e);
                }
            }
        }
    }
}
