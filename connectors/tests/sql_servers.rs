//! The SQL connector against the real database servers on this machine: PostgreSQL
//! (127.0.0.1:5432, user postgres) and MariaDB (127.0.0.1:3306, root). Each test
//! creates its own uniquely named database and drops it afterwards, even when the
//! test fails.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::future::Future;

use connectors::sql::{SqlBinding, SqlConnector, SqlSource};
use connectors::{Connector, ConnectorError, Dataset, Key, Query, SubjectKind};
use serde_json::json;
use sqlx::any::AnyPoolOptions;
use sqlx::AssertSqlSafe;

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const MARIA_ADMIN: &str = "mysql://root@127.0.0.1:3306/mysql";

const RESIDENT: &str = "11010519491231002X";
const OTHER_RESIDENT: &str = "34052419800101001X";
const COMPANY: &str = "91350100M000100Y43";

/// Subjects carrying SQL. Validation refuses every one of them (checked below); the
/// connector, handed them anyway, must find nothing and change nothing.
const EVIL: &[&str] = &[
    "' OR 1=1 --",
    "x' OR '1'='1",
    "1; DROP TABLE residents; --",
    "11010519491231002X' --",
    "\\'; DELETE FROM residents; #",
];

fn unique_name(kind: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("tongban_test_{kind}_{}_{nanos}", std::process::id())
}

/// Creates database `name` through `admin`, runs `body` with the new database's URL,
/// then drops it whatever happened.
async fn with_database<F, Fut>(admin: &str, url_of: impl Fn(&str) -> String, body: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    sqlx::any::install_default_drivers();
    let kind = if admin.starts_with("postgres") {
        "pg"
    } else {
        "my"
    };
    let name = unique_name(kind);
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(admin)
        .await
        .unwrap_or_else(|e| panic!("database server at {admin} must be running: {e}"));
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .unwrap();
    let outcome = tokio::spawn(body(url_of(&name))).await;
    sqlx::query(AssertSqlSafe(format!("DROP DATABASE {name}")))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn seed(url: &str, statements: &[&str]) {
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap();
    for s in statements {
        sqlx::query(AssertSqlSafe(s.to_string()))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
}

fn source(url: &str) -> SqlSource {
    serde_json::from_value(
        json!({"name": "dept-db", "url": url, "max_connections": 2, "acquire_timeout_ms": 2000}),
    )
    .unwrap()
}

/// How each server spells its placeholders and a cast of a date to text (the `Any`
/// driver decodes no date types; PostgreSQL's `CHAR(n)` is `bpchar`, which it does not
/// decode either).
#[derive(Clone, Copy)]
struct Dialect {
    placeholder: fn(usize) -> String,
    text: &'static str,
}

const POSTGRES: Dialect = Dialect {
    placeholder: pg_placeholder,
    text: "TEXT",
};

const MARIADB: Dialect = Dialect {
    placeholder: my_placeholder,
    text: "CHAR(10)",
};

fn pg_placeholder(n: usize) -> String {
    format!("${n}")
}

fn my_placeholder(_: usize) -> String {
    "?".to_owned()
}

fn bindings(d: Dialect) -> Vec<SqlBinding> {
    let p = d.placeholder;
    let text = d.text;
    vec![
        serde_json::from_value(json!({
            "dataset": "population",
            "query": format!("SELECT full_name, sex, CAST(born AS {text}) AS born, children, \
                              height FROM residents WHERE id_number = {}", p(1)),
            "fields": {"name": "full_name", "sex": "sex", "birth_date": "born",
                       "status": "children", "ethnicity": "height"}
        }))
        .unwrap(),
        serde_json::from_value(json!({
            "dataset": "e_license",
            "query": format!("SELECT license_type, holder_id, status FROM licenses \
                              WHERE license_id = {}", p(1)),
            "holder_query": format!("SELECT license_type, holder_id, status FROM licenses \
                                     WHERE holder_id = {} AND license_type = {} \
                                     ORDER BY issued_on DESC LIMIT 1", p(1), p(2)),
            "fields": {"license_type": "license_type", "holder_id": "holder_id", "status": "status"}
        }))
        .unwrap(),
    ]
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE residents (id_number VARCHAR(18) PRIMARY KEY, full_name VARCHAR(64) NOT NULL, \
     sex VARCHAR(8), born DATE, children INTEGER, height DOUBLE PRECISION)",
    "INSERT INTO residents VALUES ('11010519491231002X', '张三', 'female', '1949-12-31', 2, 1.62)",
    "INSERT INTO residents VALUES ('34052419800101001X', 'O''Brien; --', 'male', NULL, NULL, NULL)",
    "CREATE TABLE licenses (license_id VARCHAR(96) PRIMARY KEY, license_type VARCHAR(32), \
     holder_id VARCHAR(18), status VARCHAR(16), issued_on VARCHAR(10))",
    "INSERT INTO licenses VALUES ('L-1', '营业执照', '91350100M000100Y43', 'expired', '2001-01-01')",
    "INSERT INTO licenses VALUES ('L-2', '营业执照', '91350100M000100Y43', 'valid', '2021-01-01')",
];

async fn exercise(url: String, dialect: Dialect) {
    seed(&url, SCHEMA).await;
    let c = SqlConnector::connect(&source(&url), bindings(dialect))
        .await
        .unwrap();
    c.health().await.unwrap();

    let found = c
        .lookup(&Dataset::new("population"), RESIDENT)
        .await
        .unwrap();
    assert_eq!(
        serde_json::Value::Object(found.unwrap()),
        json!({"name": "张三", "sex": "female", "birth_date": "1949-12-31",
               "status": 2, "ethnicity": 1.62})
    );
    let nulls = c
        .lookup(&Dataset::new("population"), OTHER_RESIDENT)
        .await
        .unwrap();
    assert_eq!(nulls.unwrap()["birth_date"], serde_json::Value::Null);
    let absent = c
        .lookup(&Dataset::new("population"), "11010519900307457X")
        .await
        .unwrap();
    assert!(absent.is_none());

    // Holder lookups bind both values and take the newest licence.
    let q = Query {
        dataset: Dataset::new("e_license"),
        key: Key::Holder {
            holder_id: COMPANY.to_owned(),
            license_type: "营业执照".to_owned(),
        },
    };
    let newest = q.run(&c).await.unwrap().unwrap();
    assert_eq!(newest["status"], "valid");

    // SQL in a subject: refused by validation, and inert as a bound parameter.
    for evil in EVIL {
        assert!(SubjectKind::ResidentId.validate(evil).is_err(), "{evil}");
        assert!(c
            .lookup(&Dataset::new("population"), evil)
            .await
            .unwrap()
            .is_none());
        let evil_holder = c
            .lookup_by_holder(&Dataset::new("e_license"), COMPANY, evil)
            .await
            .unwrap();
        assert!(evil_holder.is_none(), "{evil}");
    }
    // A stored value with quotes is data, and the table survived.
    let obrien = c
        .lookup(&Dataset::new("population"), OTHER_RESIDENT)
        .await
        .unwrap();
    assert_eq!(obrien.unwrap()["name"], "O'Brien; --");
    assert!(c
        .lookup(&Dataset::new("population"), RESIDENT)
        .await
        .unwrap()
        .is_some());
    c.close().await;
}

#[tokio::test]
async fn postgresql_source() {
    with_database(
        PG_ADMIN,
        |db| format!("postgres://postgres@127.0.0.1:5432/{db}"),
        |url| exercise(url, POSTGRES),
    )
    .await;
}

#[tokio::test]
async fn mariadb_source() {
    with_database(
        MARIA_ADMIN,
        |db| format!("mysql://root@127.0.0.1:3306/{db}"),
        |url| exercise(url, MARIADB),
    )
    .await;
}

#[tokio::test]
async fn unreachable_server_is_unavailable_and_bad_credentials_too() {
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut src = source(&format!("postgres://postgres@127.0.0.1:{port}/x"));
    src.acquire_timeout_ms = 300;
    let e = SqlConnector::connect(&src, bindings(POSTGRES))
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectorError::Unavailable(_)), "{e:?}");
    assert!(e.is_transient());
    let lazy = SqlConnector::connect_lazy(&src, bindings(POSTGRES)).unwrap();
    let e = lazy
        .lookup(&Dataset::new("population"), RESIDENT)
        .await
        .unwrap_err();
    assert!(matches!(e, ConnectorError::Unavailable(_)), "{e:?}");

    let mut wrong_db = source("postgres://postgres@127.0.0.1:5432/tongban_no_such_database");
    wrong_db.acquire_timeout_ms = 1000;
    let e = SqlConnector::connect(&wrong_db, bindings(POSTGRES))
        .await
        .unwrap_err();
    assert!(
        matches!(e, ConnectorError::Config(_)),
        "a refusal by a live server is configuration: {e:?}"
    );
    assert!(
        e.to_string().contains("tongban_no_such_database"),
        "the error names the database: {e}"
    );
}
