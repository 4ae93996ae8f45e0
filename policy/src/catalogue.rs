//! What agreements may name: the datasets and their fields, who provides each, and
//! the matters (purposes) the gateway knows. An agreement naming anything else is
//! refused, so that a typo never becomes a grant nobody can use — or a deny that
//! never matches. Each field has a [`SharingClass`]; a `closed` one is never shared,
//! so no agreement may name it.

use std::collections::{BTreeMap, BTreeSet};

use crate::{Agreement, PolicyError};

/// Matters known when the config names none: common service matters of the
/// counters that use the shared datasets.
pub const DEFAULT_MATTERS: &[&str] = &[
    "business-registration",
    "company-opening",
    "disability-certification",
    "employer-registration",
    "household-transfer",
    "housing-fund-withdrawal",
    "marriage-registration",
    "medical-insurance-reimbursement",
    "minimum-living-allowance",
    "newborn-registration",
    "pension-qualification",
    "real-estate-registration",
    "school-enrollment",
    "social-insurance-enrollment",
    "tax-registration",
];

/// How a field may be shared (政务信息资源共享属性): without conditions, on
/// conditions, or not at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SharingClass {
    /// Shareable without conditions (无条件共享).
    Open,
    /// Shareable on conditions (有条件共享): what an agreement sets.
    Conditional,
    /// Not shareable (不予共享): no agreement may name it.
    Closed,
}

/// A dataset agreements may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueDataset {
    /// Its fields and the sharing class of each.
    pub fields: BTreeMap<String, SharingClass>,
    /// The department that provides it, when this gateway serves it.
    pub provider: Option<String>,
}

/// The datasets, fields, providers and matters agreements are checked against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalogue {
    datasets: BTreeMap<String, CatalogueDataset>,
    matters: BTreeSet<String>,
}

impl Catalogue {
    /// A catalogue of `matters` and no datasets yet.
    pub fn new<I, S>(matters: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            datasets: BTreeMap::new(),
            matters: matters.into_iter().map(Into::into).collect(),
        }
    }

    /// Add a dataset with its fields, every one [`SharingClass::Conditional`], and,
    /// when known, its provider.
    pub fn with_dataset<I, S>(self, name: &str, fields: I, provider: Option<&str>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let fields = fields.into_iter().map(|f| (f, SharingClass::Conditional));
        self.with_classified_dataset(name, fields, provider)
    }

    /// Add a dataset with its fields and their sharing classes and, when known, its
    /// provider.
    pub fn with_classified_dataset<I, S>(
        mut self,
        name: &str,
        fields: I,
        provider: Option<&str>,
    ) -> Self
    where
        I: IntoIterator<Item = (S, SharingClass)>,
        S: Into<String>,
    {
        self.datasets.insert(
            name.to_owned(),
            CatalogueDataset {
                fields: fields.into_iter().map(|(f, c)| (f.into(), c)).collect(),
                provider: provider.map(str::to_owned),
            },
        );
        self
    }

    /// The dataset called `name`, if agreements may name it.
    pub fn dataset(&self, name: &str) -> Option<&CatalogueDataset> {
        self.datasets.get(name)
    }

    /// The sharing class of `field` of `dataset`, when both are known.
    pub fn class_of(&self, dataset: &str, field: &str) -> Option<SharingClass> {
        self.datasets.get(dataset)?.fields.get(field).copied()
    }

    /// Every dataset with its fields and provider, by name.
    pub fn datasets(&self) -> impl Iterator<Item = (&str, &CatalogueDataset)> {
        self.datasets.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The department providing `dataset`, when known.
    pub fn provider_of(&self, dataset: &str) -> Option<&str> {
        self.datasets.get(dataset)?.provider.as_deref()
    }

    /// The known matters, sorted.
    pub fn matters(&self) -> impl Iterator<Item = &str> {
        self.matters.iter().map(String::as_str)
    }

    /// Whether `matter` is known.
    pub fn knows_matter(&self, matter: &str) -> bool {
        self.matters.contains(matter)
    }

    /// Refuse an agreement naming an unknown dataset, field or matter, a `closed`
    /// field, or a provider other than the dataset's; the error names the field.
    pub fn check(&self, a: &Agreement) -> Result<(), PolicyError> {
        let invalid = |field: String, message: String| PolicyError::Invalid {
            id: a.id.clone(),
            field,
            message,
        };
        let Some(dataset) = self.datasets.get(&a.dataset) else {
            let known: Vec<&str> = self.datasets.keys().map(String::as_str).collect();
            return Err(invalid(
                "dataset".into(),
                format!(
                    "unknown dataset {:?}; known datasets: {}",
                    a.dataset,
                    known.join(", ")
                ),
            ));
        };
        if let Some(provider) = &dataset.provider {
            if provider != &a.provider {
                return Err(invalid(
                    "provider".into(),
                    format!(
                        "{} is provided by {provider}, not {}",
                        a.dataset, a.provider
                    ),
                ));
            }
        }
        for field in a.fields.keys() {
            match dataset.fields.get(field) {
                None => {
                    return Err(invalid(
                        format!("fields.{field}"),
                        format!("{} has no field {field:?}", a.dataset),
                    ))
                }
                Some(SharingClass::Closed) => {
                    return Err(invalid(
                        format!("fields.{field}"),
                        format!(
                            "field {field:?} of dataset {} is closed (never shared); no \
                             agreement may name it",
                            a.dataset
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        if let Some(m) = a.matters.iter().find(|m| !self.matters.contains(*m)) {
            return Err(invalid(
                "matters".into(),
                format!(
                    "unknown matter {m:?}; the gateway's [policy] matters catalogue lists the known ones"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::agreement::tests::sample;

    fn catalogue() -> Catalogue {
        Catalogue::new(DEFAULT_MATTERS.iter().copied()).with_dataset(
            "population",
            ["name", "household_address", "ethnicity"],
            Some("sz-psb"),
        )
    }

    fn field(a: &Agreement) -> String {
        match catalogue().check(a) {
            Err(PolicyError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_names_are_refused_by_field() {
        assert!(catalogue().check(&sample()).is_ok());
        let mut a = sample();
        a.dataset = "people".into();
        assert_eq!(field(&a), "dataset");
        let mut a = sample();
        a.fields.insert("shoe_size".into(), crate::FieldRule::Full);
        assert_eq!(field(&a), "fields.shoe_size");
        let mut a = sample();
        a.matters.push("marketing".into());
        assert_eq!(field(&a), "matters");
        let mut a = sample();
        a.provider = "sz-amr".into();
        assert_eq!(field(&a), "provider");
    }

    #[test]
    fn a_closed_field_is_refused_naming_agreement_dataset_and_field() {
        use SharingClass::{Closed, Conditional, Open};
        let cat = Catalogue::new(DEFAULT_MATTERS.iter().copied()).with_classified_dataset(
            "population",
            [
                ("name", Open),
                ("household_address", Conditional),
                ("ethnicity", Closed),
            ],
            Some("sz-psb"),
        );
        assert!(cat.check(&sample()).is_ok());
        assert_eq!(cat.class_of("population", "ethnicity"), Some(Closed));
        assert_eq!(cat.class_of("population", "shoe_size"), None);
        let mut a = sample();
        a.fields
            .insert("ethnicity".into(), crate::FieldRule::Masked);
        let e = cat.check(&a).unwrap_err();
        assert!(matches!(&e, PolicyError::Invalid { field, .. } if field == "fields.ethnicity"));
        let msg = e.to_string();
        for part in [
            "hrss-population-2026",
            "population",
            "\"ethnicity\"",
            "closed",
        ] {
            assert!(msg.contains(part), "{part} in {msg}");
        }
        // A deny agreement names no closed field either.
        a.effect = crate::Effect::Deny;
        assert!(cat.check(&a).is_err());
    }
}
