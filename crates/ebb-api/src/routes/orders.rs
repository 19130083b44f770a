use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use ebb_core::OrderStatus;
use ebb_store::now_s;
use ebb_store::orders::{NewOrder, OrderFilter, OrderRow};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorCode, ErrorResponse};
use crate::extract::{ApiJson, ApiQuery};
use crate::wire::{CreateOrderRequest, ListResponse, Order, UpdateOrderRequest};
use crate::{validate, AppState};

const DEFAULT_EXPIRY_S: i64 = 1800;
const MAX_EXPIRY_S: i64 = 10_800;

/// Creates a pay-in order with its own receiving address.
///
/// ebb has no price feed: give `payable_amount` in the token, or price the order in `USD` and pay in a
/// USD stablecoin, which is taken at a rate of 1.
#[utoipa::path(post, path = "/v2/payments/orders", tag = "orders", request_body = CreateOrderRequest,
    responses((status = 201, body = Order), (status = "4XX", body = ErrorResponse)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<CreateOrderRequest>,
) -> ApiResult<(StatusCode, Json<Order>)> {
    let merchant_id = validate::text("merchant_id", &req.merchant_id, 128)?;
    caller.check_merchant(&merchant_id)?;
    let token = validate::token(&state.registry, "payable_currency", &req.payable_currency)?.clone();
    let pricing_currency = validate::optional_text("pricing_currency", req.pricing_currency.as_deref(), 16)?;
    let pricing_amount = req.pricing_amount.as_deref().filter(|s| !s.is_empty());
    let payable_amount = match (req.payable_amount.as_deref().filter(|s| !s.is_empty()), pricing_currency.as_deref(), pricing_amount) {
        (Some(p), _, _) => validate::positive_amount("payable_amount", p, &token, token.decimals)?,
        (None, Some("USD"), Some(p)) if matches!(token.symbol.as_str(), "USDT" | "USDC") => {
            validate::positive_amount("pricing_amount", p, &token, token.decimals)?
        }
        _ => {
            return Err(ApiError::invalid(
                "payable_amount is required, unless pricing_currency is USD, pricing_amount is set and the token is a USD stablecoin (ebb has no price feed)",
            ))
        }
    };
    if let Some(p) = pricing_amount {
        ebb_core::Amount::parse_positive(p, 18, 18)
            .map_err(|e| ApiError::new(ErrorCode::InvalidAmount, format!("pricing_amount: {e}")))?;
    }
    let fee_amount = validate::amount("fee_amount", &req.fee_amount, &token)?;
    if fee_amount > payable_amount {
        return Err(ApiError::new(ErrorCode::InvalidAmount, "fee_amount must not exceed the payable amount"));
    }
    if caller.merchant.is_some() {
        // The developer fee is the PSP's: a merchant's own key may pay more, never less than the rate
        // the PSP set for it.
        let merchant =
            state.store.merchant(&merchant_id).await?.ok_or_else(|| ApiError::not_found("merchant", &merchant_id))?;
        let least = validate::fee_at_rate(payable_amount, &merchant.developer_fee_rate)?;
        if fee_amount < least {
            caller.require_psp_for(&format!(
                "set fee_amount below the merchant's developer_fee_rate ({} × payable_amount = {})",
                merchant.developer_fee_rate,
                least.to_decimal_string(token.decimals)
            ))?;
        }
    }
    let amount_tolerance = match req.amount_tolerance.as_deref().filter(|s| !s.is_empty()) {
        Some(t) => validate::amount("amount_tolerance", t, &token)?,
        None => ebb_core::Amount::ZERO,
    };
    if amount_tolerance >= payable_amount {
        return Err(ApiError::new(ErrorCode::InvalidAmount, "amount_tolerance must be less than the payable amount"));
    }
    let expires_in_s = req.expired_in.unwrap_or(DEFAULT_EXPIRY_S);
    if !(1..=MAX_EXPIRY_S).contains(&expires_in_s) {
        return Err(ApiError::invalid(format!("expired_in must be between 1 and {MAX_EXPIRY_S} seconds")));
    }
    let order = state
        .store
        .create_order(NewOrder {
            merchant_id,
            merchant_order_code: validate::optional_text(
                "merchant_order_code",
                req.merchant_order_code.as_deref(),
                128,
            )?,
            psp_order_code: validate::text("psp_order_code", &req.psp_order_code, 128)?,
            pricing_amount: pricing_amount.map(str::to_owned),
            pricing_currency,
            token,
            payable_amount,
            fee_amount,
            exchange_rate: "1".into(),
            amount_tolerance,
            expires_in_s,
            deposit_seed: state.deposit_seed.to_vec(),
        })
        .await?;
    Ok((StatusCode::CREATED, Json(Order::from_row(&state.registry, order, now_s()))))
}

#[utoipa::path(get, path = "/v2/payments/orders/{order_id}", tag = "orders",
    params(("order_id" = String, Path)),
    responses((status = 200, body = Order), (status = "4XX", body = ErrorResponse)))]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(order_id): Path<String>,
) -> ApiResult<Json<Order>> {
    let order = visible_order(&state, &caller, &order_id).await?;
    Ok(Json(Order::from_row(&state.registry, order, now_s())))
}

/// The order, if it exists and the caller may see it (a merchant-restricted key sees only its own).
pub(crate) async fn visible_order(state: &AppState, caller: &Caller, order_id: &str) -> ApiResult<OrderRow> {
    state
        .store
        .order(order_id)
        .await?
        .filter(|o| caller.merchant.as_ref().is_none_or(|m| *m == o.merchant_id))
        .ok_or_else(|| ApiError::not_found("order", order_id))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    pub limit: Option<i64>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub merchant_id: Option<String>,
    /// The order's `psp_order_code`.
    pub psp_order_id: Option<String>,
    /// Comma-separated order statuses.
    pub statuses: Option<String>,
}

#[utoipa::path(get, path = "/v2/payments/orders", tag = "orders", params(ListQuery),
    responses((status = 200, body = ListResponse<Order>), (status = "4XX", body = ErrorResponse)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<ListResponse<Order>>> {
    let page = super::page_request(q.limit, q.before, q.after)?;
    let filter = OrderFilter {
        merchant_id: caller.merchant_filter(q.merchant_id)?,
        psp_order_code: q.psp_order_id.filter(|p| !p.is_empty()),
        statuses: validate::list_of("statuses", q.statuses.as_deref(), OrderStatus::parse)?,
    };
    let page = state.store.list_orders(&filter, &page).await?;
    let now = now_s();
    Ok(Json(ListResponse::from_page(page, |o| Order::from_row(&state.registry, o, now))))
}

/// Expires a pending order (`{"expired": true}`).
#[utoipa::path(put, path = "/v2/payments/orders/{order_id}", tag = "orders",
    params(("order_id" = String, Path)), request_body = UpdateOrderRequest,
    responses((status = 200, body = Order), (status = "4XX", body = ErrorResponse)))]
pub async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(order_id): Path<String>,
    ApiJson(req): ApiJson<UpdateOrderRequest>,
) -> ApiResult<Json<Order>> {
    let order = visible_order(&state, &caller, &order_id).await?;
    if !req.expired {
        return Ok(Json(Order::from_row(&state.registry, order, now_s())));
    }
    let order = state.store.expire_order(&order_id).await?;
    Ok(Json(Order::from_row(&state.registry, order, now_s())))
}
