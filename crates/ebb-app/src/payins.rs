//! Pay-ins, as the pay-in watcher drives it: which addresses to watch, a transfer seen, confirmed,
//! held or reorged out, orders expired on time. Each function is one database transaction; reading
//! the chain is the watcher's. Errors stay the store's (see [`crate::payouts`]).

use std::collections::HashMap;

use ebb_core::clock::now_s;
use ebb_store::orders::{self, Credit};
use ebb_store::payins::{SeenPayin, UnconfirmedPayin};
use ebb_store::{Store, StoreError};

/// Receiving addresses (lower case) still watched on a chain, with their order ids.
pub async fn watched_addresses(store: &Store, chain_id: &str) -> Result<HashMap<String, String>, StoreError> {
    store.watched_addresses(chain_id).await
}

/// The next block to scan on a chain, if scanning has started there.
pub async fn cursor(store: &Store, chain_id: &str) -> Result<Option<u64>, StoreError> {
    store.chain_cursor(chain_id).await
}

pub async fn set_cursor(store: &Store, chain_id: &str, next_block: u64) -> Result<(), StoreError> {
    store.set_chain_cursor(chain_id, next_block).await
}

/// A transfer to an order's address, first seen; `false` if it was recorded before.
pub async fn seen(store: &Store, order_id: &str, payin: SeenPayin) -> Result<bool, StoreError> {
    store.record_payin_seen(order_id, payin).await
}

/// Pay-ins on a chain waiting for their confirmations.
pub async fn unconfirmed(store: &Store, chain_id: &str) -> Result<Vec<UnconfirmedPayin>, StoreError> {
    store.unconfirmed_payins(chain_id).await
}

/// A pay-in has its confirmations: credited as its order's classification says (the order, a late
/// payment, another token), in one transaction with the ledger.
pub async fn confirm(store: &Store, tx_id: &str) -> Result<Option<Credit>, StoreError> {
    store.confirm_payin(tx_id).await
}

/// A pay-in that cannot be credited is held for the operator, never dropped.
pub async fn hold(store: &Store, tx_id: &str, reason: &str) -> Result<bool, StoreError> {
    store.hold_payin(tx_id, reason).await
}

/// A pay-in left the chain before its confirmations (a reorg).
pub async fn fail(store: &Store, tx_id: &str, reason: &str) -> Result<(), StoreError> {
    store.fail_payin(tx_id, reason).await
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
