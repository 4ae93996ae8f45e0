//! The gateway's policy: the agreement store in the state database, the authorizer
//! that decides from it, the meter that counts quotas and rates — and the task that
//! keeps the authorizer in step with the store, so that a change made by the admin
//! API of any gateway or by `tongban policy apply` takes effect here within
//! `[policy] sync_interval_ms` (default 250 ms), without a restart.
//!
//! ```text
//!  admin API ─┐                           ┌─▶ this gateway: catch_up at once
//!  CLI apply ─┼─▶ store (history, version)┤
//!  demo      ─┘                           └─▶ every gateway: poll version, catch_up
//! ```

use std::sync::Arc;
use std::time::Duration;

use policy::{
    AgreementStore, Authorizer, Catalogue, Decision, Denial, Meter, PolicyError, Question,
    Settings, SharingClass,
};
use tokio::task::JoinHandle;

use crate::config::{Config, StateDb};

/// How often expired counter rows are removed.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// Everything the gateway needs to decide, count and manage agreements.
pub struct PolicyService {
    /// Agreements, history, roles and counters.
    pub store: AgreementStore,
    /// Decisions.
    pub authorizer: Arc<Authorizer>,
    /// Daily quotas and operator rates.
    pub meter: Meter,
    /// Datasets, fields, providers and matters agreements may name.
    pub catalogue: Arc<Catalogue>,
    follower: Option<AbortOnDrop>,
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PolicyService {
    /// Open the store of `config`'s state database, load the agreements, and start
    /// following changes.
    pub async fn open(config: &Config) -> Result<Self, PolicyError> {
        let mut service = Self::open_idle(config).await?;
        let interval = Duration::from_millis(config.policy.sync_interval_ms);
        service.follower = Some(AbortOnDrop(tokio::spawn(follow(
            service.store.clone(),
            Arc::clone(&service.authorizer),
            interval,
        ))));
        Ok(service)
    }

    /// The same without the follower task: for commands that read once.
    pub async fn open_idle(config: &Config) -> Result<Self, PolicyError> {
        let store = open_store(config).await?;
        let settings = Settings {
            time_zone: config.policy.time_zone,
            cache_capacity: config.policy.decision_cache,
        };
        let authorizer = Arc::new(Authorizer::load(&store, settings).await?);
        Ok(Self {
            meter: Meter::new(store.clone(), config.policy.time_zone),
            store,
            authorizer,
            catalogue: Arc::new(catalogue(config)),
            follower: None,
        })
    }

    /// Apply the store's changes now (after a change made here, so that this
    /// gateway obeys it before answering).
    pub async fn refresh(&self) -> Result<usize, PolicyError> {
        self.authorizer.catch_up(&self.store).await
    }

    /// Decide, then charge the allowing agreement's quota and the operator's rate:
    /// what a lookup (or a bundle item) gets.
    pub async fn authorize(
        &self,
        q: &Question<'_>,
        operator: &str,
    ) -> Result<Decision, PolicyError> {
        let decision = withhold_closed(&self.catalogue, q, self.authorizer.decide(q)?);
        if let Decision::Allow(grant) = &decision {
            if let Some(denial) = self.meter.charge(grant, q.consumer, operator, q.at).await? {
                return Ok(Decision::Deny(denial));
            }
        }
        Ok(decision)
    }
}

/// A `closed` field is never answered, even if an agreement stored before the field
/// was reclassified still grants it: asked for by name it is refused, otherwise it is
/// left out. Decided before any quota is charged.
fn withhold_closed(catalogue: &Catalogue, q: &Question<'_>, decision: Decision) -> Decision {
    let Decision::Allow(mut grant) = decision else {
        return decision;
    };
    let closed = |name: &str| catalogue.class_of(q.dataset, name) == Some(SharingClass::Closed);
    if let Some(field) = grant.fields.iter().find(|f| closed(&f.name)) {
        if q.fields.is_some() {
            return Decision::Deny(Denial::FieldNotAllowed {
                agreement: grant.agreement,
                field: field.name.clone(),
            });
        }
        grant.fields.retain(|f| !closed(&f.name));
    }
    Decision::Allow(grant)
}

/// Open the agreement store in the state database (SQLite file or PostgreSQL).
pub async fn open_store(config: &Config) -> Result<AgreementStore, PolicyError> {
    let url = match &config.state_db {
        StateDb::Sqlite(path) => AgreementStore::sqlite_url(path),
        StateDb::Postgres(url) => url.clone(),
    };
    AgreementStore::connect(&url, 4).await
}

/// What agreements are checked against: the configured datasets with their fields'
/// sharing classes and providers, and the `[policy] matters`.
pub fn catalogue(config: &Config) -> Catalogue {
    config.datasets.iter().fold(
        Catalogue::new(config.policy.matters.iter().cloned()),
        |c, d| {
            let fields = d.fields.iter().map(|f| (f.name.as_str(), f.class));
            c.with_classified_dataset(d.dataset.as_str(), fields, Some(&d.department))
        },
    )
}

/// Poll the store's version and catch up; remove expired counters now and then.
async fn follow(store: AgreementStore, authorizer: Arc<Authorizer>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let mut purged = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        match authorizer.catch_up(&store).await {
            Ok(0) => failing = false,
            Ok(n) => {
                failing = false;
                tracing::info!(
                    changes = n,
                    version = authorizer.version(),
                    "agreement changes applied"
                );
            }
            Err(e) => {
                // Keep deciding on the last good set; say so once per outage.
                if !failing {
                    tracing::warn!(error = %e, "cannot follow agreement changes; deciding on the last set applied");
                }
                failing = true;
            }
        }
        if purged.elapsed() >= PURGE_EVERY {
            purged = tokio::time::Instant::now();
            if let Err(e) = store.purge_counters(chrono::Utc::now().timestamp()).await {
                tracing::warn!(error = %e, "purging expired quota counters failed");
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use policy::{FieldGrant, FieldRule, Grant, SharingClass};

    use super::*;

    fn grant(fields: &[&str]) -> Decision {
        Decision::Allow(Grant {
            agreement: "a-1".into(),
            provider: "sz-psb".into(),
            fields: fields
                .iter()
                .map(|f| FieldGrant {
                    name: (*f).to_owned(),
                    rule: FieldRule::Full,
                })
                .collect(),
            limits: Default::default(),
        })
    }

    /// An agreement stored before `address` became closed still names it: the field
    /// is left out of an answer of every granted field, and refused when asked.
    #[test]
    fn a_closed_field_is_withheld_whatever_the_agreement_says() {
        let catalogue = Catalogue::new(["m"]).with_classified_dataset(
            "permits",
            [
                ("name", SharingClass::Conditional),
                ("address", SharingClass::Closed),
            ],
            Some("sz-psb"),
        );
        let asked = ["name".to_owned(), "address".to_owned()];
        let q = |fields| Question {
            consumer: "urn:tongban:sz-hrss:counter-01",
            dataset: "permits",
            matter: "m",
            fields,
            at: chrono::Utc::now(),
        };
        let all = withhold_closed(&catalogue, &q(None), grant(&["name", "address"]));
        assert_eq!(all, grant(&["name"]));
        let named = withhold_closed(&catalogue, &q(Some(&asked)), grant(&["name", "address"]));
        assert_eq!(
            named,
            Decision::Deny(Denial::FieldNotAllowed {
                agreement: "a-1".into(),
                field: "address".into()
            })
        );
        let open = withhold_closed(&catalogue, &q(Some(&asked[..1])), grant(&["name"]));
        assert_eq!(open, grant(&["name"]));
    }
}
