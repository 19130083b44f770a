//! The KYT refund API's rows: its clients (an id and the hash of a secret), the bearer tokens they
//! are given, and their crypto refunds of held pay-ins (see `ebb-app/src/kyt.rs`).

use ebb_core::Amount;
use serde::{Deserialize, Serialize};

use crate::columns::Columns;
use crate::db::{self, Tx};
use crate::events::{self, EventKind};
use crate::refunds::RefundRow;
use crate::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRow {
    pub client_id: String,
    pub name: String,
    /// Hex SHA-256 of the secret.
    pub secret_hash: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

fn client_from_row(row: &impl Columns) -> Result<ClientRow, StoreError> {
    Ok(ClientRow {
        client_id: row.col("client_id")?,
        name: row.col("name")?,
        secret_hash: row.col("secret_hash")?,
        created_at: row.col("created_at")?,
        revoked_at: row.col("revoked_at")?,
    })
}

const CLIENT_COLUMNS: &str = "client_id, name, secret_hash, created_at, revoked_at";

pub async fn insert_client(conn: &mut Tx<'_>, c: &ClientRow) -> Result<(), StoreError> {
    db::query("INSERT INTO api_clients (client_id, name, secret_hash, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&c.client_id)
        .bind(&c.name)
        .bind(&c.secret_hash)
        .bind(c.created_at)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Revokes a client and deletes its tokens; `None` if there is no such client, else whether it was
/// active until now.
pub async fn revoke_client(conn: &mut Tx<'_>, client_id: &str, now: i64) -> Result<Option<bool>, StoreError> {
    let done = db::query("UPDATE api_clients SET revoked_at = $1 WHERE client_id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(client_id)
        .execute(&mut *conn)
        .await?;
    db::query("DELETE FROM access_tokens WHERE client_id = $1").bind(client_id).execute(&mut *conn).await?;
    if done.rows_affected() == 1 {
        return Ok(Some(true));
    }
    let found = db::query("SELECT 1 AS one FROM api_clients WHERE client_id = $1")
        .bind(client_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(found.map(|_| false))
}

/// Stores a token's hash for `client_id` until `expires_at_ms`, and forgets the client's expired ones.
pub async fn insert_token(
    conn: &mut Tx<'_>,
    token_hash: &str,
    client_id: &str,
    now_ms: i64,
    expires_at_ms: i64,
) -> Result<(), StoreError> {
    db::query("DELETE FROM access_tokens WHERE client_id = $1 AND expires_at_ms <= $2")
        .bind(client_id)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
    db::query(
        "INSERT INTO access_tokens (token_hash, client_id, created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4)",
    )
    .bind(token_hash)
    .bind(client_id)
    .bind(now_ms)
    .bind(expires_at_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A crypto refund as stored. Its status is not stored: it is its refund's once confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CryptoRefundRow {
    pub crypto_refund_id: String,
    pub client_id: String,
    pub client_reference: Option<String>,
    pub original_transaction_type: i64,
    pub original_transaction_id: String,
    /// The held pay-in.
    pub tx_id: String,
    pub token_id: String,
    pub chain_id: String,
    #[serde(with = "crate::snapshot::amount")]
    pub amount: Amount,
    /// The `Held` refund paying it, once confirmed.
    pub refund_id: Option<String>,
    pub refund_address: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

const COLUMNS: &str = "crypto_refund_id, client_id, client_reference, original_transaction_type, \
                       original_transaction_id, tx_id, token_id, chain_id, amount, refund_id, refund_address, \
                       created_at_ms, updated_at_ms";

fn from_row(row: &impl Columns) -> Result<CryptoRefundRow, StoreError> {
    Ok(CryptoRefundRow {
        crypto_refund_id: row.col("crypto_refund_id")?,
        client_id: row.col("client_id")?,
        client_reference: row.col("client_reference")?,
        original_transaction_type: row.col("original_transaction_type")?,
        original_transaction_id: row.col("original_transaction_id")?,
        tx_id: row.col("tx_id")?,
        token_id: row.col("token_id")?,
        chain_id: row.col("chain_id")?,
        amount: Amount::from_base_units_str(&row.col::<String>("amount")?)?,
        refund_id: row.col("refund_id")?,
        refund_address: row.col("refund_address")?,
        created_at_ms: row.col("created_at_ms")?,
        updated_at_ms: row.col("updated_at_ms")?,
    })
}

/// What a crypto refund event remembers: the row, and its refund's status and transaction hash at
/// the time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CryptoRefundSnapshot {
    pub row: CryptoRefundRow,
    /// The refund's status (`RefundStatus::as_str`), once confirmed.
    pub refund_status: Option<String>,
    pub tx_hash: Option<String>,
    /// Whether the pay-in's funds were disposed of otherwise before this was confirmed.
    #[serde(default)]
    pub superseded: bool,
}

pub async fn insert(conn: &mut Tx<'_>, r: &CryptoRefundRow) -> Result<(), StoreError> {
    db::query(&format!(
        "INSERT INTO crypto_refunds ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    ))
    .bind(&r.crypto_refund_id)
    .bind(&r.client_id)
    .bind(&r.client_reference)
    .bind(r.original_transaction_type)
    .bind(&r.original_transaction_id)
    .bind(&r.tx_id)
    .bind(&r.token_id)
    .bind(&r.chain_id)
    .bind(r.amount.base_units().to_string())
    .bind(&r.refund_id)
    .bind(&r.refund_address)
    .bind(r.created_at_ms)
    .bind(r.updated_at_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The crypto refund a client made with `client_reference`, read inside a write.
pub async fn by_reference(
    conn: &mut Tx<'_>,
    client_id: &str,
    client_reference: &str,
) -> Result<Option<CryptoRefundRow>, StoreError> {
    let row =
        db::query(&format!("SELECT {COLUMNS} FROM crypto_refunds WHERE client_id = $1 AND client_reference = $2"))
            .bind(client_id)
            .bind(client_reference)
            .fetch_optional(&mut *conn)
            .await?;
    row.as_ref().map(from_row).transpose()
}

/// The pay-in's crypto refund still waiting for its confirmation, read inside a write (after the pay-in
/// is locked).
pub async fn unconfirmed_of(conn: &mut Tx<'_>, tx_id: &str) -> Result<Option<CryptoRefundRow>, StoreError> {
    let row = db::query(&format!(
        "SELECT {COLUMNS} FROM crypto_refunds WHERE tx_id = $1 AND refund_id IS NULL ORDER BY created_at_ms DESC"
    ))
    .bind(tx_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn get(conn: &mut Tx<'_>, crypto_refund_id: &str) -> Result<Option<CryptoRefundRow>, StoreError> {
    let row = db::query(&format!("SELECT {COLUMNS} FROM crypto_refunds WHERE crypto_refund_id = $1"))
        .bind(crypto_refund_id)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Links an unconfirmed crypto refund to the refund paying it; `false` if it was confirmed already
/// (a concurrent confirmation won).
pub async fn confirm(
    conn: &mut Tx<'_>,
    crypto_refund_id: &str,
    refund_id: &str,
    refund_address: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let done = db::query(
        "UPDATE crypto_refunds SET refund_id = $1, refund_address = $2, updated_at_ms = $3 \
         WHERE crypto_refund_id = $4 AND refund_id IS NULL",
    )
    .bind(refund_id)
    .bind(refund_address)
    .bind(now_ms)
    .bind(crypto_refund_id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Raises `kyt.crypto_refund.updated` for a crypto refund as it stands.
pub async fn raise_changed(
    conn: &mut Tx<'_>,
    row: CryptoRefundRow,
    refund: Option<&RefundRow>,
    superseded: bool,
) -> Result<(), StoreError> {
    let subject = row.crypto_refund_id.clone();
    let snapshot = CryptoRefundSnapshot {
        refund_status: refund.map(|r| r.status.as_str().to_owned()),
        tx_hash: refund.and_then(|r| r.transactions.last()).and_then(|t| t.tx_hash.clone()),
        row,
        superseded,
    };
    events::raise(conn, events::CRYPTO_REFUND_UPDATED, EventKind::CryptoRefund, &subject, events::json(&snapshot)?)
        .await?;
    Ok(())
}

/// A refund of held funds changed status: if a crypto refund is paid by it, its client hears of it.
pub(crate) async fn on_refund_changed(conn: &mut Tx<'_>, refund: &RefundRow) -> Result<(), StoreError> {
    let row = db::query(&format!("SELECT {COLUMNS} FROM crypto_refunds WHERE refund_id = $1"))
        .bind(&refund.refund_id)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = row.as_ref().map(from_row).transpose()? {
        raise_changed(conn, row, Some(refund), false).await?;
    }
    Ok(())
}

impl Store {
    pub async fn api_client(&self, client_id: &str) -> Result<Option<ClientRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {CLIENT_COLUMNS} FROM api_clients WHERE client_id = $1"))
            .bind(client_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(client_from_row).transpose()
    }

    pub async fn list_api_clients(&self) -> Result<Vec<ClientRow>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {CLIENT_COLUMNS} FROM api_clients ORDER BY created_at, client_id"))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(client_from_row).collect()
    }

    /// The active client a token was given to, if the token is known and not expired at `now_ms`.
    pub async fn client_of_token(&self, token_hash: &str, now_ms: i64) -> Result<Option<ClientRow>, StoreError> {
        let row = sqlx::query(
            "SELECT c.client_id, c.name, c.secret_hash, c.created_at, c.revoked_at \
             FROM access_tokens t JOIN api_clients c ON c.client_id = t.client_id \
             WHERE t.token_hash = $1 AND t.expires_at_ms > $2 AND c.revoked_at IS NULL",
        )
        .bind(token_hash)
        .bind(now_ms)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(client_from_row).transpose()
    }

    pub async fn crypto_refund(&self, crypto_refund_id: &str) -> Result<Option<CryptoRefundRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM crypto_refunds WHERE crypto_refund_id = $1"))
            .bind(crypto_refund_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// A client's crypto refund by its `client_reference`.
    pub async fn crypto_refund_by_reference(
        &self,
        client_id: &str,
        client_reference: &str,
    ) -> Result<Option<CryptoRefundRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM crypto_refunds WHERE client_id = $1 AND client_reference = $2"
        ))
        .bind(client_id)
        .bind(client_reference)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(from_row).transpose()
    }
}
