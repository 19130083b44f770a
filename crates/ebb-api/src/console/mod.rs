//! The operator console at `/console`: the back office where people review, approve, pay and reconcile
//! refunds (docs/CONSOLE.md).
//!
//! Server-rendered HTML (askama) with plain forms: every action works without JavaScript. An operator
//! logs in with a password and a TOTP code and gets a session cookie (HttpOnly, SameSite=Strict, Path
//! /console, Secure behind https). Every form carries a CSRF token bound to the session; every action
//! is checked against the role's permissions here and then done through the same use cases as the
//! API's, as an `Actor` that names the operator (so the maker-checker rule holds between people) and
//! writes the audit entry in the change's own transaction.

mod admin;
mod auth;
mod chart;
mod dashboard;
mod export;
mod held;
mod i18n;
mod merchants;
mod orders;
mod reconcile;
mod refunds;
mod views;
mod webhooks;

use std::net::IpAddr;

use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ebb_app::operators::{self, ConsoleSettings, Permission, Signed};
use ebb_app::{Actor, AppError};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use self::i18n::{Tr, LANG_COOKIE};
use self::views::{message_page, Frame, Nav};
use crate::pages::limits::RateLimiter;
use crate::pages::security::{client_address, cookie as cookie_of, security_headers, Peer};
use crate::AppState;

pub const CONSOLE_PATH: &str = "/console";
const SESSION_COOKIE: &str = "ebb_console";
/// A browser's cookie before login, which the login form's CSRF token is bound to.
const PRE_COOKIE: &str = "ebb_console_pre";
/// Every console form is a few fields; a comment is the longest.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The console's settings and state.
pub struct Console {
    pub settings: ConsoleSettings,
    /// Cookies get `Secure` when ebb's public URL is https.
    secure_cookies: bool,
    /// The header carrying the client's address behind a proxy, as for the refund pages.
    client_ip_header: Option<String>,
    /// Keys the CSRF tokens; derived from the server key, so every ebb process on one database agrees.
    csrf_key: [u8; 32],
    /// Login attempts per client address and minute, in this process.
    logins: RateLimiter,
    /// Login attempts a client address may make per minute.
    pub logins_per_minute: u32,
}

impl Console {
    pub fn new(
        settings: ConsoleSettings,
        public_url: &str,
        client_ip_header: Option<String>,
        server_key_seed: &[u8; 32],
    ) -> Self {
        let mut h = Sha256::new();
        h.update(b"ebb console csrf key v1");
        h.update(server_key_seed);
        Console {
            settings,
            secure_cookies: public_url.starts_with("https://"),
            client_ip_header,
            csrf_key: h.finalize().into(),
            logins: RateLimiter::default(),
            logins_per_minute: 20,
        }
    }

    fn csrf_token(&self, bound_to: &str) -> String {
        B64.encode(self.csrf_mac(bound_to).finalize().into_bytes())
    }

    fn csrf_mac(&self, bound_to: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.csrf_key).expect("HMAC takes any key length");
        mac.update(b"console csrf|");
        mac.update(bound_to.as_bytes());
        mac
    }

    fn csrf_ok(&self, bound_to: &str, field: &str) -> bool {
        let Ok(given) = B64.decode(field) else { return false };
        self.csrf_mac(bound_to).verify_slice(&given).is_ok()
    }

    fn client(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> String {
        client_address(self.client_ip_header.as_deref(), headers, peer)
    }

    fn cookie(&self, name: &str, value: &str, max_age_s: u64) -> HeaderValue {
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        let c = format!("{name}={value}; Path={CONSOLE_PATH}; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}");
        HeaderValue::from_str(&c).expect("cookie values are base64url")
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route(CONSOLE_PATH, get(|| async { Redirect::to("/console/dashboard") }))
        .route("/console/login", get(auth::login_page).post(auth::login))
        .route("/console/logout", post(auth::logout))
        .route("/console/lang", get(choose_language))
        .route("/console/setup", get(auth::setup_page).post(auth::setup))
        .route("/console/merchant", post(auth::switch_merchant))
        .route("/console/dashboard", get(dashboard::dashboard))
        .route("/console/refunds", get(refunds::list))
        .route("/console/refunds/{refund_id}", get(refunds::show))
        .route("/console/refunds/{refund_id}/approve", post(refunds::approve))
        .route("/console/refunds/{refund_id}/reject", post(refunds::reject))
        .route("/console/refunds/{refund_id}/cancel", post(refunds::cancel))
        .route("/console/deliveries/retry", post(refunds::retry_delivery))
        .route("/console/approvals", get(refunds::approvals))
        .route("/console/orders", get(orders::list))
        .route("/console/orders/{order_id}", get(orders::show))
        .route("/console/orders/{order_id}/refund-link", post(orders::create_link))
        .route("/console/orders/{order_id}/refund", post(orders::create_refund))
        .route("/console/operators", get(admin::operators).post(admin::add_operator))
        .route("/console/operators/{operator_id}/reset", post(admin::reset_operator))
        .route("/console/operators/{operator_id}/disable", post(admin::disable_operator))
        .route("/console/audit", get(admin::audit))
        .route("/console/merchants", get(merchants::list))
        .route("/console/merchants/{merchant_id}", get(merchants::show))
        .route("/console/webhooks", get(webhooks::list))
        .route("/console/webhooks/{endpoint_id}", get(webhooks::show))
        .route("/console/webhooks/{endpoint_id}/retry-failed", post(webhooks::retry_failed))
        .route("/console/held", get(held::held))
        .route("/console/held/{tx_id}/unfreeze", post(held::unfreeze))
        .route("/console/held/{tx_id}/refund", post(held::refund))
        .route("/console/held/{tx_id}/isolate", post(held::isolate))
        .route("/console/reconciliation", get(reconcile::page))
        .route("/console/export/reconciliation.csv", get(reconcile::csv))
        .route("/console/export/postings.csv", get(export::postings))
        .route("/console/export/refunds.csv", get(export::refunds))
        .route("/console/export/audit.csv", get(export::audit))
        .route("/console/assets/console.css", get(css))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::map_response(security_headers))
}

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("console.css"),
    )
        .into_response()
}

/// A signed-in operator, as every console page but login and set-up needs one.
pub(crate) struct Op {
    pub(crate) signed: Signed,
    /// The operator as an actor of the use cases.
    pub(crate) actor: Actor,
    /// The CSRF token this session's forms carry.
    pub(crate) csrf: String,
    pub(crate) client: String,
    /// The language of the pages this request gets.
    pub(crate) tr: Tr,
}

impl Op {
    pub(crate) fn role(&self) -> ebb_store::operators::OperatorRole {
        self.signed.operator.role
    }

    pub(crate) fn may(&self, p: Permission) -> bool {
        operators::allows(self.role(), p)
    }

    pub(crate) fn trail(&self) -> &operators::AuditTrail {
        self.actor.audit.as_ref().expect("an operator's actor has an audit trail")
    }

    /// The answer to a post whose body is not the form it should be.
    pub(crate) fn bad_form(&self, state: &AppState) -> Response {
        let tr = self.tr;
        message_page(
            StatusCode::BAD_REQUEST,
            self.nav(state, ""),
            tr.t("Not done"),
            tr.t("The form was not filled in."),
        )
    }

    /// What every page shows around its content.
    pub(crate) fn nav(&self, state: &AppState, current: &'static str) -> Nav {
        Nav::new(state, self, current)
    }

    /// Checks a form post: its CSRF token, then the permission it needs. A refusal is a page (403), and
    /// a refused permission is written to the audit log.
    pub(crate) async fn check_post(
        &self,
        state: &AppState,
        csrf: Option<&str>,
        needs: Permission,
        what: &str,
    ) -> Result<(), Response> {
        if !csrf.is_some_and(|c| state.console.csrf_ok(&self.signed.session.session_hash, c)) {
            let tr = self.tr;
            return Err(message_page(
                StatusCode::FORBIDDEN,
                self.nav(state, ""),
                tr.t("This form has expired"),
                tr.t("The form did not carry this session's security token (it was opened before the last login, or came from another site). Open the page again and repeat the action."),
            ));
        }
        self.check(state, needs, what).await
    }

    /// Checks a permission (for pages and exports too).
    pub(crate) async fn check(&self, state: &AppState, needs: Permission, what: &str) -> Result<(), Response> {
        if self.may(needs) {
            return Ok(());
        }
        let _ = operators::audit(&state.store, self.trail(), "denied", what, self.role().as_str()).await;
        let tr = self.tr;
        Err(message_page(
            StatusCode::FORBIDDEN,
            self.nav(state, ""),
            tr.t("Not allowed"),
            &tr.f2("Your role ({0}) may not {1}.", self.role(), what),
        ))
    }
}

impl FromRequestParts<AppState> for Op {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Peer(peer) = Peer::from_request_parts(parts, state).await.unwrap_or(Peer(None));
        let client = state.console.client(&parts.headers, peer);
        let tr = Tr::of(&parts.headers);
        let to_login = || Redirect::to("/console/login").into_response();
        let Some(token) = cookie_of(&parts.headers, SESSION_COOKIE) else { return Err(to_login()) };
        let signed = match operators::session(&state.store, &state.console.settings, &token).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err(to_login()),
            Err(e) => return Err(error_page(state, tr, e)),
        };
        let actor = operators::actor_of(&signed.operator, signed.session.acting_merchant.as_deref(), &client);
        let csrf = state.console.csrf_token(&signed.session.session_hash);
        Ok(Op { signed, actor, csrf, client, tr })
    }
}

/// A use case's refusal or failure as a page, with the status the API would answer. The message is
/// the API's (English); the page around it is in the frame's language.
pub(crate) fn error_page(state: &AppState, frame: impl Into<Frame>, e: AppError) -> Response {
    let frame = frame.into();
    let tr = frame.tr;
    let api = crate::error::ApiError::from(e);
    let status = api.code.status();
    let _ = state;
    if status.is_server_error() {
        tracing::error!(cause = api.cause.as_deref().unwrap_or(""), "a console page failed");
        let text = if status == StatusCode::SERVICE_UNAVAILABLE {
            tr.t("The database is unavailable. Try again in a moment.")
        } else {
            tr.t("Something went wrong on ebb's side; the log has the details.")
        };
        return message_page(status, frame, tr.t("Not done"), text);
    }
    message_page(status, frame, tr.t("Not done"), &api.message)
}

/// Keeps the operator's choice of language (`?to=en|zh`) in a cookie and goes back to the console.
async fn choose_language(
    State(state): State<AppState>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let to = match q.get("to").map(String::as_str) {
        Some("zh") => "zh",
        _ => "en",
    };
    let mut res = Redirect::to("/console/dashboard").into_response();
    res.headers_mut().append(header::SET_COOKIE, state.console.cookie(LANG_COOKIE, to, 365 * 86_400));
    res
}

/// A form field as given, trimmed; `None` when empty.
pub(crate) fn given(s: &str) -> Option<String> {
    Some(s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// An optional `YYYY-MM-DD` field (`name` in the message) as the seconds of that day's start.
pub(crate) fn optional_day(name: &str, s: &str) -> Result<Option<i64>, String> {
    match given(s) {
        Some(s) => day_start_s(&s).map(Some).ok_or(format!("{name} must be a date, YYYY-MM-DD")),
        None => Ok(None),
    }
}

/// `YYYY-MM-DD` (UTC) as seconds since the epoch, at the start of that day.
pub(crate) fn day_start_s(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (s[0..4].parse().ok()?, s[5..7].parse().ok()?, s[8..10].parse().ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1970..=9999).contains(&y) {
        return None;
    }
    // Howard Hinnant's days_from_civil.
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    // 2026-02-31 is refused rather than read as March 3rd.
    (crate::pages::date::iso_utc(days * 86_400_000)[..10] == *s).then_some(days * 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_parse_as_utc_midnights_and_impossible_dates_do_not() {
        assert_eq!(day_start_s("1970-01-01"), Some(0));
        assert_eq!(day_start_s("2026-12-03"), Some(1_796_256_000));
        assert_eq!(day_start_s("2000-02-29"), Some(951_782_400));
        for bad in ["2026-02-31", "2026-13-01", "26-12-03", "2026/12/03", "", "2026-12-3x"] {
            assert_eq!(day_start_s(bad), None, "{bad}");
        }
    }

    #[test]
    fn csrf_tokens_are_bound_to_their_session_and_server_key() {
        let c = Console::new(ConsoleSettings::default(), "http://x", None, &[1; 32]);
        let t = c.csrf_token("session-a");
        assert!(c.csrf_ok("session-a", &t));
        assert!(!c.csrf_ok("session-b", &t));
        assert!(!c.csrf_ok("session-a", "not base64!"));
        let other = Console::new(ConsoleSettings::default(), "http://x", None, &[2; 32]);
        assert!(!other.csrf_ok("session-a", &t));
    }
}
