//! Reconciliation (PSP-wide operators): the ledger against every chain's hot wallet and receiving
//! addresses, and the recorded payouts against the hot wallet's `Transfer` logs
//! (`ebb_app::reconcile`). It asks the nodes, one call per receiving address, so it runs when asked
//! (the page's button), not whenever the page opens; the CSV of its differences runs it again.

use askama::Template;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use ebb_app::operators::{self, Permission};
use ebb_app::reconcile::{self, Report};
use ebb_core::Amount;
use serde::Deserialize;

use super::export::{csv_response, row};
use super::i18n::Tr;
use super::views::{amount, html, when_ms, Nav};
use super::webhooks::psp_only;
use super::{error_page, Op};
use crate::AppState;

/// One token's line, formatted.
struct TokenLine {
    chain_id: String,
    token_id: String,
    custody: String,
    reserved: String,
    held: String,
    hot_wallet: String,
    receiving: String,
    addresses: usize,
    pending: String,
    beyond_ledger: String,
    short: bool,
}

struct ChainLine {
    chain_id: String,
    hot_wallet: String,
    head: String,
    blocks: String,
    payouts_checked: usize,
    transfers_seen: usize,
    error: Option<String>,
}

struct DifferenceLine {
    chain_id: String,
    kind: &'static str,
    subject: String,
    recorded: String,
    on_chain: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "console/reconcile.html")]
struct ReconcilePage {
    tr: Tr,
    nav: Option<Nav>,
    ran: bool,
    at: String,
    chains: Vec<ChainLine>,
    tokens: Vec<TokenLine>,
    differences: Vec<DifferenceLine>,
    ledger_problems: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct RunQuery {
    #[serde(default)]
    run: String,
}

/// A signed amount of base units in the token's decimals and symbol.
fn signed(state: &AppState, token_id: &str, v: i128) -> String {
    let sign = if v < 0 { "-" } else { "" };
    format!("{sign}{}", amount(state, token_id, Amount::from_base_units(v.unsigned_abs())))
}

fn optional(state: &AppState, tr: Tr, token_id: &str, v: Option<u128>) -> String {
    v.map(|v| amount(state, token_id, Amount::from_base_units(v))).unwrap_or_else(|| tr.t("none").into())
}

pub(super) async fn page(
    State(state): State<AppState>,
    op: Op,
    q: Result<Query<RunQuery>, QueryRejection>,
) -> Response {
    if let Some(refused) = psp_only(&state, &op, "reconciliation") {
        return refused;
    }
    let nav = || op.nav(&state, "reconciliation");
    let ran = q.map(|Query(q)| q.run == "1").unwrap_or(false);
    let mut page = ReconcilePage {
        tr: op.tr,
        nav: Some(nav()),
        ran,
        at: String::new(),
        chains: Vec::new(),
        tokens: Vec::new(),
        differences: Vec::new(),
        ledger_problems: Vec::new(),
    };
    if !ran {
        return html(StatusCode::OK, page.render());
    }
    let report = match reconcile::run(&state.store, &state.registry, &state.chains).await {
        Ok(r) => r,
        Err(e) => return error_page(&state, nav(), e.into()),
    };
    let _ = operators::audit(&state.store, op.trail(), "reconcile", "", &summary(&report)).await;
    page.at = when_ms(report.at_ms);
    for c in &report.chains {
        page.chains.push(ChainLine {
            chain_id: c.chain_id.clone(),
            hot_wallet: c.hot_wallet.clone(),
            head: c.head.map(|h| h.to_string()).unwrap_or_else(|| "?".into()),
            blocks: c.blocks.map(|(a, b)| format!("{a}–{b}")).unwrap_or_default(),
            payouts_checked: c.payouts_checked,
            transfers_seen: c.transfers_seen,
            error: c.error.clone(),
        });
        for t in &c.tokens {
            let id = t.token_id.as_str();
            let pending = t.payins_uncredited as i128 - t.payouts_unsettled as i128;
            page.tokens.push(TokenLine {
                chain_id: c.chain_id.clone(),
                token_id: t.token_id.clone(),
                custody: signed(&state, id, t.custody),
                reserved: signed(&state, id, t.reserved),
                held: signed(&state, id, t.held),
                hot_wallet: amount(&state, id, Amount::from_base_units(t.hot_wallet)),
                receiving: amount(&state, id, Amount::from_base_units(t.receiving)),
                addresses: t.addresses,
                pending: signed(&state, id, pending),
                beyond_ledger: signed(&state, id, t.beyond_ledger),
                short: t.beyond_ledger < 0,
            });
        }
    }
    page.differences = report
        .differences()
        .map(|(chain_id, d)| DifferenceLine {
            chain_id: chain_id.to_owned(),
            kind: d.kind.as_str(),
            subject: d.subject.clone(),
            recorded: optional(&state, op.tr, &d.token_id, d.recorded),
            on_chain: optional(&state, op.tr, &d.token_id, d.on_chain),
            detail: d.detail.clone(),
        })
        .collect();
    page.ledger_problems = report.ledger_problems;
    html(StatusCode::OK, page.render())
}

/// What the audit entry of a run says.
fn summary(r: &Report) -> String {
    let failed = r.chains.iter().filter(|c| c.error.is_some()).count();
    format!(
        "{} difference(s), {} ledger problem(s), {failed} chain(s) unanswered",
        r.differences().count(),
        r.ledger_problems.len()
    )
}

/// The differences of a fresh run as CSV (base units, so that a spreadsheet can sum them).
pub(super) async fn csv(State(state): State<AppState>, op: Op) -> Response {
    if let Some(refused) = psp_only(&state, &op, "reconciliation") {
        return refused;
    }
    if let Err(refused) = op.check(&state, Permission::Read, "export the reconciliation").await {
        return refused;
    }
    let report = match reconcile::run(&state.store, &state.registry, &state.chains).await {
        Ok(r) => r,
        Err(e) => return error_page(&state, op.nav(&state, "reconciliation"), e.into()),
    };
    let _ = operators::audit(&state.store, op.trail(), "export.reconciliation", "", &summary(&report)).await;
    let mut body =
        row(&["chain_id", "kind", "token_id", "subject", "recorded_base_units", "on_chain_base_units", "detail"]);
    let units = |v: Option<u128>| v.map(|v| v.to_string()).unwrap_or_default();
    for (chain_id, d) in report.differences() {
        body.push_str(&row(&[
            chain_id,
            d.kind.as_str(),
            &d.token_id,
            &d.subject,
            &units(d.recorded),
            &units(d.on_chain),
            &d.detail,
        ]));
    }
    for c in report.chains.iter().filter(|c| c.error.is_some()) {
        body.push_str(&row(&[&c.chain_id, "node unanswered", "", "", "", "", c.error.as_deref().unwrap_or("")]));
    }
    for p in &report.ledger_problems {
        body.push_str(&row(&["", "ledger", "", "", "", "", p]));
    }
    csv_response("reconciliation.csv", Body::from(body))
}
