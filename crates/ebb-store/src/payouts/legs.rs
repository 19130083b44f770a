//! Payout transfers after they are stored: re-priced, seen on chain, completed or failed.

use ebb_core::TxStatus;

use super::{insert_version, leg_from_row, lock_for_payout, OpenLeg, SignedBytes, LEG_COLUMNS};
use crate::columns::Columns;
use crate::db::{self, Tx};
use crate::page::Filter;
use crate::refunds::RefundRow;
use crate::{Store, StoreError};

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

/// Locks a payout transaction and its refund for the chain's verdict; `None` if the leg was decided
/// already (by another process, or before a restart) or another process holds the refund.
pub async fn lock_undecided_leg(conn: &mut Tx<'_>, tx_id: &str) -> Result<Option<(RefundRow, OpenLeg)>, StoreError> {
    let leg = lock_leg(conn, tx_id).await?;
    let Some(r) = lock_for_payout(conn, &leg.refund_id).await? else { return Ok(None) };
    if !leg.status.is_open() {
        return Ok(None);
    }
    Ok(Some((r, leg)))
}

/// Stores a replacement of an open payout (same nonce, higher fees) before it is broadcast: a new
/// version, which the transaction row now shows. `false` if the payout was decided meanwhile.
pub async fn add_version(
    conn: &mut Tx<'_>,
    tx_id: &str,
    signed: &SignedBytes,
    now_ms: i64,
) -> Result<bool, StoreError> {
    if !lock_leg(conn, tx_id).await?.status.is_open() {
        return Ok(false);
    }
    insert_version(conn, tx_id, signed, now_ms).await?;
    db::query("UPDATE payment_transactions SET tx_hash = $1, raw_tx = $2, updated_at_ms = $3 WHERE tx_id = $4")
        .bind(&signed.tx_hash)
        .bind(hex::encode(&signed.raw))
        .bind(now_ms)
        .bind(tx_id)
        .execute(&mut *conn)
        .await?;
    Ok(true)
}

/// Makes the transaction row show the version of an open payout the chain actually has (an older one
/// can be mined after a newer was signed).
pub async fn show_version(conn: &mut Tx<'_>, tx_id: &str, tx_hash: &str) -> Result<(), StoreError> {
    db::query(
        "UPDATE payment_transactions SET tx_hash = v.tx_hash, raw_tx = v.raw_tx \
         FROM payout_versions v WHERE v.tx_hash = $1 AND v.tx_id = $2 AND payment_transactions.tx_id = $2",
    )
    .bind(tx_hash)
    .bind(tx_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records where an open payout is: mined in `block` below the confirmation depth (`Confirming`),
/// or, with `None`, not in any block (back to `Broadcasting`, e.g. after a reorg).
pub async fn mark_seen(conn: &mut Tx<'_>, tx_id: &str, block: Option<u64>, now_ms: i64) -> Result<(), StoreError> {
    let status = if block.is_some() { TxStatus::Confirming } else { TxStatus::Broadcasting };
    db::query(
        "UPDATE payment_transactions SET status = $1, block_number = $2, updated_at_ms = $3 \
         WHERE tx_id = $4 AND status IN ('Broadcasting', 'Confirming')",
    )
    .bind(status.as_str())
    .bind(block.map(|b| b as i64))
    .bind(now_ms)
    .bind(tx_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Stores the chain's verdict on a payout locked by [`lock_undecided_leg`]: `Completed` in `block`, or
/// `Failed` with the reason.
pub async fn mark_decided(
    conn: &mut Tx<'_>,
    tx_id: &str,
    verdict: Result<u64, &str>,
    network_fee: Option<u128>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let (status, block, reason) = match verdict {
        Ok(block) => (TxStatus::Completed, Some(block as i64), None),
        Err(reason) => (TxStatus::Failed, None, Some(reason)),
    };
    db::query(
        "UPDATE payment_transactions SET status = $1, block_number = COALESCE($2, block_number), \
         failed_reason = $3, network_fee = $4, updated_at_ms = $5 WHERE tx_id = $6",
    )
    .bind(status.as_str())
    .bind(block)
    .bind(reason)
    .bind(network_fee.map(|f| f.to_string()))
    .bind(now_ms)
    .bind(tx_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl Store {
    /// Payout transactions on `chain_id` the chain has not decided yet, by nonce.
    pub async fn open_legs(&self, chain_id: &str) -> Result<Vec<OpenLeg>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {LEG_COLUMNS} FROM payment_transactions \
             WHERE direction = 'out' AND chain_id = $1 AND status IN ('Broadcasting', 'Confirming') ORDER BY nonce"
        ))
        .bind(chain_id)
        .fetch_all(self.pool())
        .await?;
        let mut legs: Vec<OpenLeg> = rows.iter().map(leg_from_row).collect::<Result<_, _>>()?;
        if legs.is_empty() {
            return Ok(legs);
        }
        let mut f = Filter::default();
        f.is_in("tx_id", &legs.iter().map(|l| l.tx_id.clone()).collect::<Vec<_>>());
        let sql =
            format!("SELECT tx_id, tx_hash, signed_at_ms FROM payout_versions{} ORDER BY signed_at_ms", f.where_sql());
        for row in f.bind_all(sqlx::query(&sql)).fetch_all(self.pool()).await? {
            let tx_id: String = row.col("tx_id")?;
            if let Some(leg) = legs.iter_mut().find(|l| l.tx_id == tx_id) {
                leg.versions.push(row.col("tx_hash")?);
                leg.signed_at_ms = leg.signed_at_ms.max(row.col("signed_at_ms")?);
            }
        }
        for leg in &mut legs {
            if !leg.versions.contains(&leg.tx_hash) {
                leg.versions.push(leg.tx_hash.clone());
            }
        }
        Ok(legs)
    }
}
