//! Webhook deliveries, as the dispatcher drives it: which endpoints have deliveries due, leasing a
//! batch (one holder per delivery across processes), and recording finished attempts. Sending is the
//! dispatcher's. Errors stay the store's (see [`crate::payouts`]).

use std::sync::Arc;

use ebb_store::webhooks::lease::{self, DeliveryLease};
use ebb_store::webhooks::{self as repo, AttemptRecord, LeasedDelivery};
use ebb_store::{Store, StoreError};

/// Active endpoints with a delivery due at `now_ms`.
pub async fn endpoints_due(store: &Store, now_ms: i64) -> Result<Vec<String>, StoreError> {
    store.endpoints_with_due_deliveries(now_ms).await
}

/// A dispatcher's hold on deliveries, with its backend's way of leasing chosen once.
#[derive(Clone)]
pub struct Leases {
    store: Store,
    lease: Arc<dyn DeliveryLease>,
}

impl Leases {
    pub fn new(store: Store) -> Self {
        let lease = lease::for_store(&store);
        Leases { store, lease }
    }

    /// Leases up to `limit` due deliveries of an endpoint for `lease_ms`.
    pub async fn take(&self, endpoint_id: &str, limit: i64, lease_ms: i64) -> Result<Vec<LeasedDelivery>, StoreError> {
        self.lease.lease(&self.store, endpoint_id, limit, lease_ms).await
    }

    /// At start: frees what a crashed run of this process left leased, where the backend can tell
    /// (SQLite: one server per file); how many.
    pub async fn release_stale(&self) -> Result<u64, StoreError> {
        self.lease.release_stale(&self.store).await
    }
}

/// Records finished attempts, and each delivery's next state where the lease is still held, in one
/// transaction.
pub async fn record(store: &Store, records: Vec<AttemptRecord>) -> Result<(), StoreError> {
    store.write(move |tx| Box::pin(async move { repo::record_attempts(tx, &records).await })).await
}
