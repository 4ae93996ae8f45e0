//! What agreements may name: the datasets and their fields, who provides each, and
//! the matters (purposes) the gateway knows. An agreement naming anything else is
//! refused, so that a typo never becomes a grant nobody can use — or a deny that
//! never matches.

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

/// A dataset agreements may name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogueDataset {
    /// Its fields.
    pub fields: BTreeSet<String>,
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

    /// Add a dataset with its fields and, when known, its provider.
    pub fn with_dataset<I, S>(mut self, name: &str, fields: I, provider: Option<&str>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.datasets.insert(
            name.to_owned(),
            CatalogueDataset {
                fields: fields.into_iter().map(Into::into).collect(),
                provider: provider.map(str::to_owned),
            },
        );
        self
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

    /// Refuse an agreement naming an unknown dataset, field or matter, or a provider
    /// other than the dataset's; the error names the field.
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
        if let Some(field) = a.fields.keys().find(|f| !dataset.fields.contains(*f)) {
            return Err(invalid(
                format!("fields.{field}"),
                format!("{} has no field {field:?}", a.dataset),
            ));
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
}
