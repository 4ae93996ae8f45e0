//! `tongban request …`: access requests and their review, against the state database
//! of `--config`, through the same path as the admin API (`crate::requests`).
//!
//! Like `tongban policy`, this is the operator's tool: it acts for any department,
//! recorded as `cli:<actor>` (requester, reviewer and agreement approver alike) in
//! the request's history and on the audit chain. Department admins use the admin
//! API, where the certificate says who they are and which department's requests
//! they may file or review.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use policy::{AccessRequest, Narrowing, RequestState, RequestTerms};
use serde_json::{json, Value};

use super::policy::{audit_log, Format};
use super::Failure;
use crate::agreements::ChangeAudit;
use crate::config::Config;
use crate::error::ApiError;
use crate::http::requests_api::filter_of;
use crate::policy_sync::PolicyService;
use crate::requests::{event_json, field_rules, record_step, request_json, Actor, Requests};

/// `tongban request` arguments.
#[derive(Debug, Args)]
pub struct RequestArgs {
    #[command(flatten)]
    pub config: super::ConfigFile,
    /// Which command.
    #[command(subcommand)]
    pub command: RequestCommand,
}

/// `tongban request …`
#[derive(Debug, Subcommand)]
pub enum RequestCommand {
    /// File an access request for a consumer system; prints its id.
    File {
        /// The provider's dataset.
        #[arg(long)]
        dataset: String,
        /// The identity the agreement is for, urn:tongban:<dept>:<system>.
        #[arg(long)]
        consumer: String,
        /// A field asked, `name` or `name=full|masked` (repeatable).
        #[arg(long = "field", required = true)]
        fields: Vec<String>,
        /// A matter it is needed for (repeatable).
        #[arg(long = "matter", required = true)]
        matters: Vec<String>,
        /// The legal basis or justification.
        #[arg(long)]
        legal_basis: String,
        /// Start of the validity wanted (RFC 3339; default now).
        #[arg(long)]
        valid_from: Option<DateTime<Utc>>,
        /// End of the validity wanted (RFC 3339).
        #[arg(long)]
        valid_until: DateTime<Utc>,
        /// Lookups per day wanted.
        #[arg(long)]
        daily_quota: Option<u32>,
        /// Whom the provider can ask.
        #[arg(long)]
        contact: String,
        /// The agreement this request renews.
        #[arg(long)]
        renews: Option<String>,
        /// Who is filing, for the history and the audit log.
        #[arg(long, env = "USER", default_value = "operator")]
        actor: String,
        /// text or json.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// List requests, newest first.
    List {
        /// Only in this state (submitted, approved, refused, withdrawn, expired).
        #[arg(long)]
        state: Option<RequestState>,
        /// Only to this provider department.
        #[arg(long)]
        provider: Option<String>,
        /// Only from this department (or for this identity).
        #[arg(long)]
        consumer: Option<String>,
        /// Only of this dataset.
        #[arg(long)]
        dataset: Option<String>,
        /// Only overdue ones.
        #[arg(long)]
        overdue: bool,
        /// text or json.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// One request with its history.
    Show {
        /// Request id.
        id: String,
        /// text or json.
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Approve a request, optionally narrowed; creates (or renews) its agreement.
    Approve {
        /// Request id.
        id: String,
        /// Grant only these fields, `name` or `name=full|masked` (repeatable).
        #[arg(long = "field")]
        fields: Vec<String>,
        /// Grant only these matters (repeatable).
        #[arg(long = "matter")]
        matters: Vec<String>,
        /// A lower daily quota.
        #[arg(long)]
        daily_quota: Option<u32>,
        /// A later start (RFC 3339).
        #[arg(long)]
        valid_from: Option<DateTime<Utc>>,
        /// An earlier end (RFC 3339).
        #[arg(long)]
        valid_until: Option<DateTime<Utc>>,
        /// The agreement's id.
        #[arg(long)]
        agreement_id: Option<String>,
        /// Who is approving.
        #[arg(long, env = "USER", default_value = "operator")]
        actor: String,
    },
    /// Refuse a request, saying why.
    Refuse {
        /// Request id.
        id: String,
        /// Why (the requester sees it).
        #[arg(long)]
        reason: String,
        /// Who is refusing.
        #[arg(long, env = "USER", default_value = "operator")]
        actor: String,
    },
    /// Withdraw a submitted request.
    Withdraw {
        /// Request id.
        id: String,
        /// Why (optional).
        #[arg(long)]
        reason: Option<String>,
        /// Who is withdrawing.
        #[arg(long, env = "USER", default_value = "operator")]
        actor: String,
    },
}

/// Run a request command, printing its result.
pub async fn run(args: RequestArgs) -> Result<(), Failure> {
    let text = output(args).await?;
    print!("{text}");
    Ok(())
}

/// Run a request command and return what it prints (for tests and scripts).
pub async fn output(args: RequestArgs) -> Result<String, Failure> {
    let config = args.config.load()?;
    let policy = PolicyService::open_idle(&config)
        .await
        .map_err(|e| Failure::Failed(format!("{}: {e}", config.state_db)))?;
    let requests = Requests::new(Arc::new(policy), &config);
    match args.command {
        RequestCommand::File {
            dataset,
            consumer,
            fields,
            matters,
            legal_basis,
            valid_from,
            valid_until,
            daily_quota,
            contact,
            renews,
            actor,
            format,
        } => {
            let terms = RequestTerms {
                dataset,
                consumer,
                fields: field_rules(&fields).map_err(failure)?,
                matters,
                legal_basis,
                valid_from: valid_from.unwrap_or_else(Utc::now),
                valid_until,
                daily_quota,
                contact,
                renews,
            };
            let filed = requests
                .file(&Actor::operator(&actor), terms)
                .await
                .map_err(failure)?;
            let r = &filed.request;
            let applied = filed.approval.as_ref().and_then(|a| a.applied.as_ref());
            record(&config, &actor, "file", r, applied).await?;
            Ok(match format {
                Format::Json | Format::Toml => format!("{}\n", request_json(r, Utc::now())),
                Format::Text => format!(
                    "filed {} ({}): {} of {} for {}; review by {}\n",
                    r.id, r.state, r.terms.dataset, r.provider, r.terms.consumer, r.review_by
                ),
            })
        }
        RequestCommand::List {
            state,
            provider,
            consumer,
            dataset,
            overdue,
            format,
        } => {
            let identity = consumer.clone().filter(|c| c.starts_with("urn:"));
            let filter = filter_of(state, provider, consumer, dataset);
            let list = requests
                .list(&Actor::operator("list"), filter, overdue.then_some(true))
                .await
                .map_err(failure)?;
            let list: Vec<&AccessRequest> = list
                .iter()
                .filter(|r| identity.as_ref().is_none_or(|c| &r.terms.consumer == c))
                .collect();
            let now = Utc::now();
            Ok(match format {
                Format::Json | Format::Toml => {
                    let items: Vec<Value> = list.iter().map(|r| request_json(r, now)).collect();
                    format!("{}\n", json!({"requests": items}))
                }
                Format::Text => list.iter().map(|r| line(r, now)).collect(),
            })
        }
        RequestCommand::Show { id, format } => {
            let (r, history) = requests
                .show(&Actor::operator("show"), &id)
                .await
                .map_err(failure)?;
            let now = Utc::now();
            Ok(match format {
                Format::Json | Format::Toml => {
                    let mut v = request_json(&r, now);
                    v["history"] = history.iter().map(event_json).collect();
                    format!("{v}\n")
                }
                Format::Text => {
                    let mut out = describe(&r, now);
                    out.push_str("history:\n");
                    for e in &history {
                        let v = event_json(e);
                        let state = |k: &str| v[k].as_str().unwrap_or("-").to_owned();
                        out.push_str(&format!(
                            "  {} {} {} by {} ({} -> {})\n",
                            e.seq,
                            e.at,
                            e.action,
                            e.actor,
                            state("from"),
                            state("to")
                        ));
                    }
                    out
                }
            })
        }
        RequestCommand::Approve {
            id,
            fields,
            matters,
            daily_quota,
            valid_from,
            valid_until,
            agreement_id,
            actor,
        } => {
            let narrowing = Narrowing {
                fields: if fields.is_empty() {
                    None
                } else {
                    Some(field_rules(&fields).map_err(failure)?)
                },
                matters: (!matters.is_empty()).then_some(matters),
                daily_quota,
                valid_from,
                valid_until,
                agreement_id,
            };
            let approval = requests
                .approve(&Actor::operator(&actor), &id, &narrowing)
                .await
                .map_err(failure)?;
            let r = &approval.request;
            record(&config, &actor, "approve", r, approval.applied.as_ref()).await?;
            Ok(format!(
                "approved {}: agreement {}{}\n",
                r.id,
                r.agreement.as_deref().unwrap_or("-"),
                approval
                    .applied
                    .as_ref()
                    .map(|a| format!(" ({}, policy version {})", a.action, a.version))
                    .unwrap_or_default()
            ))
        }
        RequestCommand::Refuse { id, reason, actor } => {
            let r = requests
                .refuse(&Actor::operator(&actor), &id, &reason)
                .await
                .map_err(failure)?;
            record(&config, &actor, "refuse", &r, None).await?;
            Ok(format!("refused {}: {reason}\n", r.id))
        }
        RequestCommand::Withdraw { id, reason, actor } => {
            let r = requests
                .withdraw(&Actor::operator(&actor), &id, reason)
                .await
                .map_err(failure)?;
            record(&config, &actor, "withdraw", &r, None).await?;
            Ok(format!("withdrew {}\n", r.id))
        }
    }
}

/// Append the step to the audit chain, as `tongban policy` changes are.
async fn record(
    config: &Config,
    actor: &str,
    action: &str,
    r: &AccessRequest,
    applied: Option<&policy::Applied>,
) -> Result<(), Failure> {
    let log = audit_log(config).await?;
    let audit = ChangeAudit::Chain {
        log: &log,
        node: &config.node,
    };
    record_step(&audit, actor, action, r, applied)
        .await
        .map_err(|e| Failure::Failed(e.to_string()))
}

fn line(r: &AccessRequest, now: DateTime<Utc>) -> String {
    format!(
        "{}  {:<9} {:<13} {} -> {}  submitted {}  review by {}{}\n",
        r.id,
        r.state.as_str(),
        r.terms.dataset,
        r.terms.consumer,
        r.provider,
        r.submitted_at.format("%Y-%m-%d"),
        r.review_by.format("%Y-%m-%d"),
        if r.overdue(now) { "  OVERDUE" } else { "" }
    )
}

fn describe(r: &AccessRequest, now: DateTime<Utc>) -> String {
    let t = &r.terms;
    let fields: Vec<String> = t
        .fields
        .iter()
        .map(|(f, rule)| format!("{f}={}", rule.as_str()))
        .collect();
    let mut out = format!(
        "request {}\n  state:        {}{}\n  dataset:      {} (provider {})\n  consumer:     {} ({})\n  requester:    {}\n  fields:       {}\n  matters:      {}\n  legal basis:  {}\n  validity:     {} .. {}\n  daily quota:  {}\n  contact:      {}\n  submitted:    {}\n  review by:    {}\n",
        r.id,
        r.state,
        if r.overdue(now) { " (OVERDUE)" } else { "" },
        t.dataset,
        r.provider,
        t.consumer,
        r.consumer_department,
        r.requester,
        fields.join(", "),
        t.matters.join(", "),
        t.legal_basis,
        t.valid_from,
        t.valid_until,
        t.daily_quota.map_or("none".into(), |q| q.to_string()),
        t.contact,
        r.submitted_at,
        r.review_by,
    );
    if let Some(renews) = &t.renews {
        out.push_str(&format!("  renews:       {renews}\n"));
    }
    if let (Some(by), Some(at)) = (&r.decided_by, &r.decided_at) {
        out.push_str(&format!("  decided:      {at} by {by}\n"));
    }
    if let Some(reason) = &r.reason {
        out.push_str(&format!("  reason:       {reason}\n"));
    }
    if let Some(a) = &r.agreement {
        out.push_str(&format!("  agreement:    {a}\n"));
    }
    out
}

/// A request's failure as the CLI reports it: bad input exits 2, anything else 1.
fn failure(e: ApiError) -> Failure {
    let text = match e.internals() {
        Some(internal) => format!("{}: {internal}", e.title()),
        None => e.to_string(),
    };
    if e.status().is_client_error() && !matches!(e, ApiError::Request(_)) {
        Failure::Usage(text)
    } else {
        Failure::Failed(text)
    }
}
