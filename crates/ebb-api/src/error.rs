//! The one error type of the HTTP edge. Clients get a status, a stable numeric `error_code`, a message
//! that says what is wrong, and an `error_id` to quote; a 500 is logged with its cause and shows only
//! the id. The codes are listed in docs/API.md and never change meaning.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ebb_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// Stable error codes. The first three digits are the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest = 40000,
    InvalidAmount = 40001,
    InvalidAddress = 40002,
    UnknownToken = 40003,
    RefusedDestination = 40004,
    MissingAuthentication = 40100,
    BadSignature = 40101,
    StaleNonce = 40102,
    ReplayedRequest = 40103,
    UnknownApiKey = 40104,
    Forbidden = 40300,
    NotFound = 40400,
    MethodNotAllowed = 40500,
    IdempotencyConflict = 40900,
    InvalidState = 40901,
    AlreadyExists = 40902,
    PayloadTooLarge = 41300,
    UnsupportedMediaType = 41500,
    InsufficientBalance = 42200,
    OverRefund = 42201,
    Internal = 50000,
    Unavailable = 50300,
    /// No exchange rate fresh enough to convert with.
    RateUnavailable = 50301,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        StatusCode::from_u16((self as u32 / 100) as u16).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Logged, never shown: the cause of a 5xx.
    pub cause: Option<String>,
}

/// Cobo's error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorResponse {
    pub error_code: i64,
    pub error_message: String,
    pub error_id: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, message: message.into(), cause: None }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError {
            code: ErrorCode::Internal,
            message: "internal error; quote the error_id when reporting it".into(),
            cause: Some(cause.to_string()),
        }
    }

    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} {id:?} not found"))
    }
}

impl From<ebb_app::AppError> for ApiError {
    fn from(e: ebb_app::AppError) -> Self {
        use ebb_app::AppError as A;
        let code = match &e {
            A::Forbidden(_) => ErrorCode::Forbidden,
            A::Invalid(_) => ErrorCode::InvalidRequest,
            A::InvalidAmount(_) => ErrorCode::InvalidAmount,
            A::RefusedDestination { .. } | A::RefusedByScreening { .. } => ErrorCode::RefusedDestination,
            A::InvalidState(_) => ErrorCode::InvalidState,
            A::NotFound { .. } => ErrorCode::NotFound,
            A::RateUnavailable(_) => ErrorCode::RateUnavailable,
            A::Store(_) => match e {
                A::Store(e) => return e.into(),
                _ => unreachable!("matched above"),
            },
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        use ErrorCode as C;
        let code = match &e {
            StoreError::NotFound { .. } => C::NotFound,
            StoreError::IdempotencyConflict { .. } => C::IdempotencyConflict,
            StoreError::InsufficientBalance { .. } => C::InsufficientBalance,
            StoreError::OverRefund { .. } | StoreError::OverRefundPrice { .. } => C::OverRefund,
            StoreError::InvalidState(_) => C::InvalidState,
            StoreError::Invalid(_) => C::InvalidRequest,
            StoreError::AlreadyExists(_) => C::AlreadyExists,
            StoreError::Closed | StoreError::Unavailable(_) => C::Unavailable,
            StoreError::Database(_) | StoreError::SqliteRead(_) if e.is_unavailable() => C::Unavailable,
            StoreError::Database(_)
            | StoreError::SqliteRead(_)
            | StoreError::Migrate(_)
            | StoreError::Config(_)
            | StoreError::Internal(_) => {
                return ApiError::internal(e);
            }
        };
        if code == C::Unavailable {
            return ApiError {
                code,
                message: "the database is unavailable; retry later".into(),
                cause: Some(e.to_string()),
            };
        }
        ApiError::new(code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error_id = uuid::Uuid::new_v4().to_string();
        let status = self.code.status();
        if status.is_server_error() {
            tracing::error!(%error_id, code = self.code as i64, cause = self.cause.as_deref().unwrap_or(""), "request failed");
        } else {
            tracing::debug!(%error_id, code = self.code as i64, message = %self.message, "request refused");
        }
        let body = ErrorResponse { error_code: self.code as i64, error_message: self.message, error_id };
        (status, axum::Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_carry_their_http_status() {
        assert_eq!(ErrorCode::InsufficientBalance.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(ErrorCode::ReplayedRequest.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(ErrorCode::IdempotencyConflict.status(), StatusCode::CONFLICT);
        assert_eq!(ErrorCode::Internal.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
