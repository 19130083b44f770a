//! Paying refunds out, as the payout executor drives it: which refunds are payable, holding one,
//! signing and storing a transfer before it is broadcast (exactly-once), and settling each transfer
//! as the chain decides it. Each function is one database transaction; the chain I/O between them is
//! the executor's. Errors stay the store's: the executor tells an unavailable database (retry next
//! tick) from everything else.

use ebb_core::clock::{now_ms, now_s};
use ebb_core::refund::{unpaid_ending, RefundEvent};
use ebb_core::{Amount, RefundStatus, TxDirection, TxStatus};
use ebb_store::payouts::{self as repo, OpenLeg, PayableRefund, PreparedTransfer, SignedBytes};
use ebb_store::refunds::{self as refunds_repo, RefundRow};
use ebb_store::transactions::{self, TransactionRow};
use ebb_store::{events, ids, Store, StoreError, Tx};

/// Refunds on a chain ready to pay out, oldest first.
pub async fn payable(store: &Store, chain_id: &str, limit: i64) -> Result<Vec<PayableRefund>, StoreError> {
    store.payable_refunds(chain_id, limit).await
}

/// Says why a `Pending` refund waits (gas, funds), or with `None` that nothing holds it.
pub async fn hold(store: &Store, refund_id: &str, reason: Option<&str>) -> Result<(), StoreError> {
    let (refund_id, reason) = (refund_id.to_owned(), reason.map(str::to_owned));
    store.write(move |tx| Box::pin(async move { repo::set_hold_reason(tx, &refund_id, reason.as_deref()).await })).await
}

/// Fails a refund whose next transfer was never sent (the chain says it would revert) and releases
/// its funds; `false` if the refund was no longer waiting for a transfer.
pub async fn fail_unsent(store: &Store, refund_id: &str, reason: &str) -> Result<bool, StoreError> {
    let (refund_id, reason) = (refund_id.to_owned(), reason.to_owned());
    store
        .write(move |tx| {
            Box::pin(async move {
                let Some(r) = repo::lock_for_payout(tx, &refund_id).await? else { return Ok(false) };
                if !waits_for_transfer(tx, &r).await? {
                    return Ok(false);
                }
                end_unpaid(tx, &r, &reason).await?;
                Ok(true)
            })
        })
        .await
}

/// A transfer to start: the refund, what the executor prepared for it, and how to sign it with a
/// nonce.
pub struct Start {
    pub refund_id: String,
    pub transfer: PreparedTransfer,
    pub sign: Box<dyn FnOnce(u64) -> Result<SignedBytes, String> + Send>,
}

/// Starts transfers of refunds, all in one transaction: takes the hot wallet's next nonce (at least
/// `chain_nonce`, what the node reports, so transactions sent from the wallet outside ebb are
/// skipped) under its row lock, and for each refund signs its transfer with the next nonce, stores
/// the signed bytes as a `Broadcasting` transaction and moves a `Pending` refund to `Processing`.
/// Nothing is broadcast here; the caller does that after this returns, so the bytes are durable first.
///
/// One transaction for many starts: the nonce row serialises a wallet's starts anyway, so each start
/// in a transaction of its own would pay a commit and the lock's hand-over, and concurrent ones would
/// hold pool connections while they wait for it.
///
/// Per refund, `None` if it no longer waits for a transfer, another process is starting it, or the
/// locked row no longer asks for its transfer (its address changed since the executor read it):
/// nothing is signed for it then (its nonce goes to the next one), and the next tick prepares it anew.
/// An error fails the whole transaction; the caller can start the refunds one by one to find which.
pub async fn start(
    store: &Store,
    chain_id: &str,
    hot_wallet: &str,
    chain_nonce: u64,
    starts: Vec<Start>,
) -> Result<Vec<Option<OpenLeg>>, StoreError> {
    let (chain_id, hot_wallet) = (chain_id.to_owned(), hot_wallet.to_owned());
    store
        .write(move |tx| {
            Box::pin(async move {
                let mut next_nonce: Option<u64> = None;
                let mut legs = Vec::with_capacity(starts.len());
                for s in starts {
                    legs.push(start_one(tx, &chain_id, &hot_wallet, chain_nonce, &mut next_nonce, s).await?);
                }
                if let Some(next) = next_nonce {
                    repo::store_next_nonce(tx, &chain_id, &hot_wallet, next).await?;
                }
                Ok(legs)
            })
        })
        .await
}

/// One refund's part of [`start`]. `next_nonce` is the wallet's next nonce once locked (the first
/// refund that signs locks it).
async fn start_one(
    tx: &mut Tx<'_>,
    chain_id: &str,
    hot_wallet: &str,
    chain_nonce: u64,
    next_nonce: &mut Option<u64>,
    Start { refund_id, transfer, sign }: Start,
) -> Result<Option<OpenLeg>, StoreError> {
    let Some(r) = repo::lock_for_payout(tx, &refund_id).await? else { return Ok(None) };
    // A refund under an approval policy pays out only once approved (the payable list says so too;
    // this is the check under the lock).
    let approved = r.approval.as_ref().is_none_or(|a| a.releases_payout());
    if r.to_address.is_empty() || !approved || !waits_for_transfer(tx, &r).await? {
        return Ok(None);
    }
    // The signature must be for what the locked row asks now, not for what was read before.
    if r.to_address != transfer.to_address.as_str() || r.token_id != transfer.token_id {
        tracing::info!(refund = %refund_id, prepared_for = %transfer.to_address, now = %r.to_address,
            "the refund changed while its payout was prepared; the attempt is abandoned before signing");
        return Ok(None);
    }
    let amount = transfer.amount;
    let remaining = r.amount.checked_sub(repo::paid_so_far(tx, &refund_id).await?).unwrap_or(Amount::ZERO);
    if amount.is_zero() || amount > remaining {
        return Err(StoreError::Internal(format!(
            "a transfer of {amount} for refund {refund_id}, which has {remaining} left to pay"
        )));
    }
    let nonce = match *next_nonce {
        Some(n) => n,
        None => repo::lock_next_nonce(tx, chain_id, hot_wallet).await?.max(chain_nonce),
    };
    let signed = sign(nonce).map_err(|e| StoreError::Internal(format!("signing the payout: {e}")))?;
    *next_nonce = Some(nonce + 1);
    let now = now_ms();
    let row = TransactionRow {
        tx_id: ids::new_id("T"),
        direction: TxDirection::Out,
        order_id: r.order_id.clone(),
        refund_id: Some(r.refund_id.clone()),
        tx_hash: Some(signed.tx_hash.clone()),
        token_id: r.token_id.clone(),
        chain_id: chain_id.to_owned(),
        from_address: hot_wallet.to_owned(),
        to_address: r.to_address.clone(),
        amount,
        status: TxStatus::Broadcasting,
        failed_reason: None,
        created_at_ms: now,
        updated_at_ms: now,
        screening: None,
        funds_status: None,
    };
    repo::insert_leg(tx, &row, nonce, &signed).await?;
    transactions::raise_transaction_changed(tx, events::TRANSACTION_CREATED, &row.tx_id).await?;
    if r.status == RefundStatus::Pending {
        move_refund(tx, &r, RefundEvent::PayoutStarted, None).await?;
    }
    Ok(Some(OpenLeg {
        tx_id: row.tx_id,
        refund_id: r.refund_id,
        versions: vec![signed.tx_hash.clone()],
        tx_hash: signed.tx_hash,
        raw: signed.raw,
        nonce,
        status: TxStatus::Broadcasting,
        block_number: None,
        token_id: r.token_id,
        amount,
        signed_at_ms: now,
    }))
}

/// Transfers on a chain the chain has not decided yet, by nonce.
pub async fn open_legs(store: &Store, chain_id: &str) -> Result<Vec<OpenLeg>, StoreError> {
    store.open_legs(chain_id).await
}

/// Stores a re-priced version of a stuck transfer (same nonce) before it is broadcast; `false` if the
/// transfer was decided meanwhile.
pub async fn replace(store: &Store, tx_id: &str, signed: SignedBytes) -> Result<bool, StoreError> {
    let tx_id = tx_id.to_owned();
    store.write(move |tx| Box::pin(async move { repo::add_version(tx, &tx_id, &signed, now_ms()).await })).await
}

/// Records which stored version of a transfer the chain has.
pub async fn show_version(store: &Store, tx_id: &str, tx_hash: &str) -> Result<(), StoreError> {
    let (tx_id, tx_hash) = (tx_id.to_owned(), tx_hash.to_owned());
    store.write(move |tx| Box::pin(async move { repo::show_version(tx, &tx_id, &tx_hash).await })).await
}

/// The chain has the transfer (in a block, or back in the mempool after a reorg with `None`).
pub async fn mark_seen(store: &Store, tx_id: &str, block: Option<u64>) -> Result<(), StoreError> {
    let tx_id = tx_id.to_owned();
    store.write(move |tx| Box::pin(async move { repo::mark_seen(tx, &tx_id, block, now_ms()).await })).await
}

/// The transfer has its confirmations: it completes, and so does the refund if this paid it in full
/// (otherwise it stays `Processing` for its next transfer); the ledger settles and what the transfer
/// cost in the native coin is recorded, all in one transaction. `false` if the transfer was decided
/// already (by another process, or before a restart).
pub async fn complete(store: &Store, tx_id: &str, block: u64, network_fee: u128) -> Result<bool, StoreError> {
    let tx_id = tx_id.to_owned();
    store
        .write(move |tx| {
            Box::pin(async move {
                let Some((r, leg)) = repo::lock_undecided_leg(tx, &tx_id).await? else { return Ok(false) };
                repo::mark_decided(tx, &tx_id, Ok(block), Some(network_fee), now_ms()).await?;
                transactions::raise_transaction_changed(tx, events::TRANSACTION_COMPLETED, &tx_id).await?;
                let paid_in_full = repo::paid_so_far(tx, &r.refund_id).await? >= r.amount;
                if paid_in_full {
                    move_refund(tx, &r, RefundEvent::PayoutCompleted, None).await?;
                }
                refunds_repo::post_settlement(tx, &r, leg.amount, paid_in_full, now_s()).await?;
                Ok(true)
            })
        })
        .await
}

/// The chain decided the transfer did not happen (reverted, or its nonce went to another
/// transaction): it fails, the refund ends unpaid and its reserved funds go back, in one transaction.
/// `network_fee` is what a mined (reverted) transfer cost the hot wallet; `None` if it was never mined.
pub async fn fail(store: &Store, tx_id: &str, reason: &str, network_fee: Option<u128>) -> Result<bool, StoreError> {
    let (tx_id, reason) = (tx_id.to_owned(), reason.to_owned());
    store
        .write(move |tx| {
            Box::pin(async move {
                let Some((r, _)) = repo::lock_undecided_leg(tx, &tx_id).await? else { return Ok(false) };
                repo::mark_decided(tx, &tx_id, Err(&reason), network_fee, now_ms()).await?;
                transactions::raise_transaction_changed(tx, events::TRANSACTION_FAILED, &tx_id).await?;
                end_unpaid(tx, &r, &reason).await?;
                Ok(true)
            })
        })
        .await
}

/// Whether a locked refund waits for a transfer: the first of a `Pending` refund, or the next of one
/// paid in several whose last transfer is decided.
async fn waits_for_transfer(tx: &mut Tx<'_>, r: &RefundRow) -> Result<bool, StoreError> {
    Ok(match r.status {
        RefundStatus::Pending => true,
        RefundStatus::Processing => !repo::has_open_leg(tx, &r.refund_id).await?,
        _ => false,
    })
}

/// Moves a refund through the state machine, only from the status it was locked in (which also ends
/// a payout hold).
async fn move_refund(
    tx: &mut Tx<'_>,
    r: &RefundRow,
    event: RefundEvent,
    reason: Option<&str>,
) -> Result<(), StoreError> {
    let next = r.status.apply(event).map_err(|e| StoreError::InvalidState(e.to_string()))?;
    refunds_repo::compare_and_set(tx, r, next, reason, None, now_s()).await
}

/// Ends a refund whose transfer failed or could not be sent (see [`unpaid_ending`]): the unpaid rest,
/// and the merchant fee, return to where they were reserved from, and the order may be refunded again.
async fn end_unpaid(tx: &mut Tx<'_>, r: &RefundRow, reason: &str) -> Result<(), StoreError> {
    let paid = repo::paid_so_far(tx, &r.refund_id).await?;
    let (event, rest) = unpaid_ending(r.amount, paid)
        .ok_or_else(|| StoreError::Internal(format!("refund {} overpaid", r.refund_id)))?;
    move_refund(tx, r, event, Some(reason)).await?;
    let unpaid = RefundRow { amount: rest, ..r.clone() };
    refunds_repo::adjust_order_refunded(tx, &unpaid, false).await?;
    refunds_repo::post_reservation(tx, &unpaid, true, now_s()).await
}
