use axum::extract::{Path, State};
use axum::Json;

use crate::error::{ApiResult, ErrorResponse};
use crate::wire::{ExchangeRate, SupportedToken};
use crate::{validate, AppState};

/// The tokens this ebb pays refunds in (its token registry).
#[utoipa::path(get, path = "/v2/payments/supported_tokens", tag = "tokens",
    responses((status = 200, body = Vec<SupportedToken>), (status = "4XX", body = ErrorResponse)))]
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Vec<SupportedToken>>> {
    Ok(Json(
        state
            .registry
            .iter()
            .map(|t| SupportedToken {
                token_id: t.id.clone(),
                name: t.symbol.clone(),
                symbol: t.symbol.clone(),
                decimal: i64::from(t.decimals),
                token_address: t.contract.clone(),
                chain_id: t.chain_id.clone(),
            })
            .collect(),
    ))
}

/// How much of a fiat currency one token is worth now, from the configured rate sources
/// (docs/PRICES.md); 503 with error code 50301 when no source has a rate younger than `max_age_s`.
#[utoipa::path(get, path = "/v2/payments/exchange_rates/{token_id}/{currency}", tag = "tokens",
    params(("token_id" = String, Path), ("currency" = String, Path, description = "An ISO 4217 code: `USD`, `EUR`, …")),
    responses((status = 200, body = ExchangeRate), (status = "4XX", body = ErrorResponse), (status = "5XX", body = ErrorResponse)))]
pub async fn exchange_rate(
    State(state): State<AppState>,
    Path((token_id, currency)): Path<(String, String)>,
) -> ApiResult<Json<ExchangeRate>> {
    let token = validate::token(&state.registry, "token_id", &token_id)?;
    let quote = state.engine.quote(token, &currency).await?;
    Ok(Json(ExchangeRate {
        token_id: token.id.clone(),
        currency,
        rate: quote.rate.to_decimal_string(),
        rate_source: quote.source,
        rate_timestamp: quote.at,
    }))
}
