//! `tongban policy …`: sharing agreements from TOML files, against the state database
//! of `--config`. Running gateways pick changes up within their sync interval.
//!
//! The CLI is the operator's tool: whoever can read the config can change any
//! department's agreements and any identity's roles (department admins use the
//! admin API, which limits each to its own datasets and identities). Every change
//! is versioned in the policy history under `--actor` and appended to the audit
//! chain.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use audit::signing::Signer;
use audit::AuditLog;
use clap::{Args, Subcommand, ValueEnum};
use policy::{Agreement, AgreementFile, HistoryEntry, Question};
use serde_json::{json, Value};

use super::Failure;
use crate::agreements::{self, ChangeAudit, ManageError};
use crate::config::Config;
use crate::policy_sync::PolicyService;

/// `tongban policy` arguments.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(flatten)]
    pub config: super::ConfigFile,
    /// Which command.
    #[command(subcommand)]
    pub command: PolicyCommand,
}

/// Output format of the reading commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people.
    Text,
    /// For scripts.
    Json,
    /// An agreement file (`list` only): edit it and `apply` it back.
    Toml,
}

/// `tongban policy …`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Make the stored agreements match a file: create and update (and with
    /// --prune revoke); prints the diff. Idempotent.
    Apply {
        /// The agreement file (`[[agreement]]` tables).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Print what would change and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Also revoke stored agreements of the file's providers that it does not list.
        #[arg(long)]
        prune: bool,
        /// Who is making the change, for the history and the audit log.
        #[arg(long, env = "USER", default_value = "operator")]
        actor: String,
    },
    /// List the stored agreements.
    List {
        /// Only this dataset.
        #[arg(long)]
        dataset: Option<String>,
        /// Only this consumer (identity URI or role:<name>).
        #[arg(long)]
        consumer: Option<String>,
        /// text, json or toml.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Say whether a lookup would be allowed, by which agreement, or which condition
    /// fails — the same decision a lookup gets, quotas included.
    Explain {
        /// Consumer identity, e.g. urn:tongban:sz-hrss:counter-01.
        #[arg(long)]
        consumer: String,
        /// Dataset.
        #[arg(long)]
        dataset: String,
        /// Matter.
        #[arg(long)]
        matter: String,
        /// A field asked for (repeatable; none = every field granted).
        #[arg(long = "field")]
        fields: Vec<String>,
        /// The moment to decide for (RFC 3339; default now).
        #[arg(long)]
        at: Option<String>,
        /// The operator, to show its rate-limit use.
        #[arg(long)]
        operator: Option<String>,
        /// text or json.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Every version of every agreement (or of one): who, when, before and after.
    History {
        /// Only this agreement (or identity, for role bindings).
        #[arg(long)]
        id: Option<String>,
        /// Most entries, newest first.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// text or json.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// List role bindings: which identities hold which roles.
    Roles {
        /// Only this identity.
        #[arg(long)]
        identity: Option<String>,
        /// Only this role.
        #[arg(long)]
        role: Option<String>,
        /// text or json.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Bind a role to an identity (`counter`, `dept-admin`, `auditor`, or a name
    /// agreements grant to as role:<name>). Idempotent.
    Bind {
        /// Identity, e.g. urn:tongban:sz-hrss:counter-02.
        identity: String,
        /// Role name.
        role: String,
        /// Who is making the change.
        #[arg(long, env = "USER", default_value = "operator")]
        actor: String,
    },
    /// Take a role away from an identity.
    Unbind {
        /// Identity.
        identity: String,
        /// Role name.
        role: String,
        /// Who is making the change.
        #[arg(long, env = "USER", default_value = "operator")]
        actor: String,
    },
    /// Revoke one agreement.
    Revoke {
        /// Agreement id.
        id: String,
        /// Who is revoking it.
        #[arg(long, env = "USER", default_value = "operator")]
        actor: String,
    },
}

/// Run a policy command, printing its result.
pub async fn run(args: PolicyArgs) -> Result<(), Failure> {
    let text = output(args).await?;
    print!("{text}");
    Ok(())
}

/// Run a policy command and return what it prints (for tests and scripts).
pub async fn output(args: PolicyArgs) -> Result<String, Failure> {
    let config = args.config.load()?;
    match args.command {
        PolicyCommand::Apply {
            file,
            dry_run,
            prune,
            actor,
        } => apply(&config, &file, dry_run, prune, &actor).await,
        PolicyCommand::List {
            dataset,
            consumer,
            format,
        } => list(&config, dataset.as_deref(), consumer.as_deref(), format).await,
        PolicyCommand::Explain {
            consumer,
            dataset,
            matter,
            fields,
            at,
            operator,
            format,
        } => {
            let asked = Asked {
                consumer,
                dataset,
                matter,
                fields,
                at,
                operator,
            };
            explain(&config, &asked, format).await
        }
        PolicyCommand::History { id, limit, format } => {
            history(&config, id.as_deref(), limit, format).await
        }
        PolicyCommand::Revoke { id, actor } => revoke(&config, &id, &actor).await,
        PolicyCommand::Roles {
            identity,
            role,
            format,
        } => roles(&config, identity.as_deref(), role.as_deref(), format).await,
        PolicyCommand::Bind {
            identity,
            role,
            actor,
        } => bind(&config, &identity, &role, &actor, true).await,
        PolicyCommand::Unbind {
            identity,
            role,
            actor,
        } => bind(&config, &identity, &role, &actor, false).await,
    }
}

async fn service(config: &Config) -> Result<PolicyService, Failure> {
    PolicyService::open_idle(config)
        .await
        .map_err(|e| Failure::Failed(format!("{}: {e}", config.state_db)))
}

fn manage_failure(e: ManageError) -> Failure {
    if e.is_bad_input() {
        Failure::Usage(e.to_string())
    } else {
        Failure::Failed(e.to_string())
    }
}

/// The gateway's audit chain, for recording changes made here.
pub(crate) async fn audit_log(config: &Config) -> Result<AuditLog, Failure> {
    let signer = Signer::load(&config.signing_key).map_err(|e| Failure::Usage(e.to_string()))?;
    AuditLog::open(
        &crate::audit_config::database(&config.state_db),
        Arc::new(signer),
        crate::audit_config::settings(config),
    )
    .await
    .map_err(|e| Failure::Failed(format!("audit log: {e}")))
}

async fn apply(
    config: &Config,
    file: &Path,
    dry_run: bool,
    prune: bool,
    actor: &str,
) -> Result<String, Failure> {
    let file = AgreementFile::load(file).map_err(|e| Failure::Usage(e.to_string()))?;
    let policy = service(config).await?;
    let log = if dry_run {
        None
    } else {
        Some(audit_log(config).await?)
    };
    let audit = match &log {
        Some(log) => ChangeAudit::Chain {
            log,
            node: &config.node,
        },
        None => ChangeAudit::NotAudited,
    };
    let report = agreements::apply_file(
        &policy.store,
        &policy.catalogue,
        &file,
        prune,
        dry_run,
        actor,
        &audit,
    )
    .await
    .map_err(manage_failure)?;
    let mut out = report.plan.render();
    let (changes, unchanged) = (report.plan.steps.len(), report.plan.unchanged.len());
    if dry_run {
        out.push_str(&format!(
            "dry run: {changes} change(s) would be made, {unchanged} agreement(s) unchanged\n"
        ));
    } else {
        let version = report.applied.last().map(|a| a.version);
        out.push_str(&format!(
            "applied {} change(s), {unchanged} agreement(s) unchanged{}\n",
            report.applied.len(),
            version
                .map(|v| format!("; policy version {v}"))
                .unwrap_or_default()
        ));
    }
    Ok(out)
}

async fn revoke(config: &Config, id: &str, actor: &str) -> Result<String, Failure> {
    let policy = service(config).await?;
    let log = audit_log(config).await?;
    let audit = ChangeAudit::Chain {
        log: &log,
        node: &config.node,
    };
    let (applied, _) = agreements::revoke(&policy.store, id, actor, &audit)
        .await
        .map_err(manage_failure)?;
    Ok(format!(
        "- {id}  revoked; policy version {}\n",
        applied.version
    ))
}

async fn roles(
    config: &Config,
    identity: Option<&str>,
    role: Option<&str>,
    format: Format,
) -> Result<String, Failure> {
    let store = crate::policy_sync::open_store(config)
        .await
        .map_err(|e| Failure::Failed(e.to_string()))?;
    let bindings: Vec<_> = store
        .roles()
        .await
        .map_err(|e| Failure::Failed(e.to_string()))?
        .into_iter()
        .filter(|b| identity.is_none_or(|i| b.identity == i))
        .filter(|b| role.is_none_or(|r| b.role == r))
        .collect();
    Ok(match format {
        Format::Json | Format::Toml => {
            let items: Vec<Value> = bindings
                .iter()
                .map(|b| json!({"identity": b.identity, "role": b.role}))
                .collect();
            format!("{}\n", Value::Array(items))
        }
        Format::Text if bindings.is_empty() => "no role bindings\n".into(),
        Format::Text => {
            let mut out = format!("{:<44} {}\n", "IDENTITY", "ROLE");
            for b in &bindings {
                out.push_str(&format!("{:<44} {}\n", b.identity, b.role));
            }
            out
        }
    })
}

/// Bind (or with `bind == false` unbind) a role, audited.
async fn bind(
    config: &Config,
    identity: &str,
    role: &str,
    actor: &str,
    bind: bool,
) -> Result<String, Failure> {
    let store = crate::policy_sync::open_store(config)
        .await
        .map_err(|e| Failure::Failed(e.to_string()))?;
    // A malformed binding is refused before the audit log is opened.
    policy::RoleBinding {
        identity: identity.to_owned(),
        role: role.to_owned(),
    }
    .validate()
    .map_err(|e| Failure::Usage(e.to_string()))?;
    let log = audit_log(config).await?;
    let audit = ChangeAudit::Chain {
        log: &log,
        node: &config.node,
    };
    let changed = if bind {
        agreements::bind_role(&store, identity, role, actor, &audit).await
    } else {
        agreements::unbind_role(&store, identity, role, actor, &audit)
            .await
            .map(Some)
    };
    let out = match changed.map_err(manage_failure)? {
        Some(c) if bind => format!("+ {identity}  role {role}; policy version {}\n", c.version),
        Some(c) => format!("- {identity}  role {role}; policy version {}\n", c.version),
        None => format!("{identity} holds role {role} already; nothing changed\n"),
    };
    Ok(out)
}

async fn list(
    config: &Config,
    dataset: Option<&str>,
    consumer: Option<&str>,
    format: Format,
) -> Result<String, Failure> {
    let policy = service(config).await?;
    let stored = policy
        .store
        .list()
        .await
        .map_err(|e| Failure::Failed(e.to_string()))?;
    let stored: Vec<_> = stored
        .into_iter()
        .filter(|s| dataset.is_none_or(|d| s.agreement.dataset == d))
        .filter(|s| consumer.is_none_or(|c| s.agreement.consumer == c))
        .collect();
    match format {
        Format::Json => {
            let items: Vec<Value> = stored
                .iter()
                .map(|s| {
                    json!({"agreement": s.agreement, "version": s.version,
                                "updated_at": s.updated_at, "updated_by": s.updated_by})
                })
                .collect();
            Ok(format!("{}\n", Value::Array(items)))
        }
        Format::Toml => {
            let agreements: Vec<Agreement> = stored.into_iter().map(|s| s.agreement).collect();
            AgreementFile::render(&agreements).map_err(|e| Failure::Failed(e.to_string()))
        }
        Format::Text => Ok(list_text(&stored)),
    }
}

fn list_text(stored: &[policy::StoredAgreement]) -> String {
    if stored.is_empty() {
        return "no agreements\n".into();
    }
    let mut out = format!(
        "{:<28} {:<6} {:<9} {:<13} {:<34} {:<23} {:>4}  {}\n",
        "ID", "EFFECT", "PROVIDER", "DATASET", "CONSUMER", "VALID (UTC)", "VER", "LIMITS"
    );
    for s in stored {
        let a = &s.agreement;
        let mut limits = Vec::new();
        if a.hours.is_some() || a.days.is_some() {
            limits.push(a.schedule_text());
        }
        if let Some(q) = a.daily_quota {
            limits.push(format!("{q}/day"));
        }
        if let Some(r) = a.operator_rate {
            limits.push(format!("{r} per operator"));
        }
        let line = format!(
            "{:<28} {:<6} {:<9} {:<13} {:<34} {:<23} {:>4}  {}",
            a.id,
            a.effect.as_str(),
            a.provider,
            a.dataset,
            a.consumer,
            format!(
                "{}..{}",
                a.valid_from.format("%Y-%m-%d"),
                a.valid_until.format("%Y-%m-%d")
            ),
            s.version,
            limits.join("; ")
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// An explain question as given on the command line.
struct Asked {
    consumer: String,
    dataset: String,
    matter: String,
    fields: Vec<String>,
    at: Option<String>,
    operator: Option<String>,
}

async fn explain(config: &Config, asked: &Asked, format: Format) -> Result<String, Failure> {
    let at = match &asked.at {
        None => chrono::Utc::now(),
        Some(t) => chrono::DateTime::parse_from_rfc3339(t)
            .map_err(|e| Failure::Usage(format!("--at: {t:?} is not an RFC 3339 time: {e}")))?
            .with_timezone(&chrono::Utc),
    };
    let policy = service(config).await?;
    let q = Question {
        consumer: &asked.consumer,
        dataset: &asked.dataset,
        matter: &asked.matter,
        fields: (!asked.fields.is_empty()).then_some(asked.fields.as_slice()),
        at,
    };
    let mut e = policy
        .authorizer
        .explain(&q)
        .map_err(|e| Failure::Failed(e.to_string()))?;
    policy
        .meter
        .explain(&mut e, asked.operator.as_deref())
        .await
        .map_err(|e| Failure::Failed(e.to_string()))?;
    Ok(match format {
        Format::Json | Format::Toml => format!("{}\n", e.to_json()),
        Format::Text => e.to_text(),
    })
}

async fn history(
    config: &Config,
    id: Option<&str>,
    limit: i64,
    format: Format,
) -> Result<String, Failure> {
    let store = crate::policy_sync::open_store(config)
        .await
        .map_err(|e| Failure::Failed(e.to_string()))?;
    let entries = store
        .history(id, limit.max(1))
        .await
        .map_err(|e| Failure::Failed(e.to_string()))?;
    Ok(match format {
        Format::Json | Format::Toml => {
            let items: Vec<Value> = entries.iter().map(history_json).collect();
            format!("{}\n", Value::Array(items))
        }
        Format::Text if entries.is_empty() => "no history\n".into(),
        Format::Text => entries.iter().map(history_text).collect(),
    })
}

fn history_json(h: &HistoryEntry) -> Value {
    json!({"version": h.version, "kind": h.kind, "subject": h.subject,
           "action": h.action.as_str(), "actor": h.actor, "at": h.at,
           "before": h.before, "after": h.after})
}

fn history_text(h: &HistoryEntry) -> String {
    let mut out = format!(
        "v{:<5} {}  {:<7} {}  by {}\n",
        h.version,
        h.at,
        h.action.as_str(),
        h.subject,
        h.actor
    );
    if h.kind == "role" {
        let role = h
            .after
            .as_ref()
            .or(h.before.as_ref())
            .and_then(|b| b["role"].as_str())
            .unwrap_or("?");
        out.push_str(&format!("         role {role}\n"));
        return out;
    }
    let parse = |v: &Option<Value>| -> Option<Agreement> {
        v.as_ref()
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    };
    match (parse(&h.before), parse(&h.after)) {
        (Some(b), Some(a)) => {
            for line in policy::diff(&b, &a) {
                out.push_str(&format!("         {line}\n"));
            }
        }
        (None, Some(a)) => out.push_str(&format!(
            "         {} {} → {}, matters {}, fields {}\n",
            a.effect.as_str(),
            a.dataset,
            a.consumer,
            a.matters.join(", "),
            a.fields.keys().cloned().collect::<Vec<_>>().join(", ")
        )),
        (Some(b), None) => out.push_str(&format!(
            "         was {} {} → {}\n",
            b.effect.as_str(),
            b.dataset,
            b.consumer
        )),
        (None, None) => {
            if let Some(after) = &h.after {
                out.push_str(&format!("         {after}\n"));
            }
        }
    }
    out
}
