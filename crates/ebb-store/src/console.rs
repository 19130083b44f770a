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

/// One posting of the journal, as the ledger export writes it.
#[derive(Debug, Clone)]
pub struct PostingRow {
    pub seq: i64,
    pub entry_id: String,
    pub account: String,
    pub token_id: String,
    /// Signed base units.
    pub delta: String,
    /// `""` for journal-only accounts.
    pub balance_after: String,
    pub source_type: String,
    pub source_id: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Default)]
pub struct PostingFilter {
    /// An account key (`merchant:M…`, `psp`, `world`, …); `None`: every account.
    pub account: Option<String>,
    pub token_id: Option<String>,
    pub min_created_at: Option<i64>,
    /// Exclusive.
    pub max_created_at: Option<i64>,
}

/// A merchant's (or the PSP's) refunds of one day and token: how many, and their sum in base units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DailyVolume {
    pub day: i64,
    pub token_id: String,
    pub count: i64,
    pub amount: u128,
}

impl Store {
    /// Up to `limit` postings after `after_seq`, oldest first (the ledger exports read in these batches).
    pub async fn postings_batch(
        &self,
        filter: &PostingFilter,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<PostingRow>, StoreError> {
        let mut f = crate::page::Filter::default();
        if let Some(a) = &filter.account {
            f.eq("account", a);
        }
        if let Some(t) = &filter.token_id {
            f.eq("token_id", t);
        }
        if let Some(v) = filter.min_created_at {
            f.cmp_int("created_at", ">=", v);
        }
        if let Some(v) = filter.max_created_at {
            f.cmp_int("created_at", "<", v);
        }
        f.cmp_int("seq", ">", after_seq);
        let sql = format!(
            "SELECT seq, entry_id, account, token_id, delta, balance_after, source_type, source_id, created_at \
             FROM postings{} ORDER BY seq LIMIT {limit}",
            f.where_sql()
        );
        let rows = f.bind_all(sqlx::query(&sql)).fetch_all(self.pool()).await?;
        rows.iter()
            .map(|r| {
                Ok(PostingRow {
                    seq: r.col("seq")?,
                    entry_id: r.col("entry_id")?,
                    account: r.col("account")?,
                    token_id: r.col("token_id")?,
                    delta: r.col("delta")?,
                    balance_after: r.col("balance_after")?,
                    source_type: r.col("source_type")?,
                    source_id: r.col("source_id")?,
                    created_at: r.col("created_at")?,
                })
            })
            .collect()
    }

    /// An account's balance of one token after each posting since `since_s` (at most the newest
    /// `limit`), oldest first, with the balance just before the first: the points of its chart.
    pub async fn balance_points(
        &self,
        account: &str,
        token_id: &str,
        since_s: i64,
        limit: i64,
    ) -> Result<(i128, Vec<(i64, i128)>), StoreError> {
        let parse = |s: String| s.parse::<i128>().map_err(|_| StoreError::Internal(format!("stored amount {s:?}")));
        let rows = sqlx::query(&format!(
            "SELECT created_at, balance_after FROM postings WHERE account = $1 AND token_id = $2 AND created_at >= $3 \
             ORDER BY seq DESC LIMIT {limit}"
        ))
        .bind(account)
        .bind(token_id)
        .bind(since_s)
        .fetch_all(self.pool())
        .await?;
        let mut points = rows
            .iter()
            .map(|r| Ok((r.col::<i64>("created_at")?, parse(r.col("balance_after")?)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        points.reverse();
        let start = sqlx::query(
            "SELECT balance_after FROM postings WHERE account = $1 AND token_id = $2 AND created_at < $3 \
             ORDER BY seq DESC LIMIT 1",
        )
        .bind(account)
        .bind(token_id)
        .bind(since_s)
        .fetch_optional(self.pool())
        .await?;
        let start = match start {
            Some(r) => parse(r.col("balance_after")?)?,
            None => 0,
        };
        Ok((start, points))
    }

    /// Refunds created since `since_s` (of one merchant, if given), per UTC day and token.
    pub async fn daily_refund_volume(
        &self,
        since_s: i64,
        merchant_id: Option<&str>,
    ) -> Result<Vec<DailyVolume>, StoreError> {
        // Amounts are text (they may exceed 64 bits), so they are summed here rather than in SQL.
        let rows = sqlx::query(
            "SELECT created_at, token_id, amount FROM refunds WHERE created_at >= $1 AND ($2 = '' OR merchant_id = $2)",
        )
        .bind(since_s)
        .bind(merchant_id.unwrap_or_default())
        .fetch_all(self.pool())
        .await?;
        let mut by_day: std::collections::BTreeMap<(i64, String), (i64, u128)> = Default::default();
        for r in &rows {
            let day = r.col::<i64>("created_at")?.div_euclid(86_400);
            let amount: String = r.col("amount")?;
            let amount: u128 = amount.parse().map_err(|_| StoreError::Internal(format!("stored amount {amount:?}")))?;
            let e = by_day.entry((day, r.col("token_id")?)).or_default();
            e.0 += 1;
            e.1 = e.1.saturating_add(amount);
        }
        Ok(by_day
            .into_iter()
            .map(|((day, token_id), (count, amount))| DailyVolume { day, token_id, count, amount })
            .collect())
    }

    /// Pay-ins frozen by screening, oldest first.
    pub async fn frozen_payin_list(&self, limit: i64) -> Result<Vec<crate::transactions::TransactionRow>, StoreError> {
        let ids: Vec<String> = sqlx::query(&format!(
            "SELECT tx_id FROM payment_transactions WHERE funds_status = 'Frozen' ORDER BY created_at_ms LIMIT {limit}"
        ))
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|r| r.col("tx_id"))
        .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(t) = self.transaction(&id).await? {
                out.push(t);
            }
        }
        Ok(out)
    }
}

impl Store {
    /// Refunds still to be paid from the hot wallet (`Pending` or `Processing`), per token: how many and
    /// their amounts' sum in base units.
    pub async fn unpaid_refund_totals(&self) -> Result<Vec<(String, i64, u128)>, StoreError> {
        let rows = sqlx::query("SELECT token_id, amount FROM refunds WHERE status IN ('Pending', 'Processing')")
            .fetch_all(self.pool())
            .await?;
        let mut by_token: std::collections::BTreeMap<String, (i64, u128)> = Default::default();
        for r in &rows {
            let amount: String = r.col("amount")?;
            let amount: u128 = amount.parse().map_err(|_| StoreError::Internal(format!("stored amount {amount:?}")))?;
            let e = by_token.entry(r.col("token_id")?).or_default();
            e.0 += 1;
            e.1 = e.1.saturating_add(amount);
        }
        Ok(by_token.into_iter().map(|(t, (n, a))| (t, n, a)).collect())
    }
}
