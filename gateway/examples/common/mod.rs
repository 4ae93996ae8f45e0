//! What the audit benchmarks share: realistic lookup records and the CPU clock.

#![allow(dead_code)] // each example uses its own part

use audit::{AuditEntry, Decision};

/// Lookup record `i` of a busy counter: 200 clerks, a case every third record, and
/// `subject` (see [`spread_subject`] and [`sequential_subject`]).
pub fn lookup(i: i64, subject: String) -> AuditEntry {
    AuditEntry {
        time: format!(
            "2026-11-28T{:02}:{:02}:{:02}.{:06}Z",
            (i / 3_600_000) % 24,
            (i / 60_000) % 60,
            (i / 1000) % 60,
            i % 1_000_000
        ),
        request_id: format!("0193a0b2-7c4e-7d1a-9f00-{i:012x}"),
        node: "gw-1".into(),
        consumer: Some("urn:tongban:sz-hrss:counter-01".into()),
        cert_fingerprint: Some(
            "9f2c4d0e8b7a6f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6".into(),
        ),
        operator: Some(format!("clerk-{:03}", i % 200)),
        method: "POST".into(),
        path: "/v1/lookup".into(),
        matter: Some("social-insurance-enrollment".into()),
        case_id: Some(format!("SB-2026-{:06}", i / 3)),
        dataset: Some("population".into()),
        subject: Some(subject),
        fields: vec![
            "name".into(),
            "birth_date".into(),
            "household_address".into(),
        ],
        agreement: Some("hrss-population-2026".into()),
        // As long as a real answer's SHA-256.
        answer_sha256: Some(format!(
            "{:064x}",
            i.unsigned_abs().wrapping_mul(0x9e37_79b9_7f4a_7c15)
        )),
        decision: Decision::Allow,
        reason: None,
        status: 200,
        latency_us: 850 + u64::try_from(i % 700).unwrap_or(0),
        source_us: Some(600 + u64::try_from(i % 500).unwrap_or(0)),
        detail: None,
    }
}

/// Record `i` with subjects in order: index entries land at the end of the index.
pub fn entry(i: i64) -> AuditEntry {
    lookup(i, sequential_subject(i))
}

/// Subjects in the order they were first seen, 100,000 of them.
pub fn sequential_subject(i: i64) -> String {
    format!("4403041972041{:05}", i % 100_000)
}

/// Subjects as citizens arrive at counters: a fixed pseudo-random walk over 10 million,
/// so consecutive records land in unrelated places of the subject index.
pub fn spread_subject(i: i64) -> String {
    let n = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
    format!("440304{:012}", n % 10_000_000)
}

/// User and system CPU time of this process so far (Linux; `None` elsewhere).
pub fn cpu_seconds() -> Option<f64> {
    cpu_of_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// User and system CPU seconds in a `/proc/PID/stat` line.
pub fn cpu_of_stat(stat: &str) -> Option<f64> {
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(ticks / 100.0)
}
