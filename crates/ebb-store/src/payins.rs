//! Pay-ins seen on chain. The watcher records a token transfer to an order's receiving address when
//! it first sees it (`Confirming`, order `Processing`), and credits the balances only once the
//! transfer is deep enough (`Completed`; see [`crate::orders::credit_payment`] for where the money
//! goes). A transfer is identified by (chain, tx hash, log index), unique in the database, so
//! rescanning a block after a crash or an RPC error never counts a transfer twice.
//!
//! A pay-in that cannot be credited (its amount does not fit the ledger's integers) is `held`: its
//! transaction is `Rejected` with the reason, a `payment.transaction.held` event is raised, and it is
//! never looked at again, so it cannot stall the pay-ins after it. The tokens stay at the receiving
//! address, where the operator can reach them (`ebb orders deposit-key`).

use std::collections::HashMap;

use ebb_core::{Amount, OrderStatus, TxDirection, TxStatus};

use crate::columns::Columns;
use crate::db;
use crate::orders::{self, credit_payment, lock_order, store_expiry, Credit};
use crate::transactions::{self, insert_transaction, TransactionRow};
use crate::{events, ids, Store, StoreError};
use ebb_core::clock::{now_ms, now_s};

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
async fn lock_confirming(conn: &mut db::Tx<'_>, tx_id: &str) -> Result<Option<(String, String, Amount)>, StoreError> {
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

    pub async fn set_chain_cursor(&self, chain_id: &str, next_block: u64) -> Result<(), StoreError> {
        let chain_id = chain_id.to_owned();
        self.write(move |conn| {
            Box::pin(async move {
                db::query(
                    "INSERT INTO chain_cursors (chain_id, next_block) VALUES ($1, $2) \
                     ON CONFLICT (chain_id) DO UPDATE SET next_block = excluded.next_block",
                )
                .bind(chain_id)
                .bind(next_block as i64)
                .execute(&mut *conn)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Records a pay-in on first sight: a `Confirming` transaction on the order, which moves to
    /// `Processing` if it was `Pending` and the transfer is in its token (a `Pending` order past its
    /// expiry is expired first: a payment now is late). A transfer whose amount does not fit is
    /// recorded held at once. `false` if this transfer was recorded before.
    pub async fn record_payin_seen(&self, order_id: &str, p: SeenPayin) -> Result<bool, StoreError> {
        let order_id = order_id.to_owned();
        self.write(move |conn| {
            Box::pin(async move {
                let mut order = lock_order(conn, &order_id).await?;
                let exists = db::query(
                    "SELECT 1 AS one FROM payment_transactions \
                     WHERE direction = 'in' AND chain_id = $1 AND tx_hash = $2 AND log_index = $3",
                )
                .bind(&p.chain_id)
                .bind(&p.tx_hash)
                .bind(p.log_index as i64)
                .fetch_optional(&mut *conn)
                .await?;
                if exists.is_some() {
                    return Ok(false);
                }
                let now = now_ms();
                if order.effective_status(now_s()) != order.status && store_expiry(conn, &order, now_s()).await? {
                    order.status = OrderStatus::Expired;
                }
                let held_reason = p.amount.is_none().then(|| {
                    "held: the amount is more than 2^128 - 1 base units, beyond what ebb's ledger can hold; \
                     not credited (the tokens are at the receiving address)"
                        .to_owned()
                });
                let tx = TransactionRow {
                    tx_id: ids::new_id("T"),
                    direction: TxDirection::In,
                    order_id: Some(order_id.clone()),
                    refund_id: None,
                    tx_hash: Some(p.tx_hash.clone()),
                    token_id: p.token_id.clone(),
                    chain_id: p.chain_id.clone(),
                    from_address: p.from.clone(),
                    to_address: p.to.clone(),
                    amount: p.amount.unwrap_or(Amount::ZERO),
                    status: if held_reason.is_some() { TxStatus::Rejected } else { TxStatus::Confirming },
                    failed_reason: held_reason.clone(),
                    created_at_ms: now,
                    updated_at_ms: now,
                };
                insert_transaction(conn, &tx).await?;
                db::query("UPDATE payment_transactions SET log_index = $1, block_number = $2 WHERE tx_id = $3")
                    .bind(p.log_index as i64)
                    .bind(p.block as i64)
                    .bind(&tx.tx_id)
                    .execute(&mut *conn)
                    .await?;
                transactions::raise_transaction_changed(conn, events::TRANSACTION_CREATED, &tx.tx_id).await?;
                if held_reason.is_some() {
                    transactions::raise_transaction_changed(conn, events::TRANSACTION_HELD, &tx.tx_id).await?;
                    orders::raise_order_changed(conn, &order_id).await?;
                    return Ok(true);
                }
                if order.status == OrderStatus::Pending && p.token_id == order.token_id {
                    db::query("UPDATE orders SET status = 'Processing', updated_at = $1 WHERE order_id = $2 AND status = 'Pending'")
                        .bind(now_s())
                        .bind(&order_id)
                        .execute(&mut *conn)
                        .await?;
                    orders::raise_order_changed(conn, &order_id).await?;
                }
                Ok(true)
            })
        })
        .await
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

    /// A pay-in reached its confirmation depth: the transaction completes and the money is credited
    /// ([`credit_payment`] says where), in one transaction; a late one also raises
    /// `payment.transaction.late`. `None` if it was already settled. An error that is not the
    /// database's means this pay-in cannot be credited: the caller holds it ([`Store::hold_payin`]).
    pub async fn confirm_payin(&self, tx_id: &str) -> Result<Option<Credit>, StoreError> {
        let tx_id = tx_id.to_owned();
        self.write(move |conn| {
            Box::pin(async move {
                let Some((order_id, token_id, amount)) = lock_confirming(conn, &tx_id).await? else { return Ok(None) };
                // The transaction first, so the order's event shows it completed.
                db::query("UPDATE payment_transactions SET status = 'Completed', updated_at_ms = $1 WHERE tx_id = $2")
                    .bind(now_ms())
                    .bind(&tx_id)
                    .execute(&mut *conn)
                    .await?;
                transactions::raise_transaction_changed(conn, events::TRANSACTION_COMPLETED, &tx_id).await?;
                let credit = credit_payment(conn, &order_id, &token_id, amount).await?;
                if credit == Credit::Late {
                    transactions::raise_transaction_changed(conn, events::TRANSACTION_LATE, &tx_id).await?;
                }
                Ok(Some(credit))
            })
        })
        .await
    }

    /// Holds a pay-in that cannot be credited: `Rejected` with `reason`, `payment.transaction.held`
    /// raised, never confirmed. `false` if it was no longer waiting.
    pub async fn hold_payin(&self, tx_id: &str, reason: &str) -> Result<bool, StoreError> {
        let (tx_id, reason) = (tx_id.to_owned(), format!("held: {reason}"));
        self.write(move |conn| {
            Box::pin(async move {
                let Some((order_id, _, _)) = lock_confirming(conn, &tx_id).await? else { return Ok(false) };
                lock_order(conn, &order_id).await?;
                db::query(
                    "UPDATE payment_transactions SET status = $1, failed_reason = $2, updated_at_ms = $3 WHERE tx_id = $4",
                )
                .bind(TxStatus::Rejected.as_str())
                .bind(&reason)
                .bind(now_ms())
                .bind(&tx_id)
                .execute(&mut *conn)
                .await?;
                transactions::raise_transaction_changed(conn, events::TRANSACTION_HELD, &tx_id).await?;
                orders::raise_order_changed(conn, &order_id).await?;
                Ok(true)
            })
        })
        .await
    }

    /// A pay-in left the chain before its confirmations (a reorg): it is not credited, and an order
    /// that was `Processing` only because of it is `Pending` again.
    pub async fn fail_payin(&self, tx_id: &str, reason: &str) -> Result<(), StoreError> {
        let (tx_id, reason) = (tx_id.to_owned(), reason.to_owned());
        self.write(move |conn| {
            Box::pin(async move {
                let order_id: Option<String> =
                    db::query("SELECT order_id FROM payment_transactions WHERE tx_id = $1 AND direction = 'in'")
                        .bind(&tx_id)
                        .fetch_optional_scalar(&mut *conn)
                        .await?
                        .flatten();
                let Some(order_id) = order_id else { return Ok(()) };
                let order = lock_order(conn, &order_id).await?;
                let failed = db::query(
                    "UPDATE payment_transactions SET status = 'Failed', failed_reason = $1, updated_at_ms = $2 \
                     WHERE tx_id = $3 AND status = 'Confirming'",
                )
                .bind(&reason)
                .bind(now_ms())
                .bind(&tx_id)
                .execute(&mut *conn)
                .await?;
                if failed.rows_affected() == 1 {
                    transactions::raise_transaction_changed(conn, events::TRANSACTION_FAILED, &tx_id).await?;
                }
                if failed.rows_affected() == 1 && order.status == OrderStatus::Processing {
                    let others: Option<i64> = db::query(
                        "SELECT 1 FROM payment_transactions WHERE order_id = $1 AND direction = 'in' AND status = 'Confirming'",
                    )
                    .bind(&order_id)
                    .fetch_optional_scalar(&mut *conn)
                    .await?;
                    if others.is_none() && order.status.can_move_to(OrderStatus::Pending) {
                        db::query("UPDATE orders SET status = 'Pending', updated_at = $1 WHERE order_id = $2 AND status = 'Processing'")
                            .bind(now_s())
                            .bind(&order_id)
                            .execute(&mut *conn)
                            .await?;
                        orders::raise_order_changed(conn, &order_id).await?;
                    }
                }
                Ok(())
            })
        })
        .await
    }
}
