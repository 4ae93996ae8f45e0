//! The `[requests]` part of the config: how long a provider has to review an access
//! request (in working days, with the holiday calendar), and which datasets approve
//! requests for only `open` fields at once.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_inline_default::serde_inline_default;

use super::schema::Spanned;
use super::{Checker, ConfigError, DatasetConfig};

/// Access-request settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestsConfig {
    /// Working days a provider has to review a request; later ones are overdue.
    pub review_working_days: u32,
    /// Public holidays falling on weekdays (local dates).
    pub holidays: BTreeSet<NaiveDate>,
    /// Weekend days worked in their place (local dates).
    pub working_weekends: BTreeSet<NaiveDate>,
    /// Datasets whose provider approves a request for only `open` fields at once.
    pub auto_approve_open: BTreeSet<String>,
}

impl Default for RequestsConfig {
    fn default() -> Self {
        Self {
            review_working_days: 10,
            holidays: BTreeSet::new(),
            working_weekends: BTreeSet::new(),
            auto_approve_open: BTreeSet::new(),
        }
    }
}

/// `[requests]` as written.
#[serde_inline_default]
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRequests {
    /// Working days (Monday to Friday, less `holidays`, plus `working_weekends`, in
    /// the `[policy] time_zone`) a provider has to review an access request, counted
    /// from the day after it is filed; a request still waiting after the last of
    /// them is flagged overdue (1-365).
    #[serde_inline_default(Spanned::default_value(10))]
    review_working_days: Spanned<u32>,
    /// Public holidays that fall on weekdays, `YYYY-MM-DD`: not working days.
    #[serde_inline_default(Spanned::default_value(Vec::new()))]
    holidays: Spanned<Vec<String>>,
    /// Saturdays and Sundays worked in place of a holiday, `YYYY-MM-DD`: working days.
    #[serde_inline_default(Spanned::default_value(Vec::new()))]
    working_weekends: Spanned<Vec<String>>,
    /// Datasets (of `[[datasets]]`) whose provider approves, at once and without
    /// review, a request that asks only for fields of the `open` sharing class; the
    /// approver is recorded as `system:auto-approve-open`.
    #[serde_inline_default(Spanned::default_value(Vec::new()))]
    auto_approve_open: Spanned<Vec<String>>,
}

super::schema::default_from_serde!(RawRequests);

impl Checker<'_> {
    pub(super) fn requests(
        &self,
        raw: &RawRequests,
        datasets: &[DatasetConfig],
    ) -> Result<RequestsConfig, ConfigError> {
        let days = &raw.review_working_days;
        if !(1..=365).contains(days.get_ref()) {
            return Err(self.err(
                days.span(),
                "requests.review_working_days: must be 1-365".into(),
            ));
        }
        let dates = |key: &str, list: &Spanned<Vec<String>>| {
            list.get_ref()
                .iter()
                .map(|d| {
                    d.parse::<NaiveDate>().map_err(|e| {
                        self.err(
                            list.span(),
                            format!("requests.{key}: {d:?} is not a date YYYY-MM-DD: {e}"),
                        )
                    })
                })
                .collect::<Result<BTreeSet<_>, _>>()
        };
        let holidays = dates("holidays", &raw.holidays)?;
        let working_weekends = dates("working_weekends", &raw.working_weekends)?;
        let auto = &raw.auto_approve_open;
        if let Some(d) = auto
            .get_ref()
            .iter()
            .find(|d| !datasets.iter().any(|c| c.dataset.as_str() == d.as_str()))
        {
            return Err(self.err(
                auto.span(),
                format!("requests.auto_approve_open: {d:?} is not a dataset of [[datasets]]"),
            ));
        }
        Ok(RequestsConfig {
            review_working_days: *days.get_ref(),
            holidays,
            working_weekends,
            auto_approve_open: auto.get_ref().iter().cloned().collect(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::config::Config;

    const BASE: &str = crate::config::test_files::head!();

    fn parse(text: &str) -> Result<Config, String> {
        let d = crate::config::test_files::dir_with(&[]);
        crate::config::test_files::parse_in(&d, &format!("{BASE}\n{text}"))
    }

    #[test]
    fn defaults_and_settings() {
        let c = parse("").unwrap();
        assert_eq!(c.requests.review_working_days, 10);
        assert!(c.requests.holidays.is_empty() && c.requests.auto_approve_open.is_empty());
        let c = parse(
            "[requests]\nreview_working_days = 5\nholidays = [\"2026-10-01\"]\nworking_weekends = [\"2026-09-27\"]\n",
        )
        .unwrap();
        assert_eq!(c.requests.review_working_days, 5);
        assert_eq!(c.requests.holidays.len(), 1);
        assert_eq!(c.requests.working_weekends.len(), 1);
    }

    #[test]
    fn errors_name_line_and_key() {
        let cases = [
            (
                "[requests]\nreview_working_days = 0\n",
                ":13: requests.review_working_days",
            ),
            (
                "[requests]\nholidays = [\"2026-13-01\"]\n",
                ":13: requests.holidays: \"2026-13-01\"",
            ),
            (
                "[requests]\nauto_approve_open = [\"shoes\"]\n",
                ":13: requests.auto_approve_open: \"shoes\"",
            ),
            ("[requests]\nspeed = 1\n", ":13: unknown field `speed`"),
        ];
        for (text, want) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "want {want:?} in {err}");
        }
    }
}
