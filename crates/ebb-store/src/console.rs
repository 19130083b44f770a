//! What the operator console reads and nothing else does: counts for its dashboard, a refund's history
//! and its webhook deliveries.

use crate::columns::Columns;
use crate::webhooks::DeliveryRow;
use crate::{Store, StoreError};

/// An event of one subject, for a timeline.
#[derive(Debug, Clone)]
pub struct SubjectEvent {
    pub event_id: String,
    pub event_type: String,
    pub created_at_ms: i64,
    /// The object as it was right after the change (JSON).
    pub snapshot: String,
}

/// A webhook endpoint with deliveries that failed or are being retried after a failure.
#[derive(Debug, Clone)]
pub struct FailingEndpoint {
    pub endpoint_id: String,
    pub url: String,
    pub failed: i64,
    pub retrying: i64,
}

impl Store {
    /// Refunds created since `since_s`, counted by status (of one merchant, if given).
    pub async fn refund_status_counts(
        &self,
        since_s: i64,
        merchant_id: Option<&str>,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n FROM refunds WHERE created_at >= $1 AND ($2 = '' OR merchant_id = $2) \
             GROUP BY status ORDER BY status",
        )
        .bind(since_s)
        .bind(merchant_id.unwrap_or_default())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok((r.col("status")?, r.col("n")?))).collect()
    }

    /// Pay-ins whose funds screening froze and no disposition has released yet.
    pub async fn frozen_payins(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM payment_transactions WHERE funds_status = 'Frozen'")
            .fetch_one(self.pool())
            .await?
            .col("n")?)
    }

    /// Endpoints with failed deliveries, or deliveries retried after failing.
    pub async fn failing_endpoints(&self) -> Result<Vec<FailingEndpoint>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.endpoint_id AS endpoint_id, e.url AS url, \
             SUM(CASE WHEN d.status = 'Failed' THEN 1 ELSE 0 END) AS failed, \
             SUM(CASE WHEN d.status = 'Retrying' THEN 1 ELSE 0 END) AS retrying \
             FROM webhook_deliveries d JOIN webhook_endpoints e ON e.endpoint_id = d.endpoint_id \
             WHERE d.status = 'Failed' OR (d.status = 'Retrying' AND d.attempts > 0) \
             GROUP BY d.endpoint_id, e.url ORDER BY d.endpoint_id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(FailingEndpoint {
                    endpoint_id: r.col("endpoint_id")?,
                    url: r.col("url")?,
                    failed: r.col("failed")?,
                    retrying: r.col("retrying")?,
                })
            })
            .collect()
    }

    /// Every event of a subject, oldest first.
    pub async fn events_of(&self, subject_id: &str) -> Result<Vec<SubjectEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT event_id, event_type, created_at_ms, snapshot FROM events WHERE subject_id = $1 ORDER BY seq",
        )
        .bind(subject_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SubjectEvent {
                    event_id: r.col("event_id")?,
                    event_type: r.col("event_type")?,
                    created_at_ms: r.col("created_at_ms")?,
                    snapshot: r.col("snapshot")?,
                })
            })
            .collect()
    }

    /// Every webhook delivery of a subject's events, oldest first.
    pub async fn deliveries_of(&self, subject_id: &str) -> Result<Vec<DeliveryRow>, StoreError> {
        let sql = format!(
            "SELECT {} FROM webhook_delivery_view WHERE subject_id = $1 ORDER BY seq",
            crate::webhooks::DELIVERY_COLUMNS
        );
        let rows = sqlx::query(&sql).bind(subject_id).fetch_all(self.pool()).await?;
        rows.iter().map(crate::webhooks::delivery_from_row).collect()
    }
}
