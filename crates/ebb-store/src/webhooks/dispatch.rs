//! Deliveries in motion: which are due, recording attempts, retrying and pruning (leasing them to a
//! dispatcher is `lease.rs`).

use crate::columns::Columns;
use crate::db::{self, Tx};
use crate::{Store, StoreError};
use ebb_core::clock::{now_ms, now_s};

use super::{AfterAttempt, AttemptRecord, STATUS_INACTIVE};

/// Schedules another attempt at `now`: a finished delivery (`Success` or `Failed`) gets one more try;
/// one still retrying is moved forward, keeping its remaining tries. `false` while an attempt is in
/// flight (it is already being tried); not found if there is no such delivery.
pub async fn retry_now(conn: &mut Tx<'_>, endpoint_id: &str, event_id: &str, now: i64) -> Result<bool, StoreError> {
    let done = db::query(
        "UPDATE webhook_deliveries SET retries_left = CASE WHEN status = 'Retrying' THEN retries_left ELSE 0 END, \
         status = 'Retrying', next_attempt_ms = $1, updated_at_ms = $1 \
         WHERE endpoint_id = $2 AND event_id = $3 AND (lease_until_ms IS NULL OR lease_until_ms <= $1)",
    )
    .bind(now)
    .bind(endpoint_id)
    .bind(event_id)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        let exists = db::query("SELECT 1 AS one FROM webhook_deliveries WHERE endpoint_id = $1 AND event_id = $2")
            .bind(endpoint_id)
            .bind(event_id)
            .fetch_optional(&mut *conn)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound { what: "webhook event", id: event_id.to_owned() });
        }
    }
    Ok(done.rows_affected() == 1)
}

/// Gives an endpoint's failed deliveries created at or after `since_ms` one more try at `now`;
/// returns how many.
pub async fn retry_failed(conn: &mut Tx<'_>, endpoint_id: &str, since_ms: i64, now: i64) -> Result<u64, StoreError> {
    let done = db::query(
        "UPDATE webhook_deliveries SET status = 'Retrying', retries_left = 0, next_attempt_ms = $1, updated_at_ms = $1 \
         WHERE endpoint_id = $2 AND status = 'Failed' AND created_at_ms >= $3",
    )
    .bind(now)
    .bind(endpoint_id)
    .bind(since_ms)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

/// Deletes the logged attempts older than `before_ms` of finished deliveries (`Success` or `Failed`);
/// the events and their delivery states stay. Returns how many attempts went.
pub async fn prune_attempts(conn: &mut Tx<'_>, before_ms: i64) -> Result<u64, StoreError> {
    let done = db::query(
        "DELETE FROM webhook_attempts WHERE created_at_ms < $1 AND delivery_seq IN \
         (SELECT seq FROM webhook_deliveries WHERE status <> 'Retrying')",
    )
    .bind(before_ms)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}

impl Store {
    /// Active endpoints with at least one delivery due at `now_ms`.
    pub async fn endpoints_with_due_deliveries(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT w.endpoint_id FROM webhook_endpoints w WHERE w.status = 'STATUS_ACTIVE' AND EXISTS \
             (SELECT 1 FROM webhook_deliveries d WHERE d.endpoint_id = w.endpoint_id AND d.status = 'Retrying' \
              AND d.next_attempt_ms <= $1 AND (d.lease_until_ms IS NULL OR d.lease_until_ms <= $1))",
        )
        .bind(now_ms)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| r.col("endpoint_id")).collect()
    }
}

/// Records finished attempts: each attempt's log row, and the delivery's next state if the recorder
/// still holds its lease.
pub async fn record_attempts(conn: &mut Tx<'_>, records: &[AttemptRecord]) -> Result<(), StoreError> {
    // Statements, not rows, are what a batch costs (on PostgreSQL each is a round trip, on SQLite each
    // is prepared, bound and stepped by the writer): the attempts go in as multi-row inserts and the
    // successful deliveries are closed by one update per chunk. Failures (each with its own next step)
    // are rare and go one by one.
    for chunk in records.chunks(ATTEMPT_INSERT_CHUNK) {
        insert_attempts(conn, chunk).await?;
    }
    let (delivered, others): (Vec<&AttemptRecord>, Vec<&AttemptRecord>) =
        records.iter().partition(|r| matches!(r.next, AfterAttempt::Delivered));
    for chunk in delivered.chunks(DELIVERED_UPDATE_CHUNK) {
        close_delivered(conn, chunk).await?;
    }
    for r in others {
        update_after_attempt(conn, r).await?;
    }
    Ok(())
}

/// Rows per attempt insert: 10 parameters each, well under SQLite's and PostgreSQL's limits.
const ATTEMPT_INSERT_CHUNK: usize = 64;
/// Deliveries per closing update: 2 parameters each.
const DELIVERED_UPDATE_CHUNK: usize = 256;

async fn insert_attempts(conn: &mut Tx<'_>, records: &[AttemptRecord]) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO webhook_attempts (attempt_id, delivery_seq, created_at_ms, request_headers, request_body, \
         response_status, response_body, response_time_ms, success, failure_reason) VALUES {}",
        conn.backend().values(0, records.len(), 10)
    );
    let mut q = db::query(&sql);
    for r in records {
        let a = &r.attempt;
        q = q
            .bind(&a.attempt_id)
            .bind(r.delivery_seq)
            .bind(a.created_at_ms)
            .bind(&a.request_headers)
            .bind(&a.request_body)
            .bind(a.response_status)
            .bind(&a.response_body)
            .bind(a.response_time_ms)
            .bind(i64::from(a.success))
            .bind(&a.failure_reason);
    }
    q.execute(&mut *conn).await?;
    Ok(())
}

/// Marks delivered the deliveries still leased by the attempts' leases (a lease that expired and was
/// taken by another dispatcher is not theirs to close).
async fn close_delivered(conn: &mut Tx<'_>, records: &[&AttemptRecord]) -> Result<(), StoreError> {
    let first = conn.backend().first_param();
    let sql = format!(
        "UPDATE webhook_deliveries SET status = 'Success', lease_owner = NULL, lease_until_ms = NULL, updated_at_ms = {first} \
         WHERE (seq, lease_owner) IN (VALUES {})",
        conn.backend().values(1, records.len(), 2)
    );
    let mut q = db::query(&sql).bind(now_ms());
    for r in records {
        q = q.bind(r.delivery_seq).bind(&r.lease_owner);
    }
    q.execute(&mut *conn).await?;
    Ok(())
}

/// A failed attempt's next step: a retry at its time, or `Failed` (and a 410 disables the endpoint).
async fn update_after_attempt(conn: &mut Tx<'_>, r: &AttemptRecord) -> Result<(), StoreError> {
    let now = now_ms();
    let (status, next_ms, retries_left) = match r.next {
        AfterAttempt::Delivered => ("Success", None, None),
        AfterAttempt::RetryAt { at_ms, retries_left } => ("Retrying", Some(at_ms), Some(retries_left)),
        AfterAttempt::Failed | AfterAttempt::EndpointGone => ("Failed", None, Some(0)),
    };
    let updated = db::query(
        "UPDATE webhook_deliveries SET status = $1, next_attempt_ms = COALESCE($2, next_attempt_ms), \
         retries_left = COALESCE($3, retries_left), lease_owner = NULL, lease_until_ms = NULL, updated_at_ms = $4 \
         WHERE seq = $5 AND lease_owner = $6 RETURNING endpoint_id",
    )
    .bind(status)
    .bind(next_ms)
    .bind(retries_left)
    .bind(now)
    .bind(r.delivery_seq)
    .bind(&r.lease_owner)
    .fetch_optional(&mut *conn)
    .await?;
    if let (Some(row), AfterAttempt::EndpointGone) = (updated, r.next) {
        let endpoint_id: String = row.col("endpoint_id")?;
        db::query(
            "UPDATE webhook_endpoints SET status = $1, disabled_reason = $2, updated_at = $3 WHERE endpoint_id = $4",
        )
        .bind(STATUS_INACTIVE)
        .bind("the endpoint answered 410 Gone")
        .bind(now_s())
        .bind(&endpoint_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
