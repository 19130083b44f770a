use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use ebb_app::orders::{self, OrderPrice, OrderRequest};
use ebb_core::OrderStatus;
use ebb_store::now_s;
use ebb_store::orders::OrderFilter;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorResponse};
use crate::extract::{ApiJson, ApiQuery};
use crate::wire::{CreateOrderRequest, ListResponse, Order, UpdateOrderRequest};
use crate::{validate, AppState};

const DEFAULT_EXPIRY_S: i64 = 1800;
const MAX_EXPIRY_S: i64 = 10_800;

/// Creates a pay-in order with its own receiving address.
///
/// Priced in its token (`payable_amount`, `fee_amount` in the token), or in a fiat currency
/// (`pricing_currency`, `pricing_amount` and `fee_amount` in that currency): the payable amount is then
/// `payable_amount` if given, else (`pricing_amount` + `fee_amount`) converted at a fresh rate and
/// rounded up (docs/PRICES.md), stored with the rate as `exchange_rate`.
#[utoipa::path(post, path = "/v2/payments/orders", tag = "orders", request_body = CreateOrderRequest,
    responses((status = 201, body = Order), (status = "4XX", body = ErrorResponse), (status = "5XX", body = ErrorResponse)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<CreateOrderRequest>,
) -> ApiResult<(StatusCode, Json<Order>)> {
    let merchant_id = validate::text("merchant_id", &req.merchant_id, 128)?;
    let token = validate::token(&state.registry, "payable_currency", &req.payable_currency)?.clone();
    let pricing_currency = validate::optional_text("pricing_currency", req.pricing_currency.as_deref(), 16)?;
    let payable_amount = req
        .payable_amount
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|p| validate::positive_amount("payable_amount", p, &token, token.decimals))
        .transpose()?;
    let price = match pricing_currency {
        Some(currency) => {
            let decimals = validate::fiat_currency("pricing_currency", &currency)?;
            let pricing_amount = req
                .pricing_amount
                .as_deref()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| ApiError::invalid("pricing_amount is required with pricing_currency"))?;
            OrderPrice::Fiat {
                price: validate::fiat_amount("pricing_amount", pricing_amount, decimals, true)?,
                fee: validate::fiat_amount("fee_amount", &req.fee_amount, decimals, false)?,
                currency,
                payable: payable_amount,
            }
        }
        None => OrderPrice::Token {
            payable: payable_amount.ok_or_else(|| {
                ApiError::invalid("payable_amount is required, unless the order has a pricing_currency")
            })?,
            fee: validate::amount("fee_amount", &req.fee_amount, &token)?,
        },
    };
    let amount_tolerance = match req.amount_tolerance.as_deref().filter(|s| !s.is_empty()) {
        Some(t) => validate::amount("amount_tolerance", t, &token)?,
        None => ebb_core::Amount::ZERO,
    };
    let expires_in_s = req.expired_in.unwrap_or(DEFAULT_EXPIRY_S);
    if !(1..=MAX_EXPIRY_S).contains(&expires_in_s) {
        return Err(ApiError::invalid(format!("expired_in must be between 1 and {MAX_EXPIRY_S} seconds")));
    }
    let request = OrderRequest {
        merchant_id,
        merchant_order_code: validate::optional_text("merchant_order_code", req.merchant_order_code.as_deref(), 128)?,
        psp_order_code: validate::text("psp_order_code", &req.psp_order_code, 128)?,
        token,
        price,
        amount_tolerance,
        expires_in_s,
    };
    let order = orders::create(&state.engine, &caller, request).await?;
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
    let order = orders::get(&state.engine, &caller, &order_id).await?;
    Ok(Json(Order::from_row(&state.registry, order, now_s())))
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
        merchant_id: q.merchant_id,
        psp_order_code: q.psp_order_id.filter(|p| !p.is_empty()),
        statuses: validate::list_of("statuses", q.statuses.as_deref(), OrderStatus::parse)?,
    };
    let page = orders::list(&state.engine, &caller, filter, &page).await?;
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
    let order = match req.expired {
        true => orders::expire(&state.engine, &caller, &order_id).await?,
        false => orders::get(&state.engine, &caller, &order_id).await?,
    };
    Ok(Json(Order::from_row(&state.registry, order, now_s())))
}
