//! Counted limits: a daily quota per consumer identity and a rate limit per operator,
//! kept in the state database so that they hold across restarts and across gateways
//! sharing one store.
//!
//! An allowed lookup under an agreement with a limit costs one atomic
//! insert-or-increment per limit (`INSERT … ON CONFLICT DO UPDATE … RETURNING n`);
//! lookups under agreements without limits cost nothing here. Windows are fixed and
//! aligned to the configured zone's clock (a quota day is a local calendar day).

use chrono::{DateTime, Utc};

use crate::decision::{Decision, Denial, Grant};
use crate::explain::{Explanation, LimitUsage};
use crate::schedule::{Clock, Period, Rate, TimeZone};
use crate::{Agreement, AgreementStore, PolicyError};

/// Charges and reads the counters of counted limits.
#[derive(Debug, Clone)]
pub struct Meter {
    store: AgreementStore,
    zone: TimeZone,
}

impl Meter {
    /// Count in `store`, with days and windows in `zone`.
    pub fn new(store: AgreementStore, zone: TimeZone) -> Self {
        Self { store, zone }
    }

    /// Count one lookup by `consumer`'s `operator` under `grant`; a denial when it
    /// goes over a limit. The operator's rate is charged first, so that a rate-limited
    /// request does not use up the day's quota.
    pub async fn charge(
        &self,
        grant: &Grant,
        consumer: &str,
        operator: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<Denial>, PolicyError> {
        let clock = Clock::new(at, self.zone);
        if let Some(rate) = grant.limits.operator_rate {
            let (window, ends) = clock.window(rate.per);
            let key = rate_key(&grant.agreement, consumer, operator);
            if self.store.count(&key, &window, ends).await? > i64::from(rate.limit) {
                return Ok(Some(Denial::RateLimited {
                    agreement: grant.agreement.clone(),
                    rate,
                }));
            }
        }
        if let Some(quota) = grant.limits.daily_quota {
            let (window, ends) = clock.window(Period::Day);
            let key = quota_key(&grant.agreement, consumer);
            if self.store.count(&key, &window, ends).await? > i64::from(quota) {
                return Ok(Some(Denial::QuotaExhausted {
                    agreement: grant.agreement.clone(),
                    quota,
                }));
            }
        }
        Ok(None)
    }

    /// How much of `agreement`'s daily quota `consumer` has used on the day of `at`,
    /// without counting; `None` when the agreement has no quota.
    pub async fn daily_usage(
        &self,
        agreement: &Agreement,
        consumer: &str,
        at: DateTime<Utc>,
    ) -> Result<Option<LimitUsage>, PolicyError> {
        let Some(quota) = agreement.daily_quota else {
            return Ok(None);
        };
        let (window, _) = Clock::new(at, self.zone).window(Period::Day);
        let used = self
            .store
            .peek(&quota_key(&agreement.id, consumer), &window)
            .await?;
        let per_day = Rate {
            limit: quota,
            per: Period::Day,
        };
        Ok(Some(usage("daily_quota", per_day, used, window)))
    }

    /// Add the allowing agreement's limits and their use to `e`, without counting;
    /// a limit already reached turns the decision into its denial (the next lookup
    /// would get it). The rate is per operator, so it is shown only for one.
    pub async fn explain(
        &self,
        e: &mut Explanation,
        operator: Option<&str>,
    ) -> Result<(), PolicyError> {
        let Decision::Allow(grant) = &e.decision else {
            return Ok(());
        };
        let grant = grant.clone();
        let clock = Clock::new(e.clock.at, self.zone);
        let mut refusal = None;
        if let (Some(rate), Some(operator)) = (grant.limits.operator_rate, operator) {
            let (window, _) = clock.window(rate.per);
            let used = self
                .store
                .peek(&rate_key(&grant.agreement, &e.consumer, operator), &window)
                .await?;
            if used >= i64::from(rate.limit) {
                refusal = Some(Denial::RateLimited {
                    agreement: grant.agreement.clone(),
                    rate,
                });
            }
            e.usage.push(usage("operator_rate", rate, used, window));
        }
        if let Some(quota) = grant.limits.daily_quota {
            let (window, _) = clock.window(Period::Day);
            let used = self
                .store
                .peek(&quota_key(&grant.agreement, &e.consumer), &window)
                .await?;
            if used >= i64::from(quota) && refusal.is_none() {
                refusal = Some(Denial::QuotaExhausted {
                    agreement: grant.agreement.clone(),
                    quota,
                });
            }
            let per_day = Rate {
                limit: quota,
                per: Period::Day,
            };
            e.usage.push(usage("daily_quota", per_day, used, window));
        }
        if let Some(d) = refusal {
            e.decision = Decision::Deny(d);
        }
        Ok(())
    }
}

fn usage(limit: &'static str, rate: Rate, used: i64, window: String) -> LimitUsage {
    LimitUsage {
        limit,
        allows: rate.to_string(),
        max: rate.limit,
        used,
        window,
    }
}

fn rate_key(agreement: &str, consumer: &str, operator: &str) -> String {
    format!("rate|{agreement}|{consumer}|{operator}")
}

fn quota_key(agreement: &str, consumer: &str) -> String {
    format!("quota|{agreement}|{consumer}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::decision::Limits;
    use chrono::TimeZone as _;

    #[tokio::test]
    async fn quota_and_rate_count_in_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let url = AgreementStore::sqlite_url(&dir.path().join("s.db"));
        let store = AgreementStore::connect(&url, 2).await.unwrap();
        let meter = Meter::new(store, TimeZone::default());
        let grant = Grant {
            agreement: "a1".into(),
            provider: "sz-psb".into(),
            fields: vec![],
            limits: Limits {
                daily_quota: Some(3),
                operator_rate: Some("2/min".parse().unwrap()),
            },
        };
        let at = Utc.with_ymd_and_hms(2026, 6, 1, 2, 0, 0).unwrap();
        let c = "urn:tongban:a:b";
        assert_eq!(meter.charge(&grant, c, "op1", at).await.unwrap(), None);
        assert_eq!(meter.charge(&grant, c, "op1", at).await.unwrap(), None);
        assert!(matches!(
            meter.charge(&grant, c, "op1", at).await.unwrap(),
            Some(Denial::RateLimited { .. })
        ));
        // Another operator has its own rate, but the consumer's quota is shared.
        assert_eq!(meter.charge(&grant, c, "op2", at).await.unwrap(), None);
        assert!(matches!(
            meter.charge(&grant, c, "op2", at).await.unwrap(),
            Some(Denial::QuotaExhausted { quota: 3, .. })
        ));
        // A new store on the same file (a restart) sees the same counts.
        let store = AgreementStore::connect(&url, 1).await.unwrap();
        let meter = Meter::new(store, TimeZone::default());
        let next_minute = at + chrono::Duration::minutes(1);
        assert!(matches!(
            meter.charge(&grant, c, "op3", next_minute).await.unwrap(),
            Some(Denial::QuotaExhausted { .. })
        ));
        // The next local day starts afresh.
        let tomorrow = at + chrono::Duration::days(1);
        assert_eq!(
            meter.charge(&grant, c, "op1", tomorrow).await.unwrap(),
            None
        );
    }
}
