//! `/v2/webhooks/...`: endpoints, their events and delivery logs, retry, test events, definitions.
//! Webhooks are the PSP's: every call needs a PSP-wide key.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use ebb_app::webhooks::{self, check_events, check_url};
use ebb_core::signing::new_standard_secret;
use ebb_store::events::EVENT_TYPES;
use ebb_store::webhooks::{DeliveryFilter, EndpointUpdate, NewEndpoint, STATUS_ACTIVE, STATUS_INACTIVE};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorResponse};
use crate::extract::{ApiJson, ApiQuery};
use crate::wire::webhooks::{
    CreateWebhookEndpointRequest, RetryWebhookEventResponse, TriggerTestWebhookEventRequest,
    TriggerTestWebhookEventResponse, UpdateWebhookEndpointRequest, WebhookEndpoint, WebhookEvent,
    WebhookEventDefinition, WebhookEventLog,
};
use crate::wire::ListResponse;
use crate::{validate, AppState};

fn check_status(s: &str) -> ApiResult<String> {
    match s {
        STATUS_ACTIVE | STATUS_INACTIVE => Ok(s.to_owned()),
        other => Err(ApiError::invalid(format!("status must be {STATUS_ACTIVE} or {STATUS_INACTIVE}, not {other:?}"))),
    }
}

/// Registers an endpoint. With `standard_webhooks: true` the answer carries its Standard Webhooks
/// secret, shown this once.
#[utoipa::path(post, path = "/v2/webhooks/endpoints", tag = "webhooks", request_body = CreateWebhookEndpointRequest,
    responses((status = 201, body = WebhookEndpoint), (status = "4XX", body = ErrorResponse)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<CreateWebhookEndpointRequest>,
) -> ApiResult<(StatusCode, Json<WebhookEndpoint>)> {
    caller.require_psp()?;
    let new = NewEndpoint {
        url: check_url(&req.url)?,
        description: validate::optional_text("description", req.description.as_deref(), 500)?.unwrap_or_default(),
        subscribed_events: check_events(&req.subscribed_events)?,
        signing_secret: req.standard_webhooks.unwrap_or(false).then(new_standard_secret),
    };
    let e = webhooks::create_endpoint(&state.store, &caller, new).await?;
    Ok((StatusCode::CREATED, Json(WebhookEndpoint::created(e))))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListEndpointsQuery {
    pub status: Option<String>,
    pub event_type: Option<String>,
    pub limit: Option<i64>,
    pub before: Option<String>,
    pub after: Option<String>,
}

#[utoipa::path(get, path = "/v2/webhooks/endpoints", tag = "webhooks", params(ListEndpointsQuery),
    responses((status = 200, body = ListResponse<WebhookEndpoint>), (status = "4XX", body = ErrorResponse)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<ListEndpointsQuery>,
) -> ApiResult<Json<ListResponse<WebhookEndpoint>>> {
    caller.require_psp()?;
    let page = super::page_request(q.limit, q.before, q.after)?;
    let status = q.status.filter(|s| !s.is_empty()).map(|s| check_status(&s)).transpose()?;
    let event_type = q.event_type.filter(|s| !s.is_empty());
    let page = state.store.list_endpoints(status.as_deref(), event_type.as_deref(), false, &page).await?;
    Ok(Json(ListResponse::from_page(page, WebhookEndpoint::from_row)))
}

#[utoipa::path(get, path = "/v2/webhooks/endpoints/{endpoint_id}", tag = "webhooks",
    params(("endpoint_id" = String, Path)),
    responses((status = 200, body = WebhookEndpoint), (status = "4XX", body = ErrorResponse)))]
pub async fn get(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(endpoint_id): Path<String>,
) -> ApiResult<Json<WebhookEndpoint>> {
    caller.require_psp()?;
    let e = state.store.endpoint(&endpoint_id).await?;
    let e = e.ok_or_else(|| ApiError::not_found("webhook endpoint", &endpoint_id))?;
    Ok(Json(WebhookEndpoint::from_row(e)))
}

/// Changes the subscribed events, the description, the URL, or the status: `STATUS_INACTIVE` stops
/// deliveries (no new ones are queued; queued ones wait), `STATUS_ACTIVE` resumes them.
#[utoipa::path(put, path = "/v2/webhooks/endpoints/{endpoint_id}", tag = "webhooks",
    params(("endpoint_id" = String, Path)), request_body = UpdateWebhookEndpointRequest,
    responses((status = 200, body = WebhookEndpoint), (status = "4XX", body = ErrorResponse)))]
pub async fn update(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(endpoint_id): Path<String>,
    ApiJson(req): ApiJson<UpdateWebhookEndpointRequest>,
) -> ApiResult<Json<WebhookEndpoint>> {
    caller.require_psp()?;
    let update = EndpointUpdate {
        url: req.url.as_deref().map(check_url).transpose()?,
        description: validate::optional_text("description", req.description.as_deref(), 500)?,
        subscribed_events: req.subscribed_events.as_deref().map(check_events).transpose()?,
        status: req.status.as_deref().map(check_status).transpose()?,
    };
    let e = webhooks::update_endpoint(&state.store, &caller, &endpoint_id, update).await?;
    Ok(Json(WebhookEndpoint::from_row(e)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListEventsQuery {
    /// `Success`, `Retrying` or `Failed`.
    pub status: Option<String>,
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub event_type: Option<String>,
    pub limit: Option<i64>,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// The events queued for or delivered to an endpoint, newest first.
#[utoipa::path(get, path = "/v2/webhooks/endpoints/{endpoint_id}/events", tag = "webhooks",
    params(("endpoint_id" = String, Path), ListEventsQuery),
    responses((status = 200, body = ListResponse<WebhookEvent>), (status = "4XX", body = ErrorResponse)))]
pub async fn list_events(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(endpoint_id): Path<String>,
    ApiQuery(q): ApiQuery<ListEventsQuery>,
) -> ApiResult<Json<ListResponse<WebhookEvent>>> {
    caller.require_psp()?;
    state.store.endpoint(&endpoint_id).await?.ok_or_else(|| ApiError::not_found("webhook endpoint", &endpoint_id))?;
    let page = super::page_request(q.limit, q.before, q.after)?;
    let status = q.status.filter(|s| !s.is_empty());
    if let Some(s) = &status {
        if !matches!(s.as_str(), "Success" | "Retrying" | "Failed") {
            return Err(ApiError::invalid(format!("status must be Success, Retrying or Failed, not {s:?}")));
        }
    }
    let filter = DeliveryFilter { status, event_type: q.event_type.filter(|s| !s.is_empty()) };
    let page = state.store.list_deliveries(&endpoint_id, &filter, &page).await?;
    let full = state.webhook_retries;
    Ok(Json(ListResponse::from_page(page, |d| WebhookEvent::from_row(&state.registry, &d, full))))
}

#[utoipa::path(get, path = "/v2/webhooks/endpoints/{endpoint_id}/events/{event_id}", tag = "webhooks",
    params(("endpoint_id" = String, Path), ("event_id" = String, Path)),
    responses((status = 200, body = WebhookEvent), (status = "4XX", body = ErrorResponse)))]
pub async fn get_event(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((endpoint_id, event_id)): Path<(String, String)>,
) -> ApiResult<Json<WebhookEvent>> {
    caller.require_psp()?;
    let d = state.store.delivery(&endpoint_id, &event_id).await?;
    let d = d.ok_or_else(|| ApiError::not_found("webhook event", &event_id))?;
    Ok(Json(WebhookEvent::from_row(&state.registry, &d, state.webhook_retries)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    pub limit: Option<i64>,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// Every attempt to deliver one event to one endpoint, newest first: request headers and body, the
/// answer's status and first 2 KiB, the time taken, and why it failed.
#[utoipa::path(get, path = "/v2/webhooks/endpoints/{endpoint_id}/events/{event_id}/logs", tag = "webhooks",
    params(("endpoint_id" = String, Path), ("event_id" = String, Path), PageQuery),
    responses((status = 200, body = ListResponse<WebhookEventLog>), (status = "4XX", body = ErrorResponse)))]
pub async fn logs(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((endpoint_id, event_id)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Json<ListResponse<WebhookEventLog>>> {
    caller.require_psp()?;
    let d = state.store.delivery(&endpoint_id, &event_id).await?;
    let d = d.ok_or_else(|| ApiError::not_found("webhook event", &event_id))?;
    let page = super::page_request(q.limit, q.before, q.after)?;
    let page = state.store.list_attempts(d.delivery_seq, &page).await?;
    Ok(Json(ListResponse::from_page(page, WebhookEventLog::from)))
}

/// Sends an event again now: a delivered or failed one gets one more attempt; one still retrying is
/// moved forward.
#[utoipa::path(post, path = "/v2/webhooks/endpoints/{endpoint_id}/events/{event_id}/retry", tag = "webhooks",
    params(("endpoint_id" = String, Path), ("event_id" = String, Path)),
    responses((status = 201, body = RetryWebhookEventResponse), (status = "4XX", body = ErrorResponse)))]
pub async fn retry(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((endpoint_id, event_id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<RetryWebhookEventResponse>)> {
    caller.require_psp()?;
    let retried = webhooks::retry_delivery(&state.store, &caller, &endpoint_id, &event_id).await?;
    Ok((StatusCode::CREATED, Json(RetryWebhookEventResponse { retried })))
}

/// A sample object of the type's data, for test events.
fn sample_data(event_type: &str) -> Value {
    let now_s = ebb_store::now_s();
    let now_ms = crate::now_ms();
    match event_type {
        "payment.order.status.updated" => json!({
            "data_type": "PaymentOrder", "order_id": "O_test", "merchant_id": "M_test", "psp_order_code": "test",
            "fee_amount": "0", "payable_currency": "ETH_USDT", "token_id": "ETH_USDT", "chain_id": "ETH",
            "payable_amount": "10", "exchange_rate": "1", "amount_tolerance": "0",
            "receive_address": "0x0000000000000000000000000000000000000001", "status": "Completed",
            "received_token_amount": "10", "expired_at": now_s + 1800, "created_timestamp": now_s,
            "updated_timestamp": now_s, "transactions": [],
        }),
        t if t.starts_with("payment.transaction.") => json!({
            "data_type": "PaymentTransaction", "transaction_id": "T_test", "wallet_id": "test", "type": "Withdrawal",
            "status": if t.ends_with("failed") { "Failed" } else if t.ends_with("completed") { "Completed" } else { "Broadcasting" },
            "chain_id": "ETH", "token_id": "ETH_USDT",
            "source": { "source_type": "Asset", "wallet_id": "test" },
            "destination": { "destination_type": "Address",
                             "account_output": { "address": "0x0000000000000000000000000000000000000001", "amount": "1" } },
            "initiator_type": "API", "created_timestamp": now_ms, "updated_timestamp": now_ms, "acquiring_type": "Order",
        }),
        _ => json!({
            "data_type": "PaymentRefund", "request_id": "test", "refund_id": "R_test", "token_id": "ETH_USDT",
            "chain_id": "ETH", "amount": "1", "to_address": "0x0000000000000000000000000000000000000001",
            "status": "Completed", "refund_type": "Merchant", "created_timestamp": now_s, "updated_timestamp": now_s,
            "initiator": "test", "transactions": [], "charge_merchant_fee": false, "commission_fee": { "fee_amount": "0" },
        }),
    }
}

/// Why a test event may not set `field` to `value`, if it may not: a test event names no real object.
/// ebb's own ids (merchants, orders, refunds, transactions: a capital letter and 24 hex digits) are
/// refused in any field, and the fields that carry names a merchant chose (`request_id`, order codes)
/// or a chain's (`tx_hash`) cannot be set at all. Made-up ids such as `R_retry` are fine.
fn refused_override(field: &str, value: &Value) -> Option<String> {
    if matches!(field, "request_id" | "psp_order_code" | "merchant_order_code" | "tx_hash" | "transactions") {
        return Some(format!("override_data may not set {field}: a test event names no real object"));
    }
    let looks_like_an_ebb_id = |s: &str| {
        let b = s.as_bytes();
        b.len() == 25 && b[0].is_ascii_uppercase() && b[1..].iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
    };
    match value {
        Value::String(s) if looks_like_an_ebb_id(s) => {
            Some(format!("override_data.{field} looks like a real ebb id ({s}): a test event names no real object"))
        }
        _ => None,
    }
}

/// Raises a test event of a type, with a sample object (fields of `override_data` replace the
/// sample's, except any that would name a real object), to every active endpoint subscribed to the type.
/// The envelope carries `test: true`.
#[utoipa::path(post, path = "/v2/webhooks/events/trigger", tag = "webhooks", request_body = TriggerTestWebhookEventRequest,
    responses((status = 201, body = TriggerTestWebhookEventResponse), (status = "4XX", body = ErrorResponse)))]
pub async fn trigger(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<TriggerTestWebhookEventRequest>,
) -> ApiResult<(StatusCode, Json<TriggerTestWebhookEventResponse>)> {
    caller.require_psp()?;
    check_events(std::slice::from_ref(&req.event_type))?;
    let mut data = sample_data(&req.event_type);
    match req.override_data {
        None | Some(Value::Null) => {}
        Some(Value::Object(fields)) => {
            if let Some(why) = fields.iter().find_map(|(f, v)| refused_override(f, v)) {
                return Err(ApiError::invalid(why));
            }
            data.as_object_mut().expect("an object").extend(fields)
        }
        Some(_) => return Err(ApiError::invalid("override_data must be an object")),
    }
    let data = serde_json::to_string(&data).map_err(|e| ApiError::invalid(e.to_string()))?;
    webhooks::raise_test_event(&state.store, &caller, &req.event_type, data).await?;
    Ok((StatusCode::CREATED, Json(TriggerTestWebhookEventResponse { triggered: true })))
}

#[utoipa::path(get, path = "/v2/webhooks/events/definitions", tag = "webhooks",
    responses((status = 200, body = Vec<WebhookEventDefinition>), (status = "4XX", body = ErrorResponse)))]
pub async fn definitions(Extension(caller): Extension<Caller>) -> ApiResult<Json<Vec<WebhookEventDefinition>>> {
    caller.require_psp()?;
    Ok(Json(
        EVENT_TYPES
            .iter()
            .map(|(t, d)| WebhookEventDefinition { event_type: (*t).to_owned(), description: (*d).to_owned() })
            .collect(),
    ))
}
