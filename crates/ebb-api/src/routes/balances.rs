use axum::extract::State;
use axum::{Extension, Json};
use ebb_core::ledger::Account;
use ebb_store::balances::BalanceChangeFilter;
use ebb_store::BalanceRow;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorResponse};
use crate::extract::ApiQuery;
use crate::wire::{decimal_i128, BalanceChange, ListResponse, MerchantBalance, MerchantBalanceList, PspBalance};
use crate::{validate, AppState};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MerchantBalancesQuery {
    /// Comma-separated merchant ids. At least one of `merchant_ids` and `token_id` is required.
    pub merchant_ids: Option<String>,
    pub token_id: Option<String>,
}

#[utoipa::path(get, path = "/v2/payments/balance/merchants", tag = "balances", params(MerchantBalancesQuery),
    responses((status = 200, body = MerchantBalanceList), (status = "4XX", body = ErrorResponse)))]
pub async fn merchants(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<MerchantBalancesQuery>,
) -> ApiResult<Json<MerchantBalanceList>> {
    let token_id = q.token_id.filter(|t| !t.is_empty());
    if let Some(t) = &token_id {
        validate::token(&state.registry, "token_id", t)?;
    }
    let mut ids: Vec<String> =
        validate::list_of("merchant_ids", q.merchant_ids.as_deref(), |s| (!s.is_empty()).then(|| s.to_owned()))?;
    if ids.is_empty() && token_id.is_none() {
        return Err(ApiError::invalid("give merchant_ids, token_id or both"));
    }
    for id in &ids {
        caller.check_merchant(id)?;
    }
    if ids.is_empty() {
        ids = match &caller.merchant {
            Some(m) => vec![m.clone()],
            None => Vec::new(),
        };
    }
    let rows = if ids.is_empty() {
        // Every merchant's balance of one token.
        let all = state.store.all_balances().await?;
        all.into_iter()
            .filter(|b| b.account.starts_with("merchant:") && Some(&b.token_id) == token_id.as_ref())
            .collect()
    } else {
        let accounts: Vec<Account> = ids.iter().cloned().map(Account::Merchant).collect();
        let mut rows = state.store.balances(&accounts, token_id.as_deref()).await?;
        // A merchant with no activity in the asked token still gets a (zero) line.
        if let Some(t) = &token_id {
            for id in &ids {
                let key = Account::Merchant(id.clone()).key();
                if !rows.iter().any(|b| b.account == key) {
                    rows.push(BalanceRow { account: key, token_id: t.clone(), ..Default::default() });
                }
            }
        }
        rows
    };
    let reg = &state.registry;
    let data = rows
        .into_iter()
        .map(|b| {
            let d = |v| decimal_i128(reg, &b.token_id, v);
            MerchantBalance {
                merchant_id: b.account.trim_start_matches("merchant:").to_owned(),
                total_received_amount: d(b.received),
                settled_amount: "0".into(),
                refunded_amount: d(b.refunded),
                total_balance: d(b.balance),
                available_balance: d(b.balance),
                locked_balance: "0".into(),
                token_id: b.token_id,
            }
        })
        .collect();
    Ok(Json(MerchantBalanceList { data }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PspBalanceQuery {
    pub token_id: String,
}

#[utoipa::path(get, path = "/v2/payments/balance/psp", tag = "balances", params(PspBalanceQuery),
    responses((status = 200, body = PspBalance), (status = "4XX", body = ErrorResponse)))]
pub async fn psp(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<PspBalanceQuery>,
) -> ApiResult<Json<PspBalance>> {
    caller.require_psp()?;
    validate::token(&state.registry, "token_id", &q.token_id)?;
    let rows = state.store.balances(&[Account::Psp], Some(&q.token_id)).await?;
    let b = rows.into_iter().next().unwrap_or_default();
    let d = |v| decimal_i128(&state.registry, &q.token_id, v);
    Ok(Json(PspBalance {
        developer_fee_amount: d(b.developer_fee),
        settled_amount: "0".into(),
        refunded_amount: d(b.refunded),
        total_balance: d(b.balance),
        available_balance: d(b.balance),
        locked_balance: "0".into(),
        token_id: q.token_id,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesQuery {
    /// A merchant id, or `developer` for the PSP's balance.
    pub source_account: String,
    pub limit: Option<i64>,
    pub before: Option<String>,
    pub after: Option<String>,
    pub token_id: Option<String>,
    /// `in` or `out`.
    pub flow_direction: Option<String>,
    pub min_created_timestamp: Option<i64>,
    pub max_created_timestamp: Option<i64>,
    /// One of Cobo's source types (`OrderIn`, `LatePayment`, `UnexceptedIn`, `RefundOut`, … ).
    pub source_type: Option<String>,
    /// Needs `source_type`.
    pub source_id: Option<String>,
}

#[utoipa::path(get, path = "/v2/payments/balance_changes", tag = "balances", params(ChangesQuery),
    responses((status = 200, body = ListResponse<BalanceChange>), (status = "4XX", body = ErrorResponse)))]
pub async fn changes(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(q): ApiQuery<ChangesQuery>,
) -> ApiResult<Json<ListResponse<BalanceChange>>> {
    let page = super::page_request(q.limit, q.before, q.after)?;
    let account = match q.source_account.as_str() {
        "" => return Err(ApiError::invalid("source_account is required: a merchant id or \"developer\"")),
        "developer" => {
            caller.require_psp()?;
            Account::Psp
        }
        m => {
            caller.check_merchant(m)?;
            Account::Merchant(m.to_owned())
        }
    };
    let inflow = match q.flow_direction.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some("in") => Some(true),
        Some("out") => Some(false),
        Some(other) => return Err(ApiError::invalid(format!("flow_direction must be in or out, not {other:?}"))),
    };
    let source_id = q.source_id.filter(|s| !s.is_empty());
    let source_type = q.source_type.filter(|s| !s.is_empty());
    if source_id.is_some() && source_type.is_none() {
        return Err(ApiError::invalid("source_id needs source_type"));
    }
    if let Some(t) = source_type.as_deref().filter(|t| !ebb_store::COBO_SOURCE_TYPES.contains(t)) {
        return Err(ApiError::invalid(format!(
            "source_type must be one of {}, not {t:?}",
            ebb_store::COBO_SOURCE_TYPES.join(", ")
        )));
    }
    let filter = BalanceChangeFilter {
        token_id: q.token_id.filter(|s| !s.is_empty()),
        inflow,
        source_type,
        source_id,
        min_created_at: q.min_created_timestamp,
        max_created_at: q.max_created_timestamp,
    };
    let page = state.store.balance_changes(&account, &filter, &page).await?;
    let reg = &state.registry;
    Ok(Json(ListResponse::from_page(page, |c| {
        let before = c.balance_after - c.delta;
        BalanceChange {
            amount: decimal_i128(reg, &c.token_id, c.delta.abs()),
            amount_raw: c.delta.unsigned_abs().to_string(),
            balance_before: decimal_i128(reg, &c.token_id, before),
            balance_before_raw: before.to_string(),
            balance_after: decimal_i128(reg, &c.token_id, c.balance_after),
            balance_after_raw: c.balance_after.to_string(),
            flow_direction: if c.delta >= 0 { "in" } else { "out" }.into(),
            created_timestamp: c.created_at,
            source_id: c.source_id,
            source_type: c.source_type.cobo().to_owned(),
            reason: c.source_type.as_str().to_owned(),
            token_id: c.token_id,
        }
    })))
}
