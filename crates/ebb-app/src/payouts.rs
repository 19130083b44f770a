//! Paying refunds out, as the payout executor drives it: which refunds are payable, holding one,
//! signing and storing a transfer before it is broadcast (exactly-once), and settling each transfer
//! as the chain decides it. Each function is one database transaction; the chain I/O between them is
//! the executor's. Errors stay the store's: the executor tells an unavailable database (retry next
//! tick) from everything else.

use ebb_store::payouts::{OpenLeg, PayableRefund, PreparedTransfer, SignedBytes};
use ebb_store::{Store, StoreError};

/// Refunds on a chain ready to pay out, oldest first.
pub async fn payable(store: &Store, chain_id: &str, limit: i64) -> Result<Vec<PayableRefund>, StoreError> {
    store.payable_refunds(chain_id, limit).await
}

/// Says why a `Pending` refund waits (gas, funds), or with `None` that nothing holds it.
pub async fn hold(store: &Store, refund_id: &str, reason: Option<&str>) -> Result<(), StoreError> {
    store.set_hold_reason(refund_id, reason).await
}

/// Fails a refund whose transfer was never sent (the chain says it would revert); its funds return.
pub async fn fail_unsent(store: &Store, refund_id: &str, reason: &str) -> Result<bool, StoreError> {
    store.fail_unsent_payout(refund_id, reason).await
}

/// Takes the next nonce, signs `transfer` through `sign` and stores the signed bytes with the refund
/// `Processing`, all in one transaction; `None` if the refund no longer asks for exactly this transfer.
pub async fn start<F>(
    store: &Store,
    refund_id: &str,
    chain_id: &str,
    hot_wallet: &str,
    chain_nonce: u64,
    transfer: PreparedTransfer,
    sign: F,
) -> Result<Option<OpenLeg>, StoreError>
where
    F: FnOnce(u64) -> Result<SignedBytes, String> + Send + 'static,
{
    store.start_payout(refund_id, chain_id, hot_wallet, chain_nonce, transfer, sign).await
}

/// Transfers on a chain the chain has not decided yet, by nonce.
pub async fn open_legs(store: &Store, chain_id: &str) -> Result<Vec<OpenLeg>, StoreError> {
    store.open_legs(chain_id).await
}

/// Stores a re-priced version of a stuck transfer (same nonce) before it is broadcast.
pub async fn replace(store: &Store, tx_id: &str, signed: SignedBytes) -> Result<bool, StoreError> {
    store.replace_payout(tx_id, signed).await
}

/// Records which stored version of a transfer the chain has.
pub async fn show_version(store: &Store, tx_id: &str, tx_hash: &str) -> Result<(), StoreError> {
    store.show_payout_version(tx_id, tx_hash).await
}

/// The chain has the transfer (in a block, or back in the mempool after a reorg with `None`).
pub async fn mark_seen(store: &Store, tx_id: &str, block: Option<u64>) -> Result<(), StoreError> {
    store.mark_leg_seen(tx_id, block).await
}

/// The transfer has its confirmations: the refund (or this part of it) is paid, the ledger says so.
pub async fn complete(store: &Store, tx_id: &str, block: u64) -> Result<bool, StoreError> {
    store.complete_leg(tx_id, block).await
}

/// The transfer failed on chain: the refund fails and its funds return.
pub async fn fail(store: &Store, tx_id: &str, reason: &str) -> Result<bool, StoreError> {
    store.fail_leg(tx_id, reason).await
}
