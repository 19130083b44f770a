use serde_json::json;

use crate::both_backends;
use crate::helpers::TestApp;

both_backends!(
    merchants_are_created_listed_fetched_and_updated,
    orders_get_an_address_and_complete_when_paid,
    underpaid_orders_and_expired_orders,
    eighteen_decimal_tokens_keep_every_base_unit,
    concurrent_first_payments_of_a_new_merchant_all_credit,
);

async fn concurrent_first_payments_of_a_new_merchant_all_credit(app: &TestApp) {
    let m = app.create_merchant("Fresh").await;
    // Ten orders paid at once: the first postings to the merchant's and the PSP's new balance rows race.
    let paid = futures::future::join_all((0..10).map(|_| app.paid_order(&m, "2", "0.5"))).await;
    assert!(paid.iter().all(|o| o["status"] == "Completed"));
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "15");
    assert_eq!(app.get("/v2/payments/balance/psp?token_id=ETH_USDT").await.ok()["total_balance"], "5");
}

async fn merchants_are_created_listed_fetched_and_updated(app: &TestApp) {
    let created =
        app.post("/v2/payments/merchants", json!({"name": "Coffee 100%", "developer_fee_rate": "0.015"})).await;
    assert_eq!(created.status.as_u16(), 201);
    let m = created.ok();
    assert_eq!(m["wallet_id"], "");
    assert_eq!(m["developer_fee_rate"], "0.015");
    let id = m["merchant_id"].as_str().unwrap();
    app.create_merchant("Tea").await;
    let listed = app.get("/v2/payments/merchants?keyword=coffee").await.ok();
    assert_eq!(listed["pagination"]["total_count"], 1);
    // LIKE wildcards in the keyword are literal.
    assert_eq!(app.get("/v2/payments/merchants?keyword=%25").await.ok()["pagination"]["total_count"], 1);
    assert_eq!(app.get("/v2/payments/merchants?keyword=_").await.ok()["pagination"]["total_count"], 0);
    assert_eq!(app.get("/v2/payments/merchants").await.ok()["pagination"]["total_count"], 2);
    let updated = app.put(&format!("/v2/payments/merchants/{id}"), Some(json!({"name": "Coffee Ltd"}))).await.ok();
    assert_eq!(updated["name"], "Coffee Ltd");
    assert_eq!(updated["developer_fee_rate"], "0.015");
    assert_eq!(app.get(&format!("/v2/payments/merchants/{id}")).await.ok()["name"], "Coffee Ltd");
    app.put("/v2/payments/merchants/M-none", Some(json!({"name": "x"}))).await.error(404, 40400);
    app.post("/v2/payments/merchants", json!({"name": ""})).await.error(400, 40000);
    app.post("/v2/payments/merchants", json!({"name": "x".repeat(129)})).await.error(400, 40000);
    app.post("/v2/payments/merchants", json!({"name": "x", "developer_fee_rate": "1.5"})).await.error(400, 40001);
    app.post("/v2/payments/merchants", json!({"name": "x", "wallet_setup": "Odd"})).await.error(400, 40000);
    app.post("/v2/payments/merchants", json!({})).await.error(400, 40000);
}

async fn orders_get_an_address_and_complete_when_paid(app: &TestApp) {
    let m = app.create_merchant("Shop").await;
    let created = app
        .post(
            "/v2/payments/orders",
            json!({"merchant_id": m, "psp_order_code": "P-1", "payable_currency": "TRON_USDT", "payable_amount": "12.345678",
                   "fee_amount": "0.345678", "merchant_order_code": "shop-1"}),
        )
        .await;
    assert_eq!(created.status.as_u16(), 201);
    let order = created.ok();
    assert_eq!(order["status"], "Pending");
    assert_eq!(order["exchange_rate"], "1");
    assert_eq!(order["chain_id"], "TRON");
    assert!(order["receive_address"].as_str().unwrap().starts_with('T'));
    let id = order["order_id"].as_str().unwrap();
    app.post(
        "/v2/payments/orders",
        json!({"merchant_id": m, "psp_order_code": "P-1", "payable_currency": "TRON_USDT",
        "payable_amount": "1", "fee_amount": "0"}),
    )
    .await
    .error(409, 40902);

    let tx = app.post(&format!("/v2/sandbox/orders/{id}/payments"), json!({})).await;
    assert_eq!(tx.status.as_u16(), 201);
    let tx = tx.ok();
    assert_eq!(tx["amount"], "12.345678");
    assert_eq!(tx["status"], "Pending", "submitted to the sandbox chain, not yet seen");
    let chain = app.sandbox("TRON");
    // First sight (one block): the order is Processing, nothing credited yet. Exactly one block is
    // mined, so the payment cannot reach its two confirmations while we look.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    chain.0.mine();
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        let o = app.get(&format!("/v2/payments/orders/{id}")).await.ok();
        if o["status"] == "Processing" {
            assert_eq!(o["transactions"][0]["status"], "Confirming");
            assert_eq!(app.merchant_balance(&m, "TRON_USDT").await["total_balance"], "0");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "order never seen paid: {o}");
    }
    let order = app.settle_payin(&chain, id, tx["tx_hash"].as_str().unwrap()).await;
    assert_eq!(order["status"], "Completed");
    assert_eq!(order["received_token_amount"], "12.345678");
    assert_eq!(order["transactions"].as_array().unwrap().len(), 1);
    assert_eq!(order["transactions"][0]["tx_hash"], tx["tx_hash"]);
    assert_eq!(order["transactions"][0]["from_address"], tx["from_address"], "the sender is recorded");
    assert_eq!(app.merchant_balance(&m, "TRON_USDT").await["total_balance"], "12");
    app.post(&format!("/v2/sandbox/orders/{id}/payments"), json!({})).await.error(409, 40901);

    let listed = app.get(&format!("/v2/payments/orders?merchant_id={m}&statuses=Completed")).await.ok();
    assert_eq!(listed["pagination"]["total_count"], 1);
    assert_eq!(listed["data"][0]["transactions"].as_array().unwrap().len(), 1);
    assert_eq!(app.get("/v2/payments/orders?psp_order_id=P-1").await.ok()["pagination"]["total_count"], 1);

    // Pricing in USD with a USD stablecoin needs no payable amount.
    let priced = app
        .post(
            "/v2/payments/orders",
            json!({"merchant_id": m, "psp_order_code": "P-2", "payable_currency": "SOL_USDC",
               "pricing_currency": "USD", "pricing_amount": "9.99", "fee_amount": "0"}),
        )
        .await
        .ok();
    assert_eq!(priced["payable_amount"], "9.99");
    for (body, status, code) in [
        (
            json!({"merchant_id": m, "psp_order_code": "P-3", "payable_currency": "ETH_USDT", "fee_amount": "0"}),
            400,
            40000,
        ),
        (
            json!({"merchant_id": m, "psp_order_code": "P-3", "payable_currency": "ETH_USDT", "payable_amount": "1", "fee_amount": "2"}),
            400,
            40001,
        ),
        (
            json!({"merchant_id": m, "psp_order_code": "P-3", "payable_currency": "ETH_USDT", "payable_amount": "1.0000001", "fee_amount": "0"}),
            400,
            40001,
        ),
        (
            json!({"merchant_id": m, "psp_order_code": "P-3", "payable_currency": "ETH_USDT", "payable_amount": "1", "fee_amount": "0", "expired_in": 0}),
            400,
            40000,
        ),
        (
            json!({"merchant_id": m, "psp_order_code": "P-3", "payable_currency": "ETH_USDT", "payable_amount": "1", "fee_amount": "0", "expired_in": 10801}),
            400,
            40000,
        ),
        (
            json!({"merchant_id": "M-none", "psp_order_code": "P-3", "payable_currency": "ETH_USDT", "payable_amount": "1", "fee_amount": "0"}),
            404,
            40400,
        ),
        (
            json!({"merchant_id": m, "psp_order_code": "P-3", "payable_currency": "XRP", "payable_amount": "1", "fee_amount": "0"}),
            400,
            40003,
        ),
    ] {
        let r = app.post("/v2/payments/orders", body.clone()).await;
        assert_eq!((r.status.as_u16(), r.body["error_code"].as_i64()), (status, Some(code)), "{body} -> {}", r.body);
    }
    app.post(&format!("/v2/sandbox/orders/{id}/payments"), json!({"from_address": "0x123"})).await.error(400, 40002);
}

async fn underpaid_orders_and_expired_orders(app: &TestApp) {
    let m = app.create_merchant("Shop").await;
    let order = app
        .post(
            "/v2/payments/orders",
            json!({"merchant_id": m, "psp_order_code": "U", "payable_currency": "ETH_USDC",
               "payable_amount": "10", "fee_amount": "1", "amount_tolerance": "0.5"}),
        )
        .await
        .ok();
    let id = order["order_id"].as_str().unwrap();
    let (_, order) = app.pay_in_sandbox(id, json!({"amount": "9"})).await;
    assert_eq!(order["status"], "Underpaid");
    // Within the tolerance of 0.5: complete.
    let (_, order) = app.pay_in_sandbox(id, json!({"amount": "0.6"})).await;
    assert_eq!(order["status"], "Completed");
    assert_eq!(order["received_token_amount"], "9.6");
    assert_eq!(app.merchant_balance(&m, "ETH_USDC").await["total_balance"], "8.6", "9.6 less the fee of 1");

    let order = app
        .post(
            "/v2/payments/orders",
            json!({"merchant_id": m, "psp_order_code": "E", "payable_currency": "ETH_USDC",
               "payable_amount": "10", "fee_amount": "0"}),
        )
        .await
        .ok();
    let id = order["order_id"].as_str().unwrap();
    let expired = app.put(&format!("/v2/payments/orders/{id}"), Some(json!({"expired": true}))).await.ok();
    assert_eq!(expired["status"], "Expired");
    app.post(&format!("/v2/sandbox/orders/{id}/payments"), json!({})).await.error(409, 40901);
    app.put(&format!("/v2/payments/orders/{id}"), Some(json!({"expired": true}))).await.error(409, 40901);
    app.put(&format!("/v2/payments/orders/{id}"), Some(json!({}))).await.error(400, 40000);

    // An order left to run out reads, and filters, as Expired without anyone touching it. Expiry is
    // kept in whole seconds, so `expired_in: 1` can lapse within milliseconds (at the next second):
    // 2 keeps the order Pending for at least a second, long enough to list it.
    let lapsing = app
        .post(
            "/v2/payments/orders",
            json!({"merchant_id": m, "psp_order_code": "L", "payable_currency": "ETH_USDC",
               "payable_amount": "10", "fee_amount": "0", "expired_in": 2}),
        )
        .await
        .ok();
    let lapsing_id = lapsing["order_id"].as_str().unwrap();
    let pending = app.get(&format!("/v2/payments/orders?merchant_id={m}&statuses=Pending")).await.ok();
    assert_eq!(pending["data"][0]["order_id"], lapsing_id);
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    assert_eq!(app.get(&format!("/v2/payments/orders/{lapsing_id}")).await.ok()["status"], "Expired");
    let expired = app.get(&format!("/v2/payments/orders?merchant_id={m}&statuses=Expired")).await.ok();
    assert_eq!(expired["pagination"]["total_count"], 2, "the one expired by PUT and the lapsed one");
    let pending = app.get(&format!("/v2/payments/orders?merchant_id={m}&statuses=Pending")).await.ok();
    assert_eq!(pending["pagination"]["total_count"], 0);
    app.post(&format!("/v2/sandbox/orders/{lapsing_id}/payments"), json!({})).await.error(409, 40901);
}

async fn eighteen_decimal_tokens_keep_every_base_unit(app: &TestApp) {
    let m = app.create_merchant("Shop").await;
    let order = app
        .post(
            "/v2/payments/orders",
            json!({"merchant_id": m, "psp_order_code": "B", "payable_currency": "BSC_USDT",
               "payable_amount": "123456789.123456789123456789", "fee_amount": "0.000000000000000001"}),
        )
        .await
        .ok();
    let id = order["order_id"].as_str().unwrap();
    app.pay_in_sandbox(id, json!({})).await;
    let balance = app.merchant_balance(&m, "BSC_USDT").await;
    assert_eq!(balance["total_balance"], "123456789.123456789123456788");
    let psp = app.get("/v2/payments/balance/psp?token_id=BSC_USDT").await.ok();
    assert_eq!(psp["total_balance"], "0.000000000000000001");
}
