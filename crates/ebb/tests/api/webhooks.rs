//! Webhooks against a real HTTP receiver on 127.0.0.1: signatures (Cobo's and Standard Webhooks') on
//! every delivery, retries on the schedule, `Retry-After`, 410, timeouts that do not hold up other
//! endpoints, the SSRF guard, delivery order per refund, and the event log API.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde_json::{json, Value};

use crate::helpers::{test_webhook_settings, Options, TestApp, USER_ADDRESS};

pub const ALL_EVENTS: [&str; 12] = [
    "payment.refund.status.updated",
    "payment.refund.approval.updated",
    "payment.order.status.updated",
    "payment.transaction.created",
    "payment.transaction.completed",
    "payment.transaction.failed",
    "payment.transaction.late",
    "payment.transaction.held",
    "compliance.kyt.screenings.status.updated",
    "compliance.disposition.status.updated",
    "compliance.kya.screenings.status.updated",
    "kyt.crypto_refund.updated",
];

#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub headers: HeaderMap,
    pub body: String,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }

    pub fn event_id(&self) -> String {
        self.json()["event_id"].as_str().unwrap().to_owned()
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).unwrap_or_else(|| panic!("no {name} header")).to_str().unwrap()
    }

    /// Checks Cobo's signature the way the SDK's `server_demo.py` does: Ed25519 over
    /// `sha256(sha256(body|Biz-Timestamp))` with the sender's public key, and a timestamp within 5 minutes.
    pub fn verify_cobo(&self, server_public: &VerifyingKey) {
        let ts = self.header("biz-timestamp");
        let age = (ebb_api::now_ms() - ts.parse::<i64>().unwrap()).abs();
        assert!(age < 5 * 60 * 1000, "Biz-Timestamp {ts} is {age} ms off");
        let mut sig = [0u8; 64];
        hex::decode_to_slice(self.header("biz-resp-signature"), &mut sig).unwrap();
        let message = format!("{}|{ts}", self.body);
        server_public
            .verify(&ebb_api::auth::double_sha256(message.as_bytes()), &Signature::from_bytes(&sig))
            .expect("Biz-Resp-Signature verifies with the server key");
    }

    /// Checks the Standard Webhooks signature with the endpoint's secret, and that `webhook-id` is the
    /// event id.
    pub fn verify_standard(&self, secret: &str) {
        let (id, ts) = (self.header("webhook-id"), self.header("webhook-timestamp"));
        assert_eq!(id, self.event_id());
        let ts: i64 = ts.parse().unwrap();
        assert!((ebb_store::now_s() - ts).abs() < 300, "webhook-timestamp too far off");
        let expected = ebb_core::signing::standard_signature(secret, id, ts, self.body.as_bytes()).unwrap();
        let sent: Vec<&str> = self.header("webhook-signature").split(' ').collect();
        assert!(sent.contains(&expected.as_str()), "webhook-signature {sent:?} lacks {expected}");
    }
}

#[derive(Default)]
struct ReceiverState {
    received: Vec<Received>,
    /// Answers for the next requests, in order; then 200.
    script: VecDeque<(u16, Option<&'static str>)>,
    delay: Duration,
    /// The first request whose body contains all of these gets a 500.
    fail_once_containing: Option<Vec<String>>,
    /// Attempts in flight per event id, and the most ever seen at once.
    in_flight: HashMap<String, usize>,
    max_concurrent_per_event: usize,
}

/// A webhook receiver on 127.0.0.1 that records every request and answers as scripted.
pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<ReceiverState>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    let event_id = serde_json::from_str::<Value>(&body).ok().and_then(|v| v["event_id"].as_str().map(str::to_owned));
    let (answer, delay) = {
        let mut s = state.lock().unwrap();
        s.received.push(Received { at: Instant::now(), headers: headers.clone(), body });
        if let Some(id) = &event_id {
            let n = s.in_flight.entry(id.clone()).or_default();
            *n += 1;
            let n = *n;
            s.max_concurrent_per_event = s.max_concurrent_per_event.max(n);
        }
        let last = s.received.last().unwrap().body.clone();
        let targeted = s.fail_once_containing.as_ref().is_some_and(|needles| needles.iter().all(|n| last.contains(n)));
        if targeted {
            s.fail_once_containing = None;
            ((500, None), s.delay)
        } else {
            (s.script.pop_front().unwrap_or((200, None)), s.delay)
        }
    };
    tokio::time::sleep(delay).await;
    if let Some(id) = &event_id {
        *state.lock().unwrap().in_flight.get_mut(id).unwrap() -= 1;
    }
    let mut resp = (StatusCode::from_u16(answer.0).unwrap(), format!("answered {}", answer.0)).into_response();
    if let Some(retry_after) = answer.1 {
        resp.headers_mut().insert("retry-after", retry_after.parse().unwrap());
    }
    resp
}

impl Receiver {
    pub async fn start() -> Self {
        Self::start_on(0).await
    }

    pub async fn start_on(port: u16) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state: Arc<Mutex<ReceiverState>> = Arc::default();
        let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url: format!("http://{addr}/hook"), state, server }
    }

    /// The next requests get these statuses (with an optional `Retry-After`), in order.
    pub fn answer_next(&self, answers: &[(u16, Option<&'static str>)]) {
        self.state.lock().unwrap().script.extend(answers.iter().copied());
    }

    pub fn fail_once_containing(&self, needles: &[&str]) {
        self.state.lock().unwrap().fail_once_containing = Some(needles.iter().map(|n| n.to_string()).collect());
    }

    pub fn set_delay(&self, d: Duration) {
        self.state.lock().unwrap().delay = d;
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    pub fn max_concurrent_per_event(&self) -> usize {
        self.state.lock().unwrap().max_concurrent_per_event
    }

    /// Waits (at most `within`) until `done` holds for what arrived.
    pub async fn wait_until(&self, within: Duration, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if done(&got) {
                return got;
            }
            assert!(Instant::now() < deadline, "receiver: {what} did not happen; got {} requests", got.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Registers `url` for all event types; returns the endpoint as answered (with its secret if asked).
pub async fn add_endpoint(app: &TestApp, url: &str, standard: bool) -> Value {
    let resp = app
        .post(
            "/v2/webhooks/endpoints",
            json!({"url": url, "subscribed_events": ALL_EVENTS, "standard_webhooks": standard}),
        )
        .await;
    assert_eq!(resp.status, 201, "{}", resp.body);
    resp.body
}

async fn trigger(app: &TestApp, event_type: &str, data: Value) {
    let resp = app.post("/v2/webhooks/events/trigger", json!({"event_type": event_type, "override_data": data})).await;
    assert_eq!(resp.status, 201, "{}", resp.body);
    assert_eq!(resp.body["triggered"], true);
}

async fn events_of(app: &TestApp, endpoint_id: &str) -> Vec<Value> {
    let page = app.get(&format!("/v2/webhooks/endpoints/{endpoint_id}/events?limit=50")).await.ok();
    page["data"].as_array().unwrap().clone()
}

async fn logs_of(app: &TestApp, endpoint_id: &str, event_id: &str) -> Vec<Value> {
    let page = app.get(&format!("/v2/webhooks/endpoints/{endpoint_id}/events/{event_id}/logs?limit=50")).await.ok();
    page["data"].as_array().unwrap().clone()
}

/// Polls an event of an endpoint until `done` holds (5 s at most).
async fn wait_event(app: &TestApp, endpoint_id: &str, event_id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let e = app.get(&format!("/v2/webhooks/endpoints/{endpoint_id}/events/{event_id}")).await.ok();
        if done(&e) {
            return e;
        }
        assert!(Instant::now() < deadline, "event never got there: {e}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A refund's life, from the order's payment to the payout's confirmation, arrives as signed events in
/// the order it happened; the event log shows each delivered once.
async fn a_refund_life_arrives_signed_and_in_order(app: &TestApp) {
    let receiver = Receiver::start().await;
    let endpoint = add_endpoint(app, &receiver.url, true).await;
    let secret = endpoint["signing_secret"].as_str().expect("the secret, shown once").to_owned();
    assert!(secret.starts_with("whsec_"));
    let endpoint_id = endpoint["endpoint_id"].as_str().unwrap();
    let shown = app.get(&format!("/v2/webhooks/endpoints/{endpoint_id}")).await.ok();
    assert!(shown.get("signing_secret").is_none(), "never shown again: {shown}");
    assert_eq!(shown["standard_webhooks"], true);

    let merchant = app.create_merchant("hooks").await;
    let order = app.paid_order(&merchant, "50", "0").await;
    let order_id = order["order_id"].as_str().unwrap();
    let refund = app
        .post(
            "/v2/payments/refunds",
            json!({"request_id": "hook-1", "merchant_id": merchant, "order_id": order_id, "payable_amount": "20",
                   "token_id": "ETH_USDT", "refund_type": "Merchant", "to_address": USER_ADDRESS}),
        )
        .await
        .ok();
    let refund_id = refund["refund_id"].as_str().unwrap().to_owned();
    app.mine_until(&app.sandbox("ETH"), &refund_id, "Completed").await;

    let of_refund = |got: &[Received]| -> Vec<Value> {
        got.iter()
            .map(Received::json)
            .filter(|e| e["type"] == "payment.refund.status.updated" && e["data"]["refund_id"] == refund_id.as_str())
            .collect()
    };
    let got = receiver
        .wait_until(Duration::from_secs(10), "the refund's Completed event", |got| {
            of_refund(got).iter().any(|e| e["data"]["status"] == "Completed")
        })
        .await;
    for r in &got {
        r.verify_cobo(&app.server_public);
        r.verify_standard(&secret);
    }
    let statuses: Vec<String> =
        of_refund(&got).iter().map(|e| e["data"]["status"].as_str().unwrap().to_owned()).collect();
    assert_eq!(statuses, ["Pending", "Processing", "Completed"]);
    let completed = of_refund(&got).pop().unwrap();
    assert_eq!(completed["data"]["data_type"], "PaymentRefund");
    assert_eq!(completed["data"]["amount"], "20");
    assert_eq!(completed["data"]["transactions"][0]["status"], "Completed", "the snapshot after the change");
    assert_eq!(completed["url"], receiver.url.as_str());
    assert!(completed["created_timestamp"].as_i64().unwrap() > 1_600_000_000_000, "milliseconds");
    // Every event of the refund's subject (its payout legs too) arrives in sequence order.
    let subject: Vec<i64> = got
        .iter()
        .map(Received::json)
        .filter(|e| e["data"]["refund_id"] == refund_id.as_str())
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert!(subject.len() >= 5 && subject.windows(2).all(|w| w[0] < w[1]), "{subject:?}");
    let types: Vec<String> = got
        .iter()
        .map(Received::json)
        .filter(|e| e["data"]["refund_id"] == refund_id.as_str() && e["data"]["data_type"] == "PaymentTransaction")
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(types, ["payment.transaction.created", "payment.transaction.completed"]);
    let order_statuses: Vec<String> = got
        .iter()
        .map(Received::json)
        .filter(|e| e["type"] == "payment.order.status.updated" && e["data"]["order_id"] == order_id)
        .map(|e| e["data"]["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(order_statuses.last().map(String::as_str), Some("Completed"), "{order_statuses:?}");

    // The log: each event delivered once, by one successful attempt with the request as sent. The
    // receiver may have answered before the dispatcher recorded the outcome, so wait for the record.
    let listed = events_of(app, endpoint_id).await;
    assert_eq!(listed.len(), got.len(), "one delivery per event");
    for e in &listed {
        let event_id = e["event_id"].as_str().unwrap();
        let e = wait_event(app, endpoint_id, event_id, |e| e["status"] != "Retrying").await;
        assert_eq!(e["status"], "Success", "{e}");
        assert!(e.get("next_retry_timestamp").is_none());
    }
    let event_id = completed["event_id"].as_str().unwrap();
    let logs = logs_of(app, endpoint_id, event_id).await;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0]["success"], true);
    assert_eq!(logs[0]["response_status_code"], 200);
    assert_eq!(logs[0]["request_body"], got.iter().find(|r| r.event_id() == event_id).unwrap().json());
    assert!(logs[0]["request_headers"]["biz-resp-signature"].is_string());
}
crate::both_backends_paying!(a_refund_life_arrives_signed_and_in_order);

/// A 500 is retried after the schedule's first wait; the receiver gets the same bytes twice, and the
/// log shows both attempts.
async fn a_failed_attempt_is_retried_and_logged(app: &TestApp) {
    let receiver = Receiver::start().await;
    receiver.answer_next(&[(500, None)]);
    let endpoint_id = add_endpoint(app, &receiver.url, false).await["endpoint_id"].as_str().unwrap().to_owned();
    trigger(app, "payment.refund.status.updated", json!({"refund_id": "R_retry"})).await;
    let got = receiver.wait_until(Duration::from_secs(5), "two attempts", |g| g.len() == 2).await;
    assert_eq!(got[0].body, got[1].body, "every attempt sends the same bytes");
    assert!(got[1].at - got[0].at >= Duration::from_millis(200), "the schedule's first wait");
    let event_id = got[0].event_id();
    let e = wait_event(app, &endpoint_id, &event_id, |e| e["status"] == "Success").await;
    assert_eq!(e["data"]["refund_id"], "R_retry");
    let logs = logs_of(app, &endpoint_id, &event_id).await;
    assert_eq!(logs.len(), 2);
    assert_eq!((logs[0]["success"].clone(), logs[1]["success"].clone()), (json!(true), json!(false)), "newest first");
    assert_eq!(logs[1]["response_status_code"], 500);
    assert_eq!(logs[1]["response_body"], "answered 500");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 2, "nothing after the success");
}
crate::both_backends!(a_failed_attempt_is_retried_and_logged);

/// A test event says so in its envelope (POSTed and listed), and may not carry a real object's id;
/// a real event has no `test` field.
async fn a_test_event_is_marked_and_names_no_real_object(app: &TestApp) {
    let receiver = Receiver::start().await;
    let endpoint_id = add_endpoint(app, &receiver.url, false).await["endpoint_id"].as_str().unwrap().to_owned();
    let merchant = app.create_merchant("real").await;
    let order = app.paid_order(&merchant, "10", "0").await;
    let order_id = order["order_id"].as_str().unwrap();
    for data in [
        json!({"order_id": order_id, "status": "Completed"}),
        json!({"refund_id": order_id.replacen('O', "R", 1)}),
        json!({"merchant_id": merchant}),
        json!({"request_id": "a-real-request"}),
        json!({"tx_hash": "0x00"}),
    ] {
        let resp = app
            .post(
                "/v2/webhooks/events/trigger",
                json!({"event_type": "payment.order.status.updated", "override_data": data}),
            )
            .await;
        assert_eq!(resp.status, 400, "{data} was accepted: {}", resp.body);
        assert!(resp.body["error_message"].as_str().unwrap().contains("names no real object"), "{}", resp.body);
    }
    trigger(app, "payment.refund.status.updated", json!({"refund_id": "R_made_up", "status": "Completed"})).await;
    let got = receiver
        .wait_until(Duration::from_secs(5), "the test event", |g| g.iter().any(|r| r.json()["test"] == true))
        .await;
    let test = got.iter().map(Received::json).find(|e| e["test"] == true).unwrap();
    assert_eq!(test["data"]["refund_id"], "R_made_up");
    let listed = wait_event(app, &endpoint_id, test["event_id"].as_str().unwrap(), |e| e["status"] == "Success").await;
    assert_eq!(listed["test"], true);
    for real in got.iter().map(Received::json).filter(|e| e["event_id"] != test["event_id"]) {
        assert!(real.get("test").is_none(), "a real event carries the test flag: {real}");
    }
}
crate::both_backends!(a_test_event_is_marked_and_names_no_real_object);

/// An endpoint that is down is tried on the schedule until the tries run out (`Failed`); a retry
/// through the API delivers it once the receiver is back.
async fn a_down_receiver_is_retried_on_schedule_then_fails(app: &TestApp) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let endpoint_id = add_endpoint(app, &url, false).await["endpoint_id"].as_str().unwrap().to_owned();
    trigger(app, "payment.order.status.updated", json!({"order_id": "O_down"})).await;
    let event_id = events_of(app, &endpoint_id).await[0]["event_id"].as_str().unwrap().to_owned();
    let failed = wait_event(app, &endpoint_id, &event_id, |e| e["status"] == "Failed").await;
    assert!(failed.get("retries_left").is_none());
    let logs = logs_of(app, &endpoint_id, &event_id).await;
    assert_eq!(logs.len(), 4, "the first attempt and three retries");
    let times: Vec<i64> = logs.iter().rev().map(|l| l["created_timestamp"].as_i64().unwrap()).collect();
    for (gap, wait) in times.windows(2).map(|w| w[1] - w[0]).zip([200, 400, 800]) {
        assert!(gap >= wait, "waited {gap} ms, the schedule says {wait}: {times:?}");
    }
    assert!(logs.iter().all(|l| l["success"] == false && l.get("response_status_code").is_none()));
    assert!(logs[0]["failure_reason"].as_str().unwrap().contains("connect"), "{}", logs[0]);

    let receiver = Receiver::start_on(port).await;
    let retried = app.post(&format!("/v2/webhooks/endpoints/{endpoint_id}/events/{event_id}/retry"), json!({})).await;
    assert_eq!(retried.status, 201);
    assert_eq!(retried.body["retried"], true);
    receiver.wait_until(Duration::from_secs(5), "the retried event", |g| g.len() == 1).await;
    wait_event(app, &endpoint_id, &event_id, |e| e["status"] == "Success").await;
}
crate::both_backends!(a_down_receiver_is_retried_on_schedule_then_fails);

/// `Retry-After` sets the next attempt at least that far out.
async fn retry_after_is_honoured(app: &TestApp) {
    let receiver = Receiver::start().await;
    receiver.answer_next(&[(503, Some("2"))]);
    let endpoint_id = add_endpoint(app, &receiver.url, false).await["endpoint_id"].as_str().unwrap().to_owned();
    trigger(app, "payment.refund.status.updated", json!({})).await;
    let got = receiver.wait_until(Duration::from_secs(5), "the first attempt", |g| g.len() == 1).await;
    let event_id = got[0].event_id();
    let e = wait_event(app, &endpoint_id, &event_id, |e| e["status"] == "Retrying" && e["retries_left"] == 2).await;
    let first = logs_of(app, &endpoint_id, &event_id).await[0]["created_timestamp"].as_i64().unwrap();
    assert!(e["next_retry_timestamp"].as_i64().unwrap() - first >= 2000, "{e}");
    let got = receiver.wait_until(Duration::from_secs(6), "the retry", |g| g.len() == 2).await;
    assert!(got[1].at - got[0].at >= Duration::from_secs(2));
}
crate::both_backends!(retry_after_is_honoured);

/// 410 Gone disables the endpoint: the event fails at once and later events are not queued for it,
/// until the endpoint is activated again.
async fn gone_disables_the_endpoint(app: &TestApp) {
    let receiver = Receiver::start().await;
    receiver.answer_next(&[(410, None)]);
    let endpoint_id = add_endpoint(app, &receiver.url, false).await["endpoint_id"].as_str().unwrap().to_owned();
    trigger(app, "payment.refund.status.updated", json!({})).await;
    let got = receiver.wait_until(Duration::from_secs(5), "the attempt", |g| g.len() == 1).await;
    wait_event(app, &endpoint_id, &got[0].event_id(), |e| e["status"] == "Failed").await;
    let endpoint = app.get(&format!("/v2/webhooks/endpoints/{endpoint_id}")).await.ok();
    assert_eq!(endpoint["status"], "STATUS_INACTIVE");
    assert!(endpoint["disabled_reason"].as_str().unwrap().contains("410"));
    trigger(app, "payment.refund.status.updated", json!({})).await;
    assert_eq!(events_of(app, &endpoint_id).await.len(), 1, "nothing queued for an inactive endpoint");

    let endpoint =
        app.put(&format!("/v2/webhooks/endpoints/{endpoint_id}"), Some(json!({"status": "STATUS_ACTIVE"}))).await.ok();
    assert_eq!(endpoint["status"], "STATUS_ACTIVE");
    assert!(endpoint.get("disabled_reason").is_none());
    trigger(app, "payment.refund.status.updated", json!({})).await;
    receiver.wait_until(Duration::from_secs(5), "the next event", |g| g.len() == 2).await;
}
crate::both_backends!(gone_disables_the_endpoint);

fn one_second_timeout() -> Options {
    Options {
        webhooks: Some(ebb_worker::WebhookSettings { timeout: Duration::from_secs(1), ..test_webhook_settings() }),
        ..Options::default()
    }
}

/// A receiver that never answers in time times out, and meanwhile another endpoint gets every event
/// at once.
async fn a_slow_endpoint_does_not_delay_another(app: &TestApp) {
    let slow = Receiver::start().await;
    slow.set_delay(Duration::from_secs(5));
    let fast = Receiver::start().await;
    let slow_id = add_endpoint(app, &slow.url, false).await["endpoint_id"].as_str().unwrap().to_owned();
    add_endpoint(app, &fast.url, false).await;
    let started = Instant::now();
    for i in 0..40 {
        trigger(app, "payment.refund.status.updated", json!({"refund_id": format!("R_{i}")})).await;
    }
    fast.wait_until(Duration::from_secs(3), "all 40 events at the fast endpoint", |g| g.len() == 40).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    let got = slow.wait_until(Duration::from_secs(5), "attempts at the slow endpoint", |g| !g.is_empty()).await;
    let event_id = got[0].event_id();
    wait_event(app, &slow_id, &event_id, |e| e["status"] == "Retrying" && e["retries_left"] == 2).await;
    let logs = logs_of(app, &slow_id, &event_id).await;
    assert!(logs[0]["failure_reason"].as_str().unwrap().contains("timed out"), "{}", logs[0]);
    assert!(logs[0]["response_time"].is_null() || logs[0].get("response_time").is_none());
}
crate::both_backends_with!(a_slow_endpoint_does_not_delay_another, super::one_second_timeout());

fn guarded() -> Options {
    Options {
        webhooks: Some(ebb_worker::WebhookSettings { allow_private_addresses: false, ..test_webhook_settings() }),
        ..Options::default()
    }
}

/// With the SSRF guard on (the default of `ebb serve`), an endpoint on a loopback address is never
/// called; the log says why.
async fn the_ssrf_guard_refuses_private_addresses(app: &TestApp) {
    let receiver = Receiver::start().await;
    let endpoint_id = add_endpoint(app, &receiver.url, false).await["endpoint_id"].as_str().unwrap().to_owned();
    let localhost = receiver.url.replace("127.0.0.1", "localhost");
    let by_name = add_endpoint(app, &localhost, false).await["endpoint_id"].as_str().unwrap().to_owned();
    trigger(app, "payment.refund.status.updated", json!({})).await;
    for id in [&endpoint_id, &by_name] {
        let event_id = events_of(app, id).await[0]["event_id"].as_str().unwrap().to_owned();
        wait_event(app, id, &event_id, |e| e["status"] == "Retrying" && e["retries_left"] == 2).await;
        let reason = logs_of(app, id, &event_id).await[0]["failure_reason"].as_str().unwrap().to_owned();
        assert!(reason.contains("SSRF guard"), "{reason}");
    }
    assert!(receiver.received().is_empty());
}
crate::both_backends_with!(the_ssrf_guard_refuses_private_addresses, super::guarded());

/// A refund's later events wait while an earlier one is being retried: the receiver never sees a
/// refund's events out of order, even when one delivery fails.
async fn a_refunds_events_wait_for_an_earlier_failed_one(app: &TestApp) {
    let receiver = Receiver::start().await;
    add_endpoint(app, &receiver.url, false).await;
    let merchant = app.create_merchant("order").await;
    app.paid_order(&merchant, "10", "0").await;
    let refund = app
        .post(
            "/v2/payments/refunds",
            json!({"request_id": "order-1", "merchant_id": merchant, "payable_amount": "1", "token_id": "ETH_USDT",
                   "refund_type": "Merchant"}),
        )
        .await
        .ok();
    let id = refund["refund_id"].as_str().unwrap().to_owned();
    let of_refund = |g: &[Received]| -> Vec<(i64, String)> {
        g.iter()
            .map(Received::json)
            .filter(|e| e["data"]["refund_id"] == id.as_str())
            .map(|e| (e["sequence"].as_i64().unwrap(), e["data"]["status"].as_str().unwrap().to_owned()))
            .collect()
    };
    receiver.wait_until(Duration::from_secs(5), "the refund's first event", |g| of_refund(g).len() == 1).await;
    // The address change's event fails once; the cancel's event must wait for its retry.
    receiver.fail_once_containing(&[&id, "\"status\":\"Pending\""]);
    app.put(&format!("/v2/payments/refunds/{id}"), Some(json!({"to_address": USER_ADDRESS}))).await.ok();
    app.put(&format!("/v2/payments/refunds/{id}/cancel"), None).await.ok();
    let got =
        receiver.wait_until(Duration::from_secs(5), "the refund's four requests", |g| of_refund(g).len() >= 4).await;
    let arrived = of_refund(&got);
    let statuses: Vec<&str> = arrived.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(statuses, ["PendingConfirmation", "Pending", "Pending", "Failed"], "{arrived:?}");
    assert!(arrived.windows(2).all(|w| w[0].0 <= w[1].0), "{arrived:?}");
}
crate::both_backends!(a_refunds_events_wait_for_an_earlier_failed_one);

/// What the API refuses, and who may call it.
async fn the_webhook_api_validates_and_is_psp_only(app: &TestApp) {
    let bad = [
        json!({"url": "ftp://example.com/hook", "subscribed_events": ["payment.refund.status.updated"]}),
        json!({"url": "not a url", "subscribed_events": ["payment.refund.status.updated"]}),
        json!({"url": "https://user:pw@example.com/hook", "subscribed_events": ["payment.refund.status.updated"]}),
        json!({"url": "https://example.com/hook", "subscribed_events": ["payment.refund.created"]}),
        json!({"url": "https://example.com/hook", "subscribed_events": []}),
        json!({"url": format!("https://example.com/{}", "a".repeat(500)), "subscribed_events": ALL_EVENTS}),
    ];
    for body in bad {
        app.post("/v2/webhooks/endpoints", body).await.error(400, 40000);
    }
    let e = app
        .post("/v2/webhooks/endpoints", json!({"url": "https://example.com/hook", "subscribed_events": ALL_EVENTS}))
        .await
        .ok();
    assert!(e.get("signing_secret").is_none(), "no secret unless asked");
    let id = e["endpoint_id"].as_str().unwrap();
    app.put(&format!("/v2/webhooks/endpoints/{id}"), Some(json!({"status": "paused"}))).await.error(400, 40000);
    let updated = app
        .put(
            &format!("/v2/webhooks/endpoints/{id}"),
            Some(json!({"subscribed_events": ["payment.order.status.updated"]})),
        )
        .await
        .ok();
    assert_eq!(updated["subscribed_events"], json!(["payment.order.status.updated"]));
    let listed = app.get("/v2/webhooks/endpoints?event_type=payment.order.status.updated").await.ok();
    assert_eq!(listed["pagination"]["total_count"], 1);
    let listed = app.get("/v2/webhooks/endpoints?event_type=payment.refund.status.updated").await.ok();
    assert_eq!(listed["pagination"]["total_count"], 0);
    app.get("/v2/webhooks/endpoints/Wnope").await.error(404, 40400);
    app.get(&format!("/v2/webhooks/endpoints/{id}/events/Enope")).await.error(404, 40400);
    app.post(&format!("/v2/webhooks/endpoints/{id}/events/Enope/retry"), json!({})).await.error(404, 40400);
    let defs = app.get("/v2/webhooks/events/definitions").await.ok();
    let types: Vec<&str> = defs.as_array().unwrap().iter().map(|d| d["event_type"].as_str().unwrap()).collect();
    assert_eq!(types, ALL_EVENTS);

    let merchant = app.create_merchant("restricted").await;
    let mut restricted = app.signing();
    restricted.key = app.new_key(Some(&merchant)).await;
    let resp = app.call_signed(&restricted, reqwest::Method::GET, "/v2/webhooks/endpoints", None).await;
    assert_eq!(resp.status, 403, "{}", resp.body);
}
crate::both_backends!(the_webhook_api_validates_and_is_psp_only);

/// `ebb webhooks prune` drops the attempt logs of finished events and keeps everything else: the
/// events, their status, and the logs of an event still being retried.
async fn pruning_drops_only_finished_attempt_logs(app: &TestApp) {
    let receiver = Receiver::start().await;
    let delivered = add_endpoint(app, &receiver.url, false).await["endpoint_id"].as_str().unwrap().to_owned();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let down = add_endpoint(app, &format!("http://127.0.0.1:{port}/hook"), false).await["endpoint_id"]
        .as_str()
        .unwrap()
        .to_owned();
    trigger(app, "payment.refund.status.updated", json!({})).await;
    let event_id = receiver.wait_until(Duration::from_secs(5), "the event", |g| g.len() == 1).await[0].event_id();
    wait_event(app, &delivered, &event_id, |e| e["status"] == "Success").await;
    wait_event(app, &down, &event_id, |e| e["status"] == "Retrying" && e["retries_left"] == 1).await;
    assert_eq!(logs_of(app, &delivered, &event_id).await.len(), 1);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["webhooks", "prune", "--older-than-days", "0", "--database-url", &app.database_url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "deleted 1 logged attempts");
    assert!(logs_of(app, &delivered, &event_id).await.is_empty());
    assert_eq!(events_of(app, &delivered).await[0]["status"], "Success", "the event and its status stay");
    assert!(!logs_of(app, &down, &event_id).await.is_empty(), "a retrying event keeps its log");
}
fn slow_retries() -> Options {
    let retry_schedule = vec![Duration::from_secs(30), Duration::from_secs(30)];
    Options {
        webhooks: Some(ebb_worker::WebhookSettings { retry_schedule, ..test_webhook_settings() }),
        ..Options::default()
    }
}
crate::both_backends_with!(pruning_drops_only_finished_attempt_logs, super::slow_retries());

crate::both_backends!(an_event_type_from_a_newer_version_waits_and_blocks_nothing);

/// During a rolling upgrade on one database, a newer ebb writes event types an older one cannot
/// render. The older dispatcher leaves them to the newer processes and delivers everything else (it
/// used to stop its whole queue at the first one).
async fn an_event_type_from_a_newer_version_waits_and_blocks_nothing(app: &TestApp) {
    let receiver = Receiver::start().await;
    let endpoint = add_endpoint(app, &receiver.url, false).await;
    let endpoint_id = endpoint["endpoint_id"].as_str().unwrap();
    let pool = app.store.pool();
    let now = ebb_store::now_ms();
    sqlx::query(
        "INSERT INTO events (event_id, event_type, kind, subject_id, snapshot, created_at_ms) \
         VALUES ('Efuture', 'payment.from.the.future', 'future', 'Xfuture', '{}', $1)",
    )
    .bind(now)
    .execute(pool)
    .await
    .unwrap();
    let seq: i64 =
        sqlx::query_scalar("SELECT seq FROM events WHERE event_id = 'Efuture'").fetch_one(pool).await.unwrap();
    sqlx::query(
        "INSERT INTO webhook_deliveries (endpoint_id, event_seq, event_id, event_type, subject_id, status, attempts, \
         retries_left, next_attempt_ms, created_at_ms, updated_at_ms) \
         VALUES ($1, $2, 'Efuture', 'payment.from.the.future', 'Xfuture', 'Retrying', 0, -1, $3, $3, $3)",
    )
    .bind(endpoint_id)
    .bind(seq)
    .bind(now)
    .execute(pool)
    .await
    .unwrap();

    let m = app.create_merchant("Shop").await;
    app.post(
        "/v2/payments/orders",
        json!({"merchant_id": m, "psp_order_code": "after-the-future", "payable_currency": "ETH_USDT",
               "payable_amount": "1", "fee_amount": "0"}),
    )
    .await
    .ok();
    receiver
        .wait_until(Duration::from_secs(5), "the order's event", |got| {
            got.iter().any(|r| r.json()["type"] == "payment.order.status.updated")
        })
        .await;
    let (status, attempts): (String, i64) =
        sqlx::query_as("SELECT status, attempts FROM webhook_deliveries WHERE event_id = 'Efuture'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!((status.as_str(), attempts), ("Retrying", 0), "left for a process that knows its type");
}

/// What a misbehaving receiver does to one connection (dependency faults, issue 18).
#[derive(Clone, Copy, Debug)]
enum Misbehaviour {
    /// Reads the request, then resets the connection (RST, SO_LINGER 0).
    Reset,
    /// Reads the request and closes without a word.
    CloseSilently,
    /// Sends the first bytes of a status line, then nothing.
    StallInHeaders,
    /// Answers 200 with a body of a gibibyte, written for as long as the peer reads.
    HugeBody,
}

/// A raw TCP receiver: connection i gets `script[i]`; later ones are answered 204. It counts the
/// body bytes it managed to write, to show how much of a huge answer ebb reads.
struct MisbehavingReceiver {
    url: String,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    huge_bytes_written: Arc<std::sync::atomic::AtomicUsize>,
}

impl MisbehavingReceiver {
    async fn start(script: Vec<Misbehaviour>) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let huge_bytes_written = Arc::new(AtomicUsize::new(0));
        let (count, written) = (connections.clone(), huge_bytes_written.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else { return };
                let behaviour = script.get(count.fetch_add(1, Ordering::SeqCst)).copied();
                let written = written.clone();
                tokio::spawn(async move {
                    // The whole request: headers, then the body its content-length announces.
                    let mut request = Vec::new();
                    let mut buf = [0u8; 8192];
                    loop {
                        let Ok(n) = socket.read(&mut buf).await else { return };
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let length = text[..end]
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            if request.len() >= end + 4 + length {
                                break;
                            }
                        }
                    }
                    match behaviour {
                        Some(Misbehaviour::Reset) => {
                            // SO_LINGER 0 makes the close an RST, which is the fault under test.
                            #[allow(deprecated)]
                            let _ = socket.set_linger(Some(Duration::ZERO));
                            drop(socket);
                        }
                        Some(Misbehaviour::CloseSilently) => drop(socket),
                        Some(Misbehaviour::StallInHeaders) => {
                            let _ = socket.write_all(b"HTTP/1.1 2").await;
                            tokio::time::sleep(Duration::from_secs(30)).await;
                        }
                        Some(Misbehaviour::HugeBody) => {
                            let head =
                                b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1073741824\r\n\r\n";
                            if socket.write_all(head).await.is_err() {
                                return;
                            }
                            let chunk = vec![b'x'; 64 * 1024];
                            while written.load(Ordering::SeqCst) < 1 << 30 {
                                match tokio::time::timeout(Duration::from_secs(5), socket.write_all(&chunk)).await {
                                    Ok(Ok(())) => written.fetch_add(chunk.len(), Ordering::SeqCst),
                                    _ => return,
                                };
                            }
                        }
                        None => {
                            let _ = socket.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n").await;
                        }
                    }
                });
            }
        });
        Self { url, connections, huge_bytes_written }
    }
}

/// Receivers that reset, close, stall or answer with a gibibyte: each attempt fails with a reason
/// that names what happened and is retried on the schedule; a 200 with a huge body counts as
/// delivered, and ebb stops reading it after 64 KiB (the log keeps 2 KiB), so a receiver cannot make
/// it hold a large answer in memory.
async fn misbehaving_receivers_fail_cleanly_and_are_retried(app: &TestApp) {
    use std::sync::atomic::Ordering;
    use Misbehaviour::*;
    let receiver = MisbehavingReceiver::start(vec![Reset, CloseSilently, StallInHeaders, HugeBody]).await;
    let endpoint_id = add_endpoint(app, &receiver.url, false).await["endpoint_id"].as_str().unwrap().to_owned();
    trigger(app, "payment.refund.status.updated", json!({"refund_id": "R_faults"})).await;
    let event_id = events_of(app, &endpoint_id).await[0]["event_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    let event = loop {
        let e = app.get(&format!("/v2/webhooks/endpoints/{endpoint_id}/events/{event_id}")).await.ok();
        if e["status"] != "Retrying" || Instant::now() > deadline {
            break e;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(event["status"], "Success", "{event}");
    assert_eq!(receiver.connections.load(Ordering::SeqCst), 4, "one connection per attempt");

    let logs = logs_of(app, &endpoint_id, &event_id).await;
    assert_eq!(logs.len(), 4, "{logs:#?}");
    let (delivered, failures) = (&logs[0], &logs[1..]);
    assert_eq!(delivered["success"], true);
    assert_eq!(delivered["response_status_code"], 200);
    let excerpt = delivered["response_body"].as_str().unwrap();
    assert!(excerpt.len() <= 2048 && excerpt.bytes().all(|b| b == b'x'), "{} bytes logged", excerpt.len());
    let written = receiver.huge_bytes_written.load(Ordering::SeqCst);
    assert!(written < 32 << 20, "ebb read {written} bytes of a gibibyte answer");
    // Newest first: the stall, the silent close, the reset.
    for log in failures {
        assert_eq!(log["success"], false, "{log}");
        assert!(log.get("response_status_code").is_none() || log["response_status_code"].is_null(), "{log}");
    }
    let reason = |i: usize| failures[i]["failure_reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason(0).contains("timed out"), "stall: {}", reason(0));
    for i in [1, 2] {
        assert!(reason(i).contains("error sending request"), "close/reset: {}", reason(i));
    }
}
crate::both_backends_with!(misbehaving_receivers_fail_cleanly_and_are_retried, super::one_second_timeout());

/// A URL with control characters is refused with a 400 on both backends (PostgreSQL cannot store a NUL,
/// and the URL parser would have contacted another URL than the one stored).
async fn endpoint_urls_with_control_characters_are_refused(app: &TestApp) {
    for url in ["\u{0}\u{0}https://example.com/hook", "https://exa\nmple.com/hook"] {
        let body = app
            .post("/v2/webhooks/endpoints", json!({"url": url, "subscribed_events": ALL_EVENTS}))
            .await
            .error(400, 40000);
        assert!(body["error_message"].as_str().unwrap().contains("control characters"), "{body}");
    }
}
crate::both_backends!(endpoint_urls_with_control_characters_are_refused);

/// Text with a NUL in a query filter or a path, where no validator of the body sees it, is a 400 on
/// PostgreSQL (which cannot store or compare it) and a plain answer on SQLite; never a 500.
async fn nul_characters_in_filters_and_paths_are_not_server_errors(app: &TestApp) {
    for path in [
        "/v2/payments/refunds?request_id=%00x",
        "/v2/payments/refunds/%00",
        "/v2/payments/orders?psp_order_code=%00",
        "/v2/payments/merchants/a%00b",
        "/v2/webhooks/endpoints/%00",
    ] {
        let r = app.get(path).await;
        assert!(matches!(r.status.as_u16(), 200 | 400 | 404), "{path}: {} {}", r.status, r.body);
    }
}
crate::both_backends!(nul_characters_in_filters_and_paths_are_not_server_errors);
