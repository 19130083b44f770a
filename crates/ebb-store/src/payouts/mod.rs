//! The payout side of refunds: which refunds are ready to pay, nonce allocation, the signed
//! transaction stored before its broadcast, and what the chain decided about it.
//!
//! The steps are composed in `ebb-app/src/payouts.rs`, each one database transaction, from the
//! functions here; the executor (ebb-worker) calls them in order: payable refunds → (chain: prepare)
//! → start (allocate the nonce, sign, store the signed bytes, refund `Processing`) → (chain: broadcast,
//! track) → complete or fail. Every step is a compare-and-set on the stored status, so a second
//! process, or a restarted one, cannot apply a step twice; the unique indexes of migration 0002 (one
//! transaction per nonce, one open payout per refund) back that up.
//!
//! This file: refunds being paid and their nonces; `legs.rs`: each transfer until the chain decides.

mod legs;

pub use legs::{add_version, lock_undecided_leg, mark_decided, mark_seen, show_version};

use std::collections::HashMap;

use ebb_core::{Address, Amount, TxStatus};

use crate::columns::Columns;
use crate::db::{self, Tx};
use crate::page::Filter;
use crate::refunds::{lock_refund, RefundRow};
use crate::transactions::{insert_transaction, TransactionRow};
use crate::{Backend, Store, StoreError};

/// A refund that is `Pending` with an address: ready to pay out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayableRefund {
    pub refund_id: String,
    pub token_id: String,
    pub amount: Amount,
    /// What earlier transfers of this refund have paid (a payout split in several transfers).
    pub paid: Amount,
    pub to_address: Address,
    pub hold_reason: Option<String>,
}

/// The transfer a payout signs, as the executor prepared it from the refund it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedTransfer {
    pub token_id: String,
    pub to_address: Address,
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
pub async fn lock_for_payout(conn: &mut Tx<'_>, refund_id: &str) -> Result<Option<RefundRow>, StoreError> {
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

/// What the completed transfers of a refund have paid so far.
pub async fn paid_so_far(conn: &mut Tx<'_>, refund_id: &str) -> Result<Amount, StoreError> {
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
pub async fn has_open_leg(conn: &mut Tx<'_>, refund_id: &str) -> Result<bool, StoreError> {
    let open: Option<i64> = db::query(
        "SELECT 1 FROM payment_transactions WHERE refund_id = $1 AND direction = 'out' \
         AND status IN ('Broadcasting', 'Confirming')",
    )
    .bind(refund_id)
    .fetch_optional_scalar(&mut *conn)
    .await?;
    Ok(open.is_some())
}

/// Says why a `Pending` refund waits (or, with `None`, that nothing holds it any more).
pub async fn set_hold_reason(conn: &mut Tx<'_>, refund_id: &str, reason: Option<&str>) -> Result<(), StoreError> {
    db::query("UPDATE refunds SET hold_reason = $1 WHERE refund_id = $2 AND status = 'Pending'")
        .bind(reason)
        .bind(refund_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Locks a hot wallet's next nonce on a chain until the transaction ends (0 for a wallet never used).
pub async fn lock_next_nonce(conn: &mut Tx<'_>, chain_id: &str, wallet: &str) -> Result<u64, StoreError> {
    // The row must exist before it can be locked: without it, concurrent first payouts of a wallet
    // would all read "no nonce yet" and pick the same one (the unique index on (chain, wallet, nonce)
    // would then refuse all but one, but nobody should get that far).
    db::query(
        "INSERT INTO chain_nonces (chain_id, address, next_nonce) VALUES ($1, $2, 0) \
         ON CONFLICT (chain_id, address) DO NOTHING",
    )
    .bind(chain_id)
    .bind(wallet)
    .execute(&mut *conn)
    .await?;
    let lock = conn.backend().for_update();
    let stored: Option<i64> =
        db::query(&format!("SELECT next_nonce FROM chain_nonces WHERE chain_id = $1 AND address = $2{lock}"))
            .bind(chain_id)
            .bind(wallet)
            .fetch_optional_scalar(&mut *conn)
            .await?;
    Ok(stored.unwrap_or(0) as u64)
}

pub async fn store_next_nonce(conn: &mut Tx<'_>, chain_id: &str, wallet: &str, next: u64) -> Result<(), StoreError> {
    db::query("UPDATE chain_nonces SET next_nonce = $1 WHERE chain_id = $2 AND address = $3")
        .bind(next as i64)
        .bind(chain_id)
        .bind(wallet)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Stores a signed payout transfer before its broadcast: the transaction row (`Broadcasting`) with its
/// nonce and signed bytes, and the bytes as its first version.
pub async fn insert_leg(
    conn: &mut Tx<'_>,
    tx: &TransactionRow,
    nonce: u64,
    signed: &SignedBytes,
) -> Result<(), StoreError> {
    insert_transaction(conn, tx).await?;
    db::query("UPDATE payment_transactions SET nonce = $1, raw_tx = $2 WHERE tx_id = $3")
        .bind(nonce as i64)
        .bind(hex::encode(&signed.raw))
        .bind(&tx.tx_id)
        .execute(&mut *conn)
        .await?;
    insert_version(conn, &tx.tx_id, signed, tx.created_at_ms).await
}

const LEG_COLUMNS: &str = "tx_id, refund_id, tx_hash, raw_tx, nonce, status, block_number, token_id, amount";

async fn insert_version(conn: &mut Tx<'_>, tx_id: &str, signed: &SignedBytes, now: i64) -> Result<(), StoreError> {
    db::query("INSERT INTO payout_versions (tx_hash, tx_id, raw_tx, signed_at_ms) VALUES ($1, $2, $3, $4)")
        .bind(&signed.tx_hash)
        .bind(tx_id)
        .bind(hex::encode(&signed.raw))
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
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
                to_address: Address::from_stored(row.col("to_address")?),
                hold_reason: row.col("hold_reason")?,
            })
        };
        let rows = sqlx::query(
            "SELECT refund_id, token_id, amount, to_address, hold_reason FROM refunds \
             WHERE status = 'Pending' AND chain_id = $1 AND to_address <> '' \
             AND (approval_status IS NULL OR approval_status = 'Approved') ORDER BY seq LIMIT $2",
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
}
