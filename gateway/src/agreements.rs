//! Changing agreements and role bindings: the one path the admin API, `tongban
//! policy …` and the demo all take — check against the model and the catalogue,
//! store (versioned, with before and after), and record the change in the audit
//! chain.

use serde_json::{json, Value};

use audit::{AuditEntry, AuditError, AuditLog, Decision, Receipt};
use policy::{
    Action, Agreement, AgreementFile, AgreementStore, Applied, Catalogue, Edit, Plan, PolicyError,
    Refusal, Step,
};

/// Why a change could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// The agreements are bad (file, line, field) or refused.
    #[error("{0}")]
    Policy(#[from] PolicyError),
    /// The change was made but its audit record could not be written.
    #[error("version {version} is stored but its audit record could not be written: {source}")]
    Audit {
        /// The change's version.
        version: i64,
        /// Why.
        source: AuditError,
    },
}

impl ManageError {
    /// Whether the input was at fault (exit 2) rather than the operation (exit 1).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            ManageError::Policy(
                PolicyError::Parse { .. }
                    | PolicyError::Invalid { .. }
                    | PolicyError::Read { .. }
                    | PolicyError::BadBinding { .. }
                    | PolicyError::Refused(_)
            )
        )
    }
}

/// Where changes made outside HTTP are audited. (Changes through the admin API are
/// audited by the audit layer, like every request.)
pub enum ChangeAudit<'a> {
    /// Append a record per change to the chain of this log, naming `node`.
    Chain {
        /// The log.
        log: &'a AuditLog,
        /// Node name for the records.
        node: &'a str,
    },
    /// Not appended to any chain: for a dry run, which changes nothing, and for
    /// tests that seed a store directly. Every real change has a chain to go to.
    NotAudited,
}

/// What a change record says besides who made it.
pub(crate) struct ChangeRecord<'a> {
    pub(crate) command: &'a str,
    pub(crate) version: i64,
    pub(crate) agreement: Option<&'a str>,
    pub(crate) dataset: Option<String>,
    pub(crate) detail: Value,
}

impl ChangeAudit<'_> {
    pub(crate) async fn record(
        &self,
        actor: &str,
        change: ChangeRecord<'_>,
    ) -> Result<Option<Receipt>, ManageError> {
        let ChangeAudit::Chain { log, node } = self else {
            return Ok(None);
        };
        let now = chrono::Utc::now();
        let entry = AuditEntry {
            time: now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            request_id: uuid::Uuid::now_v7().to_string(),
            node: (*node).to_owned(),
            consumer: Some(format!("cli:{actor}")),
            method: "CLI".into(),
            path: change.command.to_owned(),
            dataset: change.dataset,
            agreement: change.agreement.map(str::to_owned),
            decision: Decision::Allow,
            status: 200,
            detail: Some(change.detail),
            ..AuditEntry::default()
        };
        log.append(entry)
            .await
            .map(Some)
            .map_err(|source| ManageError::Audit {
                version: change.version,
                source,
            })
    }

    async fn record_agreement(
        &self,
        id: &str,
        applied: &Applied,
        actor: &str,
        command: &str,
    ) -> Result<Option<Receipt>, ManageError> {
        let change = ChangeRecord {
            command,
            version: applied.version,
            agreement: Some(id),
            dataset: applied
                .after
                .as_ref()
                .or(applied.before.as_ref())
                .map(|a| a.dataset.clone()),
            detail: change_detail(id, applied),
        };
        self.record(actor, change).await
    }
}

/// The audit `detail` of an agreement change: action, version, before and after.
pub fn change_detail(id: &str, applied: &Applied) -> Value {
    json!({"policy_change": {
        "action": applied.action.as_str(),
        "agreement": id,
        "version": applied.version,
        "before": applied.before,
        "after": applied.after,
    }})
}

/// The audit `detail` of a role change: `kind: role`, action (`bind` or `unbind`),
/// the binding and the version.
pub fn role_detail(identity: &str, role: &str, action: Action, version: i64) -> Value {
    json!({"policy_change": {
        "kind": "role",
        "action": action.as_str(),
        "identity": identity,
        "role": role,
        "version": version,
    }})
}

/// A role binding changed.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleChange {
    /// `bind` or `unbind`.
    pub action: Action,
    /// The store version it made.
    pub version: i64,
    /// Its audit record, when it went to a chain.
    pub receipt: Option<Receipt>,
}

/// Bind `role` to `identity` as `actor` and audit it; `None` when the identity held
/// the role already (nothing changed, nothing recorded).
pub async fn bind_role(
    store: &AgreementStore,
    identity: &str,
    role: &str,
    actor: &str,
    audit: &ChangeAudit<'_>,
) -> Result<Option<RoleChange>, ManageError> {
    let Some(version) = store.bind_role_by(identity, role, actor).await? else {
        return Ok(None);
    };
    role_recorded(identity, role, Action::Bind, version, actor, audit)
        .await
        .map(Some)
}

/// Take `role` away from `identity` as `actor` and audit it; refused (not found)
/// when the identity does not hold it.
pub async fn unbind_role(
    store: &AgreementStore,
    identity: &str,
    role: &str,
    actor: &str,
    audit: &ChangeAudit<'_>,
) -> Result<RoleChange, ManageError> {
    let Some(version) = store.unbind_role_by(identity, role, actor).await? else {
        return Err(PolicyError::Refused(Refusal::NoBinding {
            identity: identity.to_owned(),
            role: role.to_owned(),
        })
        .into());
    };
    role_recorded(identity, role, Action::Unbind, version, actor, audit).await
}

async fn role_recorded(
    identity: &str,
    role: &str,
    action: Action,
    version: i64,
    actor: &str,
    audit: &ChangeAudit<'_>,
) -> Result<RoleChange, ManageError> {
    let command = format!("tongban policy {}", action.as_str());
    let change = ChangeRecord {
        command: &command,
        version,
        agreement: None,
        dataset: None,
        detail: role_detail(identity, role, action, version),
    };
    let receipt = audit.record(actor, change).await?;
    Ok(RoleChange {
        action,
        version,
        receipt,
    })
}

/// Check an agreement against the model's rules and the catalogue.
pub fn check(a: &Agreement, catalogue: &Catalogue) -> Result<(), PolicyError> {
    a.validate()?;
    catalogue.check(a)
}

/// A dept-admin granting: its identity and department.
#[derive(Debug, Clone, Copy)]
pub struct Grantor<'a> {
    /// Its identity URI (or `system:<rule>` for a rule acting for the provider).
    pub uri: &'a str,
    /// Its department code.
    pub department: &'a str,
}

impl Grantor<'_> {
    /// A dept-admin grants and revokes its own department's datasets only.
    pub fn may_grant(
        &self,
        catalogue: &Catalogue,
        provider: &str,
        dataset: &str,
    ) -> Result<(), Refusal> {
        let owner = catalogue.provider_of(dataset).unwrap_or(provider);
        if owner != self.department || provider != self.department {
            return Err(Refusal::NotPermitted(format!(
                "{} is a dept-admin of {}; {dataset} is provided by {owner}, so only {owner}'s dept-admins may grant or revoke it",
                self.uri, self.department
            )));
        }
        Ok(())
    }
}

/// What every grant by a dept-admin (through the admin API, or by approving an
/// access request) passes: the approver filled in when left out, permission, then
/// the model's rules and the catalogue. Permission first: another department learns
/// nothing about why its agreement would have been bad.
pub fn checked_grant(
    catalogue: &Catalogue,
    who: &Grantor<'_>,
    mut a: Agreement,
) -> Result<Agreement, PolicyError> {
    if a.approver.trim().is_empty() {
        a.approver = who.uri.to_owned();
    }
    who.may_grant(catalogue, &a.provider, &a.dataset)
        .map_err(PolicyError::Refused)?;
    check(&a, catalogue)?;
    Ok(a)
}

/// The guard of a dept-admin's change, given the agreement as stored: another
/// department's agreement is not there for it — revoking it is 404 as for a missing
/// id; its id is taken, so writing over it is 409 as for any taken id. Neither says
/// whose it is.
pub fn owner_guard(
    department: String,
    revoke: bool,
) -> impl FnOnce(Option<&Agreement>) -> Result<(), Refusal> {
    move |before: Option<&Agreement>| match before {
        Some(b) if b.provider != department && revoke => Err(Refusal::Missing(b.id.clone())),
        Some(b) if b.provider != department => Err(Refusal::Exists(b.id.clone())),
        _ => Ok(()),
    }
}

/// What applying a file did.
#[derive(Debug)]
pub struct ApplyReport {
    /// The plan (what differed).
    pub plan: Plan,
    /// The changes made (empty on a dry run).
    pub applied: Vec<Applied>,
    /// Their audit records.
    pub receipts: Vec<Receipt>,
}

/// Bring the store to `file`'s agreements as `actor`: check every agreement first
/// (nothing is changed if any is bad), plan, and unless `dry_run` make each change
/// and audit it. Idempotent: a second run plans nothing.
pub async fn apply_file(
    store: &AgreementStore,
    catalogue: &Catalogue,
    file: &AgreementFile,
    prune: bool,
    dry_run: bool,
    actor: &str,
    audit: &ChangeAudit<'_>,
) -> Result<ApplyReport, ManageError> {
    file.check(catalogue)?;
    let current = store.agreements().await?;
    let plan = Plan::new(&current, &file.agreements, prune);
    let mut report = ApplyReport {
        plan,
        applied: Vec::new(),
        receipts: Vec::new(),
    };
    if dry_run {
        return Ok(report);
    }
    for step in &report.plan.steps {
        let edit = match step {
            Step::Create(a) => Edit::Create(a.clone()),
            Step::Update { after, .. } => Edit::Put((**after).clone()),
            Step::Revoke(a) => Edit::Revoke(a.id.clone()),
        };
        // Someone may have changed the store since the plan: a create that now
        // exists, or a revoke of something gone, is refused and stops the run.
        let Some(applied) = store.edit(edit, actor, |_| Ok(())).await? else {
            continue;
        };
        if let Some(r) = audit
            .record_agreement(step.id(), &applied, actor, "tongban policy apply")
            .await?
        {
            report.receipts.push(r);
        }
        report.applied.push(applied);
    }
    Ok(report)
}

/// Revoke one agreement as `actor` and audit it.
pub async fn revoke(
    store: &AgreementStore,
    id: &str,
    actor: &str,
    audit: &ChangeAudit<'_>,
) -> Result<(Applied, Option<Receipt>), ManageError> {
    let applied = store
        .edit(Edit::Revoke(id.to_owned()), actor, |_| Ok(()))
        .await?
        .ok_or_else(|| PolicyError::Refused(policy::Refusal::Missing(id.to_owned())))?;
    let receipt = audit
        .record_agreement(id, &applied, actor, "tongban policy revoke")
        .await?;
    Ok((applied, receipt))
}
