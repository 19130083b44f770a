//! ebb's HTTP edge: the Cobo-compatible `/v2` API, its authentication and response signing, and the
//! operational endpoints, and the refund-link pages. Handlers parse Cobo's wire format into domain
//! values, call a use case of `ebb-app` (or read the store), and render the answer in Cobo's shape;
//! they never write to the store themselves, nor talk to a chain or a webhook receiver.

pub mod auth;
mod coingate;
pub mod console;
pub mod error;
mod extract;
pub mod mail;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod routes;
mod validate;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post, put};
use axum::Router;
use ebb_core::TokenRegistry;
use ebb_store::replay::ReplayGuard;
use ebb_store::Store;
use ed25519_dalek::SigningKey;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::error::{ApiError, ErrorCode};
use crate::metrics::Metrics;

/// How long one request may take before it is answered 408 (a slow client cannot hold shutdown).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What every handler shares. axum clones the state for each request (and for each middleware), so it
/// is one `Arc`: one reference count per clone instead of one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    /// The use cases: every state change a handler makes goes through these.
    pub engine: ebb_app::Engine,
    /// Reads (the same store the engine writes through).
    pub store: Store,
    pub registry: Arc<TokenRegistry>,
    /// Signs every response; its public key is what clients configure as `resp_pubkey`.
    pub server_key: Arc<SigningKey>,
    pub replay: ReplayGuard,
    pub keys: Arc<auth::KeyCache>,
    pub metrics: Arc<Metrics>,
    /// Whether the `/v2/sandbox` endpoints exist.
    pub sandbox: bool,
    /// How many retries the webhook dispatcher's schedule has (the `retries_left` of an event not yet
    /// tried).
    pub webhook_retries: i64,
    /// The refund-link pages' settings, rate limiter and CSRF key.
    pub links: Arc<pages::LinkPages>,
    /// The operator console's settings, login limiter and CSRF key.
    pub console: Arc<console::Console>,
    /// The chains ebb pays out on (the console shows their hot wallets' funds).
    pub chains: Vec<Arc<dyn ebb_chain::Chain>>,
}

pub use ebb_core::clock::now_ms;

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, "method not allowed on this endpoint")
}

/// A webhook delivery's content type and body in its endpoint's format (Cobo's envelope, or a
/// CoinGate callback), for the dispatcher.
pub async fn render_delivery(
    state: &AppState,
    d: &ebb_store::webhooks::DeliveryRow,
) -> Result<(&'static str, String), String> {
    match d.format {
        ebb_store::webhooks::BodyFormat::Cobo => {
            wire::webhooks::delivery_body(&state.registry, d).map(|body| ("application/json", body))
        }
        _ => coingate::callbacks::render(state, d).await,
    }
}

pub fn router(state: AppState) -> Router {
    use routes::*;
    let mut signed = Router::new()
        .route("/v2/payments/refunds", post(refunds::create).get(refunds::list))
        .route("/v2/payments/refunds/{refund_id}", get(refunds::get).put(refunds::update))
        .route("/v2/payments/refunds/{refund_id}/cancel", put(refunds::cancel))
        .route("/v2/payments/refunds/{refund_id}/approve", post(approvals::approve))
        .route("/v2/payments/refunds/{refund_id}/reject", post(approvals::reject))
        .route("/v2/payments/approvals", get(approvals::queue))
        .route("/v2/compliance/kya/screenings", post(compliance::create_kya).get(compliance::list_kya))
        .route("/v2/compliance/kya/screenings/{screening_id}", get(compliance::get_kya))
        .route("/v2/compliance/kyt/screenings/status", get(compliance::kyt_status))
        .route("/v2/compliance/kyt/screenings/manual_review", post(compliance::manual_review))
        .route("/v2/compliance/kyt/screenings/decisions", post(compliance::decisions))
        .route("/v2/compliance/funds/disposition/unfreeze", post(compliance::unfreeze))
        .route("/v2/compliance/funds/disposition/refund", post(compliance::refund))
        .route("/v2/compliance/funds/disposition/isolate", post(compliance::isolate))
        .route("/v2/compliance/funds/disposition", get(compliance::disposition))
        .route("/v2/payments/approval_policies", post(approvals::create_policy).get(approvals::list_policies))
        .route(
            "/v2/payments/approval_policies/{policy_id}",
            get(approvals::get_policy).put(approvals::update_policy).delete(approvals::delete_policy),
        )
        .route("/v2/payments/links/refunds", post(links::create))
        .route("/v2/payments/merchants", post(merchants::create).get(merchants::list))
        .route("/v2/payments/merchants/{merchant_id}", get(merchants::get).put(merchants::update))
        .route("/v2/payments/orders", post(orders::create).get(orders::list))
        .route("/v2/payments/orders/{order_id}", get(orders::get).put(orders::update))
        .route("/v2/payments/balance/merchants", get(balances::merchants))
        .route("/v2/payments/balance/psp", get(balances::psp))
        .route("/v2/payments/balance_changes", get(balances::changes))
        .route("/v2/payments/supported_tokens", get(tokens::list))
        .route("/v2/payments/exchange_rates/{token_id}/{currency}", get(tokens::exchange_rate))
        .route("/v2/webhooks/endpoints", post(webhooks::create).get(webhooks::list))
        .route("/v2/webhooks/endpoints/{endpoint_id}", get(webhooks::get).put(webhooks::update))
        .route("/v2/webhooks/endpoints/{endpoint_id}/events", get(webhooks::list_events))
        .route("/v2/webhooks/endpoints/{endpoint_id}/events/{event_id}", get(webhooks::get_event))
        .route("/v2/webhooks/endpoints/{endpoint_id}/events/{event_id}/logs", get(webhooks::logs))
        .route("/v2/webhooks/endpoints/{endpoint_id}/events/{event_id}/retry", post(webhooks::retry))
        .route("/v2/webhooks/events/trigger", post(webhooks::trigger))
        .route("/v2/webhooks/events/definitions", get(webhooks::definitions));
    if state.sandbox {
        signed = signed.route("/v2/sandbox/orders/{order_id}/payments", post(sandbox::pay_order));
    }
    let signed = signed
        .route_layer(from_fn_with_state(state.clone(), auth::authenticate))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(state.clone(), auth::sign_response));

    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/v2/openapi.json", get(ops::openapi))
        .merge(pages::router())
        .merge(console::router())
        .nest("/v1.0", kyt::router(state.clone()))
        .nest_service("/coingate", coingate::service(state.clone()))
        .merge(signed)
        .layer(from_fn_with_state(state.clone(), metrics::track))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, REQUEST_TIMEOUT))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}
