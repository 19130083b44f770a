//! What keeps the page safe: link tokens (only their hash is stored), CSRF tokens bound to the link
//! and a session cookie, rate limits per link and per client, and the security headers of every
//! response (CSP, no framing, no referrer, no caching).

use std::net::{IpAddr, SocketAddr};

use axum::extract::connect_info::ConnectInfo;
use axum::extract::FromRequestParts;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::response::Response;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::limits::RateLimiter;
use super::{LinkSettings, PAGE_PATH};

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

    pub(super) fn csrf_token(&self, link_id: &str, session: &str) -> String {
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

    pub(super) fn csrf_ok(&self, link_id: &str, session: Option<&str>, field: Option<&str>) -> bool {
        let (Some(session), Some(field)) = (session, field) else { return false };
        let Ok(given) = B64.decode(field) else { return false };
        self.csrf_mac(link_id, session).verify_slice(&given).is_ok()
    }

    pub(super) fn client(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> String {
        client_address(self.settings.client_ip_header.as_deref(), headers, peer)
    }

    pub(super) fn allow_post(&self, link_id: Option<&str>, client: &str) -> bool {
        let s = &self.settings;
        let now = crate::now_ms().max(0) as u64;
        let by_client = self.limiter.allow(&format!("client:{client}"), s.posts_per_client, s.limit_window, now);
        let by_link =
            link_id.is_none_or(|l| self.limiter.allow(&format!("link:{l}"), s.posts_per_link, s.limit_window, now));
        by_client && by_link
    }
}

/// The client's address: the last entry of `ip_header` (set by the reverse proxy) when configured and
/// present, else the TCP peer's.
pub(crate) fn client_address(ip_header: Option<&str>, headers: &HeaderMap, peer: Option<IpAddr>) -> String {
    let from_header = ip_header.and_then(|h| headers.get(h)).and_then(|v| {
        v.to_str().ok().and_then(|s| s.rsplit(',').next()).map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
    });
    from_header.or_else(|| peer.map(|p| p.to_string())).unwrap_or_else(|| "unknown".into())
}

/// The value of cookie `name`, if the request carries it.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Every page response: no framing, no sniffing, no referrer, no caching, and a strict CSP unless the
/// page set its own (to allow the merchant's logo).
pub(crate) async fn security_headers(mut res: Response) -> Response {
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
pub(super) fn csp_with_logo(logo_url: Option<&str>) -> Option<String> {
    let url = url::Url::parse(logo_url?).ok()?;
    let origin = url.origin().ascii_serialization();
    Some(CSP_NO_LOGO.replace("img-src 'self'", &format!("img-src 'self' {origin}")))
}

/// The TCP peer, when the server was started with connection info.
pub(crate) struct Peer(pub(crate) Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn the_logo_origin_alone_joins_the_image_sources() {
        let csp = csp_with_logo(Some("https://cdn.example.com/brand/logo.png?v=2")).unwrap();
        assert!(csp.contains("img-src 'self' https://cdn.example.com;"), "{csp}");
        assert!(csp.contains("script-src 'self';"));
        assert!(csp_with_logo(None).is_none());
    }
}
