//! Webhook endpoints (the PSP's): each with its health, its failed deliveries, and sending them again.

use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use ebb_app::operators::Permission;
use ebb_app::webhooks;
use ebb_store::webhooks::DeliveryFilter;
use serde::Deserialize;

use super::i18n::Tr;
use super::refunds::{urlencode, CursorQuery, PAGE_ROWS};
use super::views::{html, message_page, when_ms, Nav, Pager};
use super::{error_page, Op};
use crate::AppState;

struct EndpointLine {
    endpoint_id: String,
    url: String,
    kind: &'static str,
    status: String,
    failed: i64,
    retrying: i64,
}

#[derive(Template)]
#[template(path = "console/webhooks.html")]
struct WebhooksPage {
    tr: Tr,
    nav: Option<Nav>,
    rows: Vec<EndpointLine>,
    pager: Pager,
}

pub(super) fn psp_only(state: &AppState, op: &Op, current: &'static str) -> Option<Response> {
    op.actor.merchant.as_ref().map(|_| {
        message_page(
            StatusCode::FORBIDDEN,
            op.nav(state, current),
            op.tr.t("Not allowed"),
            op.tr.t("This page is the PSP's."),
        )
    })
}

pub(super) async fn list(
    State(state): State<AppState>,
    op: Op,
    q: Result<Query<CursorQuery>, QueryRejection>,
) -> Response {
    if let Some(refused) = psp_only(&state, &op, "webhooks") {
        return refused;
    }
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let nav = || op.nav(&state, "webhooks");
    let loaded = async {
        let page = state.store.list_endpoints(None, None, true, &q.page()).await?;
        let failing = state.store.failing_endpoints().await?;
        Ok::<_, ebb_store::StoreError>((page, failing))
    };
    let (page, failing) = match loaded.await {
        Ok(v) => v,
        Err(e) => return error_page(&state, nav(), e.into()),
    };
    let pager = Pager::new("/console/webhooks", "", &page);
    let rows = page
        .items
        .into_iter()
        .map(|e| {
            let f = failing.iter().find(|f| f.endpoint_id == e.endpoint_id);
            EndpointLine {
                kind: if e.format == ebb_store::webhooks::BodyFormat::Cobo { "endpoint" } else { "callback URL" },
                failed: f.map(|f| f.failed).unwrap_or(0),
                retrying: f.map(|f| f.retrying).unwrap_or(0),
                endpoint_id: e.endpoint_id,
                url: e.url,
                status: e.status,
            }
        })
        .collect();
    html(StatusCode::OK, WebhooksPage { tr: op.tr, nav: Some(nav()), rows, pager }.render())
}

struct DeliveryLine {
    event_id: String,
    event_type: String,
    subject_id: String,
    attempts: i64,
    created: String,
}

#[derive(Template)]
#[template(path = "console/endpoint.html")]
struct EndpointPage {
    tr: Tr,
    nav: Option<Nav>,
    endpoint_id: String,
    url: String,
    status: String,
    events: String,
    rows: Vec<DeliveryLine>,
    pager: Pager,
    may_retry: bool,
    csrf: String,
    retried: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct EndpointQuery {
    #[serde(default)]
    retried: Option<u64>,
    #[serde(flatten)]
    cursor: CursorQuery,
}

/// An endpoint's failed deliveries, newest first, each with "Send again", and "Send all again".
pub(super) async fn show(
    State(state): State<AppState>,
    op: Op,
    Path(endpoint_id): Path<String>,
    q: Result<Query<EndpointQuery>, QueryRejection>,
) -> Response {
    if let Some(refused) = psp_only(&state, &op, "webhooks") {
        return refused;
    }
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let nav = || op.nav(&state, "webhooks");
    let endpoint = match state.store.endpoint(&endpoint_id).await {
        Ok(Some(e)) => e,
        Ok(None) => {
            return message_page(
                StatusCode::NOT_FOUND,
                nav(),
                op.tr.t("Not found"),
                op.tr.t("No such webhook endpoint."),
            )
        }
        Err(e) => return error_page(&state, nav(), e.into()),
    };
    let filter = DeliveryFilter { status: Some("Failed".into()), event_type: None };
    let mut page_req = q.cursor.page();
    page_req.limit = PAGE_ROWS;
    let page = match state.store.list_deliveries(&endpoint_id, &filter, &page_req).await {
        Ok(p) => p,
        Err(e) => return error_page(&state, nav(), e.into()),
    };
    let pager = Pager::new(&format!("/console/webhooks/{}", urlencode(&endpoint_id)), "", &page);
    let rows = page
        .items
        .into_iter()
        .map(|d| DeliveryLine {
            event_id: d.event_id,
            event_type: d.event_type,
            subject_id: {
                let snap: serde_json::Value = serde_json::from_str(&d.snapshot).unwrap_or_default();
                ["refund_id", "order_id", "transaction_id", "tx_id"]
                    .iter()
                    .find_map(|k| snap[*k].as_str().map(str::to_owned))
                    .unwrap_or_default()
            },
            attempts: d.attempts,
            created: when_ms(d.created_at_ms),
        })
        .collect();
    let page = EndpointPage {
        tr: op.tr,
        nav: Some(nav()),
        endpoint_id: endpoint.endpoint_id,
        url: endpoint.url,
        status: endpoint.status,
        events: endpoint.subscribed_events.join(", "),
        rows,
        pager,
        may_retry: op.may(Permission::Support),
        csrf: op.csrf.clone(),
        retried: q.retried,
    };
    html(StatusCode::OK, page.render())
}

#[derive(Debug, Deserialize)]
pub(super) struct RetryAllForm {
    csrf: Option<String>,
}

/// Sends every failed delivery of an endpoint again.
pub(super) async fn retry_failed(
    State(state): State<AppState>,
    op: Op,
    Path(endpoint_id): Path<String>,
    form: Result<Form<RetryAllForm>, FormRejection>,
) -> Response {
    let csrf = form.ok().and_then(|Form(f)| f.csrf);
    if let Err(refused) =
        op.check_post(&state, csrf.as_deref(), Permission::Support, "send webhook deliveries again").await
    {
        return refused;
    }
    match webhooks::retry_failed_deliveries(&state.store, &op.actor, &endpoint_id, None).await {
        Ok(n) => Redirect::to(&format!("/console/webhooks/{}?retried={n}", urlencode(&endpoint_id))).into_response(),
        Err(e) => error_page(&state, op.nav(&state, "webhooks"), e),
    }
}
