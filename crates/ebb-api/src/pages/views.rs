//! The page's templates and the frame every page shares.

use askama::Template;
use axum::http::header::{self, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ebb_store::links::LinkView;

use super::i18n::{Lang, Texts};
use super::security::csp_with_logo;
use super::{network_name, PAGE_PATH};
use crate::AppState;

/// What every page shows around its content.
pub(super) struct Frame {
    pub(super) t: &'static Texts,
    pub(super) lang: Lang,
    pub(super) brand: String,
    pub(super) logo: Option<String>,
    pub(super) return_url: Option<String>,
    pub(super) switch_href: String,
    /// Reload every few seconds (the refund is still moving).
    pub(super) refresh: bool,
}

pub(super) struct Summary {
    pub(super) amount: String,
    pub(super) symbol: String,
    pub(super) token_id: String,
    pub(super) network: String,
}

#[derive(Template)]
#[template(path = "refund_link/form.html")]
pub(super) struct FormPage<'a> {
    pub(super) frame: Frame,
    pub(super) refund: Summary,
    pub(super) token: &'a str,
    pub(super) csrf: &'a str,
    pub(super) address: &'a str,
    pub(super) address_label: String,
    pub(super) prefilled: bool,
    pub(super) error: Option<&'a str>,
    pub(super) warn_network: String,
    pub(super) expires_iso: String,
    pub(super) expires_text: String,
}

#[derive(Template)]
#[template(path = "refund_link/confirm.html")]
pub(super) struct ConfirmPage<'a> {
    pub(super) frame: Frame,
    pub(super) refund: Summary,
    pub(super) token: &'a str,
    pub(super) csrf: &'a str,
    pub(super) address: &'a str,
    pub(super) chunks: Vec<String>,
    pub(super) poisoning: bool,
    pub(super) error: Option<&'a str>,
}

pub(super) struct TxLine {
    pub(super) hash: String,
    pub(super) url: Option<String>,
    pub(super) amount: String,
    pub(super) status: String,
}

#[derive(Template)]
#[template(path = "refund_link/status.html")]
pub(super) struct StatusPage {
    pub(super) frame: Frame,
    pub(super) refund: Summary,
    pub(super) title: &'static str,
    pub(super) text: &'static str,
    pub(super) note: Option<&'static str>,
    pub(super) status_label: &'static str,
    pub(super) address: String,
    pub(super) transactions: Vec<TxLine>,
}

#[derive(Template)]
#[template(path = "refund_link/message.html")]
pub(super) struct MessagePage {
    pub(super) frame: Frame,
    pub(super) title: &'static str,
    pub(super) text: &'static str,
}

pub(super) fn html(status: StatusCode, body: Result<String, askama::Error>, csp: Option<String>) -> Response {
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
        Some(t) if ebb_app::links::LinkToken::parse(t).is_some() => {
            format!("{PAGE_PATH}?token={t}&lang={}", lang.other().param())
        }
        _ => format!("{PAGE_PATH}?lang={}", lang.other().param()),
    }
}

pub(super) fn bare_frame(lang: Lang, token: Option<&str>) -> Frame {
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

pub(super) fn frame_for(view: &LinkView, lang: Lang, token: &str) -> Frame {
    let d = &view.link.display;
    Frame {
        brand: d.developer_name.clone().unwrap_or_default(),
        logo: d.logo_url.clone(),
        return_url: d.return_url.clone(),
        ..bare_frame(lang, Some(token))
    }
}

/// A page with only a title and a sentence (an invalid, expired or replaced link, a refused post).
pub(super) fn message(status: StatusCode, frame: Frame, title: &'static str, text: &'static str) -> Response {
    let csp = csp_with_logo(frame.logo.as_deref());
    html(status, MessagePage { frame, title, text }.render(), csp)
}

pub(super) fn invalid_link(lang: Lang) -> Response {
    let t = lang.texts();
    message(StatusCode::NOT_FOUND, bare_frame(lang, None), t.invalid_title, t.invalid_text)
}

pub(super) fn summary(state: &AppState, view: &LinkView) -> Summary {
    let r = &view.refund;
    let symbol = state.registry.get(&r.token_id).map(|t| t.symbol.clone()).unwrap_or_else(|| r.token_id.clone());
    Summary {
        amount: crate::wire::decimal(&state.registry, &r.token_id, r.amount),
        symbol,
        token_id: r.token_id.clone(),
        network: network_name(&r.chain_id),
    }
}
