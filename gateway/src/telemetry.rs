//! Logs and traces through `tracing`; spans exported over OTLP only when an endpoint
//! is configured.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{filter_fn, FilterExt as _, LevelFilter};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::config::TelemetryConfig;

/// What the log shows at `level`: events, and of the spans only the request's (its
/// request id on every line), not the spans inside it (policy, connector, audit):
/// those are for traces. A span no layer wants is never built; building and entering
/// them for the log alone cost several µs of a lookup's CPU (docs/performance.md).
fn log_filter<S>(
    level: EnvFilter,
    cap: LevelFilter,
) -> impl tracing_subscriber::layer::Filter<S> + Send + Sync + 'static
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    level.and(filter_fn(|m| !m.is_span() || m.name() == REQUEST_SPAN).with_max_level_hint(cap))
}

/// The most verbose level any layer takes at `level`, installed as a global filter
/// under every layer. Without it the subscriber as a whole has no level hint (the
/// name filter above has none, and the absent OTLP layer then says it wants
/// everything), so the debug and trace spans of the libraries underneath (h2 enters
/// one on every poll of a connection) were built and entered on every call: most of
/// HTTP/2's extra cost per request (docs/performance.md).
fn level_cap(level: &EnvFilter) -> LevelFilter {
    level.max_level_hint().unwrap_or(LevelFilter::TRACE)
}

/// `log_level` as a tracing filter.
fn level_filter(level: &str) -> Result<EnvFilter, TelemetryError> {
    EnvFilter::try_new(level).map_err(|e| TelemetryError::Filter(e.to_string()))
}

/// The span each request runs in ([`crate::http::meta`]).
const REQUEST_SPAN: &str = "request";

/// Keeps the exporter alive; flushes spans when dropped.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Telemetry set-up failures.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// Bad filter.
    #[error("telemetry.log_level: {0}")]
    Filter(String),
    /// OTLP exporter.
    #[error("telemetry.otlp_endpoint: {0}")]
    Exporter(String),
}

/// Install the global subscriber. Call once, inside the tokio runtime.
pub fn init(cfg: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    use std::io::IsTerminal as _;
    // Colour only for a person at a terminal: in a file or a journal the escape
    // codes are noise, and writing them into each request span's fields cost CPU.
    let colour = std::io::stderr().is_terminal();
    // stderr: what a command prints on stdout (the demo's banner) stays apart.
    let (subscriber, provider) = subscriber(cfg, std::io::stderr, colour)?;
    // A second init (tests) keeps the first subscriber.
    let _ = subscriber.try_init();
    Ok(Telemetry { provider })
}

/// The subscriber [`init`] installs, and the trace exporter's provider when one is
/// configured.
fn subscriber<W>(
    cfg: &TelemetryConfig,
    out: W,
    colour: bool,
) -> Result<
    (
        impl tracing::Subscriber + Send + Sync + 'static,
        Option<SdkTracerProvider>,
    ),
    TelemetryError,
>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let level = level_filter(&cfg.log_level)?;
    let cap = level_cap(&level);
    let in_log = log_filter(level, cap);
    let fmt = if cfg.log_format == "json" {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(out)
            .with_filter(in_log)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(colour)
            .with_writer(out)
            .with_filter(in_log)
            .boxed()
    };
    let (otel, provider) = if cfg.otlp_endpoint.is_empty() {
        (None, None)
    } else {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(cfg.otlp_endpoint.clone())
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("tongban")
                    .build(),
            )
            .build();
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("tongban"))
            .with_filter(level_filter(&cfg.log_level)?);
        (Some(layer), Some(provider))
    };
    let subscriber = tracing_subscriber::registry()
        .with(cap)
        .with(fmt)
        .with(otel);
    Ok((subscriber, provider))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::span::{Attributes, Id};
    use tracing_subscriber::layer::{Context, SubscriberExt as _};
    use tracing_subscriber::Layer;

    use super::{level_cap, level_filter, log_filter};

    /// Names of the spans built and the events seen.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<String>>>);

    impl<S: tracing::Subscriber> Layer<S> for Seen {
        fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
            self.0
                .lock()
                .unwrap()
                .push(attrs.metadata().name().to_owned());
        }
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            let level = event.metadata().level().as_str().to_owned();
            self.0.lock().unwrap().push(level);
        }
    }

    #[test]
    fn the_log_sees_events_and_the_request_span_but_not_the_spans_inside_it() {
        let seen = Seen::default();
        let level = level_filter("info").unwrap();
        let cap = level_cap(&level);
        let subscriber =
            tracing_subscriber::registry().with(seen.clone().with_filter(log_filter(level, cap)));
        tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!("request", request_id = "r1");
            let _in = request.enter();
            tracing::info_span!("policy").in_scope(|| tracing::warn!("inside policy"));
            tracing::debug!("below the level");
            tracing::info!("at the level");
        });
        assert_eq!(*seen.0.lock().unwrap(), ["request", "WARN", "INFO"]);
        assert!(level_filter("no such=level=x").is_err());
    }

    #[test]
    fn the_libraries_debug_and_trace_spans_are_never_built() {
        for level in ["info", "warn", "info,hyper=info"] {
            let cfg = crate::config::TelemetryConfig {
                log_level: level.into(),
                ..Default::default()
            };
            let (subscriber, _) = super::subscriber(&cfg, std::io::sink, false).unwrap();
            tracing::subscriber::with_default(subscriber, || {
                // What h2 builds for each connection and each poll of it.
                let connection = tracing::debug_span!(target: "h2", "Connection");
                let poll = tracing::trace_span!(target: "h2", "poll");
                assert!(connection.is_disabled() && poll.is_disabled(), "at {level}");
                assert!(!tracing::enabled!(tracing::Level::DEBUG), "at {level}");
            });
        }
        let cfg = crate::config::TelemetryConfig {
            log_level: "debug".into(),
            ..Default::default()
        };
        let (subscriber, _) = super::subscriber(&cfg, std::io::sink, false).unwrap();
        tracing::subscriber::with_default(subscriber, || {
            assert!(tracing::enabled!(tracing::Level::DEBUG));
        });
    }

    /// A log that is not a terminal (a file, a journal): plain text, and each line
    /// inside a request still names its request id.
    #[test]
    fn a_log_written_to_a_file_has_no_escape_codes() {
        #[derive(Clone, Default)]
        struct Lines(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let out = lines.clone();
        let cfg = crate::config::TelemetryConfig {
            log_level: "info".into(),
            ..Default::default()
        };
        let (subscriber, _) = super::subscriber(&cfg, move || out.clone(), false).unwrap();
        tracing::subscriber::with_default(subscriber, || {
            let request = tracing::info_span!(super::REQUEST_SPAN, request_id = %"r-42");
            request.in_scope(|| tracing::warn!(source = "population", "source slow"));
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("request_id=r-42"), "{text}");
        assert!(text.contains("source=\"population\""), "{text}");
        assert!(!text.contains('\x1b'), "escape codes in {text:?}");
    }
}
