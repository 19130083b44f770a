//! Pay-ins seen on chain. The watcher records a token transfer to an order's receiving address when
//! it first sees it (`Confirming`, order `Processing`), and credits the balances only once the
//! transfer is deep enough (`Completed`; see [`crate::orders::credit_payment`] for where the money
//! goes). A transfer is identified by (chain, tx hash, log index), unique in the database, so
//! rescanning a block after a crash or an RPC error never counts a transfer twice. The steps are
//! composed in `ebb-app/src/payins.rs` from the functions here, each in one transaction.
//!
//! A pay-in that cannot be credited (its amount does not fit the ledger's integers) is `held`: its
//! transaction is `Rejected` with the reason, a `payment.transaction.held` event is raised, and it is
//! never looked at again, so it cannot stall the pay-ins after it. The tokens stay at the receiving
//! address, where the operator can reach them (`ebb orders deposit-key`).

use std::collections::HashMap;

use ebb_core::{Amount, TxStatus};

use crate::columns::Columns;
use crate::db::{self, Tx};
use crate::transactions::{insert_transaction, TransactionRow};
use crate::{Store, StoreError};
use ebb_core::clock::now_s;

/// A token transfer into a watched address, as the chain reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenPayin {
    pub chain_id: String,
    pub token_id: String,
    pub tx_hash: String,
    pub log_index: u64,
    pub block: u64,
    pub from: String,
    pub to: String,
    /// `None`: more than the chain's reported integer fits in a `u128`; recorded as held.
    pub amount: Option<Amount>,
}

/// A pay-in waiting for its confirmations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnconfirmedPayin {
    pub tx_id: String,
    pub tx_hash: String,
    pub block: u64,
}

/// Locks a pay-in still `Confirming`: its order, token and amount; `None` if it is settled or held.
pub async fn lock_confirming(conn: &mut Tx<'_>, tx_id: &str) -> Result<Option<(String, String, Amount)>, StoreError> {
    let lock = conn.backend().for_update();
    let row = db::query(&format!(
        "SELECT order_id, token_id, amount, status FROM payment_transactions WHERE tx_id = $1 AND direction = 'in'{lock}"
    ))
    .bind(tx_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::NotFound { what: "pay-in", id: tx_id.to_owned() })?;
    if row.col::<String>("status")? != "Confirming" {
        return Ok(None);
    }
    let order_id: String = row.col::<Option<String>>("order_id")?.unwrap_or_default();
    let amount = Amount::from_base_units_str(&row.col::<String>("amount")?)?;
    Ok(Some((order_id, row.col("token_id")?, amount)))
}

/// Whether a transfer (chain, tx hash, log index) was recorded before.
pub async fn transfer_recorded(
    conn: &mut Tx<'_>,
    chain_id: &str,
    tx_hash: &str,
    log_index: u64,
) -> Result<bool, StoreError> {
    let found = db::query(
        "SELECT 1 AS one FROM payment_transactions \
         WHERE direction = 'in' AND chain_id = $1 AND tx_hash = $2 AND log_index = $3",
    )
    .bind(chain_id)
    .bind(tx_hash)
    .bind(log_index as i64)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(found.is_some())
}

/// Inserts a pay-in's transaction with where the chain has it (block, log index).
pub async fn insert_payin(
    conn: &mut Tx<'_>,
    tx: &TransactionRow,
    log_index: u64,
    block: u64,
) -> Result<(), StoreError> {
    insert_transaction(conn, tx).await?;
    db::query("UPDATE payment_transactions SET log_index = $1, block_number = $2 WHERE tx_id = $3")
        .bind(log_index as i64)
        .bind(block as i64)
        .bind(&tx.tx_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Ends a pay-in's transaction in `status` (`Completed`, `Rejected`, `Failed`) with an optional reason,
/// only if it is still `Confirming`; `false` if it was not.
pub async fn settle(
    conn: &mut Tx<'_>,
    tx_id: &str,
    status: TxStatus,
    reason: Option<&str>,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let done = db::query(
        "UPDATE payment_transactions SET status = $1, failed_reason = COALESCE($2, failed_reason), updated_at_ms = $3 \
         WHERE tx_id = $4 AND status = 'Confirming'",
    )
    .bind(status.as_str())
    .bind(reason)
    .bind(now_ms)
    .bind(tx_id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The order a pay-in was recorded on.
pub async fn order_of(conn: &mut Tx<'_>, tx_id: &str) -> Result<Option<String>, StoreError> {
    Ok(db::query("SELECT order_id FROM payment_transactions WHERE tx_id = $1 AND direction = 'in'")
        .bind(tx_id)
        .fetch_optional_scalar::<Option<String>>(&mut *conn)
        .await?
        .flatten())
}

/// Whether an order has a pay-in still waiting for its confirmations.
pub async fn has_confirming(conn: &mut Tx<'_>, order_id: &str) -> Result<bool, StoreError> {
    let found: Option<i64> = db::query(
        "SELECT 1 FROM payment_transactions WHERE order_id = $1 AND direction = 'in' AND status = 'Confirming'",
    )
    .bind(order_id)
    .fetch_optional_scalar(&mut *conn)
    .await?;
    Ok(found.is_some())
}

/// Where the watcher scans next on a chain.
pub async fn set_cursor(conn: &mut Tx<'_>, chain_id: &str, next_block: u64) -> Result<(), StoreError> {
    db::query(
        "INSERT INTO chain_cursors (chain_id, next_block) VALUES ($1, $2) \
         ON CONFLICT (chain_id) DO UPDATE SET next_block = excluded.next_block",
    )
    .bind(chain_id)
    .bind(next_block as i64)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Store {
    /// Receiving addresses (lower case) of the orders on `chain_id` still watched, with their order ids:
    /// open orders, and finished ones for [`crate::orders::LATE_PAYMENT_WATCH_S`] after their end (an
    /// index range on `watch_until`, so old orders cost nothing).
    pub async fn watched_addresses(&self, chain_id: &str) -> Result<HashMap<String, String>, StoreError> {
        let rows = sqlx::query("SELECT receive_address, order_id FROM orders WHERE chain_id = $1 AND watch_until > $2")
            .bind(chain_id)
            .bind(now_s())
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Ok((r.col::<String>("receive_address")?.to_ascii_lowercase(), r.col("order_id")?)))
            .collect()
    }

    /// The next block the watcher scans on `chain_id`, if it has started there.
    pub async fn chain_cursor(&self, chain_id: &str) -> Result<Option<u64>, StoreError> {
        let next: Option<i64> = sqlx::query_scalar("SELECT next_block FROM chain_cursors WHERE chain_id = $1")
            .bind(chain_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(next.map(|n| n as u64))
    }

    /// Pay-ins on `chain_id` seen but not yet confirmed, oldest first.
    pub async fn unconfirmed_payins(&self, chain_id: &str) -> Result<Vec<UnconfirmedPayin>, StoreError> {
        let rows = sqlx::query(
            "SELECT tx_id, tx_hash, block_number FROM payment_transactions \
             WHERE direction = 'in' AND chain_id = $1 AND status = 'Confirming' ORDER BY seq",
        )
        .bind(chain_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(UnconfirmedPayin {
                    tx_id: r.col("tx_id")?,
                    tx_hash: r.col::<Option<String>>("tx_hash")?.unwrap_or_default(),
                    block: r.col::<Option<i64>>("block_number")?.unwrap_or(0) as u64,
                })
            })
            .collect()
    }
}

/// A pay-in's sender screening and funds status (under the caller's lock on it).
pub async fn screening_of(
    conn: &mut Tx<'_>,
    tx_id: &str,
) -> Result<(Option<ebb_core::screening::Screening>, Option<String>), StoreError> {
    let row = db::query("SELECT screening, funds_status FROM payment_transactions WHERE tx_id = $1")
        .bind(tx_id)
        .fetch_one(&mut *conn)
        .await?;
    let screening = row
        .col::<Option<String>>("screening")?
        .as_deref()
        .map(crate::snapshot::screening_from_json)
        .transpose()
        .map_err(|e| StoreError::Internal(format!("stored pay-in screening: {e}")))?;
    Ok((screening, row.col("funds_status")?))
}

/// Sets a pay-in's funds status (`Frozen`, `Unfrozen`).
pub async fn set_funds_status(conn: &mut Tx<'_>, tx_id: &str, status: &str, now_ms: i64) -> Result<(), StoreError> {
    db::query("UPDATE payment_transactions SET funds_status = $1, updated_at_ms = $2 WHERE tx_id = $3")
        .bind(status)
        .bind(now_ms)
        .bind(tx_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Locks a pay-in for a disposition: its order, token, amount and funds status.
pub async fn lock_payin(
    conn: &mut Tx<'_>,
    tx_id: &str,
) -> Result<Option<(String, String, Amount, Option<String>)>, StoreError> {
    let lock = conn.backend().for_update();
    let row = db::query(&format!(
        "SELECT order_id, token_id, amount, funds_status FROM payment_transactions \
         WHERE tx_id = $1 AND direction = 'in'{lock}"
    ))
    .bind(tx_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some((
        row.col::<Option<String>>("order_id")?.unwrap_or_default(),
        row.col("token_id")?,
        Amount::from_base_units_str(&row.col::<String>("amount")?)?,
        row.col("funds_status")?,
    )))
}

/// Moves a held pay-in's amount between the world and the `held` account: into it (`into_held`) when
/// the pay-in confirms, out of it when it is disposed of.
pub async fn post_held(
    conn: &mut Tx<'_>,
    tx_id: &str,
    token_id: &str,
    amount: Amount,
    into_held: bool,
) -> Result<(), StoreError> {
    use ebb_core::ledger::{Account, Entry};
    let (from, to) = if into_held { (Account::World, Account::Held) } else { (Account::Held, Account::World) };
    let entry = Entry::builder()
        .transfer(from, to, token_id, amount.base_units())
        .map_err(|e| StoreError::Invalid(format!("a held pay-in of {amount} base units: {e}")))?
        .build()?;
    crate::ledger::post(conn, &entry, crate::ledger::SourceType::Held, tx_id, ebb_core::clock::now_s()).await
}
