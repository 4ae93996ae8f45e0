//! The state database's schema comes from sqlx migrations: a database made by the
//! release before them (tables, no migrations table) and an older one without the
//! audit search columns upgrade in place, records unchanged and still verifiable; a
//! fresh database gets every table; a second start changes nothing; the audit and
//! policy migration sets share one database. SQLite in a temporary directory, and
//! PostgreSQL at 127.0.0.1:5432 in databases the tests create and drop.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::path::Path;
use std::sync::Arc;

use audit::signing::Signer;
use audit::{
    self, seal_entry, AuditEntry, AuditStore, Checkpoint, Database, Decision, Filter, Row,
    VerifyOptions, GENESIS,
};
use futures_util::TryStreamExt as _;
use policy::AgreementStore;
use rustls_pki_types::pem::PemObject as _;
use sqlx::migrate::Migrator;
use sqlx::AnyPool;
use tongban_tests::PgDatabase;

/// The release before migrations (f75afe8) made its tables at every start with the
/// very SQL of the first migrations, taken from it verbatim: on SQLite the audit
/// tables, then `add_search_columns` (the ALTERs and UPDATE of 0002), then the
/// indexes; on PostgreSQL the tables with their search columns, then the indexes;
/// the policy statements on either. Released migrations never change (see
/// [`RELEASED`]), so running them as plain SQL, with no migrations table, makes a
/// database as that release left it.
const SQLITE_TABLES: &str = include_str!("../audit/migrations/sqlite/0001_audit_tables.sql");
const SQLITE_SEARCH: &str = include_str!("../audit/migrations/sqlite/0002_search_columns.sql");
const PG_TABLES: &str = include_str!("../audit/migrations/postgres/0001_audit_tables.sql");
const PG_SEARCH: &str = include_str!("../audit/migrations/postgres/0002_search_indexes.sql");
const POLICY_TABLES: &str = include_str!("../policy/migrations/0001_policy_tables.sql");

/// The audit store's migrations on PostgreSQL (audit/migrations/postgres/); SQLite has
/// 0005 besides ([`audit_migrations`]).
const AUDIT_MIGRATIONS: usize = 6;

/// The policy store's migrations (policy/migrations/).
const POLICY_MIGRATIONS: usize = 2;

/// Every table a migrated state database holds.
const TABLES: [&str; 15] = [
    "_sqlx_migrations_audit",
    "_sqlx_migrations_policy",
    "access_request_history",
    "access_requests",
    "audit_archive",
    "audit_checkpoint",
    "audit_cosignature",
    "audit_log",
    "audit_tree",
    "audit_verify_run",
    "policy_agreements",
    "policy_counters",
    "policy_history",
    "policy_meta",
    "role_bindings",
];

/// Tables only a SQLite state database holds: its search index per segment
/// (migration 0005; PostgreSQL keeps indexed search columns).
const SQLITE_INDEX_TABLES: [&str; 3] = ["audit_index", "audit_index_segment", "audit_segment"];

/// Audit migrations a database records: SQLite has 0005 besides.
fn audit_migrations(db: &Db) -> usize {
    if db.is_sqlite() {
        AUDIT_MIGRATIONS + 1
    } else {
        AUDIT_MIGRATIONS
    }
}

/// Every table `db` holds once migrated, sorted.
fn tables(db: &Db) -> Vec<&'static str> {
    let mut t = TABLES.to_vec();
    if db.is_sqlite() {
        t.extend(SQLITE_INDEX_TABLES);
        t.sort_unstable();
    }
    t
}

/// Released migration files and the start of their checksum (SHA-384, as sqlx
/// records it). sqlx refuses to start on a database whose applied migration has
/// another checksum: a released file never changes; a change is a new file.
const RELEASED: [(&str, &str); 5] = [
    (
        "audit/migrations/sqlite/0001_audit_tables.sql",
        "3d3438af04d6bd97",
    ),
    (
        "audit/migrations/sqlite/0002_search_columns.sql",
        "7d4f432fa839ec40",
    ),
    (
        "audit/migrations/postgres/0001_audit_tables.sql",
        "eb833d0af97c4343",
    ),
    (
        "audit/migrations/postgres/0002_search_indexes.sql",
        "e7cf887b6764dae5",
    ),
    (
        "policy/migrations/0001_policy_tables.sql",
        "9553e7ea18ee92f7",
    ),
];

const RECORDS: i64 = 12;
const COUNTER: &str = "urn:tongban:sz-hrss:counter-01";

/// One state database under test, reached both as the gateway reaches it and through
/// a plain connection for the checks.
struct Db {
    state: Database,
    url: String,
    /// Dropped with the test: removes the directory or drops the database.
    _dir: Option<tempfile::TempDir>,
    _pg: Option<PgDatabase>,
}

impl Db {
    fn is_sqlite(&self) -> bool {
        matches!(self.state, Database::Sqlite(_))
    }

    fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        Self {
            url: AgreementStore::sqlite_url(&path),
            state: Database::Sqlite(path),
            _dir: Some(dir),
            _pg: None,
        }
    }

    async fn postgres(purpose: &str) -> Option<Self> {
        let db = PgDatabase::create(purpose).await?;
        Some(Self {
            url: db.url(),
            state: Database::Postgres(db.url()),
            _dir: None,
            _pg: Some(db),
        })
    }

    fn is_pg(&self) -> bool {
        matches!(self.state, Database::Postgres(_))
    }

    async fn conn(&self) -> AnyPool {
        sqlx::any::install_default_drivers();
        AnyPool::connect(&self.url).await.unwrap()
    }

    /// Open both stores, as a gateway starting on this database does.
    async fn open(&self) -> (AuditStore, AgreementStore) {
        let audit = AuditStore::open(&self.state).await.unwrap();
        let policy = AgreementStore::connect(&self.url, 2).await.unwrap();
        (audit, policy)
    }

    /// Tables, their columns and the indexes, in one comparable list.
    async fn schema(&self) -> Vec<String> {
        let sql = if self.is_pg() {
            "SELECT 'column ' || table_name || '.' || column_name || ' ' || data_type
                 || ' ' || is_nullable
             FROM information_schema.columns WHERE table_schema = 'public'
             UNION ALL
             SELECT 'index ' || tablename || '.' || indexname
             FROM pg_indexes WHERE schemaname = 'public'"
        } else {
            "SELECT 'column ' || m.name || '.' || p.name || ' ' || p.type
                 || ' ' || p.\"notnull\" || ' ' || p.pk
             FROM sqlite_master m JOIN pragma_table_info(m.name) p WHERE m.type = 'table'
             UNION ALL
             SELECT 'index ' || tbl_name || '.' || name
             FROM sqlite_master WHERE type = 'index'"
        };
        let pool = self.conn().await;
        let mut rows: Vec<String> = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
        rows.sort();
        rows
    }

    async fn tables(&self) -> Vec<String> {
        let sql = if self.is_pg() {
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables
             WHERE table_schema = 'public' ORDER BY table_name"
        } else {
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        };
        sqlx::query_scalar(sql)
            .fetch_all(&self.conn().await)
            .await
            .unwrap()
    }

    /// The applied migrations of one set as sqlx recorded them: version,
    /// description, checksum.
    async fn recorded(&self, table: &str) -> Vec<(i64, String, Vec<u8>)> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT version, description, checksum FROM {table} ORDER BY version"
        )))
        .fetch_all(&self.conn().await)
        .await
        .unwrap()
    }

    /// The applied migrations of one set: version, success and when.
    async fn applied(&self, table: &str) -> Vec<String> {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT CAST(version AS TEXT) || ' ' || CAST(success AS TEXT) || ' '
                 || CAST(installed_on AS TEXT)
             FROM {table} ORDER BY version"
        )))
        .fetch_all(&self.conn().await)
        .await
        .unwrap()
    }
}

fn signer() -> Arc<Signer> {
    let pem = Signer::generate_pem().unwrap();
    let der = rustls_pki_types::PrivatePkcs8KeyDer::from_pem_slice(pem.as_bytes()).unwrap();
    Arc::new(Signer::from_pkcs8(der.secret_pkcs8_der()).unwrap())
}

/// A chain of [`RECORDS`] records and the checkpoint sealing it.
fn chain(signer: &Signer) -> (Vec<(Row, AuditEntry)>, Checkpoint) {
    let mut prev = GENESIS.to_owned();
    let mut out = Vec::new();
    for seq in 1..=RECORDS {
        let entry = AuditEntry {
            time: format!("2026-11-20T08:00:{seq:02}.000000Z"),
            request_id: format!("old-{seq}"),
            node: "gw-old".into(),
            consumer: Some(COUNTER.into()),
            operator: Some(format!("clerk-{}", seq % 3)),
            dataset: Some("population".into()),
            subject: Some(format!("S{}", seq % 4)),
            matter: Some("social-insurance-enrollment".into()),
            case_id: Some(format!("SB-2026-{seq:06}")),
            decision: if seq % 5 == 0 {
                Decision::Deny
            } else {
                Decision::Allow
            },
            status: 200,
            ..AuditEntry::default()
        };
        let (record, hash) = seal_entry(seq, &prev, &entry).unwrap();
        prev.clone_from(&hash);
        out.push((Row { seq, hash, record }, entry));
    }
    let checkpoint = Checkpoint::sign(signer, RECORDS, &prev, "gw-old").unwrap();
    (out, checkpoint)
}

/// The migrations of a directory of the workspace, as sqlx reads one.
async fn files(dir: &str) -> Vec<(i64, String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
    let migrator = Migrator::new(dir.as_path()).await.unwrap();
    migrator
        .iter()
        .map(|m| (m.version, m.description.to_string(), m.checksum.to_vec()))
        .collect()
}

/// Run old schema SQL on a database, outside any migrator.
async fn make_old(db: &Db, statements: &[&'static str]) {
    let pool = db.conn().await;
    for sql in statements {
        sqlx::raw_sql(*sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
}

/// Write the chain, its checkpoint and some policy state into a database made by
/// old schema SQL, the way the old gateway wrote them (with the search columns
/// when the table has them).
async fn fill(db: &Db, signer: &Signer, search_columns: bool) -> Vec<Row> {
    let pool = db.conn().await;
    let (records, checkpoint) = chain(signer);
    for (row, e) in &records {
        let q = if search_columns {
            sqlx::query(
                "INSERT INTO audit_log (seq, hash, record, time, consumer, operator, dataset,
                     subject, matter, case_id, decision)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            )
        } else {
            sqlx::query("INSERT INTO audit_log (seq, hash, record) VALUES ($1, $2, $3)")
        };
        let mut q = q.bind(row.seq).bind(&row.hash).bind(&row.record);
        if search_columns {
            q = q
                .bind(&e.time)
                .bind(e.consumer.clone())
                .bind(e.operator.clone())
                .bind(e.dataset.clone())
                .bind(e.subject.clone())
                .bind(e.matter.clone())
                .bind(e.case_id.clone())
                .bind(e.decision.as_str());
        }
        q.execute(&pool).await.unwrap();
    }
    sqlx::query("INSERT INTO audit_checkpoint (seq, hash, checkpoint) VALUES ($1, $2, $3)")
        .bind(checkpoint.seq)
        .bind(&checkpoint.hash)
        .bind(checkpoint.to_json())
        .execute(&pool)
        .await
        .unwrap();
    if db.tables().await.iter().any(|t| t == "policy_meta") {
        sqlx::raw_sql(
            "UPDATE policy_meta SET version = 1 WHERE id = 1;
             INSERT INTO role_bindings (identity, role)
                 VALUES ('urn:tongban:sz-hrss:counter-01', 'counter');
             INSERT INTO policy_history (version, kind, subject, action, actor, at, after_json)
                 VALUES (1, 'role', 'urn:tongban:sz-hrss:counter-01', 'bind', 'cli:test',
                     '2026-11-20T08:00:00Z', '\"counter\"');",
        )
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
    records.into_iter().map(|(row, _)| row).collect()
}

/// The upgraded store holds the same records, `audit verify` passes over them with
/// the old checkpoint, and search finds them through the search columns.
async fn check_audit(store: &AuditStore, before: &[Row], signer: &Signer) {
    let after: Vec<Row> = store.rows(1, i64::MAX).try_collect().await.unwrap();
    assert_eq!(after, before, "the upgrade must not touch the chain");
    let opts = VerifyOptions {
        jwks: signer.jwks(),
        ..VerifyOptions::default()
    };
    let report = audit::verify(store, &opts, |_| {}).await.unwrap();
    assert!(report.failure.is_none(), "{report:?}");
    assert_eq!(report.records, RECORDS as u64);
    assert_eq!((report.checkpoints, report.sealed), (1, RECORDS));

    // seq % 4 == 1 and seq % 3 == 0; every fifth a denial; the last three by time.
    for (conditions, want) in [
        (&[("subject", "S1"), ("operator", "clerk-0")][..], vec![9]),
        (&[("decision", "deny")][..], vec![5, 10]),
        (&[("from", "2026-11-20T08:00:10Z")][..], vec![10, 11, 12]),
    ] {
        let mut filter = Filter::default();
        for (name, value) in conditions {
            filter.set(name, value).unwrap();
        }
        let hits: Vec<i64> = store
            .search(&filter, 0, 100)
            .await
            .unwrap()
            .iter()
            .map(|r| r.seq)
            .collect();
        assert_eq!(
            hits, want,
            "search by {conditions:?} reads the search columns"
        );
    }
}

async fn check_policy(store: &AgreementStore) {
    assert_eq!(store.version().await.unwrap(), 1);
    let roles = store.roles().await.unwrap();
    assert_eq!(roles.len(), 1, "{roles:?}");
    assert_eq!(
        (roles[0].identity.as_str(), roles[0].role.as_str()),
        (COUNTER, "counter")
    );
    assert_eq!(store.history(None, 10).await.unwrap().len(), 1);
}

/// The schema a fresh database gets, for comparison with an upgraded one.
async fn fresh_schema(db: &Db) -> Vec<String> {
    db.open().await;
    db.schema().await
}

/// A fresh database gets every table and records as applied exactly the migration
/// files of the workspace; released files are unchanged.
async fn fresh_database_applies_the_files(db: Db, audit_dir: &str) {
    db.open().await;
    assert_eq!(db.tables().await, tables(&db));
    assert_eq!(
        db.recorded("_sqlx_migrations_audit").await,
        files(audit_dir).await
    );
    assert_eq!(
        db.recorded("_sqlx_migrations_policy").await,
        files("policy/migrations").await
    );
    for (file, checksum) in RELEASED {
        let (dir, name) = file.rsplit_once('/').unwrap();
        let version: i64 = name[..4].parse().unwrap();
        let Some((_, _, sum)) = files(dir).await.into_iter().find(|m| m.0 == version) else {
            panic!("{file}: a released migration is gone");
        };
        assert_eq!(
            hex(&sum[..8]),
            checksum,
            "{file} changed after its release: put the change in a new migration"
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn a_fresh_sqlite_database_applies_the_files() {
    fresh_database_applies_the_files(Db::sqlite(), "audit/migrations/sqlite").await;
}

#[tokio::test]
async fn a_fresh_postgres_database_applies_the_files() {
    let Some(db) = Db::postgres("fresh").await else {
        return;
    };
    fresh_database_applies_the_files(db, "audit/migrations/postgres").await;
}

/// A release database upgrades: records, verification, search and policy state
/// survive; the schema ends as a fresh one's; a second start changes nothing.
async fn release_upgrades(db: Db, fresh: Db, old_sql: &[&'static str]) {
    let key = signer();
    make_old(&db, old_sql).await;
    let before = fill(&db, &key, true).await;

    let (audit, policy) = db.open().await;
    check_audit(&audit, &before, &key).await;
    check_policy(&policy).await;
    assert_eq!(db.schema().await, fresh_schema(&fresh).await);

    let applied = (
        db.applied("_sqlx_migrations_audit").await,
        db.applied("_sqlx_migrations_policy").await,
    );
    assert_eq!(
        (applied.0.len(), applied.1.len()),
        (audit_migrations(&db), POLICY_MIGRATIONS),
        "{applied:?}"
    );
    let schema = db.schema().await;
    let (audit, policy) = db.open().await;
    assert_eq!(db.schema().await, schema);
    let again = (
        db.applied("_sqlx_migrations_audit").await,
        db.applied("_sqlx_migrations_policy").await,
    );
    assert_eq!(again, applied, "a second start applies nothing");
    check_audit(&audit, &before, &key).await;
    check_policy(&policy).await;
}

#[tokio::test]
async fn a_sqlite_release_database_upgrades_in_place() {
    release_upgrades(
        Db::sqlite(),
        Db::sqlite(),
        &[SQLITE_TABLES, SQLITE_SEARCH, POLICY_TABLES],
    )
    .await;
}

#[tokio::test]
async fn a_postgres_release_database_upgrades_in_place() {
    let (Some(db), Some(fresh)) = (Db::postgres("upgrade").await, Db::postgres("fresh").await)
    else {
        return;
    };
    release_upgrades(db, fresh, &[PG_TABLES, PG_SEARCH, POLICY_TABLES]).await;
}

/// An audit database from before the search columns gets them, filled from the
/// records, and ends with a fresh database's audit tables.
#[tokio::test]
async fn a_sqlite_audit_log_without_search_columns_gets_them() {
    let (db, fresh) = (Db::sqlite(), Db::sqlite());
    let key = signer();
    make_old(&db, &[SQLITE_TABLES]).await;
    let before = fill(&db, &key, false).await;

    let (audit, _) = db.open().await;
    check_audit(&audit, &before, &key).await;
    assert_eq!(db.schema().await, fresh_schema(&fresh).await);
    assert_eq!(
        db.applied("_sqlx_migrations_audit").await.len(),
        audit_migrations(&db)
    );
}

/// Each store records its migrations in its own table, so the two sets share one
/// database in either order, and neither needs the other.
async fn sets_share_one_database(first_policy: Db, first_audit: Db) {
    AgreementStore::connect(&first_policy.url, 1).await.unwrap();
    assert_eq!(
        first_policy.tables().await,
        [
            "_sqlx_migrations_policy",
            "access_request_history",
            "access_requests",
            "policy_agreements",
            "policy_counters",
            "policy_history",
            "policy_meta",
            "role_bindings"
        ]
    );
    AuditStore::open(&first_audit.state).await.unwrap();
    let audit_tables: Vec<&str> = tables(&first_audit)
        .into_iter()
        .filter(|t| t.contains("audit"))
        .collect();
    assert_eq!(first_audit.tables().await, audit_tables);
    for db in [&first_policy, &first_audit] {
        db.open().await;
        assert_eq!(db.tables().await, tables(db));
        assert_eq!(
            db.applied("_sqlx_migrations_audit").await.len(),
            audit_migrations(db)
        );
        assert_eq!(
            db.applied("_sqlx_migrations_policy").await.len(),
            POLICY_MIGRATIONS
        );
    }
    assert_eq!(first_policy.schema().await, first_audit.schema().await);
}

#[tokio::test]
async fn sqlite_migration_sets_share_one_database() {
    sets_share_one_database(Db::sqlite(), Db::sqlite()).await;
}

#[tokio::test]
async fn postgres_migration_sets_share_one_database() {
    let (Some(a), Some(b)) = (Db::postgres("sets").await, Db::postgres("sets").await) else {
        return;
    };
    sets_share_one_database(a, b).await;
}

/// Stores opening together on one fresh database (gateways starting at once, or a
/// command run as one starts): every one opens, each migration is applied once.
async fn opening_together_migrates_once(db: Db) {
    let mut opens = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (state, url) = (db.state.clone(), db.url.clone());
        opens.spawn(async move {
            AuditStore::open(&state)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        opens.spawn(async move {
            AgreementStore::connect(&url, 1)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
    }
    while let Some(opened) = opens.join_next().await {
        opened.unwrap().unwrap();
    }
    assert_eq!(db.tables().await, tables(&db));
    assert_eq!(
        db.applied("_sqlx_migrations_audit").await.len(),
        audit_migrations(&db)
    );
    assert_eq!(
        db.applied("_sqlx_migrations_policy").await.len(),
        POLICY_MIGRATIONS
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_stores_opening_together_migrate_once() {
    opening_together_migrates_once(Db::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_stores_opening_together_migrate_once() {
    let Some(db) = Db::postgres("together").await else {
        return;
    };
    opening_together_migrates_once(db).await;
}
