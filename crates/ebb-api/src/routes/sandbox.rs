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
    let order = super::orders::visible_order(&state, &caller, &order_id).await?;
    let token = validate::token(&state.registry, "token_id", &order.token_id)?.clone();
    let amount =
        req.amount.as_deref().map(|a| validate::positive_amount("amount", a, &token, token.decimals)).transpose()?;
    let from = match req.from_address.as_deref().filter(|a| !a.is_empty()) {
        Some(a) => validate::address("from_address", a, &token)?,
        None => random_address(&token),
    };
    let status = order.effective_status(ebb_store::now_s());
    if !status.accepts_payment() {
        return Err(ApiError::new(
            crate::error::ErrorCode::InvalidState,
            format!("order {order_id} is {status} and takes no payment"),
        ));
    }
    let amount = match amount {
        Some(a) => a,
        None => match order.payable_amount.checked_sub(order.received_amount).filter(|a| !a.is_zero()) {
            Some(a) => a,
            None => {
                return Err(ApiError::new(
                    crate::error::ErrorCode::InvalidState,
                    format!("order {order_id} has nothing left to pay"),
                ))
            }
        },
    };
    let chain = state.sandbox_chains.get(&order.chain_id).ok_or_else(|| {
        ApiError::new(
            crate::error::ErrorCode::InvalidState,
            format!("chain {} is a real chain here, not the sandbox: pay the order on chain", order.chain_id),
        )
    })?;
    let tx_hash = chain.pay_from_outside(from.as_str(), &order.receive_address, &token.id, amount.base_units());
    let now_ms = crate::now_ms();
    let tx = ebb_store::orders::TransactionRow {
        tx_id: tx_hash.clone(),
        direction: ebb_core::TxDirection::In,
        order_id: Some(order_id),
        refund_id: None,
        tx_hash: Some(tx_hash),
        token_id: token.id.clone(),
        chain_id: order.chain_id.clone(),
        from_address: from.into_string(),
        to_address: order.receive_address.clone(),
        amount,
        status: ebb_core::TxStatus::Pending,
        failed_reason: None,
        created_at_ms: now_ms,
        updated_at_ms: now_ms,
    };
    Ok((StatusCode::CREATED, Json(PaymentTransaction::from_row(&state.registry, tx))))
}

fn random_address(token: &ebb_core::Token) -> Address {
    let mut seed = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut seed);
    ebb_core::address::derive_deposit_address(token.family, &seed, "sandbox-sender")
}
