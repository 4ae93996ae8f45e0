//! Agreements, their history, role bindings and usage counters in the state
//! database: SQLite for one gateway, PostgreSQL for several sharing one store. One
//! code path over sqlx's `Any` driver (`$n` placeholders work on both).
//!
//! Every change runs in one transaction that first bumps the single row of
//! `policy_meta`. That row lock orders writers, so history versions commit in
//! version order and a gateway that has applied version `v` can catch up by reading
//! the history after `v` — nothing can appear later below it.

use std::fmt;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde_json::Value;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor as _, Row as _};

mod requests;

pub use requests::RequestFilter;

use crate::error::Refusal;
use crate::{Agreement, PolicyError};

/// A role granted to an identity (`counter`, `dept-admin`, `auditor`, or a name
/// agreements grant to as `role:<name>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleBinding {
    /// Identity URI.
    pub identity: String,
    /// Role name.
    pub role: String,
}

impl RoleBinding {
    /// Check that the identity is a `urn:tongban:<dept>:<system>` identity and the
    /// role a role name (what an agreement's `role:<name>` may name); the error names
    /// the field.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let bad = |field: &str, message: String| PolicyError::BadBinding {
            field: field.to_owned(),
            message,
        };
        self.identity.parse::<certs::Identity>().map_err(|e| {
            bad(
                "identity",
                format!("{:?} is not an identity: {e}", self.identity),
            )
        })?;
        if !crate::agreement::is_role_name(&self.role) {
            return Err(bad(
                "role",
                format!(
                    "{:?}: a role name is 1-64 lowercase letters, digits, '-' or '_'",
                    self.role
                ),
            ));
        }
        Ok(())
    }
}

/// An agreement as stored, with the version of its last change.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAgreement {
    /// The agreement.
    pub agreement: Agreement,
    /// Store version of its last change.
    pub version: i64,
    /// When it last changed (RFC 3339, UTC).
    pub updated_at: String,
    /// Who changed it last.
    pub updated_by: String,
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A new agreement.
    Create,
    /// An agreement replaced.
    Update,
    /// An agreement removed.
    Revoke,
    /// A role granted.
    Bind,
    /// A role taken away.
    Unbind,
}

impl Action {
    /// `create`, `update`, `revoke`, `bind`, `unbind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Revoke => "revoke",
            Action::Bind => "bind",
            Action::Unbind => "unbind",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "create" => Action::Create,
            "revoke" => Action::Revoke,
            "bind" => Action::Bind,
            "unbind" => Action::Unbind,
            _ => Action::Update,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One version in the history: who changed what, when, from what to what.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// Store version this change made.
    pub version: i64,
    /// `agreement` or `role`.
    pub kind: String,
    /// The agreement id, or the identity whose roles changed.
    pub subject: String,
    /// What happened.
    pub action: Action,
    /// Who did it (an identity URI for the admin API, `cli:<name>` for the CLI).
    pub actor: String,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Before (JSON), absent for a create.
    pub before: Option<Value>,
    /// After (JSON), absent for a revoke.
    pub after: Option<Value>,
}

/// A change asked of the store.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// Create; refused if the id exists.
    Create(Agreement),
    /// Create or replace.
    Put(Agreement),
    /// Replace; refused if the id does not exist.
    Update(Agreement),
    /// Remove; refused if the id does not exist.
    Revoke(String),
}

impl Edit {
    fn id(&self) -> &str {
        match self {
            Edit::Create(a) | Edit::Put(a) | Edit::Update(a) => &a.id,
            Edit::Revoke(id) => id,
        }
    }
}

/// A change made.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The store version it made.
    pub version: i64,
    /// What it did.
    pub action: Action,
    /// The agreement before.
    pub before: Option<Agreement>,
    /// The agreement after.
    pub after: Option<Agreement>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// Agreements and role bindings kept in the gateway's database.
///
/// Agreements are stored whole as JSON beside a few indexed columns: the policy
/// model is the crate's, the database keeps it durably and versioned.
#[derive(Debug, Clone)]
pub struct AgreementStore {
    pool: AnyPool,
    backend: Backend,
}

/// Where the policy migrations are recorded: a table of their own, so that the audit
/// store's migrations can live in the same database. Renaming it would make every
/// existing database look unmigrated.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations_policy";

/// The policy schema, oldest first: `policy/migrations/`, embedded; the same SQL
/// serves SQLite and PostgreSQL. A released file never changes (sqlx refuses a
/// database whose applied migration has another checksum); a change is a new file.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "policy tables",
        include_str!("../migrations/0001_policy_tables.sql"),
    ),
    (
        2,
        "access requests",
        include_str!("../migrations/0002_access_requests.sql"),
    ),
];

impl AgreementStore {
    /// Connect to `url` (`sqlite://…` or `postgres://…`) and open the store.
    ///
    /// Counter increments are not flushed to disk one by one: SQLite connections use
    /// WAL with `synchronous = NORMAL`, PostgreSQL sessions `synchronous_commit =
    /// off` (a crash of the machine may forget the last increments, never corrupt
    /// anything). Agreement changes are made durable: `FULL` / `on` for their
    /// transaction.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, PolicyError> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let pool = || {
            AnyPoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(Duration::from_secs(5))
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        if sqlite {
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                            conn.execute("PRAGMA busy_timeout = 5000").await?;
                        } else {
                            conn.execute("SET synchronous_commit = off").await?;
                        }
                        Ok(())
                    })
                })
                .connect(url)
        };
        let pool = if sqlite {
            migrate::retry_while_locked(pool).await?
        } else {
            pool().await?
        };
        Self::open(pool).await
    }

    /// Use `pool`, bringing its schema up to date.
    pub async fn open(pool: AnyPool) -> Result<Self, PolicyError> {
        let backend = match pool.connect_options().database_url.scheme() {
            "postgres" | "postgresql" => Backend::Postgres,
            _ => Backend::Sqlite,
        };
        // Stores opening together apply each migration once: on PostgreSQL the
        // migrator holds a session advisory lock on the database while it works; on
        // SQLite, where it takes none, an immediate transaction holds the write lock.
        let migrator = migrate::embedded_migrator(MIGRATIONS_TABLE, MIGRATIONS);
        if backend == Backend::Sqlite {
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
            // `run_direct` is `run` on a connection we hold: sqlx's own way around
            // "`Acquire` is not general enough" for a borrowed connection.
            migrator
                .run_direct(None, &mut *tx, false)
                .await
                .map_err(sqlx::Error::from)?;
            tx.commit().await?;
        } else {
            migrator.run(&pool).await.map_err(sqlx::Error::from)?;
        }
        Ok(Self { pool, backend })
    }

    /// The SQLite URL of a database file, escaped for sqlx's parser.
    pub fn sqlite_url(path: &std::path::Path) -> String {
        let mut url = String::from("sqlite://");
        for c in path.to_string_lossy().chars() {
            match c {
                '%' | '?' | '#' | ' ' => url.push_str(&format!("%{:02X}", u32::from(c))),
                c => url.push(c),
            }
        }
        url.push_str("?mode=rwc");
        url
    }

    /// The version of the last change (0 for a new store).
    pub async fn version(&self) -> Result<i64, PolicyError> {
        Ok(
            sqlx::query_scalar("SELECT version FROM policy_meta WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Every stored agreement, ordered by id.
    pub async fn list(&self) -> Result<Vec<StoredAgreement>, PolicyError> {
        let rows = sqlx::query(
            "SELECT id, version, body, updated_at, updated_by FROM policy_agreements ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored).collect()
    }

    /// The agreements alone, ordered by id.
    pub async fn agreements(&self) -> Result<Vec<Agreement>, PolicyError> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .map(|s| s.agreement)
            .collect())
    }

    /// One agreement.
    pub async fn get(&self, id: &str) -> Result<Option<StoredAgreement>, PolicyError> {
        let row = sqlx::query(
            "SELECT id, version, body, updated_at, updated_by FROM policy_agreements WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(stored).transpose()
    }

    /// Make one change as `actor`, after `guard` has approved it given the agreement
    /// as it is now (read under the change's lock, so the check cannot go stale).
    /// Returns `None` when a `Put` or `Update` changes nothing.
    pub async fn edit<G>(
        &self,
        edit: Edit,
        actor: &str,
        guard: G,
    ) -> Result<Option<Applied>, PolicyError>
    where
        G: FnOnce(Option<&Agreement>) -> Result<(), Refusal>,
    {
        if let Edit::Create(a) | Edit::Put(a) | Edit::Update(a) = &edit {
            a.validate()?;
        }
        let mut conn = self.pool.acquire().await?;
        self.durable(&mut conn, true).await?;
        let result = self.edit_on(&mut conn, &edit, actor, guard).await;
        // The connection goes back to the pool for counters: no fsync for them.
        self.durable(&mut conn, false).await?;
        result
    }

    async fn edit_on<G>(
        &self,
        conn: &mut sqlx::AnyConnection,
        edit: &Edit,
        actor: &str,
        guard: G,
    ) -> Result<Option<Applied>, PolicyError>
    where
        G: FnOnce(Option<&Agreement>) -> Result<(), Refusal>,
    {
        use sqlx::Connection as _;
        let mut tx = conn.begin().await?;
        self.flush_on_commit(&mut tx).await?;
        let applied = self.edit_in(&mut tx, edit, actor, guard).await?;
        if applied.is_some() {
            tx.commit().await?;
        }
        Ok(applied)
    }

    /// On PostgreSQL, make this transaction's commit durable (the pool's sessions
    /// default to `synchronous_commit = off` for counters).
    async fn flush_on_commit(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ) -> Result<(), PolicyError> {
        if self.backend == Backend::Postgres {
            sqlx::query("SET LOCAL synchronous_commit = on")
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// One agreement change inside `tx`: bump the version, read the agreement as it
    /// is, ask `guard`, write it and its history row. `None` (nothing written) when
    /// a `Put` or `Update` changes nothing.
    async fn edit_in<G>(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        edit: &Edit,
        actor: &str,
        guard: G,
    ) -> Result<Option<Applied>, PolicyError>
    where
        G: FnOnce(Option<&Agreement>) -> Result<(), Refusal>,
    {
        let version: i64 = sqlx::query_scalar(
            "UPDATE policy_meta SET version = version + 1 WHERE id = 1 RETURNING version",
        )
        .fetch_one(&mut **tx)
        .await?;
        let id = edit.id().to_owned();
        let before: Option<Agreement> =
            sqlx::query_scalar::<_, String>("SELECT body FROM policy_agreements WHERE id = $1")
                .bind(&id)
                .fetch_optional(&mut **tx)
                .await?
                .map(|body| decode(&id, &body))
                .transpose()?;
        guard(before.as_ref()).map_err(PolicyError::Refused)?;
        let (action, after) = match (edit, &before) {
            (Edit::Create(_), Some(_)) => return Err(PolicyError::Refused(Refusal::Exists(id))),
            (Edit::Update(_) | Edit::Revoke(_), None) => {
                return Err(PolicyError::Refused(Refusal::Missing(id)))
            }
            (Edit::Put(a) | Edit::Update(a), Some(b)) if a == b => return Ok(None),
            (Edit::Create(a) | Edit::Put(a), None) => (Action::Create, Some(a.clone())),
            (Edit::Put(a) | Edit::Update(a), Some(_)) => (Action::Update, Some(a.clone())),
            (Edit::Revoke(_), Some(_)) => (Action::Revoke, None),
        };
        let at = now();
        match &after {
            Some(a) => {
                sqlx::query(
                    "INSERT INTO policy_agreements
                        (id, version, provider, consumer, dataset, body, updated_at, updated_by)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT (id) DO UPDATE SET version = excluded.version,
                        provider = excluded.provider, consumer = excluded.consumer,
                        dataset = excluded.dataset, body = excluded.body,
                        updated_at = excluded.updated_at, updated_by = excluded.updated_by",
                )
                .bind(&a.id)
                .bind(version)
                .bind(&a.provider)
                .bind(&a.consumer)
                .bind(&a.dataset)
                .bind(encode(a)?)
                .bind(&at)
                .bind(actor)
                .execute(&mut **tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM policy_agreements WHERE id = $1")
                    .bind(&id)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        let entry = HistoryEntry {
            version,
            kind: "agreement".into(),
            subject: id,
            action,
            actor: actor.to_owned(),
            at,
            before: before.as_ref().map(to_value).transpose()?,
            after: after.as_ref().map(to_value).transpose()?,
        };
        insert_history(tx, &entry).await?;
        Ok(Some(Applied {
            version,
            action,
            before,
            after,
        }))
    }

    async fn durable(&self, conn: &mut sqlx::AnyConnection, full: bool) -> Result<(), PolicyError> {
        if self.backend == Backend::Sqlite {
            let pragma = if full {
                "PRAGMA synchronous = FULL"
            } else {
                "PRAGMA synchronous = NORMAL"
            };
            sqlx::query(pragma).execute(&mut *conn).await?;
        }
        Ok(())
    }

    /// History, newest first: of one agreement (or identity) when `subject` is
    /// given, at most `limit` entries.
    pub async fn history(
        &self,
        subject: Option<&str>,
        limit: i64,
    ) -> Result<Vec<HistoryEntry>, PolicyError> {
        let rows = match subject {
            Some(s) => {
                sqlx::query(
                    "SELECT version, kind, subject, action, actor, at, before_json, after_json
                     FROM policy_history WHERE subject = $1 ORDER BY version DESC LIMIT $2",
                )
                .bind(s)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT version, kind, subject, action, actor, at, before_json, after_json
                     FROM policy_history ORDER BY version DESC LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(history_entry).collect()
    }

    /// Every change after `version`, oldest first.
    pub async fn changes_since(&self, version: i64) -> Result<Vec<HistoryEntry>, PolicyError> {
        let rows = sqlx::query(
            "SELECT version, kind, subject, action, actor, at, before_json, after_json
             FROM policy_history WHERE version > $1 ORDER BY version",
        )
        .bind(version)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(history_entry).collect()
    }

    /// Grant `role` to `identity` (idempotent), recorded in the history as done by
    /// `system`.
    pub async fn bind_role(&self, identity: &str, role: &str) -> Result<(), PolicyError> {
        self.bind_role_by(identity, role, "system")
            .await
            .map(|_| ())
    }

    /// Grant `role` to `identity` as `actor`; returns the new version, or `None` when
    /// the binding already existed.
    pub async fn bind_role_by(
        &self,
        identity: &str,
        role: &str,
        actor: &str,
    ) -> Result<Option<i64>, PolicyError> {
        self.change_role(identity, role, actor, Action::Bind).await
    }

    /// Take `role` away from `identity` as `actor`; returns the new version, or
    /// `None` when the identity did not hold it.
    pub async fn unbind_role_by(
        &self,
        identity: &str,
        role: &str,
        actor: &str,
    ) -> Result<Option<i64>, PolicyError> {
        self.change_role(identity, role, actor, Action::Unbind)
            .await
    }

    async fn change_role(
        &self,
        identity: &str,
        role: &str,
        actor: &str,
        action: Action,
    ) -> Result<Option<i64>, PolicyError> {
        RoleBinding {
            identity: identity.to_owned(),
            role: role.to_owned(),
        }
        .validate()?;
        let mut conn = self.pool.acquire().await?;
        self.durable(&mut conn, true).await?;
        let result = self.role_on(&mut conn, identity, role, actor, action).await;
        self.durable(&mut conn, false).await?;
        result
    }

    async fn role_on(
        &self,
        conn: &mut sqlx::AnyConnection,
        identity: &str,
        role: &str,
        actor: &str,
        action: Action,
    ) -> Result<Option<i64>, PolicyError> {
        use sqlx::Connection as _;
        let mut tx = conn.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SET LOCAL synchronous_commit = on")
                .execute(&mut *tx)
                .await?;
        }
        let version: i64 = sqlx::query_scalar(
            "UPDATE policy_meta SET version = version + 1 WHERE id = 1 RETURNING version",
        )
        .fetch_one(&mut *tx)
        .await?;
        let statement = if action == Action::Unbind {
            "DELETE FROM role_bindings WHERE identity = $1 AND role = $2"
        } else {
            "INSERT INTO role_bindings (identity, role) VALUES ($1, $2)
             ON CONFLICT (identity, role) DO NOTHING"
        };
        let changed = sqlx::query(statement)
            .bind(identity)
            .bind(role)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed == 0 {
            // Dropping the transaction rolls the version back.
            return Ok(None);
        }
        let binding = Some(serde_json::json!({"identity": identity, "role": role}));
        let (before, after) = if action == Action::Unbind {
            (binding, None)
        } else {
            (None, binding)
        };
        let entry = HistoryEntry {
            version,
            kind: "role".into(),
            subject: identity.to_owned(),
            action,
            actor: actor.to_owned(),
            at: now(),
            before,
            after,
        };
        insert_history(&mut tx, &entry).await?;
        tx.commit().await?;
        Ok(Some(version))
    }

    /// Every role binding.
    pub async fn roles(&self) -> Result<Vec<RoleBinding>, PolicyError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT identity, role FROM role_bindings ORDER BY identity, role")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(identity, role)| RoleBinding { identity, role })
            .collect())
    }

    /// Add one to `counter` in `window` and return the new count. The row lives until
    /// `expires` (UNIX seconds), after which [`Self::purge_counters`] removes it.
    pub async fn count(
        &self,
        counter: &str,
        window: &str,
        expires: i64,
    ) -> Result<i64, PolicyError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO policy_counters (counter, time_window, n, expires) VALUES ($1, $2, 1, $3)
             ON CONFLICT (counter, time_window) DO UPDATE SET n = policy_counters.n + 1
             RETURNING n",
        )
        .bind(counter)
        .bind(window)
        .bind(expires)
        .fetch_one(&self.pool)
        .await?)
    }

    /// The count of `counter` in `window`, without adding to it.
    pub async fn peek(&self, counter: &str, window: &str) -> Result<i64, PolicyError> {
        let n: Option<i64> = sqlx::query_scalar(
            "SELECT n FROM policy_counters WHERE counter = $1 AND time_window = $2",
        )
        .bind(counter)
        .bind(window)
        .fetch_optional(&self.pool)
        .await?;
        Ok(n.unwrap_or(0))
    }

    /// Remove counters whose window ended before `now` (UNIX seconds).
    pub async fn purge_counters(&self, now: i64) -> Result<u64, PolicyError> {
        Ok(
            sqlx::query("DELETE FROM policy_counters WHERE expires < $1")
                .bind(now)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), PolicyError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

async fn insert_history(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    e: &HistoryEntry,
) -> Result<(), PolicyError> {
    sqlx::query(
        "INSERT INTO policy_history
            (version, kind, subject, action, actor, at, before_json, after_json)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(e.version)
    .bind(&e.kind)
    .bind(&e.subject)
    .bind(e.action.as_str())
    .bind(&e.actor)
    .bind(&e.at)
    .bind(e.before.as_ref().map(Value::to_string))
    .bind(e.after.as_ref().map(Value::to_string))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub(crate) fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn encode(a: &Agreement) -> Result<String, PolicyError> {
    serde_json::to_string(a).map_err(|e| PolicyError::Corrupt {
        id: a.id.clone(),
        message: e.to_string(),
    })
}

fn to_value(a: &Agreement) -> Result<Value, PolicyError> {
    serde_json::to_value(a).map_err(|e| PolicyError::Corrupt {
        id: a.id.clone(),
        message: e.to_string(),
    })
}

fn decode(id: &str, body: &str) -> Result<Agreement, PolicyError> {
    serde_json::from_str(body).map_err(|e| PolicyError::Corrupt {
        id: id.to_owned(),
        message: e.to_string(),
    })
}

fn stored(row: &AnyRow) -> Result<StoredAgreement, PolicyError> {
    let id: String = row.try_get("id")?;
    let body: String = row.try_get("body")?;
    Ok(StoredAgreement {
        agreement: decode(&id, &body)?,
        version: row.try_get("version")?,
        updated_at: row.try_get("updated_at")?,
        updated_by: row.try_get("updated_by")?,
    })
}

fn history_entry(row: &AnyRow) -> Result<HistoryEntry, PolicyError> {
    let json = |column: &str| -> Result<Option<Value>, PolicyError> {
        let text: Option<String> = row.try_get(column)?;
        text.map(|t| {
            serde_json::from_str(&t).map_err(|e| PolicyError::Corrupt {
                id: column.to_owned(),
                message: e.to_string(),
            })
        })
        .transpose()
    };
    let action: String = row.try_get("action")?;
    Ok(HistoryEntry {
        version: row.try_get("version")?,
        kind: row.try_get("kind")?,
        subject: row.try_get("subject")?,
        action: Action::parse(&action),
        actor: row.try_get("actor")?,
        at: row.try_get("at")?,
        before: json("before_json")?,
        after: json("after_json")?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::agreement::tests::sample;

    async fn store(dir: &tempfile::TempDir) -> AgreementStore {
        AgreementStore::connect(
            &AgreementStore::sqlite_url(&dir.path().join("state db?.db")),
            2,
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn changes_are_versioned_with_history() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir).await;
        assert_eq!(s.version().await.unwrap(), 0);
        let a = sample();
        let created = s
            .edit(Edit::Create(a.clone()), "cli:ops", |_| Ok(()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((created.version, created.action), (1, Action::Create));
        // Creating it again is refused; putting the same is no change.
        assert!(matches!(
            s.edit(Edit::Create(a.clone()), "cli:ops", |_| Ok(())).await,
            Err(PolicyError::Refused(Refusal::Exists(_)))
        ));
        assert_eq!(
            s.edit(Edit::Put(a.clone()), "cli:ops", |_| Ok(()))
                .await
                .unwrap(),
            None
        );
        assert_eq!(s.version().await.unwrap(), 1);

        let mut b = a.clone();
        b.matters.push("pension-qualification".into());
        let updated = s
            .edit(Edit::Put(b.clone()), "urn:tongban:sz-psb:admin-01", |_| {
                Ok(())
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!((updated.version, updated.action), (2, Action::Update));
        assert_eq!(updated.before.as_ref(), Some(&a));

        // A guard that refuses leaves nothing behind.
        let refused = s
            .edit(Edit::Revoke(a.id.clone()), "x", |_| {
                Err(Refusal::NotPermitted("no".into()))
            })
            .await;
        assert!(matches!(
            refused,
            Err(PolicyError::Refused(Refusal::NotPermitted(_)))
        ));
        assert_eq!(s.version().await.unwrap(), 2);

        let revoked = s
            .edit(Edit::Revoke(a.id.clone()), "cli:ops", |_| Ok(()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((revoked.version, revoked.action), (3, Action::Revoke));
        assert!(s.get(&a.id).await.unwrap().is_none());
        assert!(matches!(
            s.edit(Edit::Revoke(a.id.clone()), "cli:ops", |_| Ok(()))
                .await,
            Err(PolicyError::Refused(Refusal::Missing(_)))
        ));

        let h = s.history(Some(&a.id), 10).await.unwrap();
        assert_eq!(h.iter().map(|e| e.version).collect::<Vec<_>>(), [3, 2, 1]);
        assert_eq!(h[1].actor, "urn:tongban:sz-psb:admin-01");
        assert_eq!(
            h[1].before.as_ref().unwrap()["matters"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            h[1].after.as_ref().unwrap()["matters"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert!(h[0].after.is_none());
        let since = s.changes_since(1).await.unwrap();
        assert_eq!(since.iter().map(|e| e.version).collect::<Vec<_>>(), [2, 3]);
    }

    #[tokio::test]
    async fn roles_and_counters() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir).await;
        assert_eq!(
            s.bind_role_by("urn:tongban:a:b", "counter", "demo")
                .await
                .unwrap(),
            Some(1)
        );
        assert_eq!(
            s.bind_role_by("urn:tongban:a:b", "counter", "demo")
                .await
                .unwrap(),
            None
        );
        assert_eq!(s.roles().await.unwrap().len(), 1);
        assert_eq!(s.changes_since(0).await.unwrap()[0].kind, "role");
        // Unbinding what is not bound changes nothing; unbinding is versioned.
        assert_eq!(
            s.unbind_role_by("urn:tongban:a:b", "auditor", "demo")
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            s.unbind_role_by("urn:tongban:a:b", "counter", "cli:ops")
                .await
                .unwrap(),
            Some(2)
        );
        assert!(s.roles().await.unwrap().is_empty());
        let h = s.history(Some("urn:tongban:a:b"), 10).await.unwrap();
        assert_eq!(
            h.iter().map(|e| (e.version, e.action)).collect::<Vec<_>>(),
            [(2, Action::Unbind), (1, Action::Bind)]
        );
        assert_eq!(h[0].before.as_ref().unwrap()["role"], "counter");
        assert!(h[0].after.is_none());
        assert_eq!(h[0].actor, "cli:ops");
        // Bad identities and role names are refused, naming the field.
        for (identity, role, field) in [
            ("counter-01", "counter", "identity"),
            ("urn:tongban:a:b", "Counter", "role"),
            ("urn:tongban:a:b", "", "role"),
        ] {
            match s.bind_role_by(identity, role, "x").await {
                Err(PolicyError::BadBinding { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{identity} {role}: {other:?}"),
            }
        }
        assert_eq!(s.version().await.unwrap(), 2);
        assert_eq!(s.count("q|a", "2026-06-01", 10).await.unwrap(), 1);
        assert_eq!(s.count("q|a", "2026-06-01", 10).await.unwrap(), 2);
        assert_eq!(s.peek("q|a", "2026-06-01").await.unwrap(), 2);
        assert_eq!(s.peek("q|a", "2026-06-02").await.unwrap(), 0);
        assert_eq!(s.purge_counters(11).await.unwrap(), 1);
        assert_eq!(s.peek("q|a", "2026-06-01").await.unwrap(), 0);
    }
}
