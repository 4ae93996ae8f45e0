use sqlx::SqlitePool;

use crate::{Agreement, PolicyError};

/// A role granted to an identity (`counter`, `dept-admin`, `auditor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleBinding {
    /// Identity URI.
    pub identity: String,
    /// Role name.
    pub role: String,
}

/// Agreements and role bindings kept in the gateway's database.
///
/// Agreements are stored whole as JSON with a version counter: the policy model is
/// the crate's, the database only keeps it durably.
#[derive(Debug, Clone)]
pub struct AgreementStore {
    pool: SqlitePool,
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS agreements (
        id TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        body TEXT NOT NULL,
        updated_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS role_bindings (
        identity TEXT NOT NULL,
        role TEXT NOT NULL,
        PRIMARY KEY (identity, role))",
];

impl AgreementStore {
    /// Use `pool`, creating the tables if they do not exist.
    pub async fn open(pool: SqlitePool) -> Result<Self, PolicyError> {
        for statement in SCHEMA {
            sqlx::query(*statement).execute(&pool).await?;
        }
        Ok(Self { pool })
    }

    /// Insert or replace an agreement, bumping its version. Returns the new version.
    pub async fn put(&self, agreement: &Agreement) -> Result<i64, PolicyError> {
        agreement.validate()?;
        let body = serde_json::to_string(agreement).map_err(|e| PolicyError::Corrupt {
            id: agreement.id.clone(),
            message: e.to_string(),
        })?;
        let version: i64 = sqlx::query_scalar(
            "INSERT INTO agreements (id, version, body, updated_at)
             VALUES (?1, 1, ?2, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
             ON CONFLICT(id) DO UPDATE SET version = version + 1, body = ?2,
                 updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
             RETURNING version",
        )
        .bind(&agreement.id)
        .bind(body)
        .fetch_one(&self.pool)
        .await?;
        Ok(version)
    }

    /// Every stored agreement, ordered by id.
    pub async fn list(&self) -> Result<Vec<Agreement>, PolicyError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, body FROM agreements ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(id, body)| {
                serde_json::from_str(&body).map_err(|e| PolicyError::Corrupt {
                    id,
                    message: e.to_string(),
                })
            })
            .collect()
    }

    /// Grant `role` to `identity` (idempotent).
    pub async fn bind_role(&self, identity: &str, role: &str) -> Result<(), PolicyError> {
        sqlx::query("INSERT OR IGNORE INTO role_bindings (identity, role) VALUES (?1, ?2)")
            .bind(identity)
            .bind(role)
            .execute(&self.pool)
            .await?;
        Ok(())
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
}
