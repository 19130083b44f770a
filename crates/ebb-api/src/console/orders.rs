//! Orders: the list, an order's page with its refunds, and the customer-service flow of the seeds: a
//! support agent makes a refund link for the customer from the order (e-mailed where ebb has mail).

use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use ebb_app::links::{self, LinkRequest, RefundedPayment};
use ebb_app::operators::Permission;
use ebb_app::orders as order_cases;
use ebb_app::refunds::{self as refund_cases, RefundRequest};
use ebb_core::refund::RequestId;
use ebb_core::{Address, Amount, OrderStatus, RefundSource};
use ebb_store::links::LinkDisplay;
use ebb_store::orders::OrderFilter;
use ebb_store::page::PageRequest;
use ebb_store::refunds::RefundFilter;
use serde::Deserialize;

use super::i18n::Tr;
use super::refunds::{line, RefundLine, PAGE_ROWS};
use super::views::{amount, html, query_string, when_s, Nav, Pager};
use super::{error_page, Op};
use crate::AppState;

struct OrderLine {
    order_id: String,
    merchant_id: String,
    psp_order_code: String,
    amount: String,
    received: String,
    refunded: String,
    status: String,
    created: String,
}

fn order_line(state: &AppState, o: &ebb_store::orders::OrderRow) -> OrderLine {
    OrderLine {
        order_id: o.order_id.clone(),
        merchant_id: o.merchant_id.clone(),
        psp_order_code: o.psp_order_code.clone(),
        amount: amount(state, &o.token_id, o.payable_amount),
        received: amount(state, &o.token_id, o.received_amount),
        refunded: amount(state, &o.token_id, o.refunded_amount),
        status: o.effective_status(crate::now_ms() / 1000).to_string(),
        created: when_s(o.created_at),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct OrderQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    merchant_id: String,
    #[serde(default)]
    psp_order_code: String,
    #[serde(default)]
    before: String,
    #[serde(default)]
    after: String,
}

#[derive(Template)]
#[template(path = "console/orders.html")]
struct OrdersPage<'a> {
    tr: Tr,
    nav: Option<Nav>,
    q: &'a OrderQuery,
    statuses: Vec<&'static str>,
    rows: Vec<OrderLine>,
    pager: Pager,
    error: Option<String>,
}

pub(super) async fn list(
    State(state): State<AppState>,
    op: Op,
    q: Result<Query<OrderQuery>, QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let nav = || op.nav(&state, "orders");
    let some = super::given;
    let statuses = match some(&q.status) {
        Some(s) => match OrderStatus::parse(&s) {
            Some(st) => vec![st],
            None => {
                let page = OrdersPage {
                    tr: op.tr,
                    nav: Some(nav()),
                    q: &q,
                    statuses: OrderStatus::ALL.iter().map(|s| s.as_str()).collect(),
                    rows: Vec::new(),
                    pager: Pager { total: 0, newer: None, older: None },
                    error: Some(format!("{s:?} is not an order status")),
                };
                return html(StatusCode::UNPROCESSABLE_ENTITY, page.render());
            }
        },
        None => Vec::new(),
    };
    let filter = OrderFilter { merchant_id: some(&q.merchant_id), psp_order_code: some(&q.psp_order_code), statuses };
    let page_req = PageRequest { limit: PAGE_ROWS, before: some(&q.before), after: some(&q.after) };
    match order_cases::list(&state.engine, &op.actor, filter, &page_req).await {
        Ok(page) => {
            let query = query_string(&[
                ("status", &q.status),
                ("merchant_id", &q.merchant_id),
                ("psp_order_code", &q.psp_order_code),
            ]);
            let pager = Pager::new("/console/orders", &query, &page);
            let rows = page.items.iter().map(|o| order_line(&state, o)).collect();
            let page = OrdersPage {
                tr: op.tr,
                nav: Some(nav()),
                q: &q,
                statuses: OrderStatus::ALL.iter().map(|s| s.as_str()).collect(),
                rows,
                pager,
                error: None,
            };
            html(StatusCode::OK, page.render())
        }
        Err(e) => error_page(&state, nav(), e),
    }
}

#[derive(Template)]
#[template(path = "console/order.html")]
struct OrderPage {
    tr: Tr,
    nav: Option<Nav>,
    o: OrderLine,
    symbol: String,
    receive_address: String,
    payer: String,
    refundable: String,
    refunds: Vec<RefundLine>,
    may_link: bool,
    mail: bool,
    csrf: String,
    /// Each form carries a fresh request id: submitting it twice (a double click, a reload) makes one
    /// refund, as the API's idempotency makes one.
    link_request_id: String,
    refund_request_id: String,
    /// A link just made: its URL, shown once.
    made: Option<String>,
    error: Option<String>,
}

async fn order_page(
    state: &AppState,
    op: &Op,
    order_id: &str,
    made: Option<String>,
    error: Option<String>,
) -> Response {
    let nav = || op.nav(state, "orders");
    let o = match order_cases::get(&state.engine, &op.actor, order_id).await {
        Ok(o) => o,
        Err(e) => return error_page(state, nav(), e),
    };
    let refunds = state
        .store
        .list_refunds(
            &RefundFilter { order_id: Some(o.order_id.clone()), ..RefundFilter::default() },
            &PageRequest { limit: PAGE_ROWS, ..PageRequest::default() },
        )
        .await;
    let refunds = match refunds {
        Ok(p) => p.items.iter().map(|r| line(state, r)).collect(),
        Err(e) => return error_page(state, nav(), e.into()),
    };
    let payer = o.transactions.iter().find_map(|t| Some(t.from_address.clone()).filter(|a| !a.is_empty()));
    let mail = match state.engine.customer_mail_of(&o.merchant_id).await {
        Ok(m) => m.is_some(),
        Err(e) => return error_page(state, nav(), e),
    };
    let page = OrderPage {
        tr: op.tr,
        nav: Some(nav()),
        symbol: state.registry.get(&o.token_id).map(|t| t.symbol.clone()).unwrap_or_default(),
        receive_address: o.receive_address.clone(),
        payer: payer.unwrap_or_default(),
        refundable: amount(state, &o.token_id, o.received_amount.saturating_sub(o.refunded_amount)),
        o: order_line(state, &o),
        refunds,
        may_link: op.may(Permission::Support) && !o.received_amount.is_zero(),
        mail,
        csrf: op.csrf.clone(),
        link_request_id: ebb_store::ids::new_id("console-link-"),
        refund_request_id: ebb_store::ids::new_id("console-refund-"),
        made,
        error: error.clone(),
    };
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    html(status, page.render())
}

pub(super) async fn show(State(state): State<AppState>, op: Op, Path(order_id): Path<String>) -> Response {
    order_page(&state, &op, &order_id, None, None).await
}

#[derive(Debug, Deserialize)]
pub(super) struct LinkForm {
    csrf: Option<String>,
    request_id: Option<String>,
    amount: Option<String>,
    email: Option<String>,
}

fn request_id_of(field: Option<&str>) -> Result<Option<RequestId>, String> {
    match field.map(str::trim).filter(|s| !s.is_empty()) {
        Some(r) => RequestId::parse(r).map(Some).map_err(|e| format!("request id: {e}")),
        None => Ok(None),
    }
}

/// Makes a refund link for the order's payer, funded by the merchant; with an e-mail address, ebb
/// mails it (the merchant must e-mail its customers).
pub(super) async fn create_link(
    State(state): State<AppState>,
    op: Op,
    Path(order_id): Path<String>,
    form: Result<Form<LinkForm>, FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else { return op.bad_form(&state) };
    if let Err(refused) = op.check_post(&state, f.csrf.as_deref(), Permission::Support, "create refund links").await {
        return refused;
    }
    let payment = match links::find_payment(&state.engine, &op.actor, RefundedPayment::Order(order_id.clone())).await {
        Ok(p) => p,
        Err(e) => return order_page(&state, &op, &order_id, None, Some(e.to_string())).await,
    };
    let decimals = payment.token.decimals;
    let amount = match Amount::parse_positive(f.amount.as_deref().unwrap_or_default().trim(), decimals, decimals) {
        Ok(a) => a,
        Err(e) => return order_page(&state, &op, &order_id, None, Some(format!("amount: {e}"))).await,
    };
    let email = f.email.map(|e| e.trim().to_owned()).filter(|e| !e.is_empty());
    let order = match order_cases::get(&state.engine, &op.actor, &order_id).await {
        Ok(o) => o,
        Err(e) => return error_page(&state, op.nav(&state, ""), e),
    };
    let name = state.store.merchant(&order.merchant_id).await.ok().flatten().map(|m| m.name);
    let request_id = match request_id_of(f.request_id.as_deref()) {
        Ok(r) => r,
        Err(e) => return order_page(&state, &op, &order_id, None, Some(e)).await,
    };
    let req = LinkRequest {
        request_id,
        payment,
        amount,
        source: RefundSource::Merchant,
        merchant_id: Some(order.merchant_id.clone()),
        merchant_fee: None,
        display: LinkDisplay { developer_name: name, logo_url: None, return_url: None },
        customer_email: email,
    };
    match links::create(&state.engine, &op.actor, req).await {
        Ok(created) => {
            let url = format!("{}?token={}", state.links.page_url(), created.token.as_str());
            order_page(&state, &op, &order_id, Some(url), None).await
        }
        Err(e) => order_page(&state, &op, &order_id, None, Some(e.to_string())).await,
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct RefundForm {
    csrf: Option<String>,
    request_id: Option<String>,
    amount: Option<String>,
    address: Option<String>,
}

/// Refunds part of the order to an address the support agent has (from the customer), funded by the
/// merchant; the refund is screened and held for approval as any other.
pub(super) async fn create_refund(
    State(state): State<AppState>,
    op: Op,
    Path(order_id): Path<String>,
    form: Result<Form<RefundForm>, FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else { return op.bad_form(&state) };
    if let Err(refused) = op.check_post(&state, f.csrf.as_deref(), Permission::Support, "create refunds").await {
        return refused;
    }
    let order = match order_cases::get(&state.engine, &op.actor, &order_id).await {
        Ok(o) => o,
        Err(e) => return error_page(&state, op.nav(&state, "orders"), e),
    };
    let again = |e: String| async { order_page(&state, &op, &order_id, None, Some(e)).await };
    let Some(token) = state.registry.get(&order.token_id).cloned() else {
        return again(format!("the order's token {} is no longer supported", order.token_id)).await;
    };
    let request_id = match request_id_of(f.request_id.as_deref()) {
        Ok(Some(r)) => r,
        Ok(None) => return again("the form has no request id; open the order again".into()).await,
        Err(e) => return again(e).await,
    };
    let amount =
        match Amount::parse_positive(f.amount.as_deref().unwrap_or_default().trim(), token.decimals, token.decimals) {
            Ok(a) => a,
            Err(e) => return again(format!("amount: {e}")).await,
        };
    let address = match Address::parse(token.family, f.address.as_deref().unwrap_or_default().trim()) {
        Ok(a) => a,
        Err(e) => return again(format!("address: {e}")).await,
    };
    let req = RefundRequest {
        request_id,
        merchant_id: Some(order.merchant_id.clone()),
        order_id: Some(order.order_id.clone()),
        token,
        amount,
        price: None,
        to_address: Some(address),
        source: RefundSource::Merchant,
        merchant_fee: None,
    };
    match refund_cases::create(&state.engine, &op.actor, req).await {
        Ok(created) => {
            let r = created.into_inner();
            Redirect::to(&format!("/console/refunds/{}", super::refunds::urlencode(&r.refund_id))).into_response()
        }
        Err(e) => again(e.to_string()).await,
    }
}
