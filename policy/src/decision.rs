//! What is asked of the authorizer and what it answers: the [`Question`], the
//! [`Decision`] with its [`Grant`] or [`Denial`], and how a decision is read off
//! the one evaluation of the candidate agreements (see [`crate::engine`]).

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::agreement::Condition;
use crate::schedule::Rate;
use crate::{Agreement, Effect, FieldRule};

/// What a caller asks the authorizer.
#[derive(Debug, Clone)]
pub struct Question<'a> {
    /// Authenticated identity URI of the consumer.
    pub consumer: &'a str,
    /// Dataset asked for.
    pub dataset: &'a str,
    /// Matter (purpose) named by the request.
    pub matter: &'a str,
    /// Fields asked for; `None` means every field the agreement grants.
    pub fields: Option<&'a [String]>,
    /// The moment of the decision.
    pub at: DateTime<Utc>,
}

/// A field to return and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldGrant {
    /// Field name.
    pub name: String,
    /// Full or masked.
    pub rule: FieldRule,
}

/// The counted limits of the agreement that allows an access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Lookups per consumer identity per local day.
    pub daily_quota: Option<u32>,
    /// Lookups per operator per window.
    pub operator_rate: Option<Rate>,
}

/// An allowed access: under which agreement, and exactly which fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The agreement that allows it.
    pub agreement: String,
    /// The providing department.
    pub provider: String,
    /// The fields to return, in the order asked (or the agreement's order).
    pub fields: Vec<FieldGrant>,
    /// Quota and rate to charge before answering (see [`crate::Meter`]).
    pub limits: Limits,
}

/// Why an access is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No agreement names this consumer (or its roles) for the dataset.
    NoAgreement {
        /// Consumer identity.
        consumer: String,
        /// Dataset.
        dataset: String,
    },
    /// Agreements exist for the dataset, none for this matter.
    MatterNotAllowed {
        /// Dataset.
        dataset: String,
        /// The matter asked for.
        matter: String,
    },
    /// The agreement covering the matter is not in force at this moment.
    NotInForce {
        /// Agreement id.
        agreement: String,
    },
    /// The agreement covering the matter is in force but does not serve now.
    OutsideHours {
        /// Agreement id.
        agreement: String,
        /// When it serves, e.g. `08:30-17:30 on mon,tue,wed,thu,fri`.
        schedule: String,
    },
    /// An explicit deny agreement matches.
    ExplicitDeny {
        /// Agreement id.
        agreement: String,
    },
    /// A field asked for is not granted by any agreement that allows the access.
    FieldNotAllowed {
        /// Agreement id checked.
        agreement: String,
        /// The field refused.
        field: String,
    },
    /// The consumer has used up today's quota under the agreement.
    QuotaExhausted {
        /// Agreement id.
        agreement: String,
        /// Lookups per day.
        quota: u32,
    },
    /// The operator has reached the agreement's rate limit for this window.
    RateLimited {
        /// Agreement id.
        agreement: String,
        /// The limit.
        rate: Rate,
    },
}

impl Denial {
    /// A short machine-readable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            Denial::NoAgreement { .. } => "no-agreement",
            Denial::MatterNotAllowed { .. } => "matter-not-allowed",
            Denial::NotInForce { .. } => "agreement-not-in-force",
            Denial::OutsideHours { .. } => "outside-service-hours",
            Denial::ExplicitDeny { .. } => "explicit-deny",
            Denial::FieldNotAllowed { .. } => "field-not-allowed",
            Denial::QuotaExhausted { .. } => "daily-quota-exhausted",
            Denial::RateLimited { .. } => "operator-rate-exceeded",
        }
    }

    /// Whether the refusal is a counted limit (retry later) rather than a matter of
    /// permission; HTTP maps these to 429.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            Denial::QuotaExhausted { .. } | Denial::RateLimited { .. }
        )
    }

    /// The agreement the refusal is about, when there is one.
    pub fn agreement(&self) -> Option<&str> {
        match self {
            Denial::NoAgreement { .. } | Denial::MatterNotAllowed { .. } => None,
            Denial::NotInForce { agreement }
            | Denial::OutsideHours { agreement, .. }
            | Denial::ExplicitDeny { agreement }
            | Denial::FieldNotAllowed { agreement, .. }
            | Denial::QuotaExhausted { agreement, .. }
            | Denial::RateLimited { agreement, .. } => Some(agreement),
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::NoAgreement { consumer, dataset } => {
                write!(
                    f,
                    "no sharing agreement grants {consumer} access to {dataset}"
                )
            }
            Denial::MatterNotAllowed { dataset, matter } => {
                write!(f, "no agreement allows {dataset} for matter {matter}")
            }
            Denial::NotInForce { agreement } => {
                write!(f, "agreement {agreement} is not in force now")
            }
            Denial::OutsideHours {
                agreement,
                schedule,
            } => write!(
                f,
                "agreement {agreement} serves {schedule}, not at this time"
            ),
            Denial::ExplicitDeny { agreement } => {
                write!(f, "agreement {agreement} explicitly denies this access")
            }
            Denial::FieldNotAllowed { agreement, field } => {
                write!(f, "field {field} is not granted by agreement {agreement}")
            }
            Denial::QuotaExhausted { agreement, quota } => write!(
                f,
                "today's quota of {quota} lookups under agreement {agreement} is used up"
            ),
            Denial::RateLimited { agreement, rate } => write!(
                f,
                "this operator has reached agreement {agreement}'s limit of {rate}"
            ),
        }
    }
}

/// The outcome of a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed, with the agreement and fields.
    Allow(Grant),
    /// Refused, with the reason.
    Deny(Denial),
}

impl Decision {
    /// The decision casbin's `verdict` makes of `candidates`, whose conditions
    /// `checks` holds (the first one each fails, in the same order): when allowed,
    /// the first covering agreement that grants every field asked for; when
    /// refused, the condition that refused it, read off the same checks.
    pub(crate) fn read(
        q: &Question<'_>,
        verdict: bool,
        candidates: &[Arc<Agreement>],
        checks: &[Option<Condition>],
    ) -> Self {
        let covering = || {
            candidates
                .iter()
                .zip(checks)
                .filter(|(a, c)| a.effect == Effect::Allow && c.is_none())
                .map(|(a, _)| a.as_ref())
        };
        if verdict {
            choose_fields(q, covering())
        } else {
            Decision::Deny(denial(q, candidates, checks))
        }
    }
}

/// Pick the first allowing agreement that grants every field asked for.
fn choose_fields<'a>(
    q: &Question<'_>,
    mut allowing: impl Iterator<Item = &'a Agreement> + Clone,
) -> Decision {
    let Some(first) = allowing.clone().next() else {
        // casbin allowed but no candidate covers the question: both read one
        // evaluation, so this cannot happen; refuse rather than guess.
        return Decision::Deny(no_agreement(q));
    };
    let Some(asked) = q.fields else {
        return Decision::Allow(grant(first, first.fields.keys(), first.fields.len()));
    };
    if let Some(a) = allowing.find(|a| a.missing_field(asked).is_none()) {
        return Decision::Allow(grant(a, asked.iter(), asked.len()));
    }
    Decision::Deny(Denial::FieldNotAllowed {
        agreement: first.id.clone(),
        field: first.missing_field(asked).cloned().unwrap_or_default(),
    })
}

fn grant<'a>(a: &Agreement, names: impl Iterator<Item = &'a String>, n: usize) -> Grant {
    let mut fields: Vec<FieldGrant> = Vec::with_capacity(n);
    for name in names {
        if fields.iter().any(|f| &f.name == name) {
            continue;
        }
        if let Some(rule) = a.fields.get(name) {
            fields.push(FieldGrant {
                name: name.clone(),
                rule: *rule,
            });
        }
    }
    Grant {
        agreement: a.id.clone(),
        provider: a.provider.clone(),
        fields,
        limits: Limits {
            daily_quota: a.daily_quota,
            operator_rate: a.operator_rate,
        },
    }
}

/// Name the condition that refused, most specific first: a deny that applies,
/// then an allowing agreement for the matter that is in force but closed now, then
/// one not in force, then the matter.
fn denial(q: &Question<'_>, candidates: &[Arc<Agreement>], checks: &[Option<Condition>]) -> Denial {
    let checked = || candidates.iter().zip(checks.iter().copied());
    if let Some((a, _)) = checked().find(|(a, c)| a.effect == Effect::Deny && c.is_none()) {
        return Denial::ExplicitDeny {
            agreement: a.id.clone(),
        };
    }
    let for_matter =
        || checked().filter(|(a, c)| a.effect == Effect::Allow && *c != Some(Condition::Matter));
    if let Some((a, _)) =
        for_matter().find(|(_, c)| matches!(c, Some(Condition::Day | Condition::Hours)))
    {
        return Denial::OutsideHours {
            agreement: a.id.clone(),
            schedule: a.schedule_text(),
        };
    }
    if let Some((a, _)) = for_matter().find(|(_, c)| *c == Some(Condition::Validity)) {
        return Denial::NotInForce {
            agreement: a.id.clone(),
        };
    }
    if checked().any(|(a, c)| a.effect == Effect::Allow && c == Some(Condition::Matter)) {
        return Denial::MatterNotAllowed {
            dataset: q.dataset.to_owned(),
            matter: q.matter.to_owned(),
        };
    }
    no_agreement(q)
}

fn no_agreement(q: &Question<'_>) -> Denial {
    Denial::NoAgreement {
        consumer: q.consumer.to_owned(),
        dataset: q.dataset.to_owned(),
    }
}
