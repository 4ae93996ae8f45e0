//! Submitting the audit log's checkpoints to its witnesses, in the background.
//!
//! Every `[audit] witness_interval_ms` the latest checkpoint goes to each witness
//! that has not cosigned it, with the consistency proof from the size that witness
//! last cosigned (c2sp.org/tlog-witness). A cosignature that verifies is kept in the
//! store beside the log (`audit_cosignature`); `tongban audit verify` then says how
//! far each witness vouches for the log. Nothing here is on a request's path: a
//! witness that is down or slow delays its own cosignature and shows in `/readyz`
//! and `/metrics`, and lookups go on.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use audit::tlog::checkpoint::SignedCheckpoint;
use audit::tlog::cosignature::cosigned_at;
use audit::tlog::note::{Note, Verifier};
use audit::witness::AddCheckpoint;
use audit::{AuditLog, AuditStore};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::config::{witness_verifier, AuditConfig};

/// Largest answer taken from a witness: a cosignature line, or a size.
const MAX_ANSWER: usize = 4096;

/// What the gateway knows of one witness, for `/readyz` and `/metrics`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WitnessStatus {
    /// The witness's URL.
    pub url: String,
    /// The largest tree it cosigned (kept in the store).
    pub cosigned: u64,
    /// The latest checkpoint's size when it was last tried.
    pub latest: u64,
    /// Submissions that failed (down, slow, refused) since the gateway started.
    pub failures: u64,
    /// Why the last submission failed, until one succeeds.
    pub last_error: Option<String>,
    /// The witness refused a checkpoint as not extending what it cosigned: history
    /// was rewritten, or the log forked. Stays set until a restart.
    pub fork: bool,
}

/// Every witness's status, by name.
#[derive(Debug, Clone, Default)]
pub struct Witnesses(Arc<Mutex<BTreeMap<String, WitnessStatus>>>);

impl Witnesses {
    /// A copy of every witness's status.
    pub fn snapshot(&self) -> BTreeMap<String, WitnessStatus> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, WitnessStatus>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut WitnessStatus)) {
        if let Some(s) = self.lock().get_mut(name) {
            f(s);
        }
    }
}

struct Target {
    verifier: Verifier,
    url: String,
    authority: String,
}

/// Start submitting the checkpoints of `log` to the witnesses of `config` until
/// `stop` flips; the status is kept in `status`.
pub fn spawn(
    config: &AuditConfig,
    log: AuditLog,
    status: Witnesses,
    stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let targets: Vec<Target> = config
        .witnesses
        .iter()
        .filter_map(|w| {
            // Checked when the config was loaded.
            let verifier = witness_verifier(w).ok()?;
            let authority = w.url.strip_prefix("http://")?.split('/').next()?.to_owned();
            Some(Target {
                verifier,
                url: w.url.trim_end_matches('/').to_owned(),
                authority,
            })
        })
        .collect();
    if targets.is_empty() {
        return None;
    }
    {
        let mut s = status.lock();
        for t in &targets {
            s.insert(
                t.verifier.name.clone(),
                WitnessStatus {
                    url: t.url.clone(),
                    ..WitnessStatus::default()
                },
            );
        }
    }
    let interval = Duration::from_millis(config.witness_interval_ms);
    let timeout = Duration::from_millis(config.witness_timeout_ms);
    Some(tokio::spawn(run(
        targets, log, status, interval, timeout, stop,
    )))
}

async fn run(
    targets: Vec<Target>,
    log: AuditLog,
    status: Witnesses,
    interval: Duration,
    timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    // What each witness cosigned, as far as this store knows.
    let mut cosigned: BTreeMap<String, u64> = match log.store().cosigned_sizes().await {
        Ok(sizes) => sizes.into_iter().collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the witnesses' cosignatures; starting from none");
            BTreeMap::new()
        }
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        // The last checkpoint the writer signed (its tree is committed).
        let (size, note) = match log.latest_checkpoint().await {
            Ok(Some(note)) => match SignedCheckpoint::parse(&note) {
                Ok(c) => (c.size, note),
                Err(_) => continue,
            },
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "no checkpoint to submit to the witnesses");
                continue;
            }
        };
        for t in &targets {
            let name = &t.verifier.name;
            let old = cosigned.get(name).copied().unwrap_or(0);
            status.update(name, |s| {
                s.latest = size;
                s.cosigned = old;
            });
            if old >= size {
                continue;
            }
            match submit(t, log.store(), &note, old, size, timeout).await {
                Ok(Submitted::Cosigned(line)) => {
                    let kept = format!("{note}{line}");
                    if let Err(e) = log.store().add_cosignature(name, size, &kept).await {
                        tracing::warn!(witness = %name, error = %e, "cannot keep a cosignature");
                        continue;
                    }
                    cosigned.insert(name.clone(), size);
                    status.update(name, |s| {
                        s.cosigned = size;
                        s.last_error = None;
                    });
                }
                Ok(Submitted::StartFrom(latest)) if latest > size => {
                    // It vouched for a larger tree than this checkpoint's: a store cut
                    // short (or another gateway of a shared log ahead of this one).
                    tracing::warn!(witness = %name, latest, size, "a witness cosigned a larger tree than the latest checkpoint");
                    cosigned.insert(name.clone(), latest);
                    status.update(name, |s| {
                        s.failures += 1;
                        s.last_error = Some(format!("the witness cosigned {latest} records; the latest checkpoint has {size}"));
                    });
                }
                Ok(Submitted::StartFrom(latest)) => {
                    // The witness cosigned another size than this store remembers:
                    // start from its size (a fork shows up then).
                    tracing::info!(witness = %name, latest, "witness asks for a proof from another size");
                    cosigned.insert(name.clone(), latest);
                }
                Err(e) => {
                    let fork = matches!(e, SubmitError::Fork(_));
                    if fork {
                        tracing::error!(witness = %name, error = %e, "a witness refuses this log's checkpoint as a rewrite of history");
                    } else {
                        tracing::warn!(witness = %name, error = %e, "witness submission failed");
                    }
                    status.update(name, |s| {
                        s.failures += 1;
                        s.last_error = Some(e.to_string());
                        s.fork |= fork;
                    });
                }
            }
        }
    }
}

enum Submitted {
    /// The witness's cosignature line.
    Cosigned(String),
    /// The witness last cosigned this size: submit from it.
    StartFrom(u64),
}

#[derive(Debug, thiserror::Error)]
enum SubmitError {
    #[error("{0}")]
    Proof(String),
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("refused ({0})")]
    Refused(String),
    #[error("FORK: {0}")]
    Fork(String),
    #[error("a cosignature that does not verify: {0}")]
    BadCosignature(String),
}

async fn submit(
    t: &Target,
    store: &AuditStore,
    note: &str,
    old: u64,
    size: u64,
    timeout: Duration,
) -> Result<Submitted, SubmitError> {
    let proof = if old == 0 {
        Vec::new()
    } else {
        store
            .consistency_proof(old, Some(size))
            .await
            .map_err(|e| SubmitError::Proof(e.to_string()))?
            .hashes
    };
    let body = AddCheckpoint {
        old,
        proof,
        checkpoint: note.to_owned(),
    }
    .body();
    let (status, answer) = tokio::time::timeout(timeout, post(t, body))
        .await
        .map_err(|_| SubmitError::Timeout(timeout))??;
    match status {
        StatusCode::OK => {
            let cosigned = format!("{note}{answer}");
            let parsed =
                Note::parse(&cosigned).map_err(|e| SubmitError::BadCosignature(e.to_string()))?;
            cosigned_at(&parsed, &t.verifier)
                .map_err(|e| SubmitError::BadCosignature(e.to_string()))?;
            Ok(Submitted::Cosigned(answer))
        }
        StatusCode::CONFLICT => answer
            .trim()
            .parse()
            .map(Submitted::StartFrom)
            .map_err(|_| SubmitError::Refused(format!("409 without a size: {answer:?}"))),
        StatusCode::UNPROCESSABLE_ENTITY => Err(SubmitError::Fork(answer.trim().to_owned())),
        other => Err(SubmitError::Refused(format!("{other}: {}", answer.trim()))),
    }
}

async fn post(t: &Target, body: String) -> Result<(StatusCode, String), SubmitError> {
    let unreachable =
        |e: &dyn std::fmt::Display| SubmitError::Unreachable(format!("{}: {e}", t.url));
    let tcp = TcpStream::connect(&t.authority)
        .await
        .map_err(|e| unreachable(&e))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(conn);
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("{}/add-checkpoint", t.url))
        .header(http::header::HOST, &t.authority)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| unreachable(&e))?;
    let response = sender
        .send_request(req)
        .await
        .map_err(|e| unreachable(&e))?;
    let status = response.status();
    let bytes = Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| unreachable(&e))?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}
