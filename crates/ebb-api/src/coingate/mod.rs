//! CoinGate's API v2 as a second dialect, under `/coingate` (a client whose base URL is
//! `http://HOST:PORT/coingate` calls `…/coingate/v2/orders`). Every handler parses CoinGate's wire
//! format, calls the same use cases as the Cobo API (`ebb_app`), and answers in CoinGate's shapes:
//! integer ids, ISO 8601 times, `{message, reason, errors}` errors. docs/COINGATE.md.
//!
//! Paths are matched case-insensitively and without a trailing slash (CoinGate's clients lowercase
//! paths, or end them with `/`); bodies may be form-encoded or JSON, and a JSON number's text is read
//! exactly.

pub(crate) mod callbacks;
mod catalog;
mod ledger;
mod orders;
mod public;
mod refunds;

use std::collections::HashMap;
use std::convert::Infallible;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{StatusCode, Uri};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use ebb_app::Actor;
use ebb_store::webhooks::BodyFormat;
use serde::Serialize;
use serde_json::value::RawValue;
use tower::ServiceExt;

use crate::error::{ApiError, ErrorCode};
use crate::AppState;

/// The `/coingate` service: paths normalised, then routed.
pub fn service(
    state: AppState,
) -> impl tower::Service<Request, Response = Response, Error = Infallible, Future: Send> + Clone + Send {
    let routes = router(state);
    tower::service_fn(move |mut req: Request| {
        let routes = routes.clone();
        async move {
            normalise_path(&mut req);
            routes.oneshot(req).await
        }
    })
}

fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/v2/orders", post(orders::create).get(orders::list))
        .route("/v2/orders/{id}", get(orders::get))
        .route("/v2/orders/{id}/checkout", post(orders::checkout))
        .route("/v2/orders/{id}/refunds", post(refunds::create).get(refunds::list_of_order))
        .route("/v2/orders/{id}/refunds/{refund_id}", get(refunds::get))
        .route("/v2/refunds", get(refunds::list))
        .route("/v2/refunds/supported-currencies", get(public::refund_currencies))
        .route("/v2/ledger/accounts", get(ledger::list))
        .route("/v2/ledger/accounts/{id}", get(ledger::get))
        .route("/v2/auth/test", get(public::auth_test))
        .route_layer(from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/v2/ping", get(public::ping))
        .route("/v2/currencies", get(public::currencies))
        .route("/v2/platforms", get(public::platforms))
        .route("/v2/rates/merchant/{from}/{to}", get(public::rate))
        .merge(protected)
        .fallback(|| async { CgError::new(StatusCode::NOT_FOUND, "NotFound", "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            CgError::new(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "method not allowed on this endpoint")
        })
        .with_state(state)
}

/// Lower-cases the path (ids are integers, currency codes are upper-cased where read) and drops a
/// trailing slash.
fn normalise_path(req: &mut Request) {
    let uri = req.uri();
    let path = uri.path();
    let mut normal = path.to_ascii_lowercase();
    while normal.len() > 1 && normal.ends_with('/') {
        normal.pop();
    }
    if normal == path {
        return;
    }
    let rebuilt = match uri.query() {
        Some(q) => format!("{normal}?{q}"),
        None => normal,
    };
    if let Ok(new) = rebuilt.parse::<Uri>() {
        *req.uri_mut() = new;
    }
}

/// The merchant a CoinGate token belongs to, and how that token's callbacks are sent, for the handlers.
#[derive(Clone)]
pub(crate) struct Merchant(pub Actor, pub BodyFormat);

/// `Authorization: Token <token>` (or `Bearer`): one of a merchant's tokens (`ebb keys add-token`).
async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let given = req.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        (scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer")).then(|| token.trim().to_owned())
    });
    let Some(token) = given else {
        return CgError::new(StatusCode::UNAUTHORIZED, "BadAuthToken", "send Authorization: Token <api token>")
            .into_response();
    };
    match ebb_app::coingate::token_of(&state.store, &token).await {
        Err(e) => CgError::from_api(ApiError::from(e), Context::Order).into_response(),
        Ok(None) => CgError::new(StatusCode::UNAUTHORIZED, "BadAuthToken", "the API token is unknown or revoked")
            .into_response(),
        Ok(Some(t)) => {
            let actor = Actor::merchant(t.merchant_id, format!("coingate_token_{}", t.token_id));
            req.extensions_mut().insert(Merchant(actor, t.callback_format));
            next.run(req).await
        }
    }
}

/// What an error is about: CoinGate's reasons name the object (`OrderNotFound`, `RefundIsNotValid`).
#[derive(Clone, Copy)]
pub(crate) enum Context {
    Order,
    Refund,
}

impl Context {
    fn name(self) -> &'static str {
        match self {
            Context::Order => "Order",
            Context::Refund => "Refund",
        }
    }
}

/// CoinGate's error body, with its HTTP status.
#[derive(Debug)]
pub(crate) struct CgError {
    status: StatusCode,
    body: CgErrorBody,
    /// Logged, never shown: the cause of a 5xx.
    cause: Option<String>,
}

#[derive(Debug, Serialize)]
struct CgErrorBody {
    message: String,
    reason: String,
    errors: Vec<String>,
}

impl CgError {
    pub(crate) fn new(status: StatusCode, reason: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        CgError {
            status,
            body: CgErrorBody { errors: vec![message.clone()], message, reason: reason.into() },
            cause: None,
        }
    }

    /// An ebb error in CoinGate's terms: a missing object is 404 `{Object}NotFound`, anything the request
    /// got wrong 422 `{Object}IsNotValid` (the message says what), an unreachable database or price feed
    /// 503.
    pub(crate) fn from_api(e: ApiError, context: Context) -> Self {
        use ErrorCode as C;
        let object = context.name();
        let (status, reason) = match e.code {
            C::NotFound => (StatusCode::NOT_FOUND, format!("{object}NotFound")),
            C::Forbidden => (StatusCode::FORBIDDEN, "Forbidden".into()),
            C::MissingAuthentication | C::BadSignature | C::StaleNonce | C::ReplayedRequest | C::UnknownApiKey => {
                (StatusCode::UNAUTHORIZED, "BadAuthToken".into())
            }
            C::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed".into()),
            C::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge".into()),
            C::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType".into()),
            C::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError".into()),
            C::Unavailable | C::RateUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable".into()),
            C::InvalidRequest
            | C::InvalidAmount
            | C::InvalidAddress
            | C::UnknownToken
            | C::RefusedDestination
            | C::IdempotencyConflict
            | C::InvalidState
            | C::AlreadyExists
            | C::InsufficientBalance
            | C::OverRefund => (StatusCode::UNPROCESSABLE_ENTITY, format!("{object}IsNotValid")),
        };
        let mut err = CgError::new(status, &reason, e.message);
        err.cause = e.cause;
        err
    }
}

impl IntoResponse for CgError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), cause = ?self.cause, message = %self.body.message, "CoinGate API error");
        }
        (self.status, Json(self.body)).into_response()
    }
}

pub(crate) type CgResult<T> = Result<T, CgError>;

/// A request body's fields as text, form-encoded or JSON (a JSON number keeps its exact text, `true`
/// and `false` their names; `null`, an object or an array is an absent field).
pub(crate) struct Fields(HashMap<String, String>);

impl<S: Send + Sync> FromRequest<S> for Fields {
    type Rejection = CgError;

    async fn from_request(req: Request, state: &S) -> Result<Self, CgError> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/json"));
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            CgError::new(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge", format!("request body: {}", e.body_text()))
        })?;
        let bad = |why: String| CgError::new(StatusCode::BAD_REQUEST, "BadRequest", why);
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Fields(HashMap::new()));
        }
        if !is_json {
            let map = url::form_urlencoded::parse(&bytes).into_owned().collect();
            return Ok(Fields(map));
        }
        let raw: HashMap<String, Box<RawValue>> =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("the body is not a JSON object: {e}")))?;
        let mut map = HashMap::new();
        for (k, v) in raw {
            let text = v.get();
            if text == "null" {
                continue;
            }
            let value = if text.starts_with('"') {
                serde_json::from_str::<String>(text).map_err(|e| bad(format!("{k}: {e}")))?
            } else if text.starts_with(['{', '[']) {
                // A nested object (CoinGate's `shopper`) holds nothing ebb reads; a field ebb reads
                // given as one is then missing, and said so.
                continue;
            } else {
                text.to_owned()
            };
            map.insert(k, value);
        }
        Ok(Fields(map))
    }
}

impl Fields {
    /// A field's text, `None` when absent or empty.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|s| s.trim()).filter(|s| !s.is_empty())
    }

    /// A text field of at most `max` characters.
    pub(crate) fn text(&self, name: &str, max: usize) -> Result<Option<String>, ApiError> {
        match self.get(name) {
            Some(v) if v.chars().count() > max => {
                Err(ApiError::invalid(format!("{name} is longer than {max} characters")))
            }
            v => Ok(v.map(str::to_owned)),
        }
    }

    pub(crate) fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name).ok_or_else(|| ApiError::invalid(format!("{name} is required")))
    }

    pub(crate) fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None | Some("false" | "0") => Ok(false),
            Some("true" | "1") => Ok(true),
            Some(v) => Err(ApiError::invalid(format!("{name} must be true or false, not {v:?}"))),
        }
    }
}

/// `2026-12-03T13:14:50+00:00`, as CoinGate writes times.
pub(crate) fn iso(seconds: i64) -> String {
    let z = crate::pages::date::iso_utc(seconds.saturating_mul(1000));
    format!("{}+00:00", z.trim_end_matches('Z'))
}

/// Reads a time bound of a list query: a date (`2026-12-03`, its first second, or with `end` its last),
/// a time (`2026-12-03T13:14:50`, optionally with `Z` or `+00:00`), or Unix seconds.
pub(crate) fn parse_time(field: &str, s: &str, end: bool) -> Result<i64, ApiError> {
    let bad =
        || ApiError::invalid(format!("{field} must be a date (YYYY-MM-DD), a UTC time or Unix seconds, not {s:?}"));
    if !s.is_empty() && s.len() <= 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| bad());
    }
    let s = s.trim_end_matches('Z').trim_end_matches("+00:00");
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let num = |p: &str, len: usize| -> Result<i64, ApiError> {
        if p.len() == len && p.bytes().all(|b| b.is_ascii_digit()) {
            p.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let mut d = date.split('-');
    let (y, m, day) = match (d.next(), d.next(), d.next(), d.next()) {
        (Some(y), Some(m), Some(day), None) => (num(y, 4)?, num(m, 2)?, num(day, 2)?),
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return Err(bad());
    }
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = match time {
        None if end => 86_399,
        None => 0,
        Some(t) => {
            let mut parts = t.split(':');
            let (h, mi, sec) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(h), Some(mi), Some(sec), None) => (num(h, 2)?, num(mi, 2)?, num(&sec[..sec.len().min(2)], 2)?),
                (Some(h), Some(mi), None, None) => (num(h, 2)?, num(mi, 2)?, 0),
                _ => return Err(bad()),
            };
            if h > 23 || mi > 59 || sec > 59 {
                return Err(bad());
            }
            h * 3600 + mi * 60 + sec
        }
    };
    Ok(days * 86_400 + seconds)
}

/// A time bound of a list query, if given (see [`parse_time`]).
pub(crate) fn time_bound(query: &HashMap<String, String>, name: &str, end: bool) -> Result<Option<i64>, ApiError> {
    query.get(name).filter(|v| !v.is_empty()).map(|v| parse_time(name, v, end)).transpose()
}

/// How many pages of `per_page` hold `total` items.
pub(crate) fn pages(total: i64, per_page: i64) -> i64 {
    (total + per_page - 1) / per_page
}

/// Page and page size of a CoinGate list (`page` from 1, `per_page` 1 to 100, default 100).
pub(crate) fn paging(query: &HashMap<String, String>) -> Result<(i64, i64), ApiError> {
    let read =
        |name: &str, default: i64, max: i64| -> Result<i64, ApiError> {
            match query.get(name).map(|s| s.trim()).filter(|s| !s.is_empty()) {
                None => Ok(default),
                Some(v) => v.parse::<i64>().ok().filter(|n| (1..=max).contains(n)).ok_or_else(|| {
                    ApiError::invalid(format!("{name} must be a whole number from 1 to {max}, not {v:?}"))
                }),
            }
        };
    Ok((read("page", 1, 1_000_000)?, read("per_page", 100, 100)?))
}

/// A query string's parameters (`created_at[from]` keeps its brackets).
pub(crate) fn query_map(uri: &Uri) -> HashMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_coingate_writes_them() {
        assert_eq!(iso(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(parse_time("t", "1970-01-02", false).unwrap(), 86_400);
        assert_eq!(parse_time("t", "1970-01-02", true).unwrap(), 2 * 86_400 - 1);
        assert_eq!(parse_time("t", "2026-12-03T13:14:50+00:00", false).unwrap(), 1_796_303_690);
        assert_eq!(iso(1_796_303_690), "2026-12-03T13:14:50+00:00");
        assert_eq!(parse_time("t", "2026-12-03 13:14:50", false).unwrap(), 1_796_303_690);
        assert_eq!(parse_time("t", "1796303690", false).unwrap(), 1_796_303_690);
        for bad in ["", "2026-13-01", "2026-1-01", "yesterday", "2026-12-03T25:00:00", "2026-12-03T1:00"] {
            assert!(parse_time("t", bad, false).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths_are_normalised() {
        let mut req = Request::builder().uri("/V2/Orders/12/?page=2").body(axum::body::Body::empty()).unwrap();
        normalise_path(&mut req);
        assert_eq!(req.uri().to_string(), "/v2/orders/12?page=2");
    }
}
