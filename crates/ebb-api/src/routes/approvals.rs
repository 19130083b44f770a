//! Approval policies, the approval queue, and approving or rejecting a refund (ebb extensions; see
//! docs/RISK.md).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use ebb_app::approvals;
use ebb_core::approval::ApprovalStatus;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorResponse};
use crate::extract::{ApiJson, ApiQuery};
use crate::wire::approvals::{
    ApprovalPolicyList, ApprovalPolicyRequest, ApprovalPolicyView, ApproveRefundRequest, RejectRefundRequest,
};
use crate::wire::{ListResponse, Refund};
use crate::{validate, AppState};

/// Adds an approval policy (PSP-wide operator keys). It holds refunds that get their address from now on.
#[utoipa::path(post, path = "/v2/payments/approval_policies", tag = "approvals", request_body = ApprovalPolicyRequest,
    responses((status = 201, body = ApprovalPolicyView), (status = "4XX", body = ErrorResponse)))]
pub async fn create_policy(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<ApprovalPolicyRequest>,
) -> ApiResult<(StatusCode, Json<ApprovalPolicyView>)> {
    let row = approvals::create_policy(&state.engine, &caller, req.into_policy()?).await?;
    Ok((StatusCode::CREATED, Json(row.into())))
}

/// Every approval policy, oldest first (PSP-wide keys).
#[utoipa::path(get, path = "/v2/payments/approval_policies", tag = "approvals",
    responses((status = 200, body = ApprovalPolicyList), (status = "4XX", body = ErrorResponse)))]
pub async fn list_policies(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> ApiResult<Json<ApprovalPolicyList>> {
    let rows = approvals::list_policies(&state.engine, &caller).await?;
    Ok(Json(ApprovalPolicyList { data: rows.into_iter().map(Into::into).collect() }))
}

#[utoipa::path(get, path = "/v2/payments/approval_policies/{policy_id}", tag = "approvals",
    params(("policy_id" = String, Path)),
    responses((status = 200, body = ApprovalPolicyView), (status = "4XX", body = ErrorResponse)))]
pub async fn get_policy(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(policy_id): Path<String>,
) -> ApiResult<Json<ApprovalPolicyView>> {
    Ok(Json(approvals::get_policy(&state.engine, &caller, &policy_id).await?.into()))
}

/// Replaces a policy's name and criteria. Refunds already waiting keep the approval they have.
#[utoipa::path(put, path = "/v2/payments/approval_policies/{policy_id}", tag = "approvals",
    params(("policy_id" = String, Path)), request_body = ApprovalPolicyRequest,
    responses((status = 200, body = ApprovalPolicyView), (status = "4XX", body = ErrorResponse)))]
pub async fn update_policy(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(policy_id): Path<String>,
    ApiJson(req): ApiJson<ApprovalPolicyRequest>,
) -> ApiResult<Json<ApprovalPolicyView>> {
    Ok(Json(approvals::update_policy(&state.engine, &caller, &policy_id, req.into_policy()?).await?.into()))
}

/// Deletes a policy and answers with it as it was. Refunds already waiting under it still wait.
#[utoipa::path(delete, path = "/v2/payments/approval_policies/{policy_id}", tag = "approvals",
    params(("policy_id" = String, Path)),
    responses((status = 200, body = ApprovalPolicyView), (status = "4XX", body = ErrorResponse)))]
pub async fn delete_policy(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(policy_id): Path<String>,
) -> ApiResult<Json<ApprovalPolicyView>> {
    Ok(Json(approvals::delete_policy(&state.engine, &caller, &policy_id).await?.into()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QueueQuery {
    /// `Pending` (waiting, the refund not cancelled), `Approved` or `Rejected`; left out: all.
    pub status: Option<String>,
    pub merchant_id: Option<String>,
    /// 1 to 50, default 10.
    pub limit: Option<i64>,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// The approval queue: refunds under an approval policy, newest first.
#[utoipa::path(get, path = "/v2/payments/approvals", tag = "approvals", params(QueueQuery),
    responses((status = 200, body = ListResponse<Refund>), (status = "4XX", body = ErrorResponse)))]
pub async fn queue(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<QueueQuery>,
) -> ApiResult<Json<ListResponse<Refund>>> {
    let page = super::page_request(q.limit, q.before, q.after)?;
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(
            ApprovalStatus::parse(s)
                .ok_or_else(|| ApiError::invalid(format!("status must be Pending, Approved or Rejected, not {s:?}")))?,
        ),
    };
    let page = approvals::queue(&state.engine, &caller, status, q.merchant_id, &page).await?;
    Ok(Json(ListResponse::from_page(page, |r| Refund::from_row(&state.registry, r))))
}

/// Approves a refund waiting for approval (PSP-wide keys, approvers' included; never the key that
/// made the refund). Approving twice with one key counts once.
#[utoipa::path(post, path = "/v2/payments/refunds/{refund_id}/approve", tag = "approvals",
    params(("refund_id" = String, Path)), request_body = ApproveRefundRequest,
    responses((status = 200, body = Refund), (status = "4XX", body = ErrorResponse)))]
pub async fn approve(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(refund_id): Path<String>,
    ApiJson(req): ApiJson<ApproveRefundRequest>,
) -> ApiResult<Json<Refund>> {
    let comment = validate::optional_text("comment", req.comment.as_deref(), 500)?;
    let r = approvals::approve(&state.engine, &caller, &refund_id, comment).await?;
    Ok(Json(Refund::from_row(&state.registry, r)))
}

/// Rejects a refund waiting for approval: it fails with `failed_reason` `Rejected: <reason>` and its
/// reserved funds return to the balance they came from.
#[utoipa::path(post, path = "/v2/payments/refunds/{refund_id}/reject", tag = "approvals",
    params(("refund_id" = String, Path)), request_body = RejectRefundRequest,
    responses((status = 200, body = Refund), (status = "4XX", body = ErrorResponse)))]
pub async fn reject(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(refund_id): Path<String>,
    ApiJson(req): ApiJson<RejectRefundRequest>,
) -> ApiResult<Json<Refund>> {
    let reason = validate::text("reason", &req.reason, 500)?;
    let r = approvals::reject(&state.engine, &caller, &refund_id, reason).await?;
    Ok(Json(Refund::from_row(&state.registry, r)))
}
