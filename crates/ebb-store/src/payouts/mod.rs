//! The payout side of refunds: which refunds are ready to pay, nonce allocation, the signed
//! transaction stored before its broadcast, and the ledger settlement when the chain has decided.
//!
//! The executor (ebb-worker) calls these in order: [`Store::payable_refunds`] → (chain: prepare) →
//! [`Store::start_payout`], which in one database transaction allocates the nonce, signs through the
//! caller's closure, stores the signed bytes and moves the refund to `Processing` → (chain: broadcast,
//! track) → [`Store::complete_leg`] or [`Store::fail_leg`]. Every step is a compare-and-set on the
//! stored status, so a second process, or a restarted one, cannot apply a step twice; the unique
//! indexes of migration 0002 (one transaction per nonce, one open payout per refund) back that up.
//!
//! This file: choosing and starting payouts; `legs.rs`: following each transfer until the chain decides.

mod legs;

use std::collections::HashMap;

use ebb_core::clock::{now_ms, now_s};
use ebb_core::ledger::{Account, Entry};
use ebb_core::refund::RefundEvent;
use ebb_core::{Amount, RefundStatus, TxDirection, TxStatus};

use crate::columns::Columns;
use crate::db::{self, Tx};
use crate::ledger::{self, SourceType};
use crate::page::Filter;
use crate::refunds::{adjust_order_refunded, compare_and_set, lock_refund, post_reservation, RefundRow};
use crate::transactions::{self, insert_transaction, TransactionRow};
use crate::{events, ids, Backend, Store, StoreError};

/// A refund that is `Pending` with an address: ready to pay out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayableRefund {
    pub refund_id: String,
    pub token_id: String,
    pub amount: Amount,
    /// What earlier transfers of this refund have paid (a payout split in several transfers).
    pub paid: Amount,
    pub to_address: String,
    pub hold_reason: Option<String>,
}

/// The transfer a payout signs, as the executor prepared it from the refund it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedTransfer {
    pub token_id: String,
    pub to_address: String,
    pub amount: Amount,
}

/// A payout transaction that the chain has not decided yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenLeg {
    pub tx_id: String,
    pub refund_id: String,
    pub tx_hash: String,
    pub raw: Vec<u8>,
    pub nonce: u64,
    pub status: TxStatus,
    pub block_number: Option<u64>,
    pub token_id: String,
    pub amount: Amount,
    /// Every signed version's hash, oldest first (more than one once fees were bumped); the last is
    /// `tx_hash`, unless the chain mined an older one.
    pub versions: Vec<String>,
    /// When the latest version was signed (ms).
    pub signed_at_ms: i64,
}

/// What the caller's signer returns: the transaction hash and the signed bytes.
pub struct SignedBytes {
    pub tx_hash: String,
    pub raw: Vec<u8>,
}

fn leg_from_row(row: &impl Columns) -> Result<OpenLeg, StoreError> {
    let raw_hex: Option<String> = row.col("raw_tx")?;
    let tx_id: String = row.col("tx_id")?;
    let raw = hex::decode(raw_hex.unwrap_or_default())
        .map_err(|e| StoreError::Internal(format!("stored signed transaction of {tx_id}: {e}")))?;
    let block: Option<i64> = row.col("block_number")?;
    Ok(OpenLeg {
        refund_id: row.col::<Option<String>>("refund_id")?.unwrap_or_default(),
        tx_hash: row.col::<Option<String>>("tx_hash")?.unwrap_or_default(),
        raw,
        nonce: row.col::<i64>("nonce")? as u64,
        status: {
            let s: String = row.col("status")?;
            TxStatus::parse(&s).ok_or_else(|| StoreError::Internal(format!("stored transaction status {s:?}")))?
        },
        block_number: block.map(|b| b as u64),
        token_id: row.col("token_id")?,
        amount: Amount::from_base_units_str(&row.col::<String>("amount")?)?,
        versions: Vec::new(),
        signed_at_ms: 0,
        tx_id,
    })
}

/// Locks a refund for a payout step; on PostgreSQL a row another process holds is skipped (`None`)
/// rather than waited for: that process is doing this step already.
async fn lock_for_payout(conn: &mut Tx<'_>, refund_id: &str) -> Result<Option<RefundRow>, StoreError> {
    if conn.backend() == Backend::Postgres {
        let locked = db::query("SELECT refund_id FROM refunds WHERE refund_id = $1 FOR UPDATE SKIP LOCKED")
            .bind(refund_id)
            .fetch_optional(&mut *conn)
            .await?;
        if locked.is_none() {
            return Ok(None);
        }
    }
    Ok(Some(lock_refund(conn, refund_id, None).await?))
}

/// Moves a refund between payout statuses through the state machine, only from the status it was
/// read in (the refunds module's compare-and-set, which also clears `hold_reason`).
async fn move_refund(
    conn: &mut Tx<'_>,
    r: &RefundRow,
    event: RefundEvent,
    failed_reason: Option<&str>,
    now: i64,
) -> Result<RefundStatus, StoreError> {
    let next = r.status.apply(event).map_err(|e| StoreError::InvalidState(e.to_string()))?;
    compare_and_set(conn, r, next, failed_reason, None, now).await?;
    Ok(next)
}

/// Locks a payout transaction and its refund for the chain's verdict; `None` if the leg was decided
/// already (by another process, or before a restart) or another process holds the refund.
async fn lock_undecided_leg(conn: &mut Tx<'_>, tx_id: &str) -> Result<Option<(RefundRow, OpenLeg)>, StoreError> {
    let leg = lock_leg(conn, tx_id).await?;
    let Some(r) = lock_for_payout(conn, &leg.refund_id).await? else { return Ok(None) };
    if !leg.status.is_open() {
        return Ok(None);
    }
    Ok(Some((r, leg)))
}

/// What the completed transfers of a refund have paid so far.
async fn paid_so_far(conn: &mut Tx<'_>, refund_id: &str) -> Result<Amount, StoreError> {
    let amounts: Vec<String> = db::query(
        "SELECT amount FROM payment_transactions WHERE refund_id = $1 AND direction = 'out' AND status = 'Completed'",
    )
    .bind(refund_id)
    .fetch_all_scalars(&mut *conn)
    .await?;
    amounts.iter().try_fold(Amount::ZERO, |sum, a| {
        sum.checked_add(Amount::from_base_units_str(a)?)
            .ok_or_else(|| StoreError::Internal(format!("paid total of refund {refund_id} out of range")))
    })
}

/// Whether a refund has a transfer in flight.
async fn has_open_leg(conn: &mut Tx<'_>, refund_id: &str) -> Result<bool, StoreError> {
    let open: Option<i64> = db::query(
        "SELECT 1 FROM payment_transactions WHERE refund_id = $1 AND direction = 'out' \
         AND status IN ('Broadcasting', 'Confirming')",
    )
    .bind(refund_id)
    .fetch_optional_scalar(&mut *conn)
    .await?;
    Ok(open.is_some())
}

/// Ends a refund whose transfer failed (or could not be sent): `Failed` with everything released if
/// nothing was paid; `PartiallyCompleted` if earlier transfers paid part of it, releasing the rest and
/// the developer fee (the fee is charged only for a refund paid in full).
async fn end_unpaid(conn: &mut Tx<'_>, r: &RefundRow, reason: &str, now: i64) -> Result<(), StoreError> {
    let paid = paid_so_far(conn, &r.refund_id).await?;
    if paid.is_zero() {
        move_refund(conn, r, RefundEvent::PayoutFailed, Some(reason), now).await?;
        return release(conn, r, now).await;
    }
    move_refund(conn, r, RefundEvent::PayoutPartiallyCompleted, Some(reason), now).await?;
    let mut rest = r.clone();
    rest.amount =
        r.amount.checked_sub(paid).ok_or_else(|| StoreError::Internal(format!("refund {} overpaid", r.refund_id)))?;
    release(conn, &rest, now).await
}

/// Gives a failed payout's funds back: the reservation returns to its source, the order may be refunded again.
async fn release(conn: &mut Tx<'_>, r: &RefundRow, now: i64) -> Result<(), StoreError> {
    adjust_order_refunded(conn, r, false).await?;
    post_reservation(conn, r, true, now).await
}

/// Settles a mined transfer of `amount`: it leaves for the world; when the refund is paid in full
/// (`last`), its developer fee goes to the PSP.
async fn settle(conn: &mut Tx<'_>, r: &RefundRow, amount: Amount, last: bool, now: i64) -> Result<(), StoreError> {
    let paid =
        Entry::builder().transfer(Account::Reserved, Account::World, &r.token_id, amount.base_units())?.build()?;
    match r.merchant_fee_amount.filter(|f| !f.is_zero() && last) {
        Some(fee) => {
            let fee =
                Entry::builder().transfer(Account::Reserved, Account::Psp, &r.token_id, fee.base_units())?.build()?;
            ledger::post_many(conn, &[(&paid, SourceType::RefundOut), (&fee, SourceType::RefundFee)], &r.refund_id, now)
                .await
        }
        None => ledger::post(conn, &paid, SourceType::RefundOut, &r.refund_id, now).await,
    }
}

const LEG_COLUMNS: &str = "tx_id, refund_id, tx_hash, raw_tx, nonce, status, block_number, token_id, amount";

async fn insert_version(conn: &mut Tx<'_>, tx_id: &str, tx_hash: &str, raw: &[u8], now: i64) -> Result<(), StoreError> {
    db::query("INSERT INTO payout_versions (tx_hash, tx_id, raw_tx, signed_at_ms) VALUES ($1, $2, $3, $4)")
        .bind(tx_hash)
        .bind(tx_id)
        .bind(hex::encode(raw))
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn lock_leg(conn: &mut Tx<'_>, tx_id: &str) -> Result<OpenLeg, StoreError> {
    let lock = conn.backend().for_update();
    let row = db::query(&format!(
        "SELECT {LEG_COLUMNS} FROM payment_transactions WHERE tx_id = $1 AND direction = 'out'{lock}"
    ))
    .bind(tx_id)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::NotFound { what: "payout transaction", id: tx_id.to_owned() })?;
    leg_from_row(&row)
}

impl Store {
    /// Refunds on `chain_id` ready to pay out, oldest first: `Pending` ones, then `Processing` ones paid in
    /// several transfers whose last transfer is done and which still have an amount to pay.
    pub async fn payable_refunds(&self, chain_id: &str, limit: i64) -> Result<Vec<PayableRefund>, StoreError> {
        let payable = |row: &sqlx::any::AnyRow| -> Result<PayableRefund, StoreError> {
            Ok(PayableRefund {
                refund_id: row.col("refund_id")?,
                token_id: row.col("token_id")?,
                amount: Amount::from_base_units_str(&row.col::<String>("amount")?)?,
                paid: Amount::ZERO,
                to_address: row.col("to_address")?,
                hold_reason: row.col("hold_reason")?,
            })
        };
        let rows = sqlx::query(
            "SELECT refund_id, token_id, amount, to_address, hold_reason FROM refunds \
             WHERE status = 'Pending' AND chain_id = $1 AND to_address <> '' ORDER BY seq LIMIT $2",
        )
        .bind(chain_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let mut out: Vec<PayableRefund> = rows.iter().map(payable).collect::<Result<_, _>>()?;
        // Refunds between two transfers: `Processing` with no transfer in flight. (Two plain queries rather
        // than a correlated NOT EXISTS: its plan depends on statistics a young table lacks.)
        let processing = sqlx::query(
            "SELECT refund_id, token_id, amount, to_address, hold_reason FROM refunds \
             WHERE status = 'Processing' AND chain_id = $1 ORDER BY seq LIMIT $2",
        )
        .bind(chain_id)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        if processing.is_empty() {
            return Ok(out);
        }
        let ids: Vec<String> = processing.iter().map(|r| r.col("refund_id")).collect::<Result<_, _>>()?;
        let mut f = Filter::default();
        f.is_in("refund_id", &ids);
        let sql = format!(
            "SELECT refund_id, amount, status FROM payment_transactions{} AND direction = 'out'",
            f.where_sql()
        );
        let mut open = std::collections::HashSet::new();
        let mut paid: HashMap<String, Amount> = HashMap::new();
        for row in f.bind_all(sqlx::query(&sql)).fetch_all(self.pool()).await? {
            let id: String = row.col("refund_id")?;
            let status: String = row.col("status")?;
            match TxStatus::parse(&status) {
                Some(s) if s.is_open() => {
                    open.insert(id);
                }
                Some(TxStatus::Completed) => {
                    let a = Amount::from_base_units_str(&row.col::<String>("amount")?)?;
                    let sum = paid.entry(id).or_default();
                    *sum = sum.checked_add(a).unwrap_or(*sum);
                }
                _ => {}
            }
        }
        for row in &processing {
            let mut r = payable(row)?;
            if open.contains(&r.refund_id) {
                continue;
            }
            r.paid = paid.get(&r.refund_id).copied().unwrap_or_default();
            if r.paid < r.amount {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Says why a `Pending` refund waits (or, with `None`, that nothing holds it any more).
    pub async fn set_hold_reason(&self, refund_id: &str, reason: Option<&str>) -> Result<(), StoreError> {
        let (refund_id, reason) = (refund_id.to_owned(), reason.map(str::to_owned));
        self.write(move |conn| {
            Box::pin(async move {
                db::query("UPDATE refunds SET hold_reason = $1 WHERE refund_id = $2 AND status = 'Pending'")
                    .bind(reason)
                    .bind(refund_id)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    /// Fails a `Pending` refund that was never sent (the chain says the transfer would revert) and
    /// releases its funds. `false` if the refund was no longer `Pending`.
    pub async fn fail_unsent_payout(&self, refund_id: &str, reason: &str) -> Result<bool, StoreError> {
        let (refund_id, reason) = (refund_id.to_owned(), reason.to_owned());
        self.write(move |conn| {
            Box::pin(async move {
                let Some(r) = lock_for_payout(conn, &refund_id).await? else { return Ok(false) };
                let between_transfers = r.status == RefundStatus::Processing && !has_open_leg(conn, &refund_id).await?;
                if r.status != RefundStatus::Pending && !between_transfers {
                    return Ok(false);
                }
                end_unpaid(conn, &r, &reason, now_s()).await?;
                Ok(true)
            })
        })
        .await
    }

    /// Starts paying a `Pending` refund: in one transaction, allocates the hot wallet's next nonce (at
    /// least `chain_nonce`, what the node reports, so transactions sent from the wallet outside ebb are
    /// skipped), signs with it through `sign`, stores the signed bytes as a `Broadcasting` transaction
    /// and moves the refund to `Processing`. Nothing is broadcast here; the caller does that after this
    /// returns, so the bytes are durable first. `None` if the refund is no longer `Pending`, or another
    /// process is starting it, or the locked row no longer asks for `transfer` (its address changed
    /// since the executor read it): nothing is signed then, and the next tick prepares the refund anew.
    pub async fn start_payout<F>(
        &self,
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
        let (refund_id, chain_id, hot_wallet) = (refund_id.to_owned(), chain_id.to_owned(), hot_wallet.to_owned());
        self.write(move |conn| {
            Box::pin(async move {
                let Some(r) = lock_for_payout(conn, &refund_id).await? else { return Ok(None) };
                // The first transfer of a `Pending` refund, or the next of one paid in several.
                let next_transfer = r.status == RefundStatus::Processing && !has_open_leg(conn, &refund_id).await?;
                if (r.status != RefundStatus::Pending && !next_transfer) || r.to_address.is_empty() {
                    return Ok(None);
                }
                // The signature must be for what the locked row asks now, not for what was read before.
                if r.to_address != transfer.to_address || r.token_id != transfer.token_id {
                    tracing::info!(refund = %refund_id, prepared_for = %transfer.to_address, now = %r.to_address,
                        "the refund changed while its payout was prepared; the attempt is abandoned before signing");
                    return Ok(None);
                }
                let amount = transfer.amount;
                let remaining = r.amount.checked_sub(paid_so_far(conn, &refund_id).await?).unwrap_or(Amount::ZERO);
                if amount.is_zero() || amount > remaining {
                    return Err(StoreError::Internal(format!(
                        "a transfer of {amount} for refund {refund_id}, which has {remaining} left to pay"
                    )));
                }
                // The row must exist before it can be locked: without it, concurrent first payouts of a
                // wallet would all read "no nonce yet" and pick the same one (the unique index on
                // (chain, wallet, nonce) would then refuse all but one, but nobody should get that far).
                db::query(
                    "INSERT INTO chain_nonces (chain_id, address, next_nonce) VALUES ($1, $2, 0) \
                     ON CONFLICT (chain_id, address) DO NOTHING",
                )
                .bind(&chain_id)
                .bind(&hot_wallet)
                .execute(&mut *conn)
                .await?;
                let lock = conn.backend().for_update();
                let stored: Option<i64> = db::query(&format!(
                    "SELECT next_nonce FROM chain_nonces WHERE chain_id = $1 AND address = $2{lock}"
                ))
                .bind(&chain_id)
                .bind(&hot_wallet)
                .fetch_optional_scalar(&mut *conn)
                .await?;
                let nonce = (stored.unwrap_or(0) as u64).max(chain_nonce);
                let signed = sign(nonce).map_err(|e| StoreError::Internal(format!("signing the payout: {e}")))?;
                db::query(
                    "INSERT INTO chain_nonces (chain_id, address, next_nonce) VALUES ($1, $2, $3) \
                     ON CONFLICT (chain_id, address) DO UPDATE SET next_nonce = excluded.next_nonce",
                )
                .bind(&chain_id)
                .bind(&hot_wallet)
                .bind((nonce + 1) as i64)
                .execute(&mut *conn)
                .await?;
                let now = now_ms();
                let tx = TransactionRow {
                    tx_id: ids::new_id("T"),
                    direction: TxDirection::Out,
                    order_id: r.order_id.clone(),
                    refund_id: Some(r.refund_id.clone()),
                    tx_hash: Some(signed.tx_hash.clone()),
                    token_id: r.token_id.clone(),
                    chain_id: chain_id.clone(),
                    from_address: hot_wallet.clone(),
                    to_address: r.to_address.clone(),
                    amount,
                    status: TxStatus::Broadcasting,
                    failed_reason: None,
                    created_at_ms: now,
                    updated_at_ms: now,
                };
                insert_transaction(conn, &tx).await?;
                db::query("UPDATE payment_transactions SET nonce = $1, raw_tx = $2 WHERE tx_id = $3")
                    .bind(nonce as i64)
                    .bind(hex::encode(&signed.raw))
                    .bind(&tx.tx_id)
                    .execute(&mut *conn)
                    .await?;
                insert_version(conn, &tx.tx_id, &signed.tx_hash, &signed.raw, now).await?;
                transactions::raise_transaction_changed(conn, events::TRANSACTION_CREATED, &tx.tx_id).await?;
                if r.status == RefundStatus::Pending {
                    move_refund(conn, &r, RefundEvent::PayoutStarted, None, now_s()).await?;
                }
                Ok(Some(OpenLeg {
                    tx_id: tx.tx_id,
                    refund_id: r.refund_id,
                    tx_hash: signed.tx_hash,
                    raw: signed.raw,
                    nonce,
                    status: TxStatus::Broadcasting,
                    block_number: None,
                    token_id: r.token_id.clone(),
                    amount,
                    versions: vec![tx.tx_hash.clone().unwrap_or_default()],
                    signed_at_ms: now,
                }))
            })
        })
        .await
    }
}
