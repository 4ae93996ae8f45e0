//! The casbin side: the model, and a small enforcer per (consumer, dataset) holding
//! only the policy lines of that consumer's candidate agreements.
//!
//! casbin evaluates its matcher once per policy line, so an enforcer over every
//! agreement costs time in proportion to their number. Each [`Decider`] holds the
//! lines of the agreements naming the consumer (or one of its roles) for one
//! dataset — a handful — so a decision costs the same at 100 agreements as at
//! 100,000.

use std::future::Future as _;
use std::sync::Arc;

use casbin::function_map::OperatorFunction;
use casbin::rhai::Dynamic;
use casbin::{CoreApi, DefaultModel, Enforcer, MemoryAdapter, MgmtApi};
use chrono::{DateTime, Datelike as _, Timelike as _, Utc};

use crate::schedule::Clock;
use crate::{Agreement, PolicyError};

/// The casbin model: one policy line per agreement of one decider, so every line
/// already names the decider's dataset and the identity or one of its roles (the
/// index saw to that; `g` still checks the role link). Times are fixed-width UTC
/// strings (casbin's Rhai engine has 32-bit integers, no floats and no dates):
/// `p.window` is `<from>|<until>`, checked by `within`; `p.matters` the agreement's
/// matters joined by `,` (a matter code has no comma), checked by `listed`;
/// `r.clock` is `<weekday>|<minute>` in the configured zone and `p.schedule` the
/// agreement's days and hours, checked by `in_service`. Few tokens and few calls:
/// Rhai copies every token into its scope and dispatches every operator, and that
/// is most of a decision's cost. Default deny; an explicit deny overrides any allow.
pub(crate) const MODEL: &str = r#"
[request_definition]
r = sub, matter, time, clock

[policy_definition]
p = sub, matters, window, schedule, eft

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = listed(r.matter, p.matters) && within(r.time, p.window) && in_service(r.clock, p.schedule) && g(r.sub, p.sub)
"#;

/// A moment as the casbin request carries it, `YYYY-MM-DDTHH:MM:SSZ` (whole
/// seconds, UTC), written digit by digit: it is on every decision's path, and
/// chrono's formatter costs more than the rest of the request's preparation.
pub(crate) fn stamp(at: DateTime<Utc>) -> String {
    let parts = [
        (u32::try_from(at.year()).unwrap_or(0), 4, '-'),
        (at.month(), 2, '-'),
        (at.day(), 2, 'T'),
        (at.hour(), 2, ':'),
        (at.minute(), 2, ':'),
        (at.second(), 2, 'Z'),
    ];
    let mut s = String::with_capacity(20);
    for (n, width, sep) in parts {
        let mut digits = [b'0'; 4];
        let mut rest = n;
        for d in digits[..width].iter_mut().rev() {
            // rest % 10 < 10.
            *d = b'0' + u8::try_from(rest % 10).unwrap_or(0);
            rest /= 10;
        }
        s.extend(digits[..width].iter().map(|d| char::from(*d)));
        s.push(sep);
    }
    s
}

/// `<weekday>|<minute>` for `in_service`.
pub(crate) fn clock_token(clock: &Clock) -> String {
    format!("{}|{}", clock.weekday(), clock.minute())
}

/// casbin function: whether the request's matter is one of the line's `,`-joined
/// matters.
fn listed(matter: Dynamic, matters: Dynamic) -> Dynamic {
    let matter = matter.into_string().unwrap_or_default();
    let matters = matters.into_string().unwrap_or_default();
    Dynamic::from(matters.split(',').any(|m| m == matter))
}

/// casbin function: whether the request's time is within the line's
/// `<from>|<until>` window (inclusive; fixed-width UTC strings compare as times).
fn within(time: Dynamic, window: Dynamic) -> Dynamic {
    let time = time.into_string().unwrap_or_default();
    let window = window.into_string().unwrap_or_default();
    let inside = window
        .split_once('|')
        .is_some_and(|(from, until)| from <= time.as_str() && time.as_str() <= until);
    Dynamic::from(inside)
}

/// casbin function: whether the request's local clock is inside a schedule token
/// (see [`Agreement::schedule_token`]); an empty schedule means always.
fn in_service(clock: Dynamic, schedule: Dynamic) -> Dynamic {
    let clock = clock.into_string().unwrap_or_default();
    let schedule = schedule.into_string().unwrap_or_default();
    Dynamic::from(schedule.is_empty() || schedule_contains(&clock, &schedule).unwrap_or(false))
}

fn schedule_contains(clock: &str, schedule: &str) -> Option<bool> {
    let (day, minute) = clock.split_once('|')?;
    let (day, minute): (u8, u16) = (day.parse().ok()?, minute.parse().ok()?);
    let (bits, window) = schedule.split_once('|')?;
    let bits: u8 = bits.parse().ok()?;
    let (from, until) = window.split_once('-')?;
    let hours = crate::ServiceHours {
        from: from.parse().ok()?,
        until: until.parse().ok()?,
    };
    Some(crate::Days::from_bits(bits).contains(day) && hours.contains(minute))
}

/// The parsed model, cloned into every decider.
pub(crate) async fn base_model() -> Result<DefaultModel, PolicyError> {
    Ok(DefaultModel::from_str(MODEL).await?)
}

/// One consumer identity's view of one dataset: its candidate agreements and an
/// enforcer over exactly their lines.
pub(crate) struct Decider {
    pub(crate) enforcer: Enforcer,
    /// Agreements naming the identity or one of its roles, for the dataset.
    pub(crate) candidates: Vec<Arc<Agreement>>,
    /// The consumer keys (identity, `role:…`) the candidates were gathered from.
    pub(crate) keys: Vec<String>,
}

impl Decider {
    /// Build the enforcer for `identity` holding `roles` over `candidates`.
    pub(crate) async fn build(
        base: &DefaultModel,
        identity: &str,
        roles: &[String],
        candidates: Vec<Arc<Agreement>>,
    ) -> Result<Self, PolicyError> {
        let mut enforcer = Enforcer::new(base.clone(), MemoryAdapter::default()).await?;
        enforcer.add_function("listed", OperatorFunction::Arg2(listed));
        enforcer.add_function("within", OperatorFunction::Arg2(within));
        enforcer.add_function("in_service", OperatorFunction::Arg2(in_service));
        let lines = policy_lines(&candidates);
        if !lines.is_empty() {
            enforcer.add_policies(lines).await?;
        }
        if !roles.is_empty() {
            let links = roles
                .iter()
                .map(|r| vec![identity.to_owned(), r.clone()])
                .collect();
            enforcer.add_grouping_policies(links).await?;
        }
        let mut keys = vec![identity.to_owned()];
        keys.extend(roles.iter().cloned());
        Ok(Self {
            enforcer,
            candidates,
            keys,
        })
    }

    /// [`Decider::build`] on the calling thread. Building an enforcer over a memory
    /// adapter does no I/O, so its future completes on the first poll; were a casbin
    /// release ever to make it wait, this refuses (and the decision fails closed)
    /// rather than block a request thread.
    pub(crate) fn build_now(
        base: &DefaultModel,
        identity: &str,
        roles: &[String],
        candidates: Vec<Arc<Agreement>>,
    ) -> Result<Self, PolicyError> {
        let future = std::pin::pin!(Self::build(base, identity, roles, candidates));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match future.poll(&mut cx) {
            std::task::Poll::Ready(result) => result,
            std::task::Poll::Pending => Err(PolicyError::Engine(casbin::Error::AdapterError(
                casbin::error::AdapterError(
                    "building a decider did not complete without waiting".into(),
                ),
            ))),
        }
    }

    /// casbin's verdict: whether some line allows and none denies. (The dataset is
    /// the decider's own.)
    pub(crate) fn allows(
        &self,
        consumer: &str,
        matter: &str,
        clock: &Clock,
    ) -> Result<bool, PolicyError> {
        let time = stamp(clock.at);
        let local = clock_token(clock);
        Ok(self
            .enforcer
            .enforce((consumer, matter, time.as_str(), local.as_str()))?)
    }
}

/// One policy line per agreement.
fn policy_lines(agreements: &[Arc<Agreement>]) -> Vec<Vec<String>> {
    agreements
        .iter()
        .map(|a| {
            vec![
                a.consumer.clone(),
                a.matters.join(","),
                format!("{}|{}", stamp(a.valid_from), stamp(a.valid_until)),
                a.schedule_token(),
                a.effect.as_str().to_owned(),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_fixed_width_utc() {
        use chrono::TimeZone as _;
        let at = Utc.with_ymd_and_hms(2026, 6, 3, 2, 4, 9).unwrap()
            + chrono::Duration::milliseconds(999);
        assert_eq!(stamp(at), "2026-06-03T02:04:09Z");
        assert_eq!(stamp(at), at.format("%Y-%m-%dT%H:%M:%SZ").to_string());
    }

    #[test]
    fn windows_are_inclusive() {
        let w = || Dynamic::from("2026-01-01T00:00:00Z|2026-12-31T23:59:59Z".to_owned());
        let at = |t: &str| {
            within(Dynamic::from(t.to_owned()), w())
                .as_bool()
                .unwrap_or(false)
        };
        assert!(at("2026-01-01T00:00:00Z"));
        assert!(at("2026-12-31T23:59:59Z"));
        assert!(!at("2027-01-01T00:00:00Z"));
        assert!(!at("2025-12-31T23:59:59Z"));
    }

    #[test]
    fn matters_are_listed() {
        let yes = listed(
            Dynamic::from("b".to_owned()),
            Dynamic::from("a,b,c".to_owned()),
        );
        assert!(yes.as_bool().unwrap_or(false));
        let no = listed(
            Dynamic::from("b".to_owned()),
            Dynamic::from("a,bb".to_owned()),
        );
        assert!(!no.as_bool().unwrap_or(true));
    }

    #[test]
    fn schedule_tokens() {
        // Mon-Fri 09:00-17:00.
        assert_eq!(schedule_contains("0|600", "31|540-1020"), Some(true));
        assert_eq!(schedule_contains("5|600", "31|540-1020"), Some(false));
        assert_eq!(schedule_contains("0|1020", "31|540-1020"), Some(false));
        assert_eq!(schedule_contains("0|30", "127|1320-360"), Some(true));
        assert_eq!(schedule_contains("garbage", "31|540-1020"), None);
    }
}
