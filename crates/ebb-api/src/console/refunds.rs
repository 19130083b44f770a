//! The dashboard, refunds (list, search, a refund's page), the approval queue, and the actions on a
//! refund: approve, reject, cancel, send a webhook delivery again.

use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use ebb_app::operators::Permission;
use ebb_app::{approvals, refunds as refund_cases, webhooks};
use ebb_core::approval::ApprovalStatus;
use ebb_core::{Amount, RefundStatus};
use ebb_store::operators::AuditFilter;
use ebb_store::page::PageRequest;
use ebb_store::refunds::{RefundFilter, RefundRow};
use serde::Deserialize;

use super::i18n::Tr;
use super::views::{amount, html, message_page, query_string, when_ms, when_s, Nav, Pager};
use super::{error_page, given, optional_day, Op};
use crate::AppState;

/// Rows per page of every console list.
pub(super) const PAGE_ROWS: u32 = 50;

/// A refund as a list shows it.
pub(super) struct RefundLine {
    pub(super) refund_id: String,
    pub(super) request_id: String,
    pub(super) merchant_id: String,
    pub(super) amount: String,
    pub(super) status: String,
    pub(super) approval: String,
    pub(super) to_address: String,
    pub(super) created: String,
}

pub(super) fn line(state: &AppState, r: &RefundRow) -> RefundLine {
    RefundLine {
        refund_id: r.refund_id.clone(),
        request_id: r.request_id.clone(),
        merchant_id: r.merchant_id.clone().unwrap_or_else(|| "(PSP)".into()),
        amount: amount(state, &r.token_id, r.amount),
        status: r.status.to_string(),
        approval: r.approval.as_ref().map(|a| a.status.to_string()).unwrap_or_default(),
        to_address: r.to_address.clone(),
        created: when_s(r.created_at),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RefundQuery {
    #[serde(default)]
    pub(super) status: String,
    #[serde(default)]
    pub(super) merchant_id: String,
    #[serde(default)]
    pub(super) token_id: String,
    #[serde(default)]
    pub(super) request_id: String,
    #[serde(default)]
    pub(super) address: String,
    #[serde(default)]
    pub(super) amount: String,
    /// `YYYY-MM-DD`, UTC, inclusive.
    #[serde(default)]
    pub(super) from: String,
    #[serde(default)]
    pub(super) to: String,
    #[serde(default)]
    before: String,
    #[serde(default)]
    after: String,
}

impl RefundQuery {
    pub(super) fn pairs(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("status", &self.status),
            ("merchant_id", &self.merchant_id),
            ("token_id", &self.token_id),
            ("request_id", &self.request_id),
            ("address", &self.address),
            ("amount", &self.amount),
            ("from", &self.from),
            ("to", &self.to),
        ]
    }

    /// The store's filter, or what is wrong with the form.
    pub(super) fn filter(&self, state: &AppState, op: &Op) -> Result<RefundFilter, String> {
        let some = given;
        let statuses = match some(&self.status) {
            Some(s) => vec![RefundStatus::parse(&s).ok_or(format!("{s:?} is not a refund status"))?],
            None => Vec::new(),
        };
        let amount = match (some(&self.amount), some(&self.token_id)) {
            (Some(a), Some(t)) => {
                let token = state.registry.get(&t).ok_or(format!("{t:?} is not a supported token"))?;
                let a =
                    Amount::parse_decimal(&a, token.decimals, token.decimals).map_err(|e| format!("amount: {e}"))?;
                Some(a.base_units().to_string())
            }
            (Some(_), None) => return Err("an amount needs its token".into()),
            _ => None,
        };
        Ok(RefundFilter {
            merchant_id: op.actor.merchant_filter(some(&self.merchant_id)).map_err(|e| e.to_string())?,
            request_id: some(&self.request_id),
            token_id: some(&self.token_id),
            to_address: some(&self.address),
            amount,
            statuses,
            min_created_at: optional_day("from", &self.from)?,
            max_created_at: optional_day("to", &self.to)?.map(|d| d + 86_399),
            ..RefundFilter::default()
        })
    }
}

#[derive(Template)]
#[template(path = "console/refunds.html")]
struct RefundsPage<'a> {
    tr: Tr,
    nav: Option<Nav>,
    q: &'a RefundQuery,
    statuses: Vec<&'static str>,
    tokens: Vec<String>,
    rows: Vec<RefundLine>,
    pager: Pager,
    error: Option<String>,
    export_href: String,
}

pub(super) async fn list(
    State(state): State<AppState>,
    op: Op,
    q: Result<Query<RefundQuery>, QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let filter = q.filter(&state, &op);
    let query = query_string(&q.pairs());
    let page_req = PageRequest {
        limit: PAGE_ROWS,
        before: Some(q.before.clone()).filter(|s| !s.is_empty()),
        after: Some(q.after.clone()).filter(|s| !s.is_empty()),
    };
    let (rows, pager, error) = match filter {
        Ok(f) => match state.store.list_refunds(&f, &page_req).await {
            Ok(page) => {
                let pager = Pager::new("/console/refunds", &query, &page);
                (page.items.iter().map(|r| line(&state, r)).collect(), pager, None)
            }
            Err(e) => return error_page(&state, op.nav(&state, "refunds"), e.into()),
        },
        Err(e) => (Vec::new(), Pager { total: 0, newer: None, older: None }, Some(e)),
    };
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let page = RefundsPage {
        tr: op.tr,
        nav: Some(op.nav(&state, "refunds")),
        q: &q,
        statuses: RefundStatus::ALL.iter().map(|s| s.as_str()).collect(),
        tokens: state.registry.iter().map(|t| t.id.clone()).collect(),
        rows,
        pager,
        error,
        export_href: format!("/console/export/refunds.csv?{query}"),
    };
    html(status, page.render())
}

/// One line of a refund's history: a status change (and what caused it) or an operator's action.
struct TimelineEntry {
    at_ms: i64,
    when: String,
    what: String,
    who: String,
}

struct TxView {
    tx_id: String,
    hash: String,
    url: Option<String>,
    amount: String,
    status: String,
    failed_reason: String,
}

struct DeliveryView {
    endpoint_id: String,
    url: String,
    event_id: String,
    event_type: String,
    status: String,
    attempts: i64,
    next_attempt: String,
    retryable: bool,
}

#[derive(Template)]
#[template(path = "console/refund.html")]
struct RefundPage {
    tr: Tr,
    nav: Option<Nav>,
    r: RefundLine,
    order_id: String,
    token_id: String,
    chain_id: String,
    refund_type: String,
    failed_reason: String,
    hold_reason: String,
    initiator: String,
    updated: String,
    approval: Option<ebb_core::approval::Approval>,
    approvals_done: usize,
    may_decide: bool,
    own_refund: bool,
    may_cancel: bool,
    screening: Option<(String, String, Vec<String>)>,
    transactions: Vec<TxView>,
    timeline: Vec<TimelineEntry>,
    deliveries: Vec<DeliveryView>,
    csrf: String,
}

/// What caused a status change, from the refund's state after it.
fn cause_of(tr: Tr, status: &str, initiator: &str, snapshot: &serde_json::Value) -> String {
    match status {
        "PendingConfirmation" | "AddressPending" | "Pending" if snapshot["approval"].is_null() => initiator.to_owned(),
        "AddressSubmitted" => tr.t("the customer (refund link)").into(),
        "Processing" | "Completed" | "PartiallyCompleted" => tr.t("the payout executor").into(),
        "Failed" => snapshot["failed_reason"].as_str().unwrap_or("").to_owned(),
        _ => initiator.to_owned(),
    }
}

pub(super) async fn show(State(state): State<AppState>, op: Op, Path(refund_id): Path<String>) -> Response {
    let nav = || op.nav(&state, "refunds");
    let r = match refund_cases::get(&state.engine, &op.actor, &refund_id).await {
        Ok(r) => r,
        Err(e) => return error_page(&state, nav(), e),
    };
    let loaded = async {
        let events = state.store.events_of(&r.refund_id).await?;
        let deliveries = match op.actor.merchant {
            None => state.store.deliveries_of(&r.refund_id).await?,
            // Webhook endpoints are the PSP's.
            Some(_) => Vec::new(),
        };
        let audit = state
            .store
            .audit_log(
                &AuditFilter { subject: Some(r.refund_id.clone()), ..AuditFilter::default() },
                &PageRequest { limit: 50, ..PageRequest::default() },
            )
            .await?;
        Ok::<_, ebb_store::StoreError>((events, deliveries, audit.items))
    };
    let (events, deliveries, audit) = match loaded.await {
        Ok(v) => v,
        Err(e) => return error_page(&state, nav(), e.into()),
    };
    let mut timeline = Vec::new();
    let mut last_status = String::new();
    for e in &events {
        let snap: serde_json::Value = serde_json::from_str(&e.snapshot).unwrap_or_default();
        let status = snap["status"].as_str().unwrap_or_default().to_owned();
        let approval = snap["approval"]["status"].as_str().unwrap_or_default();
        let (what, who) = if status != last_status {
            (op.tr.f1("status {0}", &status), cause_of(op.tr, &status, &r.initiator, &snap))
        } else if !approval.is_empty() {
            // The vote that moved it (the last approval, or the rejection), else the policy that took it.
            let a = &snap["approval"];
            let voter = a["rejection"]["approver"]
                .as_str()
                .or_else(|| a["approvals"].as_array().and_then(|v| v.last()).and_then(|v| v["approver"].as_str()));
            let who = match voter {
                Some(v) => v.to_owned(),
                None => op.tr.f1("policy {0}", a["policy_id"].as_str().unwrap_or_default()),
            };
            (op.tr.f1("approval {0}", approval), who)
        } else {
            (e.event_type.clone(), String::new())
        };
        timeline.push(TimelineEntry { at_ms: e.created_at_ms, when: when_ms(e.created_at_ms), what, who });
        last_status = status;
    }
    for a in &audit {
        let what = if a.detail.is_empty() { a.action.clone() } else { format!("{} ({})", a.action, a.detail) };
        timeline.push(TimelineEntry {
            at_ms: a.at_ms,
            when: when_ms(a.at_ms),
            what,
            who: op.tr.f2("{0} from {1}", &a.email, &a.client),
        });
    }
    timeline.sort_by_key(|t| t.at_ms);
    let explorer = state.links.settings.explorers.get(&r.chain_id);
    let transactions = r
        .transactions
        .iter()
        .map(|t| {
            let hash = t.tx_hash.clone().unwrap_or_default();
            TxView {
                tx_id: t.tx_id.clone(),
                url: explorer.filter(|_| !hash.is_empty()).map(|e| format!("{e}{hash}")),
                hash,
                amount: amount(&state, &t.token_id, t.amount),
                status: t.status.to_string(),
                failed_reason: t.failed_reason.clone().unwrap_or_default(),
            }
        })
        .collect();
    let may_support = op.may(Permission::Support);
    let deliveries = deliveries
        .into_iter()
        .map(|d| DeliveryView {
            retryable: may_support && d.status != "Success",
            endpoint_id: d.endpoint_id,
            url: d.url,
            event_id: d.event_id,
            event_type: d.event_type,
            status: d.status,
            attempts: d.attempts,
            next_attempt: when_ms(d.next_attempt_ms),
        })
        .collect();
    let waiting =
        r.status == RefundStatus::Pending && r.approval.as_ref().is_some_and(|a| a.status == ApprovalStatus::Pending);
    let screening = r.screening.as_ref().map(|s| {
        (
            s.verdict.as_str().to_owned(),
            format!("{:?}", s.level),
            s.findings
                .iter()
                .map(|f| {
                    let categories =
                        if f.categories.is_empty() { "nothing found".into() } else { f.categories.join(", ") };
                    format!("{}: {:?}, {categories}", f.provider, f.level)
                })
                .collect::<Vec<_>>(),
        )
    });
    let page = RefundPage {
        tr: op.tr,
        nav: Some(nav()),
        r: line(&state, &r),
        order_id: r.order_id.clone().unwrap_or_default(),
        token_id: r.token_id.clone(),
        chain_id: r.chain_id.clone(),
        refund_type: format!("{:?}", r.refund_type),
        failed_reason: r.failed_reason.clone().unwrap_or_default(),
        hold_reason: r.hold_reason.clone().unwrap_or_default(),
        initiator: r.initiator.clone(),
        updated: when_s(r.updated_at),
        approvals_done: r.approval.as_ref().map(|a| a.approvals.len()).unwrap_or(0),
        approval: r.approval.clone(),
        may_decide: waiting && op.may(Permission::Approve),
        own_refund: r.initiator == op.actor.initiator,
        may_cancel: may_support
            && matches!(
                r.status,
                RefundStatus::PendingConfirmation
                    | RefundStatus::AddressPending
                    | RefundStatus::AddressSubmitted
                    | RefundStatus::Pending
            ),
        screening,
        transactions,
        timeline,
        deliveries,
        csrf: op.csrf.clone(),
    };
    html(StatusCode::OK, page.render())
}

#[derive(Debug, Deserialize)]
pub(super) struct DecisionForm {
    csrf: Option<String>,
    comment: Option<String>,
}

const MAX_COMMENT: usize = 1000;

async fn decide(
    state: AppState,
    op: Op,
    refund_id: String,
    form: Result<Form<DecisionForm>, FormRejection>,
    approve: bool,
) -> Response {
    let Ok(Form(f)) = form else { return op.bad_form(&state) };
    let what = if approve { "approve refunds" } else { "reject refunds" };
    if let Err(refused) = op.check_post(&state, f.csrf.as_deref(), Permission::Approve, what).await {
        return refused;
    }
    let comment = f.comment.map(|c| c.trim().to_owned()).filter(|c| !c.is_empty());
    if comment.as_ref().is_some_and(|c| c.chars().count() > MAX_COMMENT) {
        let text = op.tr.f1("A comment may be at most {0} characters.", MAX_COMMENT);
        return message_page(StatusCode::UNPROCESSABLE_ENTITY, op.nav(&state, ""), op.tr.t("Not done"), &text);
    }
    let done = if approve {
        approvals::approve(&state.engine, &op.actor, &refund_id, comment).await
    } else {
        let Some(reason) = comment else {
            let text = op.tr.t("A rejection needs a comment: it becomes the refund's failure reason.");
            return message_page(StatusCode::UNPROCESSABLE_ENTITY, op.nav(&state, ""), op.tr.t("Not done"), text);
        };
        approvals::reject(&state.engine, &op.actor, &refund_id, reason).await
    };
    match done {
        Ok(_) => Redirect::to(&format!("/console/refunds/{}", urlencode(&refund_id))).into_response(),
        Err(e) => error_page(&state, op.nav(&state, ""), e),
    }
}

pub(super) fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

pub(super) async fn approve(
    State(state): State<AppState>,
    op: Op,
    Path(refund_id): Path<String>,
    form: Result<Form<DecisionForm>, FormRejection>,
) -> Response {
    decide(state, op, refund_id, form, true).await
}

pub(super) async fn reject(
    State(state): State<AppState>,
    op: Op,
    Path(refund_id): Path<String>,
    form: Result<Form<DecisionForm>, FormRejection>,
) -> Response {
    decide(state, op, refund_id, form, false).await
}

pub(super) async fn cancel(
    State(state): State<AppState>,
    op: Op,
    Path(refund_id): Path<String>,
    form: Result<Form<DecisionForm>, FormRejection>,
) -> Response {
    let csrf = form.ok().and_then(|Form(f)| f.csrf);
    if let Err(refused) = op.check_post(&state, csrf.as_deref(), Permission::Support, "cancel refunds").await {
        return refused;
    }
    match refund_cases::cancel(&state.engine, &op.actor, &refund_id).await {
        Ok(_) => Redirect::to(&format!("/console/refunds/{}", urlencode(&refund_id))).into_response(),
        Err(e) => error_page(&state, op.nav(&state, ""), e),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct RetryForm {
    csrf: Option<String>,
    endpoint_id: Option<String>,
    event_id: Option<String>,
    /// Where to go back to.
    refund_id: Option<String>,
}

pub(super) async fn retry_delivery(
    State(state): State<AppState>,
    op: Op,
    form: Result<Form<RetryForm>, FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else { return op.bad_form(&state) };
    let what = "send webhook deliveries again";
    if let Err(refused) = op.check_post(&state, f.csrf.as_deref(), Permission::Support, what).await {
        return refused;
    }
    let (endpoint, event) = (f.endpoint_id.unwrap_or_default(), f.event_id.unwrap_or_default());
    match webhooks::retry_delivery(&state.store, &op.actor, &endpoint, &event).await {
        Ok(true) => match f.refund_id {
            Some(id) => Redirect::to(&format!("/console/refunds/{}", urlencode(&id))).into_response(),
            None => Redirect::to("/console/dashboard").into_response(),
        },
        Ok(false) => message_page(
            StatusCode::NOT_FOUND,
            op.nav(&state, ""),
            op.tr.t("Not done"),
            op.tr.t("There is no such delivery, or it was delivered already."),
        ),
        Err(e) => error_page(&state, op.nav(&state, ""), e),
    }
}

#[derive(Template)]
#[template(path = "console/approvals.html")]
struct ApprovalsPage {
    tr: Tr,
    nav: Option<Nav>,
    rows: Vec<RefundLine>,
    pager: Pager,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct CursorQuery {
    #[serde(default)]
    before: String,
    #[serde(default)]
    after: String,
}

impl CursorQuery {
    pub(super) fn page(&self) -> PageRequest {
        PageRequest {
            limit: PAGE_ROWS,
            before: Some(self.before.clone()).filter(|s| !s.is_empty()),
            after: Some(self.after.clone()).filter(|s| !s.is_empty()),
        }
    }
}

/// Refunds waiting for approval, newest first.
pub(super) async fn approvals(
    State(state): State<AppState>,
    op: Op,
    q: Result<Query<CursorQuery>, QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let nav = || op.nav(&state, "approvals");
    if op.actor.merchant.is_some() {
        return message_page(StatusCode::FORBIDDEN, nav(), op.tr.t("Not allowed"), op.tr.t("Approvals are the PSP's."));
    }
    match approvals::queue(&state.engine, &op.actor, Some(ApprovalStatus::Pending), None, &q.page()).await {
        Ok(page) => {
            let pager = Pager::new("/console/approvals", "", &page);
            let rows = page.items.iter().map(|r| line(&state, r)).collect();
            html(StatusCode::OK, ApprovalsPage { tr: op.tr, nav: Some(nav()), rows, pager }.render())
        }
        Err(e) => error_page(&state, nav(), e),
    }
}
