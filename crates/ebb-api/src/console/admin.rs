//! Operators (add, new set-up link, disable) and the audit log: an admin's pages.

use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use ebb_app::operators::{self, Permission};
use ebb_store::operators::{AuditFilter, OperatorRole};
use serde::Deserialize;

use super::i18n::Tr;
use super::refunds::CursorQuery;
use super::views::{html, query_string, when_ms, when_s, Nav, Pager};
use super::{error_page, given, optional_day, Op};
use crate::AppState;

struct OperatorLine {
    operator_id: String,
    email: String,
    role: &'static str,
    merchants: String,
    state: &'static str,
    created: String,
    is_self: bool,
}

#[derive(Template)]
#[template(path = "console/operators.html")]
struct OperatorsPage {
    tr: Tr,
    nav: Option<Nav>,
    rows: Vec<OperatorLine>,
    roles: Vec<&'static str>,
    csrf: String,
    /// A set-up link just made, for whom: shown once.
    made: Option<(String, String)>,
    error: Option<String>,
}

/// The set-up page for a token.
fn setup_url(state: &AppState, token: &str) -> String {
    let base = state.links.settings.public_url.trim_end_matches('/');
    format!("{base}/console/setup?token={token}")
}

async fn operators_page(state: &AppState, op: &Op, made: Option<(String, String)>, error: Option<String>) -> Response {
    let nav = || op.nav(state, "operators");
    let all = match state.store.operators().await {
        Ok(v) => v,
        Err(e) => return error_page(state, nav(), e.into()),
    };
    let rows = all
        .into_iter()
        .map(|o| OperatorLine {
            state: if o.disabled_at.is_some() {
                "disabled"
            } else if o.locked_until.is_some_and(|u| u > crate::now_ms() / 1000) {
                "locked"
            } else if o.password_hash.is_none() {
                "waiting for set-up"
            } else {
                "active"
            },
            is_self: o.operator_id == op.signed.operator.operator_id,
            operator_id: o.operator_id,
            email: o.email,
            role: o.role.as_str(),
            merchants: if o.merchant_ids.is_empty() { "all".into() } else { o.merchant_ids.join(", ") },
            created: when_s(o.created_at),
        })
        .collect();
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let page = OperatorsPage {
        tr: op.tr,
        nav: Some(nav()),
        rows,
        roles: OperatorRole::ALL.iter().map(|r| r.as_str()).collect(),
        csrf: op.csrf.clone(),
        made,
        error,
    };
    html(status, page.render())
}

pub(super) async fn operators(State(state): State<AppState>, op: Op) -> Response {
    if let Err(refused) = op.check(&state, Permission::Administer, "manage operators").await {
        return refused;
    }
    operators_page(&state, &op, None, None).await
}

#[derive(Debug, Deserialize)]
pub(super) struct AddForm {
    csrf: Option<String>,
    email: Option<String>,
    role: Option<String>,
    /// Merchant ids, separated by spaces or commas.
    merchants: Option<String>,
}

pub(super) async fn add_operator(
    State(state): State<AppState>,
    op: Op,
    form: Result<Form<AddForm>, FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else { return op.bad_form(&state) };
    if let Err(refused) = op.check_post(&state, f.csrf.as_deref(), Permission::Administer, "manage operators").await {
        return refused;
    }
    let Some(role) = f.role.as_deref().and_then(OperatorRole::parse) else {
        return operators_page(&state, &op, None, Some(op.tr.t("Choose a role.").into())).await;
    };
    let merchants: Vec<String> =
        f.merchants.unwrap_or_default().split([' ', ',']).filter(|m| !m.is_empty()).map(str::to_owned).collect();
    let email = f.email.unwrap_or_default();
    let by = format!("operator:{}", op.signed.operator.email);
    match operators::add(&state.store, &state.console.settings, &email, role, merchants, &by).await {
        Ok(new) => {
            let url = setup_url(&state, &new.setup_token);
            operators_page(&state, &op, Some((new.operator.email, url)), None).await
        }
        Err(e) => operators_page(&state, &op, None, Some(e.to_string())).await,
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct CsrfForm {
    csrf: Option<String>,
}

pub(super) async fn reset_operator(
    State(state): State<AppState>,
    op: Op,
    Path(operator_id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let csrf = form.ok().and_then(|Form(f)| f.csrf);
    if let Err(refused) = op.check_post(&state, csrf.as_deref(), Permission::Administer, "manage operators").await {
        return refused;
    }
    match operators::reset(&state.store, &state.console.settings, op.actor.audit.as_ref(), &operator_id).await {
        Ok((o, token)) => operators_page(&state, &op, Some((o.email, setup_url(&state, &token))), None).await,
        Err(e) => operators_page(&state, &op, None, Some(e.to_string())).await,
    }
}

pub(super) async fn disable_operator(
    State(state): State<AppState>,
    op: Op,
    Path(operator_id): Path<String>,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let csrf = form.ok().and_then(|Form(f)| f.csrf);
    if let Err(refused) = op.check_post(&state, csrf.as_deref(), Permission::Administer, "manage operators").await {
        return refused;
    }
    match operators::disable(&state.store, op.actor.audit.as_ref(), &operator_id).await {
        Ok(_) => operators_page(&state, &op, None, None).await,
        Err(e) => operators_page(&state, &op, None, Some(e.to_string())).await,
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct AuditQuery {
    #[serde(default)]
    pub(super) email: String,
    #[serde(default)]
    pub(super) action: String,
    #[serde(default)]
    pub(super) subject: String,
    #[serde(default)]
    pub(super) from: String,
    #[serde(default)]
    pub(super) to: String,
    #[serde(flatten)]
    cursor: CursorQuery,
}

impl AuditQuery {
    pub(super) fn filter(&self) -> Result<AuditFilter, String> {
        let some = given;
        let day = |name: &str, s: &str| optional_day(name, s).map(|d| d.map(|d| d * 1000));
        Ok(AuditFilter {
            email: some(&self.email).map(|e| e.to_lowercase()),
            action: some(&self.action),
            subject: some(&self.subject),
            min_at_ms: day("from", &self.from)?,
            max_at_ms: day("to", &self.to)?.map(|d| d + 86_400_000),
        })
    }

    pub(super) fn query(&self) -> String {
        query_string(&[
            ("email", &self.email),
            ("action", &self.action),
            ("subject", &self.subject),
            ("from", &self.from),
            ("to", &self.to),
        ])
    }
}

struct AuditLine {
    when: String,
    email: String,
    action: String,
    subject: String,
    detail: String,
    client: String,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage<'a> {
    tr: Tr,
    nav: Option<Nav>,
    q: &'a AuditQuery,
    rows: Vec<AuditLine>,
    pager: Pager,
    error: Option<String>,
    export_href: String,
}

pub(super) async fn audit(
    State(state): State<AppState>,
    op: Op,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Response {
    if let Err(refused) = op.check(&state, Permission::Administer, "read the audit log").await {
        return refused;
    }
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let nav = || op.nav(&state, "audit");
    let query = q.query();
    let (rows, pager, error) = match q.filter() {
        Ok(f) => match state.store.audit_log(&f, &q.cursor.page()).await {
            Ok(page) => {
                let pager = Pager::new("/console/audit", &query, &page);
                let rows = page
                    .items
                    .into_iter()
                    .map(|a| AuditLine {
                        when: when_ms(a.at_ms),
                        email: a.email,
                        action: a.action,
                        subject: a.subject,
                        detail: a.detail,
                        client: a.client,
                    })
                    .collect();
                (rows, pager, None)
            }
            Err(e) => return error_page(&state, nav(), e.into()),
        },
        Err(e) => (Vec::new(), Pager { total: 0, newer: None, older: None }, Some(e)),
    };
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let export_href = format!("/console/export/audit.csv?{query}");
    html(status, AuditPage { tr: op.tr, nav: Some(nav()), q: &q, rows, pager, error, export_href }.render())
}
