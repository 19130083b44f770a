use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use ebb_core::token::API_AMOUNT_MAX_SCALE;
use ebb_core::{RefundSource, RefundStatus};
use ebb_store::refunds::{Created, NewRefund, RefundFilter};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorResponse};
use crate::extract::{ApiJson, ApiQuery};
use crate::wire::{CreateRefundRequest, ListResponse, Refund, UpdateRefundRequest};
use crate::{validate, AppState};

/// Creates a refund. Answers 201 with the refund, also when an identical earlier request created it.
#[utoipa::path(post, path = "/v2/payments/refunds", tag = "refunds", request_body = CreateRefundRequest,
    responses((status = 201, body = Refund), (status = "4XX", body = ErrorResponse)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<CreateRefundRequest>,
) -> ApiResult<(StatusCode, Json<Refund>)> {
    let request_id = validate::text("request_id", &req.request_id, 128)?;
    let token = validate::token(&state.registry, "token_id", &req.token_id)?.clone();
    let amount = validate::positive_amount("payable_amount", &req.payable_amount, &token, API_AMOUNT_MAX_SCALE)?;
    let source = RefundSource::parse(&req.refund_type)
        .ok_or_else(|| ApiError::invalid(format!("refund_type must be Merchant or Psp, not {:?}", req.refund_type)))?;
    if source == RefundSource::Psp {
        caller.require_psp_for("spend the PSP's balance (refund_type Psp)")?;
    }
    let to_address = match req.to_address.as_deref().filter(|a| !a.is_empty()) {
        Some(a) => {
            let address = validate::address("to_address", a, &token)?;
            crate::destinations::check(&state, "to_address", &address).await?;
            Some(address)
        }
        None => None,
    };
    let merchant_fee = if req.charge_merchant_fee == Some(true) {
        if source != RefundSource::Merchant {
            return Err(ApiError::invalid("charge_merchant_fee is only valid when refund_type is Merchant"));
        }
        let fee_str = req
            .merchant_fee_amount
            .as_deref()
            .ok_or_else(|| ApiError::invalid("merchant_fee_amount is required when charge_merchant_fee is true"))?;
        let fee = validate::positive_amount("merchant_fee_amount", fee_str, &token, API_AMOUNT_MAX_SCALE)?;
        if fee >= amount {
            return Err(ApiError::new(
                crate::error::ErrorCode::InvalidAmount,
                "merchant_fee_amount must be less than payable_amount",
            ));
        }
        match req.merchant_fee_token_id.as_deref() {
            Some(t) if t != token.id => {
                return Err(ApiError::invalid(format!("merchant_fee_token_id must equal token_id ({})", token.id)))
            }
            _ => {}
        }
        Some(fee)
    } else {
        None
    };
    let merchant_id = validate::optional_text("merchant_id", req.merchant_id.as_deref(), 128)?;
    if let Some(m) = &merchant_id {
        caller.check_merchant(m)?;
    }
    let merchant_id = merchant_id.or_else(|| caller.merchant.clone());
    let order_id = validate::optional_text("order_id", req.order_id.as_deref(), 128)?;
    let new = NewRefund {
        request_id,
        idem_scope: caller.idem_scope(),
        merchant_id,
        order_id,
        token,
        amount,
        to_address,
        source,
        merchant_fee,
        initiator: caller.initiator(),
        via_link: false,
    };
    let created = state.store.create_refund(new).await?;
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
    let r = state.store.refund(&refund_id, caller.merchant.as_deref()).await?;
    let r = r.ok_or_else(|| ApiError::not_found("refund", &refund_id))?;
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
        merchant_id: caller.merchant_filter(q.merchant_id)?,
        request_id: q.request_id.filter(|r| !r.is_empty()),
        statuses: validate::list_of("statuses", q.statuses.as_deref(), RefundStatus::parse)?,
        min_created_at: q.min_created_timestamp,
        max_created_at: q.max_created_timestamp,
        min_updated_at: q.min_updated_timestamp,
        max_updated_at: q.max_updated_timestamp,
    };
    let page = state.store.list_refunds(&filter, &page).await?;
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
    let scope = caller.merchant.as_deref();
    let current =
        state.store.refund(&refund_id, scope).await?.ok_or_else(|| ApiError::not_found("refund", &refund_id))?;
    let token = validate::token(&state.registry, "token_id", &current.token_id)?;
    let address = validate::address("to_address", &req.to_address, token)?;
    crate::destinations::check(&state, "to_address", &address).await?;
    let r = state.store.set_refund_address(&refund_id, scope, address).await?;
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
    let r = state.store.cancel_refund(&refund_id, caller.merchant.as_deref()).await?;
    Ok(Json(Refund::from_row(&state.registry, r)))
}
