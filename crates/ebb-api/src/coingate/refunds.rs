//! CoinGate refunds: of a paid order, in its price currency; read one, list an order's, list all.

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::{Extension, Json};
use ebb_app::coingate::{self as app, NewRefund};
use ebb_core::rate::fiat_decimals;
use ebb_core::{Amount, RefundStatus, Token};
use ebb_store::coingate::{CoinGateRefundExtra, CoinGateRefundFilter, CoinGateRefundRef};
use ebb_store::refunds::RefundRow;
use serde_json::{json, Value};

use super::orders::{email_field, order_seq, url_field};
use super::{catalog, iso, pages, paging, query_map, time_bound, CgError, CgResult, Context, Fields, Merchant};
use crate::error::{ApiError, ErrorCode};
use crate::AppState;

fn err(e: impl Into<ApiError>) -> CgError {
    CgError::from_api(e.into(), Context::Refund)
}

/// An error finding the order a refund belongs to: a missing order is `OrderNotFound`.
fn order_err(e: impl Into<ApiError>) -> CgError {
    let e = e.into();
    let context = if e.code == ErrorCode::NotFound { Context::Order } else { Context::Refund };
    CgError::from_api(e, context)
}

/// CoinGate's refund status: `pending` until its payout starts (an address to confirm, an approval or
/// a review to wait for, or the executor's turn), `processing` while it is paid, `completed`, or
/// `rejected` (cancelled, refused by an approver, or a payout that failed).
fn status(s: RefundStatus) -> &'static str {
    match s {
        RefundStatus::PendingConfirmation
        | RefundStatus::AddressPending
        | RefundStatus::AddressSubmitted
        | RefundStatus::Pending => "pending",
        RefundStatus::Processing | RefundStatus::PartiallyCompleted => "processing",
        RefundStatus::Completed => "completed",
        RefundStatus::Failed => "rejected",
    }
}

pub(super) fn currency_json(state: &AppState, symbol: &str) -> Value {
    match catalog::currencies(&state.registry).into_iter().find(|c| c.symbol == symbol) {
        Some(c) => json!({"id": c.id, "title": c.title, "kind": c.kind, "symbol": c.symbol}),
        None => json!({"id": null, "title": symbol, "kind": null, "symbol": symbol}),
    }
}

/// The merchant's balance a refund is taken from, as CoinGate's ledger account id.
pub(super) fn ledger_account_id(merchant_id: &str, token_id: &str) -> String {
    format!("{merchant_id}-{token_id}")
}

/// The refund as CoinGate answers it.
pub(super) fn refund_json(
    state: &AppState,
    r: &RefundRow,
    reference: &CoinGateRefundRef,
    order: Option<&Value>,
) -> Value {
    let token = state.registry.get(&r.token_id);
    let decimals = token.map_or(0, |t| t.decimals);
    let symbol = token.map_or(r.token_id.as_str(), |t| t.symbol.as_str());
    let platform = catalog::platform_of(&state.registry, &r.chain_id);
    let (request_amount, request_currency) = match &r.pricing {
        Some(p) if p.asked => (p.amount.to_decimal_string(fiat_decimals(&p.currency).unwrap_or(0)), p.currency.clone()),
        _ => (r.amount.to_decimal_string(decimals), symbol.to_owned()),
    };
    let mut token_currency = currency_json(state, symbol);
    token_currency["platform"] = json!(platform.as_ref().map(|p| json!({"id": p.id, "title": p.title})));
    let rejected = r.status == RefundStatus::Failed;
    let memo = reference.extra.address_memo.clone().unwrap_or_default();
    // Until the customer confirms it by e-mail, the address asked for.
    let address = match (&reference.extra.address_to_confirm, r.to_address.is_empty()) {
        (Some(asked), true) => asked.clone(),
        _ => r.to_address.clone(),
    };
    json!({
        "id": reference.seq,
        "request_amount": request_amount,
        "request_currency": currency_json(state, &request_currency),
        "refund_amount": r.amount.to_decimal_string(decimals),
        "address": address,
        "memo": memo,
        "crypto_address": address,
        "crypto_address_memo": memo,
        "status": status(r.status),
        "created_at": iso(r.created_at),
        "updated_at": iso(r.updated_at),
        "order": order.cloned().unwrap_or_else(|| json!({"id": reference.order_seq})),
        "refund_currency": token_currency,
        "transactions": r.transactions.iter().map(|t| json!({
            "id": t.tx_id, "hash": t.tx_hash, "amount": t.amount.to_decimal_string(decimals), "status": t.status.as_str(),
        })).collect::<Vec<_>>(),
        "ledger_account": {
            "id": ledger_account_id(r.merchant_id.as_deref().unwrap_or(""), &r.token_id),
            "currency": currency_json(state, symbol),
        },
        "email": reference.extra.email,
        "reason": reference.extra.reason,
        "rejection_type": rejected.then(|| if r.failed_reason.as_deref() == Some("Cancelled") { "cancelled" } else { "rejected" }),
        "rejection_reason": if rejected { r.failed_reason.clone() } else { None },
    })
}

/// The order as a refund shows it.
async fn order_summary(state: &AppState, actor: &ebb_app::Actor, seq: i64) -> CgResult<Value> {
    let (order, _) = app::get_order(&state.engine, actor, seq).await.map_err(order_err)?;
    Ok(json!({
        "id": order.seq,
        "title": order.title.unwrap_or_default(),
        "price_amount": order.price_amount,
        "price_currency": currency_json(state, &order.price_currency),
    }))
}

/// `amount` in the order's price currency: a fiat currency's minor units, or the token's own.
fn amount(fields: &Fields, price_currency: &str, token: &Token) -> Result<Amount, ApiError> {
    let decimals = fiat_decimals(price_currency).unwrap_or(token.decimals);
    Amount::parse_positive(fields.required("amount")?, decimals, decimals)
        .map_err(|e| ApiError::new(ErrorCode::InvalidAmount, format!("amount: {e}")))
}

/// `POST /v2/orders/{id}/refunds`. `currency_id`, `platform_id` and `ledger_account_id`, when given,
/// must name the token the order was paid in and the merchant's balance of it: ebb refunds in the token
/// paid, from that balance. With `email` and without `skip_user_address_confirmation`, the customer
/// confirms the address through a refund link e-mailed to them before anything is paid (docs/MAIL.md).
pub(super) async fn create(
    State(state): State<AppState>,
    Extension(Merchant(actor, callback_format)): Extension<Merchant>,
    Path(id): Path<String>,
    fields: Fields,
) -> CgResult<Json<Value>> {
    let seq = order_seq(&id)?;
    let (order, paid_by, token) = app::paid_token(&state.engine, &actor, seq).await.map_err(order_err)?;
    let refund_amount = amount(&fields, &order.price_currency, &token).map_err(err)?;
    let address = fields.required("address").map_err(err)?;
    let address = crate::validate::address("address", address, &token).map_err(err)?;
    let currency = catalog::currencies(&state.registry).into_iter().find(|c| c.symbol == token.symbol);
    if let (Some(given), Some(c)) = (fields.get("currency_id"), &currency) {
        if given != c.id.to_string() && !given.eq_ignore_ascii_case(&c.symbol) {
            return Err(err(ApiError::invalid(format!(
                "currency_id {given:?}: order {seq} was paid in {} (currency {}), and is refunded in it",
                token.symbol, c.id
            ))));
        }
    }
    if let Some(given) = fields.get("platform_id") {
        let platform = catalog::platform_of(&state.registry, &token.chain_id);
        if !platform.is_some_and(|p| p.id.to_string() == given || p.id_name.eq_ignore_ascii_case(given)) {
            return Err(err(ApiError::invalid(format!(
                "platform_id {given:?}: order {seq} was paid on {} and is refunded there",
                token.chain_id
            ))));
        }
    }
    let account = ledger_account_id(&paid_by.merchant_id, &token.id);
    if let Some(given) = fields.get("ledger_account_id") {
        if given != account {
            return Err(err(ApiError::invalid(format!(
                "ledger_account_id {given:?}: the refund is taken from the merchant's {} balance, {account}",
                token.id
            ))));
        }
    }
    let skip_confirmation = fields.flag("skip_user_address_confirmation").map_err(err)?;
    let extra = CoinGateRefundExtra {
        email: email_field(&fields, "email").map_err(err)?,
        reason: fields.text("reason", 500).map_err(err)?,
        callback_url: url_field(&fields, "callback_url").map_err(err)?,
        callback_format: Some(callback_format),
        address_memo: fields.text("address_memo", 100).map_err(err)?,
        address_to_confirm: None,
    };
    let req = NewRefund { amount: refund_amount, address, extra, confirm_by_mail: !skip_confirmation };
    let (refund, reference) = app::create_refund(&state.engine, &actor, seq, req).await.map_err(err)?;
    let summary = order_summary(&state, &actor, seq).await?;
    Ok(Json(refund_json(&state, &refund, &reference, Some(&summary))))
}

fn refund_seq(id: &str) -> CgResult<i64> {
    id.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| err(ApiError::new(ErrorCode::NotFound, format!("refund {id:?} not found"))))
}

pub(super) async fn get(
    State(state): State<AppState>,
    Extension(Merchant(actor, _)): Extension<Merchant>,
    Path((id, refund_id)): Path<(String, String)>,
) -> CgResult<Json<Value>> {
    let seq = order_seq(&id)?;
    let summary = order_summary(&state, &actor, seq).await?;
    let (refund, reference) = app::get_refund(&state.engine, &actor, refund_seq(&refund_id)?).await.map_err(err)?;
    if reference.order_seq != seq {
        return Err(err(ApiError::new(ErrorCode::NotFound, format!("order {seq} has no refund {refund_id}"))));
    }
    Ok(Json(refund_json(&state, &refund, &reference, Some(&summary))))
}

fn page_json(state: &AppState, page: i64, per_page: i64, total: i64, rows: &[(RefundRow, CoinGateRefundRef)]) -> Value {
    json!({
        "current_page": page,
        "per_page": per_page,
        "total_refunds": total,
        "total_pages": pages(total, per_page),
        "refunds": rows.iter().map(|(r, reference)| refund_json(state, r, reference, None)).collect::<Vec<_>>(),
    })
}

/// `GET /v2/orders/{id}/refunds` (`page`, `per_page`), oldest first.
pub(super) async fn list_of_order(
    State(state): State<AppState>,
    Extension(Merchant(actor, _)): Extension<Merchant>,
    Path(id): Path<String>,
    uri: Uri,
) -> CgResult<Json<Value>> {
    let seq = order_seq(&id)?;
    app::get_order(&state.engine, &actor, seq).await.map_err(order_err)?;
    let (page, per_page) = paging(&query_map(&uri)).map_err(err)?;
    let filter = CoinGateRefundFilter { order_seq: Some(seq), ascending: true, page, per_page, ..Default::default() };
    let (rows, total) = app::list_refunds(&state.engine, &actor, filter).await.map_err(err)?;
    Ok(Json(page_json(&state, page, per_page, total, &rows)))
}

/// `GET /v2/refunds`: `page`, `per_page` (≤ 100), `created_at[from|to]`, `updated_at[from|to]`, `sort`
/// (`created_at_asc`, `created_at_desc` (the default), `updated_at_asc`, `updated_at_desc`).
pub(super) async fn list(
    State(state): State<AppState>,
    Extension(Merchant(actor, _)): Extension<Merchant>,
    uri: Uri,
) -> CgResult<Json<Value>> {
    let q = query_map(&uri);
    let (page, per_page) = paging(&q).map_err(err)?;
    let (sort_by_updated, ascending) = match q.get("sort").map(String::as_str) {
        None | Some("" | "created_at_desc") => (false, false),
        Some("created_at_asc") => (false, true),
        Some("updated_at_desc") => (true, false),
        Some("updated_at_asc") => (true, true),
        Some(other) => {
            return Err(err(ApiError::invalid(format!(
                "sort must be created_at_asc, created_at_desc, updated_at_asc or updated_at_desc, not {other:?}"
            ))))
        }
    };
    let bound = |name: &str, end: bool| time_bound(&q, name, end).map_err(err);
    let filter = CoinGateRefundFilter {
        merchant_id: String::new(),
        order_seq: None,
        min_created_at: bound("created_at[from]", false)?,
        max_created_at: bound("created_at[to]", true)?,
        min_updated_at: bound("updated_at[from]", false)?,
        max_updated_at: bound("updated_at[to]", true)?,
        sort_by_updated,
        ascending,
        page,
        per_page,
    };
    let (rows, total) = app::list_refunds(&state.engine, &actor, filter).await.map_err(err)?;
    Ok(Json(page_json(&state, page, per_page, total, &rows)))
}
