//! Screening refund destinations (issue 15): an OFAC-listed address (real entries of the shipped list)
//! is refused wherever a refund gets an address; a high-risk one is held for review and paid once
//! approved; an HTTP provider in the shape of Chainalysis' sanctions API is asked with its key, and
//! every way it can fail (slow, 429, 5xx, garbage, a huge answer) holds, never allows.
//!
//! Chainalysis has no local version, so the suite runs its own server in the API's published shape
//! (`GET /api/v1/address/{address}` with `X-API-Key`, answering `{"identifications": [...]}`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use ebb_api::pages::LinkSettings;
use ebb_app::screening::{ChainalysisSettings, ScreeningSettings};
use ebb_core::screening::Denylist;
use ebb_store::keys::KeyRole;
use serde_json::{json, Value};

use crate::chains::TestChain;
use crate::helpers::{spawn_app_with, Db, Options, Signing, TestApp, USER_ADDRESS};

/// Real entries of the shipped OFAC list (data/ofac, 2024-09-27), as a client may type them.
pub(crate) const OFAC_ETH: &str = "0x01e2919679362dfbc9ee1644ba9c6da6d6245bb1";
const OFAC_ETH_2: &str = "0x0931ca4d13bb4ba75d9b7132ab690265d749a5e7";
/// An address only the operator's denylist names.
pub(crate) const DENIED: &str = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359";

crate::both_backends!(an_ofac_address_is_refused_wherever_a_refund_gets_one);
crate::both_backends_with!(a_denylisted_destination_is_held_for_review_then_paid, super::denying());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_provider_is_asked_and_its_failures_hold_sqlite() {
    the_http_provider_is_asked_and_its_failures_hold(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_provider_is_asked_and_its_failures_hold_postgres() {
    if crate::helpers::postgres_wanted().await {
        the_http_provider_is_asked_and_its_failures_hold(Db::Postgres).await;
    }
}

async fn refund_to(app: &TestApp, merchant: &str, request_id: &str, to: Option<&str>) -> crate::helpers::Response {
    let mut body = json!({"request_id": request_id, "merchant_id": merchant, "payable_amount": "1",
                          "token_id": "ETH_USDT", "refund_type": "Merchant"});
    if let Some(to) = to {
        body["to_address"] = json!(to);
    }
    app.post("/v2/payments/refunds", body).await
}

async fn an_ofac_address_is_refused_wherever_a_refund_gets_one(app: &TestApp) {
    let m = app.create_merchant("Shop").await;
    let order = app.paid_order(&m, "10", "0").await;
    let before = app.merchant_balance(&m, "ETH_USDT").await;

    // Create.
    for a in [OFAC_ETH, OFAC_ETH_2] {
        let refused = refund_to(app, &m, "sanctioned", Some(a)).await.error(400, 40004);
        let text = refused["error_message"].as_str().unwrap();
        assert!(text.contains("ofac says Severe: sanctions"), "{text}");
    }
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await, before, "nothing reserved");

    // Update.
    let r = refund_to(app, &m, "later", None).await.ok();
    let id = r["refund_id"].as_str().unwrap();
    app.put(&format!("/v2/payments/refunds/{id}"), Some(json!({"to_address": OFAC_ETH}))).await.error(400, 40004);
    let unchanged = app.get(&format!("/v2/payments/refunds/{id}")).await.ok();
    assert_eq!(
        (unchanged["status"].as_str(), unchanged["to_address"].as_str()),
        (Some("PendingConfirmation"), Some(""))
    );
    assert!(unchanged.get("screening").is_none());

    // A refund link's submitted address: refused, and the link still takes a good one.
    let link = app
        .post(
            "/v2/payments/links/refunds",
            json!({"request_id": "link", "business_info": {"order_id": order["order_id"], "amount": "1",
                   "refund_source": "Merchant", "merchant_id": m}}),
        )
        .await
        .ok();
    let token = ebb_app::links::LinkToken::parse(link["token"].as_str().unwrap()).unwrap();
    let evm = |a: &str| ebb_core::Address::parse(ebb_core::ChainFamily::Evm, a).unwrap();
    let refused = ebb_app::links::submit(&app.engine, &token, evm(OFAC_ETH)).await;
    assert!(matches!(refused, Err(ebb_app::AppError::RefusedByScreening { .. })), "{refused:?}");
    let ok = ebb_app::links::submit(&app.engine, &token, evm(USER_ADDRESS)).await.unwrap().unwrap();
    assert_eq!(ok.to_address, USER_ADDRESS);
    let shown = app.get(&format!("/v2/payments/refunds/{}", ok.refund_id)).await.ok();
    assert_eq!(shown["screening"]["verdict"], "Allow", "{shown}");
    assert_eq!(shown["screening"]["level"], "Unknown");
    let providers: Vec<&str> =
        shown["screening"]["findings"].as_array().unwrap().iter().map(|f| f["provider"].as_str().unwrap()).collect();
    assert_eq!(providers, ["denylist", "ofac"]);
}

fn denying() -> Options {
    Options {
        payouts: true,
        links: Some(LinkSettings { denylist: Arc::new(Denylist::parse(DENIED)), ..LinkSettings::default() }),
        ..Options::default()
    }
}

async fn a_denylisted_destination_is_held_for_review_then_paid(app: &TestApp) {
    let chain = app.sandbox("ETH");
    let m = app.create_merchant("Shop").await;
    app.paid_order(&m, "10", "0").await;
    let r = refund_to(app, &m, "held", Some(DENIED)).await.ok();
    let id = r["refund_id"].as_str().unwrap();
    assert_eq!(r["screening"]["level"], "High", "{r}");
    assert_eq!(r["screening"]["verdict"], "Hold");
    assert_eq!(r["approval"]["policy_id"], "screening");
    assert_eq!(r["approval"]["required"], 1);
    for _ in 0..5 {
        chain.mine().await;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let waiting = app.get(&format!("/v2/payments/refunds/{id}")).await.ok();
    assert_eq!((waiting["status"].as_str(), waiting["transactions"].as_array().unwrap().len()), (Some("Pending"), 0));
    let approver = Signing { key: app.new_key_with_role(None, KeyRole::Approver).await, ..app.signing() };
    let path = format!("/v2/payments/refunds/{id}/approve");
    app.call_signed(&approver, reqwest::Method::POST, &path, Some(b"{}".to_vec())).await.ok();
    let done = app.mine_until(&chain, id, "Completed").await;
    assert_eq!(done["to_address"], DENIED);
}

/// What the test server answers for an address.
#[derive(Clone, Copy)]
enum Answer {
    Identified(&'static str),
    Nothing,
    Slow,
    Status(u16),
    Garbage,
    Huge,
}

#[derive(Default)]
struct ProviderState {
    answers: HashMap<String, Answer>,
    keys_seen: Vec<String>,
}

async fn identify(
    State(state): State<Arc<Mutex<ProviderState>>>,
    Path(address): Path<String>,
    headers: HeaderMap,
) -> Response {
    let answer = {
        let mut s = state.lock().unwrap();
        s.keys_seen.push(headers.get("x-api-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned());
        s.answers.get(&address.to_lowercase()).copied().unwrap_or(Answer::Nothing)
    };
    match answer {
        Answer::Identified(category) => axum::Json(json!({"identifications": [{
            "category": category, "name": format!("{category} identification"),
            "description": "test", "url": "https://example.test/identification"}]}))
        .into_response(),
        Answer::Nothing => axum::Json(json!({"identifications": []})).into_response(),
        Answer::Slow => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            axum::Json(json!({"identifications": []})).into_response()
        }
        Answer::Status(code) => (StatusCode::from_u16(code).unwrap(), "try later").into_response(),
        Answer::Garbage => (StatusCode::OK, "<html>not json</html>").into_response(),
        Answer::Huge => {
            let big: Vec<Value> = (0..5000).map(|i| json!({"category": "x", "name": format!("n{i}")})).collect();
            axum::Json(json!({"identifications": big})).into_response()
        }
    }
}

fn address(n: u32) -> String {
    format!("0x{n:040x}")
}

async fn the_http_provider_is_asked_and_its_failures_hold(db: Db) {
    let state: Arc<Mutex<ProviderState>> = Arc::default();
    let cases: Vec<(u32, Answer)> = vec![
        (0x5a1, Answer::Identified("sanctions")),
        (0x5ca, Answer::Identified("scam")),
        (0xc1e, Answer::Nothing),
        (0x510, Answer::Slow),
        (0x429, Answer::Status(429)),
        (0x500, Answer::Status(500)),
        (0x503, Answer::Status(503)),
        (0x6a6, Answer::Garbage),
        (0xb16, Answer::Huge),
    ];
    state.lock().unwrap().answers = cases.iter().map(|(n, a)| (address(*n), *a)).collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router =
        axum::Router::new().route("/api/v1/address/{address}", axum::routing::get(identify)).with_state(state.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let options = Options {
        screening: Some(ScreeningSettings {
            chainalysis: Some(ChainalysisSettings {
                base_url: url,
                api_key: "test-key".into(),
                timeout: Duration::from_millis(500),
            }),
            ..ScreeningSettings::default()
        }),
        ..Options::default()
    };
    let app = spawn_app_with(db, options).await;
    let m = app.create_merchant("Shop").await;
    app.paid_order(&m, "100", "0").await;

    let sanctioned = refund_to(&app, &m, "sanctioned", Some(&address(0x5a1))).await.error(400, 40004);
    assert!(
        sanctioned["error_message"].as_str().unwrap().contains("chainalysis says Severe: sanctions"),
        "{sanctioned}"
    );
    let scam = refund_to(&app, &m, "scam", Some(&address(0x5ca))).await.ok();
    assert_eq!(
        (scam["screening"]["level"].as_str(), scam["screening"]["verdict"].as_str()),
        (Some("High"), Some("Hold"))
    );
    let finding =
        scam["screening"]["findings"].as_array().unwrap().iter().find(|f| f["provider"] == "chainalysis").unwrap();
    assert_eq!(finding["categories"], json!(["scam"]));
    assert_eq!(finding["reference"], "https://example.test/identification");
    assert_eq!(scam["approval"]["status"], "Pending");
    let clean = refund_to(&app, &m, "clean", Some(&address(0xc1e))).await.ok();
    assert_eq!(clean["screening"]["verdict"], "Allow", "{clean}");
    assert!(clean.get("approval").is_none());

    for (n, says) in [
        (0x510, "timed out"),
        (0x429, "HTTP 429"),
        (0x500, "HTTP 500"),
        (0x503, "HTTP 503"),
        (0x6a6, "not an identification list"),
        (0xb16, "bytes is not an identification list"),
    ] {
        let r = refund_to(&app, &m, &format!("down-{n:x}"), Some(&address(n))).await.ok();
        let s = &r["screening"];
        assert_eq!(s["verdict"], "Hold", "provider failure {says} must hold: {r}");
        assert_eq!(s["unavailable"][0]["provider"], "chainalysis");
        assert!(s["unavailable"][0]["reason"].as_str().unwrap().contains(says), "{says}: {s}");
        assert_eq!(r["approval"]["status"], "Pending", "held for review: {r}");
    }
    // A held refund's address changed to a clean one: screened again, but it stays under review.
    let held = refund_to(&app, &m, "moved", Some(&address(0x429))).await.ok();
    let id = held["refund_id"].as_str().unwrap();
    let moved = app.put(&format!("/v2/payments/refunds/{id}"), Some(json!({"to_address": address(0xc1e)}))).await.ok();
    assert_eq!(moved["screening"]["verdict"], "Allow");
    assert_eq!(moved["approval"]["status"], "Pending", "a review once asked for is never dropped: {moved}");

    let keys = state.lock().unwrap().keys_seen.clone();
    assert!(!keys.is_empty() && keys.iter().all(|k| k == "test-key"), "{keys:?}");
    app.finish().await;
    server.abort();
}

crate::both_backends!(cobo_kya_screenings_answer_as_the_sdk_reads_them);

/// Cobo's KYA API over the same providers: real OFAC entries (EVM and Tron) are `High` with a
/// `sanctions` detail (ebb's verdict `Refuse` beside it), a clean address `Low`; idempotent on
/// `request_id`; listed, filtered and paged; the PSP's alone.
async fn cobo_kya_screenings_answer_as_the_sdk_reads_them(app: &TestApp) {
    const OFAC_TRON: &str = "TBHTJqAy4DhHhmT3dNceJYNRz4SdLofLre";
    let path = "/v2/compliance/kya/screenings";
    let body = json!({"screenings": [
        {"request_id": "k1", "address": OFAC_ETH, "chain_id": "ETH", "note": "customer 42"},
        {"request_id": "k2", "address": USER_ADDRESS, "chain_id": "ETH"},
        {"request_id": "k3", "address": OFAC_TRON, "chain_id": "TRON"},
    ]});
    let created = app.post(path, body.clone()).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let rows = created.body.as_array().unwrap().clone();
    assert_eq!(rows.len(), 3);
    let (sanctioned, clean, tron) = (&rows[0], &rows[1], &rows[2]);
    assert_eq!(sanctioned["status"], "Screened");
    assert_eq!(sanctioned["risk_assessment"]["level"], "High");
    assert_eq!(sanctioned["risk_assessment"]["details"], json!([{"category": "sanctions", "exposure": "high"}]));
    assert_eq!(sanctioned["screening"]["verdict"], "Refuse");
    assert_eq!(sanctioned["note"], "customer 42");
    assert_eq!(sanctioned["screening_id"].as_str().unwrap().len(), 36);
    assert_eq!(clean["risk_assessment"]["level"], "Low");
    assert_eq!(clean["screening"]["verdict"], "Allow");
    assert_eq!(tron["risk_assessment"]["level"], "High", "{tron}");

    // The same requests again: the same screenings.
    let again = app.post(path, body).await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body[0]["screening_id"], sanctioned["screening_id"]);
    app.post(path, json!({"screenings": [{"request_id": "k1", "address": USER_ADDRESS, "chain_id": "ETH"}]}))
        .await
        .error(409, 40900);

    let id = sanctioned["screening_id"].as_str().unwrap();
    let one = app.get(&format!("{path}/{id}")).await.ok();
    assert_eq!(one["address"].as_str().unwrap().to_lowercase(), OFAC_ETH, "stored in EIP-55 form: {one}");
    app.get(&format!("{path}/00000000-0000-4000-8000-000000000000")).await.error(404, 40400);
    let listed = app.get(&format!("{path}?limit=2")).await.ok();
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    assert_eq!(listed["pagination"]["total_count"], 3);
    let filtered = app.get(&format!("{path}?screening_ids={id}")).await.ok();
    assert_eq!(filtered["data"][0]["screening_id"], id);
    assert_eq!(filtered["pagination"]["total_count"], 1);

    for bad in [
        json!({"screenings": []}),
        json!({"screenings": (0..51).map(|i| json!({"request_id": format!("b{i}"), "address": USER_ADDRESS, "chain_id": "ETH"})).collect::<Vec<_>>()}),
        json!({"screenings": [{"request_id": "b", "address": USER_ADDRESS, "chain_id": "MOON"}]}),
        json!({"screenings": [{"request_id": "b", "address": "0x123", "chain_id": "ETH"}]}),
        json!({"screenings": [{"request_id": "", "address": USER_ADDRESS, "chain_id": "ETH"}]}),
    ] {
        let resp = app.post(path, bad.clone()).await;
        assert_eq!(resp.status, 400, "{bad} -> {}", resp.body);
    }
    let m = app.create_merchant("Shop").await;
    let merchant = Signing { key: app.new_key(Some(&m)).await, ..app.signing() };
    let approver = Signing { key: app.new_key_with_role(None, KeyRole::Approver).await, ..app.signing() };
    let one = json!({"screenings": [{"request_id": "x", "address": USER_ADDRESS, "chain_id": "ETH"}]}).to_string();
    for s in [&merchant, &approver] {
        app.call_signed(s, reqwest::Method::POST, path, Some(one.clone().into_bytes())).await.error(403, 40300);
    }
    app.call_signed(&merchant, reqwest::Method::GET, path, None).await.error(403, 40300);
    app.call_signed(&approver, reqwest::Method::GET, path, None).await.ok();
}

crate::both_backends_with!(a_pay_in_from_a_screened_sender_is_held_until_unfrozen, super::denying());

/// A pay-in from a sender screening holds (the denylist's `High`; an OFAC entry's `Severe`) is
/// received but credited to nobody: its amount sits in the `held` account, the order does not
/// complete, `payment.transaction.held` goes out, and Cobo's KYT status says `PendingReview` /
/// `Frozen`. Unfreezing credits it as a normal pay-in, once.
async fn a_pay_in_from_a_screened_sender_is_held_until_unfrozen(app: &TestApp) {
    let endpoint = app
        .post(
            "/v2/webhooks/endpoints",
            json!({"url": "http://127.0.0.1:9/x", "subscribed_events": ["payment.transaction.held"]}),
        )
        .await
        .ok()["endpoint_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let m = app.create_merchant("Shop").await;
    for (i, sender) in [DENIED, OFAC_ETH].into_iter().enumerate() {
        let tx_id = paid_from(app, &m, &format!("held-{i}"), sender).await;
        let order_id = app.store.transaction(&tx_id).await.unwrap().unwrap().order_id.unwrap();
        let order = app.get(&format!("/v2/payments/orders/{order_id}")).await.ok();
        assert_eq!(order["status"], "Processing", "a held pay-in completes no order: {order}");
        let balance = app.merchant_balance(&m, "ETH_USDT").await;
        assert_eq!(balance["total_balance"], if i == 0 { "0" } else { "10" }, "{balance}");

        let status_path = format!("/v2/compliance/kyt/screenings/status?transaction_id={tx_id}");
        let status = app.get(&status_path).await.ok();
        assert_eq!(
            (status["review_status"].as_str(), status["funds_status"].as_str()),
            (Some("PendingReview"), Some("Frozen"))
        );
        assert_eq!(status["transaction_type"], "Deposit");
        assert_eq!(status["screening"]["level"], if i == 0 { "High" } else { "Severe" });
        app.get(&format!("/v2/compliance/funds/disposition?transaction_id={tx_id}")).await.error(404, 40400);

        let unfreeze = "/v2/compliance/funds/disposition/unfreeze";
        let body = json!({"transaction_id": tx_id}).to_string().into_bytes();
        let merchant = Signing { key: app.new_key(Some(&m)).await, ..app.signing() };
        app.call_signed(&merchant, reqwest::Method::POST, unfreeze, Some(body.clone())).await.error(403, 40300);
        let done = app.post(unfreeze, json!({"transaction_id": tx_id})).await;
        assert_eq!(done.status, 201, "{}", done.body);
        assert_eq!(done.body["status"], "Unfrozen");
        app.post(unfreeze, json!({"transaction_id": tx_id})).await.error(409, 40901);
        let order = app.get(&format!("/v2/payments/orders/{order_id}")).await.ok();
        assert_eq!(order["status"], "Completed", "{order}");
        let balance = app.merchant_balance(&m, "ETH_USDT").await;
        assert_eq!(balance["total_balance"], if i == 0 { "10" } else { "20" }, "credited once: {balance}");
        let status = app.get(&status_path).await.ok();
        assert_eq!(
            (status["review_status"].as_str(), status["funds_status"].as_str()),
            (Some("Approved"), Some("Unfrozen"))
        );
        let d = app.get(&format!("/v2/compliance/funds/disposition?transaction_id={tx_id}")).await.ok();
        assert_eq!(
            (d["disposition_type"].as_str(), d["disposition_status"].as_str()),
            (Some("Unfreeze"), Some("Unfrozen"))
        );
    }
    let events = app.get(&format!("/v2/webhooks/endpoints/{endpoint}/events?limit=50")).await.ok();
    assert_eq!(events["data"].as_array().unwrap().len(), 2, "one held event per pay-in: {events}");
    // A clean sender's pay-in is credited at once and says so.
    let order = app.paid_order(&m, "5", "0").await;
    assert_eq!(order["status"], "Completed");
    let tx_id = order["transactions"][0]["tx_id"].as_str().unwrap();
    let status = app.get(&format!("/v2/compliance/kyt/screenings/status?transaction_id={tx_id}")).await.ok();
    assert_eq!((status["review_status"].as_str(), status["funds_status"].as_str()), (Some("Approved"), Some("Normal")));
    app.get("/v2/compliance/kyt/screenings/status?transaction_id=Tnone").await.error(404, 40400);
}

pub(crate) const QUARANTINE: &str = "0x0000000000000000000000000000000000001501";

pub(crate) fn disposing() -> Options {
    Options {
        screening: Some(ScreeningSettings {
            quarantine: [("ETH".to_owned(), QUARANTINE.to_owned())].into_iter().collect(),
            ..ScreeningSettings::default()
        }),
        ..denying()
    }
}

/// An order of 10 ETH_USDT paid from `sender` and confirmed; its pay-in's tx id.
pub(crate) async fn paid_from(app: &TestApp, merchant: &str, code: &str, sender: &str) -> String {
    let order = app
        .post(
            "/v2/payments/orders",
            json!({"merchant_id": merchant, "psp_order_code": code, "payable_currency": "ETH_USDT",
                   "payable_amount": "10", "fee_amount": "0"}),
        )
        .await
        .ok();
    let order_id = order["order_id"].as_str().unwrap();
    app.post(&format!("/v2/sandbox/orders/{order_id}/payments"), json!({"from_address": sender})).await.ok();
    let chain = app.sandbox("ETH");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let order = app.get(&format!("/v2/payments/orders/{order_id}")).await.ok();
        if order["transactions"][0]["status"] == "Completed" {
            return order["transactions"][0]["tx_id"].as_str().unwrap().to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "the pay-in never confirmed: {order}");
        chain.mine().await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

async fn disposition_of(app: &TestApp, tx_id: &str) -> Value {
    app.get(&format!("/v2/compliance/funds/disposition?transaction_id={tx_id}")).await.ok()
}

crate::both_backends_with!(
    held_funds_are_refunded_or_isolated_once_and_a_sanctioned_sender_is_never_paid,
    super::disposing()
);

/// The `refund` and `isolate` dispositions: refunds of type `Held` the payout executor pays once; at
/// most what the pay-in still holds; never back to a sanctioned sender; a failed payout returns the
/// funds to `held`, from where they can be released. The ledger is checked at the end (`finish`).
async fn held_funds_are_refunded_or_isolated_once_and_a_sanctioned_sender_is_never_paid(app: &TestApp) {
    let chain = app.sandbox("ETH");
    let m = app.create_merchant("Shop").await;
    let refund_path = "/v2/compliance/funds/disposition/refund";
    let isolate_path = "/v2/compliance/funds/disposition/isolate";
    let body = |tx: &str, to: &str, amount: &str| {
        json!({"transaction_id": tx, "destination_address": to, "disposition_amount": amount,
               "category_names": ["test"], "description": "disposition test"})
    };

    // Refunded to another (clean) address, once.
    let tx1 = paid_from(app, &m, "d1", DENIED).await;
    app.post(refund_path, body(&tx1, USER_ADDRESS, "10.000001")).await.error(400, 40000);
    let before = chain.token_balance(USER_ADDRESS).await;
    let made = app.post(refund_path, body(&tx1, USER_ADDRESS, "10")).await;
    assert_eq!((made.status.as_u16(), made.body["status"].as_str()), (201, Some("Refunding")), "{}", made.body);
    app.post(refund_path, body(&tx1, USER_ADDRESS, "10")).await.error(409, 40901);
    let d = disposition_of(app, &tx1).await;
    assert_eq!(d["disposition_type"], "Refund");
    let refund_id = d["refund_id"].as_str().unwrap().to_owned();
    let paid = app.mine_until(&chain, &refund_id, "Completed").await;
    assert_eq!(paid["refund_type"], "Held");
    assert!(paid.get("merchant_id").is_none(), "no merchant sees a disposition: {paid}");
    assert_eq!(chain.token_balance(USER_ADDRESS).await - before, 10_000_000);
    let d = disposition_of(app, &tx1).await;
    assert_eq!(d["disposition_status"], "Refunded");
    assert!(d["disposition_transaction_id"].is_string(), "{d}");
    let kyt = app.get(&format!("/v2/compliance/kyt/screenings/status?transaction_id={tx1}")).await.ok();
    assert_eq!(kyt["funds_status"], "Refunded");
    app.post(refund_path, body(&tx1, USER_ADDRESS, "1")).await.error(409, 40901);
    app.post("/v2/compliance/funds/disposition/unfreeze", json!({"transaction_id": tx1})).await.error(409, 40901);

    // A sanctioned sender is never paid back; isolation runs to its end at the quarantine address.
    let tx2 = paid_from(app, &m, "d2", OFAC_ETH).await;
    let refused = app.post(refund_path, body(&tx2, OFAC_ETH, "10")).await.error(400, 40004);
    assert!(refused["error_message"].as_str().unwrap().contains("sanctions"), "{refused}");
    app.post(isolate_path, body(&tx2, USER_ADDRESS, "10")).await.error(400, 40000);
    let made = app.post(isolate_path, body(&tx2, QUARANTINE, "10")).await;
    assert_eq!((made.status.as_u16(), made.body["status"].as_str()), (201, Some("Isolating")), "{}", made.body);
    let refund_id = disposition_of(app, &tx2).await["refund_id"].as_str().unwrap().to_owned();
    app.mine_until(&chain, &refund_id, "Completed").await;
    assert_eq!(disposition_of(app, &tx2).await["disposition_status"], "Isolated");
    assert_eq!(chain.token_balance(QUARANTINE).await, 10_000_000);

    // A payout that fails returns the funds to `held`; they can then be released to the merchant.
    let tx3 = paid_from(app, &m, "d3", DENIED).await;
    let revert = ebb_chain::sandbox::REVERT_ADDRESS;
    app.post(refund_path, body(&tx3, revert, "10")).await.ok();
    let refund_id = disposition_of(app, &tx3).await["refund_id"].as_str().unwrap().to_owned();
    app.mine_until(&chain, &refund_id, "Failed").await;
    assert_eq!(disposition_of(app, &tx3).await["disposition_status"], "RefundFailed");
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "0");
    app.post("/v2/compliance/funds/disposition/unfreeze", json!({"transaction_id": tx3})).await.ok();
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "10", "credited once, after the failure");

    // Only the PSP's operators dispose; nobody asks for a refund of held funds directly.
    let merchant = Signing { key: app.new_key(Some(&m)).await, ..app.signing() };
    let b = body(&tx3, USER_ADDRESS, "1").to_string().into_bytes();
    app.call_signed(&merchant, reqwest::Method::POST, refund_path, Some(b)).await.error(403, 40300);
    app.post(
        "/v2/payments/refunds",
        json!({"request_id": "h", "merchant_id": m, "payable_amount": "1", "token_id": "ETH_USDT", "refund_type": "Held"}),
    )
    .await
    .error(400, 40000);
}

crate::both_backends_with!(held_pay_ins_are_decided_and_reviewed_through_cobos_calls, super::disposing());

/// Cobo's `decisions` and `manual_review`: a rejection keeps the funds frozen for a refund or isolate,
/// an approval releases them to the merchant; every change raises
/// `compliance.kyt.screenings.status.updated`. Only the PSP's operators review.
async fn held_pay_ins_are_decided_and_reviewed_through_cobos_calls(app: &TestApp) {
    let hooks = crate::webhooks::Receiver::start().await;
    let endpoint = app
        .post(
            "/v2/webhooks/endpoints",
            json!({"url": hooks.url, "subscribed_events": ["compliance.kyt.screenings.status.updated",
                   "compliance.disposition.status.updated", "compliance.kya.screenings.status.updated"]}),
        )
        .await;
    assert_eq!(endpoint.status, 201, "{}", endpoint.body);
    let m = app.create_merchant("Shop").await;
    let decisions = "/v2/compliance/kyt/screenings/decisions";
    let manual = "/v2/compliance/kyt/screenings/manual_review";
    let status_of = |tx: String| async move {
        let s = app.get(&format!("/v2/compliance/kyt/screenings/status?transaction_id={tx}")).await.ok();
        (s["review_status"].as_str().unwrap().to_owned(), s["funds_status"].as_str().unwrap().to_owned())
    };

    let tx = paid_from(app, &m, "review-1", DENIED).await;
    let made = app.post(decisions, json!({"transaction_id": tx, "result": "Rejection"})).await;
    assert_eq!((made.status.as_u16(), made.body["submitted"].as_bool()), (201, Some(true)), "{}", made.body);
    assert_eq!(status_of(tx.clone()).await, ("Rejected".to_owned(), "Frozen".to_owned()));
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "0");
    app.post(decisions, json!({"transaction_id": tx, "result": "Maybe"})).await.error(400, 40000);
    app.post(manual, json!({"transaction_id": tx, "result": "ManualReview"})).await.error(400, 40000);
    let approver = Signing { key: app.new_key_with_role(None, KeyRole::Approver).await, ..app.signing() };
    let merchant = Signing { key: app.new_key(Some(&m)).await, ..app.signing() };
    for who in [&approver, &merchant] {
        let b = json!({"transaction_id": tx, "result": "Approval"}).to_string().into_bytes();
        app.call_signed(who, reqwest::Method::POST, manual, Some(b)).await.error(403, 40300);
    }
    // A manual review approves it: released and credited, once.
    app.post(manual, json!({"transaction_id": tx, "result": "Approval"})).await.ok();
    assert_eq!(status_of(tx.clone()).await, ("Approved".to_owned(), "Unfrozen".to_owned()));
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "10");
    app.post(decisions, json!({"transaction_id": tx, "result": "Approval"})).await.error(409, 40901);

    // ApprovalWithAlert releases too; a pay-in never held, or unknown, cannot be reviewed.
    let tx2 = paid_from(app, &m, "review-2", DENIED).await;
    app.post(decisions, json!({"transaction_id": tx2, "result": "ManualReview"})).await.ok();
    assert_eq!(status_of(tx2.clone()).await, ("PendingReview".to_owned(), "Frozen".to_owned()));
    app.post(decisions, json!({"transaction_id": tx2, "result": "ApprovalWithAlert"})).await.ok();
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "20");
    let clean = app.paid_order(&m, "1", "0").await;
    let clean_tx = clean["transactions"][0]["tx_id"].as_str().unwrap();
    app.post(decisions, json!({"transaction_id": clean_tx, "result": "Rejection"})).await.error(409, 40901);
    app.post(decisions, json!({"transaction_id": "Tnone", "result": "Rejection"})).await.error(404, 40400);

    // A rejected pay-in refunded: its disposition's events follow its payout.
    let tx3 = paid_from(app, &m, "review-3", DENIED).await;
    app.post(decisions, json!({"transaction_id": tx3, "result": "Rejection"})).await.ok();
    app.post(
        "/v2/compliance/funds/disposition/refund",
        json!({"transaction_id": tx3, "destination_address": USER_ADDRESS, "disposition_amount": "10"}),
    )
    .await
    .ok();
    let refund_id = app.get(&format!("/v2/compliance/funds/disposition?transaction_id={tx3}")).await.ok()["refund_id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.mine_until(&app.sandbox("ETH"), &refund_id, "Completed").await;
    // And an address screened on request.
    let kya = app
        .post(
            "/v2/compliance/kya/screenings",
            json!({"screenings": [{"request_id": "hook-kya", "address": USER_ADDRESS, "chain_id": "ETH"}]}),
        )
        .await
        .ok();

    let got = hooks
        .wait_until(Duration::from_secs(10), "the refunded disposition's and the KYA screening's events", |got| {
            let json: Vec<Value> = got.iter().map(|r| r.json()).collect();
            json.iter().any(|e| e["data"]["disposition_status"] == "Refunded")
                && json.iter().any(|e| e["type"] == "compliance.kya.screenings.status.updated")
                && json.iter().filter(|e| e["data"]["review_status"] == "Approved").count() >= 2
        })
        .await;
    let events: Vec<Value> = got.iter().map(|r| r.json()).collect();
    let screened: Vec<&Value> =
        events.iter().filter(|e| e["type"] == "compliance.kya.screenings.status.updated").collect();
    assert_eq!(screened.len(), 1);
    assert_eq!(screened[0]["data"]["screening_id"], kya[0]["screening_id"], "{}", screened[0]);
    assert_eq!(
        (screened[0]["data"]["data_type"].as_str(), screened[0]["data"]["status"].as_str()),
        (Some("ComplianceKyaScreenings"), Some("Screened"))
    );
    let dispositions = |tx: &str| -> Vec<(String, String)> {
        let mut seen: Vec<(String, String)> = events
            .iter()
            .filter(|e| e["type"] == "compliance.disposition.status.updated" && e["data"]["transaction_id"] == tx)
            .map(|e| {
                assert_eq!(e["data"]["data_type"], "ComplianceDisposition");
                (
                    e["data"]["disposition_type"].as_str().unwrap().to_owned(),
                    e["data"]["disposition_status"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        seen.dedup();
        seen
    };
    assert_eq!(dispositions(&tx), [pair_of("Unfreeze", "Unfrozen")]);
    assert_eq!(dispositions(&tx3), [pair_of("Refund", "Refunding"), pair_of("Refund", "Refunded")]);
    let refunded = events.iter().find(|e| e["data"]["disposition_status"] == "Refunded").unwrap();
    assert_eq!(
        (refunded["data"]["disposition_amount"].as_str(), refunded["data"]["destination_address"].as_str()),
        (Some("10"), Some(USER_ADDRESS))
    );

    // The KYT events, in Cobo's ComplianceKytScreeningsUpdateEventData shape, in order per pay-in.
    let of = |tx: &str| -> Vec<(String, String)> {
        got.iter()
            .map(|r| r.json())
            .filter(|e| e["type"] == "compliance.kyt.screenings.status.updated" && e["data"]["transaction_id"] == tx)
            .map(|e| {
                assert_eq!(e["type"], "compliance.kyt.screenings.status.updated");
                assert_eq!(
                    (e["data"]["data_type"].as_str(), e["data"]["transaction_type"].as_str()),
                    (Some("ComplianceKytScreenings"), Some("Deposit"))
                );
                (
                    e["data"]["review_status"].as_str().unwrap().to_owned(),
                    e["data"]["funds_status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
    assert_eq!(of(&tx), [pair("PendingReview", "Frozen"), pair("Rejected", "Frozen"), pair("Approved", "Unfrozen")]);
    assert_eq!(
        of(&tx2),
        [pair("PendingReview", "Frozen"), pair("PendingReview", "Frozen"), pair("Approved", "Unfrozen")]
    );
}

fn pair_of(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

fn isolating_into_a_revert() -> Options {
    Options {
        screening: Some(ScreeningSettings {
            quarantine: [("ETH".to_owned(), ebb_chain::sandbox::REVERT_ADDRESS.to_owned())].into_iter().collect(),
            ..ScreeningSettings::default()
        }),
        ..denying()
    }
}

crate::both_backends_with!(a_failed_isolation_is_told_in_each_of_cobos_spellings, super::isolating_into_a_revert());

/// Cobo spells a failed isolation `IsolateFailed` as a disposition status and `IsolationFailed` as a
/// KYT funds status; the SDK reads any other word as unknown. After it, the funds are held again.
async fn a_failed_isolation_is_told_in_each_of_cobos_spellings(app: &TestApp) {
    let m = app.create_merchant("Shop").await;
    let tx = paid_from(app, &m, "isolate-fails", DENIED).await;
    let revert = ebb_chain::sandbox::REVERT_ADDRESS;
    app.post(
        "/v2/compliance/funds/disposition/isolate",
        json!({"transaction_id": tx, "destination_address": revert, "disposition_amount": "10"}),
    )
    .await
    .ok();
    let d = disposition_of(app, &tx).await;
    app.mine_until(&app.sandbox("ETH"), d["refund_id"].as_str().unwrap(), "Failed").await;
    assert_eq!(disposition_of(app, &tx).await["disposition_status"], "IsolateFailed");
    let kyt = app.get(&format!("/v2/compliance/kyt/screenings/status?transaction_id={tx}")).await.ok();
    assert_eq!(kyt["funds_status"], "IsolationFailed", "{kyt}");
    // Held again: a rejection now tells the same funds status.
    app.post("/v2/compliance/kyt/screenings/decisions", json!({"transaction_id": tx, "result": "Rejection"}))
        .await
        .ok();
    let kyt = app.get(&format!("/v2/compliance/kyt/screenings/status?transaction_id={tx}")).await.ok();
    assert_eq!(
        (kyt["review_status"].as_str(), kyt["funds_status"].as_str()),
        (Some("Rejected"), Some("IsolationFailed"))
    );
}
