use serde_json::json;

use crate::both_backends;
use crate::helpers::{TestApp, USER_ADDRESS};

both_backends!(balance_changes_follow_the_ledger, merchant_balances_need_a_filter_and_show_zero_lines);

async fn balance_changes_follow_the_ledger(app: &TestApp) {
    let m = app.create_merchant("Shop").await;
    let order = app.paid_order(&m, "20", "2").await;
    app.post(
        "/v2/payments/refunds",
        json!({"request_id": "b", "order_id": order["order_id"], "payable_amount": "5", "token_id": "ETH_USDT",
               "refund_type": "Merchant", "to_address": USER_ADDRESS, "charge_merchant_fee": true, "merchant_fee_amount": "1"}),
    )
    .await
    .ok();
    let changes = app.get(&format!("/v2/payments/balance_changes?source_account={m}&token_id=ETH_USDT")).await.ok();
    let rows = changes["data"].as_array().unwrap();
    let summary: Vec<[String; 6]> = rows
        .iter()
        .map(|c| {
            ["source_type", "reason", "flow_direction", "amount", "balance_before", "balance_after"]
                .map(|k| c[k].as_str().unwrap().to_owned())
        })
        .collect();
    let owned = |row: [&str; 6]| row.map(str::to_owned);
    // The fee's posting is Cobo's RefundOut (the SDK knows no RefundFee); ebb's reason says which.
    assert_eq!(
        summary,
        vec![
            owned(["RefundOut", "RefundFee", "out", "1", "13", "12"]),
            owned(["RefundOut", "RefundOut", "out", "5", "18", "13"]),
            owned(["OrderIn", "OrderIn", "in", "18", "0", "18"]),
        ]
    );
    let refund_out =
        app.get(&format!("/v2/payments/balance_changes?source_account={m}&source_type=RefundOut")).await.ok();
    assert_eq!(refund_out["pagination"]["total_count"], 2, "both of the refund's postings are RefundOut");
    let payout = app.get(&format!("/v2/payments/balance_changes?source_account={m}&source_type=Payout")).await.ok();
    assert_eq!(payout["pagination"]["total_count"], 0);
    app.get(&format!("/v2/payments/balance_changes?source_account={m}&source_type=RefundFee")).await.error(400, 40000);
    assert_eq!(rows[2]["amount_raw"], "18000000");
    let outs = app.get(&format!("/v2/payments/balance_changes?source_account={m}&flow_direction=out")).await.ok();
    assert_eq!(outs["pagination"]["total_count"], 2);
    let by_source = app
        .get(&format!(
            "/v2/payments/balance_changes?source_account={m}&source_type=OrderIn&source_id={}",
            order["order_id"].as_str().unwrap()
        ))
        .await
        .ok();
    assert_eq!(by_source["pagination"]["total_count"], 1);
    let dev = app.get("/v2/payments/balance_changes?source_account=developer").await.ok();
    assert_eq!(dev["data"][0]["amount"], "2");
    app.get(&format!("/v2/payments/balance_changes?source_account={m}&source_id=x")).await.error(400, 40000);
    app.get(&format!("/v2/payments/balance_changes?source_account={m}&flow_direction=sideways"))
        .await
        .error(400, 40000);
    app.get("/v2/payments/balance_changes").await.error(400, 40000);
}

async fn merchant_balances_need_a_filter_and_show_zero_lines(app: &TestApp) {
    let a = app.create_merchant("A").await;
    let b = app.create_merchant("B").await;
    app.paid_order(&a, "3.5", "0").await;
    app.get("/v2/payments/balance/merchants").await.error(400, 40000);
    let both = app.get(&format!("/v2/payments/balance/merchants?merchant_ids={a},{b}&token_id=ETH_USDT")).await.ok();
    let data = both["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let of = |m: &str| data.iter().find(|x| x["merchant_id"] == m).unwrap().clone();
    assert_eq!(of(&a)["total_balance"], "3.5");
    assert_eq!(of(&a)["total_received_amount"], "3.5");
    assert_eq!(of(&b)["total_balance"], "0");
    let by_token = app.get("/v2/payments/balance/merchants?token_id=ETH_USDT").await.ok();
    assert_eq!(by_token["data"].as_array().unwrap().len(), 1);
    app.get("/v2/payments/balance/merchants?token_id=NOPE").await.error(400, 40003);
    app.get("/v2/payments/balance/psp").await.error(400, 40000);
    let psp = app.get("/v2/payments/balance/psp?token_id=BSC_USDT").await.ok();
    assert_eq!(psp["total_balance"], "0");
}
