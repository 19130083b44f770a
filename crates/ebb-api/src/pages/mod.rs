//! The refund-link page: the one part of ebb a customer sees.
//!
//! Server-rendered HTML (askama) that works without JavaScript: `GET /refund-link?token=…` shows the
//! refund and the address form, `POST /refund-link/confirm` shows the address in chunks to compare,
//! `POST /refund-link/submit` takes it and redirects to the status page, which refreshes itself until
//! the refund is paid. One small script checks the address while it is typed by asking
//! `GET /refund-link/check`, the same validator the server applies on every step.
//!
//! Safety: the token (256 random bits) is stored only as its SHA-256; single use is the database's
//! (`Store::submit_refund_link`); form posts carry a CSRF token bound to the link and to a session
//! cookie; posts are rate-limited per link and per client; every response forbids framing, third-party
//! content and referrers; an address on the operator's denylist is refused with a neutral message; a
//! look-alike of the original payer's address needs an explicit acknowledgement.

pub(crate) mod date;
pub mod i18n;
pub(crate) mod limits;
pub(crate) mod security;
pub(crate) mod settings;
mod views;

use std::net::IpAddr;

use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ebb_app::links::{self, LinkToken};
use ebb_core::refund::CANCELLED_REASON;
use ebb_core::screening::looks_like_poisoning;
use ebb_core::{Address, ChainFamily, RefundStatus, Token};
use ebb_store::links::{LinkStatus, LinkView, Refusal};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use self::date::iso_utc;
use self::i18n::Lang;
pub use self::security::LinkPages;
use self::security::{csp_with_logo, security_headers, Peer};
pub use self::settings::{default_explorers, network_name, LinkSettings};
use self::views::{
    bare_frame, frame_for, html, invalid_link, message, summary, ConfirmPage, FormPage, Frame, StatusPage, TxLine,
};
use crate::AppState;

/// Where the pages live; the API's `Link.url` is the public base URL plus this.
pub const PAGE_PATH: &str = "/refund-link";
const SESSION_COOKIE: &str = "ebb_link_session";
/// Longest address any supported chain has, with room to spare; longer input is refused unparsed.
const MAX_ADDRESS_LEN: usize = 128;
/// A form post is a token, a CSRF token, an address and two flags: a few hundred bytes.
const MAX_FORM_BYTES: usize = 8 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(PAGE_PATH, get(show))
        .route("/refund-link/confirm", post(confirm))
        .route("/refund-link/submit", post(submit))
        .route("/refund-link/check", get(check))
        .route("/refund-link/assets/{name}", get(asset))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::map_response(security_headers))
}

fn lang_of(asked: Option<&str>, headers: &HeaderMap) -> Lang {
    Lang::choose(asked, headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()))
}

fn session_of(headers: &HeaderMap) -> Option<String> {
    security::cookie(headers, SESSION_COOKIE)
        .filter(|v| v.len() == 22 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

// ---------------------------------------------------------------------------------------------------
// Handlers

#[derive(Debug, Deserialize)]
struct ShowQuery {
    token: Option<String>,
    lang: Option<String>,
    submitted: Option<String>,
}

async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<ShowQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else { return invalid_link(lang_of(None, &headers)) };
    let lang = lang_of(q.lang.as_deref(), &headers);
    let Some(link_token) = q.token.as_deref().and_then(LinkToken::parse) else { return invalid_link(lang) };
    let token = link_token.as_str();
    let view = match links::view(&state.engine, &link_token).await {
        Ok(Some(v)) => v,
        Ok(None) => return invalid_link(lang),
        Err(e) => return store_error(lang, e),
    };
    let t = lang.texts();
    match view.link.status {
        LinkStatus::Replaced => {
            return message(StatusCode::GONE, frame_for(&view, lang, token), t.replaced_title, t.replaced_text)
        }
        LinkStatus::Used => return status_page(&state, &view, lang, token, q.submitted.is_some()),
        LinkStatus::Active => {}
    }
    if !matches!(view.refund.status, RefundStatus::PendingConfirmation | RefundStatus::AddressPending) {
        // Cancelled by the merchant while the link was out.
        return status_page(&state, &view, lang, token, false);
    }
    if view.link.is_expired(crate::now_ms()) {
        return message(StatusCode::GONE, frame_for(&view, lang, token), t.expired_title, t.expired_text);
    }
    // The first opening moves the refund to AddressPending (and tells the merchant by webhook).
    let view = if view.link.opened_at_ms.is_none() || view.refund.status == RefundStatus::PendingConfirmation {
        match links::open(&state.engine, &link_token).await {
            Ok(Some(v)) => v,
            Ok(None) => return invalid_link(lang),
            Err(e) => return store_error(lang, e),
        }
    } else {
        view
    };
    let (session, new_session) = match session_of(&headers) {
        Some(s) => (s, false),
        None => (new_session(), true),
    };
    let default = view.link.default_address.clone();
    let mut res = form_page(&state, &view, lang, token, &session, &default, None, StatusCode::OK);
    if new_session {
        let secure = if state.links.settings.public_url.starts_with("https://") { "; Secure" } else { "" };
        let cookie =
            format!("{SESSION_COOKIE}={session}; Path={PAGE_PATH}; HttpOnly; SameSite=Strict; Max-Age=86400{secure}");
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res
}

fn new_session() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    B64.encode(bytes)
}

#[allow(clippy::too_many_arguments)]
fn form_page(
    state: &AppState,
    view: &LinkView,
    lang: Lang,
    token: &str,
    session: &str,
    address: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let t = lang.texts();
    let refund = summary(state, view);
    let csrf = state.links.csrf_token(&view.link.link_id, session);
    let page = FormPage {
        frame: frame_for(view, lang, token),
        address_label: t.address_for(&refund.symbol, &refund.network),
        warn_network: t.warn_network(&refund.symbol, &refund.network),
        refund,
        token,
        csrf: &csrf,
        address,
        prefilled: !view.link.default_address.is_empty() && address == view.link.default_address,
        error,
        expires_iso: iso_utc(view.link.expires_at_ms),
        expires_text: format!("{} UTC", iso_utc(view.link.expires_at_ms).replace('T', " ").trim_end_matches('Z')),
    };
    let csp = csp_with_logo(view.link.display.logo_url.as_deref());
    html(status, page.render(), csp)
}

fn status_page(state: &AppState, view: &LinkView, lang: Lang, token: &str, just_submitted: bool) -> Response {
    let t = lang.texts();
    let r = &view.refund;
    let cancelled = r.failed_reason.as_deref() == Some(CANCELLED_REASON);
    let (title, text, label) = match r.status {
        RefundStatus::Pending | RefundStatus::AddressSubmitted => {
            (t.submitted_title, t.submitted_text, t.submitted_title)
        }
        RefundStatus::Processing => (t.sending_title, t.sending_text, t.sending_title),
        RefundStatus::Completed => (t.paid_title, t.paid_text, t.paid_title),
        RefundStatus::PartiallyCompleted => (t.partial_title, t.partial_text, t.partial_title),
        RefundStatus::Failed if cancelled => (t.cancelled_title, t.cancelled_text, t.cancelled_title),
        RefundStatus::Failed => (t.failed_title, t.failed_text, t.failed_title),
        RefundStatus::PendingConfirmation | RefundStatus::AddressPending => {
            (t.used_title, t.waiting_text, t.used_title)
        }
    };
    let moving = !r.status.is_terminal()
        && !matches!(r.status, RefundStatus::PendingConfirmation | RefundStatus::AddressPending);
    // Someone opening a used link who did not just submit through it learns it was used, first.
    let (title, text, note) = if view.link.status == LinkStatus::Used && !just_submitted && !r.status.is_terminal() {
        (t.used_title, t.used_text, Some(text))
    } else {
        (title, text, None)
    };
    let explorer = state.links.settings.explorers.get(&r.chain_id);
    let transactions = r
        .transactions
        .iter()
        .map(|tx| {
            let hash = tx.tx_hash.clone().unwrap_or_default();
            TxLine {
                url: explorer.filter(|_| !hash.is_empty()).map(|e| format!("{e}{hash}")),
                hash,
                amount: crate::wire::decimal(&state.registry, &tx.token_id, tx.amount),
                status: tx.status.as_str().to_owned(),
            }
        })
        .collect();
    let page = StatusPage {
        frame: Frame { refresh: moving, ..frame_for(view, lang, token) },
        refund: summary(state, view),
        title,
        text,
        note,
        status_label: label,
        address: r.to_address.clone(),
        transactions,
    };
    let csp = csp_with_logo(view.link.display.logo_url.as_deref());
    html(StatusCode::OK, page.render(), csp)
}

fn store_error(lang: Lang, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "refund page: store error");
    let t = lang.texts();
    message(StatusCode::SERVICE_UNAVAILABLE, bare_frame(lang, None), t.error_title, t.error_text)
}

#[derive(Debug, Deserialize)]
struct PostForm {
    token: Option<String>,
    csrf: Option<String>,
    lang: Option<String>,
    address: Option<String>,
    action: Option<String>,
    ack: Option<String>,
}

/// What both form posts check before looking at the address: a known link, a valid CSRF token, the
/// rate limits, and a link that still takes an address. `Err` is the page to answer instead.
struct Posted {
    view: LinkView,
    lang: Lang,
    token: String,
    session: String,
    link_token: LinkToken,
    /// The refund's token (its chain decides what an address is).
    refund_token: Token,
}

async fn admit(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
    form: Result<Form<PostForm>, FormRejection>,
) -> Result<(Posted, PostForm), Response> {
    let lang_guess = lang_of(None, headers);
    let form = match form {
        Ok(Form(f)) => f,
        Err(rejection) => {
            let t = lang_guess.texts();
            let status = match rejection {
                FormRejection::FailedToDeserializeFormBody(_) => StatusCode::BAD_REQUEST,
                other => other.status(),
            };
            return Err(message(status, bare_frame(lang_guess, None), t.bad_request_title, t.bad_request_text));
        }
    };
    let lang = lang_of(form.lang.as_deref(), headers);
    let t = lang.texts();
    let client = state.links.client(headers, peer);
    let Some(link_token) = form.token.as_deref().and_then(LinkToken::parse) else {
        if !state.links.allow_post(None, &client) {
            return Err(message(StatusCode::TOO_MANY_REQUESTS, bare_frame(lang, None), t.rate_title, t.rate_text));
        }
        return Err(invalid_link(lang));
    };
    let token = link_token.as_str().to_owned();
    let view = match links::view(&state.engine, &link_token).await {
        Ok(Some(v)) => v,
        Ok(None) => {
            if !state.links.allow_post(None, &client) {
                return Err(message(StatusCode::TOO_MANY_REQUESTS, bare_frame(lang, None), t.rate_title, t.rate_text));
            }
            return Err(invalid_link(lang));
        }
        Err(e) => return Err(store_error(lang, e)),
    };
    let frame = || frame_for(&view, lang, &token);
    if !state.links.allow_post(Some(&view.link.link_id), &client) {
        tracing::warn!(link = %view.link.link_id, client = %client, "refund page: rate limit hit");
        return Err(message(StatusCode::TOO_MANY_REQUESTS, frame(), t.rate_title, t.rate_text));
    }
    let session = session_of(headers);
    if !state.links.csrf_ok(&view.link.link_id, session.as_deref(), form.csrf.as_deref()) {
        return Err(message(StatusCode::FORBIDDEN, frame(), t.session_title, t.session_text));
    }
    match view.link.status {
        LinkStatus::Replaced => return Err(message(StatusCode::GONE, frame(), t.replaced_title, t.replaced_text)),
        LinkStatus::Used => return Err(conflict_used(state, &view, lang, &token)),
        LinkStatus::Active if view.link.is_expired(crate::now_ms()) => {
            return Err(message(StatusCode::GONE, frame(), t.expired_title, t.expired_text))
        }
        LinkStatus::Active => {}
    }
    let Some(refund_token) = state.registry.get(&view.refund.token_id).cloned() else {
        return Err(store_error(lang, ebb_store::StoreError::Internal("refund of an unknown token".into())));
    };
    let session = session.unwrap_or_default();
    Ok((Posted { view, lang, token, session, link_token, refund_token }, form))
}

/// "Already submitted": the status page, answered 409.
fn conflict_used(state: &AppState, view: &LinkView, lang: Lang, token: &str) -> Response {
    let mut res = status_page(state, view, lang, token, false);
    *res.status_mut() = StatusCode::CONFLICT;
    res
}

/// The address as typed, checked for the refund's chain, against the denylist and against the
/// destinations that would lose the money; `Err` is the message for the customer.
async fn check_address(state: &AppState, p: &Posted, raw: &str) -> Result<Address, &'static str> {
    let (t, token) = (p.lang.texts(), &p.refund_token);
    let raw = raw.trim();
    if raw.len() > MAX_ADDRESS_LEN {
        return Err(t.too_long);
    }
    let address = Address::parse(token.family, raw).map_err(|e| t.address_error(&e))?;
    if state.links.settings.denylist.contains(address.as_str()) {
        tracing::warn!(link = %p.view.link.link_id, refund = %p.view.refund.refund_id,
            "refund page: an address on the screening denylist was refused");
        return Err(t.denied);
    }
    if let Err(e) = state.engine.check_destination(&address).await {
        tracing::warn!(link = %p.view.link.link_id, refund = %p.view.refund.refund_id, reason = %e,
            "refund page: an address that would lose the money was refused");
        return Err(t.lost_destination);
    }
    Ok(address)
}

fn chunks(family: ChainFamily, address: &str) -> Vec<String> {
    let (prefix, rest) = match family {
        ChainFamily::Evm => address.split_at(2.min(address.len())),
        _ => ("", address),
    };
    let mut out: Vec<String> = Vec::new();
    if !prefix.is_empty() {
        out.push(prefix.to_owned());
    }
    let chars: Vec<char> = rest.chars().collect();
    out.extend(chars.chunks(4).map(|c| c.iter().collect()));
    out
}

async fn confirm(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    form: Result<Form<PostForm>, FormRejection>,
) -> Response {
    let (p, form) = match admit(&state, &headers, peer, form).await {
        Ok(x) => x,
        Err(page) => return page,
    };
    let raw = form.address.unwrap_or_default();
    if form.action.as_deref() == Some("edit") {
        return form_page(&state, &p.view, p.lang, &p.token, &p.session, &shown(&raw), None, StatusCode::OK);
    }
    match check_address(&state, &p, &raw).await {
        Err(msg) => refused_address(&state, &p, &raw, msg),
        Ok(address) => confirm_page(&state, &p, address.as_str(), None, StatusCode::OK),
    }
}

/// What the form shows back of what was typed.
fn shown(raw: &str) -> String {
    raw.trim().chars().take(MAX_ADDRESS_LEN).collect()
}

/// The form again, with what was typed and why it was refused (422).
fn refused_address(state: &AppState, p: &Posted, raw: &str, msg: &str) -> Response {
    form_page(state, &p.view, p.lang, &p.token, &p.session, &shown(raw), Some(msg), StatusCode::UNPROCESSABLE_ENTITY)
}

fn confirm_page(state: &AppState, p: &Posted, address: &str, error: Option<&str>, status: StatusCode) -> Response {
    let csrf = state.links.csrf_token(&p.view.link.link_id, &p.session);
    let page = ConfirmPage {
        frame: frame_for(&p.view, p.lang, &p.token),
        refund: summary(state, &p.view),
        token: &p.token,
        csrf: &csrf,
        address,
        chunks: chunks(p.refund_token.family, address),
        poisoning: looks_like_poisoning(p.refund_token.family, &p.view.link.default_address, address),
        error,
    };
    let csp = csp_with_logo(p.view.link.display.logo_url.as_deref());
    html(status, page.render(), csp)
}

async fn submit(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    form: Result<Form<PostForm>, FormRejection>,
) -> Response {
    let (p, form) = match admit(&state, &headers, peer, form).await {
        Ok(x) => x,
        Err(page) => return page,
    };
    let t = p.lang.texts();
    let raw = form.address.unwrap_or_default();
    let address = match check_address(&state, &p, &raw).await {
        Ok(a) => a,
        Err(msg) => return refused_address(&state, &p, &raw, msg),
    };
    let family = p.refund_token.family;
    if looks_like_poisoning(family, &p.view.link.default_address, address.as_str()) && form.ack.as_deref() != Some("1")
    {
        return confirm_page(
            &state,
            &p,
            address.as_str(),
            Some(t.poison_ack_missing),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    match links::submit(&state.engine, &p.link_token, address).await {
        Ok(Ok(_)) => {
            let to = format!("{PAGE_PATH}?token={}&lang={}&submitted=1", p.token, p.lang.param());
            (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
        }
        Ok(Err(refusal)) => {
            let frame = frame_for(&p.view, p.lang, &p.token);
            match refusal {
                Refusal::Unknown => invalid_link(p.lang),
                Refusal::Expired => message(StatusCode::GONE, frame, t.expired_title, t.expired_text),
                Refusal::Replaced => message(StatusCode::GONE, frame, t.replaced_title, t.replaced_text),
                Refusal::AlreadyUsed | Refusal::RefundClosed(_) => {
                    match links::view(&state.engine, &p.link_token).await {
                        Ok(Some(view)) => conflict_used(&state, &view, p.lang, &p.token),
                        Ok(None) => invalid_link(p.lang),
                        Err(e) => store_error(p.lang, e),
                    }
                }
            }
        }
        // Screening refused the address: the customer gets the same neutral message as for the denylist.
        Err(e @ ebb_app::AppError::RefusedByScreening { .. }) => {
            tracing::warn!(link = %p.view.link.link_id, refund = %p.view.refund.refund_id, reason = %e,
                "refund page: screening refused the address");
            refused_address(&state, &p, &raw, t.denied)
        }
        Err(e) => store_error(p.lang, e),
    }
}

#[derive(Debug, Deserialize)]
struct CheckQuery {
    token_id: Option<String>,
    address: Option<String>,
    lang: Option<String>,
}

#[derive(Debug, Serialize)]
struct CheckAnswer {
    ok: bool,
    message: &'static str,
}

/// The as-you-type check: is this an address of the token's chain? (The denylist is not consulted
/// here, so the page cannot be used to probe it.)
async fn check(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<CheckQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else { return StatusCode::BAD_REQUEST.into_response() };
    let t = lang_of(q.lang.as_deref(), &headers).texts();
    let Some(token) = q.token_id.as_deref().and_then(|id| state.registry.get(id)) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let raw = q.address.unwrap_or_default();
    let raw = raw.trim();
    let answer = if raw.len() > MAX_ADDRESS_LEN {
        CheckAnswer { ok: false, message: t.too_long }
    } else {
        match Address::parse(token.family, raw) {
            Ok(_) => CheckAnswer { ok: true, message: t.address_ok },
            Err(e) => CheckAnswer { ok: false, message: t.address_error(&e) },
        }
    };
    Json(answer).into_response()
}

async fn asset(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "refund.css" => (include_str!("assets/refund.css"), "text/css; charset=utf-8"),
        "refund.js" => (include_str!("assets/refund.js"), "text/javascript; charset=utf-8"),
        "icon.svg" => (include_str!("assets/icon.svg"), "image/svg+xml"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "public, max-age=3600")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_shown_in_groups_of_four() {
        assert_eq!(
            chunks(ChainFamily::Evm, "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
            ["0x", "5aAe", "b605", "3F3E", "94C9", "b9A0", "9f33", "6694", "35E7", "Ef1B", "eAed"]
        );
        assert_eq!(chunks(ChainFamily::Tron, "TJCnKsPa7y"), ["TJCn", "KsPa", "7y"]);
    }
}
