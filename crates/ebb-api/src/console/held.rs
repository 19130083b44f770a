//! Pay-ins that sender screening held, and their dispositions (Cobo's Compliance API, docs/RISK.md):
//! release to the merchant, pay back to an address, or set aside at the chain's quarantine address.
//! Admins and approvers decide; each decision is the API's use case, audited in its own transaction.

use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use ebb_app::dispositions::{self, Payout};
use ebb_app::operators::Permission;
use ebb_app::AppError;
use ebb_core::{Address, Amount};
use serde::Deserialize;

use super::i18n::Tr;
use super::refunds::{urlencode, PAGE_ROWS};
use super::views::{amount, html, when_ms, Nav};
use super::webhooks::psp_only;
use super::{error_page, Op};
use crate::AppState;

struct HeldLine {
    tx_id: String,
    order_id: String,
    amount: String,
    /// The amount as the forms take it: a decimal without the symbol.
    decimal: String,
    from_address: String,
    tx_hash: String,
    screening: String,
    seen: String,
    /// Where an isolation of this pay-in goes, if its chain has a quarantine address.
    quarantine: Option<String>,
}

#[derive(Template)]
#[template(path = "console/held.html")]
struct HeldPage {
    tr: Tr,
    nav: Option<Nav>,
    rows: Vec<HeldLine>,
    may_decide: bool,
    csrf: String,
}

/// Pay-ins screening froze, oldest first, with the three dispositions for those who may decide.
pub(super) async fn held(State(state): State<AppState>, op: Op) -> Response {
    if let Some(refused) = psp_only(&state, &op, "held") {
        return refused;
    }
    let nav = || op.nav(&state, "held");
    let list = match state.store.frozen_payin_list(PAGE_ROWS as i64).await {
        Ok(l) => l,
        Err(e) => return error_page(&state, nav(), e.into()),
    };
    let rows = list
        .into_iter()
        .map(|t| HeldLine {
            amount: amount(&state, &t.token_id, t.amount),
            decimal: crate::wire::decimal(&state.registry, &t.token_id, t.amount),
            order_id: t.order_id.clone().unwrap_or_default(),
            from_address: t.from_address.clone(),
            tx_hash: t.tx_hash.clone().unwrap_or_default(),
            screening: t
                .screening
                .as_ref()
                .map(|s| format!("{} (risk {:?})", s.verdict.as_str(), s.level))
                .unwrap_or_default(),
            seen: when_ms(t.created_at_ms),
            quarantine: state.engine.quarantine(&t.chain_id).map(str::to_owned),
            tx_id: t.tx_id,
        })
        .collect();
    let page =
        HeldPage { tr: op.tr, nav: Some(nav()), rows, may_decide: op.may(Permission::Approve), csrf: op.csrf.clone() };
    html(StatusCode::OK, page.render())
}

#[derive(Debug, Deserialize)]
pub(super) struct DecisionForm {
    csrf: Option<String>,
    amount: Option<String>,
    address: Option<String>,
}

/// Releases a held pay-in: credited to its order's merchant as if screening had passed it (Cobo's
/// `unfreeze` disposition).
pub(super) async fn unfreeze(
    State(state): State<AppState>,
    op: Op,
    Path(tx_id): Path<String>,
    form: Result<Form<DecisionForm>, FormRejection>,
) -> Response {
    let csrf = form.ok().and_then(|Form(f)| f.csrf);
    if let Err(refused) = op.check_post(&state, csrf.as_deref(), Permission::Approve, "release held pay-ins").await {
        return refused;
    }
    match dispositions::unfreeze(&state.engine, &op.actor, &tx_id).await {
        Ok(_) => Redirect::to("/console/held").into_response(),
        Err(e) => error_page(&state, op.nav(&state, "held"), e),
    }
}

/// Pays a held pay-in back to an address (screened: a sanctioned one is refused).
pub(super) async fn refund(
    state: State<AppState>,
    op: Op,
    tx_id: Path<String>,
    form: Result<Form<DecisionForm>, FormRejection>,
) -> Response {
    pay_out(state, op, tx_id, form, Payout::Refund).await
}

/// Sends a held pay-in to its chain's quarantine address.
pub(super) async fn isolate(
    state: State<AppState>,
    op: Op,
    tx_id: Path<String>,
    form: Result<Form<DecisionForm>, FormRejection>,
) -> Response {
    pay_out(state, op, tx_id, form, Payout::Isolate).await
}

async fn pay_out(
    State(state): State<AppState>,
    op: Op,
    Path(tx_id): Path<String>,
    form: Result<Form<DecisionForm>, FormRejection>,
    kind: Payout,
) -> Response {
    let Ok(Form(f)) = form else { return op.bad_form(&state) };
    let what = match kind {
        Payout::Refund => "refund held pay-ins",
        Payout::Isolate => "isolate held pay-ins",
    };
    if let Err(refused) = op.check_post(&state, f.csrf.as_deref(), Permission::Approve, what).await {
        return refused;
    }
    let made = dispositions::pay_out(
        &state.engine,
        &op.actor,
        &tx_id,
        kind,
        |token| {
            Amount::parse_positive(f.amount.as_deref().unwrap_or_default().trim(), token.decimals, token.decimals)
                .map_err(|e| AppError::Invalid(format!("amount: {e}")))
        },
        |token| {
            let address = match kind {
                Payout::Refund => f.address.as_deref().unwrap_or_default().trim(),
                Payout::Isolate => state.engine.quarantine(&token.chain_id).ok_or_else(|| {
                    AppError::InvalidState(format!("chain {} has no quarantine address", token.chain_id))
                })?,
            };
            Address::parse(token.family, address).map_err(|e| AppError::Invalid(format!("address: {e}")))
        },
    )
    .await;
    match made {
        Ok(r) => Redirect::to(&format!("/console/refunds/{}", urlencode(&r.refund_id))).into_response(),
        Err(e) => error_page(&state, op.nav(&state, "held"), e),
    }
}
