//! CoinGate's public endpoints (no token): ping, currencies, platforms, a merchant rate; and the token
//! check.

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ebb_core::rate::{fiat_decimals, Rounding};
use serde_json::json;

use super::{catalog, iso, query_map, CgError, CgResult, Context};
use crate::error::ApiError;
use crate::AppState;

pub(super) async fn ping() -> Json<serde_json::Value> {
    Json(json!({"ping": "pong", "time": iso(ebb_core::clock::now_s())}))
}

/// Answers when the token is good (the authentication layer refused it otherwise).
pub(super) async fn auth_test() -> Json<bool> {
    Json(true)
}

/// `?kind=crypto|fiat` filters; the other filters of CoinGate's call are accepted and ignored (every
/// currency ebb lists is enabled for paying and receiving).
pub(super) async fn currencies(State(state): State<AppState>, uri: Uri) -> Json<Vec<catalog::Currency>> {
    let q = query_map(&uri);
    let kind = q.get("kind").map(|k| k.to_ascii_lowercase());
    Json(
        catalog::currencies(&state.registry)
            .into_iter()
            .filter(|c| kind.as_deref().is_none_or(|k| k == c.kind))
            .collect(),
    )
}

/// `GET /v2/refunds/supported-currencies`: what a refund may be paid in, with the platforms of each
/// (`currency_id` and `platform_id` of a refund). ebb refunds an order in the token it was paid in, so
/// these are every token symbol ebb has, on every chain it has it on.
pub(super) async fn refund_currencies(State(state): State<AppState>) -> Json<serde_json::Value> {
    let crypto: Vec<catalog::Currency> =
        catalog::currencies(&state.registry).into_iter().filter(|c| c.kind == "crypto").collect();
    Json(json!({ "currencies": crypto }))
}

pub(super) async fn platforms(State(state): State<AppState>) -> Json<Vec<catalog::Platform>> {
    Json(catalog::platforms(&state.registry).into_iter().map(|(_, p)| p).collect())
}

/// How many `to` one `from` buys, as a bare decimal: a token in a fiat currency is the rate; a fiat
/// currency in a token is its inverse to 12 decimals, rounded down.
pub(super) async fn rate(
    State(state): State<AppState>,
    Path((from, to)): Path<(String, String)>,
) -> CgResult<Response> {
    let (from, to) = (from.to_ascii_uppercase(), to.to_ascii_uppercase());
    let text = |s: String| (StatusCode::OK, [("content-type", "text/plain; charset=utf-8")], s).into_response();
    if from == to {
        return Ok(text("1".into()));
    }
    let token_of = |symbol: &str| state.registry.iter().find(|t| t.symbol == symbol).cloned();
    let invalid = |m: String| CgError::from_api(ApiError::invalid(m), Context::Order);
    match (token_of(&from), token_of(&to)) {
        (Some(token), None) => {
            let quote =
                state.engine.quote(&token, &to).await.map_err(|e| CgError::from_api(e.into(), Context::Order))?;
            Ok(text(quote.rate.to_decimal_string()))
        }
        (None, Some(token)) => {
            let decimals =
                fiat_decimals(&from).ok_or_else(|| invalid(format!("{from:?} is not a supported currency")))?;
            let quote =
                state.engine.quote(&token, &from).await.map_err(|e| CgError::from_api(e.into(), Context::Order))?;
            let one = 10u128.pow(decimals);
            let inverse = quote
                .rate
                .token_for_fiat(one, decimals, 12, Rounding::Down)
                .ok_or_else(|| invalid(format!("the rate of {from} in {to} is out of range")))?;
            Ok(text(inverse.to_decimal_string(12)))
        }
        _ => Err(invalid(format!("ebb has no rate of {from} in {to}: one side must be a token, the other a currency"))),
    }
}
