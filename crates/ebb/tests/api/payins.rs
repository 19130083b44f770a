//! The pay-in watcher, one body per behaviour, run on the sandbox chain here and on anvil in `evm.rs`.

use serde_json::json;

use crate::both_backends_paying;
use crate::chains::TestChain;
use crate::helpers::TestApp;
use crate::payouts::{base_units, create_refund};

both_backends_paying!(
    sandbox_refunds_the_payer_exactly,
    sandbox_never_counts_a_rescanned_payin_twice,
    sandbox_never_credits_a_payin_reorged_out,
);

async fn sandbox_refunds_the_payer_exactly(app: &TestApp) {
    refunds_the_payer_exactly(app, &app.sandbox("ETH")).await;
}

async fn sandbox_never_counts_a_rescanned_payin_twice(app: &TestApp) {
    never_counts_a_rescanned_payin_twice(app, &app.sandbox("ETH")).await;
}

async fn sandbox_never_credits_a_payin_reorged_out(app: &TestApp) {
    never_credits_a_payin_reorged_out(app, &app.sandbox("ETH")).await;
}

/// A customer pays an order on chain; the order completes with the sender recorded; a refund to that
/// sender completes and the sender's token balance rises by exactly the refund.
pub async fn refunds_the_payer_exactly(app: &TestApp, chain: &dyn TestChain) {
    let m = app.create_merchant("Shop").await;
    let order = app.paid_order_on(chain, &m, "100", "1").await;
    assert_eq!(order["status"], "Completed");
    assert_eq!(order["received_token_amount"], "100");
    let payer = order["transactions"][0]["from_address"].as_str().unwrap().to_owned();
    assert!(!payer.is_empty());
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "99");
    let before = chain.token_balance(&payer).await;
    let refund = create_refund(app, &m, "to-payer", "40", &payer, None).await;
    let id = refund["refund_id"].as_str().unwrap();
    let done = app.mine_until(chain, id, "Completed").await;
    assert_eq!(done["to_address"], payer.as_str());
    assert_eq!(chain.token_balance(&payer).await - before, base_units("40"));
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "59");
}

/// Scanning the same blocks again (a restart from an old cursor) finds the pay-in and ignores it.
pub async fn never_counts_a_rescanned_payin_twice(app: &TestApp, chain: &dyn TestChain) {
    let m = app.create_merchant("Shop").await;
    let order = app.paid_order_on(chain, &m, "10", "0").await;
    let id = order["order_id"].as_str().unwrap();
    app.store.set_chain_cursor("ETH", 0).await.unwrap();
    for _ in 0..5 {
        chain.mine().await;
        tokio::time::sleep(std::time::Duration::from_millis(60)).await;
    }
    let cursor = app.store.chain_cursor("ETH").await.unwrap().unwrap();
    assert!(cursor > 5, "the watcher scanned again (cursor {cursor})");
    let order = app.get(&format!("/v2/payments/orders/{id}")).await.ok();
    assert_eq!(order["transactions"].as_array().unwrap().len(), 1, "{order}");
    assert_eq!(order["received_token_amount"], "10");
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "10");
}

/// A transfer seen in a block that a reorg removes is never credited; the order is payable again.
pub async fn never_credits_a_payin_reorged_out(app: &TestApp, chain: &dyn TestChain) {
    let m = app.create_merchant("Shop").await;
    let order = app
        .post(
            "/v2/payments/orders",
            json!({"merchant_id": m, "psp_order_code": "reorg", "payable_currency": "ETH_USDT",
                   "payable_amount": "10", "fee_amount": "0"}),
        )
        .await
        .ok();
    let id = order["order_id"].as_str().unwrap();
    chain.pay_order(app, &order).await;
    chain.mine().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let o = app.get(&format!("/v2/payments/orders/{id}")).await.ok();
        if o["status"] == "Processing" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the pay-in was never seen: {o}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    chain.reorg_last_block().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let order = loop {
        chain.mine().await;
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
        let o = app.get(&format!("/v2/payments/orders/{id}")).await.ok();
        if o["transactions"][0]["status"] == "Failed" && o["status"] == "Pending" {
            break o;
        }
        assert!(std::time::Instant::now() < deadline, "the reorged pay-in was not dropped: {o}");
    };
    assert_eq!(order["received_token_amount"], "0");
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "0");
}
