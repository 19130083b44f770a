use ebb_store::StoreError;

/// What a use case fails with. Every variant but a `Store` error of the database's own (unavailable,
/// corrupt) is the caller's doing; each surface turns it into its own dialect's error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The actor may not do this (a merchant-restricted key spending the PSP's balance, ...).
    #[error("{0}")]
    Forbidden(String),
    /// Input that breaks a rule of the request itself (a fee with a PSP-funded refund, ...).
    #[error("{0}")]
    Invalid(String),
    /// An amount that breaks a rule (a fee not below the amount, ...).
    #[error("{0}")]
    InvalidAmount(String),
    /// A refund destination that would lose the money (see [`crate::destinations`]).
    #[error("{address} is {why}; a refund sent there would be lost")]
    RefusedDestination { address: String, why: String },
    /// A refund destination screening refused (sanctioned, or what the operator's rules refuse).
    #[error("{address} is refused by screening ({why}); nothing is sent there")]
    RefusedByScreening { address: String, why: String },
    /// The object is not in a status that allows this.
    #[error("{0}")]
    InvalidState(String),
    /// No exchange rate fresh enough to convert with (every source failed or is too old).
    #[error("{0}")]
    RateUnavailable(String),
    #[error("{what} {id:?} not found")]
    NotFound { what: &'static str, id: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AppError {
    pub fn not_found(what: &'static str, id: &str) -> Self {
        AppError::NotFound { what, id: id.to_owned() }
    }
}

pub type AppResult<T> = Result<T, AppError>;
