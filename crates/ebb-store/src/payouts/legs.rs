//! Payout transfers after they are stored: re-priced, seen on chain, completed or failed.

use ebb_core::clock::{now_ms, now_s};
use ebb_core::refund::RefundEvent;
use ebb_core::TxStatus;

use super::{
    end_unpaid, insert_version, leg_from_row, lock_leg, lock_undecided_leg, move_refund, paid_so_far, settle, OpenLeg,
    SignedBytes, LEG_COLUMNS,
};
use crate::columns::Columns;
use crate::page::Filter;
use crate::{db, events, transactions, Store, StoreError};

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

    /// Stores a replacement of an open payout (same nonce, higher fees) before it is broadcast: a new
    /// version, which the transaction row now shows. `false` if the payout was decided meanwhile.
    pub async fn replace_payout(&self, tx_id: &str, signed: SignedBytes) -> Result<bool, StoreError> {
        let tx_id = tx_id.to_owned();
        self.write(move |conn| {
            Box::pin(async move {
                let leg = lock_leg(conn, &tx_id).await?;
                if !leg.status.is_open() {
                    return Ok(false);
                }
                let now = now_ms();
                insert_version(conn, &tx_id, &signed.tx_hash, &signed.raw, now).await?;
                db::query(
                    "UPDATE payment_transactions SET tx_hash = $1, raw_tx = $2, updated_at_ms = $3 WHERE tx_id = $4",
                )
                .bind(&signed.tx_hash)
                .bind(hex::encode(&signed.raw))
                .bind(now)
                .bind(&tx_id)
                .execute(&mut *conn)
                .await?;
                Ok(true)
            })
        })
        .await
    }

    /// Makes the transaction row show the version of an open payout the chain actually has (an older one
    /// can be mined after a newer was signed).
    pub async fn show_payout_version(&self, tx_id: &str, tx_hash: &str) -> Result<(), StoreError> {
        let (tx_id, tx_hash) = (tx_id.to_owned(), tx_hash.to_owned());
        self.write(move |conn| {
            Box::pin(async move {
                db::query(
                    "UPDATE payment_transactions SET tx_hash = v.tx_hash, raw_tx = v.raw_tx \
                     FROM payout_versions v WHERE v.tx_hash = $1 AND v.tx_id = $2 AND payment_transactions.tx_id = $2",
                )
                .bind(&tx_hash)
                .bind(&tx_id)
                .execute(&mut *conn)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Records where an open payout is: mined in `block` below the confirmation depth (`Confirming`),
    /// or, with `None`, not in any block (back to `Broadcasting`, e.g. after a reorg).
    pub async fn mark_leg_seen(&self, tx_id: &str, block: Option<u64>) -> Result<(), StoreError> {
        let tx_id = tx_id.to_owned();
        self.write(move |conn| {
            Box::pin(async move {
                let status = if block.is_some() { TxStatus::Confirming } else { TxStatus::Broadcasting };
                db::query(
                    "UPDATE payment_transactions SET status = $1, block_number = $2, updated_at_ms = $3 \
                     WHERE tx_id = $4 AND status IN ('Broadcasting', 'Confirming')",
                )
                .bind(status.as_str())
                .bind(block.map(|b| b as i64))
                .bind(now_ms())
                .bind(tx_id)
                .execute(&mut *conn)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// The chain confirmed a payout: the transaction and the refund complete and the ledger settles,
    /// in one transaction. `false` if the leg was already decided (by another process, or before a restart).
    pub async fn complete_leg(&self, tx_id: &str, block: u64) -> Result<bool, StoreError> {
        let tx_id = tx_id.to_owned();
        self.write(move |conn| {
            Box::pin(async move {
                let Some((r, leg)) = lock_undecided_leg(conn, &tx_id).await? else { return Ok(false) };
                let now = now_s();
                db::query(
                    "UPDATE payment_transactions SET status = $1, block_number = $2, updated_at_ms = $3 WHERE tx_id = $4",
                )
                .bind(TxStatus::Completed.as_str())
                .bind(block as i64)
                .bind(now_ms())
                .bind(&tx_id)
                .execute(&mut *conn)
                .await?;
                transactions::raise_transaction_changed(conn, events::TRANSACTION_COMPLETED, &tx_id).await?;
                // Paid in full: the refund completes. Otherwise it stays `Processing` and the executor
                // sends the next transfer.
                let paid_in_full = paid_so_far(conn, &r.refund_id).await? >= r.amount;
                if paid_in_full {
                    move_refund(conn, &r, RefundEvent::PayoutCompleted, None, now).await?;
                }
                settle(conn, &r, leg.amount, paid_in_full, now).await?;
                Ok(true)
            })
        })
        .await
    }

    /// The chain decided a payout did not happen (reverted, or its nonce went to another transaction):
    /// the transaction and the refund fail and the reserved funds go back, in one transaction.
    pub async fn fail_leg(&self, tx_id: &str, reason: &str) -> Result<bool, StoreError> {
        let (tx_id, reason) = (tx_id.to_owned(), reason.to_owned());
        self.write(move |conn| {
            Box::pin(async move {
                let Some((r, _)) = lock_undecided_leg(conn, &tx_id).await? else { return Ok(false) };
                let now = now_s();
                db::query(
                    "UPDATE payment_transactions SET status = $1, failed_reason = $2, updated_at_ms = $3 WHERE tx_id = $4",
                )
                .bind(TxStatus::Failed.as_str())
                .bind(&reason)
                .bind(now_ms())
                .bind(&tx_id)
                .execute(&mut *conn)
                .await?;
                transactions::raise_transaction_changed(conn, events::TRANSACTION_FAILED, &tx_id).await?;
                end_unpaid(conn, &r, &reason, now).await?;
                Ok(true)
            })
        })
        .await
    }
}
