//! API keys: the Ed25519 public keys of clients, PSP-wide or restricted to one merchant.

use crate::columns::Columns;
use crate::db;
use crate::{now_s, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRow {
    pub api_key: String,
    pub name: String,
    pub merchant_id: Option<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

const COLUMNS: &str = "api_key, name, merchant_id, created_at, revoked_at";

fn from_row(row: &impl Columns) -> Result<ApiKeyRow, StoreError> {
    Ok(ApiKeyRow {
        api_key: row.col("api_key")?,
        name: row.col("name")?,
        merchant_id: row.col("merchant_id")?,
        created_at: row.col("created_at")?,
        revoked_at: row.col("revoked_at")?,
    })
}

impl Store {
    /// Registers a client public key (lower-case hex). Refuses a key that exists already.
    pub async fn add_api_key(
        &self,
        api_key: &str,
        name: &str,
        merchant_id: Option<&str>,
    ) -> Result<ApiKeyRow, StoreError> {
        let (api_key, name, merchant_id) =
            (api_key.to_ascii_lowercase(), name.to_owned(), merchant_id.map(str::to_owned));
        self.write(move |conn| {
            Box::pin(async move {
                if let Some(m) = &merchant_id {
                    let exists = db::query("SELECT 1 AS one FROM merchants WHERE merchant_id = $1")
                        .bind(m)
                        .fetch_optional(&mut *conn)
                        .await?;
                    if exists.is_none() {
                        return Err(StoreError::NotFound { what: "merchant", id: m.clone() });
                    }
                }
                let now = now_s();
                let inserted = db::query(
                    "INSERT INTO api_keys (api_key, name, merchant_id, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (api_key) DO NOTHING",
                )
                .bind(&api_key)
                .bind(&name)
                .bind(&merchant_id)
                .bind(now)
                .execute(&mut *conn)
                .await?;
                if inserted.rows_affected() == 0 {
                    return Err(StoreError::AlreadyExists(format!("api key {api_key}")));
                }
                Ok(ApiKeyRow { api_key, name, merchant_id, created_at: now, revoked_at: None })
            })
        })
        .await
    }

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

    /// Revokes a key; requests signed with it are refused from now on. Revoking twice is harmless.
    pub async fn revoke_api_key(&self, api_key: &str) -> Result<(), StoreError> {
        let api_key = api_key.to_ascii_lowercase();
        self.write(move |conn| {
            Box::pin(async move {
                let done = db::query("UPDATE api_keys SET revoked_at = $1 WHERE api_key = $2 AND revoked_at IS NULL")
                    .bind(now_s())
                    .bind(&api_key)
                    .execute(&mut *conn)
                    .await?;
                if done.rows_affected() == 0 {
                    let exists = db::query("SELECT 1 AS one FROM api_keys WHERE api_key = $1")
                        .bind(&api_key)
                        .fetch_optional(&mut *conn)
                        .await?;
                    if exists.is_none() {
                        return Err(StoreError::NotFound { what: "api key", id: api_key });
                    }
                }
                Ok(())
            })
        })
        .await
    }
}
