//! API keys: the Ed25519 public keys of clients, PSP-wide or restricted to one merchant, each with a
//! role.

use std::fmt;

use crate::columns::Columns;
use crate::db::{self, Tx};
use crate::{Store, StoreError};

/// What a key may do within its scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyRole {
    /// Everything its scope allows (every key made before roles existed).
    Operator,
    /// Read, and approve or reject refunds; never change anything else. Always PSP-wide.
    Approver,
}

impl KeyRole {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRole::Operator => "operator",
            KeyRole::Approver => "approver",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "operator" => Some(KeyRole::Operator),
            "approver" => Some(KeyRole::Approver),
            _ => None,
        }
    }
}

impl fmt::Display for KeyRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRow {
    pub api_key: String,
    pub name: String,
    pub merchant_id: Option<String>,
    pub role: KeyRole,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

const COLUMNS: &str = "api_key, name, merchant_id, role, created_at, revoked_at";

fn from_row(row: &impl Columns) -> Result<ApiKeyRow, StoreError> {
    Ok(ApiKeyRow {
        api_key: row.col("api_key")?,
        name: row.col("name")?,
        merchant_id: row.col("merchant_id")?,
        role: {
            let role: String = row.col("role")?;
            KeyRole::parse(&role).ok_or_else(|| StoreError::Internal(format!("stored key role {role:?}")))?
        },
        created_at: row.col("created_at")?,
        revoked_at: row.col("revoked_at")?,
    })
}

/// Inserts a key; `false` (nothing written) if it exists already.
pub async fn insert(conn: &mut Tx<'_>, key: &ApiKeyRow) -> Result<bool, StoreError> {
    let inserted = db::query(
        "INSERT INTO api_keys (api_key, name, merchant_id, role, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (api_key) DO NOTHING",
    )
    .bind(&key.api_key)
    .bind(&key.name)
    .bind(&key.merchant_id)
    .bind(key.role.as_str())
    .bind(key.created_at)
    .execute(&mut *conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Marks a key revoked at `now` unless it is already; `false` if no key was changed.
pub async fn mark_revoked(conn: &mut Tx<'_>, api_key: &str, now: i64) -> Result<bool, StoreError> {
    let done = db::query("UPDATE api_keys SET revoked_at = $1 WHERE api_key = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(api_key)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Whether a key exists (revoked or not), read inside a write.
pub async fn exists(conn: &mut Tx<'_>, api_key: &str) -> Result<bool, StoreError> {
    let found =
        db::query("SELECT 1 AS one FROM api_keys WHERE api_key = $1").bind(api_key).fetch_optional(&mut *conn).await?;
    Ok(found.is_some())
}

impl Store {
    pub async fn api_key(&self, api_key: &str) -> Result<Option<ApiKeyRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM api_keys WHERE api_key = $1"))
            .bind(api_key)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyRow>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM api_keys ORDER BY created_at, api_key"))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(from_row).collect()
    }
}
