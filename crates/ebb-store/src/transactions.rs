//! Transfers on a chain, as ebb records them: pay-ins to orders and payout legs of refunds.

use ebb_core::screening::Screening;
use ebb_core::{Amount, TxDirection, TxStatus};

use crate::columns::{amount, Columns};
use crate::db::{self, Tx};
use crate::events::{self, EventKind};
use crate::page::Filter;
use crate::{Store, StoreError};

/// A transfer on a chain: a pay-in to an order or a payout leg of a refund.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TransactionRow {
    pub tx_id: String,
    #[serde(with = "crate::snapshot::tx_direction")]
    pub direction: TxDirection,
    pub order_id: Option<String>,
    pub refund_id: Option<String>,
    pub tx_hash: Option<String>,
    pub token_id: String,
    pub chain_id: String,
    pub from_address: String,
    pub to_address: String,
    #[serde(with = "crate::snapshot::amount")]
    pub amount: Amount,
    #[serde(with = "crate::snapshot::tx_status")]
    pub status: TxStatus,
    pub failed_reason: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// A pay-in's sender screening (taken when the transfer was first seen).
    #[serde(with = "crate::snapshot::screening_opt", default)]
    pub screening: Option<Screening>,
    /// Cobo's KYT funds status of a pay-in screening held: `Frozen`, `Unfrozen`; `None`: `Normal`.
    #[serde(default)]
    pub funds_status: Option<String>,
}

pub(crate) const TX_COLUMNS: &str =
    "tx_id, direction, order_id, refund_id, tx_hash, token_id, chain_id, from_address, \
     to_address, amount, status, failed_reason, created_at_ms, updated_at_ms, screening, funds_status";

/// An order's transactions, oldest first (`$1`: the order id).
pub(crate) fn order_transactions_sql() -> String {
    format!("SELECT {TX_COLUMNS} FROM payment_transactions WHERE order_id = $1 ORDER BY seq")
}

pub(crate) fn tx_from_row(row: &impl Columns) -> Result<TransactionRow, StoreError> {
    tx_from_prefixed_row(row, "")
}

/// A transaction whose columns carry a prefix (`t_tx_id`, …), as in a join.
pub(crate) fn tx_from_prefixed_row(row: &impl Columns, prefix: &str) -> Result<TransactionRow, StoreError> {
    let c = |name: &str| format!("{prefix}{name}");
    Ok(TransactionRow {
        tx_id: row.col(c("tx_id").as_str())?,
        direction: {
            let d: String = row.col(c("direction").as_str())?;
            TxDirection::parse(&d).ok_or_else(|| StoreError::Internal(format!("stored transaction direction {d:?}")))?
        },
        order_id: row.col(c("order_id").as_str())?,
        refund_id: row.col(c("refund_id").as_str())?,
        tx_hash: row.col(c("tx_hash").as_str())?,
        token_id: row.col(c("token_id").as_str())?,
        chain_id: row.col(c("chain_id").as_str())?,
        from_address: row.col(c("from_address").as_str())?,
        to_address: row.col(c("to_address").as_str())?,
        amount: amount(row, &c("amount"))?,
        status: {
            let s: String = row.col(c("status").as_str())?;
            TxStatus::parse(&s).ok_or_else(|| StoreError::Internal(format!("stored transaction status {s:?}")))?
        },
        failed_reason: row.col(c("failed_reason").as_str())?,
        created_at_ms: row.col(c("created_at_ms").as_str())?,
        updated_at_ms: row.col(c("updated_at_ms").as_str())?,
        screening: row
            .col::<Option<String>>(c("screening").as_str())?
            .as_deref()
            .map(crate::snapshot::screening_from_json)
            .transpose()
            .map_err(|e| StoreError::Internal(format!("stored pay-in screening: {e}")))?,
        funds_status: row.col(c("funds_status").as_str())?,
    })
}

pub(crate) async fn insert_transaction(conn: &mut Tx<'_>, tx: &TransactionRow) -> Result<(), StoreError> {
    db::query(&format!(
        "INSERT INTO payment_transactions ({TX_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
    ))
    .bind(&tx.tx_id)
    .bind(tx.direction.as_str())
    .bind(&tx.order_id)
    .bind(&tx.refund_id)
    .bind(&tx.tx_hash)
    .bind(&tx.token_id)
    .bind(&tx.chain_id)
    .bind(&tx.from_address)
    .bind(&tx.to_address)
    .bind(tx.amount.to_string())
    .bind(tx.status.as_str())
    .bind(&tx.failed_reason)
    .bind(tx.created_at_ms)
    .bind(tx.updated_at_ms)
    .bind(tx.screening.as_ref().map(crate::snapshot::screening_json))
    .bind(&tx.funds_status)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A transaction was created, completed or failed (`event_type` is one of the `TRANSACTION_*`).
pub async fn raise_transaction_changed(
    conn: &mut Tx<'_>,
    event_type: &'static str,
    tx_id: &str,
) -> Result<(), StoreError> {
    let row = db::query(&format!("SELECT {TX_COLUMNS} FROM payment_transactions WHERE tx_id = $1"))
        .bind(tx_id)
        .fetch_one(&mut *conn)
        .await?;
    let tx: TransactionRow = tx_from_row(&row)?;
    let subject = tx.refund_id.clone().or_else(|| tx.order_id.clone()).unwrap_or_else(|| tx.tx_id.clone());
    events::raise(conn, event_type, EventKind::Transaction, &subject, events::json(&tx)?).await?;
    Ok(())
}

impl Store {
    /// The transactions whose `column` (`order_id` or `refund_id`) is one of `ids`, oldest first.
    pub(crate) async fn transactions_of(
        &self,
        column: &str,
        ids: &[String],
    ) -> Result<Vec<TransactionRow>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut f = Filter::default();
        f.is_in(column, ids);
        let sql = format!("SELECT {TX_COLUMNS} FROM payment_transactions{} ORDER BY seq", f.where_sql());
        let rows = f.bind_all(sqlx::query(&sql)).fetch_all(self.pool()).await?;
        rows.iter().map(tx_from_row).collect()
    }

    /// A pay-in transaction by id (the `transaction_id` a refund link may name).
    pub async fn payin_transaction(&self, tx_id: &str) -> Result<Option<TransactionRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TX_COLUMNS} FROM payment_transactions WHERE tx_id = $1 AND direction = 'in'"
        ))
        .bind(tx_id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(tx_from_row).transpose()
    }

    /// The address that paid an order: the sender of its first credited pay-in.
    pub async fn original_payer(&self, order_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT from_address FROM payment_transactions WHERE order_id = $1 AND direction = 'in' \
             AND status = 'Completed' ORDER BY seq LIMIT 1",
        )
        .bind(order_id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| r.col::<String>("from_address")).transpose()
    }
}

impl Store {
    /// One transaction by id.
    pub async fn transaction(&self, tx_id: &str) -> Result<Option<TransactionRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {TX_COLUMNS} FROM payment_transactions WHERE tx_id = $1"))
            .bind(tx_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(tx_from_row).transpose()
    }
}
