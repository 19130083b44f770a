use ebb_core::amount::AmountError;
use ebb_core::ledger::LedgerError;

/// What a store operation can fail with. Everything but `Database`, `Internal`, `Closed` and `Config`
/// is the caller's doing and maps to a 4xx.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} {id:?} not found")]
    NotFound { what: &'static str, id: String },
    /// The same request id was used before with a different request.
    #[error("request_id {request_id:?} was already used with a different request")]
    IdempotencyConflict { request_id: String },
    #[error("insufficient {account} balance of {token_id}: {available} available, {needed} needed")]
    InsufficientBalance { account: String, token_id: String, available: String, needed: String },
    #[error("refund exceeds what order {order_id} can still refund ({refundable} {token_id} left)")]
    OverRefund { order_id: String, token_id: String, refundable: String },
    /// The order's refunds would count for more than its fiat price.
    #[error("refund exceeds what order {order_id} can still refund of its price ({refundable} {currency} left)")]
    OverRefundPrice { order_id: String, currency: String, refundable: String },
    /// The object is not in a status that allows this.
    #[error("{0}")]
    InvalidState(String),
    /// Input that is well-formed but does not fit the stored data (wrong token for the order, ...).
    #[error("{0}")]
    Invalid(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A point read on SQLite's synchronous read path (`sqlite_read`).
    #[error("database error: {0}")]
    SqliteRead(#[from] rusqlite::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Config(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("the store is shutting down")]
    Closed,
}

impl StoreError {
    /// The database could not be reached (as opposed to refusing a statement): worth a retry.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Closed
                | StoreError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_))
                | StoreError::SqliteRead(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error {
                        code: rusqlite::ErrorCode::DatabaseBusy
                            | rusqlite::ErrorCode::DatabaseLocked
                            | rusqlite::ErrorCode::CannotOpen,
                        ..
                    },
                    _
                ))
        )
    }
}

impl From<LedgerError> for StoreError {
    fn from(e: LedgerError) -> Self {
        StoreError::Internal(format!("ledger: {e}"))
    }
}

impl From<AmountError> for StoreError {
    /// Amounts read back from the database are written by ebb; a bad one is corruption, not input.
    fn from(e: AmountError) -> Self {
        StoreError::Internal(format!("stored amount: {e}"))
    }
}
