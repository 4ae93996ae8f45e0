//! Sharing agreements and the decisions made from them.
//!
//! An [`Agreement`] is what a provider department grants a consumer: a dataset, the
//! matters it may be used for, which fields (in full or masked) and for how long. The
//! [`Authorizer`] answers "may this consumer read these fields of this dataset for this
//! matter, now?" — default deny, an explicit deny overriding any allow. The allow/deny
//! verdict is casbin's; the agreement index picks the agreement and the fields.
//!
//! This crate knows nothing of HTTP: the gateway asks, the authorizer answers.

mod agreement;
mod authorizer;
mod error;
mod mask;
mod store;

pub use agreement::{Agreement, AgreementFile, Effect, FieldRule};
pub use authorizer::{Authorizer, Decision, Denial, FieldGrant, Grant, Question};
pub use error::PolicyError;
pub use mask::mask_value;
pub use store::{AgreementStore, RoleBinding};
