//! CoinGate orders: create, check out in a token, read, list.

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::{Extension, Json};
use ebb_app::coingate::{self as app, NewOrder};
use ebb_core::rate::fiat_decimals;
use ebb_core::{Amount, OrderStatus};
use ebb_store::coingate::{CoinGateOrderFilter, CoinGateOrderRow};
use ebb_store::orders::OrderRow;
use serde_json::{json, Value};

use super::{catalog, iso, pages, paging, query_map, time_bound, CgError, CgResult, Context, Fields, Merchant};
use crate::error::ApiError;
use crate::AppState;

fn err(e: impl Into<ApiError>) -> CgError {
    CgError::from_api(e.into(), Context::Order)
}

/// An order id in a path: CoinGate's ids are positive integers.
pub(super) fn order_seq(id: &str) -> CgResult<i64> {
    id.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        CgError::from_api(
            ApiError::new(crate::error::ErrorCode::NotFound, format!("order {id:?} not found")),
            Context::Order,
        )
    })
}

/// CoinGate's status of an order: `new` until checkout, then its ebb order's, with `refunded` and
/// `partially_refunded` for a paid order with refunds. An `Underpaid` order is `pending`, with its
/// `underpaid_amount`.
fn status(paid_by: Option<&OrderRow>, now: i64) -> &'static str {
    let Some(o) = paid_by else { return "new" };
    match o.effective_status(now) {
        OrderStatus::Pending | OrderStatus::Underpaid => "pending",
        OrderStatus::Processing => "confirming",
        OrderStatus::Expired => "expired",
        OrderStatus::Completed if o.refunded_amount.is_zero() => "paid",
        OrderStatus::Completed if o.refunded_amount >= o.received_amount => "refunded",
        OrderStatus::Completed => "partially_refunded",
    }
}

/// The order as CoinGate answers it now; after checkout with the payment fields.
pub(super) fn order_json(state: &AppState, cg: &CoinGateOrderRow, paid_by: Option<&OrderRow>) -> Value {
    order_json_at(state, cg, paid_by, ebb_core::clock::now_s())
}

/// The order as it was at `at` (Unix seconds; its status depends on the time once it may expire).
pub(super) fn order_json_at(state: &AppState, cg: &CoinGateOrderRow, paid_by: Option<&OrderRow>, at: i64) -> Value {
    let mut v = json!({
        "id": cg.seq,
        "status": status(paid_by, at),
        "title": cg.title.clone().unwrap_or_default(),
        "description": cg.description.clone().unwrap_or_default(),
        "do_not_convert": cg.receive_currency.eq_ignore_ascii_case("DO_NOT_CONVERT"),
        "orderable_type": "ApiApp",
        "orderable_id": 1,
        "price_currency": cg.price_currency,
        "price_amount": cg.price_amount,
        "lightning_network": false,
        "receive_currency": cg.receive_currency,
        "receive_amount": "",
        "created_at": iso(cg.created_at),
        "order_id": cg.merchant_order_id.clone().unwrap_or_default(),
        "payment_url": "",
        "underpaid_amount": "0",
        "overpaid_amount": "0",
        "is_refundable": false,
        "refunds": [],
        "voids": [],
        "token": cg.token.clone().unwrap_or_default(),
    });
    if let Some(o) = paid_by {
        let Some(token) = state.registry.get(&o.token_id) else { return v };
        let d = |a: Amount| a.to_decimal_string(token.decimals);
        let paid = matches!(o.status, OrderStatus::Completed);
        v["pay_currency"] = json!(token.symbol);
        v["pay_amount"] = json!(d(o.payable_amount));
        v["expire_at"] = json!(iso(o.expired_at));
        v["payment_address"] = json!(o.receive_address);
        v["platform"] = json!(catalog::platform_of(&state.registry, &o.chain_id));
        v["receive_amount"] = json!(if o.received_amount.is_zero() { String::new() } else { d(o.received_amount) });
        v["underpaid_amount"] = json!(match o.status {
            OrderStatus::Underpaid => d(o.payable_amount.saturating_sub(o.received_amount)),
            _ => "0".into(),
        });
        v["overpaid_amount"] = json!(d(o.received_amount.saturating_sub(o.payable_amount)));
        v["is_refundable"] = json!(paid && o.refunded_amount < o.received_amount);
    }
    v
}

/// A price in its currency: a fiat currency's minor units, or a token symbol's most decimals.
fn price(fields: &Fields, state: &AppState) -> Result<(String, String), ApiError> {
    let currency = fields.required("price_currency")?.to_ascii_uppercase();
    let amount = fields.required("price_amount")?;
    let decimals = match fiat_decimals(&currency) {
        Some(d) => d,
        None => state.registry.iter().filter(|t| t.symbol == currency).map(|t| t.decimals).min().ok_or_else(|| {
            ApiError::invalid(format!("price_currency {currency:?} is neither a supported currency nor a token symbol"))
        })?,
    };
    let parsed = Amount::parse_positive(amount, decimals, decimals)
        .map_err(|e| ApiError::new(crate::error::ErrorCode::InvalidAmount, format!("price_amount: {e}")))?;
    Ok((currency, parsed.to_decimal_string(decimals)))
}

pub(super) fn url_field(fields: &Fields, name: &str) -> Result<Option<String>, ApiError> {
    let Some(v) = fields.text(name, 2000)? else { return Ok(None) };
    match url::Url::parse(&v) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(Some(v)),
        _ => Err(ApiError::invalid(format!("{name} must be an http or https URL"))),
    }
}

pub(super) fn email_field(fields: &Fields, name: &str) -> Result<Option<String>, ApiError> {
    match fields.get(name) {
        Some(v) => Ok(Some(ebb_app::mails::check_address(name, v)?)),
        None => Ok(None),
    }
}

pub(super) async fn create(
    State(state): State<AppState>,
    Extension(Merchant(actor, callback_format)): Extension<Merchant>,
    fields: Fields,
) -> CgResult<Json<Value>> {
    let (price_currency, price_amount) = price(&fields, &state).map_err(err)?;
    let req = NewOrder {
        merchant_order_id: fields.text("order_id", 128).map_err(err)?,
        price_amount,
        price_currency,
        receive_currency: fields.required("receive_currency").map_err(err)?.to_ascii_uppercase(),
        title: fields.text("title", 150).map_err(err)?,
        description: fields.text("description", 500).map_err(err)?,
        callback_url: url_field(&fields, "callback_url").map_err(err)?,
        callback_format,
        cancel_url: url_field(&fields, "cancel_url").map_err(err)?,
        success_url: url_field(&fields, "success_url").map_err(err)?,
        token: fields.text("token", 256).map_err(err)?,
        purchaser_email: email_field(&fields, "purchaser_email").map_err(err)?,
    };
    if req.receive_currency.len() > 16 {
        return Err(err(ApiError::invalid("receive_currency is longer than 16 characters")));
    }
    let order = app::create_order(&state.engine, &actor, req).await.map_err(err)?;
    Ok(Json(order_json(&state, &order, None)))
}

pub(super) async fn checkout(
    State(state): State<AppState>,
    Extension(Merchant(actor, _)): Extension<Merchant>,
    Path(id): Path<String>,
    fields: Fields,
) -> CgResult<Json<Value>> {
    let seq = order_seq(&id)?;
    let pay_currency = fields.required("pay_currency").map_err(err)?;
    let token = catalog::token_for(&state.registry, pay_currency, fields.get("platform_id"))
        .map_err(|m| err(ApiError::invalid(m)))?
        .clone();
    let email = email_field(&fields, "purchaser_email").map_err(err)?;
    let (cg, order) = app::checkout(&state.engine, &actor, seq, token, email).await.map_err(err)?;
    Ok(Json(order_json(&state, &cg, Some(&order))))
}

pub(super) async fn get(
    State(state): State<AppState>,
    Extension(Merchant(actor, _)): Extension<Merchant>,
    Path(id): Path<String>,
) -> CgResult<Json<Value>> {
    let (cg, paid_by) = app::get_order(&state.engine, &actor, order_seq(&id)?).await.map_err(err)?;
    let mut v = order_json(&state, &cg, paid_by.as_ref());
    if v.get("payment_address").is_none() {
        v["payment_address"] = json!("");
    }
    Ok(Json(v))
}

/// `page`, `per_page` (≤ 100), `sort` (`created_at_asc` or `created_at_desc`, the default),
/// `created_at[from]`, `created_at[to]`.
pub(super) async fn list(
    State(state): State<AppState>,
    Extension(Merchant(actor, _)): Extension<Merchant>,
    uri: Uri,
) -> CgResult<Json<Value>> {
    let q = query_map(&uri);
    let (page, per_page) = paging(&q).map_err(err)?;
    let ascending = match q.get("sort").map(String::as_str) {
        None | Some("" | "created_at_desc") => false,
        Some("created_at_asc") => true,
        Some(other) => {
            return Err(err(ApiError::invalid(format!(
                "sort must be created_at_asc or created_at_desc, not {other:?}"
            ))))
        }
    };
    let bound = |name: &str, end: bool| time_bound(&q, name, end).map_err(err);
    let filter = CoinGateOrderFilter {
        merchant_id: String::new(),
        min_created_at: bound("created_at[from]", false)?,
        max_created_at: bound("created_at[to]", true)?,
        ascending,
        page,
        per_page,
    };
    let (rows, total) = app::list_orders(&state.engine, &actor, filter).await.map_err(err)?;
    let orders: Vec<Value> = rows.iter().map(|(cg, o)| order_json(&state, cg, o.as_ref())).collect();
    Ok(Json(json!({
        "current_page": page,
        "per_page": per_page,
        "total_orders": total,
        "total_pages": pages(total, per_page),
        "orders": orders,
    })))
}
