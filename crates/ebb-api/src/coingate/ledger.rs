//! CoinGate's ledger accounts: a merchant's balance of each token ebb pays in, read from ebb's
//! ledger. The id is `{merchant_id}-{token_id}`, the account refunds name as `ledger_account_id`.

use axum::extract::{Path, State};
use axum::http::Uri;
use axum::{Extension, Json};
use ebb_core::ledger::Account;
use ebb_core::Token;
use serde_json::{json, Value};

use super::refunds::{currency_json, ledger_account_id};
use super::{pages, paging, query_map, CgError, CgResult, Merchant};
use crate::AppState;

/// Every token's account of the merchant, in token id order, with its balance.
async fn accounts(state: &AppState, merchant_id: &str) -> CgResult<Vec<Value>> {
    let rows = state
        .store
        .balances(&[Account::Merchant(merchant_id.to_owned())], None)
        .await
        .map_err(|e| CgError::from_api(e.into(), super::Context::Order))?;
    let account = |t: &Token| {
        let balance = rows.iter().find(|b| b.token_id == t.id).map_or(0, |b| b.balance);
        json!({
            "id": ledger_account_id(merchant_id, &t.id),
            "balance": crate::wire::decimal_i128(&state.registry, &t.id, balance),
            "status": "active",
            "currency": currency_json(state, &t.symbol),
            "platform": super::catalog::platform_of(&state.registry, &t.chain_id),
        })
    };
    Ok(state.registry.iter().map(account).collect())
}

fn merchant_of(actor: &ebb_app::Actor) -> &str {
    actor.merchant.as_deref().unwrap_or_default()
}

/// `GET /v2/ledger/accounts` (`page`, `per_page` ≤ 100).
pub(super) async fn list(
    State(state): State<AppState>,
    Extension(Merchant(actor, _)): Extension<Merchant>,
    uri: Uri,
) -> CgResult<Json<Value>> {
    let (page, per_page) = paging(&query_map(&uri)).map_err(|e| CgError::from_api(e, super::Context::Order))?;
    let all = accounts(&state, merchant_of(&actor)).await?;
    let total = all.len() as i64;
    let start = ((page - 1) * per_page).min(total) as usize;
    let shown: Vec<Value> = all.into_iter().skip(start).take(per_page as usize).collect();
    Ok(Json(json!({
        "current_page": page,
        "per_page": per_page,
        "total_accounts": total,
        "total_pages": pages(total, per_page),
        "accounts": shown,
    })))
}

/// `GET /v2/ledger/accounts/{id}`: one of the token's merchant's accounts.
pub(super) async fn get(
    State(state): State<AppState>,
    Extension(Merchant(actor, _)): Extension<Merchant>,
    Path(id): Path<String>,
) -> CgResult<Json<Value>> {
    // Paths are lower-cased on the way in; ids compare without case.
    let found = accounts(&state, merchant_of(&actor))
        .await?
        .into_iter()
        .find(|a| a["id"].as_str().is_some_and(|a| a.eq_ignore_ascii_case(&id)));
    found.map(Json).ok_or_else(|| {
        CgError::new(
            axum::http::StatusCode::NOT_FOUND,
            "LedgerAccountNotFound",
            format!("ledger account {id:?} not found"),
        )
    })
}
