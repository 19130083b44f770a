//! Logging in and out, setting an account up, choosing the merchant to act for.

use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::header::{self, HeaderMap};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use ebb_app::operators::{self, LoginRefusal, SetupRefusal, SetupView};
use serde::Deserialize;

use super::i18n::Tr;
use super::views::{html, message_page, when_s, Nav};
use super::{cookie_of, error_page, Op, PRE_COOKIE, SESSION_COOKIE};
use crate::pages::security::Peer;
use crate::AppState;

#[derive(Template)]
#[template(path = "console/login.html")]
struct LoginPage<'a> {
    tr: Tr,
    nav: Option<Nav>,
    csrf: &'a str,
    email: &'a str,
    error: Option<String>,
    dev_notice: bool,
}

fn new_pre_cookie() -> String {
    ebb_app::secrets::generate()
}

/// The login form, bound to a pre-login cookie so that another site cannot log a browser in.
pub(super) async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let existing = cookie_of(&headers, PRE_COOKIE).filter(|c| ebb_app::secrets::well_formed(c));
    let pre = existing.clone().unwrap_or_else(new_pre_cookie);
    let csrf = state.console.csrf_token(&pre);
    let tr = Tr::of(&headers);
    let page =
        LoginPage { tr, nav: None, csrf: &csrf, email: "", error: None, dev_notice: state.console.settings.dev_notice };
    let mut res = html(StatusCode::OK, page.render());
    if existing.is_none() {
        res.headers_mut().append(header::SET_COOKIE, state.console.cookie(PRE_COOKIE, &pre, 3600));
    }
    res
}

#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    email: Option<String>,
    password: Option<String>,
    code: Option<String>,
    csrf: Option<String>,
}

pub(super) async fn login(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let console = &state.console;
    let client = console.client(&headers, peer);
    let pre = cookie_of(&headers, PRE_COOKIE).filter(|c| ebb_app::secrets::well_formed(c));
    let tr = Tr::of(&headers);
    let Ok(Form(f)) = form else {
        return message_page(
            StatusCode::BAD_REQUEST,
            tr,
            tr.t("Not a login"),
            tr.t("The login form was not filled in."),
        );
    };
    let email = f.email.unwrap_or_default();
    let again = |status: StatusCode, error: String| {
        let csrf = pre.as_deref().map(|p| console.csrf_token(p)).unwrap_or_default();
        let page = LoginPage {
            tr,
            nav: None,
            csrf: &csrf,
            email: &email,
            error: Some(error),
            dev_notice: console.settings.dev_notice,
        };
        html(status, page.render())
    };
    let csrf_ok = match (&pre, &f.csrf) {
        (Some(p), Some(c)) => console.csrf_ok(p, c),
        _ => false,
    };
    if !csrf_ok {
        return message_page(
            StatusCode::FORBIDDEN,
            tr,
            tr.t("This form has expired"),
            tr.t("Open the login page again (this browser must accept ebb's cookies)."),
        );
    }
    let now = crate::now_ms().max(0) as u64;
    let window = std::time::Duration::from_secs(60);
    if !console.logins.allow(&format!("login:{client}"), console.logins_per_minute, window, now) {
        return again(
            StatusCode::TOO_MANY_REQUESTS,
            tr.t("Too many login attempts from this address; wait a minute.").into(),
        );
    }
    let outcome = operators::login(
        &state.store,
        &console.settings,
        &email,
        f.password.as_deref().unwrap_or_default(),
        f.code.as_deref().unwrap_or_default(),
        &client,
    )
    .await;
    match outcome {
        Ok(Ok(session)) => {
            let mut res = Redirect::to("/console/dashboard").into_response();
            let max_age = console.settings.session_max.as_secs();
            res.headers_mut().append(header::SET_COOKIE, console.cookie(SESSION_COOKIE, &session.token, max_age));
            res
        }
        Ok(Err(LoginRefusal::Wrong)) => again(StatusCode::UNAUTHORIZED, tr.t("Wrong e-mail, password or code.").into()),
        Ok(Err(LoginRefusal::Locked { until })) => again(
            StatusCode::FORBIDDEN,
            tr.f1("Too many failed logins: this account is locked until {0}.", when_s(until)),
        ),
        Err(e) => error_page(&state, tr, e),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct CsrfForm {
    csrf: Option<String>,
}

pub(super) async fn logout(
    State(state): State<AppState>,
    op: Op,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let csrf = form.ok().and_then(|Form(f)| f.csrf);
    if let Err(refused) = op.check_post(&state, csrf.as_deref(), operators::Permission::Read, "log out").await {
        return refused;
    }
    if let Err(e) = operators::logout(&state.store, &op.signed, &op.client).await {
        return error_page(&state, op.nav(&state, ""), e);
    }
    let mut res = Redirect::to("/console/login").into_response();
    res.headers_mut().append(header::SET_COOKIE, state.console.cookie(SESSION_COOKIE, "", 0));
    res
}

#[derive(Debug, Deserialize)]
pub(super) struct MerchantForm {
    csrf: Option<String>,
    merchant_id: Option<String>,
}

/// A merchant-limited operator chooses which of its merchants it works on.
pub(super) async fn switch_merchant(
    State(state): State<AppState>,
    op: Op,
    form: Result<Form<MerchantForm>, FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else { return Redirect::to("/console/dashboard").into_response() };
    if let Err(refused) = op.check_post(&state, f.csrf.as_deref(), operators::Permission::Read, "switch").await {
        return refused;
    }
    match operators::act_for(&state.store, &op.signed, f.merchant_id.as_deref().unwrap_or_default()).await {
        Ok(()) => Redirect::to("/console/dashboard").into_response(),
        Err(e) => error_page(&state, op.nav(&state, ""), e),
    }
}

#[derive(Template)]
#[template(path = "console/setup.html")]
struct SetupPage<'a> {
    tr: Tr,
    nav: Option<Nav>,
    token: &'a str,
    view: &'a SetupView,
    error: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
pub(super) struct SetupQuery {
    token: Option<String>,
}

fn invalid_setup(tr: Tr) -> Response {
    message_page(
        StatusCode::NOT_FOUND,
        tr,
        tr.t("This set-up link does not work"),
        tr.t("It was used already, has expired, or was replaced by a newer one. Ask an admin for a new link."),
    )
}

/// The one-time set-up page: the key for the authenticator app, and the password to choose.
pub(super) async fn setup_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<SetupQuery>, QueryRejection>,
) -> Response {
    let tr = Tr::of(&headers);
    let token = q.ok().and_then(|Query(q)| q.token).unwrap_or_default();
    match operators::setup_view(&state.store, &token).await {
        Ok(Some(view)) => {
            html(StatusCode::OK, SetupPage { tr, nav: None, token: &token, view: &view, error: None }.render())
        }
        Ok(None) => invalid_setup(tr),
        Err(e) => error_page(&state, tr, e),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct SetupForm {
    token: Option<String>,
    password: Option<String>,
    repeat: Option<String>,
    code: Option<String>,
}

pub(super) async fn setup(
    State(state): State<AppState>,
    Peer(peer): Peer,
    headers: HeaderMap,
    form: Result<Form<SetupForm>, FormRejection>,
) -> Response {
    // The set-up token is itself the secret that binds the form: no session exists yet.
    let tr = Tr::of(&headers);
    let Ok(Form(f)) = form else { return invalid_setup(tr) };
    let token = f.token.unwrap_or_default();
    let client = state.console.client(&headers, peer);
    let outcome = operators::finish_setup(
        &state.store,
        &token,
        f.password.as_deref().unwrap_or_default(),
        f.repeat.as_deref().unwrap_or_default(),
        f.code.as_deref().unwrap_or_default(),
        &client,
    )
    .await;
    let error = match outcome {
        Ok(Ok(_)) => {
            return message_page(
                StatusCode::OK,
                tr,
                tr.t("Your account is ready"),
                tr.t("Log in with your e-mail address, your new password and a code from your authenticator app."),
            )
        }
        Ok(Err(SetupRefusal::InvalidLink)) => return invalid_setup(tr),
        Ok(Err(SetupRefusal::PasswordTooShort)) => {
            tr.f1("Choose a password of at least {0} characters.", operators::MIN_PASSWORD_CHARS)
        }
        Ok(Err(SetupRefusal::PasswordTooLong)) => tr.t("That password is too long.").to_owned(),
        Ok(Err(SetupRefusal::PasswordsDiffer)) => tr.t("The two passwords differ.").to_owned(),
        Ok(Err(SetupRefusal::WrongCode)) => {
            tr.t("That code is not the current one: check the key in your authenticator app and its clock.").to_owned()
        }
        Err(e) => return error_page(&state, tr, e),
    };
    match operators::setup_view(&state.store, &token).await {
        Ok(Some(view)) => html(
            StatusCode::UNPROCESSABLE_ENTITY,
            SetupPage { tr, nav: None, token: &token, view: &view, error: Some(&error) }.render(),
        ),
        Ok(None) => invalid_setup(tr),
        Err(e) => error_page(&state, tr, e),
    }
}
