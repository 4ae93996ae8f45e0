//! What applying an agreement file would change: create, update (field by field) or,
//! with pruning, revoke. Applying the same file twice plans nothing the second time.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::Agreement;

/// One change of a plan.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A new agreement.
    Create(Agreement),
    /// A changed agreement.
    Update {
        /// As stored.
        before: Box<Agreement>,
        /// As in the file.
        after: Box<Agreement>,
    },
    /// A stored agreement the file no longer lists (only with pruning).
    Revoke(Agreement),
}

impl Step {
    /// The agreement id.
    pub fn id(&self) -> &str {
        match self {
            Step::Create(a) | Step::Revoke(a) => &a.id,
            Step::Update { after, .. } => &after.id,
        }
    }
}

/// The changes that bring the store to a file's agreements.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Changes, in file order then revocations by id.
    pub steps: Vec<Step>,
    /// Ids already as the file says.
    pub unchanged: Vec<String>,
}

impl Plan {
    /// Compare `desired` (the file) with `current` (the store). With `prune`, stored
    /// agreements of the file's providers that the file does not list are revoked;
    /// other providers' agreements are never touched.
    pub fn new(current: &[Agreement], desired: &[Agreement], prune: bool) -> Self {
        let stored: BTreeMap<&str, &Agreement> =
            current.iter().map(|a| (a.id.as_str(), a)).collect();
        let mut plan = Plan::default();
        for a in desired {
            match stored.get(a.id.as_str()) {
                None => plan.steps.push(Step::Create(a.clone())),
                Some(b) if *b == a => plan.unchanged.push(a.id.clone()),
                Some(b) => plan.steps.push(Step::Update {
                    before: Box::new((*b).clone()),
                    after: Box::new(a.clone()),
                }),
            }
        }
        if prune {
            let listed: BTreeSet<&str> = desired.iter().map(|a| a.id.as_str()).collect();
            let providers: BTreeSet<&str> = desired.iter().map(|a| a.provider.as_str()).collect();
            for a in current {
                if !listed.contains(a.id.as_str()) && providers.contains(a.provider.as_str()) {
                    plan.steps.push(Step::Revoke(a.clone()));
                }
            }
        }
        plan
    }

    /// Whether nothing would change.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The plan as a diff: `+` create, `~` update with each changed key, `-` revoke.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for step in &self.steps {
            match step {
                Step::Create(a) => out.push_str(&format!(
                    "+ {}  ({} {} → {}, {} field(s), matters {})\n",
                    a.id,
                    a.effect.as_str(),
                    a.dataset,
                    a.consumer,
                    a.fields.len(),
                    a.matters.join(", ")
                )),
                Step::Update { before, after } => {
                    out.push_str(&format!("~ {}\n", after.id));
                    for line in diff(before, after) {
                        out.push_str(&format!("    {line}\n"));
                    }
                }
                Step::Revoke(a) => out.push_str(&format!(
                    "- {}  ({} {} → {})\n",
                    a.id,
                    a.effect.as_str(),
                    a.dataset,
                    a.consumer
                )),
            }
        }
        out
    }
}

/// Key-by-key differences, `fields.<name>` for granted fields.
pub fn diff(before: &Agreement, after: &Agreement) -> Vec<String> {
    let flat = |a: &Agreement| -> BTreeMap<String, Value> {
        let mut m = BTreeMap::new();
        if let Ok(Value::Object(o)) = serde_json::to_value(a) {
            for (k, v) in o {
                match v {
                    Value::Object(fields) if k == "fields" => {
                        for (f, rule) in fields {
                            m.insert(format!("fields.{f}"), rule);
                        }
                    }
                    v => {
                        m.insert(k, v);
                    }
                }
            }
        }
        m
    };
    let (b, a) = (flat(before), flat(after));
    let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    let show = |v: Option<&Value>| v.map_or_else(|| "(none)".to_owned(), Value::to_string);
    keys.into_iter()
        .filter(|k| b.get(*k) != a.get(*k))
        .map(|k| format!("{k}: {} → {}", show(b.get(k)), show(a.get(k))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agreement::tests::sample;
    use crate::FieldRule;

    #[test]
    fn plans_create_update_unchanged_and_prune() {
        let a = sample();
        let mut b = a.clone();
        b.matters.push("pension-qualification".into());
        b.fields.insert("ethnicity".into(), FieldRule::Full);
        b.fields.remove("household_address");
        let mut other = a.clone();
        other.id = "old-one".into();
        let mut foreign = a.clone();
        foreign.id = "foreign".into();
        foreign.provider = "sz-amr".into();

        let plan = Plan::new(&[], std::slice::from_ref(&a), false);
        assert!(matches!(plan.steps[..], [Step::Create(_)]));
        let plan = Plan::new(std::slice::from_ref(&a), std::slice::from_ref(&a), true);
        assert!(plan.is_empty());
        assert_eq!(plan.unchanged, std::slice::from_ref(&a.id));

        let current = [a.clone(), other, foreign];
        let plan = Plan::new(&current, std::slice::from_ref(&b), true);
        let text = plan.render();
        assert!(text.contains("~ hrss-population-2026"), "{text}");
        assert!(
            text.contains("fields.ethnicity: (none) → \"full\""),
            "{text}"
        );
        assert!(
            text.contains("fields.household_address: \"masked\" → (none)"),
            "{text}"
        );
        assert!(text.contains("matters: [\"social-insurance-enrollment\"] → [\"social-insurance-enrollment\",\"pension-qualification\"]"), "{text}");
        assert!(text.contains("- old-one"), "{text}");
        assert!(
            !text.contains("foreign"),
            "another provider's agreement is never pruned: {text}"
        );
        assert!(!Plan::new(&current, &[b], false)
            .render()
            .contains("old-one"));
    }
}
