use std::collections::HashSet;
use std::time::Instant;

use sqlx::sqlite::SqlitePoolOptions;
use sqlx::{Row, SqlitePool};

use super::*;
use crate::ids;
use crate::sql::{sqlite_url, SqlConnector, SqlSource};
use crate::Connector;

const SEED: u64 = 20_260_101;

fn small() -> DemoCounts {
    DemoCounts {
        residents: 1_500,
        legal_persons: 300,
        licenses: 700,
    }
}

async fn connectors(dir: &Path) -> Vec<SqlConnector> {
    let mut out = Vec::new();
    for s in demo_sources() {
        let source = SqlSource {
            name: s.connector.to_owned(),
            url: sqlite_url(&dir.join(s.file), true),
            max_connections: 2,
            acquire_timeout_ms: 1000,
        };
        out.push(
            SqlConnector::connect(&source, vec![s.binding()])
                .await
                .unwrap(),
        );
    }
    out
}

async fn raw_pool(dir: &Path, file: &str) -> SqlitePool {
    SqlitePoolOptions::new()
        .connect(&sqlite_url(&dir.join(file), true))
        .await
        .unwrap()
}

async fn column(pool: &SqlitePool, sql: &'static str) -> Vec<String> {
    sqlx::query(sql)
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect()
}

#[test]
fn sources_declare_every_field_once_with_a_class_and_kind() {
    let sources = demo_sources();
    assert_eq!(
        sources.iter().map(|s| s.dataset).collect::<Vec<_>>(),
        [
            "population",
            "legal_person",
            "e_license",
            "social_insurance"
        ]
    );
    for s in sources {
        assert!(
            crate::SubjectKind::builtin(s.subject).is_some(),
            "{}",
            s.dataset
        );
        let names: HashSet<&str> = s.fields.iter().map(|f| f.name).collect();
        assert_eq!(names.len(), s.fields.len(), "{}", s.dataset);
        for f in s.fields {
            assert!(
                ["open", "conditional", "closed"].contains(&f.class),
                "{f:?}"
            );
            assert!(!f.description.is_empty(), "{f:?}");
        }
    }
}

/// `value` is what a field of `kind` holds (null aside): the declared types are
/// what the demo's sources really return.
fn of_kind(kind: &str, value: &serde_json::Value) -> bool {
    use serde_json::Value;
    let date = |s: &str, fmt: &str| chrono::NaiveDate::parse_from_str(s, fmt).is_ok();
    match (kind, value) {
        (_, Value::Null) => true,
        ("integer", v) => v.is_i64(),
        ("string", Value::String(_)) => true,
        ("date", Value::String(s)) => date(s, "%Y-%m-%d"),
        ("month", Value::String(s)) => date(&format!("{s}-01"), "%Y-%m-%d"),
        ("json", Value::String(s)) => serde_json::from_str::<Value>(s).is_ok(),
        _ => false,
    }
}

#[tokio::test]
async fn every_generated_row_is_valid_and_linked() {
    let dir = tempfile::tempdir().unwrap();
    let counts = small();
    let samples = create_demo_databases(dir.path(), &counts, SEED)
        .await
        .unwrap();

    // Residents: count, valid unique ids, sex matching the sequence parity.
    let pop = raw_pool(dir.path(), "population.db").await;
    let rows = sqlx::query("SELECT id_number, sex FROM residents")
        .fetch_all(&pop)
        .await
        .unwrap();
    assert_eq!(rows.len(), counts.residents);
    let mut residents = HashSet::new();
    for row in &rows {
        let (id, sex): (String, String) = (row.get(0), row.get(1));
        assert_eq!(ids::check_resident_id(&id), Ok(()), "{id}");
        let odd = id.as_bytes()[16] % 2 == 1;
        assert_eq!(sex, if odd { "male" } else { "female" }, "{id}");
        assert!(residents.insert(id));
    }

    // Legal persons: valid codes, representatives are residents.
    let lp = raw_pool(dir.path(), "legal_person.db").await;
    let codes = column(&lp, "SELECT credit_code FROM legal_persons").await;
    assert_eq!(codes.len(), counts.legal_persons);
    for code in &codes {
        assert_eq!(ids::check_credit_code(code), Ok(()), "{code}");
    }
    let codes: HashSet<String> = codes.into_iter().collect();
    for rep in column(&lp, "SELECT legal_rep_id FROM legal_persons").await {
        assert!(residents.contains(&rep), "{rep}");
    }

    // Licences: valid ids, holders exist.
    let el = raw_pool(dir.path(), "e_license.db").await;
    let rows = sqlx::query("SELECT license_id, license_type, holder_id, content FROM licenses")
        .fetch_all(&el)
        .await
        .unwrap();
    assert_eq!(rows.len(), counts.licenses);
    let mut kinds = HashSet::new();
    for row in &rows {
        let (id, kind, holder, content): (String, String, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        assert_eq!(ids::check_license_id(&id), Ok(()), "{id}");
        let content: serde_json::Value = serde_json::from_str(&content).unwrap();
        match kind.as_str() {
            "营业执照" | "食品经营许可证" => {
                assert!(codes.contains(&holder), "{holder}")
            }
            "出生医学证明" => {
                assert!(residents.contains(&holder), "{holder}");
                assert!(holder[6..10].parse::<i32>().unwrap() >= 2020, "{holder}");
                for parent in ["mother_id", "father_id"] {
                    let parent = content[parent].as_str().unwrap();
                    assert!(residents.contains(parent), "{parent}");
                }
            }
            "机动车驾驶证" => assert!(residents.contains(&holder), "{holder}"),
            other => panic!("unexpected licence type {other}"),
        }
        kinds.insert(kind);
    }
    assert_eq!(kinds.len(), 4);

    // Samples: present ones found, absent ones valid and not found.
    assert_eq!(samples.residents.len(), 5);
    assert_eq!(samples.insured_residents.len(), 5);
    let cs = connectors(dir.path()).await;
    let [pop_c, lp_c, el_c, si_c] = [&cs[0], &cs[1], &cs[2], &cs[3]];
    let sources = demo_sources();
    for (c, source, present, absent) in [
        (
            pop_c,
            &sources[0],
            &samples.residents,
            &samples.absent_resident,
        ),
        (
            lp_c,
            &sources[1],
            &samples.credit_codes,
            &samples.absent_credit_code,
        ),
        (
            el_c,
            &sources[2],
            &samples.license_ids,
            &samples.absent_license_id,
        ),
        (
            si_c,
            &sources[3],
            &samples.insured_residents,
            &samples.absent_resident,
        ),
    ] {
        let d = Dataset::new(source.dataset);
        let kind = crate::SubjectKind::builtin(source.subject).unwrap();
        assert_eq!(kind.validate(absent), Ok(()), "{absent}");
        assert!(c.lookup(&d, absent).await.unwrap().is_none(), "{absent}");
        for s in present {
            let record = c.lookup(&d, s).await.unwrap().unwrap();
            assert_eq!(record.len(), source.fields.len());
            for f in source.fields {
                assert!(
                    of_kind(f.kind, &record[f.name]),
                    "{d}.{}: {record:?}",
                    f.name
                );
            }
        }
    }
    // The insured are residents.
    for r in &samples.insured_residents {
        assert!(residents.contains(r), "{r}");
    }

    // Every sample licence verifies through the connector; tampering is detected.
    for id in &samples.license_ids {
        let mut record = el_c
            .lookup(&Dataset::new("e_license"), id)
            .await
            .unwrap()
            .unwrap();
        assert!(
            verify_license_signature(&record, &samples.issuer_public_key),
            "{id}"
        );
        record.insert("status".into(), "valid-forever".into());
        assert!(!verify_license_signature(
            &record,
            &samples.issuer_public_key
        ));
    }
    assert_eq!(
        samples.issuer_public_key,
        demo_issuer_public_key(SEED).unwrap()
    );

    // Integer columns come back as numbers.
    let company = lp_c
        .lookup(&Dataset::new("legal_person"), &samples.credit_codes[0])
        .await
        .unwrap()
        .unwrap();
    assert!(company["registered_capital"].is_i64(), "{company:?}");
}

#[tokio::test]
async fn same_seed_same_records_and_rerun_overwrites() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let counts = small();
    let first = create_demo_databases(a.path(), &counts, SEED)
        .await
        .unwrap();
    let second = create_demo_databases(b.path(), &counts, SEED)
        .await
        .unwrap();
    assert_eq!(first, second);
    let (ca, cb) = (connectors(a.path()).await, connectors(b.path()).await);
    let subjects = [
        &first.residents[0],
        &first.credit_codes[0],
        &first.license_ids[0],
        &first.insured_residents[0],
    ];
    for (i, (source, subject)) in demo_sources().iter().zip(subjects).enumerate() {
        let d = Dataset::new(source.dataset);
        let ra = ca[i].lookup(&d, subject).await.unwrap();
        assert!(ra.is_some());
        assert_eq!(ra, cb[i].lookup(&d, subject).await.unwrap());
    }
    for c in &ca {
        c.close().await;
    }

    // Re-running in the same directory replaces the files.
    let again = create_demo_databases(a.path(), &counts, SEED)
        .await
        .unwrap();
    assert_eq!(again, first);
    let other = create_demo_databases(a.path(), &counts, SEED + 1)
        .await
        .unwrap();
    assert_ne!(other.residents, first.residents);
    assert_ne!(other.issuer_public_key, first.issuer_public_key);
    let pop = raw_pool(a.path(), "population.db").await;
    let n: i64 = sqlx::query("SELECT COUNT(*) FROM residents")
        .fetch_one(&pop)
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, i64::try_from(counts.residents).unwrap());
}

#[tokio::test]
async fn first_residents_do_not_depend_on_other_counts() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let more = DemoCounts {
        legal_persons: 50,
        licenses: 20,
        ..small()
    };
    let x = create_demo_databases(a.path(), &small(), 7).await.unwrap();
    let y = create_demo_databases(b.path(), &more, 7).await.unwrap();
    assert_eq!(x.residents, y.residents);
    assert_eq!(x.credit_codes, y.credit_codes);
}

#[tokio::test]
async fn default_counts_complete() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let samples = create_demo_databases(dir.path(), &DemoCounts::default(), SEED)
        .await
        .unwrap();
    // Timing is informative only (debug builds are slow); not asserted.
    eprintln!("default demo databases in {:?}", started.elapsed());
    assert_eq!(samples.license_ids.len(), 5);
}

#[tokio::test]
async fn tiny_and_empty_counts() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = DemoCounts {
        residents: 3,
        legal_persons: 2,
        licenses: 9,
    };
    let samples = create_demo_databases(dir.path(), &tiny, 1).await.unwrap();
    assert_eq!(samples.residents.len(), 3);
    let none = DemoCounts {
        residents: 0,
        legal_persons: 0,
        licenses: 0,
    };
    create_demo_databases(dir.path(), &none, 1).await.unwrap();
    let bad = DemoCounts {
        residents: 0,
        ..tiny
    };
    let e = create_demo_databases(dir.path(), &bad, 1)
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectorError::Config(_)), "{e:?}");
}

#[test]
fn signing_input_is_canonical_and_complete() {
    let mut record = Record::new();
    for f in SIGNED_FIELDS.iter().rev() {
        record.insert((*f).to_owned(), serde_json::Value::String(format!("v-{f}")));
    }
    record.insert("valid_until".into(), serde_json::Value::Null);
    record.insert("issuer_signature".into(), "ignored".into());
    let input = String::from_utf8(license_signing_input(&record).unwrap()).unwrap();
    assert!(
        input.starts_with(r#"{"content":"v-content","file_sha256":"#),
        "{input}"
    );
    assert!(input.contains(r#""valid_until":null"#));
    assert!(!input.contains("issuer_signature"));
    record.remove("holder_id");
    let e = license_signing_input(&record).unwrap_err();
    assert!(e.to_string().contains("holder_id"), "{e}");
    assert!(!verify_license_signature(&record, &[0u8; 32]));
}
