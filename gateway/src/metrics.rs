//! Metrics: OpenTelemetry instruments, read on demand for `/metrics` (Prometheus
//! text) and pushed over OTLP when an endpoint is configured.
//!
//! One [`Metrics`] is built at start-up and handed to whatever records; names are
//! prefixed by subsystem (`tongban_requests_…`, `tongban_audit_…`, `tongban_tls_…`).

use std::fmt::Write as _;
use std::sync::{Arc, Weak};
use std::time::Duration;

use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality,
};

use crate::resilience::breaker::{Breaker, BreakerState};

/// Latency buckets, seconds: 50 µs to 5 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0,
];

/// Audit batch sizes.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// The gateway's instruments and the reader behind `/metrics`.
#[derive(Clone)]
pub struct Metrics {
    provider: SdkMeterProvider,
    reader: Arc<ManualReader>,
    /// Requests by route, dataset, decision and status.
    pub requests: Counter<u64>,
    /// Request latency by route.
    pub request_seconds: Histogram<f64>,
    /// Records per audit group commit.
    pub audit_batch: Histogram<f64>,
    /// Duration of an audit group commit.
    pub audit_commit_seconds: Histogram<f64>,
    /// Failed audit commits.
    pub audit_failures: Counter<u64>,
    /// Lookups whose source failed, by dataset and kind.
    pub connector_errors: Counter<u64>,
    /// Requests refused because their identity was over its share, by identity and
    /// kind (`requests`, `connections`).
    pub share_refusals: Counter<u64>,
}

/// Shares one [`ManualReader`] between the provider and `/metrics`.
#[derive(Debug)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Metrics {
    /// Build the instruments; with an OTLP endpoint, also push them there every 15 s.
    /// Must run inside the tokio runtime when an endpoint is given.
    pub fn with_otlp(endpoint: &str) -> Result<Self, crate::telemetry::TelemetryError> {
        use opentelemetry_otlp::WithExportConfig as _;
        if endpoint.is_empty() {
            return Ok(Self::new(None));
        }
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.to_owned())
            .build()
            .map_err(|e| crate::telemetry::TelemetryError::Exporter(e.to_string()))?;
        let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
            .with_interval(Duration::from_secs(15))
            .build();
        Ok(Self::new(Some(reader)))
    }

    /// Build the instruments, with an extra (push) reader if given.
    pub fn new(
        otlp: Option<
            opentelemetry_sdk::metrics::PeriodicReader<opentelemetry_otlp::MetricExporter>,
        >,
    ) -> Self {
        let reader = Arc::new(ManualReader::builder().build());
        let mut builder = SdkMeterProvider::builder()
            .with_reader(SharedReader(Arc::clone(&reader)))
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("tongban")
                    .build(),
            );
        if let Some(periodic) = otlp {
            builder = builder.with_reader(periodic);
        }
        let provider = builder.build();
        let meter = provider.meter("tongban");
        Self::with_meter(provider, reader, &meter)
    }

    fn with_meter(provider: SdkMeterProvider, reader: Arc<ManualReader>, m: &Meter) -> Self {
        let seconds = |name: &'static str, help: &'static str| {
            m.f64_histogram(name)
                .with_description(help)
                .with_unit("s")
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build()
        };
        Self {
            requests: m
                .u64_counter("tongban_requests_total")
                .with_description("Requests answered, by route, dataset, decision and status")
                .build(),
            request_seconds: seconds("tongban_request_duration_seconds", "Request latency"),
            audit_batch: m
                .f64_histogram("tongban_audit_batch_records")
                .with_description("Records per audit group commit")
                .with_boundaries(BATCH_BUCKETS.to_vec())
                .build(),
            audit_commit_seconds: seconds(
                "tongban_audit_commit_duration_seconds",
                "Duration of one durable audit group commit",
            ),
            audit_failures: m
                .u64_counter("tongban_audit_commit_failures_total")
                .with_description("Audit commits that failed (their requests got 503)")
                .build(),
            connector_errors: m
                .u64_counter("tongban_connector_errors_total")
                .with_description("Lookups whose source failed, by dataset and kind")
                .build(),
            share_refusals: m
                .u64_counter("tongban_share_refusals_total")
                .with_description(
                    "Requests refused because their client identity was over its share, by identity and kind",
                )
                .build(),
            provider,
            reader,
        }
    }

    /// Export the TLS layer's counters (handshake refusals by reason, reloads,
    /// certificates expiring soon), read when metrics are collected.
    pub fn observe_tls(&self, tls: Arc<crate::tls::TlsMetrics>) {
        let meter = self.provider.meter("tongban");
        let t = Arc::clone(&tls);
        let _ = meter
            .u64_observable_counter("tongban_tls_handshakes_total")
            .with_description("TLS handshakes accepted with a usable client certificate")
            .with_callback(move |o| o.observe(t.snapshot().handshakes, &[]))
            .build();
        let t = Arc::clone(&tls);
        let _ = meter
            .u64_observable_counter("tongban_tls_handshake_refusals_total")
            .with_description("TLS handshakes refused, by reason")
            .with_callback(move |o| {
                for (reason, n) in t.snapshot().refusals {
                    o.observe(n, &[KeyValue::new("reason", reason)]);
                }
            })
            .build();
        let t = Arc::clone(&tls);
        let _ = meter
            .u64_observable_counter("tongban_tls_reloads_total")
            .with_description("TLS configuration reloads, by trigger")
            .with_callback(move |o| {
                for (trigger, n) in t.snapshot().reloads {
                    o.observe(n, &[KeyValue::new("trigger", trigger)]);
                }
            })
            .build();
        let t = tls;
        let _ = meter
            .u64_observable_gauge("tongban_tls_certificates_expiring_soon")
            .with_description("Configured certificates expiring within 30 days")
            .with_callback(move |o| o.observe(t.snapshot().expiring_soon.len() as u64, &[]))
            .build();
    }

    /// Export each source's circuit breaker: 0 closed, 1 half-open, 2 open.
    pub fn observe_breakers(&self, breakers: Vec<(String, Breaker)>) {
        let meter = self.provider.meter("tongban");
        let _ = meter
            .u64_observable_gauge("tongban_connector_breaker_state")
            .with_description("Circuit breaker per source: 0 closed, 1 half-open, 2 open")
            .with_callback(move |o| {
                for (name, b) in &breakers {
                    let v = match b.state() {
                        BreakerState::Closed => 0,
                        BreakerState::HalfOpen => 1,
                        BreakerState::Open => 2,
                    };
                    o.observe(v, &[KeyValue::new("source", name.clone())]);
                }
            })
            .build();
    }

    /// Export how far each witness has cosigned the audit log.
    pub fn observe_witnesses(&self, witnesses: crate::witness_submit::Witnesses) {
        let meter = self.provider.meter("tongban");
        let w = witnesses.clone();
        let _ = meter
            .u64_observable_gauge("tongban_witness_cosigned_size")
            .with_description("Largest audit tree each witness cosigned")
            .with_callback(move |o| {
                for (name, s) in w.snapshot() {
                    o.observe(s.cosigned, &[KeyValue::new("witness", name)]);
                }
            })
            .build();
        let w = witnesses.clone();
        let _ = meter
            .u64_observable_gauge("tongban_witness_lag_records")
            .with_description(
                "Records in the latest checkpoint that a witness has not cosigned yet",
            )
            .with_callback(move |o| {
                for (name, s) in w.snapshot() {
                    o.observe(
                        s.latest.saturating_sub(s.cosigned),
                        &[KeyValue::new("witness", name)],
                    );
                }
            })
            .build();
        let w = witnesses.clone();
        let _ = meter
            .u64_observable_counter("tongban_witness_failures")
            .with_description("Failed submissions to each witness (down, slow, refused)")
            .with_callback(move |o| {
                for (name, s) in w.snapshot() {
                    o.observe(s.failures, &[KeyValue::new("witness", name)]);
                }
            })
            .build();
        let _ = meter
            .u64_observable_gauge("tongban_witness_fork")
            .with_description(
                "1 when a witness refused a checkpoint as not extending what it cosigned",
            )
            .with_callback(move |o| {
                for (name, s) in witnesses.snapshot() {
                    o.observe(u64::from(s.fork), &[KeyValue::new("witness", name)]);
                }
            })
            .build();
    }

    /// Export the submitted access requests past their review deadline, per
    /// provider department (recounted at every scrape and every change).
    pub fn observe_overdue_requests(
        &self,
        overdue: std::sync::Arc<std::sync::Mutex<Vec<(String, i64)>>>,
    ) {
        let meter = self.provider.meter("tongban");
        let _ = meter
            .u64_observable_gauge("tongban_requests_overdue")
            .with_description(
                "Access requests still submitted past their review deadline, per provider department",
            )
            .with_callback(move |o| {
                if let Ok(counts) = overdue.lock() {
                    for (provider, n) in counts.iter() {
                        o.observe(
                            u64::try_from(*n).unwrap_or(0),
                            &[KeyValue::new("provider", provider.clone())],
                        );
                    }
                }
            })
            .build();
    }

    /// Count one answered request.
    pub fn request(&self, route: &str, dataset: &str, decision: &str, status: u16, seconds: f64) {
        let route = KeyValue::new("route", route.to_owned());
        self.requests.add(
            1,
            &[
                route.clone(),
                KeyValue::new("dataset", dataset.to_owned()),
                KeyValue::new("decision", decision.to_owned()),
                KeyValue::new("status", i64::from(status)),
            ],
        );
        self.request_seconds.record(seconds, &[route]);
    }

    /// The current values in the Prometheus text exposition format.
    pub fn render_prometheus(&self) -> String {
        let mut rm = ResourceMetrics::default();
        if self.reader.collect(&mut rm).is_err() {
            return String::new();
        }
        let mut out = String::new();
        for scope in rm.scope_metrics() {
            for metric in scope.metrics() {
                render_metric(&mut out, metric.name(), metric.description(), metric.data());
            }
        }
        out
    }

    /// Flush and stop the exporters.
    pub fn shutdown(&self) {
        let _ = self.provider.shutdown();
    }
}

/// Counts every audit group commit: batch size and duration, or a failure.
impl audit::CommitObserver for Metrics {
    fn commit(&self, records: usize, took: Duration, ok: bool) {
        if ok {
            self.audit_batch.record(records as f64, &[]);
            self.audit_commit_seconds.record(took.as_secs_f64(), &[]);
        } else {
            self.audit_failures.add(1, &[]);
        }
    }
}

fn render_metric(out: &mut String, name: &str, help: &str, data: &AggregatedMetrics) {
    match data {
        AggregatedMetrics::U64(d) => render_data(out, name, help, d, |v| v as f64),
        AggregatedMetrics::I64(d) => render_data(out, name, help, d, |v| v as f64),
        AggregatedMetrics::F64(d) => render_data(out, name, help, d, |v| v),
    }
}

fn render_data<T: Copy>(
    out: &mut String,
    name: &str,
    help: &str,
    data: &MetricData<T>,
    f: impl Fn(T) -> f64,
) {
    let _ = writeln!(out, "# HELP {name} {}", help.replace('\n', " "));
    match data {
        MetricData::Sum(sum) => {
            let kind = if sum.is_monotonic() {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for p in sum.data_points() {
                let _ = writeln!(
                    out,
                    "{name}{} {}",
                    labels(p.attributes(), None),
                    f(p.value())
                );
            }
        }
        MetricData::Gauge(g) => {
            let _ = writeln!(out, "# TYPE {name} gauge");
            for p in g.data_points() {
                let _ = writeln!(
                    out,
                    "{name}{} {}",
                    labels(p.attributes(), None),
                    f(p.value())
                );
            }
        }
        MetricData::Histogram(h) => {
            let _ = writeln!(out, "# TYPE {name} histogram");
            for p in h.data_points() {
                let mut cumulative = 0;
                let bounds: Vec<f64> = p.bounds().collect();
                for (i, count) in p.bucket_counts().enumerate() {
                    cumulative += count;
                    let le = bounds
                        .get(i)
                        .map(|b| b.to_string())
                        .unwrap_or_else(|| "+Inf".to_owned());
                    let l = labels(p.attributes(), Some(&le));
                    let _ = writeln!(out, "{name}_bucket{l} {cumulative}");
                }
                let l = labels(p.attributes(), None);
                let _ = writeln!(out, "{name}_sum{l} {}", f(p.sum()));
                let _ = writeln!(out, "{name}_count{l} {}", p.count());
            }
        }
        MetricData::ExponentialHistogram(_) => {}
    }
}

fn labels<'a>(attrs: impl Iterator<Item = &'a KeyValue>, le: Option<&str>) -> String {
    // Sorted by name, so a series always renders the same way.
    let mut pairs: Vec<(&str, String)> = attrs
        .map(|kv| (kv.key.as_str(), escape(&kv.value.to_string())))
        .collect();
    pairs.sort();
    let mut parts: Vec<String> = pairs
        .into_iter()
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.request("/v1/lookup", "population", "allow", 200, 0.002);
        m.request("/v1/lookup", "population", "allow", 200, 0.004);
        m.connector_errors.add(
            1,
            &[
                KeyValue::new("source", "population-db"),
                KeyValue::new("kind", "timeout"),
            ],
        );
        let text = m.render_prometheus();
        assert!(
            text.contains("# TYPE tongban_requests_total counter"),
            "{text}"
        );
        assert!(
            text.contains("dataset=\"population\"") && text.contains("status=\"200\""),
            "{text}"
        );
        assert!(
            text.contains(
                "tongban_connector_errors_total{kind=\"timeout\",source=\"population-db\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "tongban_request_duration_seconds_bucket{route=\"/v1/lookup\",le=\"+Inf\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("tongban_request_duration_seconds_count{route=\"/v1/lookup\"} 2"),
            "{text}"
        );
    }
}
