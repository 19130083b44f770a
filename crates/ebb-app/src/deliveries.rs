//! Webhook deliveries, as the dispatcher drives them: which endpoints have deliveries due, leasing a
//! batch (one holder per delivery across processes), and recording finished attempts. Sending is the
//! dispatcher's. Errors stay the store's (see [`crate::payouts`]).

use ebb_store::webhooks::{AttemptRecord, LeasedDelivery};
use ebb_store::{Store, StoreError};

/// Active endpoints with a delivery due at `now_ms`.
pub async fn endpoints_due(store: &Store, now_ms: i64) -> Result<Vec<String>, StoreError> {
    store.endpoints_with_due_deliveries(now_ms).await
}

/// Leases up to `limit` due deliveries of an endpoint for `lease_ms`.
pub async fn lease(
    store: &Store,
    endpoint_id: &str,
    limit: i64,
    lease_ms: i64,
) -> Result<Vec<LeasedDelivery>, StoreError> {
    store.lease_deliveries(endpoint_id, limit, lease_ms).await
}

/// Records finished attempts, and each delivery's next state where the lease is still held.
pub async fn record(store: &Store, records: Vec<AttemptRecord>) -> Result<(), StoreError> {
    store.record_attempts(records).await
}

/// Frees every lease of a SQLite database at start (one server per SQLite file: a lease still there
/// is a crashed run's).
pub async fn release_sqlite_leases(store: &Store) -> Result<u64, StoreError> {
    store.release_sqlite_leases().await
}
