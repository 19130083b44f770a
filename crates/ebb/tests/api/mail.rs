//! Customer e-mail through a real SMTP server the test starts (aiosmtpd from PyPI, in target/pyenv,
//! writing a Maildir): CoinGate's flow end to end (a EUR order paid, a EUR refund whose address the
//! customer confirms from the mail's link, paid, with its status mails and its callbacks; one
//! cancelled: rejected); a Cobo link mailed; Chinese mails; merchants that did not opt in; an SMTP
//! server that is down, then back (the mail waits and is sent, nothing lost).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{Options, TestApp, USER_ADDRESS};
use crate::links::Customer;
use crate::webhooks::Receiver;

/// aiosmtpd, listening on 127.0.0.1, storing every message it accepts in a Maildir.
pub struct SmtpServer {
    pub port: u16,
    maildir: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

fn python() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/pyenv/bin/python");
    let works = Command::new(&p)
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    works.then_some(p)
}

impl SmtpServer {
    /// `None` (said loudly) when aiosmtpd is not installed and CI is not set; with `CI=true` a failure.
    pub fn start() -> Option<Self> {
        let Some(python) = python() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "aiosmtpd is missing from target/pyenv (scripts/test.sh installs scripts/requirements.txt)"
            );
            eprintln!("SKIPPED: no aiosmtpd in target/pyenv; CI=true makes this a failure");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = SmtpServer { port, maildir: dir.path().join("maildir"), child: None, _dir: dir };
        server.run(&python);
        Some(server)
    }

    fn run(&mut self, python: &Path) {
        let child = Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{}", self.port)])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&self.maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("aiosmtpd starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (mail sent meanwhile waits in ebb's outbox).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.run(&python().unwrap());
    }

    pub fn settings(&self) -> ebb_worker::mail::MailSettings {
        let mut s = ebb_worker::mail::MailSettings::new(
            format!("smtp://127.0.0.1:{}", self.port),
            "Shop Refunds <refunds@shop.example>".into(),
        );
        s.poll_interval = Duration::from_millis(50);
        s.timeout = Duration::from_secs(5);
        s.retry_schedule = vec![Duration::from_millis(300); 30];
        s
    }

    /// Every message received so far, oldest first.
    pub fn received(&self) -> Vec<Mail> {
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(self.maildir.join("new"))
            .map(|d| d.filter_map(Result::ok).map(|e| (e.metadata().unwrap().modified().unwrap(), e.path())).collect())
            .unwrap_or_default();
        files.sort();
        files.into_iter().map(|(_, p)| Mail::parse(&std::fs::read_to_string(p).unwrap())).collect()
    }

    /// Waits (at most 20 s) for a message to `to` whose subject contains `subject`.
    pub async fn wait_for(&self, to: &str, subject: &str) -> Mail {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(m) = self.received().into_iter().find(|m| m.to.contains(to) && m.subject.contains(subject)) {
                return m;
            }
            let got: Vec<String> = self.received().iter().map(|m| m.subject.clone()).collect();
            assert!(Instant::now() < deadline, "no mail {subject:?} to {to}; got {got:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A received message: its headers as sent and its text, decoded.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: String,
    pub subject: String,
    pub text: String,
}

impl Mail {
    fn parse(raw: &str) -> Mail {
        let raw = raw.replace("\r\n", "\n");
        let (head, body) = raw.split_once("\n\n").expect("headers, a blank line, the body");
        // Unfold continuation lines.
        let head = head.replace("\n ", " ").replace("\n\t", " ");
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
                .unwrap_or("")
                .to_owned()
        };
        assert_eq!(header("Content-Transfer-Encoding"), "base64", "{head}");
        assert!(header("Content-Type").starts_with("text/plain; charset=utf-8"), "{head}");
        let b64: String = body.lines().collect();
        let text = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64.trim()).unwrap()).unwrap();
        Mail { from: header("From"), to: header("To"), subject: decode_subject(&header("Subject")), text }
    }
}

/// An RFC 2047 subject (`=?utf-8?b?…?=` words, as lettre writes non-ASCII ones) as text.
fn decode_subject(s: &str) -> String {
    s.split_whitespace()
        .map(|word| {
            let inner = word.strip_prefix("=?utf-8?b?").or_else(|| word.strip_prefix("=?UTF-8?B?"));
            match inner.and_then(|w| w.strip_suffix("?=")) {
                Some(b64) => String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap(),
                None => format!("{word} "),
            }
        })
        .collect::<String>()
        .trim()
        .to_owned()
}

async fn cg(app: &TestApp, method: Method, path: &str, token: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let mut req = app
        .client
        .request(method, format!("http://{}/coingate{path}", app.addr))
        .header("Authorization", format!("Token {token}"));
    if !form.is_empty() {
        req = req
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert!(status < 500, "ebb answered {status}: {text}");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// A merchant (its customers e-mailed in `lang`, or not), its CoinGate token, and a paid €46 order.
async fn shop(app: &TestApp, lang: Option<&str>) -> (String, String, i64) {
    let merchant = app.create_merchant("Shop").await;
    if lang.is_some() {
        ebb_app::mails::set_customer_mail(&app.store, &merchant, lang).await.unwrap();
    }
    let token =
        ebb_app::coingate::add_token(&app.store, &merchant, "mail", ebb_store::webhooks::BodyFormat::CoinGateForm)
            .await
            .unwrap()
            .token;
    let order = [("price_amount", "46"), ("price_currency", "EUR"), ("receive_currency", "EUR"), ("order_id", "A-1")];
    let (_, created) = cg(app, Method::POST, "/v2/orders", &token, &order).await;
    let id = created["id"].as_i64().unwrap();
    let pay = [("pay_currency", "USDT")];
    assert_eq!(cg(app, Method::POST, &format!("/v2/orders/{id}/checkout"), &token, &pay).await.0, 200);
    let ebb_order = app.store.coingate_order(id).await.unwrap().unwrap().order_id.unwrap();
    app.pay_in_sandbox(&ebb_order, json!({})).await;
    (merchant, token, id)
}

/// A refund's mails once none is pending any more.
async fn settled(app: &TestApp, refund_id: &str) -> Vec<ebb_store::mails::MailRow> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let outbox = app.store.mails_of(refund_id).await.unwrap();
        if outbox.iter().all(|m| m.status != "Pending") {
            return outbox;
        }
        assert!(Instant::now() < deadline, "mails still pending: {outbox:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn mail_flow(app: &TestApp, smtp: &mut SmtpServer) {
    // A CoinGate refund with the customer's e-mail and no skip: nothing is paid until the customer
    // confirms the address through the link the mail carries.
    // Its callback URL hears of it at each step, next to the customer's mails.
    let receiver = Receiver::start().await;
    let (_, token, id) = shop(app, Some("en")).await;
    let ask = [("amount", "23"), ("address", USER_ADDRESS), ("email", "buyer@example.com"), ("reason", "damaged")];
    let mut with_callback = ask.to_vec();
    with_callback.push(("callback_url", receiver.url.as_str()));
    let (status, refund) = cg(app, Method::POST, &format!("/v2/orders/{id}/refunds"), &token, &with_callback).await;
    assert_eq!(status, 200, "{refund}");
    assert_eq!((refund["status"].as_str(), refund["address"].as_str()), (Some("pending"), Some(USER_ADDRESS)));
    let refund_id = app.store.coingate_refund(refund["id"].as_i64().unwrap()).await.unwrap().unwrap().refund_id;
    let cobo = app.get(&format!("/v2/payments/refunds/{refund_id}")).await.ok();
    assert_eq!(cobo["status"], "PendingConfirmation", "no address until confirmed: {cobo}");

    let mail = smtp.wait_for("buyer@example.com", "Confirm the address for your refund from Shop").await;
    assert_eq!(mail.from, "\"Shop Refunds\" <refunds@shop.example>");
    assert!(mail.text.contains("23 EUR (25 USDT)") && mail.text.contains("order A-1"), "{}", mail.text);
    assert!(mail.text.contains(USER_ADDRESS), "{}", mail.text);
    let link = mail.text.lines().find(|l| l.contains("/refund-link?token=")).expect("the link").trim().to_owned();
    let path = link.strip_prefix(&format!("http://{}", app.addr)).expect("ebb's public URL").to_owned();
    assert!(path.ends_with("&lang=en"), "{path}");
    // The outbox forgot the token once the mail was sent, and logs the mail without it.
    let outbox = settled(app, &refund_id).await;
    let confirmation = outbox.iter().find(|m| m.kind == ebb_store::mails::MailKind::AddressConfirmation).unwrap();
    assert_eq!((confirmation.status.as_str(), confirmation.link_token.as_deref()), ("Sent", None));
    let token_in_link = path.split("token=").nth(1).unwrap().split('&').next().unwrap();
    let logged = confirmation.message.clone().unwrap();
    assert!(!logged.contains(token_in_link) && logged.contains("refund-link?token=…"), "{logged}");

    // The customer follows the link: the address is pre-filled; confirming it sends the refund.
    let mut customer = Customer::new(app);
    let form = customer.get(&path).await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.has(&format!("value=\"{USER_ADDRESS}\"")), "the address to confirm is pre-filled");
    let confirm = customer.post_form(&form, "/refund-link/confirm", USER_ADDRESS, &[]).await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let done = customer.post_form(&confirm, "/refund-link/submit", &confirm.field("address"), &[]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let paid = app.mine_until(&app.sandbox("ETH"), &refund_id, "Completed").await;
    assert_eq!(paid["to_address"], USER_ADDRESS);

    // Status mails: accepted, on its way, sent with the transaction.
    smtp.wait_for("buyer@example.com", "Your refund from Shop has been accepted").await;
    smtp.wait_for("buyer@example.com", "Your refund from Shop is on its way").await;
    let sent = smtp.wait_for("buyer@example.com", "Your refund from Shop has been sent").await;
    let tx_hash = paid["transactions"][0]["tx_hash"].as_str().unwrap();
    assert!(sent.text.contains(tx_hash), "{}", sent.text);
    // The SMTP server may hold a mail a moment before ebb records it as sent.
    let outbox = settled(app, &refund_id).await;
    assert!(outbox.iter().all(|m| m.status == "Sent" || m.status == "Skipped"), "{outbox:?}");
    assert!(outbox.iter().any(|m| m.status == "Skipped"), "waiting for the address is not news: {outbox:?}");
    let status_of = |r: &crate::webhooks::Received| {
        url::form_urlencoded::parse(r.body.as_bytes()).find(|(k, _)| k == "status").map(|(_, v)| v.into_owned())
    };
    let calls = receiver
        .wait_until(Duration::from_secs(20), "the completed callback", |r| {
            r.iter().any(|r| status_of(r).as_deref() == Some("completed"))
        })
        .await;
    let mut seen: Vec<String> = calls.iter().filter_map(status_of).collect();
    seen.dedup();
    assert_eq!(seen, ["pending", "processing", "completed"]);

    // A refund waiting for the customer's confirmation can be cancelled: the callback says rejected,
    // with the reason, and the customer is told it was not sent.
    let mut small = with_callback.clone();
    small[0] = ("amount", "10");
    let (_, second) = cg(app, Method::POST, &format!("/v2/orders/{id}/refunds"), &token, &small).await;
    let second_id = app.store.coingate_refund(second["id"].as_i64().unwrap()).await.unwrap().unwrap().refund_id;
    let cancelled = app.put(&format!("/v2/payments/refunds/{second_id}/cancel"), None).await.ok();
    assert_eq!(cancelled["status"], "Failed");
    let calls = receiver
        .wait_until(Duration::from_secs(20), "the rejected callback", |r| {
            r.iter().any(|r| status_of(r).as_deref() == Some("rejected"))
        })
        .await;
    let rejected = calls.iter().find(|r| status_of(r).as_deref() == Some("rejected")).unwrap();
    assert!(rejected.body.contains("compliance_rejection_reason=Cancelled"), "{}", rejected.body);
    let not_sent = smtp.wait_for("buyer@example.com", "Your refund from Shop was not sent").await;
    assert!(not_sent.text.contains("10 EUR") && not_sent.text.contains("Cancelled"), "{}", not_sent.text);

    // A refund link made through the Cobo API with the customer's e-mail (ebb's addition) is e-mailed.
    let (merchant, _, linked_id) = shop(app, Some("en")).await;
    let order_id = app.store.coingate_order(linked_id).await.unwrap().unwrap().order_id.unwrap();
    let link_body = |email: &str| {
        json!({"business_info": {"order_id": order_id, "amount": "5", "refund_source": "Merchant",
            "merchant_id": merchant, "customer_email": email}})
    };
    let bad = app.post("/v2/payments/links/refunds", link_body("Buyer <linked@example.com>")).await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    let made = app.post("/v2/payments/links/refunds", link_body("linked@example.com")).await;
    assert_eq!(made.status, 201, "{}", made.body);
    let mail = smtp.wait_for("linked@example.com", "Where should Shop send your refund?").await;
    assert!(mail.text.contains("5 USDT") && mail.text.contains("Ethereum"), "{}", mail.text);
    let link = mail.text.lines().find(|l| l.contains("/refund-link?token=")).expect("the link").trim().to_owned();
    assert!(link.contains(made.body["token"].as_str().unwrap()), "the link the API answered: {link}");
    let page = Customer::new(app).get(link.strip_prefix(&format!("http://{}", app.addr)).unwrap()).await;
    assert_eq!(page.status, 200, "{}", page.body);

    // A merchant that does not e-mail its customers cannot ask them to confirm; skipping works.
    let (_, quiet_token, quiet_id) = shop(app, None).await;
    let path = format!("/v2/orders/{quiet_id}/refunds");
    let (status, refused) = cg(app, Method::POST, &path, &quiet_token, &ask).await;
    assert_eq!((status, refused["reason"].as_str()), (422, Some("RefundIsNotValid")), "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("skip_user_address_confirmation"), "{refused}");
    let mut skipping = ask.to_vec();
    skipping.push(("skip_user_address_confirmation", "true"));
    let (status, quiet) = cg(app, Method::POST, &path, &quiet_token, &skipping).await;
    assert_eq!(status, 200, "{quiet}");
    let quiet_refund = app.store.coingate_refund(quiet["id"].as_i64().unwrap()).await.unwrap().unwrap().refund_id;
    assert!(app.store.mails_of(&quiet_refund).await.unwrap().is_empty(), "no mail for that merchant");
    let quiet_order = app.store.coingate_order(quiet_id).await.unwrap().unwrap().order_id.unwrap();
    let quiet_merchant = app.store.order(&quiet_order).await.unwrap().unwrap().merchant_id;
    let body = json!({"business_info": {"order_id": quiet_order, "amount": "1", "refund_source": "Merchant",
        "merchant_id": quiet_merchant, "customer_email": "buyer@example.com"}});
    let refused = app.post("/v2/payments/links/refunds", body).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body["error_message"].as_str().unwrap_or("").contains("ebb mail customers"), "{}", refused.body);

    // Chinese, and an SMTP server that is down: the mail waits in the outbox, then goes.
    smtp.stop();
    let (_, zh_token, zh_id) = shop(app, Some("zh")).await;
    let (status, zh) = cg(app, Method::POST, &format!("/v2/orders/{zh_id}/refunds"), &zh_token, &skipping).await;
    assert_eq!(status, 200, "{zh}");
    let zh_refund = app.store.coingate_refund(zh["id"].as_i64().unwrap()).await.unwrap().unwrap().refund_id;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let outbox = app.store.mails_of(&zh_refund).await.unwrap();
        if outbox.iter().any(|m| m.status == "Pending" && m.attempts >= 2 && m.last_error.is_some()) {
            break;
        }
        assert!(Instant::now() < deadline, "the mail is retried while the server is down: {outbox:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    smtp.restart();
    let accepted = smtp.wait_for("buyer@example.com", "的退款已受理").await;
    assert!(accepted.text.contains("您好") && accepted.text.contains("23 EUR"), "{}", accepted.text);
}

async fn customer_mail(app: &TestApp, smtp: &mut SmtpServer) {
    mail_flow(app, smtp).await;
}

mod customer_mail_through_smtp {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let Some(mut smtp) = SmtpServer::start() else { return };
        let options = Options { payouts: true, mail: Some(smtp.settings()), ..Options::default() };
        let app = crate::helpers::spawn_app_with(crate::helpers::Db::Sqlite, options).await;
        customer_mail(&app, &mut smtp).await;
        app.finish().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let Some(mut smtp) = SmtpServer::start() else { return };
        let options = Options { payouts: true, mail: Some(smtp.settings()), ..Options::default() };
        let Some(app) = crate::helpers::spawn_postgres_app_with(options).await else { return };
        customer_mail(&app, &mut smtp).await;
        app.finish().await;
    }
}
