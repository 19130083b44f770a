//! Pay-ins, as the pay-in watcher drives it: which addresses to watch, a transfer seen, confirmed,
//! held or reorged out, orders expired on time. Each function is one database transaction; reading
//! the chain is the watcher's. Errors stay the store's (see [`crate::payouts`]).

use std::collections::HashMap;

use ebb_core::clock::{now_ms, now_s};
use ebb_core::screening::{Screening, Verdict};
use ebb_core::{Amount, OrderStatus, TxDirection, TxStatus};
use ebb_store::orders::{self, Credit};
use ebb_store::payins::{self as repo, SeenPayin, UnconfirmedPayin};
use ebb_store::transactions::{self, TransactionRow};
use ebb_store::{events, ids, Store, StoreError};

/// Receiving addresses (lower case) still watched on a chain, with their order ids.
pub async fn watched_addresses(store: &Store, chain_id: &str) -> Result<HashMap<String, String>, StoreError> {
    store.watched_addresses(chain_id).await
}

/// The next block to scan on a chain, if scanning has started there.
pub async fn cursor(store: &Store, chain_id: &str) -> Result<Option<u64>, StoreError> {
    store.chain_cursor(chain_id).await
}

pub async fn set_cursor(store: &Store, chain_id: &str, next_block: u64) -> Result<(), StoreError> {
    let chain_id = chain_id.to_owned();
    store.write(move |tx| Box::pin(async move { repo::set_cursor(tx, &chain_id, next_block).await })).await
}

/// A transfer to an order's address, first seen: a `Confirming` transaction on the order, which moves
/// to `Processing` if it was `Pending` and the transfer is in its token (a `Pending` order past its
/// expiry is expired first: a payment now is late). A transfer whose amount does not fit the ledger is
/// recorded held at once. `false` if this transfer was recorded before.
///
/// `screening` is the sender's (taken before the write); a sender held or refused by it makes the
/// pay-in held when it confirms ([`confirm`]).
pub async fn seen(
    store: &Store,
    order_id: &str,
    payin: SeenPayin,
    screening: Option<Screening>,
) -> Result<bool, StoreError> {
    let order_id = order_id.to_owned();
    store
        .write(move |tx| {
            Box::pin(async move {
                let p = payin;
                let mut order = orders::lock_order(tx, &order_id).await?;
                if repo::transfer_recorded(tx, &p.chain_id, &p.tx_hash, p.log_index).await? {
                    return Ok(false);
                }
                let now = now_ms();
                if order.effective_status(now_s()) != order.status && orders::store_expiry(tx, &order, now_s()).await? {
                    order.status = OrderStatus::Expired;
                }
                let held_reason = p.amount.is_none().then(|| {
                    "held: the amount is more than 2^128 - 1 base units, beyond what ebb's ledger can hold; \
                     not credited (the tokens are at the receiving address)"
                        .to_owned()
                });
                let row = TransactionRow {
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
                    screening,
                    funds_status: None,
                };
                repo::insert_payin(tx, &row, p.log_index, p.block).await?;
                transactions::raise_transaction_changed(tx, events::TRANSACTION_CREATED, &row.tx_id).await?;
                if held_reason.is_some() {
                    transactions::raise_transaction_changed(tx, events::TRANSACTION_HELD, &row.tx_id).await?;
                    orders::raise_order_changed(tx, &order_id).await?;
                    return Ok(true);
                }
                if order.status == OrderStatus::Pending
                    && p.token_id == order.token_id
                    && orders::move_status(tx, &order_id, OrderStatus::Pending, OrderStatus::Processing, now_s())
                        .await?
                {
                    orders::raise_order_changed(tx, &order_id).await?;
                }
                Ok(true)
            })
        })
        .await
}

/// Pay-ins on a chain waiting for their confirmations.
pub async fn unconfirmed(store: &Store, chain_id: &str) -> Result<Vec<UnconfirmedPayin>, StoreError> {
    store.unconfirmed_payins(chain_id).await
}

/// A pay-in has its confirmations: credited as its order's classification says (the order, a late
/// payment, another token), in one transaction with the ledger.
///
/// The transaction completes first, so the order's event shows it completed; a late payment also
/// raises `payment.transaction.late`. `None` if it was already settled. An error that is not the
/// database's means this pay-in cannot be credited: the caller holds it ([`hold`]).
pub async fn confirm(store: &Store, tx_id: &str) -> Result<Option<Credit>, StoreError> {
    let tx_id = tx_id.to_owned();
    store
        .write(move |tx| {
            Box::pin(async move {
                let Some((order_id, token_id, amount)) = repo::lock_confirming(tx, &tx_id).await? else {
                    return Ok(None);
                };
                let (screening, _) = repo::screening_of(tx, &tx_id).await?;
                let held = screening.as_ref().is_some_and(|s| s.verdict != Verdict::Allow);
                repo::settle(tx, &tx_id, TxStatus::Completed, None, now_ms()).await?;
                if held {
                    // Received, and kept from the merchant until a person disposes of it.
                    orders::lock_order(tx, &order_id).await?;
                    repo::post_held(tx, &tx_id, &token_id, amount, true).await?;
                    repo::set_funds_status(tx, &tx_id, FROZEN, now_ms()).await?;
                    transactions::raise_transaction_changed(tx, events::TRANSACTION_COMPLETED, &tx_id).await?;
                    transactions::raise_transaction_changed(tx, events::TRANSACTION_HELD, &tx_id).await?;
                    ebb_store::dispositions::raise_kyt_screening(tx, &tx_id, "PendingReview", FROZEN, now_ms()).await?;
                    orders::raise_order_changed(tx, &order_id).await?;
                    return Ok(Some(Credit::Held));
                }
                transactions::raise_transaction_changed(tx, events::TRANSACTION_COMPLETED, &tx_id).await?;
                let credit = orders::credit_payment(tx, &order_id, &token_id, amount).await?;
                if credit == Credit::Late {
                    transactions::raise_transaction_changed(tx, events::TRANSACTION_LATE, &tx_id).await?;
                }
                Ok(Some(credit))
            })
        })
        .await
}

/// Cobo's funds status of a pay-in in the `held` account.
pub const FROZEN: &str = "Frozen";
/// ...and of one released from it to the merchant.
pub const UNFROZEN: &str = "Unfrozen";

/// A pay-in that cannot be credited is held for the operator, never dropped.
///
/// `Rejected` with the reason, `payment.transaction.held` raised, never confirmed; `false` if it was
/// no longer waiting.
pub async fn hold(store: &Store, tx_id: &str, reason: &str) -> Result<bool, StoreError> {
    let (tx_id, reason) = (tx_id.to_owned(), format!("held: {reason}"));
    store
        .write(move |tx| {
            Box::pin(async move {
                let Some((order_id, _, _)) = repo::lock_confirming(tx, &tx_id).await? else { return Ok(false) };
                orders::lock_order(tx, &order_id).await?;
                repo::settle(tx, &tx_id, TxStatus::Rejected, Some(&reason), now_ms()).await?;
                transactions::raise_transaction_changed(tx, events::TRANSACTION_HELD, &tx_id).await?;
                orders::raise_order_changed(tx, &order_id).await?;
                Ok(true)
            })
        })
        .await
}

/// A pay-in left the chain before its confirmations (a reorg).
///
/// It is not credited, and an order that was `Processing` only because of it is `Pending` again.
pub async fn fail(store: &Store, tx_id: &str, reason: &str) -> Result<(), StoreError> {
    let (tx_id, reason) = (tx_id.to_owned(), reason.to_owned());
    store
        .write(move |tx| {
            Box::pin(async move {
                let Some(order_id) = repo::order_of(tx, &tx_id).await? else { return Ok(()) };
                let order = orders::lock_order(tx, &order_id).await?;
                if !repo::settle(tx, &tx_id, TxStatus::Failed, Some(&reason), now_ms()).await? {
                    return Ok(());
                }
                transactions::raise_transaction_changed(tx, events::TRANSACTION_FAILED, &tx_id).await?;
                if order.status == OrderStatus::Processing
                    && !repo::has_confirming(tx, &order_id).await?
                    && orders::move_status(tx, &order_id, OrderStatus::Processing, OrderStatus::Pending, now_s())
                        .await?
                {
                    orders::raise_order_changed(tx, &order_id).await?;
                }
                Ok(())
            })
        })
        .await
}

/// Stores the expiry of up to `limit` `Pending` orders on a chain whose time has run out, each with its
/// order event, in one transaction; returns how many. The watcher calls this every tick, so a merchant
/// hears of an expiry without reading the order.
pub async fn expire_due_orders(store: &Store, chain_id: &str, limit: i64) -> Result<usize, StoreError> {
    let now = now_s();
    let due = store.orders_due_for_expiry(chain_id, now, limit).await?;
    if due.is_empty() {
        return Ok(0);
    }
    store
        .write(move |tx| {
            Box::pin(async move {
                let mut expired = 0;
                for order_id in &due {
                    let order = orders::lock_order(tx, order_id).await?;
                    if orders::store_expiry(tx, &order, now).await? {
                        expired += 1;
                    }
                }
                Ok(expired)
            })
        })
        .await
}
