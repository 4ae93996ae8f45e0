use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use casbin::{CoreApi, DefaultModel, Enforcer, MemoryAdapter, MgmtApi};
use chrono::{DateTime, Utc};

use crate::{Agreement, Effect, FieldRule, PolicyError, RoleBinding};

/// The casbin model. Request and policy times are fixed-width UTC strings, so the
/// matcher can compare them as strings (casbin's Rhai engine has no date type).
/// `g` binds identities to roles; `g(x, x)` holds, so an agreement may name either.
const MODEL: &str = r#"
[request_definition]
r = sub, dataset, matter, time

[policy_definition]
p = sub, dataset, matter, from, until, agreement, eft

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = g(r.sub, p.sub) && r.dataset == p.dataset && r.matter == p.matter && r.time >= p.from && r.time <= p.until
"#;

const TIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

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

/// An allowed access: under which agreement, and exactly which fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The agreement that allows it.
    pub agreement: String,
    /// The providing department.
    pub provider: String,
    /// The fields to return, in the order asked (or the agreement's order).
    pub fields: Vec<FieldGrant>,
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
}

impl Denial {
    /// A short machine-readable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            Denial::NoAgreement { .. } => "no-agreement",
            Denial::MatterNotAllowed { .. } => "matter-not-allowed",
            Denial::NotInForce { .. } => "agreement-not-in-force",
            Denial::ExplicitDeny { .. } => "explicit-deny",
            Denial::FieldNotAllowed { .. } => "field-not-allowed",
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
            Denial::ExplicitDeny { agreement } => {
                write!(f, "agreement {agreement} explicitly denies this access")
            }
            Denial::FieldNotAllowed { agreement, field } => {
                write!(f, "field {field} is not granted by agreement {agreement}")
            }
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

/// Decides accesses against the current set of agreements.
///
/// The set is swapped whole on [`Authorizer::replace`]; decisions in flight keep the
/// snapshot they started with. `decide` only takes a read lock for the time of an
/// `Arc` clone.
pub struct Authorizer {
    current: RwLock<Arc<Snapshot>>,
}

struct Snapshot {
    enforcer: Enforcer,
    /// Agreements by (consumer-or-role, dataset): the candidates of a decision.
    index: HashMap<(String, String), Vec<Arc<Agreement>>>,
    /// Roles of each identity, as `role:<name>` consumer keys.
    roles: HashMap<String, Vec<String>>,
}

impl Authorizer {
    /// Build an authorizer over `agreements` and `roles`.
    pub async fn new(
        agreements: Vec<Agreement>,
        roles: Vec<RoleBinding>,
    ) -> Result<Self, PolicyError> {
        let snapshot = Snapshot::build(agreements, roles).await?;
        Ok(Self {
            current: RwLock::new(Arc::new(snapshot)),
        })
    }

    /// Replace the whole agreement set; later decisions use the new one.
    pub async fn replace(
        &self,
        agreements: Vec<Agreement>,
        roles: Vec<RoleBinding>,
    ) -> Result<(), PolicyError> {
        let snapshot = Arc::new(Snapshot::build(agreements, roles).await?);
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        *current = snapshot;
        Ok(())
    }

    /// Whether `identity` holds `role`.
    pub fn has_role(&self, identity: &str, role: &str) -> bool {
        let key = format!("role:{role}");
        self.snapshot()
            .roles
            .get(identity)
            .is_some_and(|r| r.contains(&key))
    }

    /// Decide a question.
    pub fn decide(&self, q: &Question<'_>) -> Result<Decision, PolicyError> {
        let snap = self.snapshot();
        let time = q.at.format(TIME_FORMAT).to_string();
        let allowed = snap
            .enforcer
            .enforce((q.consumer, q.dataset, q.matter, time.as_str()))?;
        let candidates = snap.candidates(q.consumer, q.dataset);
        if !allowed {
            return Ok(Decision::Deny(explain_denial(q, &candidates)));
        }
        let allowing: Vec<&Agreement> = candidates
            .iter()
            .map(|a| a.as_ref())
            .filter(|a| a.effect == Effect::Allow && covers(a, q))
            .collect();
        Ok(choose_fields(q, &allowing))
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }
}

fn covers(a: &Agreement, q: &Question<'_>) -> bool {
    a.matters.iter().any(|m| m == q.matter) && a.in_force(q.at)
}

/// Pick the first allowing agreement that grants every field asked for.
fn choose_fields(q: &Question<'_>, allowing: &[&Agreement]) -> Decision {
    let Some(first) = allowing.first() else {
        // casbin allowed but the index has nothing: both come from one snapshot, so
        // this cannot happen; refuse rather than guess.
        return Decision::Deny(Denial::NoAgreement {
            consumer: q.consumer.to_owned(),
            dataset: q.dataset.to_owned(),
        });
    };
    let Some(asked) = q.fields else {
        return Decision::Allow(grant(first, first.fields.keys()));
    };
    for a in allowing {
        if asked.iter().all(|f| a.fields.contains_key(f)) {
            return Decision::Allow(grant(a, asked.iter()));
        }
    }
    let missing = asked
        .iter()
        .find(|f| !first.fields.contains_key(*f))
        .cloned()
        .unwrap_or_default();
    Decision::Deny(Denial::FieldNotAllowed {
        agreement: first.id.clone(),
        field: missing,
    })
}

fn grant<'a>(a: &Agreement, names: impl Iterator<Item = &'a String>) -> Grant {
    let mut fields: Vec<FieldGrant> = Vec::new();
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
    }
}

/// Name the condition that failed, most specific first.
fn explain_denial(q: &Question<'_>, candidates: &[Arc<Agreement>]) -> Denial {
    if let Some(deny) = candidates
        .iter()
        .find(|a| a.effect == Effect::Deny && covers(a, q))
    {
        return Denial::ExplicitDeny {
            agreement: deny.id.clone(),
        };
    }
    let for_matter: Vec<&Arc<Agreement>> = candidates
        .iter()
        .filter(|a| a.effect == Effect::Allow && a.matters.iter().any(|m| m == q.matter))
        .collect();
    if let Some(a) = for_matter.first() {
        return Denial::NotInForce {
            agreement: a.id.clone(),
        };
    }
    if candidates.iter().any(|a| a.effect == Effect::Allow) {
        return Denial::MatterNotAllowed {
            dataset: q.dataset.to_owned(),
            matter: q.matter.to_owned(),
        };
    }
    Denial::NoAgreement {
        consumer: q.consumer.to_owned(),
        dataset: q.dataset.to_owned(),
    }
}

impl Snapshot {
    async fn build(
        agreements: Vec<Agreement>,
        roles: Vec<RoleBinding>,
    ) -> Result<Self, PolicyError> {
        let model = DefaultModel::from_str(MODEL).await?;
        let mut enforcer = Enforcer::new(model, MemoryAdapter::default()).await?;
        let mut lines = Vec::new();
        let mut index: HashMap<(String, String), Vec<Arc<Agreement>>> = HashMap::new();
        for a in agreements {
            a.validate()?;
            let from = a.valid_from.format(TIME_FORMAT).to_string();
            let until = a.valid_until.format(TIME_FORMAT).to_string();
            let mut matters = a.matters.clone();
            matters.sort();
            matters.dedup();
            for matter in matters {
                lines.push(vec![
                    a.consumer.clone(),
                    a.dataset.clone(),
                    matter,
                    from.clone(),
                    until.clone(),
                    a.id.clone(),
                    a.effect.as_str().to_owned(),
                ]);
            }
            index
                .entry((a.consumer.clone(), a.dataset.clone()))
                .or_default()
                .push(Arc::new(a));
        }
        if !lines.is_empty() {
            enforcer.add_policies(lines).await?;
        }
        let mut by_identity: HashMap<String, Vec<String>> = HashMap::new();
        let mut links = Vec::new();
        for b in roles {
            let role = format!("role:{}", b.role);
            links.push(vec![b.identity.clone(), role.clone()]);
            by_identity.entry(b.identity).or_default().push(role);
        }
        if !links.is_empty() {
            enforcer.add_grouping_policies(links).await?;
        }
        Ok(Self {
            enforcer,
            index,
            roles: by_identity,
        })
    }

    fn candidates(&self, consumer: &str, dataset: &str) -> Vec<Arc<Agreement>> {
        let mut out = Vec::new();
        let mut push = |key: &str| {
            if let Some(list) = self.index.get(&(key.to_owned(), dataset.to_owned())) {
                out.extend(list.iter().cloned());
            }
        };
        push(consumer);
        if let Some(roles) = self.roles.get(consumer) {
            for role in roles {
                push(role);
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::collections::BTreeMap;

    const A: &str = "urn:tongban:sz-hrss:counter-01";
    const B: &str = "urn:tongban:sz-civil:counter-01";

    fn agreement(id: &str, consumer: &str, effect: Effect) -> Agreement {
        let mut fields = BTreeMap::new();
        fields.insert("name".to_owned(), FieldRule::Full);
        fields.insert("household_address".to_owned(), FieldRule::Masked);
        Agreement {
            id: id.to_owned(),
            provider: "sz-psb".to_owned(),
            consumer: consumer.to_owned(),
            dataset: "population".to_owned(),
            matters: vec!["social-insurance-enrollment".to_owned()],
            fields,
            valid_from: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            valid_until: Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).unwrap(),
            approver: "sz-psb:admin-01".to_owned(),
            effect,
        }
    }

    fn question<'a>(consumer: &'a str, fields: Option<&'a [String]>) -> Question<'a> {
        Question {
            consumer,
            dataset: "population",
            matter: "social-insurance-enrollment",
            fields,
            at: Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap(),
        }
    }

    #[tokio::test]
    async fn allows_within_agreement_and_lists_fields() {
        let auth = Authorizer::new(vec![agreement("a1", A, Effect::Allow)], vec![])
            .await
            .unwrap();
        let Decision::Allow(g) = auth.decide(&question(A, None)).unwrap() else {
            panic!("denied")
        };
        assert_eq!(g.agreement, "a1");
        assert_eq!(g.fields.len(), 2);
        let asked = vec!["household_address".to_owned()];
        let Decision::Allow(g) = auth.decide(&question(A, Some(&asked))).unwrap() else {
            panic!("denied")
        };
        assert_eq!(
            g.fields,
            vec![FieldGrant {
                name: "household_address".into(),
                rule: FieldRule::Masked
            }]
        );
    }

    #[tokio::test]
    async fn default_deny_for_other_consumers() {
        let auth = Authorizer::new(vec![agreement("a1", A, Effect::Allow)], vec![])
            .await
            .unwrap();
        let d = auth.decide(&question(B, None)).unwrap();
        assert!(
            matches!(d, Decision::Deny(Denial::NoAgreement { .. })),
            "{d:?}"
        );
    }

    #[tokio::test]
    async fn other_matter_is_refused() {
        let auth = Authorizer::new(vec![agreement("a1", A, Effect::Allow)], vec![])
            .await
            .unwrap();
        let mut q = question(A, None);
        q.matter = "marketing";
        let d = auth.decide(&q).unwrap();
        assert!(
            matches!(d, Decision::Deny(Denial::MatterNotAllowed { .. })),
            "{d:?}"
        );
    }

    #[tokio::test]
    async fn outside_validity_is_refused() {
        let auth = Authorizer::new(vec![agreement("a1", A, Effect::Allow)], vec![])
            .await
            .unwrap();
        let mut q = question(A, None);
        q.at = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
        let d = auth.decide(&q).unwrap();
        assert_eq!(
            d,
            Decision::Deny(Denial::NotInForce {
                agreement: "a1".into()
            })
        );
    }

    #[tokio::test]
    async fn field_not_granted_is_refused_not_dropped() {
        let auth = Authorizer::new(vec![agreement("a1", A, Effect::Allow)], vec![])
            .await
            .unwrap();
        let asked = vec!["name".to_owned(), "ethnicity".to_owned()];
        let d = auth.decide(&question(A, Some(&asked))).unwrap();
        assert_eq!(
            d,
            Decision::Deny(Denial::FieldNotAllowed {
                agreement: "a1".into(),
                field: "ethnicity".into()
            })
        );
    }

    #[tokio::test]
    async fn explicit_deny_overrides_allow_via_role() {
        let auth = Authorizer::new(
            vec![
                agreement("a1", "role:counter", Effect::Allow),
                agreement("d1", A, Effect::Deny),
            ],
            vec![
                RoleBinding {
                    identity: A.into(),
                    role: "counter".into(),
                },
                RoleBinding {
                    identity: B.into(),
                    role: "counter".into(),
                },
            ],
        )
        .await
        .unwrap();
        assert!(auth.has_role(A, "counter"));
        assert!(!auth.has_role(A, "auditor"));
        let d = auth.decide(&question(A, None)).unwrap();
        assert_eq!(
            d,
            Decision::Deny(Denial::ExplicitDeny {
                agreement: "d1".into()
            })
        );
        let d = auth.decide(&question(B, None)).unwrap();
        assert!(matches!(d, Decision::Allow(_)), "{d:?}");
    }

    #[tokio::test]
    async fn replace_takes_effect() {
        let auth = Authorizer::new(vec![], vec![]).await.unwrap();
        assert!(matches!(
            auth.decide(&question(A, None)).unwrap(),
            Decision::Deny(_)
        ));
        auth.replace(vec![agreement("a1", A, Effect::Allow)], vec![])
            .await
            .unwrap();
        assert!(matches!(
            auth.decide(&question(A, None)).unwrap(),
            Decision::Allow(_)
        ));
    }
}
