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

pub mod i18n;
mod limits;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ebb_core::refund::CANCELLED_REASON;
use ebb_core::screening::{looks_like_poisoning, Denylist};
use ebb_core::{Address, ChainFamily, RefundStatus, Token};
use ebb_store::links::{LinkStatus, LinkView, Refusal};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use self::i18n::{Lang, Texts};
use self::limits::RateLimiter;
use crate::AppState;

/// Where the pages live; the API's `Link.url` is the public base URL plus this.
pub const PAGE_PATH: &str = "/refund-link";
const SESSION_COOKIE: &str = "ebb_link_session";
/// Longest address any supported chain has, with room to spare; longer input is refused unparsed.
const MAX_ADDRESS_LEN: usize = 128;
/// A form post is a token, a CSRF token, an address and two flags: a few hundred bytes.
const MAX_FORM_BYTES: usize = 8 * 1024;

/// How refund links behave; `ebb serve` reads these from the configuration (docs/REFUND_LINKS.md).
#[derive(Debug, Clone)]
pub struct LinkSettings {
    /// The base URL customers reach ebb at (`https://refunds.example.com`); links are
    /// `{public_url}/refund-link?token=…`. Empty: `http://` + the address ebb listens on.
    pub public_url: String,
    /// How long a link stays usable.
    pub ttl: Duration,
    /// Addresses refused on submit.
    pub denylist: Arc<Denylist>,
    /// Form posts one link may make per window.
    pub posts_per_link: u32,
    /// Form posts one client address may make per window.
    pub posts_per_client: u32,
    pub limit_window: Duration,
    /// A header carrying the client's address, set by a reverse proxy in front of ebb (for example
    /// `X-Forwarded-For`: its last entry is used). Unset: the TCP peer's address.
    pub client_ip_header: Option<String>,
    /// Block-explorer transaction URL prefixes by chain id; a chain without one (the sandbox) shows
    /// the hash only.
    pub explorers: HashMap<String, String>,
}

impl Default for LinkSettings {
    fn default() -> Self {
        LinkSettings {
            public_url: String::new(),
            ttl: Duration::from_secs(7 * 24 * 3600),
            denylist: Arc::new(Denylist::default()),
            posts_per_link: 20,
            posts_per_client: 60,
            limit_window: Duration::from_secs(600),
            client_ip_header: None,
            explorers: default_explorers(),
        }
    }
}

/// The block explorers of the mainnets in the built-in token registry.
pub fn default_explorers() -> HashMap<String, String> {
    [
        ("ETH", "https://etherscan.io/tx/"),
        ("ARBITRUM_ETH", "https://arbiscan.io/tx/"),
        ("BASE_ETH", "https://basescan.org/tx/"),
        ("MATIC", "https://polygonscan.com/tx/"),
        ("BSC_BNB", "https://bscscan.com/tx/"),
        ("TRON", "https://tronscan.org/#/transaction/"),
        ("SOL", "https://solscan.io/tx/"),
    ]
    .into_iter()
    .map(|(c, u)| (c.to_owned(), u.to_owned()))
    .collect()
}

/// What a network is called on the page.
pub fn network_name(chain_id: &str) -> String {
    match chain_id {
        "ETH" => "Ethereum (ERC-20)",
        "ARBITRUM_ETH" => "Arbitrum One",
        "BASE_ETH" => "Base",
        "MATIC" => "Polygon PoS",
        "BSC_BNB" => "BNB Smart Chain (BEP-20)",
        "TRON" => "Tron (TRC-20)",
        "SOL" => "Solana (SPL)",
        other => other,
    }
    .to_owned()
}

/// The refund pages' settings and state.
pub struct LinkPages {
    pub settings: LinkSettings,
    limiter: RateLimiter,
    /// Keys the CSRF tokens; derived from the server key, so every ebb process on one database agrees.
    csrf_key: [u8; 32],
}

impl LinkPages {
    pub fn new(settings: LinkSettings, server_key_seed: &[u8; 32]) -> Self {
        let mut h = Sha256::new();
        h.update(b"ebb refund link csrf key v1");
        h.update(server_key_seed);
        LinkPages { settings, limiter: RateLimiter::default(), csrf_key: h.finalize().into() }
    }

    /// `Link.url`: the page, to which the token is appended as `?token=`.
    pub fn page_url(&self) -> String {
        format!("{}{PAGE_PATH}", self.settings.public_url.trim_end_matches('/'))
    }

    fn csrf_token(&self, link_id: &str, session: &str) -> String {
        B64.encode(self.csrf_mac(link_id, session).finalize().into_bytes())
    }

    fn csrf_mac(&self, link_id: &str, session: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.csrf_key).expect("HMAC takes any key length");
        mac.update(b"csrf|");
        mac.update(link_id.as_bytes());
        mac.update(b"|");
        mac.update(session.as_bytes());
        mac
    }

    fn csrf_ok(&self, link_id: &str, session: Option<&str>, field: Option<&str>) -> bool {
        let (Some(session), Some(field)) = (session, field) else { return false };
        let Ok(given) = B64.decode(field) else { return false };
        self.csrf_mac(link_id, session).verify_slice(&given).is_ok()
    }

    fn client(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> String {
        let from_header = self.settings.client_ip_header.as_deref().and_then(|h| headers.get(h)).and_then(|v| {
            v.to_str().ok().and_then(|s| s.rsplit(',').next()).map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
        });
        from_header.or_else(|| peer.map(|p| p.to_string())).unwrap_or_else(|| "unknown".into())
    }

    fn allow_post(&self, link_id: Option<&str>, client: &str) -> bool {
        let s = &self.settings;
        let now = crate::now_ms().max(0) as u64;
        let by_client = self.limiter.allow(&format!("client:{client}"), s.posts_per_client, s.limit_window, now);
        let by_link =
            link_id.is_none_or(|l| self.limiter.allow(&format!("link:{l}"), s.posts_per_link, s.limit_window, now));
        by_client && by_link
    }
}

/// A new link token: 32 random bytes, URL-safe base64 (43 characters).
pub fn new_link_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    B64.encode(bytes)
}

/// What the database keeps of a token.
pub fn hash_link_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A token of the shape ebb hands out; anything else is refused before touching the database.
fn well_formed_token(t: &str) -> bool {
    t.len() == 43 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

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

/// Every page response: no framing, no sniffing, no referrer, no caching, and a strict CSP unless the
/// page set its own (to allow the merchant's logo).
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    let set = |h: &mut HeaderMap, name: HeaderName, value: &'static str| {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    };
    set(h, header::CONTENT_SECURITY_POLICY, &CSP_NO_LOGO);
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::CACHE_CONTROL, "no-store");
    set(h, HeaderName::from_static("cross-origin-opener-policy"), "same-origin");
    res
}

const CSP_NO_LOGO: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The CSP of a page showing a logo from `logo_url`: only that origin is added, for images only.
fn csp_with_logo(logo_url: Option<&str>) -> Option<String> {
    let url = url::Url::parse(logo_url?).ok()?;
    let origin = url.origin().ascii_serialization();
    Some(CSP_NO_LOGO.replace("img-src 'self'", &format!("img-src 'self' {origin}")))
}

/// The TCP peer, when the server was started with connection info.
struct Peer(Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())))
    }
}

// ---------------------------------------------------------------------------------------------------
// Templates

/// What every page shows around its content.
struct Frame {
    t: &'static Texts,
    lang: Lang,
    brand: String,
    logo: Option<String>,
    return_url: Option<String>,
    switch_href: String,
    /// Reload every few seconds (the refund is still moving).
    refresh: bool,
}

struct Summary {
    amount: String,
    symbol: String,
    token_id: String,
    network: String,
}

#[derive(Template)]
#[template(path = "refund_link/form.html")]
struct FormPage<'a> {
    frame: Frame,
    refund: Summary,
    token: &'a str,
    csrf: &'a str,
    address: &'a str,
    address_label: String,
    prefilled: bool,
    error: Option<&'a str>,
    warn_network: String,
    expires_iso: String,
    expires_text: String,
}

#[derive(Template)]
#[template(path = "refund_link/confirm.html")]
struct ConfirmPage<'a> {
    frame: Frame,
    refund: Summary,
    token: &'a str,
    csrf: &'a str,
    address: &'a str,
    chunks: Vec<String>,
    poisoning: bool,
    error: Option<&'a str>,
}

struct TxLine {
    hash: String,
    url: Option<String>,
    amount: String,
    status: String,
}

#[derive(Template)]
#[template(path = "refund_link/status.html")]
struct StatusPage {
    frame: Frame,
    refund: Summary,
    title: &'static str,
    text: &'static str,
    note: Option<&'static str>,
    status_label: &'static str,
    address: String,
    transactions: Vec<TxLine>,
}

#[derive(Template)]
#[template(path = "refund_link/message.html")]
struct MessagePage {
    frame: Frame,
    title: &'static str,
    text: &'static str,
}

fn html(status: StatusCode, body: Result<String, askama::Error>, csp: Option<String>) -> Response {
    match body {
        Ok(body) => {
            let mut res = (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
            if let Some(v) = csp.and_then(|c| HeaderValue::from_str(&c).ok()) {
                res.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
            }
            res
        }
        Err(e) => {
            tracing::error!(error = %e, "rendering a refund page");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// The language switch's target: the link's GET page in the other language.
fn switch_href(token: Option<&str>, lang: Lang) -> String {
    match token {
        Some(t) if well_formed_token(t) => format!("{PAGE_PATH}?token={t}&lang={}", lang.other().param()),
        _ => format!("{PAGE_PATH}?lang={}", lang.other().param()),
    }
}

fn bare_frame(lang: Lang, token: Option<&str>) -> Frame {
    Frame {
        t: lang.texts(),
        lang,
        brand: String::new(),
        logo: None,
        return_url: None,
        switch_href: switch_href(token, lang),
        refresh: false,
    }
}

fn frame_for(view: &LinkView, lang: Lang, token: &str) -> Frame {
    let d = &view.link.display;
    Frame {
        brand: d.developer_name.clone().unwrap_or_default(),
        logo: d.logo_url.clone(),
        return_url: d.return_url.clone(),
        ..bare_frame(lang, Some(token))
    }
}

/// A page with only a title and a sentence (an invalid, expired or replaced link, a refused post).
fn message(status: StatusCode, frame: Frame, title: &'static str, text: &'static str) -> Response {
    let csp = csp_with_logo(frame.logo.as_deref());
    html(status, MessagePage { frame, title, text }.render(), csp)
}

fn invalid_link(lang: Lang) -> Response {
    let t = lang.texts();
    message(StatusCode::NOT_FOUND, bare_frame(lang, None), t.invalid_title, t.invalid_text)
}

fn summary(state: &AppState, view: &LinkView) -> Summary {
    let r = &view.refund;
    let symbol = state.registry.get(&r.token_id).map(|t| t.symbol.clone()).unwrap_or_else(|| r.token_id.clone());
    Summary {
        amount: crate::wire::decimal(&state.registry, &r.token_id, r.amount),
        symbol,
        token_id: r.token_id.clone(),
        network: network_name(&r.chain_id),
    }
}

fn lang_of(asked: Option<&str>, headers: &HeaderMap) -> Lang {
    Lang::choose(asked, headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()))
}

fn session_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_owned())
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
    let Some(token) = q.token.as_deref().filter(|t| well_formed_token(t)) else { return invalid_link(lang) };
    let hash = hash_link_token(token);
    let view = match state.store.refund_link(&hash).await {
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
        match state.store.open_refund_link(&hash).await {
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
                status: tx.status.clone(),
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

fn store_error(lang: Lang, e: ebb_store::StoreError) -> Response {
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
    hash: String,
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
    let Some(token) = form.token.clone().filter(|t| well_formed_token(t)) else {
        if !state.links.allow_post(None, &client) {
            return Err(message(StatusCode::TOO_MANY_REQUESTS, bare_frame(lang, None), t.rate_title, t.rate_text));
        }
        return Err(invalid_link(lang));
    };
    let hash = hash_link_token(&token);
    let view = match state.store.refund_link(&hash).await {
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
    Ok((Posted { view, lang, token, session, hash, refund_token }, form))
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
    if let Err(e) = crate::destinations::check(state, "address", &address).await {
        tracing::warn!(link = %p.view.link.link_id, refund = %p.view.refund.refund_id, reason = %e.message,
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
    match state.store.submit_refund_link(&p.hash, address).await {
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
                Refusal::AlreadyUsed | Refusal::RefundClosed(_) => match state.store.refund_link(&p.hash).await {
                    Ok(Some(view)) => conflict_used(&state, &view, p.lang, &p.token),
                    Ok(None) => invalid_link(p.lang),
                    Err(e) => store_error(p.lang, e),
                },
            }
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

/// `2026-11-24T10:00:00Z` from milliseconds since the epoch (UTC, proleptic Gregorian).
fn iso_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_iso() {
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_utc(1_795_478_542_242), "2026-11-24T00:02:22Z");
        assert_eq!(iso_utc(951_782_400_000), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn tokens_are_256_bits_and_only_their_hash_is_kept() {
        let t = new_link_token();
        assert!(well_formed_token(&t), "{t}");
        assert_eq!(B64.decode(&t).unwrap().len(), 32);
        assert_ne!(new_link_token(), t);
        assert_eq!(hash_link_token(&t).len(), 64);
        assert!(!well_formed_token(&t[1..]));
        assert!(!well_formed_token(&format!("{}!", &t[1..])));
    }

    #[test]
    fn csrf_tokens_are_bound_to_link_and_session() {
        let pages = LinkPages::new(LinkSettings::default(), &[7; 32]);
        let token = pages.csrf_token("L1", "session-a");
        assert!(pages.csrf_ok("L1", Some("session-a"), Some(&token)));
        assert!(!pages.csrf_ok("L2", Some("session-a"), Some(&token)), "another link");
        assert!(!pages.csrf_ok("L1", Some("session-b"), Some(&token)), "another session");
        assert!(!pages.csrf_ok("L1", None, Some(&token)), "no cookie");
        assert!(!pages.csrf_ok("L1", Some("session-a"), None), "no field");
        let other_key = LinkPages::new(LinkSettings::default(), &[8; 32]);
        assert!(!other_key.csrf_ok("L1", Some("session-a"), Some(&token)), "another server key");
    }

    #[test]
    fn addresses_are_shown_in_groups_of_four() {
        assert_eq!(
            chunks(ChainFamily::Evm, "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
            ["0x", "5aAe", "b605", "3F3E", "94C9", "b9A0", "9f33", "6694", "35E7", "Ef1B", "eAed"]
        );
        assert_eq!(chunks(ChainFamily::Tron, "TJCnKsPa7y"), ["TJCn", "KsPa", "7y"]);
    }

    #[test]
    fn the_logo_origin_alone_joins_the_image_sources() {
        let csp = csp_with_logo(Some("https://cdn.example.com/brand/logo.png?v=2")).unwrap();
        assert!(csp.contains("img-src 'self' https://cdn.example.com;"), "{csp}");
        assert!(csp.contains("script-src 'self';"));
        assert!(csp_with_logo(None).is_none());
    }
}
