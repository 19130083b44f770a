use axum::extract::State;
use axum::Json;

use crate::error::{ApiResult, ErrorResponse};
use crate::wire::SupportedToken;
use crate::AppState;

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
