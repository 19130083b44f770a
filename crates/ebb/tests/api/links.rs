//! Refund links without a browser: the API that makes them, and the page driven by plain HTTP form
//! posts, as a browser without JavaScript would (the Chromium run is scripts/browser/refund_link.mjs).
//! Every refused request is checked to change nothing in the database.

use std::sync::Arc;
use std::time::Duration;

use ebb_api::pages::LinkSettings;
use ebb_core::screening::Denylist;
use reqwest::header::{HeaderMap, ACCEPT_LANGUAGE, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{Options, TestApp, USER_ADDRESS};
use crate::webhooks::{add_endpoint, Receiver};

/// The customer's original payment comes from here; the page pre-fills it.
const PAYER: &str = USER_ADDRESS;
const OTHER: &str = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359";
/// OTHER with one letter's case flipped: a typo the EIP-55 checksum catches.
const OTHER_TYPO: &str = "0xfB6916095Ca1df60bB79Ce92cE3Ea74c37c5d359";
const TRON_ADDRESS: &str = "TJCnKsPa7y5okkXvQAidZBzqx3QyQ6sxMW";

/// A page as the browser got it.
pub(crate) struct Page {
    pub status: StatusCode,
    headers: HeaderMap,
    pub body: String,
}

impl Page {
    /// The value of a hidden field of the page's form.
    pub fn field(&self, name: &str) -> String {
        let needle = format!("name=\"{name}\" value=\"");
        let start =
            self.body.find(&needle).unwrap_or_else(|| panic!("no field {name} in\n{}", self.body)) + needle.len();
        let len = self.body[start..].find('"').unwrap();
        self.body[start..start + len].to_owned()
    }

    pub fn has(&self, text: &str) -> bool {
        self.body.contains(text)
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

/// A customer's browser without JavaScript: keeps the session cookie, follows nothing by itself.
pub(crate) struct Customer {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
    accept_language: String,
}

impl Customer {
    pub fn new(app: &TestApp) -> Self {
        Customer {
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
            base: format!("http://{}", app.addr),
            cookie: None,
            accept_language: "en".into(),
        }
    }

    async fn keep(&mut self, resp: reqwest::Response) -> Page {
        let headers = resp.headers().clone();
        if let Some(c) = headers.get(SET_COOKIE).and_then(|v| v.to_str().ok()) {
            self.cookie = Some(c.split(';').next().unwrap().to_owned());
        }
        Page { status: resp.status(), headers, body: resp.text().await.unwrap() }
    }

    pub async fn get(&mut self, path_and_query: &str) -> Page {
        let mut req =
            self.http.get(format!("{}{path_and_query}", self.base)).header(ACCEPT_LANGUAGE, &self.accept_language);
        if let Some(c) = &self.cookie {
            req = req.header(COOKIE, c);
        }
        let resp = req.send().await.unwrap();
        self.keep(resp).await
    }

    async fn open(&mut self, link: &Value) -> Page {
        let path = format!("/refund-link?token={}", link["token"].as_str().unwrap());
        self.get(&path).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let body = serde_urlencoded(form);
        self.post_raw(path, body).await
    }

    async fn post_raw(&mut self, path: &str, body: String) -> Page {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT_LANGUAGE, &self.accept_language)
            .body(body);
        if let Some(c) = &self.cookie {
            req = req.header(COOKIE, c);
        }
        let resp = req.send().await.unwrap();
        self.keep(resp).await
    }

    /// Posts the form of `page` (its token and CSRF token) to `path` with `address` and `extra` fields.
    pub async fn post_form(&mut self, page: &Page, path: &str, address: &str, extra: &[(&str, &str)]) -> Page {
        let (token, csrf) = (page.field("token"), page.field("csrf"));
        let mut form = vec![("token", token.as_str()), ("csrf", csrf.as_str()), ("address", address)];
        form.extend_from_slice(extra);
        self.post(path, &form).await
    }
}

fn serde_urlencoded(form: &[(&str, &str)]) -> String {
    form.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A merchant with an order of `amount` ETH_USDT paid from PAYER (credited); returns (merchant, order).
async fn paid_by_payer(app: &TestApp, amount: &str) -> (String, Value) {
    let merchant = app.create_merchant("links").await;
    let order = app
        .post(
            "/v2/payments/orders",
            json!({"merchant_id": merchant, "psp_order_code": format!("psp-{}", uuid::Uuid::new_v4()),
                   "payable_currency": "ETH_USDT", "payable_amount": amount, "fee_amount": "0"}),
        )
        .await
        .ok();
    let (_, order) = app.pay_in_sandbox(order["order_id"].as_str().unwrap(), json!({"from_address": PAYER})).await;
    assert_eq!(order["status"], "Completed", "{order}");
    (merchant, order)
}

async fn create_link(app: &TestApp, body: Value) -> Value {
    let resp = app.post("/v2/payments/links/refunds", body).await;
    assert_eq!(resp.status, 201, "{}", resp.body);
    resp.body
}

fn link_body(request_id: &str, merchant: &str, order: &Value, amount: &str) -> Value {
    json!({
        "request_id": request_id,
        "business_info": {"order_id": order["order_id"], "amount": amount, "refund_source": "Merchant", "merchant_id": merchant},
        "display_info": {"developer_name": "Acme Shop", "logo": "https://cdn.example.com/brand/logo.png",
                         "return_url": "https://shop.example.com/orders/42"},
    })
}

async fn refund_of(app: &TestApp, request_id: &str) -> Value {
    let page = app.get(&format!("/v2/payments/refunds?request_id={request_id}")).await.ok();
    let data = page["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{page}");
    data[0].clone()
}

/// What the database says of a link's refund and its events: compared before and after a refused
/// request, it shows nothing changed.
async fn footprint(app: &TestApp, request_id: &str) -> (Value, i64) {
    let refund = refund_of(app, request_id).await;
    let events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(app.store.pool()).await.unwrap();
    (refund, events)
}

/// The whole flow as plain form posts: the link is made by API, opened (the payer pre-filled, the
/// warnings shown), a mistyped address refused, a good one confirmed in chunks and submitted; the
/// refund pays out on the sandbox chain and the page shows it; every step reaches the merchant as the
/// refund's status-changed webhook.
async fn a_link_is_opened_submitted_and_paid_without_javascript(app: &TestApp) {
    let receiver = Receiver::start().await;
    add_endpoint(app, &receiver.url, false).await;
    let (merchant, order) = paid_by_payer(app, "50").await;
    let before = app.merchant_balance(&merchant, "ETH_USDT").await;
    assert_eq!(before["total_balance"], "50");
    let link = create_link(app, link_body("link-flow", &merchant, &order, "20")).await;
    assert_eq!(link["url"], format!("http://{}/refund-link", app.addr));
    assert_eq!(link["token"].as_str().unwrap().len(), 43, "256 random bits");
    // The refund exists with its funds reserved, found by the link request's request_id.
    let refund = refund_of(app, "link-flow").await;
    let refund_id = refund["refund_id"].as_str().unwrap().to_owned();
    assert_eq!(refund["status"], "PendingConfirmation");
    assert_eq!(refund["amount"], "20");
    assert_eq!(app.merchant_balance(&merchant, "ETH_USDT").await["total_balance"], "30");
    // Only the token's hash is stored.
    let stored: String =
        sqlx::query_scalar("SELECT token_hash FROM refund_links").fetch_one(app.store.pool()).await.unwrap();
    assert_ne!(stored, link["token"].as_str().unwrap());

    let mut customer = Customer::new(app);
    let form = customer.open(&link).await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.has(&format!("value=\"{PAYER}\"")), "the payer is pre-filled");
    for warning in ["original payer only", "Only USDT on Ethereum (ERC-20)", "custodial", "private key"] {
        assert!(form.has(warning), "warning {warning:?} missing");
    }
    assert!(form.has("20 USDT") && form.has("Acme Shop"));
    assert!(form.has("https://shop.example.com/orders/42"), "the return link");
    let csp = form.header("content-security-policy");
    assert!(csp.contains("default-src 'none'") && csp.contains("img-src 'self' https://cdn.example.com;"), "{csp}");
    assert_eq!(form.header("referrer-policy"), "no-referrer");
    assert_eq!(form.header("x-frame-options"), "DENY");
    assert!(form.header("set-cookie").contains("HttpOnly") && form.header("set-cookie").contains("SameSite=Strict"));
    assert_eq!(refund_of(app, "link-flow").await["status"], "AddressPending", "opening is recorded");

    // A typo in a checksummed address is caught on the server, and nothing changes.
    let seen = footprint(app, "link-flow").await;
    let typo = customer.post_form(&form, "/refund-link/confirm", OTHER_TYPO, &[]).await;
    assert_eq!(typo.status, 422);
    assert!(typo.has("EIP-55"), "{}", typo.body);
    assert!(typo.has(&format!("value=\"{OTHER_TYPO}\"")), "what was typed stays in the field");
    assert_eq!(footprint(app, "link-flow").await, seen);

    // A good address: the confirmation shows it in groups of four, then the submit takes it.
    let confirm = customer.post_form(&typo, "/refund-link/confirm", OTHER, &[]).await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    assert!(confirm.has("<span class=\"chunk\">fB69</span>"), "{}", confirm.body);
    assert!(!confirm.has("poisoning-warning"));
    let done = customer.post_form(&confirm, "/refund-link/submit", &confirm.field("address"), &[]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let location = done.header(LOCATION.as_str()).to_owned();
    assert!(location.starts_with("/refund-link?token=") && location.ends_with("&submitted=1"), "{location}");
    let refund = app.mine_until(&app.sandbox("ETH"), &refund_id, "Completed").await;
    assert_eq!(refund["to_address"], OTHER);
    let paid = customer.get(&location).await;
    assert_eq!(paid.status, 200);
    assert!(paid.has("Refund sent"), "{}", paid.body);
    let tx_hash = refund["transactions"][0]["tx_hash"].as_str().unwrap();
    assert!(paid.has(tx_hash), "the page shows the transaction");
    assert!(!paid.has("http-equiv=\"refresh\""), "a finished refund stops refreshing");

    // The same form again: the link is used up.
    let again = customer.post_form(&confirm, "/refund-link/submit", OTHER, &[]).await;
    assert_eq!(again.status, 409);
    assert!(again.has("already been used") || again.has("Refund sent"), "{}", again.body);

    // The merchant heard of every step.
    let got = receiver
        .wait_until(Duration::from_secs(10), "the refund's Completed event", |got| {
            got.iter().any(|r| {
                let e = r.json();
                e["type"] == "payment.refund.status.updated"
                    && e["data"]["refund_id"] == refund_id.as_str()
                    && e["data"]["status"] == "Completed"
            })
        })
        .await;
    let statuses: Vec<String> = got
        .iter()
        .map(|r| r.json())
        .filter(|e| e["type"] == "payment.refund.status.updated" && e["data"]["refund_id"] == refund_id.as_str())
        .map(|e| e["data"]["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        statuses,
        ["PendingConfirmation", "AddressPending", "AddressSubmitted", "Pending", "Processing", "Completed"]
    );
}
crate::both_backends_paying!(a_link_is_opened_submitted_and_paid_without_javascript);

/// Unknown, tampered and malformed tokens, a missing CSRF token or cookie, an oversize form, an
/// overlong address and one of another chain: each gets its page, and nothing changes.
async fn bad_requests_get_a_clear_page_and_change_nothing(app: &TestApp) {
    let (merchant, order) = paid_by_payer(app, "10").await;
    let link = create_link(app, link_body("link-bad", &merchant, &order, "5")).await;
    let token = link["token"].as_str().unwrap().to_owned();
    let mut customer = Customer::new(app);
    let form = customer.open(&link).await;
    let seen = footprint(app, "link-bad").await;

    let mut tampered = token.clone().into_bytes();
    tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let unknown = ebb_app::links::LinkToken::generate().as_str().to_owned();
    for q in [format!("token={tampered}"), format!("token={unknown}"), format!("token={}", &token[..20]), String::new()]
    {
        let page = customer.get(&format!("/refund-link?{q}")).await;
        assert_eq!(page.status, 404, "{q}");
        assert!(page.has("This link is not valid"), "{q}: {}", page.body);
    }
    let csrf = form.field("csrf");
    // No CSRF field; a CSRF token with no session cookie; one made for another session.
    let no_field = customer.post("/refund-link/submit", &[("token", &token), ("address", OTHER)]).await;
    assert_eq!(no_field.status, 403);
    assert!(no_field.has("session has expired"));
    let mut stranger = Customer::new(app);
    let no_cookie =
        stranger.post("/refund-link/submit", &[("token", &token), ("csrf", &csrf), ("address", OTHER)]).await;
    assert_eq!(no_cookie.status, 403);
    stranger.open(&link).await;
    let other_session =
        stranger.post("/refund-link/submit", &[("token", &token), ("csrf", &csrf), ("address", OTHER)]).await;
    assert_eq!(other_session.status, 403, "a CSRF token belongs to its session");
    // Oversize: the whole form, and the address alone.
    let huge = customer
        .post_raw("/refund-link/submit", format!("token={token}&csrf={csrf}&address={}", "a".repeat(20_000)))
        .await;
    assert_eq!(huge.status, 413);
    assert!(huge.has("Something is wrong with the form"), "{}", huge.body);
    let long = customer.post_form(&form, "/refund-link/submit", &"0".repeat(300), &[]).await;
    assert_eq!(long.status, 422);
    assert!(long.has("too long"));
    // A Tron address for an Ethereum refund.
    let wrong_chain = customer.post_form(&form, "/refund-link/submit", TRON_ADDRESS, &[]).await;
    assert_eq!(wrong_chain.status, 422);
    assert!(wrong_chain.has("not an address of this network"), "{}", wrong_chain.body);
    // Tampered token in a post.
    let bad_post =
        customer.post("/refund-link/submit", &[("token", &tampered), ("csrf", &csrf), ("address", OTHER)]).await;
    assert_eq!(bad_post.status, 404);
    assert_eq!(footprint(app, "link-bad").await, seen, "nothing changed");
    let link_row: (String, Option<String>) =
        sqlx::query_as("SELECT status, submitted_address FROM refund_links").fetch_one(app.store.pool()).await.unwrap();
    assert_eq!(link_row, ("Active".to_owned(), None));

    // After all that, the customer can still submit.
    let ok = customer.post_form(&form, "/refund-link/submit", OTHER, &[]).await;
    assert_eq!(ok.status, 303, "{}", ok.body);
}
crate::both_backends!(bad_requests_get_a_clear_page_and_change_nothing);

/// Two submits at once through one link: one address is taken, the other submit is told the link was
/// already used.
async fn concurrent_submits_take_one_address(app: &TestApp) {
    let (merchant, order) = paid_by_payer(app, "10").await;
    let link = create_link(app, link_body("link-race", &merchant, &order, "5")).await;
    let mut customer = Customer::new(app);
    let form = customer.open(&link).await;
    let addresses: Vec<String> = (1..=8u8).map(|i| format!("0x{}", hex::encode([i; 20]))).collect();
    let (token, csrf, cookie) = (form.field("token"), form.field("csrf"), customer.cookie.clone().unwrap());
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let url = format!("http://{}/refund-link/submit", app.addr);
    let answers = futures::future::join_all(addresses.iter().map(|a| {
        let body = serde_urlencoded(&[("token", &token), ("csrf", &csrf), ("address", a)]);
        http.post(&url)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(COOKIE, &cookie)
            .body(body)
            .send()
    }))
    .await;
    let mut accepted = Vec::new();
    for (a, r) in addresses.iter().zip(answers) {
        let r = r.unwrap();
        match r.status().as_u16() {
            303 => accepted.push(a.clone()),
            409 => assert!(r.text().await.unwrap().contains("already been used")),
            other => panic!("unexpected {other}: {}", r.text().await.unwrap()),
        }
    }
    assert_eq!(accepted.len(), 1, "exactly one submit wins");
    let refund = refund_of(app, "link-race").await;
    assert_eq!(refund["to_address"], accepted[0].as_str());
    assert_eq!(refund["status"], "Pending");
}
crate::both_backends!(concurrent_submits_take_one_address);

fn guarded() -> Options {
    let denied = "0x1111111111111111111111111111111111111111";
    Options {
        links: Some(LinkSettings {
            denylist: Arc::new(Denylist::parse(&format!("# test list\n{denied}\n"))),
            posts_per_link: 4,
            ..LinkSettings::default()
        }),
        ..Options::default()
    }
}

/// An address on the operator's denylist is refused with a neutral message; past the per-link limit,
/// posts are refused until the window ends. Neither changes anything.
async fn the_denylist_and_the_rate_limit_refuse_without_changes(app: &TestApp) {
    let (merchant, order) = paid_by_payer(app, "10").await;
    let link = create_link(app, link_body("link-guard", &merchant, &order, "5")).await;
    let mut customer = Customer::new(app);
    let form = customer.open(&link).await;
    let seen = footprint(app, "link-guard").await;
    let denied =
        customer.post_form(&form, "/refund-link/submit", "0x1111111111111111111111111111111111111111", &[]).await;
    assert_eq!(denied.status, 422);
    assert!(denied.has("This address cannot be accepted"), "{}", denied.body);
    assert!(!denied.body.to_lowercase().contains("denylist") && !denied.body.to_lowercase().contains("sanction"));
    for _ in 0..3 {
        customer.post_form(&form, "/refund-link/confirm", OTHER, &[]).await;
    }
    let limited = customer.post_form(&form, "/refund-link/submit", OTHER, &[]).await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(limited.has("Too many attempts"));
    assert_eq!(footprint(app, "link-guard").await, seen);
}
crate::both_backends_with!(the_denylist_and_the_rate_limit_refuse_without_changes, super::guarded());

/// Addresses that would lose the money (the zero address, a token contract, ebb's hot wallet, an
/// order's receiving address) are refused on the page, at confirm and at submit; nothing changes.
async fn the_page_refuses_destinations_that_lose_the_money(app: &TestApp) {
    use crate::chains::TestChain;
    let (merchant, order) = paid_by_payer(app, "10").await;
    let link = create_link(app, link_body("link-lost", &merchant, &order, "5")).await;
    let mut customer = Customer::new(app);
    let form = customer.open(&link).await;
    let seen = footprint(app, "link-lost").await;
    let usdt = ebb_core::TokenRegistry::cobo_defaults().get("ETH_USDT").unwrap().contract.clone();
    let receiving = order["receive_address"].as_str().unwrap().to_owned();
    let hot = app.sandbox("ETH").hot_wallet();
    for lost in ["0x0000000000000000000000000000000000000000".to_owned(), usdt, receiving, hot] {
        for path in ["/refund-link/confirm", "/refund-link/submit"] {
            let page = customer.post_form(&form, path, &lost, &[("ack", "1")]).await;
            assert_eq!(page.status, 422, "{path} {lost}: {}", page.body);
            assert!(page.has("would be lost"), "{path} {lost}: {}", page.body);
        }
    }
    assert_eq!(footprint(app, "link-lost").await, seen);
}
crate::both_backends!(the_page_refuses_destinations_that_lose_the_money);

fn short_lived() -> Options {
    Options {
        links: Some(LinkSettings { ttl: Duration::from_millis(1500), ..LinkSettings::default() }),
        ..Options::default()
    }
}

/// An expired link takes nothing and releases nothing: the refund waits, reserved, and a new link (the
/// same request again) works while the old one is dead. A submitted refund whose payout has not started
/// can be re-linked too; cancelling releases the funds and the page says so.
async fn expired_and_replaced_links(app: &TestApp) {
    let (merchant, order) = paid_by_payer(app, "10").await;
    let body = link_body("link-again", &merchant, &order, "5");
    let first = create_link(app, body.clone()).await;
    let mut customer = Customer::new(app);
    let form = customer.open(&first).await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let seen = footprint(app, "link-again").await;
    let expired = customer.open(&first).await;
    assert_eq!(expired.status, 410);
    assert!(expired.has("This link has expired"));
    let late = customer.post_form(&form, "/refund-link/submit", OTHER, &[]).await;
    assert_eq!(late.status, 410);
    assert_eq!(footprint(app, "link-again").await, seen);
    assert_eq!(seen.0["status"], "AddressPending");
    assert_eq!(app.merchant_balance(&merchant, "ETH_USDT").await["total_balance"], "5", "still reserved");

    // The same request again: a new link for the same refund; the first is dead.
    let second = create_link(app, body.clone()).await;
    assert_ne!(second["token"], first["token"]);
    let old = customer.open(&first).await;
    assert_eq!(old.status, 410);
    assert!(old.has("no longer valid"), "{}", old.body);
    let form = customer.open(&second).await;
    assert_eq!(form.status, 200);
    let done = customer.post_form(&form, "/refund-link/submit", OTHER, &[]).await;
    assert_eq!(done.status, 303);
    let refund = refund_of(app, "link-again").await;
    assert_eq!((refund["status"].as_str(), refund["to_address"].as_str()), (Some("Pending"), Some(OTHER)));

    // No payout runs in this test, so the refund is still Pending: a third link reopens it.
    let third = create_link(app, body.clone()).await;
    let refund = refund_of(app, "link-again").await;
    assert_eq!((refund["status"].as_str(), refund["to_address"].as_str()), (Some("AddressPending"), Some("")));
    let refund_id = refund["refund_id"].as_str().unwrap().to_owned();
    // A different request under the same request_id is a conflict, not a new link.
    let mut changed = body.clone();
    changed["business_info"]["amount"] = json!("6");
    app.post("/v2/payments/links/refunds", changed).await.error(409, 40900);

    // Cancelled while the link is out: the funds return and the page says so.
    app.put(&format!("/v2/payments/refunds/{refund_id}/cancel"), None).await.ok();
    assert_eq!(app.merchant_balance(&merchant, "ETH_USDT").await["total_balance"], "10");
    let cancelled = customer.open(&third).await;
    assert!(cancelled.has("Refund cancelled"), "{}", cancelled.body);
    let resp = app.post("/v2/payments/links/refunds", body).await;
    assert_eq!(resp.status, 409, "a cancelled refund cannot be re-linked: {}", resp.body);
}
crate::both_backends_with!(expired_and_replaced_links, super::short_lived());

/// The link API's validation, and a link made from a pay-in transaction pre-filling its sender.
async fn the_link_api_validates_its_input(app: &TestApp) {
    let (merchant, order) = paid_by_payer(app, "10").await;
    let order_id = order["order_id"].as_str().unwrap();
    let tx_id = order["transactions"][0]["tx_id"].as_str().unwrap();
    let bad = [
        json!({"business_info": {"order_id": order_id, "transaction_id": tx_id, "amount": "1", "refund_source": "Psp"}}),
        json!({"business_info": {"amount": "1", "refund_source": "Psp"}}),
        json!({"business_info": {"order_id": order_id, "amount": "1.001", "refund_source": "Psp"}}),
        json!({"business_info": {"order_id": order_id, "amount": "1", "refund_source": "Bank"}}),
        json!({"business_info": {"order_id": order_id, "amount": "1", "refund_source": "Merchant"}}),
        json!({"business_info": {"order_id": order_id, "amount": "1", "refund_source": "Psp", "fee_amount": "0.1"}}),
        json!({"business_info": {"order_id": order_id, "amount": "1", "refund_source": "Merchant", "merchant_id": merchant, "fee_amount": "1"}}),
        json!({"business_info": {"order_id": order_id, "amount": "1", "refund_source": "Psp"}, "display_info": {"logo": "javascript:alert(1)"}}),
        json!({"business_info": {"order_id": order_id, "amount": "1", "refund_source": "Psp"}, "display_info": {"return_url": "data:text/html,x"}}),
        json!({"business_info": {"order_id": order_id, "amount": "1", "refund_source": "Psp"}, "display_info": {"developer_name": "x".repeat(129)}}),
    ];
    for body in bad {
        let resp = app.post("/v2/payments/links/refunds", body.clone()).await;
        assert!(resp.status.is_client_error(), "{body} -> {} {}", resp.status, resp.body);
    }
    let unknown = app
        .post(
            "/v2/payments/links/refunds",
            json!({"business_info": {"order_id": "Onope", "amount": "1", "refund_source": "Psp"}}),
        )
        .await;
    assert_eq!(unknown.status, 404);
    let too_much = app
        .post(
            "/v2/payments/links/refunds",
            json!({"business_info": {"order_id": order_id, "amount": "11", "refund_source": "Psp"}}),
        )
        .await;
    assert!(too_much.status.is_client_error(), "over-refund: {}", too_much.body);
    // A merchant-restricted key cannot link another merchant's order.
    let other = app.create_merchant("other").await;
    let mut restricted = app.signing();
    restricted.key = app.new_key(Some(&other)).await;
    let body = json!({"business_info": {"order_id": order_id, "amount": "1", "refund_source": "Merchant", "merchant_id": other}});
    let resp = app
        .call_signed(
            &restricted,
            reqwest::Method::POST,
            "/v2/payments/links/refunds",
            Some(body.to_string().into_bytes()),
        )
        .await;
    assert_eq!(resp.status, 404, "{}", resp.body);
    // Nothing was reserved by any of these.
    assert_eq!(app.merchant_balance(&merchant, "ETH_USDT").await["total_balance"], "10");

    // By transaction: its sender is pre-filled; without a request_id each call is a new refund.
    let link = create_link(app, json!({"business_info": {"transaction_id": tx_id, "amount": "2", "refund_source": "Merchant", "merchant_id": merchant}})).await;
    let page = Customer::new(app).open(&link).await;
    assert!(page.has(&format!("value=\"{PAYER}\"")), "{}", page.body);
    assert!(!page.has("<img"), "no logo given, none shown");
    let csp = page.header("content-security-policy");
    assert!(csp.contains("img-src 'self';"), "{csp}");
}
crate::both_backends!(the_link_api_validates_its_input);

/// Chinese by Accept-Language, English by the switch; a look-alike of the payer's address needs an
/// acknowledgement; the as-you-type check answers with the server's own validator.
async fn language_poisoning_and_the_live_check(app: &TestApp) {
    let (merchant, order) = paid_by_payer(app, "10").await;
    let link = create_link(app, link_body("link-zh", &merchant, &order, "5")).await;
    let mut customer = Customer::new(app);
    customer.accept_language = "zh-CN,zh;q=0.9,en;q=0.5".into();
    let zh = customer.open(&link).await;
    assert!(zh.has("<html lang=\"zh-CN\">") && zh.has("提交前请注意"), "{}", zh.body);
    assert!(zh.has("lang=en"), "the switch offers English");
    let en = customer.get(&format!("/refund-link?token={}&lang=en", link["token"].as_str().unwrap())).await;
    assert!(en.has("<html lang=\"en\">") && en.has("Before you submit"));

    // Same first and last four hex digits as the payer, different in between.
    // (All lower case: a mixed-case address must carry its own checksum.)
    let look_alike = format!("0x{}{}{}", &PAYER[2..6], "0".repeat(32), &PAYER[38..]).to_lowercase();
    let confirm = customer.post_form(&en, "/refund-link/confirm", &look_alike, &[]).await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.has("poisoning-warning"), "{}", confirm.body);
    let unacknowledged = customer.post_form(&confirm, "/refund-link/submit", &confirm.field("address"), &[]).await;
    assert_eq!(unacknowledged.status, 422);
    assert_eq!(refund_of(app, "link-zh").await["status"], "AddressPending");
    let acknowledged =
        customer.post_form(&confirm, "/refund-link/submit", &confirm.field("address"), &[("ack", "1")]).await;
    assert_eq!(acknowledged.status, 303);

    let check = |address: &str| {
        let url = format!("http://{}/refund-link/check?token_id=ETH_USDT&lang=en&address={}", app.addr, enc(address));
        async move { reqwest::get(url).await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(check(OTHER).await["ok"], true);
    let typo = check(OTHER_TYPO).await;
    assert_eq!(typo["ok"], false);
    assert!(typo["message"].as_str().unwrap().contains("EIP-55"));
    assert_eq!(check(TRON_ADDRESS).await["ok"], false);
}
crate::both_backends!(language_poisoning_and_the_live_check);
