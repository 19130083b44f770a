//! The KYT refund API's wire format (the seed PSP's `/v1.0` API): camelCase fields inside a
//! `{code, msg, data}` envelope, `code` `"00000"` on success and ebb's error code as a string
//! otherwise, with the HTTP status of that code. docs/API.md, "KYT refund API".

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ebb_core::refund::RefundStatus;
use ebb_core::TokenRegistry;
use ebb_store::kyt::CryptoRefundSnapshot;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// The envelope's `code` on success.
pub const SUCCESS: &str = "00000";

#[derive(Debug, Serialize)]
pub struct Envelope<T> {
    pub code: String,
    pub msg: String,
    pub data: Option<T>,
}

/// A successful answer.
pub struct Ok<T>(pub T);

impl<T: Serialize> IntoResponse for Ok<T> {
    fn into_response(self) -> Response {
        axum::Json(Envelope { code: SUCCESS.into(), msg: "success".into(), data: Some(self.0) }).into_response()
    }
}

/// An error in the envelope: ebb's error code as a string, its message, no data.
#[derive(Debug)]
pub struct KytError(pub ApiError);

impl<E: Into<ApiError>> From<E> for KytError {
    fn from(e: E) -> Self {
        KytError(e.into())
    }
}

impl IntoResponse for KytError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = e.code.status();
        let error_id = uuid::Uuid::new_v4().to_string();
        let msg = if status.is_server_error() {
            tracing::error!(%error_id, code = e.code as i64, cause = e.cause.as_deref().unwrap_or(""), "KYT API request failed");
            format!("{} (error id {error_id})", e.message)
        } else {
            e.message
        };
        let body = Envelope::<()> { code: (e.code as i64).to_string(), msg, data: None };
        (status, axum::Json(body)).into_response()
    }
}

pub type KytResult<T> = Result<Ok<T>, KytError>;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequest {
    pub client_id: String,
    pub client_secret: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenData {
    pub access_token: String,
    pub token_type: String,
    /// Seconds.
    pub expires_in: i64,
    /// Milliseconds since the epoch.
    pub expires_at: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateRequest {
    pub original_transaction_type: i64,
    pub original_transaction_id: String,
    pub client_reference: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfirmRequest {
    pub crypto_refund_id: String,
    pub refund_address: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetQuery {
    pub crypto_refund_id: Option<String>,
    pub client_reference: Option<String>,
}

/// A crypto refund's status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Created; waits for confirmCryptoRefund.
    AwaitingConfirmation = 1,
    /// Confirmed; the payout is under way (or waits for an approval).
    Processing = 2,
    /// Paid: `txnHash` is the transfer.
    Completed = 3,
    /// The payout failed or was rejected; the funds are held again and a new crypto refund may be made.
    Failed = 4,
    /// Not confirmed, and the held funds were disposed of otherwise (released, refunded or isolated
    /// through the Compliance API); it can no longer be confirmed.
    Cancelled = 5,
}

impl Status {
    pub fn of(s: &CryptoRefundSnapshot) -> Self {
        let refund = s.refund_status.as_deref().and_then(RefundStatus::parse);
        match (refund, s.superseded) {
            (None, false) => Status::AwaitingConfirmation,
            (None, true) => Status::Cancelled,
            (Some(RefundStatus::Completed), _) => Status::Completed,
            (Some(RefundStatus::Failed | RefundStatus::PartiallyCompleted), _) => Status::Failed,
            (Some(_), _) => Status::Processing,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Status::AwaitingConfirmation => "AwaitingConfirmation",
            Status::Processing => "Processing",
            Status::Completed => "Completed",
            Status::Failed => "Failed",
            Status::Cancelled => "Cancelled",
        }
    }
}

/// The seed's crypto refund (`data` of create, confirm, get and the webhook), with ebb's additions
/// after `txnHash`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CryptoRefund {
    pub crypto_refund_id: String,
    pub original_transaction_type: i64,
    pub original_transaction_id: String,
    /// The client that made it.
    pub participant_code: String,
    pub client_reference: String,
    pub status: i64,
    /// ebb's chain id (`ETH`, `TRON`, ...).
    pub blockchain: String,
    /// The token's symbol (`USDT`).
    pub currency: String,
    /// All the pay-in held when the crypto refund was made: what is paid back in full.
    pub amount: String,
    /// What is deducted from `amount` for the network fee: nothing (`"0"`); the hot wallet pays the gas.
    pub fee_currency: String,
    pub fee_amount: String,
    /// The payout's transaction hash once it is broadcast; `""` before.
    pub txn_hash: String,
    pub status_name: &'static str,
    /// ebb's token id (`ETH_USDT`).
    pub token_id: String,
    /// Where it is paid, once confirmed; `""` before.
    pub refund_address: String,
    /// ebb's refund paying it (type `Held`), once confirmed; `""` before.
    pub refund_id: String,
    /// ebb's id of the held pay-in.
    pub transaction_id: String,
    /// Milliseconds since the epoch.
    pub created_time: i64,
    pub updated_time: i64,
}

impl CryptoRefund {
    pub fn new(registry: &TokenRegistry, s: CryptoRefundSnapshot) -> Self {
        let status = Status::of(&s);
        let r = s.row;
        let currency = registry.get(&r.token_id).map(|t| t.symbol.clone()).unwrap_or_else(|| r.token_id.clone());
        CryptoRefund {
            crypto_refund_id: r.crypto_refund_id,
            original_transaction_type: r.original_transaction_type,
            original_transaction_id: r.original_transaction_id,
            participant_code: r.client_id,
            client_reference: r.client_reference.unwrap_or_default(),
            status: status as i64,
            blockchain: r.chain_id,
            amount: crate::wire::decimal(registry, &r.token_id, r.amount),
            fee_currency: currency.clone(),
            fee_amount: "0".into(),
            currency,
            txn_hash: s.tx_hash.unwrap_or_default(),
            status_name: status.name(),
            token_id: r.token_id,
            refund_address: r.refund_address.unwrap_or_default(),
            refund_id: r.refund_id.unwrap_or_default(),
            transaction_id: r.tx_id,
            created_time: r.created_at_ms,
            updated_time: r.updated_at_ms,
        }
    }
}

/// 401 with the envelope, for the bearer check.
pub fn unauthenticated(code: crate::error::ErrorCode, msg: &str) -> Response {
    let body = Envelope::<()> { code: (code as i64).to_string(), msg: msg.into(), data: None };
    (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
}
