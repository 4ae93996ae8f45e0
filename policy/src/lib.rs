//! Sharing agreements and the decisions made from them.
//!
//! An [`Agreement`] is what a provider department grants a consumer: a dataset, the
//! matters it may be used for, which fields (in full or masked), for how long, in
//! which hours, and how much. The [`Authorizer`] answers "may this consumer read
//! these fields of this dataset for this matter, now?" — default deny, an explicit
//! deny overriding any allow. Each candidate agreement's conditions (matter,
//! validity, day, hours) are evaluated once, by [`Agreement::unmet`]; casbin gives
//! the allow/deny verdict from which of them hold, the role graph and the effect
//! rule, over just the candidates an index by (consumer, dataset) picks, so a
//! decision costs the same at 100 agreements as at 100,000. An [`Explanation`] is
//! read off the same evaluation as the decision it explains. The [`Meter`] charges daily
//! quotas and operator rates; the [`AgreementStore`] keeps agreements versioned in
//! SQLite or PostgreSQL, and [`Authorizer::catch_up`] follows its changes. An
//! [`AccessRequest`] is how an agreement comes about: filed by the consumer, approved
//! (possibly narrowed) or refused by the provider within [`WorkingDays`].
//!
//! This crate knows nothing of HTTP: the gateway asks, the authorizer answers.

mod agreement;
mod authorizer;
mod catalogue;
mod decision;
mod engine;
mod error;
mod explain;
mod file;
mod limits;
mod mask;
mod plan;
mod request;
mod request_state;
mod schedule;
mod store;
mod sync;
mod workdays;

pub use agreement::{Agreement, Condition, Effect, FieldRule};
pub use authorizer::{Authorizer, Change, Settings};
pub use catalogue::{Catalogue, CatalogueDataset, SharingClass, DEFAULT_MATTERS};
pub use decision::{Decision, Denial, FieldGrant, Grant, Limits, Question};
pub use error::{PolicyError, Refusal, RequestRefusal};
pub use explain::{CandidateCheck, Explanation, LimitUsage};
pub use file::AgreementFile;
pub use limits::Meter;
pub use mask::mask_value;
pub use plan::{diff, Plan, Step};
pub use request::{
    AccessRequest, Narrowing, RequestEvent, RequestState, RequestTerms,
    MAX_TEXT as MAX_REQUEST_TEXT,
};
pub use schedule::{Clock, Days, Period, Rate, ServiceHours, TimeZone};
pub use store::{
    Action, AgreementStore, Applied, Edit, HistoryEntry, RequestFilter, RoleBinding,
    StoredAgreement,
};
pub use workdays::WorkingDays;
