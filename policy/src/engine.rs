//! The casbin side: the model, and a small enforcer per (consumer, dataset) holding
//! only the policy lines of that consumer's candidate agreements.
//!
//! casbin evaluates its matcher once per policy line, so an enforcer over every
//! agreement costs time in proportion to their number. Each [`Decider`] holds the
//! lines of the agreements naming the consumer (or one of its roles) for one
//! dataset — a handful — so a decision costs the same at 100 agreements as at
//! 100,000.

use std::future::Future as _;
use std::io::Write as _;
use std::sync::Arc;

use casbin::function_map::OperatorFunction;
use casbin::rhai::{Dynamic, ImmutableString};
use casbin::{CoreApi, DefaultModel, Enforcer, MemoryAdapter, MgmtApi};
use chrono::{DateTime, Utc};

use crate::schedule::Clock;
use crate::{Agreement, PolicyError};

/// The casbin model: one policy line per agreement of one decider, so every line
/// already names the decider's dataset and the identity or one of its roles (the
/// index saw to that; `g` still checks the role link). casbin's Rhai engine has
/// 32-bit integers and no dates, so times travel as text: `r.at` is
/// `<unix second>|<weekday>|<minute>` (UTC second; weekday and minute in the
/// configured zone); `p.matters` is the agreement's matters joined by `,` (a matter
/// code has no comma), checked by `listed`; `p.when` is the validity window in unix
/// seconds and, when the agreement has hours of service, its days and hours:
/// `<from>|<until>[|<schedule>]`, checked by `in_force`. Default deny; an explicit
/// deny overrides any allow.
///
/// Few and short tokens and few calls, because casbin copies every token into a
/// fresh Rhai scope on every decision (eight tokens fit the scope's first
/// allocation; a token of at most 23 bytes is stored inline rather than in a heap
/// block of its own) and Rhai resolves and dispatches every call. An allocation
/// costs more in the large, fragmented heap of 100,000 agreements than in a small
/// one, so their number decides whether a decision costs the same at both.
pub(crate) const MODEL: &str = r#"
[request_definition]
r = sub, matter, at

[policy_definition]
p = sub, matters, when, eft

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = listed(r.matter, p.matters) && in_force(r.at, p.when) && g(r.sub, p.sub)
"#;

/// A moment as people read it, `YYYY-MM-DDTHH:MM:SSZ` (whole seconds, UTC), for
/// explanations.
pub(crate) fn stamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `r.at` for `clock`: `<unix second>|<weekday>|<minute>`, at most 23 bytes until
/// the year 2286, so Rhai keeps it inline. Written into a stack buffer: the only
/// allocation is the string casbin gets.
fn moment(clock: &Clock) -> ImmutableString {
    let mut buf = [0u8; 32];
    let len = {
        let mut out: &mut [u8] = &mut buf;
        // 20 + 1 + 1 + 1 + 4 bytes at most: always fits.
        let _ = write!(
            out,
            "{}|{}|{}",
            clock.at.timestamp(),
            clock.weekday(),
            clock.minute()
        );
        32 - out.len()
    };
    ImmutableString::from(std::str::from_utf8(&buf[..len]).unwrap_or_default())
}

/// The parts of `r.at`: unix second, weekday (0 = Monday), minute of the day.
fn parse_moment(at: &str) -> Option<(i64, u8, u16)> {
    let mut parts = at.split('|');
    let second = parts.next()?.parse().ok()?;
    let day = parts.next()?.parse().ok()?;
    let minute = parts.next()?.parse().ok()?;
    Some((second, day, minute))
}

/// casbin function: whether the request's matter is one of the line's `,`-joined
/// matters. Arguments are borrowed, never copied: a copy is an allocation.
fn listed(matter: Dynamic, matters: Dynamic) -> Dynamic {
    let yes = match (
        matter.as_immutable_string_ref(),
        matters.as_immutable_string_ref(),
    ) {
        (Ok(matter), Ok(matters)) => matters.split(',').any(|m| m == matter.as_str()),
        _ => false,
    };
    Dynamic::from_bool(yes)
}

/// casbin function: whether the request's moment is within the line's validity
/// window (inclusive) and, if it has one, its schedule (see
/// [`Agreement::schedule_token`]).
fn in_force(at: Dynamic, when: Dynamic) -> Dynamic {
    let yes = match (at.as_immutable_string_ref(), when.as_immutable_string_ref()) {
        (Ok(at), Ok(when)) => when_contains(&at, &when).unwrap_or(false),
        _ => false,
    };
    Dynamic::from_bool(yes)
}

fn when_contains(at: &str, when: &str) -> Option<bool> {
    let (second, day, minute) = parse_moment(at)?;
    let mut parts = when.splitn(3, '|');
    let from: i64 = parts.next()?.parse().ok()?;
    let until: i64 = parts.next()?.parse().ok()?;
    if second < from || second > until {
        return Some(false);
    }
    let Some(schedule) = parts.next() else {
        return Some(true);
    };
    let (bits, hours) = schedule.split_once('|')?;
    let bits: u8 = bits.parse().ok()?;
    let (from, until) = hours.split_once('-')?;
    let hours = crate::ServiceHours {
        from: from.parse().ok()?,
        until: until.parse().ok()?,
    };
    Some(crate::Days::from_bits(bits).contains(day) && hours.contains(minute))
}

/// `p.when` of an agreement.
fn when_token(a: &Agreement) -> String {
    let window = format!("{}|{}", a.valid_from.timestamp(), a.valid_until.timestamp());
    match a.schedule_token() {
        s if s.is_empty() => window,
        s => format!("{window}|{s}"),
    }
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
    /// `r.sub` and the candidates' matters as Rhai strings, made once: handing
    /// casbin a clone of one is a reference count, not an allocation.
    subject: ImmutableString,
    matters: Vec<ImmutableString>,
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
        enforcer.add_function("in_force", OperatorFunction::Arg2(in_force));
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
        let mut matters: Vec<ImmutableString> = Vec::new();
        for m in candidates.iter().flat_map(|a| &a.matters) {
            if !matters.iter().any(|x| x.as_str() == m) {
                matters.push(m.as_str().into());
            }
        }
        Ok(Self {
            enforcer,
            candidates,
            keys,
            subject: identity.into(),
            matters,
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

    /// casbin's verdict for the decider's identity: whether some line allows and
    /// none denies. (The dataset is the decider's own.)
    pub(crate) fn allows(&self, matter: &str, clock: &Clock) -> Result<bool, PolicyError> {
        let matter = self
            .matters
            .iter()
            .find(|m| m.as_str() == matter)
            .cloned()
            .unwrap_or_else(|| matter.into());
        // A Vec of Dynamic is casbin's own request form: no serde conversion, and
        // the vector is reused as is.
        let request = vec![
            Dynamic::from(self.subject.clone()),
            Dynamic::from(matter),
            Dynamic::from(moment(clock)),
        ];
        Ok(self.enforcer.enforce(request)?)
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
                when_token(a),
                a.effect.as_str().to_owned(),
            ]
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn yes(d: &Dynamic) -> bool {
        d.as_bool().unwrap_or(false)
    }

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Dynamic {
        let clock = Clock::new(
            Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap(),
            crate::TimeZone::default(),
        );
        Dynamic::from(moment(&clock))
    }

    #[test]
    fn stamps_are_fixed_width_utc() {
        let t = Utc.with_ymd_and_hms(2026, 6, 3, 2, 4, 9).unwrap()
            + chrono::Duration::milliseconds(999);
        assert_eq!(stamp(t), "2026-06-03T02:04:09Z");
    }

    #[test]
    fn moments_are_short_and_local() {
        // Wednesday 2026-06-03 02:04:09 UTC is 10:04 in Beijing.
        let clock = Clock::new(
            Utc.with_ymd_and_hms(2026, 6, 3, 2, 4, 9).unwrap(),
            crate::TimeZone::default(),
        );
        let m = moment(&clock);
        assert_eq!(m.as_str(), "1780452249|2|604");
        assert!(m.len() <= 23);
        assert_eq!(parse_moment(&m), Some((1_780_452_249, 2, 604)));
    }

    #[test]
    fn windows_are_inclusive() {
        let from = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .unwrap()
            .timestamp();
        let until = Utc
            .with_ymd_and_hms(2026, 12, 31, 23, 59, 59)
            .unwrap()
            .timestamp();
        let w = || Dynamic::from(ImmutableString::from(format!("{from}|{until}")));
        assert!(yes(&in_force(at(2026, 1, 1, 0, 0, 0), w())));
        assert!(yes(&in_force(at(2026, 12, 31, 23, 59, 59), w())));
        assert!(!yes(&in_force(at(2027, 1, 1, 0, 0, 0), w())));
        assert!(!yes(&in_force(at(2025, 12, 31, 23, 59, 59), w())));
    }

    #[test]
    fn matters_are_listed() {
        let s = |v: &str| Dynamic::from(ImmutableString::from(v));
        assert!(yes(&listed(s("b"), s("a,b,c"))));
        assert!(!yes(&listed(s("b"), s("a,bb"))));
    }

    #[test]
    fn schedules_are_local() {
        // Mon-Fri 09:00-17:00, inside an open window.
        let when = "0|9999999999|31|540-1020";
        assert_eq!(when_contains("5|0|600", when), Some(true));
        assert_eq!(when_contains("5|5|600", when), Some(false));
        assert_eq!(when_contains("5|0|1020", when), Some(false));
        assert_eq!(
            when_contains("5|0|30", "0|9999999999|127|1320-360"),
            Some(true)
        );
        assert_eq!(when_contains("5|0|600", "10|20|31|540-1020"), Some(false));
        assert_eq!(when_contains("garbage", when), None);
    }

    #[test]
    fn lines_carry_window_and_schedule() {
        let mut a = crate::agreement::tests::sample();
        a.hours = None;
        a.days = None;
        let window = format!("{}|{}", a.valid_from.timestamp(), a.valid_until.timestamp());
        assert_eq!(when_token(&a), window);
        a.hours = Some("09:00-17:00".parse().unwrap());
        assert_eq!(when_token(&a), format!("{window}|127|540-1020"));
    }
}
