//! Merchants and their balances: the list, and a merchant's page with each token's balance, a chart of
//! it over the last 30 days, the daily refund volume, and the ledger exports.

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use ebb_app::merchants as merchant_cases;
use ebb_core::ledger::Account;
use serde::Deserialize;

use super::chart;
use super::i18n::Tr;
use super::refunds::{CursorQuery, PAGE_ROWS};
use super::views::{html, query_string, when_s, Nav, Pager};
use super::{error_page, Op};
use crate::AppState;

/// The period the charts show.
pub(super) const CHART_DAYS: i64 = 30;
/// The most postings one balance chart draws (the newest).
const CHART_POINTS: i64 = 2000;

struct MerchantLine {
    merchant_id: String,
    name: String,
    created: String,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct MerchantQuery {
    #[serde(default)]
    keyword: String,
    #[serde(flatten)]
    cursor: CursorQuery,
}

#[derive(Template)]
#[template(path = "console/merchants.html")]
struct MerchantsPage<'a> {
    tr: Tr,
    nav: Option<Nav>,
    keyword: &'a str,
    rows: Vec<MerchantLine>,
    pager: Pager,
}

pub(super) async fn list(
    State(state): State<AppState>,
    op: Op,
    q: Result<Query<MerchantQuery>, QueryRejection>,
) -> Response {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let nav = || op.nav(&state, "merchants");
    let mut page_req = q.cursor.page();
    page_req.limit = PAGE_ROWS;
    let keyword = Some(q.keyword.trim()).filter(|k| !k.is_empty());
    match merchant_cases::list(&state.store, &op.actor, keyword, &page_req).await {
        Ok(page) => {
            let pager = Pager::new("/console/merchants", &query_string(&[("keyword", &q.keyword)]), &page);
            let rows = page
                .items
                .into_iter()
                .map(|m| MerchantLine { merchant_id: m.merchant_id, name: m.name, created: when_s(m.created_at) })
                .collect();
            html(
                StatusCode::OK,
                MerchantsPage { tr: op.tr, nav: Some(nav()), keyword: &q.keyword, rows, pager }.render(),
            )
        }
        Err(e) => error_page(&state, nav(), e),
    }
}

struct BalanceView {
    token_id: String,
    balance: String,
    received: String,
    refunded: String,
    /// Inline SVG, made of numbers and escaped labels only.
    chart: String,
}

struct VolumeView {
    token_id: String,
    total: String,
    count: i64,
    chart: String,
}

#[derive(Template)]
#[template(path = "console/merchant.html")]
struct MerchantPage {
    tr: Tr,
    nav: Option<Nav>,
    merchant_id: String,
    name: String,
    fee_rate: String,
    created: String,
    balances: Vec<BalanceView>,
    volumes: Vec<VolumeView>,
    days: i64,
}

fn decimal_i128(state: &AppState, token_id: &str, v: i128) -> String {
    crate::wire::decimal_i128(&state.registry, token_id, v)
}

pub(super) async fn show(State(state): State<AppState>, op: Op, Path(merchant_id): Path<String>) -> Response {
    let nav = || op.nav(&state, "merchants");
    let m = match merchant_cases::get(&state.store, &op.actor, &merchant_id).await {
        Ok(m) => m,
        Err(e) => return error_page(&state, nav(), e),
    };
    let now_s = crate::now_ms() / 1000;
    let since = now_s - CHART_DAYS * 86_400;
    let account = Account::Merchant(m.merchant_id.clone());
    let loaded = async {
        let rows = state.store.balances(std::slice::from_ref(&account), None).await?;
        let mut balances = Vec::new();
        for b in rows {
            let (start, points) = state.store.balance_points(&b.account, &b.token_id, since, CHART_POINTS).await?;
            let symbol = state.registry.get(&b.token_id).map(|t| t.symbol.clone()).unwrap_or_default();
            let chart = chart::balance_steps(
                &op.tr.f2("{0} balance, last {1} days", &b.token_id, CHART_DAYS),
                since,
                now_s,
                start,
                &points,
                |v| format!("{} {symbol}", decimal_i128(&state, &b.token_id, v)),
            );
            balances.push(BalanceView {
                balance: decimal_i128(&state, &b.token_id, b.balance),
                received: decimal_i128(&state, &b.token_id, b.received),
                refunded: decimal_i128(&state, &b.token_id, b.refunded),
                token_id: b.token_id,
                chart,
            });
        }
        let daily = state.store.daily_refund_volume(since, Some(&m.merchant_id)).await?;
        Ok::<_, ebb_store::StoreError>((balances, daily))
    };
    let (balances, daily) = match loaded.await {
        Ok(v) => v,
        Err(e) => return error_page(&state, nav(), e.into()),
    };
    let first_day = since.div_euclid(86_400) + 1;
    let mut tokens: Vec<&str> = daily.iter().map(|d| d.token_id.as_str()).collect();
    tokens.sort_unstable();
    tokens.dedup();
    let volumes = tokens
        .into_iter()
        .map(|token| {
            let mut per_day = vec![0u128; CHART_DAYS as usize];
            let mut count = 0;
            for d in daily.iter().filter(|d| d.token_id == token) {
                if let Some(slot) = per_day.get_mut((d.day - first_day).max(0) as usize) {
                    *slot = slot.saturating_add(d.amount);
                }
                count += d.count;
            }
            let total = per_day.iter().fold(0u128, |a, v| a.saturating_add(*v));
            let fmt = |v: u128| crate::wire::decimal(&state.registry, token, ebb_core::Amount::from_base_units(v));
            VolumeView {
                token_id: token.to_owned(),
                total: fmt(total),
                count,
                chart: chart::daily_bars(&op.tr.f1("{0} refunded per day", token), &per_day, fmt),
            }
        })
        .collect();
    let page = MerchantPage {
        tr: op.tr,
        nav: Some(nav()),
        merchant_id: m.merchant_id,
        name: m.name,
        fee_rate: m.developer_fee_rate,
        created: when_s(m.created_at),
        balances,
        volumes,
        days: CHART_DAYS,
    };
    html(StatusCode::OK, page.render())
}
