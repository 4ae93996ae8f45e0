//! Usage reports over mTLS: a mixed workload through the real gateway, then the
//! figures of `GET /admin/v1/usage` and `tongban report usage` compared with counts
//! taken from the audit records directly (SQL over the stored JSON).

use std::collections::BTreeMap;

use gateway::cli::report::{usage, UsageFormat};
use http::{Method, StatusCode};
use serde_json::{json, Value};
use tongban_tests::{sample, Gateway};

/// Every sample of the demo (lookups allowed and refused, bad identifiers, unknown
/// subjects, bundles), three rounds, plus lookups with a bad operator header and
/// under a matter no agreement names.
async fn workload(gw: &Gateway) {
    let samples = gw.samples();
    for _ in 0..3 {
        for s in &samples {
            let headers = [
                ("content-type", "application/json"),
                ("x-operator-id", s["operator"].as_str().unwrap_or("clerk-1")),
            ];
            let a = gw
                .client(s["cert"].as_str().unwrap_or_default())
                .request(
                    Method::POST,
                    s["path"].as_str().unwrap_or_default(),
                    &headers,
                    s["body"].to_string(),
                )
                .await
                .expect("an answer");
            assert_eq!(u64::from(a.status.as_u16()), s["expect"], "{s}");
        }
    }
    let mut body = sample(&samples, "population", 200)["body"].clone();
    let counter = gw.client("counter-a");
    let a = counter.lookup(None, &body).await.expect("answer");
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "no operator");
    body["matter"] = json!("marriage-registration");
    let a = counter
        .lookup(Some("clerk-9"), &body)
        .await
        .expect("answer");
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
}

/// `SELECT <what> FROM audit_log` over the accesses (lookups and bundle items, not
/// bundle summaries), grouped by `key`: key → value.
async fn counted(gw: &Gateway, key: &str, what: &str, cond: &str) -> BTreeMap<String, i64> {
    let sql = format!(
        "SELECT CAST(COALESCE({key}, '-') AS TEXT) AS k, {what} FROM audit_log
         WHERE (json_extract(record, '$.path') = '/v1/lookup'
            OR (json_extract(record, '$.path') = '/v1/bundle'
                AND json_extract(record, '$.detail.items') IS NULL))
           AND ({cond})
         GROUP BY k"
    );
    let rows: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_all(&gw.state_db().await)
        .await
        .expect("count");
    rows.into_iter().collect()
}

/// How many accesses meet `cond`.
async fn all(gw: &Gateway, cond: &str) -> i64 {
    counted(gw, "'all'", "COUNT(*)", cond)
        .await
        .get("all")
        .copied()
        .unwrap_or(0)
}

/// `v` with every number as a float, so `1` and `1.0` compare equal.
fn numbers(v: &Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64()),
        Value::Array(a) => Value::Array(a.iter().map(numbers).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), numbers(v))).collect()),
        other => other.clone(),
    }
}

fn member(r: &str) -> String {
    format!("json_extract(record, '$.{r}')")
}

/// The report's `figure` of each group of `dimension`, over the whole range.
fn by_key(report: &Value, dimension: &str, figure: &str) -> BTreeMap<String, i64> {
    report[dimension]
        .as_array()
        .expect("a dimension")
        .iter()
        .map(|s| {
            let key = s["key"].as_str().expect("a key").to_owned();
            (key, s["total"][figure].as_i64().expect("a figure"))
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[tokio::test]
async fn the_usage_figures_equal_counts_of_the_audit_records() {
    let gw = Gateway::start().await;
    workload(&gw).await;
    let a = gw.client("auditor").get("/admin/v1/usage").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let report = a.body;

    let total = &report["total"];
    assert_eq!(total["lookups"], all(&gw, "1").await);
    assert!(total["lookups"].as_i64() > Some(20), "{total}");
    assert_eq!(
        total["allowed"],
        all(&gw, "json_extract(record, '$.decision') = 'allow'").await
    );
    assert_eq!(
        total["refused"],
        all(&gw, "json_extract(record, '$.decision') = 'deny'").await
    );
    assert_eq!(
        total["failed"],
        all(&gw, "json_extract(record, '$.decision') = 'error'").await
    );
    assert_eq!(
        total["documents_not_asked"],
        all(&gw, "json_extract(record, '$.decision') = 'allow' AND json_extract(record, '$.status') = 200").await
    );
    assert!(total["refused"].as_i64() > Some(0) && total["failed"].as_i64() > Some(0));
    // Bundle items count as documents not asked of citizens.
    let bundle_items = all(
        &gw,
        "json_extract(record, '$.path') = '/v1/bundle' AND json_extract(record, '$.status') = 200",
    )
    .await;
    assert!(bundle_items > 0);

    // Source calls: only records that name a source time, the ones the source
    // answered (200, 404) counted as available.
    let source = "json_extract(record, '$.source_us') IS NOT NULL";
    assert_eq!(total["source_calls"], all(&gw, source).await);
    assert!(total["source_calls"].as_i64() > Some(0));
    assert_eq!(
        total["source_ok"],
        all(&gw, "json_extract(record, '$.source_us') IS NOT NULL AND json_extract(record, '$.status') IN (200, 404)").await
    );
    assert!(total["source_p50_us"].as_u64() <= total["source_p99_us"].as_u64());

    // Answers by status and refusals by reason.
    let statuses = counted(&gw, &member("status"), "COUNT(*)", "1").await;
    let reported: BTreeMap<String, i64> = total["statuses"]
        .as_object()
        .expect("statuses")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_i64().unwrap_or(-1)))
        .collect();
    assert_eq!(reported, statuses);
    let reasons = counted(
        &gw,
        "substr(json_extract(record, '$.reason'), 1, instr(json_extract(record, '$.reason'), ':') - 1)",
        "COUNT(*)",
        "json_extract(record, '$.decision') = 'deny'",
    )
    .await;
    let reported: BTreeMap<String, i64> = total["refusals"]
        .as_object()
        .expect("refusals")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_i64().unwrap_or(-1)))
        .collect();
    assert_eq!(reported, reasons);
    assert!(reasons.contains_key("no-agreement"), "{reasons:?}");

    // Per consumer, agreement and matter; per provider from the config's owners.
    assert_eq!(
        by_key(&report, "consumers", "lookups"),
        counted(&gw, &member("consumer"), "COUNT(*)", "1").await
    );
    let mut agreements = counted(&gw, &member("agreement"), "COUNT(*)", "1").await;
    agreements.remove("-");
    assert_eq!(by_key(&report, "agreements", "lookups"), agreements);
    assert_eq!(
        by_key(&report, "agreements", "refused"),
        counted(
            &gw,
            &member("agreement"),
            "COUNT(*)",
            "json_extract(record, '$.decision') = 'deny' AND json_extract(record, '$.agreement') IS NOT NULL"
        )
        .await
    );
    let mut matters = counted(&gw, &member("matter"), "COUNT(*)", "1").await;
    matters.remove("-");
    assert_eq!(by_key(&report, "matters", "lookups"), matters);
    // The config names each dataset's owner; the records name the dataset.
    let owners: String = gateway::http::usage::providers(&gw.running.app.config)
        .iter()
        .map(|(dataset, owner)| format!(" WHEN '{dataset}' THEN '{owner}'"))
        .collect();
    assert!(owners.contains("'population' THEN 'sz-psb'"), "{owners}");
    let mut providers = counted(
        &gw,
        &format!("CASE json_extract(record, '$.dataset'){owners} END"),
        "COUNT(*)",
        "json_extract(record, '$.dataset') IS NOT NULL",
    )
    .await;
    providers.remove("-"); // a dataset the config does not serve has no provider
    assert_eq!(by_key(&report, "providers", "lookups"), providers);

    // The daily series add up to the totals, one entry per reported day.
    let days = report["days"].as_array().expect("days").len();
    assert!(days >= 1);
    for s in report["consumers"].as_array().expect("consumers") {
        let series = s["days"].as_array().expect("series");
        assert_eq!(series.len(), days);
        let sum: i64 = series.iter().filter_map(|d| d["lookups"].as_i64()).sum();
        assert_eq!(json!(sum), s["total"]["lookups"], "{s}");
    }

    // The CLI prints the same figures.
    let cli = usage(&gw.config_path(), None, None, None, UsageFormat::Json)
        .await
        .expect("report usage");
    let cli: Value = serde_json::from_str(&cli).expect("JSON");
    // The answer is canonical JSON (RFC 8785 writes 1.0 as 1): numbers as numbers.
    assert_eq!(numbers(&cli["total"]), numbers(&report["total"]));
    assert_eq!(numbers(&cli["agreements"]), numbers(&report["agreements"]));
}

#[tokio::test]
async fn each_role_sees_its_scope_and_others_are_refused() {
    let gw = Gateway::start().await;
    workload(&gw).await;
    // The dept-admin of sz-psb, which provides population and consumes nothing.
    let a = gw.client("admin").get("/admin/v1/usage").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["scope"], json!({"department": "sz-psb"}));
    let population = counted(
        &gw,
        "'n'",
        "COUNT(*)",
        "json_extract(record, '$.dataset') = 'population'",
    )
    .await;
    assert_eq!(a.body["total"]["lookups"], population["n"]);
    assert_eq!(by_key(&a.body, "providers", "lookups").len(), 1);

    // A counter is refused, and the refusal is audited with what it asked.
    let head = gw.audit_head().await;
    let a = gw
        .client("counter-a")
        .get("/admin/v1/usage?from=2026-01-01")
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.body["type"], "/problems/role-required");
    let rec = gw.last_audit().await;
    assert_eq!(rec["seq"], head + 1);
    assert_eq!(rec["decision"], "deny");
    assert_eq!(rec["detail"]["usage_query"]["from"], "2026-01-01");

    // A bad range names its parameter.
    let a = gw.client("auditor").get("/admin/v1/usage?from=soon").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.body["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("from: ")),
        "{}",
        a.body
    );
    // A range that holds nothing is an empty report, not an error.
    let a = gw
        .client("auditor")
        .get("/admin/v1/usage?from=2020-01-01&to=2020-01-02")
        .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["total"]["lookups"], 0);
    assert_eq!(a.body["days"], json!([]));
}

#[tokio::test]
async fn the_cli_prints_text_json_and_csv() {
    let gw = Gateway::start().await;
    workload(&gw).await;
    let config = gw.config_path();
    let json: Value = serde_json::from_str(
        &usage(&config, None, None, None, UsageFormat::Json)
            .await
            .expect("json"),
    )
    .expect("JSON");
    let lookups = json["total"]["lookups"].as_i64().expect("lookups");

    let csv = usage(&config, None, None, None, UsageFormat::Csv)
        .await
        .expect("csv");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    assert_eq!(&header[..4], ["dimension", "key", "day", "lookups"]);
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(rows.iter().all(|r| r.len() == header.len()), "{csv}");
    let total = rows.iter().find(|r| r[0] == "total").expect("total row");
    assert_eq!(total[3], lookups.to_string());
    // The consumer rows of each day add up to the total.
    let daily: i64 = rows
        .iter()
        .filter(|r| r[0] == "consumers" && !r[2].is_empty())
        .map(|r| r[3].parse::<i64>().expect("a count"))
        .sum();
    assert_eq!(daily, lookups);

    let text = usage(&config, None, None, None, UsageFormat::Text)
        .await
        .expect("text");
    for want in [
        "By agreement",
        "hrss-population-2026",
        "By provider",
        "sz-psb",
        "By matter",
    ] {
        assert!(text.contains(want), "{want} in {text}");
    }
    assert!(text.contains(&format!(" {lookups} ")), "{text}");

    // Scoped to a department; a range in the future holds nothing.
    let scoped: Value = serde_json::from_str(
        &usage(
            &config,
            Some("2020-01-01".into()),
            None,
            Some("sz-civil".into()),
            UsageFormat::Json,
        )
        .await
        .expect("json"),
    )
    .expect("JSON");
    assert_eq!(scoped["scope"], json!({"department": "sz-civil"}));
    assert!(scoped["total"]["lookups"].as_i64() < Some(lookups));
    let path = config.to_str().expect("utf-8 path");
    assert_eq!(
        gw.tongban(&["report", "usage", "--config", path, "--format", "csv"])
            .await,
        0
    );
    let (code, err) = gw
        .tongban_output(&["report", "usage", "--config", path, "--from", "soon"])
        .await;
    assert_eq!(code, 2, "{err}");
    assert!(err.starts_with("--from: "), "{err}");
}
