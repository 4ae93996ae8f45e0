//! The ops listener: plain HTTP for probes and scrapers; bind it to loopback.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::App;

/// Serve `/healthz`, `/readyz` and `/metrics` until `stop` flips.
pub async fn serve(app: Arc<App>, listener: TcpListener, stop: watch::Receiver<bool>) {
    crate::plain_http::serve(listener, stop, move |req| handle(Arc::clone(&app), req)).await;
}

async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/metrics" {
        // Overdue requests change with the clock, not only with changes: count now.
        if let Err(e) = app.requests.refresh_overdue().await {
            tracing::warn!(error = %e, "counting overdue access requests failed");
        }
        let mut r = Response::new(Full::new(Bytes::from(app.metrics.render_prometheus())));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        return Ok(r);
    }
    let (status, body) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, json!({"status": "ok"})),
        "/readyz" => readiness(&app).await,
        _ => (StatusCode::NOT_FOUND, json!({"status": "no such endpoint"})),
    };
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

/// Ready when the state database answers and every source answers its probe.
async fn readiness(app: &App) -> (StatusCode, serde_json::Value) {
    let mut checks = serde_json::Map::new();
    let mut ready = true;
    // The agreement store's pool reaches the state database, SQLite or PostgreSQL.
    let db = app.policy.store.ping().await;
    ready &= db.is_ok();
    checks.insert(
        "state_db".into(),
        json!(db
            .map(|_| "ok".to_owned())
            .unwrap_or_else(|e| e.to_string())),
    );
    let mut seen = std::collections::HashSet::new();
    for route in app.routes.values() {
        let name = route.source.name().to_owned();
        if !seen.insert(name.clone()) {
            continue;
        }
        // The source's own probe (bounded by its time-out), and the breaker's view.
        let h = route.source.health().await;
        ready &= h.is_ok();
        let breaker = route.source.breaker();
        checks.insert(
            format!("source:{name}"),
            json!({
                "health": h.map(|_| "ok".to_owned()).unwrap_or_else(|e| e.to_string()),
                "breaker": breaker.state().as_str(),
                "consecutive_failures": breaker.failures(),
            }),
        );
    }
    // Witnesses are reported, never waited for: lookups do not depend on them.
    for (name, w) in app.witnesses.snapshot() {
        checks.insert(format!("witness:{name}"), json!(w));
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, json!({"ready": ready, "checks": checks}))
}
