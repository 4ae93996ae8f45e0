//! Where an access request stands: a type of its own, below both the requests and
//! the errors that name a state.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Filed, waiting for the provider's review.
    Submitted,
    /// Approved: its agreement exists.
    Approved,
    /// Refused by the provider, with a reason.
    Refused,
    /// Withdrawn by the requesting department before review.
    Withdrawn,
    /// Never reviewed, and the validity it asked for has ended.
    Expired,
}

impl RequestState {
    /// Every state, in lifecycle order.
    pub const ALL: [RequestState; 5] = [
        RequestState::Submitted,
        RequestState::Approved,
        RequestState::Refused,
        RequestState::Withdrawn,
        RequestState::Expired,
    ];

    /// `submitted`, `approved`, `refused`, `withdrawn`, `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Submitted => "submitted",
            RequestState::Approved => "approved",
            RequestState::Refused => "refused",
            RequestState::Withdrawn => "withdrawn",
            RequestState::Expired => "expired",
        }
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RequestState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!("{s:?} is not a request state (submitted, approved, refused, withdrawn, expired)")
            })
    }
}
