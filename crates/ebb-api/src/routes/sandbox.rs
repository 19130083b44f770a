//! The sandbox: endpoints that stand in for a chain during development. Mounted only when the sandbox
//! is on (`ebb dev`, or `sandbox = true` in the configuration).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorResponse};
use crate::wire::{PaymentTransaction, SandboxPaymentRequest};
use crate::{validate, AppState};

/// Pays an order on the sandbox chain: a customer account (random, or `from_address`) sends the
/// amount (default: what is still payable) to the order's receiving address. The pay-in watcher then
/// sees it as it sees any transfer: the order turns `Processing` at once and `Completed` (or
/// `Underpaid`) after the sandbox's confirmations, with the balances credited. The answer is the
/// submitted transfer (status `Pending`). The body may be empty.
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
    // The order's token decides how the amount and the address read.
    let order = ebb_app::orders::get(&state.engine, &caller, &order_id).await?;
    let token = validate::token(&state.registry, "token_id", &order.token_id)?.clone();
    let amount =
        req.amount.as_deref().map(|a| validate::positive_amount("amount", a, &token, token.decimals)).transpose()?;
    let from = req
        .from_address
        .as_deref()
        .filter(|a| !a.is_empty())
        .map(|a| validate::address("from_address", a, &token))
        .transpose()?;
    let tx = ebb_app::sandbox::pay_order(&state.engine, &caller, &order_id, amount, from).await?;
    Ok((StatusCode::CREATED, Json(PaymentTransaction::from_row(&state.registry, tx))))
}
