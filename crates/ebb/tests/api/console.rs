//! The operator console (issue 17) through real HTTP, as a browser without JavaScript drives it: set-up
//! links with a TOTP key, logins, the role matrix over every action, CSRF refusals, maker-checker
//! between operators, the audit entries each action leaves, session expiry and login lockout, and the
//! CSV exports checked against the API. (The Chromium walk is scripts/browser/console.mjs.)

use std::collections::HashMap;
use std::time::Duration;

use ebb_app::operators::{self, ConsoleSettings};
use ebb_store::operators::{AuditFilter, OperatorRole};
use ebb_store::page::PageRequest;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{Options, TestApp};
use crate::links::Customer;

const PASSWORD: &str = "correct horse battery staple";
const OTHER: &str = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359";

crate::both_backends_paying!(roles_actions_and_their_audit_trail);
crate::both_backends_with!(sessions_expire_and_failed_logins_lock, super::short_sessions());
crate::both_backends_with!(held_pay_ins_are_decided_in_the_console, crate::screening::disposing());
crate::both_backends_paying!(reconciliation_lists_every_difference_between_ledger_and_chain);
crate::both_backends!(the_console_speaks_english_and_chinese);

fn short_sessions() -> Options {
    Options {
        console: Some(ConsoleSettings {
            session_idle: Duration::from_secs(2),
            max_failed_logins: 3,
            ..ConsoleSettings::default()
        }),
        ..Options::default()
    }
}

/// A page as the browser got it.
struct Page {
    status: StatusCode,
    location: String,
    body: String,
}

impl Page {
    fn field(&self, name: &str) -> String {
        let needle = format!("name=\"{name}\" value=\"");
        let start =
            self.body.find(&needle).unwrap_or_else(|| panic!("no field {name} in\n{}", self.body)) + needle.len();
        let len = self.body[start..].find('"').unwrap();
        self.body[start..start + len].to_owned()
    }

    /// The text of the element with `data-testid="id"` (up to the next tag).
    fn testid(&self, id: &str) -> String {
        let needle = format!("data-testid=\"{id}\"");
        let start = self.body.find(&needle).unwrap_or_else(|| panic!("no {id} in\n{}", self.body));
        let rest = &self.body[start..];
        let open = rest.find('>').unwrap() + 1;
        let close = rest[open..].find('<').unwrap();
        rest[open..open + close].trim().to_owned()
    }
}

/// A browser: keeps its cookies, follows no redirect by itself.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: HashMap<String, String>,
}

impl Browser {
    fn new(app: &TestApp) -> Self {
        Browser {
            http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
            base: format!("http://{}", app.addr),
            cookies: HashMap::new(),
        }
    }

    async fn keep(&mut self, resp: reqwest::Response) -> Page {
        for c in resp.headers().get_all(SET_COOKIE) {
            let c = c.to_str().unwrap();
            assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Path=/console"), "{c}");
            let (k, v) = c.split(';').next().unwrap().split_once('=').unwrap();
            if v.is_empty() {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        let location = resp.headers().get(LOCATION).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let status = resp.status();
        assert!(status.as_u16() < 500 || status.as_u16() == 503, "{status}");
        Page { status, location, body: resp.text().await.unwrap() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn get(&mut self, path: &str) -> Page {
        let resp = self.http.get(format!("{}{path}", self.base)).header(COOKIE, self.cookie_header()).send().await;
        self.keep(resp.unwrap()).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header(COOKIE, self.cookie_header())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await;
        self.keep(resp.unwrap()).await
    }

    /// Logs in; returns the answer to the login post.
    async fn login(&mut self, email: &str, password: &str, code: &str) -> Page {
        let form = self.get("/console/login").await;
        assert_eq!(form.status, 200);
        let csrf = form.field("csrf");
        self.post("/console/login", &[("email", email), ("password", password), ("code", code), ("csrf", &csrf)]).await
    }
}

/// An operator set up through its link, with its TOTP key.
struct Person {
    email: String,
    key: Vec<u8>,
    /// The last time step whose code was used: the server takes a step's code once, and steps from one
    /// before now to one after.
    used: std::sync::Mutex<i64>,
}

impl Person {
    /// A code the server has not seen from this operator (waiting for the next time step if the three
    /// it accepts now are used).
    async fn next_code(&self) -> String {
        loop {
            let now = ebb_core::clock::now_s() / operators::TOTP_STEP_S;
            {
                let mut used = self.used.lock().unwrap();
                let step = (now - 1).max(*used + 1);
                if step <= now + 1 {
                    *used = step;
                    return self.code_of(step);
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// The code of the last step used (a replay).
    fn last_code(&self) -> String {
        self.code_of(*self.used.lock().unwrap())
    }

    fn code_of(&self, step: i64) -> String {
        format!("{:06}", operators::totp(&self.key, step))
    }
}

fn base32_decode(s: &str) -> Vec<u8> {
    let (mut buffer, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in s.bytes() {
        let v = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".iter().position(|a| *a == c).unwrap() as u32;
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            out.push((buffer >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    out
}

/// Adds an operator as `ebb operators add` does and sets it up through the set-up page.
async fn person(app: &TestApp, email: &str, role: OperatorRole, merchants: &[&str]) -> Person {
    let merchants = merchants.iter().map(|m| m.to_string()).collect();
    let new = operators::add(&app.store, &ConsoleSettings::default(), email, role, merchants, "test").await.unwrap();
    let mut b = Browser::new(app);
    let page = b.get(&format!("/console/setup?token={}", new.setup_token)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let person = Person {
        email: email.to_owned(),
        key: base32_decode(&page.testid("totp-key")),
        used: std::sync::Mutex::new(0),
    };
    let token = new.setup_token.as_str();
    let code = person.next_code().await;
    let short = b
        .post("/console/setup", &[("token", token), ("password", "short"), ("repeat", "short"), ("code", &code)])
        .await;
    assert_eq!(short.status, 422, "a short password is refused");
    let wrong = b
        .post("/console/setup", &[("token", token), ("password", PASSWORD), ("repeat", PASSWORD), ("code", "000000")])
        .await;
    assert!(wrong.status == 422 || code == "000000");
    let done = b
        .post("/console/setup", &[("token", token), ("password", PASSWORD), ("repeat", PASSWORD), ("code", &code)])
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let again = b.get(&format!("/console/setup?token={}", new.setup_token)).await;
    assert_eq!(again.status, 404, "a set-up link works once");
    person
}

async fn signed_in(app: &TestApp, p: &Person) -> Browser {
    let mut b = Browser::new(app);
    let res = b.login(&p.email, PASSWORD, &p.next_code().await).await;
    assert_eq!((res.status, res.location.as_str()), (StatusCode::SEE_OTHER, "/console/dashboard"), "{}", res.body);
    b
}

async fn audit(app: &TestApp, email: &str, action: &str) -> Vec<ebb_store::operators::AuditEntry> {
    let filter = AuditFilter { email: Some(email.into()), action: Some(action.into()), ..AuditFilter::default() };
    app.store.audit_log(&filter, &PageRequest { limit: 50, ..PageRequest::default() }).await.unwrap().items
}

/// Makes a refund link for `order_id` in the console; returns the link's URL.
async fn make_link(b: &mut Browser, order_id: &str, amount: &str) -> String {
    let order = b.get(&format!("/console/orders/{order_id}")).await;
    assert_eq!(order.status, 200, "{}", order.body);
    let csrf = order.field("csrf");
    let made = b.post(&format!("/console/orders/{order_id}/refund-link"), &[("csrf", &csrf), ("amount", amount)]).await;
    assert_eq!(made.status, 200, "{}", made.body);
    made.testid("link-url").replace("&amp;", "&")
}

/// The customer gives `OTHER` on the link's page; returns the refund id.
async fn customer_submits(app: &TestApp, url: &str) -> String {
    let mut customer = Customer::new(app);
    let path = &url[url.find("/refund-link").unwrap()..];
    let form = customer.get(path).await;
    let confirm = customer.post_form(&form, "/refund-link/confirm", OTHER, &[]).await;
    let done = customer.post_form(&confirm, "/refund-link/submit", &confirm.field("address"), &[]).await;
    assert!(done.status.is_redirection() || done.status.is_success(), "{}", done.body);
    let token = path.split("token=").nth(1).unwrap();
    let link =
        ebb_app::links::view(&app.engine, &ebb_app::links::LinkToken::parse(token).unwrap()).await.unwrap().unwrap();
    link.refund.refund_id
}

async fn roles_actions_and_their_audit_trail(app: &TestApp) {
    let m1 = app.create_merchant("Console One").await;
    let m2 = app.create_merchant("Console Two").await;
    let order = app.paid_order(&m1, "100", "0").await;
    let order_id = order["order_id"].as_str().unwrap().to_owned();
    let order2 = app.paid_order(&m2, "50", "0").await;
    // An endpoint that cannot be reached: the refunds' deliveries fail (three quick retries in tests).
    let endpoint = app
        .post(
            "/v2/webhooks/endpoints",
            json!({"url": "http://127.0.0.1:9/down", "subscribed_events": ["payment.refund.status.updated"]}),
        )
        .await
        .ok();
    let endpoint_id = endpoint["endpoint_id"].as_str().unwrap().to_owned();
    // Every refund needs one approval.
    app.post("/v2/payments/approval_policies", json!({"name": "all", "approvals_required": 1})).await.ok();

    let admin = person(app, "admin@psp.example", OperatorRole::Admin, &[]).await;
    let approver = person(app, "approver@psp.example", OperatorRole::Approver, &[]).await;
    let support = person(app, "support@psp.example", OperatorRole::Support, &[]).await;
    let viewer = person(app, "viewer@psp.example", OperatorRole::Viewer, &[]).await;
    let limited = person(app, "m1-viewer@psp.example", OperatorRole::Viewer, &[&m1]).await;
    let two = person(app, "two-merchants@psp.example", OperatorRole::Support, &[&m1, &m2]).await;
    assert!(
        operators::add(
            &app.store,
            &ConsoleSettings::default(),
            "x@psp.example",
            OperatorRole::Approver,
            vec![m1.clone()],
            "t"
        )
        .await
        .is_err(),
        "an approver is never limited to merchants"
    );

    // No page and no action without a session.
    let mut anonymous = Browser::new(app);
    for path in ["/console/dashboard", "/console/refunds", "/console/audit", "/console/export/refunds.csv"] {
        let p = anonymous.get(path).await;
        assert_eq!((p.status, p.location.as_str()), (StatusCode::SEE_OTHER, "/console/login"), "{path}");
    }
    let p = anonymous.post("/console/refunds/x/approve", &[("csrf", "x")]).await;
    assert_eq!(p.location, "/console/login");

    // The role matrix: each action against an object that does not exist, so that an allowed role
    // reaches the use case (and hears "not found" or "invalid") while a refused one is stopped first.
    let actions: &[(&str, &str, &[(&str, &str)], &[OperatorRole])] = {
        use OperatorRole::*;
        &[
            ("POST", "/console/refunds/NOPE/approve", &[], &[Admin, Approver]),
            ("POST", "/console/refunds/NOPE/reject", &[("comment", "no")], &[Admin, Approver]),
            ("POST", "/console/refunds/NOPE/cancel", &[], &[Admin, Support]),
            ("POST", "/console/deliveries/retry", &[("endpoint_id", "NOPE"), ("event_id", "NOPE")], &[Admin, Support]),
            ("POST", "/console/orders/NOPE/refund-link", &[("amount", "1")], &[Admin, Support]),
            ("POST", "/console/orders/NOPE/refund", &[("amount", "1"), ("address", OTHER)], &[Admin, Support]),
            ("POST", "/console/operators", &[("email", "new@psp.example"), ("role", "")], &[Admin]),
            ("POST", "/console/operators/NOPE/reset", &[], &[Admin]),
            ("POST", "/console/operators/NOPE/disable", &[], &[Admin]),
            ("GET", "/console/operators", &[], &[Admin]),
            ("GET", "/console/audit", &[], &[Admin]),
            ("GET", "/console/export/audit.csv", &[], &[Admin]),
            ("GET", "/console/dashboard", &[], &[Admin, Approver, Support, Viewer]),
            ("GET", "/console/refunds", &[], &[Admin, Approver, Support, Viewer]),
            ("GET", "/console/orders", &[], &[Admin, Approver, Support, Viewer]),
            ("GET", "/console/approvals", &[], &[Admin, Approver, Support, Viewer]),
            ("GET", "/console/export/refunds.csv", &[], &[Admin, Approver, Support, Viewer]),
            ("GET", "/console/export/postings.csv", &[], &[Admin, Approver, Support, Viewer]),
            ("GET", "/console/merchants", &[], &[Admin, Approver, Support, Viewer]),
            ("GET", "/console/webhooks", &[], &[Admin, Approver, Support, Viewer]),
            ("GET", "/console/held", &[], &[Admin, Approver, Support, Viewer]),
            ("GET", "/console/reconciliation", &[], &[Admin, Approver, Support, Viewer]),
            ("POST", "/console/webhooks/NOPE/retry-failed", &[], &[Admin, Support]),
            ("POST", "/console/held/NOPE/unfreeze", &[], &[Admin, Approver]),
            ("POST", "/console/held/NOPE/refund", &[("amount", "1"), ("address", OTHER)], &[Admin, Approver]),
            ("POST", "/console/held/NOPE/isolate", &[("amount", "1")], &[Admin, Approver]),
        ]
    };
    let mut browsers = Vec::new();
    let mut previous_csrf = String::new();
    for (p, role) in [
        (&admin, OperatorRole::Admin),
        (&approver, OperatorRole::Approver),
        (&support, OperatorRole::Support),
        (&viewer, OperatorRole::Viewer),
    ] {
        let mut b = signed_in(app, p).await;
        let csrf = b.get("/console/dashboard").await.field("csrf");
        for (method, path, form, allowed) in actions {
            let page = if *method == "GET" {
                b.get(path).await
            } else {
                let mut f = vec![("csrf", csrf.as_str())];
                f.extend_from_slice(form);
                b.post(path, &f).await
            };
            if allowed.contains(&role) {
                assert_ne!(page.status, StatusCode::FORBIDDEN, "{role} {method} {path}: {}", page.body);
            } else {
                assert_eq!(page.status, StatusCode::FORBIDDEN, "{role} {method} {path}");
                assert!(page.body.contains("Not allowed"), "{role} {path}: {}", page.body);
            }
        }
        let refused = actions.iter().filter(|a| !a.3.contains(&role)).count();
        assert_eq!(audit(app, &p.email, "denied").await.len(), refused, "{role}: each refusal is audited");
        // A form without this session's CSRF token (none, a made-up one, another session's) is refused
        // before anything else.
        for bad in ["", "bm90IHRoaXM", previous_csrf.as_str()] {
            let page = b.post("/console/refunds/NOPE/cancel", &[("csrf", bad)]).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{role} csrf {bad:?}");
            assert!(page.body.contains("This form has expired"), "{}", page.body);
        }
        previous_csrf = csrf;
        browsers.push(b);
    }
    let mut sb = browsers.remove(2);
    let mut pb = browsers.remove(1);
    let mut ab = browsers.remove(0);

    // The use cases fence a viewer too, whatever the console's table says.
    let viewer_row = app.store.operator_by_email(&viewer.email).await.unwrap().unwrap();
    let as_viewer = operators::actor_of(&viewer_row, None, "127.0.0.1");
    let refused = ebb_app::refunds::cancel(&app.engine, &as_viewer, "NOPE").await;
    assert!(matches!(refused, Err(ebb_app::AppError::Forbidden(_))), "{refused:?}");

    // A merchant-limited viewer sees its merchant's orders only.
    let mut lb = signed_in(app, &limited).await;
    let own = lb.get(&format!("/console/orders/{order_id}")).await;
    assert_eq!(own.status, 200);
    let other = lb.get(&format!("/console/orders/{}", order2["order_id"].as_str().unwrap())).await;
    assert_eq!(other.status, 404, "another merchant's order is not found");
    assert!(lb.get("/console/approvals").await.status == StatusCode::FORBIDDEN);

    // An operator of two merchants acts for one at a time (the first by id at login), and switches.
    let mut tb = signed_in(app, &two).await;
    let order2_id = order2["order_id"].as_str().unwrap().to_owned();
    let (first, second) =
        if m1 < m2 { ((&m1, &order_id), (&m2, &order2_id)) } else { ((&m2, &order2_id), (&m1, &order_id)) };
    assert_eq!(tb.get(&format!("/console/orders/{}", first.1)).await.status, 200, "the first merchant at first");
    assert_eq!(tb.get(&format!("/console/orders/{}", second.1)).await.status, 404);
    let csrf = tb.get("/console/dashboard").await.field("csrf");
    let switched = tb.post("/console/merchant", &[("csrf", &csrf), ("merchant_id", second.0)]).await;
    assert_eq!(switched.status, StatusCode::SEE_OTHER);
    assert_eq!(tb.get(&format!("/console/orders/{}", second.1)).await.status, 200, "now the second");
    assert_eq!(tb.get(&format!("/console/orders/{}", first.1)).await.status, 404);
    let outside = tb.post("/console/merchant", &[("csrf", &csrf), ("merchant_id", "M-not-mine")]).await;
    assert_eq!(outside.status, 404, "a merchant not its own is refused");

    // Support makes a refund link from the order; the customer gives an address; the refund waits.
    let url = make_link(&mut sb, &order_id, "10").await;
    let by_support = customer_submits(app, &url).await;
    assert_eq!(audit(app, &support.email, "link.create").await[0].subject, by_support);
    // Support refunds to an address from the order page; the same form sent twice makes one refund.
    let page = sb.get(&format!("/console/orders/{order_id}")).await;
    let form = [
        ("csrf", page.field("csrf")),
        ("request_id", page.field("request_id")),
        ("amount", "2".into()),
        ("address", OTHER.into()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // The second hidden request id on the page is the direct refund's.
    let refund_rid =
        page.body.split("name=\"request_id\" value=\"").nth(2).unwrap().split('"').next().unwrap().to_owned();
    let form: Vec<(&str, &str)> =
        form.into_iter().map(|(k, v)| if k == "request_id" { (k, refund_rid.as_str()) } else { (k, v) }).collect();
    let first = sb.post(&format!("/console/orders/{order_id}/refund"), &form).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.body);
    let second = sb.post(&format!("/console/orders/{order_id}/refund"), &form).await;
    assert_eq!(second.location, first.location, "a double submit gives the same refund");
    let direct = first.location.rsplit('/').next().unwrap().to_owned();
    let r = app.get(&format!("/v2/payments/refunds/{direct}")).await.ok();
    assert_eq!(
        (r["amount"].as_str(), r["to_address"].as_str(), r["initiator"].as_str()),
        (Some("2"), Some(OTHER), Some("operator:support@psp.example")),
        "{r}"
    );
    let created = audit(app, &support.email, "refund.create").await;
    assert_eq!(
        (created.len(), created[0].subject.as_str(), created[0].detail.as_str()),
        (1, direct.as_str(), "2 ETH_USDT")
    );
    let bad = sb
        .post(
            &format!("/console/orders/{order_id}/refund"),
            &[("csrf", &page.field("csrf")), ("request_id", "console-x"), ("amount", "1"), ("address", "0xnot")],
        )
        .await;
    assert_eq!(bad.status, 422, "a bad address is refused with a message");
    assert!(bad.body.contains("address"), "{}", bad.body);

    // The admin makes one too: the admin may not approve its own, the approver may.
    let url = make_link(&mut ab, &order_id, "7").await;
    let by_admin = customer_submits(app, &url).await;
    let page = ab.get(&format!("/console/refunds/{by_admin}")).await;
    assert_eq!(page.testid("approval-status").split(':').next().unwrap(), "Pending");
    assert!(page.body.contains("data-testid=\"own-refund\""), "the page says why the admin cannot approve");
    let own = ab.post(&format!("/console/refunds/{by_admin}/approve"), &[("csrf", &page.field("csrf"))]).await;
    assert_eq!(own.status, StatusCode::FORBIDDEN, "{}", own.body);
    assert!(own.body.contains("initiator cannot approve"), "{}", own.body);

    let page = pb.get(&format!("/console/refunds/{by_admin}")).await;
    let csrf = page.field("csrf");
    let ok = pb
        .post(&format!("/console/refunds/{by_admin}/approve"), &[("csrf", &csrf), ("comment", "checked the ticket")])
        .await;
    assert_eq!((ok.status, ok.location.clone()), (StatusCode::SEE_OTHER, format!("/console/refunds/{by_admin}")));
    let r = app.get(&format!("/v2/payments/refunds/{by_admin}")).await.ok();
    assert_eq!(r["approval"]["status"], "Approved", "{r}");
    let entry = &audit(app, &approver.email, "refund.approve").await[0];
    assert_eq!((entry.subject.as_str(), entry.detail.as_str()), (by_admin.as_str(), "checked the ticket"));
    assert_eq!(entry.client, "127.0.0.1");

    // Rejecting needs a comment, which becomes the failure reason.
    let empty = pb.post(&format!("/console/refunds/{by_support}/reject"), &[("csrf", &csrf), ("comment", " ")]).await;
    assert_eq!(empty.status, 422);
    let rejected = pb
        .post(&format!("/console/refunds/{by_support}/reject"), &[("csrf", &csrf), ("comment", "wrong customer")])
        .await;
    assert_eq!(rejected.status, StatusCode::SEE_OTHER, "{}", rejected.body);
    let r = app.get(&format!("/v2/payments/refunds/{by_support}")).await.ok();
    assert_eq!((r["status"].as_str(), r["failed_reason"].as_str()), (Some("Failed"), Some("Rejected: wrong customer")));
    let page = pb.get(&format!("/console/refunds/{by_support}")).await;
    assert_eq!(page.testid("refund-status"), "Failed");
    assert!(page.body.contains("refund.reject (wrong customer)"), "the timeline names the decision: {}", page.body);
    assert!(page.body.contains("approver@psp.example from 127.0.0.1"), "and who took it");

    // Search by request id finds the one refund.
    let rid = r["request_id"].as_str().unwrap();
    let found = pb.get(&format!("/console/refunds?request_id={rid}")).await;
    assert_eq!(found.testid("count"), "1 refund(s)");
    assert!(found.body.contains(&by_support));
    let bad = pb.get("/console/refunds?from=2026-02-31").await;
    assert_eq!(bad.status, 422, "an impossible date is refused with a message");

    // The refunds CSV holds what the API lists.
    let csv = pb.get("/console/export/refunds.csv").await;
    assert_eq!(csv.status, 200);
    let api = app.get("/v2/payments/refunds?limit=50").await.ok();
    let listed: Vec<&str> = api["data"].as_array().unwrap().iter().map(|r| r["refund_id"].as_str().unwrap()).collect();
    let lines: Vec<&str> = csv.body.trim_end().split("\r\n").collect();
    assert!(lines[0].starts_with("refund_id,request_id,order_id,merchant_id,token_id"), "{}", lines[0]);
    assert_eq!(lines.len() - 1, listed.len(), "{}", csv.body);
    for id in &listed {
        let row = lines.iter().find(|l| l.starts_with(id)).unwrap_or_else(|| panic!("{id} not in the CSV"));
        let api_row = api["data"].as_array().unwrap().iter().find(|r| r["refund_id"] == *id).unwrap();
        assert!(row.contains(&format!(",{},", api_row["amount"].as_str().unwrap())), "{row} vs {api_row}");
        // The approved refunds are being paid meanwhile: a status may have moved on since the export.
        let csv_status = row.split(',').nth(8).unwrap();
        let api_status = api_row["status"].as_str().unwrap();
        let moved_on =
            matches!((csv_status, api_status), ("Pending", "Processing" | "Completed") | ("Processing", "Completed"));
        assert!(csv_status == api_status || moved_on, "{row} vs {api_status}");
    }
    // One export in the role matrix, one here: each is audited.
    assert_eq!(audit(app, &approver.email, "export.refunds").await.len(), 2);

    // The audit log, read and exported by the admin, holds every entry; the database refuses to change it.
    let csv = ab.get("/console/export/audit.csv").await;
    assert_eq!(csv.status, 200);
    let total = app
        .store
        .audit_log(&AuditFilter::default(), &PageRequest { limit: 1, ..PageRequest::default() })
        .await
        .unwrap()
        .total_count;
    // The export's own entry is written before it streams.
    assert_eq!(csv.body.trim_end().split("\r\n").count() as i64 - 1, total, "{}", csv.body);
    for action in
        ["login", "operator.setup", "operator.add", "link.create", "refund.approve", "refund.reject", "denied"]
    {
        assert!(csv.body.contains(&format!(",{action},")), "the audit log has {action}");
    }
    for sql in ["UPDATE audit_log SET email = 'x'", "DELETE FROM audit_log"] {
        assert!(sqlx::query(sql).execute(app.store.pool()).await.is_err(), "{sql} is refused");
    }

    // The dashboard shows each sandbox chain's hot wallet per token.
    let dash = ab.get("/console/dashboard").await;
    let wallets = dash.body.split("data-testid=\"wallets\"").nth(1).expect("a hot-wallet table");
    assert!(wallets.contains("<td>ETH</td><td>ETH_USDT</td>"), "{wallets}");
    assert!(!wallets.contains("did not answer"), "{wallets}");

    // The merchant's page: its balance as the API has it, a chart of it, the refunds per day.
    let page = ab.get(&format!("/console/merchants/{m1}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let api_balance = app.merchant_balance(&m1, "ETH_USDT").await;
    assert_eq!(page.testid("balance-ETH_USDT"), api_balance["available_balance"].as_str().unwrap(), "{api_balance}");
    assert_eq!(page.body.matches("<svg class=\"chart\"").count(), 2, "a balance chart and a volume chart");
    // The ledger's postings: every one of them, summing to zero per token; the merchant's balance
    // changes end at its balance.
    let csv = ab.get("/console/export/postings.csv").await;
    let lines: Vec<&str> = csv.body.trim_end().split("\r\n").skip(1).collect();
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM postings").fetch_one(app.store.pool()).await.unwrap();
    assert_eq!(lines.len() as i64, stored, "{}", csv.body);
    let mut sums: HashMap<String, i128> = HashMap::new();
    for l in &lines {
        let f: Vec<&str> = l.split(',').collect();
        let (int, frac) = f[5].split_once('.').unwrap_or((f[5], ""));
        let units: i128 = format!("{int}{frac:0<6}").parse().unwrap();
        *sums.entry(f[4].to_owned()).or_default() += units;
    }
    assert!(sums.values().all(|s| *s == 0), "postings sum to zero per token: {sums:?}");
    let changes = ab.get(&format!("/console/export/postings.csv?account=merchant:{m1}&token_id=ETH_USDT")).await;
    let last = changes.body.trim_end().split("\r\n").last().unwrap().split(',').nth(6).unwrap().to_owned();
    assert_eq!(last, api_balance["available_balance"].as_str().unwrap());
    let limited_psp = lb.get("/console/export/postings.csv?account=psp").await;
    assert_eq!(limited_psp.status, 422, "a merchant-limited operator exports its own merchant's only");
    let own_changes = lb.get("/console/export/postings.csv").await;
    assert!(own_changes.body.trim_end().split("\r\n").skip(1).all(|l| l.contains(&format!(",merchant:{m1},"))));

    // The webhooks page shows the failing endpoint; its failed deliveries are sent again.
    let mut failed = 0;
    for _ in 0..100 {
        let p = ab.get(&format!("/console/webhooks/{endpoint_id}")).await;
        failed = p.body.matches("class=\"secondary\">Send again").count();
        if failed > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(failed > 0, "the deliveries to the unreachable endpoint failed");
    let list = ab.get("/console/webhooks").await;
    assert!(list.body.contains("http://127.0.0.1:9/down"));
    let csrf = list.field("csrf");
    let again = ab.post(&format!("/console/webhooks/{endpoint_id}/retry-failed"), &[("csrf", &csrf)]).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    assert!(again.location.contains("retried="), "{}", again.location);
    assert_ne!(again.location, format!("/console/webhooks/{endpoint_id}?retried=0"));
    let entry = &audit(app, &admin.email, "webhook.retry_failed").await[0];
    assert_eq!(entry.subject, endpoint_id);
    assert_eq!(lb.get("/console/webhooks").await.status, StatusCode::FORBIDDEN, "webhooks are the PSP's");

    // The admin adds an operator: a set-up link, shown once; then disables it.
    let ops = ab.get("/console/operators").await;
    let csrf = ops.field("csrf");
    let added = ab
        .post(
            "/console/operators",
            &[("csrf", &csrf), ("email", "new@psp.example"), ("role", "support"), ("merchants", &m1)],
        )
        .await;
    assert_eq!(added.status, 200, "{}", added.body);
    assert!(added.testid("setup-url").contains("/console/setup?token="));
    let new_id = app.store.operator_by_email("new@psp.example").await.unwrap().unwrap().operator_id;
    let disabled = ab.post(&format!("/console/operators/{new_id}/disable"), &[("csrf", &csrf)]).await;
    assert_eq!(disabled.status, 200, "{}", disabled.body);
    assert!(app.store.operator(&new_id).await.unwrap().unwrap().disabled_at.is_some());
    assert_eq!(audit(app, &admin.email, "operator.disable").await[0].subject, "new@psp.example");
}

async fn sessions_expire_and_failed_logins_lock(app: &TestApp) {
    let alice = person(app, "alice@psp.example", OperatorRole::Viewer, &[]).await;
    let mut b = signed_in(app, &alice).await;
    assert_eq!(b.get("/console/dashboard").await.status, 200);
    // The same code again is refused, even with the right password.
    let mut replay = Browser::new(app);
    let again = replay.login(&alice.email, PASSWORD, &alice.last_code()).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "{}", again.body);
    // Idle past the limit (2 s here): the session ends.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let gone = b.get("/console/dashboard").await;
    assert_eq!((gone.status, gone.location.as_str()), (StatusCode::SEE_OTHER, "/console/login"));

    // Log out: the cookie stops working at once.
    let mut b = signed_in(app, &alice).await;
    let csrf = b.get("/console/dashboard").await.field("csrf");
    let cookie = b.cookie_header();
    let out = b.post("/console/logout", &[("csrf", &csrf)]).await;
    assert_eq!(out.location, "/console/login");
    let mut stale = Browser::new(app);
    stale.cookies =
        cookie.split("; ").map(|kv| kv.split_once('=').unwrap()).map(|(k, v)| (k.into(), v.into())).collect();
    assert_eq!(stale.get("/console/dashboard").await.location, "/console/login");

    // Login without the form's CSRF token is refused.
    let mut bare = Browser::new(app);
    let p = bare.post("/console/login", &[("email", &alice.email), ("password", PASSWORD), ("code", "123456")]).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);

    // Three wrong passwords lock the account; then even the right one is refused, and says until when.
    let bob = person(app, "bob@psp.example", OperatorRole::Support, &[]).await;
    let mut b = Browser::new(app);
    for i in 0..3 {
        let r = b.login(&bob.email, "wrong password!!", "000000").await;
        let expected = if i < 2 { StatusCode::UNAUTHORIZED } else { StatusCode::FORBIDDEN };
        assert_eq!(r.status, expected, "attempt {i}: {}", r.body);
    }
    let r = b.login(&bob.email, PASSWORD, &bob.next_code().await).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("locked until"), "{}", r.body);
    assert_eq!(audit(app, &bob.email, "login.failed").await.len(), 2);
    assert_eq!(audit(app, &bob.email, "login.lockout").await.len(), 1);
    assert_eq!(audit(app, &bob.email, "login.locked").await.len(), 1);
    // An unknown address is refused the same way, and audited.
    let r = b.login("nobody@psp.example", PASSWORD, "123456").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("Wrong e-mail, password or code."));
    assert_eq!(audit(app, "nobody@psp.example", "login.failed").await.len(), 1);
}

/// Held pay-ins from the console: an approver refunds part of one to an address and isolates the rest,
/// each a `Held` refund paid once and audited; another is released to its merchant; support may not
/// decide, and the use case refuses a support agent's or viewer's actor by itself.
async fn held_pay_ins_are_decided_in_the_console(app: &TestApp) {
    use crate::chains::TestChain;
    use crate::helpers::USER_ADDRESS;
    use crate::screening::{paid_from, DENIED, QUARANTINE};
    let chain = app.sandbox("ETH");
    let m = app.create_merchant("Shop").await;
    let tx1 = paid_from(app, &m, "h1", DENIED).await;
    let tx2 = paid_from(app, &m, "h2", DENIED).await;
    let approver = person(app, "approver@psp.example", OperatorRole::Approver, &[]).await;
    let support = person(app, "support@psp.example", OperatorRole::Support, &[]).await;
    let viewer = person(app, "viewer@psp.example", OperatorRole::Viewer, &[]).await;

    let mut pb = signed_in(app, &approver).await;
    let page = pb.get("/console/held").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains(&tx1) && page.body.contains(&tx2), "{}", page.body);
    assert!(page.body.contains(&format!("title=\"to {QUARANTINE}\"")), "isolation names its address");
    let csrf = page.field("csrf");

    // Refund 4 of tx1's 10 to an address; more than is held is refused; isolate the other 6.
    let paid_before = chain.token_balance(USER_ADDRESS).await;
    let made = pb
        .post(&format!("/console/held/{tx1}/refund"), &[("csrf", &csrf), ("amount", "4"), ("address", USER_ADDRESS)])
        .await;
    assert_eq!(made.status, StatusCode::SEE_OTHER, "{}", made.body);
    let refund_id = made.location.rsplit('/').next().unwrap().to_owned();
    let again = pb
        .post(&format!("/console/held/{tx1}/refund"), &[("csrf", &csrf), ("amount", "4"), ("address", USER_ADDRESS)])
        .await;
    assert_eq!(again.status, 409, "one disposition at a time: {}", again.body);
    let r = app.mine_until(&chain, &refund_id, "Completed").await;
    assert_eq!(
        (r["refund_type"].as_str(), r["amount"].as_str(), r["initiator"].as_str()),
        (Some("Held"), Some("4"), Some("operator:approver@psp.example")),
        "{r}"
    );
    assert_eq!(chain.token_balance(USER_ADDRESS).await - paid_before, 4_000_000);
    let too_much = pb.post(&format!("/console/held/{tx1}/isolate"), &[("csrf", &csrf), ("amount", "6.000001")]).await;
    assert_eq!(too_much.status, 400, "{}", too_much.body);
    let isolated = pb.post(&format!("/console/held/{tx1}/isolate"), &[("csrf", &csrf), ("amount", "6")]).await;
    assert_eq!(isolated.status, StatusCode::SEE_OTHER, "{}", isolated.body);
    let isolation = isolated.location.rsplit('/').next().unwrap().to_owned();
    app.mine_until(&chain, &isolation, "Completed").await;
    assert_eq!(chain.token_balance(QUARANTINE).await, 6_000_000);
    let d = app.get(&format!("/v2/compliance/funds/disposition?transaction_id={tx1}")).await.ok();
    assert_eq!((d["disposition_type"].as_str(), d["disposition_status"].as_str()), (Some("Isolate"), Some("Isolated")));
    let entries = audit(app, &approver.email, "payin.refund").await;
    assert_eq!(
        (entries.len(), entries[0].subject.as_str(), entries[0].detail.as_str()),
        (1, tx1.as_str(), refund_id.as_str())
    );
    assert_eq!(audit(app, &approver.email, "payin.isolate").await.len(), 1);

    // Support may not decide, in the console or through the use case; nor may a viewer's actor.
    let mut sb = signed_in(app, &support).await;
    let scsrf = sb.get("/console/held").await.field("csrf");
    let refused = sb
        .post(&format!("/console/held/{tx2}/refund"), &[("csrf", &scsrf), ("amount", "1"), ("address", USER_ADDRESS)])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    for p in [&support, &viewer] {
        let row = app.store.operator_by_email(&p.email).await.unwrap().unwrap();
        let actor = operators::actor_of(&row, None, "127.0.0.1");
        let r = ebb_app::dispositions::unfreeze(&app.engine, &actor, &tx2).await;
        assert!(matches!(r, Err(ebb_app::AppError::Forbidden(_))), "{}: {r:?}", p.email);
    }

    // The approver releases tx2 to the merchant: credited once.
    let before = app.merchant_balance(&m, "ETH_USDT").await["total_balance"].as_str().unwrap().to_owned();
    let released = pb.post(&format!("/console/held/{tx2}/unfreeze"), &[("csrf", &csrf)]).await;
    assert_eq!(released.status, StatusCode::SEE_OTHER, "{}", released.body);
    assert_eq!(
        (before.as_str(), app.merchant_balance(&m, "ETH_USDT").await["total_balance"].as_str()),
        ("0", Some("10"))
    );
    assert_eq!(audit(app, &approver.email, "payin.unfreeze").await.len(), 1);
    assert!(!pb.get("/console/held").await.body.contains(&tx2), "released pay-ins are no longer held");
}

/// What a reconciliation run in the console found: the differences of its CSV as (kind, subject), and
/// what the chain holds of ETH_USDT beyond the ledger, in base units.
pub(crate) async fn reconciled(app: &TestApp) -> (Vec<(String, String)>, i128) {
    let viewer = person(app, &format!("{}@psp.example", uuid::Uuid::new_v4()), OperatorRole::Viewer, &[]).await;
    let mut b = signed_in(app, &viewer).await;
    let page = b.get("/console/reconciliation?run=1").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("data-testid=\"ledger-ok\""), "{}", page.body);
    let beyond = page.testid("beyond-ETH_USDT");
    let (sign, number) = match beyond.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, beyond.as_str()),
    };
    let number = number.trim_end_matches(" USDT");
    let beyond = sign * ebb_core::Amount::parse_decimal(number, 6, 6).unwrap().base_units() as i128;
    let csv = b.get("/console/export/reconciliation.csv").await;
    assert_eq!(csv.status, 200);
    let mut lines = csv.body.lines();
    assert_eq!(lines.next(), Some("chain_id,kind,token_id,subject,recorded_base_units,on_chain_base_units,detail"));
    let differences: Vec<(String, String)> = lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[1].to_owned(), f[3].to_owned())
        })
        .collect();
    let listed = page.body.matches("<tr class=\"difference\">").count();
    assert_eq!(listed, differences.len(), "the page lists what the CSV has: {}", page.body);
    (differences, beyond)
}

/// Reconciliation on the sandbox: a clean run finds nothing and the hot wallet's funding as the float;
/// then each kind of difference made on the chain behind ebb's back is listed, once.
async fn reconciliation_lists_every_difference_between_ledger_and_chain(app: &TestApp) {
    use crate::chains::TestChain;
    use crate::helpers::USER_ADDRESS;
    use ebb_chain::Chain;
    let chain = app.sandbox("ETH");
    let hot = chain.hot_wallet();
    let funding = chain.token_balance(&hot).await as i128;
    let m = app.create_merchant("Shop").await;
    let order = app.paid_order(&m, "10", "0").await;
    let receive = order["receive_address"].as_str().unwrap().to_owned();
    let refund = app
        .post(
            "/v2/payments/refunds",
            json!({"request_id": "rec-1", "merchant_id": m, "order_id": order["order_id"], "payable_amount": "3",
                   "token_id": "ETH_USDT", "refund_type": "Merchant", "to_address": USER_ADDRESS}),
        )
        .await
        .ok();
    app.mine_until(&chain, refund["refund_id"].as_str().unwrap(), "Completed").await;
    assert_eq!(reconciled(app).await, (vec![], funding), "ledger and chain agree; the float is the funding");

    // Tokens at a receiving address that no recorded pay-in brought.
    chain.0.set_balance(&receive, "ETH_USDT", 15_000_000);
    let (found, beyond) = reconciled(app).await;
    assert_eq!(found, [("address balance".to_owned(), receive.clone())]);
    assert_eq!(beyond, funding + 5_000_000);
    chain.0.set_balance(&receive, "ETH_USDT", 10_000_000);

    // A transfer out of the hot wallet that ebb did not make.
    let token = ebb_chain::TokenRef { token_id: "ETH_USDT".into(), contract: String::new() };
    let to =
        ebb_core::Address::parse(ebb_core::ChainFamily::Evm, "0x000000000000000000000000000000000000dEaD").unwrap();
    let prepared = chain.0.prepare(&token, &to, ebb_core::Amount::from_base_units(2_000_000)).await.unwrap();
    let signed = chain.0.sign(&prepared, chain.0.pending_nonce().await.unwrap()).unwrap();
    chain.0.broadcast(&signed.raw).await.unwrap();
    chain.mine().await;
    let (found, beyond) = reconciled(app).await;
    assert_eq!(found, [("unrecorded transfer".to_owned(), signed.tx_hash.clone())]);
    assert_eq!(beyond, funding - 2_000_000, "the float paid it");

    // Tokens gone from the receiving address and an empty hot wallet: the chain holds less than the ledger.
    chain.0.set_balance(&receive, "ETH_USDT", 1_000_000);
    chain.set_hot_wallet_tokens(0).await;
    let (found, beyond) = reconciled(app).await;
    assert_eq!(beyond, 1_000_000 - 7_000_000, "1 on chain against 7 in the ledger");
    assert_eq!(
        found,
        [
            ("unrecorded transfer".to_owned(), signed.tx_hash.clone()),
            ("address balance".to_owned(), receive.clone()),
            ("shortfall".to_owned(), "ETH_USDT".to_owned()),
        ]
    );

    // The PSP's page: a merchant-limited operator is refused.
    let limited = person(app, "limited@psp.example", OperatorRole::Viewer, &[&m]).await;
    let mut lb = signed_in(app, &limited).await;
    assert_eq!(lb.get("/console/reconciliation?run=1").await.status, StatusCode::FORBIDDEN);
    assert_eq!(lb.get("/console/export/reconciliation.csv").await.status, StatusCode::FORBIDDEN);
    chain.set_hot_wallet_tokens(funding as u128).await;
}

/// The console in Chinese: chosen with the switch (a cookie), which wins over the browser's language;
/// every page and refusal in it; English again with the switch.
async fn the_console_speaks_english_and_chinese(app: &TestApp) {
    let viewer = person(app, "viewer@psp.example", OperatorRole::Viewer, &[]).await;
    let mut b = Browser::new(app);
    let english = b.get("/console/login").await;
    assert!(english.body.contains("<html lang=\"en\">") && english.body.contains(">Log in</h1>"), "{}", english.body);
    let switched = b.get("/console/lang?to=zh").await;
    assert_eq!((switched.status, switched.location.as_str()), (StatusCode::SEE_OTHER, "/console/dashboard"));
    assert_eq!(b.cookies.get("ebb_console_lang").map(String::as_str), Some("zh"));
    let login = b.get("/console/login").await;
    assert!(login.body.contains("<html lang=\"zh-CN\">") && login.body.contains(">登录</h1>"), "{}", login.body);
    assert!(login.body.contains(">English</a>"), "the switch offers English");
    let wrong = b.login(&viewer.email, "not the password", "000000").await;
    assert!(wrong.body.contains("电子邮箱、密码或验证码错误。"), "{}", wrong.body);
    let res = b.login(&viewer.email, PASSWORD, &viewer.next_code().await).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    for (path, words) in [
        ("/console/dashboard", &["<h1>概览</h1>", "今日退款", "退出登录"][..]),
        ("/console/refunds", &["<h1>退款</h1>", "请求 ID", "导出 CSV"]),
        ("/console/orders", &["<h1>订单</h1>", "个订单"]),
        ("/console/merchants", &["<h1>商户</h1>", "账本分录（CSV）"]),
        ("/console/approvals", &["<h1>待审批</h1>"]),
        ("/console/held", &["<h1>冻结的收款</h1>", "没有冻结的收款。"]),
        ("/console/webhooks", &["<h1>Webhook 端点</h1>"]),
        ("/console/reconciliation?run=1", &["<h1>对账</h1>", "账本平衡", "无：账本与各链一致。"]),
    ] {
        let page = b.get(path).await;
        assert_eq!(page.status, 200, "{path}");
        for w in words {
            assert!(page.body.contains(w), "{path} lacks {w}: {}", page.body);
        }
    }
    let refused = b.get("/console/operators").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body.contains("不允许") && refused.body.contains("您的角色（viewer）"), "{}", refused.body);
    b.get("/console/lang?to=en").await;
    assert!(b.get("/console/dashboard").await.body.contains("<h1>Dashboard</h1>"));
}
