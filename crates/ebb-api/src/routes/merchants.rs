use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use ebb_app::merchants;
use ebb_app::merchants::NewMerchant;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorResponse};
use crate::extract::{ApiJson, ApiQuery};
use crate::wire::{CreateMerchantRequest, ListResponse, Merchant, UpdateMerchantRequest};
use crate::{validate, AppState};

const WALLET_SETUPS: [&str; 3] = ["Default", "Shared", "Separate"];

#[utoipa::path(post, path = "/v2/payments/merchants", tag = "merchants", request_body = CreateMerchantRequest,
    responses((status = 201, body = Merchant), (status = "4XX", body = ErrorResponse)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<CreateMerchantRequest>,
) -> ApiResult<(StatusCode, Json<Merchant>)> {
    let name = validate::text("name", &req.name, 128)?;
    let developer_fee_rate = validate::fee_rate(req.developer_fee_rate.as_deref().unwrap_or("0"))?;
    let wallet_setup = req.wallet_setup.unwrap_or_else(|| "Default".into());
    if !WALLET_SETUPS.contains(&wallet_setup.as_str()) {
        return Err(ApiError::invalid(format!("wallet_setup must be one of {WALLET_SETUPS:?}")));
    }
    let wallet_id = validate::optional_text("wallet_id", req.wallet_id.as_deref(), 128)?.unwrap_or_default();
    let new = NewMerchant { name, wallet_id, developer_fee_rate, wallet_setup };
    let m = merchants::create(&state.store, &caller, new).await?;
    Ok((StatusCode::CREATED, Json(m.into())))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    pub limit: Option<i64>,
    pub before: Option<String>,
    pub after: Option<String>,
    /// Part of the name, or a whole merchant id.
    pub keyword: Option<String>,
}

#[utoipa::path(get, path = "/v2/payments/merchants", tag = "merchants", params(ListQuery),
    responses((status = 200, body = ListResponse<Merchant>), (status = "4XX", body = ErrorResponse)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<ListResponse<Merchant>>> {
    let page = super::page_request(q.limit, q.before, q.after)?;
    let page = merchants::list(&state.store, &caller, q.keyword.as_deref(), &page).await?;
    Ok(Json(ListResponse::from_page(page, Merchant::from)))
}

#[utoipa::path(get, path = "/v2/payments/merchants/{merchant_id}", tag = "merchants",
    params(("merchant_id" = String, Path)),
    responses((status = 200, body = Merchant), (status = "4XX", body = ErrorResponse)))]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(merchant_id): Path<String>,
) -> ApiResult<Json<Merchant>> {
    let m = merchants::get(&state.store, &caller, &merchant_id).await?;
    Ok(Json(m.into()))
}

#[utoipa::path(put, path = "/v2/payments/merchants/{merchant_id}", tag = "merchants",
    params(("merchant_id" = String, Path)), request_body = UpdateMerchantRequest,
    responses((status = 200, body = Merchant), (status = "4XX", body = ErrorResponse)))]
pub async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(merchant_id): Path<String>,
    ApiJson(req): ApiJson<UpdateMerchantRequest>,
) -> ApiResult<Json<Merchant>> {
    let name = req.name.as_deref().map(|n| validate::text("name", n, 128)).transpose()?;
    let rate = req.developer_fee_rate.as_deref().map(validate::fee_rate).transpose()?;
    let m = merchants::update(&state.store, &caller, &merchant_id, name, rate).await?;
    Ok(Json(m.into()))
}
