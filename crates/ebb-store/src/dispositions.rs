//! Dispositions of held pay-ins, every one kept, and what a pay-in still has in the `held` account
//! (see `ebb-app/src/dispositions.rs`).

use ebb_core::Amount;

use crate::columns::Columns;
use crate::db::{self, Tx};
use crate::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispositionRow {
    pub tx_id: String,
    /// `Unfreeze`, `Refund` or `Isolate`.
    pub disposition_type: String,
    /// The refund paying a `Refund` or `Isolate` out.
    pub refund_id: Option<String>,
    pub created_at: i64,
}

pub async fn record(conn: &mut Tx<'_>, d: &DispositionRow) -> Result<(), StoreError> {
    db::query("INSERT INTO dispositions (tx_id, disposition_type, refund_id, created_at) VALUES ($1, $2, $3, $4)")
        .bind(&d.tx_id)
        .bind(&d.disposition_type)
        .bind(&d.refund_id)
        .bind(d.created_at)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn from_row(row: &impl Columns) -> Result<DispositionRow, StoreError> {
    Ok(DispositionRow {
        tx_id: row.col("tx_id")?,
        disposition_type: row.col("disposition_type")?,
        refund_id: row.col("refund_id")?,
        created_at: row.col("created_at")?,
    })
}

const SELECT: &str =
    "SELECT tx_id, disposition_type, refund_id, created_at FROM dispositions WHERE tx_id = $1 ORDER BY seq";

/// A pay-in's dispositions, oldest first, inside a write (after the pay-in is locked).
pub async fn of(conn: &mut Tx<'_>, tx_id: &str) -> Result<Vec<DispositionRow>, StoreError> {
    let rows = db::query(SELECT).bind(tx_id).fetch_all(&mut *conn).await?;
    rows.iter().map(from_row).collect()
}

/// What a pay-in still has in the `held` account: the held postings of the pay-in itself and of the
/// refunds of its dispositions (a failed payout's release comes back under its refund's id).
pub async fn held_remaining(conn: &mut Tx<'_>, tx_id: &str, refund_ids: &[String]) -> Result<Amount, StoreError> {
    let mut sources = vec![tx_id.to_owned()];
    sources.extend(refund_ids.iter().cloned());
    let params: Vec<String> = (1..=sources.len()).map(|i| format!("${i}")).collect();
    let sql = format!("SELECT delta FROM postings WHERE account = 'held' AND source_id IN ({})", params.join(", "));
    let mut q = db::query(&sql);
    for s in &sources {
        q = q.bind(s);
    }
    let deltas: Vec<String> = q.fetch_all_scalars(&mut *conn).await?;
    let mut sum: i128 = 0;
    for d in deltas {
        let v: i128 = d.parse().map_err(|_| StoreError::Internal(format!("stored posting delta {d:?}")))?;
        sum = sum.checked_add(v).ok_or_else(|| StoreError::Internal("held total out of range".into()))?;
    }
    u128::try_from(sum)
        .map(Amount::from_base_units)
        .map_err(|_| StoreError::Internal(format!("pay-in {tx_id} holds a negative amount ({sum})")))
}

impl Store {
    pub async fn dispositions(&self, tx_id: &str) -> Result<Vec<DispositionRow>, StoreError> {
        let rows = sqlx::query(SELECT).bind(tx_id).fetch_all(self.pool()).await?;
        rows.iter().map(from_row).collect()
    }
}

/// A review of a held pay-in: Cobo's `decisions` (an external KYT result) or `manual_review`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KytReviewRow {
    pub tx_id: String,
    /// `decision` or `manual_review`.
    pub kind: String,
    /// `Approval`, `ApprovalWithAlert`, `Rejection` or `ManualReview`.
    pub result: String,
    /// The initiator of the call.
    pub reviewer: String,
    pub created_at_ms: i64,
}

pub async fn record_review(conn: &mut Tx<'_>, r: &KytReviewRow) -> Result<(), StoreError> {
    db::query("INSERT INTO kyt_reviews (tx_id, kind, result, reviewer, created_at_ms) VALUES ($1, $2, $3, $4, $5)")
        .bind(&r.tx_id)
        .bind(&r.kind)
        .bind(&r.result)
        .bind(&r.reviewer)
        .bind(r.created_at_ms)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// What `compliance.kyt.screenings.status.updated` remembers: Cobo's `KytScreeningsEventData`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct KytScreeningSnapshot {
    pub transaction_id: String,
    pub review_status: String,
    pub funds_status: String,
    pub updated_timestamp: i64,
}

/// Raises `compliance.kyt.screenings.status.updated` for a pay-in (its subject, so that its events
/// keep their order with the pay-in's other events).
pub async fn raise_kyt_screening(
    conn: &mut Tx<'_>,
    tx_id: &str,
    review_status: &str,
    funds_status: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    let snapshot = KytScreeningSnapshot {
        transaction_id: tx_id.to_owned(),
        review_status: review_status.to_owned(),
        funds_status: funds_status.to_owned(),
        updated_timestamp: now_ms,
    };
    crate::events::raise(
        conn,
        crate::events::KYT_SCREENING_UPDATED,
        crate::events::EventKind::KytScreening,
        tx_id,
        crate::events::json(&snapshot)?,
    )
    .await?;
    Ok(())
}

impl Store {
    /// The latest review of a pay-in, if any: `(kind, result)`.
    pub async fn latest_kyt_review(&self, tx_id: &str) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query("SELECT kind, result FROM kyt_reviews WHERE tx_id = $1 ORDER BY seq DESC LIMIT 1")
            .bind(tx_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(|r| Ok((r.col("kind")?, r.col("result")?))).transpose()
    }
}

/// What `compliance.disposition.status.updated` remembers: the disposition and, for a payout, its
/// refund's status at the time (the API turns it into Cobo's `disposition_status`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DispositionSnapshot {
    pub transaction_id: String,
    /// `Unfreeze`, `Refund` or `Isolate`.
    pub disposition_type: String,
    /// The paying refund's status (`RefundStatus::as_str`); `None` for an `Unfreeze`.
    pub refund_status: Option<String>,
    pub destination_address: Option<String>,
    pub token_id: String,
    #[serde(with = "crate::snapshot::amount")]
    pub amount: Amount,
    pub updated_timestamp: i64,
}

pub async fn raise_disposition_changed(conn: &mut Tx<'_>, snapshot: &DispositionSnapshot) -> Result<(), StoreError> {
    crate::events::raise(
        conn,
        crate::events::DISPOSITION_UPDATED,
        crate::events::EventKind::Disposition,
        &snapshot.transaction_id,
        crate::events::json(snapshot)?,
    )
    .await?;
    Ok(())
}

/// A refund of held funds changed status: if it pays a disposition, its status changed too.
pub(crate) async fn on_refund_changed(conn: &mut Tx<'_>, refund: &crate::refunds::RefundRow) -> Result<(), StoreError> {
    let row = db::query("SELECT tx_id, disposition_type FROM dispositions WHERE refund_id = $1")
        .bind(&refund.refund_id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(()) };
    let snapshot = DispositionSnapshot {
        transaction_id: row.col("tx_id")?,
        disposition_type: row.col("disposition_type")?,
        refund_status: Some(refund.status.as_str().to_owned()),
        destination_address: Some(refund.to_address.clone()),
        token_id: refund.token_id.clone(),
        amount: refund.amount,
        updated_timestamp: ebb_core::clock::now_ms(),
    };
    raise_disposition_changed(conn, &snapshot).await
}
