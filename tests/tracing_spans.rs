//! Each request is one `request` span with `policy`, `connector` and `audit` inside it.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::sync::{Arc, Mutex};

use tongban_tests::Gateway;
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

/// A span's name and the names of its ancestors, innermost first.
type Seen = (String, Vec<String>);

/// Records every new span.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Seen>>>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Spans {
    fn on_new_span(&self, _: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let ancestors = span.scope().skip(1).map(|s| s.name().to_owned()).collect();
        self.0
            .lock()
            .unwrap()
            .push((span.name().to_owned(), ancestors));
    }
}

// One thread, so the thread-local subscriber sees the server's tasks too.
#[tokio::test(flavor = "current_thread")]
async fn a_lookup_is_a_request_span_with_policy_connector_and_audit_children() {
    let spans = Spans::default();
    let _guard = tracing_subscriber::registry()
        .with(spans.clone())
        .set_default();
    let gw = Gateway::start().await;
    let samples = gw.samples();
    let s = samples.iter().find(|s| s["expect"] == 200).unwrap();
    let a = gw
        .client(s["cert"].as_str().unwrap())
        .lookup(Some("clerk-1"), &s["body"])
        .await
        .unwrap();
    assert_eq!(a.status, 200);
    let seen = spans.0.lock().unwrap().clone();
    assert_eq!(
        seen.iter().filter(|(n, _)| n == "request").count(),
        1,
        "{seen:?}"
    );
    for child in ["policy", "connector", "audit"] {
        let (_, ancestors) = seen
            .iter()
            .find(|(n, _)| n == child)
            .unwrap_or_else(|| panic!("no {child} span in {seen:?}"));
        assert!(
            ancestors.iter().any(|a| a == "request"),
            "{child} is not inside request: {ancestors:?}"
        );
    }
}
