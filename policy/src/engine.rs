//! The casbin side: the model, and a small enforcer per (consumer, dataset) holding
//! only the policy lines of that consumer's candidate agreements.
//!
//! A decision evaluates each candidate's conditions once, in Rust
//! ([`Agreement::unmet`]: matter, validity, day, hours), and hands casbin which
//! lines are met; casbin decides from that, the role graph and the effect rule —
//! default deny, an explicit deny overriding any allow. The decision and its
//! explanation are both read off that one evaluation ([`Evaluation`]), so what
//! `explain` says failed is what the decision used.
//!
//! casbin evaluates its matcher once per policy line, so an enforcer over every
//! agreement costs time in proportion to their number. Each [`Decider`] holds the
//! lines of the agreements naming the consumer (or one of its roles) for one
//! dataset — a handful — so a decision costs the same at 100 agreements as at
//! 100,000.

use std::future::Future as _;
use std::sync::{Arc, Mutex};

use casbin::function_map::OperatorFunction;
use casbin::rhai::{Dynamic, ImmutableString};
use casbin::{CoreApi, DefaultModel, Enforcer, MemoryAdapter, MgmtApi};

use crate::agreement::Condition;
use crate::decision::{Decision, Question};
use crate::schedule::Clock;
use crate::{Agreement, PolicyError};

/// The casbin model: one policy line per candidate agreement of one decider, so
/// every line already names the decider's dataset and the identity or one of its
/// roles (the index saw to that; `g` still checks the role link). `p.idx` is the
/// line's place among the candidates and `r.met` says, a byte per candidate
/// (`1` met, `0` not), whose conditions hold: `met` reads it. Default deny; an
/// explicit deny overrides any allow.
///
/// Few and short tokens and few calls, because casbin copies every token into a
/// fresh Rhai scope for every line on every decision and Rhai resolves and
/// dispatches every call; `met` comes first so that `g` is asked only of lines
/// that could decide.
pub(crate) const MODEL: &str = r#"
[request_definition]
r = sub, met

[policy_definition]
p = sub, idx, eft

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow)) && !some(where (p.eft == deny))

[matchers]
m = met(r.met, p.idx) && g(r.sub, p.sub)
"#;

/// casbin function: whether the request's `met` bytes mark the line's candidate
/// as meeting its conditions. Arguments are borrowed, never copied: a copy is an
/// allocation.
fn met(mask: Dynamic, idx: Dynamic) -> Dynamic {
    let yes = match (
        mask.as_immutable_string_ref(),
        idx.as_immutable_string_ref(),
    ) {
        (Ok(mask), Ok(idx)) => {
            idx.parse::<usize>()
                .ok()
                .and_then(|i| mask.as_bytes().get(i).copied())
                == Some(b'1')
        }
        _ => false,
    };
    Dynamic::from_bool(yes)
}

/// The parsed model, cloned into every decider.
pub(crate) async fn base_model() -> Result<DefaultModel, PolicyError> {
    Ok(DefaultModel::from_str(MODEL).await?)
}

/// One decision and what it was read from: the first condition each candidate
/// fails (`None`: it meets them all), in candidate order.
pub(crate) struct Evaluation {
    pub(crate) decision: Decision,
    pub(crate) checks: Vec<Option<Condition>>,
}

/// One consumer identity's view of one dataset: its candidate agreements and an
/// enforcer over exactly their lines.
pub(crate) struct Decider {
    enforcer: Enforcer,
    /// Agreements naming the identity or one of its roles, for the dataset.
    pub(crate) candidates: Vec<Arc<Agreement>>,
    /// The consumer keys (identity, `role:…`) the candidates were gathered from.
    pub(crate) keys: Vec<String>,
    /// `r.sub` as a Rhai string, made once: handing casbin a clone is a reference
    /// count, not an allocation.
    subject: ImmutableString,
    /// casbin's verdict for each `met` mask seen so far. The subject, its roles and
    /// the lines are fixed for a decider's life, so the mask is all a verdict depends
    /// on; a policy change builds new deciders. Evaluating the matcher through Rhai
    /// was most of a decision's CPU (docs/performance.md).
    verdicts: Mutex<Vec<(Box<str>, bool)>>,
}

/// Most masks a decider remembers verdicts for: a handful of candidates gives few
/// masks; past this, decisions are evaluated each time.
const REMEMBERED_VERDICTS: usize = 64;

impl Decider {
    /// Build the enforcer for `identity` holding `roles` over `candidates`.
    pub(crate) async fn build(
        base: &DefaultModel,
        identity: &str,
        roles: &[String],
        candidates: Vec<Arc<Agreement>>,
    ) -> Result<Self, PolicyError> {
        let mut enforcer = Enforcer::new(base.clone(), MemoryAdapter::default()).await?;
        enforcer.add_function("met", OperatorFunction::Arg2(met));
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
            subject: identity.into(),
            verdicts: Mutex::new(Vec::new()),
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

    /// Decide `q` at `clock`: each candidate's conditions evaluated once, casbin's
    /// verdict over which of them hold, and the decision read off both.
    pub(crate) fn decide(
        &self,
        q: &Question<'_>,
        clock: &Clock,
    ) -> Result<Evaluation, PolicyError> {
        let checks: Vec<Option<Condition>> = self
            .candidates
            .iter()
            .map(|a| a.unmet(q.matter, clock))
            .collect();
        let mask: String = checks
            .iter()
            .map(|c| if c.is_none() { '1' } else { '0' })
            .collect();
        let verdict = match self.remembered(&mask) {
            Some(v) => v,
            None => {
                // A Vec of Dynamic is casbin's own request form: no serde conversion,
                // and the vector is reused as is.
                let request = vec![
                    Dynamic::from(self.subject.clone()),
                    Dynamic::from(ImmutableString::from(mask.as_str())),
                ];
                let verdict = self.enforcer.enforce(request)?;
                self.remember(mask, verdict);
                verdict
            }
        };
        Ok(Evaluation {
            decision: Decision::read(q, verdict, &self.candidates, &checks),
            checks,
        })
    }
}

impl Decider {
    fn verdicts(&self) -> std::sync::MutexGuard<'_, Vec<(Box<str>, bool)>> {
        // Only (mask, bool) pairs inside: a panic elsewhere leaves them valid.
        self.verdicts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remembered(&self, mask: &str) -> Option<bool> {
        self.verdicts()
            .iter()
            .find(|(m, _)| &**m == mask)
            .map(|(_, v)| *v)
    }

    fn remember(&self, mask: String, verdict: bool) {
        let mut verdicts = self.verdicts();
        if verdicts.len() < REMEMBERED_VERDICTS && !verdicts.iter().any(|(m, _)| **m == *mask) {
            verdicts.push((mask.into_boxed_str(), verdict));
        }
    }
}

/// One policy line per candidate: its consumer, its place, its effect.
fn policy_lines(agreements: &[Arc<Agreement>]) -> Vec<Vec<String>> {
    agreements
        .iter()
        .enumerate()
        .map(|(i, a)| {
            vec![
                a.consumer.clone(),
                i.to_string(),
                a.effect.as_str().to_owned(),
            ]
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn yes(d: &Dynamic) -> bool {
        d.as_bool().unwrap_or(false)
    }

    fn s(text: &str) -> Dynamic {
        Dynamic::from(ImmutableString::from(text))
    }

    #[test]
    fn met_reads_the_candidates_byte() {
        assert!(yes(&met(s("101"), s("0"))));
        assert!(!yes(&met(s("101"), s("1"))));
        assert!(yes(&met(s("101"), s("2"))));
        // Out of range, not a number, not a string: not met, so never an allow.
        assert!(!yes(&met(s("101"), s("3"))));
        assert!(!yes(&met(s("101"), s("x"))));
        assert!(!yes(&met(Dynamic::from_bool(true), s("0"))));
    }

    #[test]
    fn lines_are_distinct_even_for_equal_agreements() {
        // casbin refuses a line it already holds; two agreements that read alike
        // still get a line each, because each line carries its place.
        let a = Arc::new(crate::agreement::tests::sample());
        let lines = policy_lines(&[Arc::clone(&a), a]);
        assert_ne!(lines[0], lines[1]);
        assert_eq!(lines[1][1], "1");
    }
}
