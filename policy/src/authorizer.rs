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
use std::sync::{Arc, RwLock};

use casbin::DefaultModel;

use crate::decision::{Decision, Question};
use crate::engine::{base_model, Decider, Evaluation};
use crate::explain::Explanation;
use crate::schedule::{Clock, TimeZone};
use crate::{Agreement, PolicyError, RoleBinding};

/// How the authorizer reads time and how many deciders it keeps.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Zone of hours of service and of the days of daily quotas.
    pub time_zone: TimeZone,
    /// Most (identity, dataset) deciders kept built; each holds a small casbin
    /// enforcer (about 16 KiB). Beyond it, the one least likely to be asked again
    /// is dropped (S3-FIFO, by quick_cache).
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

/// One change to the agreement set, as the store's history records it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// An agreement created or replaced.
    Put(Box<Agreement>),
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

    /// Every agreement naming `identity`, or a role it holds, as its consumer: what
    /// it holds (a catalogue shows it), sorted by id.
    pub fn held_by(&self, identity: &str) -> Vec<Arc<Agreement>> {
        let set = self.read_set();
        let roles = set
            .roles
            .get(identity)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut held: Vec<Arc<Agreement>> = std::iter::once(identity)
            .chain(roles.iter().map(String::as_str))
            .filter_map(|key| set.index.get(key))
            .flat_map(|datasets| datasets.values().flatten().cloned())
            .collect();
        held.sort_by(|a, b| a.id.cmp(&b.id));
        held.dedup_by(|a, b| a.id == b.id);
        held
    }

    /// Decide a question. Counted limits are not charged here (see [`crate::Meter`]).
    pub fn decide(&self, q: &Question<'_>) -> Result<Decision, PolicyError> {
        Ok(self.evaluate(q)?.1.decision)
    }

    /// Decide and say why: every candidate agreement and the condition it fails,
    /// read off the same evaluation the decision was.
    pub fn explain(&self, q: &Question<'_>) -> Result<Explanation, PolicyError> {
        let (snap, evaluation, decider, clock) = self.evaluate(q)?;
        Ok(Explanation::new(
            q,
            clock,
            evaluation,
            &decider.candidates,
            decider.keys.iter().skip(1).cloned().collect(),
            snap.version,
        ))
    }

    /// The one evaluation of `q` both [`Authorizer::decide`] and
    /// [`Authorizer::explain`] read.
    fn evaluate(
        &self,
        q: &Question<'_>,
    ) -> Result<(Arc<Snapshot>, Evaluation, Arc<Decider>, Clock), PolicyError> {
        let snap = self.snapshot();
        let decider = self.decider(&snap, q.consumer, q.dataset)?;
        let clock = Clock::new(q.at, self.settings.time_zone);
        let evaluation = decider.decide(q, &clock)?;
        Ok((snap, evaluation, decider, clock))
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
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
                    self.insert(*a);
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

/// Built deciders by (identity, dataset), at most about `capacity` of them.
/// quick_cache evicts by S3-FIFO: a decider asked for once leaves before one asked
/// for again, so a burst of one-off pairs does not push out the hot ones (the hand-
/// made cache before it dropped whichever key a HashMap yielded first).
struct DeciderCache {
    inner: quick_cache::sync::Cache<PairKey, Arc<Decider>>,
}

/// (identity, dataset) as the cache keeps it.
#[derive(Clone, PartialEq, Eq, Hash)]
struct PairKey {
    identity: String,
    dataset: String,
}

/// (identity, dataset) as a decision asks for it: borrowed, so a hit allocates
/// nothing. Hashes as [`PairKey`] does (a `&str` hashes as its `String`).
#[derive(Hash)]
struct Pair<'a> {
    identity: &'a str,
    dataset: &'a str,
}

impl quick_cache::Equivalent<PairKey> for Pair<'_> {
    fn equivalent(&self, key: &PairKey) -> bool {
        self.identity == key.identity && self.dataset == key.dataset
    }
}

impl DeciderCache {
    fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        // One shard: quick_cache gives each shard an equal share of the capacity,
        // so a working set the size of the capacity overflows the fuller shards
        // (measured: 1,000 pairs in 1,024 over 8 shards missed enough to lift p99
        // from 10 to 16-19 µs). A hit takes a read lock, as the map before did.
        let options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity(capacity)
            .weight_capacity(capacity as u64)
            .shards(1)
            .build();
        let inner = match options {
            Ok(options) => quick_cache::sync::Cache::with_options(
                options,
                quick_cache::UnitWeighter,
                quick_cache::DefaultHashBuilder::default(),
                quick_cache::sync::DefaultLifecycle::default(),
            ),
            // Only a missing capacity is refused, and both are set above.
            Err(_) => quick_cache::sync::Cache::new(capacity),
        };
        Self { inner }
    }

    fn get(&self, identity: &str, dataset: &str) -> Option<Arc<Decider>> {
        self.inner.get(&Pair { identity, dataset })
    }

    fn insert(&self, identity: &str, dataset: &str, decider: Arc<Decider>) {
        let key = PairKey {
            identity: identity.to_owned(),
            dataset: dataset.to_owned(),
        };
        self.inner.insert(key, decider);
    }

    fn keys(&self) -> Vec<(String, String)> {
        self.entries().into_iter().map(|(i, d, _)| (i, d)).collect()
    }

    fn entries(&self) -> Vec<(String, String, Arc<Decider>)> {
        self.inner
            .iter()
            .map(|(k, decider)| (k.identity, k.dataset, decider))
            .collect()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::agreement::tests::sample;
    use crate::agreement::Condition;
    use crate::{Denial, Effect, FieldGrant, FieldRule};
    use chrono::TimeZone as _;
    use chrono::Utc;

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

    /// One decider answers every question of its (consumer, dataset): the verdicts
    /// it remembers per mask must never answer a question with another's verdict.
    #[tokio::test]
    async fn remembered_verdicts_answer_only_their_own_mask() {
        let mut other = agreement("a2", A, Effect::Deny);
        other.matters = vec!["marketing".into()];
        let auth = Authorizer::new(vec![agreement("a1", A, Effect::Allow), other], vec![])
            .await
            .unwrap();
        let mut denied = question(A, None);
        denied.matter = "marketing";
        let mut nothing = question(A, None);
        nothing.matter = "tax-filing";
        for _ in 0..3 {
            assert!(
                matches!(auth.decide(&question(A, None)).unwrap(), Decision::Allow(g) if g.agreement == "a1")
            );
            assert!(
                matches!(deny(&auth, &denied).await, Denial::ExplicitDeny { .. }),
                "the deny line holds for marketing"
            );
            assert!(matches!(
                deny(&auth, &nothing).await,
                Denial::MatterNotAllowed { .. }
            ));
        }
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
    async fn an_identity_holds_its_own_and_its_roles_agreements_only() {
        let mut other = agreement("c-other", B, Effect::Allow);
        other.dataset = "legal_person".into();
        let auth = Authorizer::new(
            vec![
                agreement("b-own", A, Effect::Allow),
                agreement("a-role", "role:counter", Effect::Allow),
                other,
            ],
            vec![binding(A, "counter")],
        )
        .await
        .unwrap();
        let ids = |identity| {
            auth.held_by(identity)
                .iter()
                .map(|a| a.id.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(A), ["a-role", "b-own"]);
        assert_eq!(ids(B), ["c-other"]);
        assert!(ids("urn:tongban:sz-x:y").is_empty());
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

        auth.apply(
            1,
            vec![Change::Put(Box::new(agreement("d1", A, Effect::Deny)))],
        )
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
        // quick_cache's bound is approximate (its shards each keep a share).
        let kept = auth.snapshot().deciders.len();
        assert!((1..=3).contains(&kept), "{kept} deciders kept");
    }

    #[tokio::test]
    async fn a_burst_of_one_off_pairs_keeps_the_hot_decider() {
        let settings = Settings {
            cache_capacity: 16,
            ..Settings::default()
        };
        let ids: Vec<String> = (0..200).map(|i| format!("urn:tongban:sz-x:c{i}")).collect();
        let agreements = ids
            .iter()
            .enumerate()
            .map(|(i, id)| agreement(&format!("a{i}"), id, Effect::Allow))
            .collect();
        let auth = Authorizer::with_settings(settings, 0, agreements, vec![])
            .await
            .unwrap();
        let snap = auth.snapshot();
        // The hot pair is asked for again and again, between one-off pairs.
        auth.decide(&question(&ids[0], None)).unwrap();
        let hot = snap.deciders.get(&ids[0], "population").unwrap();
        for id in &ids[1..] {
            auth.decide(&question(&ids[0], None)).unwrap();
            auth.decide(&question(id, None)).unwrap();
        }
        let still = snap.deciders.get(&ids[0], "population");
        assert!(still.is_some_and(|d| Arc::ptr_eq(&d, &hot)));
        assert!(snap.deciders.len() <= 16);
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

    /// Decide and explain `q` and check that they tell one story: the same
    /// decision; an allow only if some allowing candidate covers and no deny
    /// applies, a refusal's agreement failing what the refusal says.
    fn decide_and_explain_agree(auth: &Authorizer, q: &Question<'_>) -> Explanation {
        let decision = auth.decide(q).unwrap();
        let e = auth.explain(q).unwrap();
        assert_eq!(e.decision, decision, "{}", e.to_text());
        let applies = |effect| {
            e.candidates
                .iter()
                .any(|c| c.agreement.effect == effect && c.failed.is_none())
        };
        let covers = e
            .candidates
            .iter()
            .any(|c| c.agreement.effect == Effect::Allow && c.covers());
        let named = |id: &str| e.candidates.iter().find(|c| c.agreement.id == id);
        match &decision {
            Decision::Allow(g) => {
                assert!(covers && !applies(Effect::Deny), "{}", e.to_text());
                assert!(named(&g.agreement).unwrap().covers(), "{}", e.to_text());
            }
            Decision::Deny(d) => {
                assert!(!covers || applies(Effect::Deny), "{}", e.to_text());
                let check = d.agreement().map(|id| named(id).unwrap());
                match d {
                    Denial::ExplicitDeny { .. } => {
                        assert_eq!(check.unwrap().failed, None, "{}", e.to_text())
                    }
                    Denial::OutsideHours { .. } => assert!(
                        matches!(
                            check.unwrap().failed,
                            Some(Condition::Day | Condition::Hours)
                        ),
                        "{}",
                        e.to_text()
                    ),
                    Denial::NotInForce { .. } => {
                        assert_eq!(
                            check.unwrap().failed,
                            Some(Condition::Validity),
                            "{}",
                            e.to_text()
                        )
                    }
                    Denial::FieldNotAllowed { field, .. } => assert_eq!(
                        check.unwrap().missing_field.as_ref(),
                        Some(field),
                        "{}",
                        e.to_text()
                    ),
                    Denial::MatterNotAllowed { .. } => assert!(
                        e.candidates
                            .iter()
                            .filter(|c| c.agreement.effect == Effect::Allow)
                            .all(|c| c.failed == Some(Condition::Matter)),
                        "{}",
                        e.to_text()
                    ),
                    Denial::NoAgreement { .. } => assert!(
                        e.candidates
                            .iter()
                            .all(|c| c.agreement.effect == Effect::Deny),
                        "{}",
                        e.to_text()
                    ),
                    Denial::QuotaExhausted { .. } | Denial::RateLimited { .. } => {
                        panic!("the authorizer does not count: {d:?}")
                    }
                }
            }
        }
        e
    }

    #[tokio::test]
    async fn decide_and_explain_agree_on_each_condition() {
        let served = |a: &mut Agreement| {
            a.hours = Some("09:00-17:00".parse().unwrap());
            a.days = Some(crate::Days::from_names(&["mon", "tue", "wed", "thu", "fri"]).unwrap());
        };
        // Monday 2026-06-01 10:00 in Beijing, inside every window below.
        let at = Utc.with_ymd_and_hms(2026, 6, 1, 2, 0, 0).unwrap();
        let asked_extra = vec!["name".to_owned(), "ethnicity".to_owned()];
        type Case = (&'static str, Box<dyn Fn(&mut Agreement)>, Option<Condition>);
        let cases: Vec<Case> = vec![
            ("covers", Box::new(|_| {}), None),
            (
                "matter",
                Box::new(|a| a.matters = vec!["marketing".into()]),
                Some(Condition::Matter),
            ),
            (
                "not yet valid",
                Box::new(|a| a.valid_from = Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap()),
                Some(Condition::Validity),
            ),
            (
                "expired",
                Box::new(|a| a.valid_until = Utc.with_ymd_and_hms(2026, 5, 31, 0, 0, 0).unwrap()),
                Some(Condition::Validity),
            ),
            (
                "day",
                Box::new(|a| a.days = Some(crate::Days::from_names(&["sat"]).unwrap())),
                Some(Condition::Day),
            ),
            (
                "hours",
                Box::new(|a| a.hours = Some("13:00-17:00".parse().unwrap())),
                Some(Condition::Hours),
            ),
        ];
        for (name, change, want) in &cases {
            let mut a = agreement("a1", A, Effect::Allow);
            served(&mut a);
            change(&mut a);
            let auth = Authorizer::new(vec![a], vec![]).await.unwrap();
            let mut q = question(A, None);
            q.at = at;
            let e = decide_and_explain_agree(&auth, &q);
            assert_eq!(e.candidates[0].failed, *want, "{name}: {}", e.to_text());
            assert_eq!(
                matches!(e.decision, Decision::Allow(_)),
                want.is_none(),
                "{name}"
            );
            // The same agreement behind a deny, and asked for a field it lacks.
            q.fields = Some(&asked_extra);
            let e = decide_and_explain_agree(&auth, &q);
            if want.is_none() {
                assert_eq!(
                    e.decision,
                    Decision::Deny(Denial::FieldNotAllowed {
                        agreement: "a1".into(),
                        field: "ethnicity".into()
                    })
                );
            }
            let mut d = agreement("d1", A, Effect::Deny);
            served(&mut d);
            change(&mut d);
            let auth = Authorizer::new(vec![agreement("a0", A, Effect::Allow), d], vec![])
                .await
                .unwrap();
            q.fields = None;
            let e = decide_and_explain_agree(&auth, &q);
            let deny = e
                .candidates
                .iter()
                .find(|c| c.agreement.id == "d1")
                .unwrap();
            assert_eq!(deny.failed, *want, "{name}: {}", e.to_text());
            // A deny refuses exactly when it applies; else a0 allows.
            assert_eq!(
                matches!(e.decision, Decision::Deny(Denial::ExplicitDeny { .. })),
                want.is_none(),
                "{name}: {}",
                e.to_text()
            );
            assert_eq!(
                matches!(e.decision, Decision::Allow(_)),
                want.is_some(),
                "{name}"
            );
        }
    }

    /// Many agreements with random matters, windows, days, hours and effects, asked
    /// about at many moments: decide and explain agree on every question.
    #[tokio::test]
    async fn decide_and_explain_agree_everywhere() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            seed.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
        };
        let matters = ["m-a", "m-b", "m-c"];
        let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let mut outcomes = HashSet::new();
        for round in 0..40 {
            let mut set = Vec::new();
            for i in 0..(1 + next(4)) {
                let effect = if next(4) == 0 {
                    Effect::Deny
                } else {
                    Effect::Allow
                };
                let consumer = if next(3) == 0 { "role:counter" } else { A };
                let mut a = agreement(&format!("r{round}-{i}"), consumer, effect);
                a.matters = matters
                    .iter()
                    .filter(|_| next(2) == 0)
                    .map(|m| (*m).to_owned())
                    .collect();
                if a.matters.is_empty() {
                    a.matters.push(matters[0].into());
                }
                a.valid_from = Utc
                    .with_ymd_and_hms(2026, 1 + next(6) as u32, 1, 0, 0, 0)
                    .unwrap();
                a.valid_until = a.valid_from + chrono::Duration::days(30 + next(200) as i64);
                if next(2) == 0 {
                    let picked: Vec<&str> = days.iter().copied().filter(|_| next(3) != 0).collect();
                    a.days = crate::Days::from_names(&picked).ok();
                }
                if next(2) == 0 {
                    let from = next(20);
                    a.hours = Some(
                        format!("{from:02}:00-{:02}:30", from + 1 + next(4))
                            .parse()
                            .unwrap(),
                    );
                }
                if effect == Effect::Allow && next(3) == 0 {
                    a.fields.remove("name");
                }
                set.push(a);
            }
            let auth = Authorizer::new(set, vec![binding(A, "counter")])
                .await
                .unwrap();
            let asked = vec!["name".to_owned()];
            for _ in 0..50 {
                let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
                    + chrono::Duration::minutes(next(365 * 24 * 60) as i64);
                let matter = matters[next(3) as usize];
                let fields = (next(2) == 0).then_some(asked.as_slice());
                let q = Question {
                    consumer: A,
                    dataset: "population",
                    matter,
                    fields,
                    at,
                };
                let e = decide_and_explain_agree(&auth, &q);
                outcomes.insert(match &e.decision {
                    Decision::Allow(_) => "allow",
                    Decision::Deny(d) => d.code(),
                });
            }
        }
        // The sweep reached every kind of outcome the authorizer gives.
        for code in [
            "allow",
            "matter-not-allowed",
            "agreement-not-in-force",
            "outside-service-hours",
            "explicit-deny",
            "field-not-allowed",
        ] {
            assert!(outcomes.contains(code), "never {code}: {outcomes:?}");
        }
    }
}
