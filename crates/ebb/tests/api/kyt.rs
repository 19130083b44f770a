//! The KYT refund API (the seed PSP's crypto refund API under `/v1.0`, issue 15) end to end: a client's
//! token, createCryptoRefund of a pay-in screening held, confirmCryptoRefund, getCryptoRefund until the
//! transfer's hash, and the Crypto Refund webhook; what it refuses (a payment not held, a sanctioned
//! sender, another client's refund, a revoked client) and a refund superseded by another disposition.
//!
//! The seed PSP publishes no client library, so the test speaks its JSON over plain HTTP.

use std::time::Duration;

use serde_json::{json, Value};

use crate::chains::TestChain;
use crate::helpers::{TestApp, USER_ADDRESS};
use crate::screening::{disposing, paid_from, DENIED, OFAC_ETH};
use crate::webhooks::Receiver;

/// A call of the KYT API: HTTP status and the `{code, msg, data}` envelope.
async fn kyt(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app.client.request(method, app.url(&format!("/v1.0{path}")));
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path} answered no JSON: {status} {text}"));
    assert!(v.get("code").is_some_and(Value::is_string) && v.get("msg").is_some(), "not the envelope: {v}");
    (status, v)
}

async fn token_for(app: &TestApp, client_id: &str, secret: &str) -> (u16, Value) {
    kyt(
        app,
        reqwest::Method::POST,
        "/auth/getToken",
        None,
        Some(json!({"clientId": client_id, "clientSecret": secret})),
    )
    .await
}

/// A new client's bearer token.
async fn new_client_token(app: &TestApp) -> String {
    let c = ebb_app::kyt::add_client(&app.store, "test").await.unwrap();
    let (status, t) = token_for(app, &c.client_id, &c.client_secret).await;
    assert_eq!((status, t["code"].as_str()), (200, Some("00000")), "{t}");
    t["data"]["accessToken"].as_str().unwrap().to_owned()
}

async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> (u16, Value) {
    kyt(app, reqwest::Method::POST, path, Some(token), Some(body)).await
}

async fn get(app: &TestApp, token: &str, query: &str) -> (u16, Value) {
    kyt(app, reqwest::Method::GET, &format!("/payment/crypto/getCryptoRefund?{query}"), Some(token), None).await
}

fn expect_error(answer: (u16, Value), status: u16, code: &str) -> Value {
    assert_eq!((answer.0, answer.1["code"].as_str()), (status, Some(code)), "{}", answer.1);
    assert!(answer.1["data"].is_null());
    answer.1
}

crate::both_backends!(kyt_clients_get_short_lived_tokens_and_nothing_without_one);

async fn kyt_clients_get_short_lived_tokens_and_nothing_without_one(app: &TestApp) {
    let c = ebb_app::kyt::add_client(&app.store, "desk").await.unwrap();
    expect_error(token_for(app, &c.client_id, "wrong").await, 401, "40104");
    expect_error(token_for(app, "KCnobody", &c.client_secret).await, 401, "40104");
    let bad_body = kyt(app, reqwest::Method::POST, "/auth/getToken", None, Some(json!({"clientId": 1}))).await;
    expect_error(bad_body, 400, "40000");
    let (status, t) = token_for(app, &c.client_id, &c.client_secret).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!((t["data"]["tokenType"].as_str(), t["data"]["expiresIn"].as_i64()), (Some("Bearer"), Some(7200)));
    let token = t["data"]["accessToken"].as_str().unwrap().to_owned();

    let create = |token: Option<String>| async move {
        kyt(
            app,
            reqwest::Method::POST,
            "/payment/crypto/createCryptoRefund",
            token.as_deref(),
            Some(json!({"originalTransactionType": 1, "originalTransactionId": "Tnone"})),
        )
        .await
    };
    expect_error(create(None).await, 401, "40100");
    expect_error(create(Some("x".repeat(43))).await, 401, "40104");
    expect_error(create(Some(token.clone())).await, 404, "40400");
    expect_error(kyt(app, reqwest::Method::GET, "/payment/crypto/nothing", Some(&token), None).await, 404, "40400");

    // Revoking the client ends its tokens at once.
    ebb_app::kyt::revoke_client(&app.store, &c.client_id).await.unwrap();
    expect_error(create(Some(token)).await, 401, "40104");
    expect_error(token_for(app, &c.client_id, &c.client_secret).await, 401, "40104");
}

crate::both_backends_with!(a_held_pay_in_is_refunded_through_the_kyt_refund_api, super::disposing());

/// Token, create, confirm, get until the hash, and the webhook: the seed's flow, on the sandbox chain.
async fn a_held_pay_in_is_refunded_through_the_kyt_refund_api(app: &TestApp) {
    let chain = app.sandbox("ETH");
    let hooks = Receiver::start().await;
    let endpoint = app
        .post("/v2/webhooks/endpoints", json!({"url": hooks.url, "subscribed_events": ["kyt.crypto_refund.updated"]}))
        .await;
    assert_eq!(endpoint.status, 201, "{}", endpoint.body);
    let m = app.create_merchant("Shop").await;
    let token = new_client_token(app).await;
    let create = "/payment/crypto/createCryptoRefund";
    let confirm = "/payment/crypto/confirmCryptoRefund";

    // A pay-in that was not held has no pending refund.
    let clean = app.paid_order(&m, "10", "0").await;
    let clean_tx = clean["transactions"][0]["tx_id"].as_str().unwrap();
    let refused =
        post(app, &token, create, json!({"originalTransactionType": 1, "originalTransactionId": clean_tx})).await;
    expect_error(refused, 409, "40901");
    let bad_type =
        post(app, &token, create, json!({"originalTransactionType": 7, "originalTransactionId": clean_tx})).await;
    expect_error(bad_type, 400, "40000");

    // Held (the operator's denylist rates the sender High): create, by the order (type 2).
    let held = paid_from(app, &m, "kyt-1", DENIED).await;
    let order_id = app.store.transaction(&held).await.unwrap().unwrap().order_id.unwrap();
    let (status, made) = post(
        app,
        &token,
        create,
        json!({"originalTransactionType": 2, "originalTransactionId": order_id, "clientReference": "ref-1"}),
    )
    .await;
    assert_eq!((status, made["code"].as_str()), (200, Some("00000")), "{made}");
    let cr = &made["data"];
    assert_eq!(cr["status"], 1, "{cr}");
    assert_eq!(
        (cr["amount"].as_str(), cr["currency"].as_str(), cr["blockchain"].as_str()),
        (Some("10"), Some("USDT"), Some("ETH"))
    );
    assert_eq!((cr["feeAmount"].as_str(), cr["txnHash"].as_str()), (Some("0"), Some("")));
    assert_eq!((cr["transactionId"].as_str(), cr["clientReference"].as_str()), (Some(held.as_str()), Some("ref-1")));
    let id = cr["cryptoRefundId"].as_str().unwrap().to_owned();
    // Asking again (by the transaction this time) returns the one awaiting confirmation.
    let (_, again) =
        post(app, &token, create, json!({"originalTransactionType": 1, "originalTransactionId": held})).await;
    assert_eq!(again["data"]["cryptoRefundId"], id.as_str());
    // Nothing is reserved before confirmation: the merchant was never credited, the held funds stay.
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "10", "only the clean order");

    // Another client neither sees nor confirms it.
    let other = new_client_token(app).await;
    expect_error(get(app, &other, &format!("cryptoRefundId={id}")).await, 404, "40400");
    expect_error(post(app, &other, confirm, json!({"cryptoRefundId": id})).await, 404, "40400");
    expect_error(
        post(app, &token, confirm, json!({"cryptoRefundId": id, "refundAddress": "nope"})).await,
        400,
        "40002",
    );

    // Confirmed to another address; paid by the executor; get until the hash.
    let before = chain.token_balance(USER_ADDRESS).await;
    let (status, confirmed) =
        post(app, &token, confirm, json!({"cryptoRefundId": id, "refundAddress": USER_ADDRESS})).await;
    assert_eq!(status, 200, "{confirmed}");
    assert_eq!(confirmed["data"]["status"], 2, "{confirmed}");
    let refund_id = confirmed["data"]["refundId"].as_str().unwrap().to_owned();
    app.mine_until(&chain, &refund_id, "Completed").await;
    let (_, done) = get(app, &token, "clientReference=ref-1").await;
    assert_eq!(
        (done["data"]["status"].as_i64(), done["data"]["statusName"].as_str()),
        (Some(3), Some("Completed")),
        "{done}"
    );
    let hash = done["data"]["txnHash"].as_str().unwrap().to_owned();
    assert!(hash.starts_with("0x") && hash.len() == 66, "{done}");
    assert_eq!(chain.token_balance(USER_ADDRESS).await - before, 10_000_000, "paid back in full");
    // Confirming again changes nothing; another address is refused; the pay-in holds nothing now.
    let (_, same) = post(app, &token, confirm, json!({"cryptoRefundId": id})).await;
    assert_eq!(same["data"]["status"], 3);
    expect_error(
        post(app, &token, confirm, json!({"cryptoRefundId": id, "refundAddress": DENIED})).await,
        409,
        "40901",
    );
    expect_error(
        post(app, &token, create, json!({"originalTransactionType": 1, "originalTransactionId": held})).await,
        409,
        "40901",
    );
    assert_eq!(
        app.get(&format!("/v2/compliance/funds/disposition?transaction_id={held}")).await.ok()["disposition_status"],
        "Refunded"
    );

    // The webhook told each step, in order, with the API's data.
    let got = hooks
        .wait_until(Duration::from_secs(10), "the completed crypto refund's event", |got| {
            got.iter().any(|r| r.json()["data"]["status"] == 3)
        })
        .await;
    let events: Vec<Value> =
        got.iter().map(|r| r.json()).filter(|e| e["data"]["cryptoRefundId"] == id.as_str()).collect();
    assert!(events
        .iter()
        .all(|e| e["type"] == "kyt.crypto_refund.updated" && e["data"]["data_type"] == "CryptoRefund"));
    let mut statuses: Vec<i64> = events.iter().map(|e| e["data"]["status"].as_i64().unwrap()).collect();
    statuses.dedup();
    assert_eq!(statuses.first(), Some(&1), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&3), "{statuses:?}");
    assert!(statuses.contains(&2), "{statuses:?}");
    assert_eq!(events.last().unwrap()["data"]["txnHash"], hash.as_str());
}

crate::both_backends_with!(a_sanctioned_sender_is_never_paid_back_and_other_dispositions_supersede, super::disposing());

async fn a_sanctioned_sender_is_never_paid_back_and_other_dispositions_supersede(app: &TestApp) {
    let m = app.create_merchant("Shop").await;
    let token = new_client_token(app).await;
    let create = "/payment/crypto/createCryptoRefund";
    let confirm = "/payment/crypto/confirmCryptoRefund";

    // Back to an OFAC-listed sender: refused, nothing reserved, still awaiting confirmation.
    let tx = paid_from(app, &m, "kyt-ofac", OFAC_ETH).await;
    let (_, made) = post(app, &token, create, json!({"originalTransactionType": 1, "originalTransactionId": tx})).await;
    let id = made["data"]["cryptoRefundId"].as_str().unwrap().to_owned();
    let refused = expect_error(post(app, &token, confirm, json!({"cryptoRefundId": id})).await, 400, "40004");
    assert!(refused["msg"].as_str().unwrap().contains("sanctions"), "{refused}");
    let (_, still) = get(app, &token, &format!("cryptoRefundId={id}")).await;
    assert_eq!(still["data"]["status"], 1, "{still}");

    // The sender of a held pay-in rated High by the denylist: paying it back is held for approval.
    let tx2 = paid_from(app, &m, "kyt-denied", DENIED).await;
    let (_, made2) =
        post(app, &token, create, json!({"originalTransactionType": 1, "originalTransactionId": tx2})).await;
    let id2 = made2["data"]["cryptoRefundId"].as_str().unwrap().to_owned();
    let (status, waiting) = post(app, &token, confirm, json!({"cryptoRefundId": id2})).await;
    assert_eq!((status, waiting["data"]["status"].as_i64()), (200, Some(2)), "{waiting}");
    assert_eq!(waiting["data"]["refundAddress"].as_str().map(str::to_lowercase), Some(DENIED.to_lowercase()));
    let refund = app.get(&format!("/v2/payments/refunds/{}", waiting["data"]["refundId"].as_str().unwrap())).await.ok();
    assert_eq!(
        (refund["status"].as_str(), refund["approval"]["status"].as_str()),
        (Some("Pending"), Some("Pending")),
        "{refund}"
    );

    // Once an approver approves, the sender is paid back in full.
    let approver = crate::helpers::Signing {
        key: app.new_key_with_role(None, ebb_store::keys::KeyRole::Approver).await,
        ..app.signing()
    };
    let refund_id = refund["refund_id"].as_str().unwrap();
    let path = format!("/v2/payments/refunds/{refund_id}/approve");
    app.call_signed(&approver, reqwest::Method::POST, &path, Some(b"{}".to_vec())).await.ok();
    let chain = app.sandbox("ETH");
    let before = chain.token_balance(DENIED).await;
    app.mine_until(&chain, refund_id, "Completed").await;
    assert_eq!(chain.token_balance(DENIED).await - before, 10_000_000);
    let (_, paid) = get(app, &token, &format!("cryptoRefundId={id2}")).await;
    assert_eq!(paid["data"]["status"], 3, "{paid}");

    // The operator isolates the sanctioned pay-in instead: its crypto refund is cancelled.
    app.post(
        "/v2/compliance/funds/disposition/isolate",
        json!({"transaction_id": tx, "destination_address": crate::screening::QUARANTINE, "disposition_amount": "10"}),
    )
    .await
    .ok();
    let (_, cancelled) = get(app, &token, &format!("cryptoRefundId={id}")).await;
    assert_eq!(
        (cancelled["data"]["status"].as_i64(), cancelled["data"]["statusName"].as_str()),
        (Some(5), Some("Cancelled"))
    );
    expect_error(
        post(app, &token, confirm, json!({"cryptoRefundId": id, "refundAddress": USER_ADDRESS})).await,
        409,
        "40901",
    );
    let chain = app.sandbox("ETH");
    let isolated = app.get(&format!("/v2/compliance/funds/disposition?transaction_id={tx}")).await.ok();
    app.mine_until(&chain, isolated["refund_id"].as_str().unwrap(), "Completed").await;
}
