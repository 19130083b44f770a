//! The console's templates and what they are filled with.

use askama::Template;
use axum::http::header;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ebb_app::operators::Permission;
use ebb_core::Amount;

use super::i18n::Tr;
use super::Op;
use crate::pages::date::iso_utc;
use crate::AppState;

/// The frame of every signed-in page: who is signed in, the menu, the logout form.
pub(crate) struct Nav {
    pub(crate) tr: Tr,
    pub(crate) email: String,
    pub(crate) role: &'static str,
    pub(crate) csrf: String,
    pub(crate) current: &'static str,
    pub(crate) may_administer: bool,
    /// A merchant-limited operator's merchants, and the one it acts for now.
    pub(crate) merchants: Vec<String>,
    pub(crate) acting: String,
}

impl Nav {
    pub(crate) fn new(_state: &AppState, op: &Op, current: &'static str) -> Self {
        Nav {
            tr: op.tr,
            email: op.signed.operator.email.clone(),
            role: op.role().as_str(),
            csrf: op.csrf.clone(),
            current,
            may_administer: op.may(Permission::Administer),
            merchants: op.signed.operator.merchant_ids.clone(),
            acting: op.actor.merchant.clone().unwrap_or_default(),
        }
    }

    pub(crate) fn is(&self, page: &str) -> bool {
        self.current == page
    }
}

pub(crate) fn html(status: StatusCode, body: Result<String, askama::Error>) -> Response {
    match body {
        Ok(body) => (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a console page");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// What frames a page: its language, and the menu when someone is signed in.
pub(crate) struct Frame {
    pub(crate) tr: Tr,
    pub(crate) nav: Option<Nav>,
}

impl From<Nav> for Frame {
    fn from(nav: Nav) -> Frame {
        Frame { tr: nav.tr, nav: Some(nav) }
    }
}

impl From<Tr> for Frame {
    fn from(tr: Tr) -> Frame {
        Frame { tr, nav: None }
    }
}

#[derive(Template)]
#[template(path = "console/message.html")]
pub(crate) struct MessagePage<'a> {
    pub(crate) tr: Tr,
    pub(crate) nav: Option<Nav>,
    pub(crate) title: &'a str,
    pub(crate) text: &'a str,
}

/// A page that says one thing; the caller gives `title` and `text` in the frame's language.
pub(crate) fn message_page(status: StatusCode, frame: impl Into<Frame>, title: &str, text: &str) -> Response {
    let Frame { tr, nav } = frame.into();
    html(status, MessagePage { tr, nav, title, text }.render())
}

/// Milliseconds as `2026-12-03 10:00:00 UTC`.
pub(crate) fn when_ms(ms: i64) -> String {
    let iso = iso_utc(ms);
    format!("{} UTC", iso.trim_end_matches('Z').replace('T', " "))
}

pub(crate) fn when_s(s: i64) -> String {
    when_ms(s.saturating_mul(1000))
}

pub(crate) fn amount(state: &AppState, token_id: &str, a: Amount) -> String {
    let symbol = state.registry.get(token_id).map(|t| t.symbol.as_str()).unwrap_or(token_id);
    format!("{} {symbol}", crate::wire::decimal(&state.registry, token_id, a))
}

/// A page of a list: where the newer and older pages are.
pub(crate) struct Pager {
    pub(crate) total: i64,
    pub(crate) newer: Option<String>,
    pub(crate) older: Option<String>,
}

impl Pager {
    /// `query` is the list's filter as a query string (without the cursor).
    pub(crate) fn new<T>(path: &str, query: &str, page: &ebb_store::page::Page<T>) -> Self {
        let sep = if query.is_empty() { "" } else { "&" };
        let link = |k: &str, v: &str| (!v.is_empty()).then(|| format!("{path}?{query}{sep}{k}={v}"));
        Pager { total: page.total_count, newer: link("before", &page.before), older: link("after", &page.after) }
    }
}

/// `key=value&…` of the non-empty pairs, each value percent-encoded.
pub(crate) fn query_string(pairs: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        s.append_pair(k, v);
    }
    s.finish()
}
