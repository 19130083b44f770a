//! The sandbox: endpoints that stand in for a chain during development. Mounted only when the sandbox
//! is on (`ebb dev`, or `sandbox = true` in the configuration).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use ebb_core::Address;
use rand::RngCore;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorResponse};
use crate::wire::{PaymentTransaction, SandboxPaymentRequest};
use crate::{validate, AppState};

/// Records a payment to an order as if it had arrived on chain: the order becomes `Completed` (or
/// `Underpaid` when short of the payable amount less the tolerance) and the balances are credited.
/// The body may be empty.
#[utoipa::path(post, path = "/v2/sandbox/orders/{order_id}/payments", tag = "sandbox",
    params(("order_id" = String, Path)), request_body(content = SandboxPaymentRequest, description = "optional"),
    responses((status = 201, body = PaymentTransaction), (status = "4XX", body = ErrorResponse)))]
pub async fn pay_order(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(order_id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<PaymentTransaction>)> {
    let req: SandboxPaymentRequest = if body.iter().all(u8::is_ascii_whitespace) {
        SandboxPaymentRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))?
    };
    let order = super::orders::visible_order(&state, &caller, &order_id).await?;
    let token = validate::token(&state.registry, "token_id", &order.token_id)?.clone();
    let amount =
        req.amount.as_deref().map(|a| validate::positive_amount("amount", a, &token, token.decimals)).transpose()?;
    let from = match req.from_address.as_deref().filter(|a| !a.is_empty()) {
        Some(a) => validate::address("from_address", a, &token)?,
        None => random_address(&token),
    };
    let tx = state.store.record_payment(&order_id, amount, from, token).await?;
    Ok((StatusCode::CREATED, Json(PaymentTransaction::from_row(&state.registry, tx))))
}

fn random_address(token: &ebb_core::Token) -> Address {
    let mut seed = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut seed);
    ebb_core::address::derive_deposit_address(token.family, &seed, "sandbox-sender")
}
