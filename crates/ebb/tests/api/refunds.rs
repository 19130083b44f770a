use futures::future::join_all;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{TestApp, USER_ADDRESS};

both_backends!(
    refund_moves_from_pending_confirmation_to_pending_and_cancel_releases_the_funds,
    refund_creation_is_idempotent,
    twenty_concurrent_identical_creates_make_one_refund,
    concurrent_refunds_cannot_overdraw_a_balance,
    over_refund_guard_holds_under_concurrency,
    psp_refunds_are_paid_from_the_developer_balance,
    refunds_refuse_bad_input_with_clear_errors,
    listing_refunds_pages_with_cursors_and_filters,
    a_cancelled_or_processing_refund_cannot_change,
    a_refund_shows_its_transactions_in_order,
    refunds_to_destinations_that_lose_the_money_are_refused,
);

/// The zero address, a token contract in the registry, ebb's hot wallet and an order's receiving
/// address are refused (400, 40004) on create and on update, and nothing is reserved.
async fn refunds_to_destinations_that_lose_the_money_are_refused(app: &TestApp) {
    use crate::chains::TestChain;
    let m = app.create_merchant("Shop").await;
    let order = app.paid_order(&m, "10", "0").await;
    let other_order = app
        .post(
            "/v2/payments/orders",
            json!({"merchant_id": m, "psp_order_code": "other", "payable_currency": "BASE_USDT",
              "payable_amount": "1", "fee_amount": "0"}),
        )
        .await
        .ok();
    let lost = [
        ("0x0000000000000000000000000000000000000000", "zero address"),
        ("0xdac17f958d2ee523a2206206994597c13d831ec7", "contract of token ETH_USDT"),
        ("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "contract of token BASE_USDC"),
        (order["receive_address"].as_str().unwrap(), "receiving addresses"),
        (other_order["receive_address"].as_str().unwrap(), "receiving addresses"),
        (&app.sandbox("ETH").hot_wallet(), "hot wallet"),
    ];
    for (i, (address, why)) in lost.iter().enumerate() {
        let e = app
            .post(
                "/v2/payments/refunds",
                json!({"request_id": format!("lost-{i}"), "merchant_id": m, "payable_amount": "1",
                  "token_id": "ETH_USDT", "refund_type": "Merchant", "to_address": address}),
            )
            .await
            .error(400, 40004);
        assert!(e["error_message"].as_str().unwrap().contains(why), "{address}: {e}");
    }
    let pending = app
        .post(
            "/v2/payments/refunds",
            json!({"request_id": "later", "merchant_id": m, "payable_amount": "1",
              "token_id": "ETH_USDT", "refund_type": "Merchant"}),
        )
        .await
        .ok();
    let id = pending["refund_id"].as_str().unwrap();
    for (address, _) in lost {
        app.put(&format!("/v2/payments/refunds/{id}"), Some(json!({"to_address": address}))).await.error(400, 40004);
    }
    let still = app.get(&format!("/v2/payments/refunds/{id}")).await.ok();
    assert_eq!((still["status"].as_str(), still["to_address"].as_str()), (Some("PendingConfirmation"), Some("")));
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "9", "only the one live refund reserved");
}

async fn a_refund_shows_its_transactions_in_order(app: &TestApp) {
    let m = app.create_merchant("Shop").await;
    app.paid_order(&m, "10", "0").await;
    let r = app
        .post(
            "/v2/payments/refunds",
            json!({"request_id": "tx", "merchant_id": m, "payable_amount": "4", "token_id": "ETH_USDT",
                   "refund_type": "Merchant", "to_address": USER_ADDRESS}),
        )
        .await
        .ok();
    let id = r["refund_id"].as_str().unwrap();
    assert_eq!(r["transactions"], json!([]));
    // Payout legs are written by the payout executor (next issue); stand in for it with two rows.
    for (tx, amount, status) in [("T-leg-1", "1500000", "Completed"), ("T-leg-2", "2500000", "Broadcasting")] {
        sqlx::query(
            "INSERT INTO payment_transactions (tx_id, direction, order_id, refund_id, tx_hash, token_id, chain_id, \
             from_address, to_address, amount, status, failed_reason, created_at_ms, updated_at_ms) \
             VALUES ($1, 'out', NULL, $2, NULL, 'ETH_USDT', 'ETH', $3, $3, $4, $5, NULL, 1, 2)",
        )
        .bind(tx)
        .bind(id)
        .bind(USER_ADDRESS)
        .bind(amount)
        .bind(status)
        .execute(app.store.pool())
        .await
        .unwrap();
    }
    let got = app.get(&format!("/v2/payments/refunds/{id}")).await.ok();
    let legs = got["transactions"].as_array().unwrap();
    assert_eq!(legs.len(), 2);
    assert_eq!(
        (legs[0]["tx_id"].as_str(), legs[0]["amount"].as_str(), legs[0]["status"].as_str()),
        (Some("T-leg-1"), Some("1.5"), Some("Completed"))
    );
    assert_eq!(legs[1]["amount"], "2.5");
    assert!(legs[0].get("tx_hash").is_none(), "no hash before broadcast");
    assert_eq!(legs[1]["created_timestamp"], 1);
    let listed = app.get("/v2/payments/refunds?request_id=tx").await.ok();
    assert_eq!(listed["data"][0]["transactions"].as_array().unwrap().len(), 2);
}

async fn refund_moves_from_pending_confirmation_to_pending_and_cancel_releases_the_funds(app: &TestApp) {
    let m = app.create_merchant("Shop").await;
    let order = app.paid_order(&m, "100", "1").await;
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "99");

    let refund = app
        .post(
            "/v2/payments/refunds",
            json!({"request_id": "r-1", "merchant_id": m, "order_id": order["order_id"], "payable_amount": "10.5",
                   "token_id": "ETH_USDT", "refund_type": "Merchant", "charge_merchant_fee": true,
                   "merchant_fee_amount": "0.25", "merchant_fee_token_id": "ETH_USDT"}),
        )
        .await;
    assert_eq!(refund.status.as_u16(), 201);
    let refund = refund.ok();
    assert_eq!(refund["status"], "PendingConfirmation");
    assert_eq!(refund["to_address"], "");
    assert_eq!(refund["amount"], "10.5");
    assert_eq!(refund["chain_id"], "ETH");
    assert_eq!(refund["merchant_fee_amount"], "0.25");
    assert_eq!(refund["initiator"], format!("api_key_{}", hex::encode(app.key.verifying_key().to_bytes())));
    let balance = app.merchant_balance(&m, "ETH_USDT").await;
    assert_eq!(balance["total_balance"], "88.25", "99 - 10.5 - 0.25 reserved");
    assert_eq!(balance["refunded_amount"], "10.5");

    let id = refund["refund_id"].as_str().unwrap();
    // A lower-case address is accepted and stored in its EIP-55 form.
    let updated = app
        .put(&format!("/v2/payments/refunds/{id}"), Some(json!({"to_address": USER_ADDRESS.to_lowercase()})))
        .await
        .ok();
    assert_eq!(updated["status"], "Pending");
    assert_eq!(updated["to_address"], USER_ADDRESS);
    assert_eq!(app.get(&format!("/v2/payments/refunds/{id}")).await.ok()["status"], "Pending");

    let cancelled = app.put(&format!("/v2/payments/refunds/{id}/cancel"), None).await.ok();
    assert_eq!(cancelled["status"], "Failed");
    assert_eq!(cancelled["failed_reason"], "Cancelled");
    let balance = app.merchant_balance(&m, "ETH_USDT").await;
    assert_eq!(balance["total_balance"], "99");
    assert_eq!(balance["refunded_amount"], "0");
    // The order can be refunded in full again once the cancelled refund released its share.
    app.post(
        "/v2/payments/refunds",
        json!({"request_id": "r-2", "order_id": order["order_id"], "payable_amount": "99", "token_id": "ETH_USDT",
               "refund_type": "Merchant", "to_address": USER_ADDRESS}),
    )
    .await
    .ok();
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "0");
}

async fn refund_creation_is_idempotent(app: &TestApp) {
    let m = app.create_merchant("Shop").await;
    app.paid_order(&m, "50", "0").await;
    let body = json!({"request_id": "same", "merchant_id": m, "payable_amount": "5", "token_id": "ETH_USDT",
                      "refund_type": "Merchant", "to_address": USER_ADDRESS});
    let first = app.post("/v2/payments/refunds", body.clone()).await.ok();
    let again = app.post("/v2/payments/refunds", body.clone()).await;
    assert_eq!(again.status.as_u16(), 201, "the SDK reads a body only on 201");
    assert_eq!(again.body["refund_id"], first["refund_id"]);
    // "5.00" is the same amount as "5": still the same request.
    let mut same_amount = body.clone();
    same_amount["payable_amount"] = json!("5.00");
    assert_eq!(app.post("/v2/payments/refunds", same_amount).await.ok()["refund_id"], first["refund_id"]);
    let mut different = body.clone();
    different["payable_amount"] = json!("6");
    app.post("/v2/payments/refunds", different).await.error(409, 40900);
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "45", "charged once");
    let listed = app.get("/v2/payments/refunds?request_id=same").await.ok();
    assert_eq!(listed["pagination"]["total_count"], 1);
}

async fn twenty_concurrent_identical_creates_make_one_refund(app: &TestApp) {
    let m = app.create_merchant("Shop").await;
    let order = app.paid_order(&m, "50", "0").await;
    let body = json!({"request_id": "burst", "order_id": order["order_id"], "payable_amount": "7", "token_id": "ETH_USDT",
                      "refund_type": "Merchant", "to_address": USER_ADDRESS});
    let results = join_all((0..20).map(|_| app.post("/v2/payments/refunds", body.clone()))).await;
    let ids: std::collections::BTreeSet<String> =
        results.into_iter().map(|r| r.ok()["refund_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids.len(), 1, "one refund for twenty identical requests");
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "43");
}

async fn concurrent_refunds_cannot_overdraw_a_balance(app: &TestApp) {
    let m = app.create_merchant("Shop").await;
    app.paid_order(&m, "30", "0").await;
    // 50 refunds of 1 against a balance of 30: exactly 30 succeed, the rest see insufficient balance.
    let results = join_all((0..50).map(|i| {
        app.post(
            "/v2/payments/refunds",
            json!({"request_id": format!("c-{i}"), "merchant_id": m, "payable_amount": "1", "token_id": "ETH_USDT",
                   "refund_type": "Merchant", "to_address": USER_ADDRESS}),
        )
    }))
    .await;
    let mut ok = 0;
    for r in results {
        if r.status.is_success() {
            ok += 1;
        } else {
            r.error(422, 42200);
        }
    }
    assert_eq!(ok, 30);
    let balance = app.merchant_balance(&m, "ETH_USDT").await;
    assert_eq!(balance["total_balance"], "0");
    assert_eq!(balance["refunded_amount"], "30");
}

async fn over_refund_guard_holds_under_concurrency(app: &TestApp) {
    let m = app.create_merchant("Shop").await;
    let order = app.paid_order(&m, "100", "0").await;
    // Another paid order gives the merchant enough balance that only the order guard can refuse.
    app.paid_order(&m, "1000", "0").await;
    let results = join_all((0..10).map(|i| {
        app.post(
            "/v2/payments/refunds",
            json!({"request_id": format!("o-{i}"), "order_id": order["order_id"], "payable_amount": "15",
                   "token_id": "ETH_USDT", "refund_type": "Merchant", "to_address": USER_ADDRESS}),
        )
    }))
    .await;
    let mut ok = 0;
    for r in results {
        if r.status.is_success() {
            ok += 1;
        } else {
            r.error(422, 42201);
        }
    }
    assert_eq!(ok, 6, "6 x 15 = 90 <= 100 < 105");
    app.post(
        "/v2/payments/refunds",
        json!({"request_id": "rest", "order_id": order["order_id"], "payable_amount": "10", "token_id": "ETH_USDT",
               "refund_type": "Psp", "to_address": USER_ADDRESS}),
    )
    .await
    .error(422, 42200); // the guard allows 10 more, but the PSP balance is empty
    app.post(
        "/v2/payments/refunds",
        json!({"request_id": "rest2", "order_id": order["order_id"], "payable_amount": "10.01", "token_id": "ETH_USDT",
               "refund_type": "Merchant", "to_address": USER_ADDRESS}),
    )
    .await
    .error(422, 42201);
}

async fn psp_refunds_are_paid_from_the_developer_balance(app: &TestApp) {
    let m = app.create_merchant("Shop").await;
    let order = app.paid_order(&m, "100", "4").await;
    let psp = app.get("/v2/payments/balance/psp?token_id=ETH_USDT").await.ok();
    assert_eq!(psp["total_balance"], "4");
    assert_eq!(psp["developer_fee_amount"], "4");
    app.post(
        "/v2/payments/refunds",
        json!({"request_id": "p", "order_id": order["order_id"], "payable_amount": "3", "token_id": "ETH_USDT",
               "refund_type": "Psp", "to_address": USER_ADDRESS}),
    )
    .await
    .ok();
    let psp = app.get("/v2/payments/balance/psp?token_id=ETH_USDT").await.ok();
    assert_eq!(psp["total_balance"], "1");
    assert_eq!(psp["refunded_amount"], "3");
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "96");
}

async fn refunds_refuse_bad_input_with_clear_errors(app: &TestApp) {
    let m = app.create_merchant("Shop").await;
    app.paid_order(&m, "100", "0").await;
    let base = json!({"request_id": "x", "merchant_id": m, "payable_amount": "1", "token_id": "ETH_USDT",
                      "refund_type": "Merchant", "to_address": USER_ADDRESS});
    let with = |k: &str, v: serde_json::Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let cases = [
        (with("payable_amount", json!("0.001")), 400, 40001),
        (with("payable_amount", json!("0")), 400, 40001),
        (with("payable_amount", json!("-1")), 400, 40001),
        (with("payable_amount", json!("1e3")), 400, 40001),
        (with("payable_amount", json!(1)), 400, 40000),
        (with("token_id", json!("DOGE")), 400, 40003),
        (with("refund_type", json!("Customer")), 400, 40000),
        (with("to_address", json!("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD")), 400, 40002),
        (with("to_address", json!("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t")), 400, 40002),
        (with("request_id", json!("")), 400, 40000),
        (with("merchant_id", json!("M-nobody")), 404, 40400),
        (with("order_id", json!("O-nothing")), 404, 40400),
        (with("payable_amount", json!("1000")), 422, 42200),
        (
            json!({"request_id": "y", "merchant_id": m, "payable_amount": "1", "token_id": "ETH_USDT", "refund_type": "Merchant",
                "charge_merchant_fee": true}),
            400,
            40000,
        ),
        (
            json!({"request_id": "y", "merchant_id": m, "payable_amount": "1", "token_id": "ETH_USDT", "refund_type": "Merchant",
                "charge_merchant_fee": true, "merchant_fee_amount": "1"}),
            400,
            40001,
        ),
        (
            json!({"request_id": "y", "merchant_id": m, "payable_amount": "1", "token_id": "ETH_USDT", "refund_type": "Merchant",
                "charge_merchant_fee": true, "merchant_fee_amount": "0.1", "merchant_fee_token_id": "ETH_USDC"}),
            400,
            40000,
        ),
        (
            json!({"request_id": "y", "payable_amount": "1", "token_id": "ETH_USDT", "refund_type": "Psp",
                "charge_merchant_fee": true, "merchant_fee_amount": "0.1"}),
            400,
            40000,
        ),
        (
            json!({"request_id": "y", "payable_amount": "1", "token_id": "ETH_USDT", "refund_type": "Merchant"}),
            400,
            40000,
        ),
    ];
    for (body, status, code) in cases {
        let r = app.post("/v2/payments/refunds", body.clone()).await;
        assert_eq!((r.status.as_u16(), r.body["error_code"].as_i64()), (status, Some(code)), "{body} -> {}", r.body);
    }
    // Not JSON at all, and the wrong content type.
    let raw = app
        .call_signed(&app.signing(), reqwest::Method::POST, "/v2/payments/refunds", Some(b"{not json".to_vec()))
        .await;
    raw.error(400, 40000);
    app.get("/v2/payments/refunds/R-missing").await.error(404, 40400);
    app.get("/v2/payments/refunds?limit=0").await.error(400, 40000);
    app.get("/v2/payments/refunds?limit=51").await.error(400, 40000);
    app.get("/v2/payments/refunds?limit=ten").await.error(400, 40000);
    app.get("/v2/payments/refunds?statuses=Pending,Cancelled").await.error(400, 40000);
    app.get("/v2/payments/refunds?after=abc").await.error(400, 40000);
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "100", "nothing moved");
}

async fn listing_refunds_pages_with_cursors_and_filters(app: &TestApp) {
    let m = app.create_merchant("Shop").await;
    app.paid_order(&m, "100", "0").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let r = app
            .post(
                "/v2/payments/refunds",
                json!({"request_id": format!("l-{i}"), "merchant_id": m, "payable_amount": "1", "token_id": "ETH_USDT",
                       "refund_type": "Merchant", "to_address": if i % 2 == 0 { json!(USER_ADDRESS) } else { json!(null) }}),
            )
            .await
            .ok();
        ids.push(r["refund_id"].as_str().unwrap().to_owned());
    }
    ids.reverse(); // newest first
    let page1 = app.get("/v2/payments/refunds?limit=3").await.ok();
    assert_eq!(page1["pagination"]["total_count"], 7);
    assert_eq!(page1["pagination"]["before"], "");
    let got: Vec<&str> = page1["data"].as_array().unwrap().iter().map(|r| r["refund_id"].as_str().unwrap()).collect();
    assert_eq!(got, ids[0..3]);
    let after = page1["pagination"]["after"].as_str().unwrap();
    let page2 = app.get(&format!("/v2/payments/refunds?limit=3&after={after}")).await.ok();
    let got: Vec<&str> = page2["data"].as_array().unwrap().iter().map(|r| r["refund_id"].as_str().unwrap()).collect();
    assert_eq!(got, ids[3..6]);
    let page3 = app
        .get(&format!("/v2/payments/refunds?limit=3&after={}", page2["pagination"]["after"].as_str().unwrap()))
        .await
        .ok();
    assert_eq!(page3["data"].as_array().unwrap().len(), 1);
    assert_eq!(page3["pagination"]["after"], "");
    let back = app
        .get(&format!("/v2/payments/refunds?limit=3&before={}", page2["pagination"]["before"].as_str().unwrap()))
        .await
        .ok();
    let got: Vec<&str> = back["data"].as_array().unwrap().iter().map(|r| r["refund_id"].as_str().unwrap()).collect();
    assert_eq!(got, ids[0..3]);
    assert_eq!(back["pagination"]["before"], "");

    let pending = app.get("/v2/payments/refunds?statuses=PendingConfirmation&limit=50").await.ok();
    assert_eq!(pending["pagination"]["total_count"], 3);
    let both = app.get("/v2/payments/refunds?statuses=Pending,PendingConfirmation").await.ok();
    assert_eq!(both["pagination"]["total_count"], 7);
    let by_merchant = app.get(&format!("/v2/payments/refunds?merchant_id={m}")).await.ok();
    assert_eq!(by_merchant["pagination"]["total_count"], 7);
    let future = app.get("/v2/payments/refunds?min_created_timestamp=99999999999").await.ok();
    assert_eq!(future["pagination"]["total_count"], 0);
}

async fn a_cancelled_or_processing_refund_cannot_change(app: &TestApp) {
    let m = app.create_merchant("Shop").await;
    app.paid_order(&m, "10", "0").await;
    let r = app
        .post(
            "/v2/payments/refunds",
            json!({"request_id": "c", "merchant_id": m, "payable_amount": "1", "token_id": "ETH_USDT", "refund_type": "Merchant"}),
        )
        .await
        .ok();
    let id = r["refund_id"].as_str().unwrap();
    app.put(&format!("/v2/payments/refunds/{id}/cancel"), None).await.ok();
    app.put(&format!("/v2/payments/refunds/{id}/cancel"), None).await.error(409, 40901);
    app.put(&format!("/v2/payments/refunds/{id}"), Some(json!({"to_address": USER_ADDRESS}))).await.error(409, 40901);
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "10", "released exactly once");
}
