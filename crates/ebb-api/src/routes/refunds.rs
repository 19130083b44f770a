use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use ebb_app::refunds::{self, Created, FiatAmount, RefundRequest};
use ebb_core::token::API_AMOUNT_MAX_SCALE;
use ebb_core::{RefundSource, RefundStatus};
use ebb_store::refunds::RefundFilter;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorResponse};
use crate::extract::{ApiJson, ApiQuery};
use crate::wire::{CreateRefundRequest, ListResponse, Refund, UpdateRefundRequest};
use crate::{validate, AppState};

/// Creates a refund. Answers 201 with the refund, also when an identical earlier request created it.
#[utoipa::path(post, path = "/v2/payments/refunds", tag = "refunds", request_body = CreateRefundRequest,
    responses((status = 201, body = Refund), (status = "4XX", body = ErrorResponse), (status = "5XX", body = ErrorResponse)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<CreateRefundRequest>,
) -> ApiResult<(StatusCode, Json<Refund>)> {
    let request_id = validate::request_id(&req.request_id)?;
    let token = validate::token(&state.registry, "token_id", &req.token_id)?.clone();
    let (amount, price) = match (req.payable_amount.as_str(), req.pricing_amount.as_deref().filter(|p| !p.is_empty())) {
        (p, None) if !p.is_empty() => {
            (validate::positive_amount("payable_amount", p, &token, API_AMOUNT_MAX_SCALE)?, None)
        }
        ("", Some(p)) => {
            let currency = req
                .pricing_currency
                .clone()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| ApiError::invalid("pricing_currency is required with pricing_amount"))?;
            let decimals = validate::fiat_currency("pricing_currency", &currency)?;
            let amount = validate::fiat_amount("pricing_amount", p, decimals, true)?;
            (ebb_core::Amount::ZERO, Some(FiatAmount { currency, amount }))
        }
        _ => return Err(ApiError::invalid("give exactly one of payable_amount and pricing_amount")),
    };
    let source = RefundSource::parse_requested(&req.refund_type)
        .ok_or_else(|| ApiError::invalid(format!("refund_type must be Merchant or Psp, not {:?}", req.refund_type)))?;
    let to_address = req
        .to_address
        .as_deref()
        .filter(|a| !a.is_empty())
        .map(|a| validate::address("to_address", a, &token))
        .transpose()?;
    let merchant_fee = if req.charge_merchant_fee == Some(true) {
        let fee_str = req
            .merchant_fee_amount
            .as_deref()
            .ok_or_else(|| ApiError::invalid("merchant_fee_amount is required when charge_merchant_fee is true"))?;
        match req.merchant_fee_token_id.as_deref() {
            Some(t) if t != token.id => {
                return Err(ApiError::invalid(format!("merchant_fee_token_id must equal token_id ({})", token.id)))
            }
            _ => {}
        }
        Some(validate::positive_amount("merchant_fee_amount", fee_str, &token, API_AMOUNT_MAX_SCALE)?)
    } else {
        None
    };
    let request = RefundRequest {
        request_id,
        merchant_id: validate::optional_text("merchant_id", req.merchant_id.as_deref(), 128)?,
        order_id: validate::optional_text("order_id", req.order_id.as_deref(), 128)?,
        token,
        amount,
        price,
        to_address,
        source,
        merchant_fee,
    };
    let created = refunds::create(&state.engine, &caller, request).await?;
    if matches!(created, Created::New(_)) {
        state.metrics.refunds_created.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    Ok((StatusCode::CREATED, Json(Refund::from_row(&state.registry, created.into_inner()))))
}

#[utoipa::path(get, path = "/v2/payments/refunds/{refund_id}", tag = "refunds",
    params(("refund_id" = String, Path)),
    responses((status = 200, body = Refund), (status = "4XX", body = ErrorResponse)))]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(refund_id): Path<String>,
) -> ApiResult<Json<Refund>> {
    let r = refunds::get(&state.engine, &caller, &refund_id).await?;
    Ok(Json(Refund::from_row(&state.registry, r)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// 1 to 50, default 10.
    pub limit: Option<i64>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub merchant_id: Option<String>,
    pub request_id: Option<String>,
    /// Comma-separated refund statuses.
    pub statuses: Option<String>,
    /// Seconds, inclusive.
    pub min_created_timestamp: Option<i64>,
    pub max_created_timestamp: Option<i64>,
    pub min_updated_timestamp: Option<i64>,
    pub max_updated_timestamp: Option<i64>,
}

#[utoipa::path(get, path = "/v2/payments/refunds", tag = "refunds", params(ListQuery),
    responses((status = 200, body = ListResponse<Refund>), (status = "4XX", body = ErrorResponse)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<ListResponse<Refund>>> {
    let page = super::page_request(q.limit, q.before, q.after)?;
    let filter = RefundFilter {
        merchant_id: q.merchant_id,
        request_id: q.request_id.filter(|r| !r.is_empty()),
        statuses: validate::list_of("statuses", q.statuses.as_deref(), RefundStatus::parse)?,
        min_created_at: q.min_created_timestamp,
        max_created_at: q.max_created_timestamp,
        min_updated_at: q.min_updated_timestamp,
        max_updated_at: q.max_updated_timestamp,
        ..RefundFilter::default()
    };
    let page = refunds::list(&state.engine, &caller, filter, &page).await?;
    Ok(Json(ListResponse::from_page(page, |r| Refund::from_row(&state.registry, r))))
}

/// Sets the receiving address of a refund in `PendingConfirmation` (it becomes `Pending`) or changes it
/// while `Pending`.
#[utoipa::path(put, path = "/v2/payments/refunds/{refund_id}", tag = "refunds",
    params(("refund_id" = String, Path)), request_body = UpdateRefundRequest,
    responses((status = 200, body = Refund), (status = "4XX", body = ErrorResponse)))]
pub async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(refund_id): Path<String>,
    ApiJson(req): ApiJson<UpdateRefundRequest>,
) -> ApiResult<Json<Refund>> {
    let r = refunds::set_address(&state.engine, &caller, &refund_id, |token| {
        validate::address("to_address", &req.to_address, token)
    })
    .await?;
    Ok(Json(Refund::from_row(&state.registry, r)))
}

/// Cancels a refund that has not started paying out: status `Failed`, failed_reason `Cancelled`, and its
/// reserved funds return to the balance they came from.
#[utoipa::path(put, path = "/v2/payments/refunds/{refund_id}/cancel", tag = "refunds",
    params(("refund_id" = String, Path)),
    responses((status = 200, body = Refund), (status = "4XX", body = ErrorResponse)))]
pub async fn cancel(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(refund_id): Path<String>,
) -> ApiResult<Json<Refund>> {
    let r = refunds::cancel(&state.engine, &caller, &refund_id).await?;
    Ok(Json(Refund::from_row(&state.registry, r)))
}
