//! Cobo's request authentication and response signing.
//!
//! A request carries `Biz-Api-Key` (the client's Ed25519 public key, hex), `Biz-Api-Nonce` (ms since
//! the epoch) and `Biz-Api-Signature`: Ed25519 over `sha256(sha256("METHOD|PATH|NONCE|QUERY|BODY"))`,
//! QUERY being the query string exactly as sent. Every response carries `Biz-Timestamp` and
//! `Biz-Resp-Signature` over `sha256(sha256(BODY|TIMESTAMP))` with the server's key.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ebb_app::Actor;
use ebb_store::keys::{ApiKeyRow, KeyRole};
use ebb_store::{Store, StoreError};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};

use crate::error::{ApiError, ErrorCode};
use crate::{now_ms, AppState};

/// Nonces further than this from the server's clock are refused.
pub const NONCE_WINDOW_MS: i64 = 5 * 60 * 1000;
/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Who sent an authenticated request: the key, and the actor it stands for (the PSP, or the one
/// merchant a restricted key is confined to). Derefs to the [`Actor`] the use cases take.
#[derive(Debug, Clone)]
pub struct Caller {
    pub api_key: String,
    pub actor: Actor,
}

impl Caller {
    pub fn new(api_key: String, merchant: Option<String>, role: KeyRole) -> Self {
        let initiator = format!("api_key_{api_key}");
        Caller { api_key, actor: Actor { merchant, initiator, role, audit: None } }
    }

    /// Refuses a PSP-only operation to a merchant-restricted key (403, 40300).
    pub fn require_psp(&self) -> Result<(), ApiError> {
        Ok(self.actor.require_psp_for("make this call")?)
    }
}

impl std::ops::Deref for Caller {
    type Target = Actor;

    fn deref(&self) -> &Actor {
        &self.actor
    }
}

/// API keys recently read from the store, with their decoded Ed25519 keys. Every signed request needs
/// its key's row; reading it once a second instead of once a request takes a database round trip off
/// every call, and keeping the decoded key saves decompressing the curve point each time. The price: a
/// key revoked by another process (`ebb keys revoke`) is refused at most [`KEY_CACHE_TTL`] later.
#[derive(Default)]
pub struct KeyCache {
    entries: RwLock<HashMap<String, CacheEntry>>,
}

/// What the store said about a key (`None`: unknown), and when it was asked.
type CacheEntry = (Option<Arc<KnownKey>>, Instant);

/// A registered key, as the authentication needs it.
pub struct KnownKey {
    pub row: ApiKeyRow,
    pub verifying_key: VerifyingKey,
}

pub const KEY_CACHE_TTL: Duration = Duration::from_secs(1);
/// Bounds the cache: unknown keys are cached too (as `None`), so junk keys cannot grow it without end.
const KEY_CACHE_MAX: usize = 10_000;

impl KeyCache {
    /// The registered key `api_key` (lower-case hex), revoked or not; `None` if ebb does not know it.
    pub async fn get(&self, store: &Store, api_key: &str) -> Result<Option<Arc<KnownKey>>, StoreError> {
        if let Some((known, at)) = self.entries.read().expect("key cache lock").get(api_key) {
            if at.elapsed() < KEY_CACHE_TTL {
                return Ok(known.clone());
            }
        }
        let known = store.api_key(api_key).await?.and_then(|row| {
            let bytes = fixed_hex::<32>(&row.api_key)?;
            let verifying_key = VerifyingKey::from_bytes(&bytes).ok()?;
            Some(Arc::new(KnownKey { row, verifying_key }))
        });
        let mut entries = self.entries.write().expect("key cache lock");
        if entries.len() >= KEY_CACHE_MAX {
            entries.retain(|_, (_, at)| at.elapsed() < KEY_CACHE_TTL);
            if entries.len() >= KEY_CACHE_MAX {
                entries.clear();
            }
        }
        entries.insert(api_key.to_owned(), (known.clone(), Instant::now()));
        Ok(known)
    }
}

pub use ebb_core::signing::{double_sha256, fixed_hex, nonce_millis, request_message, sign_body};

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Result<&'h str, ApiError> {
    headers
        .get(name)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::MissingAuthentication,
                format!("missing header {name}: sign the request as Cobo's API requires"),
            )
        })?
        .to_str()
        .map_err(|_| ApiError::new(ErrorCode::MissingAuthentication, format!("header {name} is not ASCII")))
}

/// Verifies the request's signature, key and freshness, then passes it on with a [`Caller`].
pub async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match check(&state, req).await {
        Ok(req) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

async fn check(state: &AppState, req: Request) -> Result<Request, ApiError> {
    let (mut parts, body) = req.into_parts();
    let key_hex = header(&parts.headers, "biz-api-key")?.to_ascii_lowercase();
    let nonce = header(&parts.headers, "biz-api-nonce")?.to_owned();
    let sig_hex = header(&parts.headers, "biz-api-signature")?.to_owned();

    let nonce_ms = nonce_millis(&nonce).ok_or_else(|| {
        ApiError::new(
            ErrorCode::MissingAuthentication,
            "Biz-Api-Nonce must be the time in milliseconds since the epoch",
        )
    })?;
    let now = now_ms();
    if (now - nonce_ms).abs() > NONCE_WINDOW_MS {
        return Err(ApiError::new(
            ErrorCode::StaleNonce,
            format!(
                "Biz-Api-Nonce {nonce_ms} is more than 5 minutes from the server time {now}; check the client's clock"
            ),
        ));
    }
    if fixed_hex::<32>(&key_hex).is_none() {
        return Err(ApiError::new(ErrorCode::UnknownApiKey, "Biz-Api-Key must be a 32-byte Ed25519 public key in hex"));
    }
    let sig_bytes = fixed_hex::<64>(&sig_hex).ok_or_else(|| {
        ApiError::new(ErrorCode::BadSignature, "Biz-Api-Signature must be a 64-byte Ed25519 signature in hex")
    })?;
    let key = match state.keys.get(&state.store, &key_hex).await? {
        Some(k) if k.row.revoked_at.is_none() => k,
        Some(_) => return Err(ApiError::new(ErrorCode::UnknownApiKey, "this API key has been revoked")),
        None => {
            return Err(ApiError::new(ErrorCode::UnknownApiKey, "unknown API key: register it with `ebb keys add`"))
        }
    };

    let body: Bytes = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| {
        ApiError::new(ErrorCode::PayloadTooLarge, format!("request body larger than {MAX_BODY_BYTES} bytes"))
    })?;
    let message =
        request_message(parts.method.as_str(), parts.uri.path(), &nonce, parts.uri.query().unwrap_or(""), &body);
    key.verifying_key.verify(&double_sha256(&message), &Signature::from_bytes(&sig_bytes)).map_err(|_| {
        ApiError::new(
            ErrorCode::BadSignature,
            "signature does not match: sign sha256(sha256(\"METHOD|PATH|NONCE|QUERY|BODY\")) with the key of Biz-Api-Key",
        )
    })?;
    let sig_lower = sig_hex.to_ascii_lowercase();
    let durability = ebb_store::replay::Durability::of_method(parts.method.as_str());
    if !state.replay.first_use(&key_hex, &sig_lower, now, durability).await? {
        return Err(ApiError::new(
            ErrorCode::ReplayedRequest,
            "this exact signed request was already received (a replay); sign each request anew",
        ));
    }
    let caller = Caller::new(key.row.api_key.clone(), key.row.merchant_id.clone(), key.row.role);
    // An approver's key changes nothing but approvals: every method but GET and HEAD is refused here,
    // before any handler runs, so no endpoint can forget the check; approving and rejecting a refund
    // are the only changes let through.
    if !matches!(parts.method, Method::GET | Method::HEAD) && !is_approval_decision(&parts.method, parts.uri.path()) {
        caller.require_operator_for("make this call")?;
    }
    parts.extensions.insert(caller);
    Ok(Request::from_parts(parts, Body::from(body)))
}

/// `POST /v2/payments/refunds/{refund_id}/approve` or `…/reject`.
fn is_approval_decision(method: &Method, path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/v2/payments/refunds/") else { return false };
    let decision = match rest.split_once('/') {
        Some((id, action)) if !id.is_empty() => action,
        _ => return false,
    };
    method == Method::POST && matches!(decision, "approve" | "reject")
}

/// Signs every response body with the server's key.
pub async fn sign_response(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => return ApiError::internal(format!("reading the response body: {e}")).into_response(),
    };
    let timestamp = now_ms().to_string();
    let signature = sign_body(&state.server_key, &bytes, &timestamp);
    parts.headers.insert("biz-timestamp", HeaderValue::from_str(&timestamp).expect("digits"));
    parts.headers.insert("biz-resp-signature", HeaderValue::from_str(&signature).expect("hex"));
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_message_joins_parts_with_bars() {
        assert_eq!(request_message("GET", "/v2/x", "1", "a=1", b""), b"GET|/v2/x|1|a=1|".to_vec());
        assert_eq!(request_message("POST", "/v2/x", "1", "", b"{}"), b"POST|/v2/x|1||{}".to_vec());
    }

    #[test]
    fn only_approving_and_rejecting_a_refund_count_as_approval_decisions() {
        assert!(is_approval_decision(&Method::POST, "/v2/payments/refunds/R1/approve"));
        assert!(is_approval_decision(&Method::POST, "/v2/payments/refunds/R1/reject"));
        for (m, p) in [
            (Method::PUT, "/v2/payments/refunds/R1/approve"),
            (Method::POST, "/v2/payments/refunds/R1/cancel"),
            (Method::POST, "/v2/payments/refunds//approve"),
            (Method::POST, "/v2/payments/refunds/R1/approve/x"),
            (Method::POST, "/v2/payments/refunds/approve"),
            (Method::POST, "/v2/payments/approval_policies"),
        ] {
            assert!(!is_approval_decision(&m, p), "{m} {p}");
        }
    }
}
