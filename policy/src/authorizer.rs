//! Decisions: an index by (consumer, dataset) in front of casbin.
//!
//! The agreements live in a [`PolicySet`] indexed by consumer key (identity or
//! `role:…`) and dataset, changed in place under a lock when the store changes. A
//! decision looks up the [`Decider`] of its (identity, dataset) — a small casbin
//! enforcer over just the candidate agreements, built on first use (about 20–80 µs)
//! — in a bounded cache that belongs to the current [`Snapshot`]. When agreements
//! change, deciders the change cannot affect move to the new snapshot as they are,
//! and the affected ones that were in use are rebuilt before the swap, so a change
//! never leaves the request path a cold cache, and costs in proportion to what it
//! changed, not to the number of agreements.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, RwLock};

use casbin::DefaultModel;
use chrono::{DateTime, Utc};

use crate::engine::{base_model, Decider};
use crate::schedule::{Clock, Rate, TimeZone};
use crate::{Agreement, Effect, FieldRule, PolicyError, RoleBinding};

/// How the authorizer reads time and how many deciders it keeps.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Zone of hours of service and of the days of daily quotas.
    pub time_zone: TimeZone,
    /// Most (identity, dataset) deciders kept built; each holds a small casbin
    /// enforcer (about 16 KiB). Beyond it, a random one is dropped.
    pub cache_capacity: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            time_zone: TimeZone::default(),
            cache_capacity: 1024,
        }
    }
}

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

/// One change to the agreement set, as the store's history records it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// An agreement created or replaced.
    Put(Agreement),
    /// An agreement revoked, by id.
    Revoke(String),
    /// The role bindings, all of them.
    Roles(Vec<RoleBinding>),
}

/// Decides accesses against the current set of agreements.
pub struct Authorizer {
    current: RwLock<Arc<Snapshot>>,
    set: RwLock<PolicySet>,
    base: DefaultModel,
    settings: Settings,
    /// Serializes changes, so that catch-ups from the store apply in version order.
    pub(crate) updating: tokio::sync::Mutex<()>,
}

/// The agreements and role bindings, indexed for picking candidates.
#[derive(Default)]
struct PolicySet {
    by_id: HashMap<String, Arc<Agreement>>,
    /// consumer key (identity or `role:…`) → dataset → agreements, sorted by id.
    index: HashMap<String, HashMap<String, Vec<Arc<Agreement>>>>,
    /// identity → its roles as `role:<name>` consumer keys.
    roles: HashMap<String, Vec<String>>,
}

/// The deciders built for one version of the set.
pub(crate) struct Snapshot {
    pub(crate) version: i64,
    deciders: DeciderCache,
}

impl Authorizer {
    /// Build an authorizer over `agreements` and `roles` with default settings.
    pub async fn new(
        agreements: Vec<Agreement>,
        roles: Vec<RoleBinding>,
    ) -> Result<Self, PolicyError> {
        Self::with_settings(Settings::default(), 0, agreements, roles).await
    }

    /// Build an authorizer over `agreements` and `roles`, which are the store's state
    /// at `version`.
    pub async fn with_settings(
        settings: Settings,
        version: i64,
        agreements: Vec<Agreement>,
        roles: Vec<RoleBinding>,
    ) -> Result<Self, PolicyError> {
        let base = base_model().await?;
        let set = PolicySet::load(agreements, roles);
        Ok(Self {
            current: RwLock::new(Arc::new(Snapshot {
                version,
                deciders: DeciderCache::new(settings.cache_capacity),
            })),
            set: RwLock::new(set),
            base,
            settings,
            updating: tokio::sync::Mutex::new(()),
        })
    }

    /// The settings.
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// The store version the current agreement set reflects.
    pub fn version(&self) -> i64 {
        self.snapshot().version
    }

    /// How many agreements are applied (in force or not).
    pub fn len(&self) -> usize {
        self.read_set().by_id.len()
    }

    /// Whether there are no agreements at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The agreement with this id, as currently applied.
    pub fn agreement(&self, id: &str) -> Option<Arc<Agreement>> {
        self.read_set().by_id.get(id).cloned()
    }

    /// Replace the whole agreement set; later decisions use the new one.
    pub async fn replace(
        &self,
        agreements: Vec<Agreement>,
        roles: Vec<RoleBinding>,
    ) -> Result<(), PolicyError> {
        let _updating = self.updating.lock().await;
        let version = self.version();
        self.replace_locked(version, agreements, roles)
    }

    pub(crate) fn replace_locked(
        &self,
        version: i64,
        agreements: Vec<Agreement>,
        roles: Vec<RoleBinding>,
    ) -> Result<(), PolicyError> {
        let set = PolicySet::load(agreements, roles);
        *self.set.write().unwrap_or_else(|e| e.into_inner()) = set;
        // Everything may have changed: rebuild every decider that was in use.
        let hot = self.snapshot().deciders.keys();
        self.warm_and_swap(version, Vec::new(), hot)
    }

    /// Apply `changes`, which bring the set to store version `version`. Deciders the
    /// changes cannot affect are kept; affected ones in use are rebuilt first.
    pub async fn apply(&self, version: i64, changes: Vec<Change>) -> Result<(), PolicyError> {
        let _updating = self.updating.lock().await;
        self.apply_locked(version, changes)
    }

    pub(crate) fn apply_locked(
        &self,
        version: i64,
        changes: Vec<Change>,
    ) -> Result<(), PolicyError> {
        let (touched, roles_changed) = {
            let mut set = self.set.write().unwrap_or_else(|e| e.into_inner());
            set.apply(changes)
        };
        let mut keep = Vec::new();
        let mut rebuild = Vec::new();
        for (identity, dataset, decider) in self.snapshot().deciders.entries() {
            let affected = roles_changed
                || decider
                    .keys
                    .iter()
                    .any(|k| touched.contains(&(k.clone(), dataset.clone())));
            if affected {
                rebuild.push((identity, dataset));
            } else {
                keep.push((identity, dataset, decider));
            }
        }
        self.warm_and_swap(version, keep, rebuild)
    }

    /// Swap in a snapshot at `version` holding the `keep` deciders and freshly built
    /// ones for `hot`. Until the swap, decisions go on with the old deciders.
    fn warm_and_swap(
        &self,
        version: i64,
        keep: Vec<(String, String, Arc<Decider>)>,
        hot: Vec<(String, String)>,
    ) -> Result<(), PolicyError> {
        let fresh = Snapshot {
            version,
            deciders: DeciderCache::new(self.settings.cache_capacity),
        };
        for (identity, dataset, decider) in keep {
            fresh.deciders.insert(&identity, &dataset, decider);
        }
        for (identity, dataset) in hot {
            fresh
                .deciders
                .insert(&identity, &dataset, self.build(&identity, &dataset)?);
        }
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(fresh);
        Ok(())
    }

    /// Build the decider of (identity, dataset) from the current set.
    fn build(&self, identity: &str, dataset: &str) -> Result<Arc<Decider>, PolicyError> {
        let (roles, candidates) = self.read_set().candidates(identity, dataset);
        Ok(Arc::new(Decider::build_now(
            &self.base, identity, &roles, candidates,
        )?))
    }

    /// The decider of (identity, dataset): cached, or built now and cached.
    fn decider(
        &self,
        snap: &Snapshot,
        identity: &str,
        dataset: &str,
    ) -> Result<Arc<Decider>, PolicyError> {
        if let Some(d) = snap.deciders.get(identity, dataset) {
            return Ok(d);
        }
        let decider = self.build(identity, dataset)?;
        snap.deciders
            .insert(identity, dataset, Arc::clone(&decider));
        Ok(decider)
    }

    fn read_set(&self) -> std::sync::RwLockReadGuard<'_, PolicySet> {
        self.set.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `identity` holds `role`.
    pub fn has_role(&self, identity: &str, role: &str) -> bool {
        self.read_set()
            .roles
            .get(identity)
            .is_some_and(|r| r.iter().any(|k| k.strip_prefix("role:") == Some(role)))
    }

    /// The roles `identity` holds, as bare names.
    pub fn roles_of(&self, identity: &str) -> Vec<String> {
        self.read_set()
            .roles
            .get(identity)
            .map(|r| {
                r.iter()
                    .map(|k| k.trim_start_matches("role:").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Decide a question. Counted limits are not charged here (see [`crate::Meter`]).
    pub fn decide(&self, q: &Question<'_>) -> Result<Decision, PolicyError> {
        let snap = self.snapshot();
        let decider = self.decider(&snap, q.consumer, q.dataset)?;
        let clock = Clock::new(q.at, self.settings.time_zone);
        decide_with(&decider, q, &clock)
    }

    /// Decide and say why: every candidate agreement and the condition it fails.
    pub fn explain(&self, q: &Question<'_>) -> Result<crate::Explanation, PolicyError> {
        let snap = self.snapshot();
        let decider = self.decider(&snap, q.consumer, q.dataset)?;
        let clock = Clock::new(q.at, self.settings.time_zone);
        let decision = decide_with(&decider, q, &clock)?;
        Ok(crate::Explanation::new(
            q,
            clock,
            decision,
            &decider.candidates,
            decider.keys.iter().skip(1).cloned().collect(),
            snap.version,
        ))
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }
}

/// casbin decides allow or deny; the candidates say which agreement and fields, or
/// which condition failed.
fn decide_with(d: &Decider, q: &Question<'_>, clock: &Clock) -> Result<Decision, PolicyError> {
    if d.candidates.is_empty() {
        // Default deny: no line could match, so there is nothing to evaluate.
        return Ok(Decision::Deny(Denial::NoAgreement {
            consumer: q.consumer.to_owned(),
            dataset: q.dataset.to_owned(),
        }));
    }
    if !d.allows(q.matter, clock)? {
        return Ok(Decision::Deny(explain_denial(q, clock, &d.candidates)));
    }
    let allowing = d
        .candidates
        .iter()
        .map(AsRef::as_ref)
        .filter(|a| a.effect == Effect::Allow && a.unmet(q.matter, clock).is_none());
    Ok(choose_fields(q, allowing))
}

/// Pick the first allowing agreement that grants every field asked for.
fn choose_fields<'a>(
    q: &Question<'_>,
    mut allowing: impl Iterator<Item = &'a Agreement> + Clone,
) -> Decision {
    let Some(first) = allowing.clone().next() else {
        // casbin allowed but no candidate covers the question: both come from one
        // snapshot, so this cannot happen; refuse rather than guess.
        return Decision::Deny(Denial::NoAgreement {
            consumer: q.consumer.to_owned(),
            dataset: q.dataset.to_owned(),
        });
    };
    let Some(asked) = q.fields else {
        return Decision::Allow(grant(first, first.fields.keys(), first.fields.len()));
    };
    if let Some(a) = allowing.find(|a| asked.iter().all(|f| a.fields.contains_key(f))) {
        return Decision::Allow(grant(a, asked.iter(), asked.len()));
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

/// Name the condition that failed, most specific first.
fn explain_denial(q: &Question<'_>, clock: &Clock, candidates: &[Arc<Agreement>]) -> Denial {
    if let Some(deny) = candidates
        .iter()
        .find(|a| a.effect == Effect::Deny && a.unmet(q.matter, clock).is_none())
    {
        return Denial::ExplicitDeny {
            agreement: deny.id.clone(),
        };
    }
    let for_matter: Vec<&Arc<Agreement>> = candidates
        .iter()
        .filter(|a| a.effect == Effect::Allow && a.matters.iter().any(|m| m == q.matter))
        .collect();
    if let Some(a) = for_matter.iter().find(|a| a.in_force(clock.at)) {
        return Denial::OutsideHours {
            agreement: a.id.clone(),
            schedule: a.schedule_text(),
        };
    }
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

impl PolicySet {
    /// A set holding `agreements` and `roles`, without recording what was touched
    /// (a set of every (consumer, dataset) key, freed at once, would leave holes
    /// all over the heap that the deciders built later get scattered into).
    fn load(agreements: Vec<Agreement>, roles: Vec<RoleBinding>) -> Self {
        let mut set = PolicySet {
            by_id: HashMap::with_capacity(agreements.len()),
            index: HashMap::new(),
            roles: role_map(roles),
        };
        for a in agreements {
            if let Some(old) = set.by_id.remove(&a.id) {
                unindex(&mut set.index, &old);
            }
            set.insert(a);
        }
        set
    }

    /// Apply changes in place; returns the (consumer key, dataset) buckets they
    /// touched, before or after, and whether the roles changed.
    fn apply(
        &mut self,
        changes: impl IntoIterator<Item = Change>,
    ) -> (HashSet<(String, String)>, bool) {
        let mut touched = HashSet::new();
        let mut roles_changed = false;
        for c in changes {
            match c {
                Change::Put(a) => {
                    if let Some(old) = self.by_id.remove(&a.id) {
                        touched.insert((old.consumer.clone(), old.dataset.clone()));
                        unindex(&mut self.index, &old);
                    }
                    touched.insert((a.consumer.clone(), a.dataset.clone()));
                    self.insert(a);
                }
                Change::Revoke(id) => {
                    if let Some(old) = self.by_id.remove(&id) {
                        touched.insert((old.consumer.clone(), old.dataset.clone()));
                        unindex(&mut self.index, &old);
                    }
                }
                Change::Roles(bindings) => {
                    self.roles = role_map(bindings);
                    roles_changed = true;
                }
            }
        }
        (touched, roles_changed)
    }

    /// Index an agreement not in the set (its id is free).
    fn insert(&mut self, a: Agreement) {
        // The store validates on write; a row that no longer passes (a rule
        // tightened since) is left out, which denies, rather than keeping the
        // gateway from starting.
        if let Err(e) = a.validate() {
            tracing::warn!(error = %e, "agreement left out of decisions");
            return;
        }
        let a = Arc::new(a);
        let bucket = self
            .index
            .entry(a.consumer.clone())
            .or_default()
            .entry(a.dataset.clone())
            .or_default();
        let at = bucket.partition_point(|x| x.id < a.id);
        bucket.insert(at, Arc::clone(&a));
        self.by_id.insert(a.id.clone(), a);
    }

    /// The identity's roles and the agreements naming it or one of them for `dataset`.
    fn candidates(&self, identity: &str, dataset: &str) -> (Vec<String>, Vec<Arc<Agreement>>) {
        let roles: Vec<String> = self.roles.get(identity).cloned().unwrap_or_default();
        let mut candidates = Vec::new();
        for key in std::iter::once(identity).chain(roles.iter().map(String::as_str)) {
            if let Some(bucket) = self.index.get(key).and_then(|d| d.get(dataset)) {
                candidates.extend(bucket.iter().cloned());
            }
        }
        (roles, candidates)
    }
}

fn unindex(index: &mut HashMap<String, HashMap<String, Vec<Arc<Agreement>>>>, a: &Agreement) {
    if let Some(datasets) = index.get_mut(&a.consumer) {
        if let Some(bucket) = datasets.get_mut(&a.dataset) {
            bucket.retain(|x| x.id != a.id);
            if bucket.is_empty() {
                datasets.remove(&a.dataset);
            }
        }
        if datasets.is_empty() {
            index.remove(&a.consumer);
        }
    }
}

fn role_map(bindings: Vec<RoleBinding>) -> HashMap<String, Vec<String>> {
    let mut map: HashMap<String, Vec<String>> = HashMap::new();
    for b in bindings {
        let key = format!("role:{}", b.role);
        let roles = map.entry(b.identity).or_default();
        if !roles.contains(&key) {
            roles.push(key);
        }
    }
    map
}

/// Built deciders by identity then dataset (so a lookup borrows, never allocates),
/// at most `capacity` of them.
struct DeciderCache {
    capacity: usize,
    inner: RwLock<CacheMap>,
}

#[derive(Default)]
struct CacheMap {
    by_identity: HashMap<String, HashMap<String, Arc<Decider>>>,
    len: usize,
}

impl DeciderCache {
    fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: RwLock::new(CacheMap::default()),
        }
    }

    fn get(&self, identity: &str, dataset: &str) -> Option<Arc<Decider>> {
        let map = self.inner.read().unwrap_or_else(|e| e.into_inner());
        map.by_identity.get(identity)?.get(dataset).cloned()
    }

    fn insert(&self, identity: &str, dataset: &str, decider: Arc<Decider>) {
        let mut map = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let exists = map
            .by_identity
            .get(identity)
            .is_some_and(|d| d.contains_key(dataset));
        if !exists && map.len >= self.capacity {
            // HashMap order is arbitrary: this drops a random entry, which keeps a
            // hot working set well enough without bookkeeping on every hit.
            let victim = map
                .by_identity
                .iter()
                .next()
                .and_then(|(identity, datasets)| {
                    datasets
                        .keys()
                        .next()
                        .map(|d| (identity.clone(), d.clone()))
                });
            if let Some((vi, vd)) = victim {
                if let Some(datasets) = map.by_identity.get_mut(&vi) {
                    datasets.remove(&vd);
                    if datasets.is_empty() {
                        map.by_identity.remove(&vi);
                    }
                }
                map.len -= 1;
            }
        }
        let previous = map
            .by_identity
            .entry(identity.to_owned())
            .or_default()
            .insert(dataset.to_owned(), decider);
        if previous.is_none() {
            map.len += 1;
        }
    }

    fn keys(&self) -> Vec<(String, String)> {
        self.entries().into_iter().map(|(i, d, _)| (i, d)).collect()
    }

    fn entries(&self) -> Vec<(String, String, Arc<Decider>)> {
        let map = self.inner.read().unwrap_or_else(|e| e.into_inner());
        map.by_identity
            .iter()
            .flat_map(|(identity, datasets)| {
                datasets
                    .iter()
                    .map(move |(d, dec)| (identity.clone(), d.clone(), Arc::clone(dec)))
            })
            .collect()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).len
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::agreement::tests::sample;
    use chrono::TimeZone as _;

    const A: &str = "urn:tongban:sz-hrss:counter-01";
    const B: &str = "urn:tongban:sz-civil:counter-01";

    fn agreement(id: &str, consumer: &str, effect: Effect) -> Agreement {
        let mut a = sample();
        a.id = id.to_owned();
        a.consumer = consumer.to_owned();
        a.effect = effect;
        if effect == Effect::Deny {
            a.fields.clear();
        }
        a
    }

    fn question<'a>(consumer: &'a str, fields: Option<&'a [String]>) -> Question<'a> {
        Question {
            consumer,
            dataset: "population",
            matter: "social-insurance-enrollment",
            fields,
            // Monday 2026-06-01, 12:00 UTC = 20:00 in Beijing.
            at: Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap(),
        }
    }

    fn binding(identity: &str, role: &str) -> RoleBinding {
        RoleBinding {
            identity: identity.into(),
            role: role.into(),
        }
    }

    async fn deny(auth: &Authorizer, q: &Question<'_>) -> Denial {
        match auth.decide(q).unwrap() {
            Decision::Deny(d) => d,
            Decision::Allow(g) => panic!("allowed by {}", g.agreement),
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
    async fn each_condition_is_refused_and_named() {
        let auth = Authorizer::new(vec![agreement("a1", A, Effect::Allow)], vec![])
            .await
            .unwrap();
        assert!(matches!(
            deny(&auth, &question(B, None)).await,
            Denial::NoAgreement { .. }
        ));
        let mut q = question(A, None);
        q.matter = "marketing";
        assert!(matches!(
            deny(&auth, &q).await,
            Denial::MatterNotAllowed { .. }
        ));
        let mut q = question(A, None);
        q.at = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(
            deny(&auth, &q).await,
            Denial::NotInForce {
                agreement: "a1".into()
            }
        );
        let asked = vec!["name".to_owned(), "ethnicity".to_owned()];
        assert_eq!(
            deny(&auth, &question(A, Some(&asked))).await,
            Denial::FieldNotAllowed {
                agreement: "a1".into(),
                field: "ethnicity".into()
            }
        );
    }

    #[tokio::test]
    async fn hours_of_service_are_local() {
        let mut a = agreement("a1", A, Effect::Allow);
        a.hours = Some("08:30-17:30".parse().unwrap());
        a.days = Some(crate::Days::from_names(&["mon", "tue", "wed", "thu", "fri"]).unwrap());
        let auth = Authorizer::new(vec![a], vec![]).await.unwrap();
        // 20:00 in Beijing: closed, although 12:00 UTC is inside 08:30-17:30.
        assert!(matches!(
            deny(&auth, &question(A, None)).await,
            Denial::OutsideHours { .. }
        ));
        let mut q = question(A, None);
        q.at = Utc.with_ymd_and_hms(2026, 6, 1, 2, 0, 0).unwrap(); // Monday 10:00
        assert!(matches!(auth.decide(&q).unwrap(), Decision::Allow(_)));
        q.at = Utc.with_ymd_and_hms(2026, 6, 6, 2, 0, 0).unwrap(); // Saturday 10:00
        assert!(matches!(deny(&auth, &q).await, Denial::OutsideHours { .. }));
    }

    #[tokio::test]
    async fn explicit_deny_overrides_allow_via_role() {
        let auth = Authorizer::new(
            vec![
                agreement("a1", "role:counter", Effect::Allow),
                agreement("d1", A, Effect::Deny),
            ],
            vec![binding(A, "counter"), binding(B, "counter")],
        )
        .await
        .unwrap();
        assert!(auth.has_role(A, "counter"));
        assert!(!auth.has_role(A, "auditor"));
        assert_eq!(
            deny(&auth, &question(A, None)).await,
            Denial::ExplicitDeny {
                agreement: "d1".into()
            }
        );
        assert!(matches!(
            auth.decide(&question(B, None)).unwrap(),
            Decision::Allow(_)
        ));
    }

    #[tokio::test]
    async fn changes_apply_and_keep_unaffected_deciders() {
        let auth = Authorizer::new(
            vec![
                agreement("a1", A, Effect::Allow),
                agreement("b1", B, Effect::Allow),
            ],
            vec![],
        )
        .await
        .unwrap();
        assert!(matches!(
            auth.decide(&question(A, None)).unwrap(),
            Decision::Allow(_)
        ));
        assert!(matches!(
            auth.decide(&question(B, None)).unwrap(),
            Decision::Allow(_)
        ));
        let before_b = auth.snapshot().deciders.get(B, "population").unwrap();

        auth.apply(1, vec![Change::Put(agreement("d1", A, Effect::Deny))])
            .await
            .unwrap();
        assert_eq!(auth.version(), 1);
        let snap = auth.snapshot();
        // B's decider moved over untouched; A's was rebuilt before the swap.
        assert!(Arc::ptr_eq(
            &before_b,
            &snap.deciders.get(B, "population").unwrap()
        ));
        assert_eq!(snap.deciders.len(), 2);
        assert!(matches!(
            deny(&auth, &question(A, None)).await,
            Denial::ExplicitDeny { .. }
        ));

        auth.apply(
            2,
            vec![Change::Revoke("d1".into()), Change::Revoke("b1".into())],
        )
        .await
        .unwrap();
        assert!(matches!(
            auth.decide(&question(A, None)).unwrap(),
            Decision::Allow(_)
        ));
        assert!(matches!(
            deny(&auth, &question(B, None)).await,
            Denial::NoAgreement { .. }
        ));
        assert_eq!(auth.len(), 1);
    }

    #[tokio::test]
    async fn cache_is_bounded() {
        let settings = Settings {
            cache_capacity: 3,
            ..Settings::default()
        };
        let mut agreements = Vec::new();
        let ids: Vec<String> = (0..10).map(|i| format!("urn:tongban:sz-x:c{i}")).collect();
        for (i, id) in ids.iter().enumerate() {
            agreements.push(agreement(&format!("a{i}"), id, Effect::Allow));
        }
        let auth = Authorizer::with_settings(settings, 0, agreements, vec![])
            .await
            .unwrap();
        for id in &ids {
            assert!(matches!(
                auth.decide(&question(id, None)).unwrap(),
                Decision::Allow(_)
            ));
        }
        assert_eq!(auth.snapshot().deciders.len(), 3);
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
