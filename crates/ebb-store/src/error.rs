use ebb_core::amount::AmountError;
use ebb_core::ledger::LedgerError;

/// What a store operation can fail with. Everything but `Database`, `SqliteRead`, `Internal`, `Closed`,
/// `Unavailable` and `Config` is the caller's doing and maps to a 4xx.
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
    Database(sqlx::Error),
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
    /// The database was reached but cannot take this write now: its disk is full, it refused to begin
    /// a transaction, it is shutting down. Worth a retry, like an unreachable database.
    #[error("database unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// The database could not be reached (as opposed to refusing a statement): worth a retry.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Closed | StoreError::Unavailable(_) => true,
            StoreError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)) => true,
            StoreError::Database(sqlx::Error::Database(e)) => e.code().is_some_and(|code| unavailable_sqlstate(&code)),
            StoreError::SqliteRead(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::CannotOpen
                    | rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::SystemIoFailure
            ),
            _ => false,
        }
    }
}

/// PostgreSQL's codes for a server that cannot serve now rather than a statement it refuses: class 08
/// (connection exceptions), class 53 (insufficient resources: disk full, out of memory, too many
/// connections) and 57P01–57P03 (shut down by an administrator, crashed, starting up). SQLite's
/// `SQLITE_FULL`, reported through sqlx, is code 13.
fn unavailable_sqlstate(code: &str) -> bool {
    code.starts_with("08") || code.starts_with("53") || matches!(code, "57P01" | "57P02" | "57P03" | "13")
}

impl From<sqlx::Error> for StoreError {
    /// PostgreSQL refuses text with a NUL character (22021, character not in repertoire); such text
    /// can only come from outside (a query filter, a path), so it is the request's fault, on every
    /// surface. (SQLite stores it, and a filter with it finds nothing.)
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.code().as_deref() == Some("22021") => {
                StoreError::Invalid("text must not contain NUL characters".into())
            }
            _ => StoreError::Database(e),
        }
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
