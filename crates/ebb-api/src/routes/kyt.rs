//! The KYT refund API (the seed PSP's crypto refund API, psp-crypto-refund-api.txt) under `/v1.0`:
//! a client exchanges its id and secret for a bearer token, then creates, confirms and reads crypto
//! refunds of pay-ins screening held. A dialect over `ebb_app::kyt`, which pays through the same
//! dispositions as Cobo's Compliance API. docs/API.md, "KYT refund API".

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use ebb_app::kyt::{self, CreateRequest as AppCreate, OriginalType};
use ebb_store::kyt::ClientRow;

use crate::error::{ApiError, ErrorCode};
use crate::extract::{ApiJson, ApiQuery};
use crate::wire::kyt::{
    unauthenticated, ConfirmRequest, CreateRequest, CryptoRefund, GetQuery, KytError, KytResult, Ok, TokenData,
    TokenRequest,
};
use crate::{validate, AppState};

/// The routes, to be nested under `/v1.0`.
pub fn router(state: AppState) -> Router<AppState> {
    let protected = Router::new()
        .route("/payment/crypto/createCryptoRefund", post(create))
        .route("/payment/crypto/confirmCryptoRefund", post(confirm))
        .route("/payment/crypto/getCryptoRefund", get(get_one))
        .route_layer(from_fn_with_state(state, bearer));
    Router::new()
        .route("/auth/getToken", post(token))
        .merge(protected)
        .fallback(|| async { KytError(ApiError::new(ErrorCode::NotFound, "no such endpoint")) })
        .method_not_allowed_fallback(|| async {
            KytError(ApiError::new(ErrorCode::MethodNotAllowed, "method not allowed on this endpoint"))
        })
}

/// `Authorization: Bearer <token>` from getToken; the client goes into the request's extensions.
async fn bearer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let given = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_owned())
    });
    let Some(token) = given else {
        return unauthenticated(
            ErrorCode::MissingAuthentication,
            "send Authorization: Bearer <token>, with a token from POST /v1.0/auth/getToken",
        );
    };
    match kyt::client_of_token(&state.store, &token).await {
        Err(e) => KytError::from(e).into_response(),
        Result::Ok(None) => unauthenticated(
            ErrorCode::UnknownApiKey,
            "the bearer token is unknown, expired or its client revoked; get a new one from /v1.0/auth/getToken",
        ),
        Result::Ok(Some(client)) => {
            req.extensions_mut().insert(client);
            next.run(req).await
        }
    }
}

/// Exchanges a client id and secret (`ebb keys add-client`) for a bearer token valid two hours.
async fn token(
    State(state): State<AppState>,
    body: Result<ApiJson<TokenRequest>, ApiError>,
) -> Result<Ok<TokenData>, Response> {
    let ApiJson(body) = body.map_err(|e| KytError(e).into_response())?;
    match kyt::issue_token(&state.store, &body.client_id, &body.client_secret).await {
        Err(e) => Err(KytError::from(e).into_response()),
        Result::Ok(None) => {
            Err(unauthenticated(ErrorCode::UnknownApiKey, "unknown client, revoked client or wrong secret"))
        }
        Result::Ok(Some(t)) => Result::Ok(Ok(TokenData {
            access_token: t.token,
            token_type: "Bearer".into(),
            expires_in: kyt::TOKEN_TTL_MS / 1000,
            expires_at: t.expires_at_ms,
        })),
    }
}

/// Makes the crypto refund of a held pay-in (`originalTransactionType` 1: a transaction id, 2: an order
/// id), or returns the one already awaiting confirmation; an error if the payment holds nothing.
async fn create(
    State(state): State<AppState>,
    Extension(client): Extension<ClientRow>,
    body: Result<ApiJson<CreateRequest>, ApiError>,
) -> KytResult<CryptoRefund> {
    let ApiJson(body) = body?;
    let original_type = OriginalType::from_code(body.original_transaction_type).ok_or_else(|| {
        ApiError::invalid(format!(
            "originalTransactionType {} is not 1 (a pay-in transaction) or 2 (an order)",
            body.original_transaction_type
        ))
    })?;
    let original_id = validate::text("originalTransactionId", &body.original_transaction_id, 128)?;
    let client_reference = validate::optional_text("clientReference", body.client_reference.as_deref(), 128)?;
    let row = kyt::create(&state.engine, &client, AppCreate { original_type, original_id, client_reference }).await?;
    let snapshot = kyt::get(&state.engine, &client, &row.crypto_refund_id).await?;
    Result::Ok(Ok(CryptoRefund::new(&state.registry, snapshot)))
}

/// Confirms a crypto refund: pays it to `refundAddress`, or to the pay-in's sender when absent. The
/// destination is screened (a sanctioned one is refused, 40004) and approval policies apply.
async fn confirm(
    State(state): State<AppState>,
    Extension(client): Extension<ClientRow>,
    body: Result<ApiJson<ConfirmRequest>, ApiError>,
) -> KytResult<CryptoRefund> {
    let ApiJson(body) = body?;
    let address = validate::optional_text("refundAddress", body.refund_address.as_deref(), 128)?;
    let snapshot = kyt::confirm(&state.engine, &client, &body.crypto_refund_id, address.as_deref(), |token, a| {
        validate::address("refundAddress", a, token)
    })
    .await?;
    Result::Ok(Ok(CryptoRefund::new(&state.registry, snapshot)))
}

/// A crypto refund by `cryptoRefundId` or by the client's `clientReference`.
async fn get_one(
    State(state): State<AppState>,
    Extension(client): Extension<ClientRow>,
    query: Result<ApiQuery<GetQuery>, ApiError>,
) -> KytResult<CryptoRefund> {
    let ApiQuery(q) = query?;
    let snapshot = match (q.crypto_refund_id.filter(|s| !s.is_empty()), q.client_reference.filter(|s| !s.is_empty())) {
        (Some(id), _) => kyt::get(&state.engine, &client, &id).await?,
        (None, Some(reference)) => kyt::get_by_reference(&state.engine, &client, &reference).await?,
        (None, None) => return Err(ApiError::invalid("give cryptoRefundId or clientReference").into()),
    };
    Result::Ok(Ok(CryptoRefund::new(&state.registry, snapshot)))
}
