//! Cobo's Compliance API: address screenings (KYA), pay-in screening status (KYT) and the
//! dispositions of held funds. docs/RISK.md.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use ebb_app::screening::{self, KyaRequest};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorResponse};
use crate::extract::{ApiJson, ApiQuery};
use crate::wire::compliance::{
    CreateKyaScreeningsBody, DispositionQueryResponse, DispositionResponse, KyaScreeningResult, KytReviewBody,
    KytScreeningsTransaction, PayoutDisposition, SubmitKytResponse, UnfreezeDisposition,
};
use crate::wire::ListResponse;
use crate::{validate, AppState};
use ebb_app::dispositions::{Payout, ReviewKind, ReviewResult};

/// Screens 1 to 50 addresses with the configured providers (PSP-wide operator keys).
#[utoipa::path(post, path = "/v2/compliance/kya/screenings", tag = "compliance", request_body = CreateKyaScreeningsBody,
    responses((status = 201, body = Vec<KyaScreeningResult>), (status = "4XX", body = ErrorResponse)))]
pub async fn create_kya(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<CreateKyaScreeningsBody>,
) -> ApiResult<(StatusCode, Json<Vec<KyaScreeningResult>>)> {
    if body.screenings.is_empty() || body.screenings.len() > 50 {
        return Err(ApiError::invalid("screenings must hold 1 to 50 addresses"));
    }
    let mut requests = Vec::with_capacity(body.screenings.len());
    for (i, s) in body.screenings.into_iter().enumerate() {
        let field = |f: &str| format!("screenings[{i}].{f}");
        let request_id = validate::text(&field("request_id"), &s.request_id, 128)?;
        let family = state.registry.iter().find(|t| t.chain_id == s.chain_id).map(|t| t.family).ok_or_else(|| {
            ApiError::invalid(format!("{} {:?} is not a chain ebb supports", field("chain_id"), s.chain_id))
        })?;
        let address = ebb_core::Address::parse(family, s.address.trim())
            .map_err(|e| ApiError::invalid(format!("{}: {e}", field("address"))))?;
        let note = validate::optional_text(&field("note"), s.note.as_deref(), 100)?;
        requests.push(KyaRequest { request_id, address, chain_id: s.chain_id, note });
    }
    let rows = screening::screen_addresses(&state.engine, &caller, requests).await?;
    Ok((StatusCode::CREATED, Json(rows.into_iter().map(Into::into).collect())))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KyaListQuery {
    /// Comma-separated screening ids.
    pub screening_ids: Option<String>,
    /// 1 to 50, default 10.
    pub limit: Option<i64>,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// Address screenings, newest first (PSP-wide keys).
#[utoipa::path(get, path = "/v2/compliance/kya/screenings", tag = "compliance", params(KyaListQuery),
    responses((status = 200, body = ListResponse<KyaScreeningResult>), (status = "4XX", body = ErrorResponse)))]
pub async fn list_kya(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<KyaListQuery>,
) -> ApiResult<Json<ListResponse<KyaScreeningResult>>> {
    caller.require_psp_for("read address screenings")?;
    let page = super::page_request(q.limit, q.before, q.after)?;
    let ids: Vec<String> = validate::list_of("screening_ids", q.screening_ids.as_deref(), |s| Some(s.to_owned()))?;
    let page = state.store.list_kya_screenings(&ids, &page).await?;
    Ok(Json(ListResponse::from_page(page, Into::into)))
}

#[utoipa::path(get, path = "/v2/compliance/kya/screenings/{screening_id}", tag = "compliance",
    params(("screening_id" = String, Path)),
    responses((status = 200, body = KyaScreeningResult), (status = "4XX", body = ErrorResponse)))]
pub async fn get_kya(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(screening_id): Path<String>,
) -> ApiResult<Json<KyaScreeningResult>> {
    caller.require_psp_for("read address screenings")?;
    let row = state
        .store
        .kya_screening(&screening_id)
        .await?
        .ok_or_else(|| ApiError::not_found("screening", &screening_id))?;
    Ok(Json(row.into()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TransactionQuery {
    pub transaction_id: String,
}

async fn transaction(
    state: &AppState,
    caller: &Caller,
    tx_id: &str,
) -> ApiResult<ebb_store::transactions::TransactionRow> {
    caller.require_psp_for("read screening and funds statuses")?;
    state.store.transaction(tx_id).await?.ok_or_else(|| ApiError::not_found("transaction", tx_id))
}

/// Where a transaction's screening and funds stand (PSP-wide keys).
#[utoipa::path(get, path = "/v2/compliance/kyt/screenings/status", tag = "compliance", params(TransactionQuery),
    responses((status = 200, body = KytScreeningsTransaction), (status = "4XX", body = ErrorResponse)))]
pub async fn kyt_status(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<TransactionQuery>,
) -> ApiResult<Json<KytScreeningsTransaction>> {
    let t = transaction(&state, &caller, &q.transaction_id).await?;
    let (funds, _) = ebb_app::dispositions::funds(&state.store, &t).await?;
    let review = state.store.latest_kyt_review(&t.tx_id).await?;
    Ok(Json(KytScreeningsTransaction::new(t, funds, review.as_ref().map(|(_, r)| r.as_str()))))
}

async fn submit_review(
    state: &AppState,
    caller: &Caller,
    body: KytReviewBody,
    kind: ReviewKind,
) -> ApiResult<(StatusCode, Json<SubmitKytResponse>)> {
    let result = ReviewResult::parse(&body.result).ok_or_else(|| {
        ApiError::invalid(format!(
            "result {:?} is not Approval, ApprovalWithAlert, Rejection or ManualReview",
            body.result
        ))
    })?;
    ebb_app::dispositions::review(&state.engine, caller, &body.transaction_id, kind, result).await?;
    Ok((StatusCode::CREATED, Json(SubmitKytResponse { transaction_id: body.transaction_id, submitted: true })))
}

/// A compliance officer's review of a held pay-in: `Approval` releases it to its merchant (as
/// `unfreeze`), `Rejection` keeps it frozen for a refund or isolate (PSP-wide operator keys).
#[utoipa::path(post, path = "/v2/compliance/kyt/screenings/manual_review", tag = "compliance",
    request_body = KytReviewBody,
    responses((status = 201, body = SubmitKytResponse), (status = "4XX", body = ErrorResponse)))]
pub async fn manual_review(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<KytReviewBody>,
) -> ApiResult<(StatusCode, Json<SubmitKytResponse>)> {
    submit_review(&state, &caller, body, ReviewKind::ManualReview).await
}

/// An external KYT decision on a held pay-in: `Approval` or `ApprovalWithAlert` release it,
/// `Rejection` keeps it frozen, `ManualReview` sends it back to review (PSP-wide operator keys).
#[utoipa::path(post, path = "/v2/compliance/kyt/screenings/decisions", tag = "compliance",
    request_body = KytReviewBody,
    responses((status = 201, body = SubmitKytResponse), (status = "4XX", body = ErrorResponse)))]
pub async fn decisions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<KytReviewBody>,
) -> ApiResult<(StatusCode, Json<SubmitKytResponse>)> {
    submit_review(&state, &caller, body, ReviewKind::Decision).await
}

/// Releases a held pay-in to its merchant, credited as if it had never been held (PSP-wide operator
/// keys).
#[utoipa::path(post, path = "/v2/compliance/funds/disposition/unfreeze", tag = "compliance",
    request_body = UnfreezeDisposition,
    responses((status = 201, body = DispositionResponse), (status = "4XX", body = ErrorResponse)))]
pub async fn unfreeze(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<UnfreezeDisposition>,
) -> ApiResult<(StatusCode, Json<DispositionResponse>)> {
    ebb_app::dispositions::unfreeze(&state.engine, &caller, &body.transaction_id).await?;
    Ok((
        StatusCode::CREATED,
        Json(DispositionResponse { transaction_id: body.transaction_id, status: ebb_app::payins::UNFROZEN.into() }),
    ))
}

/// The latest disposition of a held pay-in (PSP-wide keys); 404 before any.
#[utoipa::path(get, path = "/v2/compliance/funds/disposition", tag = "compliance", params(TransactionQuery),
    responses((status = 200, body = DispositionQueryResponse), (status = "4XX", body = ErrorResponse)))]
pub async fn disposition(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<TransactionQuery>,
) -> ApiResult<Json<DispositionQueryResponse>> {
    let t = transaction(&state, &caller, &q.transaction_id).await?;
    let (_, view) = ebb_app::dispositions::funds(&state.store, &t).await?;
    let d = view.ok_or_else(|| ApiError::not_found("disposition of transaction", &q.transaction_id))?;
    Ok(Json(DispositionQueryResponse {
        transaction_id: t.tx_id,
        disposition_type: d.disposition_type,
        disposition_status: d.status,
        disposition_transaction_id: d.payout_tx_id,
        refund_id: d.refund_id,
    }))
}

async fn pay_out(
    state: &AppState,
    caller: &Caller,
    body: PayoutDisposition,
    kind: Payout,
) -> ApiResult<(StatusCode, Json<DispositionResponse>)> {
    validate::optional_text("description", body.description.as_deref(), 200)?;
    let r = ebb_app::dispositions::pay_out(
        &state.engine,
        caller,
        &body.transaction_id,
        kind,
        |token| validate::positive_amount("disposition_amount", &body.disposition_amount, token, token.decimals),
        |token| validate::address("destination_address", &body.destination_address, token),
    )
    .await?;
    let status = match kind {
        Payout::Refund => "Refunding",
        Payout::Isolate => "Isolating",
    };
    tracing::info!(tx_id = %body.transaction_id, refund = %r.refund_id, kind = kind.as_str(), "held funds disposed of");
    Ok((StatusCode::CREATED, Json(DispositionResponse { transaction_id: body.transaction_id, status: status.into() })))
}

/// Pays a held pay-in back (to its sender or another address; the destination is screened, so a
/// sanctioned sender is refused): a refund of type `Held` the payout executor pays (PSP-wide operator
/// keys).
#[utoipa::path(post, path = "/v2/compliance/funds/disposition/refund", tag = "compliance",
    request_body = PayoutDisposition,
    responses((status = 201, body = DispositionResponse), (status = "4XX", body = ErrorResponse)))]
pub async fn refund(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<PayoutDisposition>,
) -> ApiResult<(StatusCode, Json<DispositionResponse>)> {
    pay_out(&state, &caller, body, Payout::Refund).await
}

/// Sends a held pay-in to the chain's configured quarantine address (PSP-wide operator keys).
#[utoipa::path(post, path = "/v2/compliance/funds/disposition/isolate", tag = "compliance",
    request_body = PayoutDisposition,
    responses((status = 201, body = DispositionResponse), (status = "4XX", body = ErrorResponse)))]
pub async fn isolate(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<PayoutDisposition>,
) -> ApiResult<(StatusCode, Json<DispositionResponse>)> {
    pay_out(&state, &caller, body, Payout::Isolate).await
}
