use reqwest::Method;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{next_nonce, TestApp, USER_ADDRESS};

both_backends!(
    every_authentication_failure_is_refused,
    a_merchant_key_sees_and_acts_only_on_its_merchant,
    a_captured_link_request_stays_a_replay_after_a_database_crash,
);

/// A captured `POST /links/refunds` replayed after the database lost what a crash loses (PostgreSQL
/// empties every UNLOGGED table in crash recovery; here that is done by hand) is still refused: the
/// record of a request that changes something is durable. (ebb's own crash on SQLite is the store's
/// unit test `a_change_is_recorded_before_it_is_served`.)
async fn a_captured_link_request_stays_a_replay_after_a_database_crash(app: &TestApp) {
    let m = app.create_merchant("Shop").await;
    let order = app.paid_order(&m, "10", "0").await;
    let body = serde_json::json!({"request_id": "captured", "business_info": {"order_id": order["order_id"],
        "amount": "1", "refund_source": "Merchant", "merchant_id": m}})
    .to_string()
    .into_bytes();
    let mut s = app.signing();
    s.nonce = Some(next_nonce());
    let first = app.call_signed(&s, Method::POST, "/v2/payments/links/refunds", Some(body.clone())).await.ok();
    assert!(first["token"].is_string());
    if app.database_url.starts_with("postgres") {
        let unlogged: Vec<String> =
            sqlx::query_scalar("SELECT relname::text FROM pg_class WHERE relpersistence = 'u' AND relkind = 'r'")
                .fetch_all(app.store.pool())
                .await
                .unwrap();
        assert!(unlogged.contains(&"seen_signatures".to_owned()), "{unlogged:?}");
        for table in unlogged {
            sqlx::query(&format!("TRUNCATE {table}")).execute(app.store.pool()).await.unwrap();
        }
    }
    app.call_signed(&s, Method::POST, "/v2/payments/links/refunds", Some(body)).await.error(401, 40103);
}

async fn every_authentication_failure_is_refused(app: &TestApp) {
    // No headers at all.
    let mut s = app.signing();
    s.omit_headers = true;
    app.call_signed(&s, Method::GET, "/v2/payments/refunds", None).await.error(401, 40100);

    // Signed by another key than the one claimed: a bad signature.
    let mut s = app.signing();
    s.claimed_key = Some(hex::encode(app.new_key(None).await.verifying_key().to_bytes()));
    app.call_signed(&s, Method::GET, "/v2/payments/refunds", None).await.error(401, 40101);

    // The signature covers the query: change it after signing.
    let nonce = next_nonce().to_string();
    let msg = ebb_api::auth::request_message("GET", "/v2/payments/refunds", &nonce, "limit=1", b"");
    let sig = hex::encode(ed25519_dalek::Signer::sign(&app.key, &ebb_api::auth::double_sha256(&msg)).to_bytes());
    let req = app
        .client
        .get(app.url("/v2/payments/refunds?limit=2"))
        .header("Biz-Api-Key", hex::encode(app.key.verifying_key().to_bytes()))
        .header("Biz-Api-Nonce", &nonce)
        .header("Biz-Api-Signature", &sig);
    app.send_checked(req).await.error(401, 40101);

    // A nonce six minutes old, and one six minutes ahead.
    for skew in [-6 * 60_000, 6 * 60_000] {
        let mut s = app.signing();
        s.nonce = Some(next_nonce() + skew);
        app.call_signed(&s, Method::GET, "/v2/payments/refunds", None).await.error(401, 40102);
    }
    // A non-numeric nonce.
    let req = app
        .client
        .get(app.url("/v2/payments/refunds"))
        .header("Biz-Api-Key", hex::encode(app.key.verifying_key().to_bytes()))
        .header("Biz-Api-Nonce", "yesterday")
        .header("Biz-Api-Signature", "00");
    app.send_checked(req).await.error(401, 40100);

    // A byte-identical request again is a replay; the same nonce with another body is not.
    let mut s = app.signing();
    s.nonce = Some(next_nonce());
    app.call_signed(&s, Method::GET, "/v2/payments/refunds", None).await.ok();
    app.call_signed(&s, Method::GET, "/v2/payments/refunds", None).await.error(401, 40103);
    app.call_signed(&s, Method::GET, "/v2/payments/refunds?limit=5", None).await.ok();

    // A key ebb does not know, and a revoked key.
    let stranger = ed25519_dalek::SigningKey::from_bytes(&crate::helpers::rand_bytes());
    let mut s = app.signing();
    s.key = stranger;
    app.call_signed(&s, Method::GET, "/v2/payments/refunds", None).await.error(401, 40104);
    let revoked = app.new_key(None).await;
    let mut s = app.signing();
    s.key = revoked.clone();
    app.call_signed(&s, Method::GET, "/v2/payments/refunds", None).await.ok();
    ebb_app::keys::revoke(&app.store, &hex::encode(revoked.verifying_key().to_bytes())).await.unwrap();
    // Revoked directly in the database, as `ebb keys revoke` in another process does: a server refuses
    // the key once its key cache entry expires.
    tokio::time::sleep(ebb_api::auth::KEY_CACHE_TTL + std::time::Duration::from_millis(50)).await;
    app.call_signed(&s, Method::GET, "/v2/payments/refunds", None).await.error(401, 40104);

    // Malformed key and signature headers.
    let mut s = app.signing();
    s.claimed_key = Some("not-hex".into());
    app.call_signed(&s, Method::GET, "/v2/payments/refunds", None).await.error(401, 40104);

    // Unknown endpoints answer a JSON 404, wrong methods a JSON 405, both signed.
    app.get("/v2/payments/nothing-here").await.error(404, 40400);
    app.call(Method::DELETE, "/v2/payments/refunds", None).await.error(405, 40500);
}

async fn a_merchant_key_sees_and_acts_only_on_its_merchant(app: &TestApp) {
    let mine = app.create_merchant("Mine").await;
    let theirs = app.create_merchant("Theirs").await;
    app.paid_order(&mine, "10", "0").await;
    let their_order = app.paid_order(&theirs, "10", "0").await;
    let their_refund = app
        .post(
            "/v2/payments/refunds",
            json!({"request_id": "t", "merchant_id": theirs, "payable_amount": "1", "token_id": "ETH_USDT",
                   "refund_type": "Merchant", "to_address": USER_ADDRESS}),
        )
        .await
        .ok();
    let theirs_id = their_refund["refund_id"].as_str().unwrap();

    let mut s = app.signing();
    s.key = app.new_key(Some(&mine)).await;
    let call = |method: Method, path: String, body: Option<serde_json::Value>| {
        let s = s.clone();
        async move { app.call_signed(&s, method, &path, body.map(|b| b.to_string().into_bytes())).await }
    };
    // Another merchant's refund does not exist for this key: it can neither see nor change it.
    call(Method::GET, format!("/v2/payments/refunds/{theirs_id}"), None).await.error(404, 40400);
    call(Method::PUT, format!("/v2/payments/refunds/{theirs_id}/cancel"), None).await.error(404, 40400);
    call(Method::PUT, format!("/v2/payments/refunds/{theirs_id}"), Some(json!({"to_address": USER_ADDRESS})))
        .await
        .error(404, 40400);
    call(Method::GET, format!("/v2/payments/orders/{}", their_order["order_id"].as_str().unwrap()), None)
        .await
        .error(404, 40400);
    call(Method::GET, format!("/v2/payments/refunds?merchant_id={theirs}"), None).await.error(404, 40400);
    call(Method::GET, format!("/v2/payments/balance/merchants?merchant_ids={theirs}"), None).await.error(404, 40400);
    call(Method::GET, "/v2/payments/balance/psp?token_id=ETH_USDT".into(), None).await.error(403, 40300);
    call(Method::POST, "/v2/payments/merchants".into(), Some(json!({"name": "x"}))).await.error(403, 40300);
    call(
        Method::POST,
        "/v2/payments/refunds".into(),
        Some(json!({"request_id": "m", "merchant_id": theirs, "payable_amount": "1", "token_id": "ETH_USDT", "refund_type": "Merchant"})),
    )
    .await
    .error(404, 40400);
    // Its own merchant works, and the merchant id defaults to its own.
    let own = call(
        Method::POST,
        "/v2/payments/refunds".into(),
        Some(json!({"request_id": "t", "payable_amount": "2", "token_id": "ETH_USDT", "refund_type": "Merchant"})),
    )
    .await
    .ok();
    assert_eq!(own["merchant_id"], mine);
    assert_ne!(own["refund_id"], their_refund["refund_id"], "request ids are scoped per merchant key");
    let listed = call(Method::GET, "/v2/payments/refunds".into(), None).await.ok();
    assert_eq!(listed["pagination"]["total_count"], 1);
    let merchants = call(Method::GET, "/v2/payments/merchants".into(), None).await.ok();
    assert_eq!(merchants["data"].as_array().unwrap().len(), 1);
    assert_eq!(merchants["data"][0]["merchant_id"], mine);
}
