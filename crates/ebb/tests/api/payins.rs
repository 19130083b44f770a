//! The pay-in watcher, one body per behaviour, run on the sandbox chain here and on anvil in `evm.rs`.

use std::time::{Duration, Instant};

use alloy::primitives::U256;
use serde_json::{json, Value};

use crate::both_backends_paying;
use crate::chains::TestChain;
use crate::helpers::TestApp;
use crate::payouts::{base_units, create_refund};

both_backends_paying!(
    sandbox_refunds_the_payer_exactly,
    sandbox_never_counts_a_rescanned_payin_twice,
    sandbox_never_credits_a_payin_reorged_out,
    sandbox_extra_payments_are_credited_and_never_stall_the_chain,
    sandbox_another_token_is_credited_in_its_own_token,
    sandbox_an_expired_order_is_stored_expired_and_takes_late_payments,
    sandbox_an_order_is_read_whole_while_payments_are_credited,
);

/// A read of an order sees its totals and its transactions as of one moment: while thirty payments
/// are confirmed one after another, every read's `received_token_amount` is the sum of its `Completed`
/// transactions. (Read as two statements, the row before a credit commits and the transactions after
/// it, an order once showed a confirmed payment that its total did not count.)
async fn sandbox_an_order_is_read_whole_while_payments_are_credited(app: &TestApp) {
    const PAYMENTS: u128 = 30;
    let chain = app.sandbox("ETH");
    let m = app.create_merchant("Shop").await;
    let order = app
        .post(
            "/v2/payments/orders",
            json!({"merchant_id": m, "psp_order_code": "whole", "payable_currency": "ETH_USDT",
                   "payable_amount": "1000", "fee_amount": "0"}),
        )
        .await
        .ok();
    let (id, address) = (order["order_id"].as_str().unwrap(), order["receive_address"].as_str().unwrap());
    let done = std::sync::atomic::AtomicBool::new(false);
    let pay = async {
        for _ in 0..PAYMENTS {
            chain.send(address, "ETH_USDT", U256::from(base_units("1"))).await;
            chain.mine().await;
        }
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            chain.mine().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let read = async {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut reads = 0;
        loop {
            let o = app.get(&format!("/v2/payments/orders/{id}")).await.ok();
            let completed: u128 = o["transactions"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|t| t["status"] == "Completed")
                .map(|t| base_units(t["amount"].as_str().unwrap()))
                .sum();
            assert_eq!(base_units(o["received_token_amount"].as_str().unwrap()), completed, "read {reads}: {o}");
            reads += 1;
            if completed == PAYMENTS * base_units("1") {
                break;
            }
            assert!(Instant::now() < deadline, "the payments were not all credited: {o}");
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    tokio::join!(pay, read);
}

async fn sandbox_extra_payments_are_credited_and_never_stall_the_chain(app: &TestApp) {
    extra_payments_are_credited_and_never_stall_the_chain(app, &app.sandbox("ETH")).await;
}

async fn sandbox_another_token_is_credited_in_its_own_token(app: &TestApp) {
    another_token_is_credited_in_its_own_token(app, &app.sandbox("ETH")).await;
}

/// Mines until the order's transactions satisfy `check` (10 s at most); returns the order.
async fn mine_until_order(
    app: &TestApp,
    chain: &dyn TestChain,
    id: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = app.get(&format!("/v2/payments/orders/{id}")).await.ok();
        if check(&o) {
            return o;
        }
        assert!(Instant::now() < deadline, "the order never got {what}: {o}");
        chain.mine().await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
}

fn tx_statuses(order: &Value) -> Vec<String> {
    order["transactions"].as_array().unwrap().iter().map(|t| t["status"].as_str().unwrap().to_owned()).collect()
}

async fn reasons_of(app: &TestApp, merchant: &str) -> Vec<(String, String, String)> {
    let changes = app.get(&format!("/v2/payments/balance_changes?source_account={merchant}&limit=50")).await.ok();
    changes["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["source_type"].as_str().unwrap().into(),
                c["reason"].as_str().unwrap().into(),
                c["amount"].as_str().unwrap().into(),
            )
        })
        .collect()
}

/// Money that reaches an order's address after the order is paid is credited, never stuck: a second
/// transfer before the first is confirmed, a third after the order completed (both late payments,
/// counted in `received_token_amount`), and an amount beyond the ledger's range (held with its
/// reason). After each, a new order on the chain still completes.
pub async fn extra_payments_are_credited_and_never_stall_the_chain(app: &TestApp, chain: &dyn TestChain) {
    let m = app.create_merchant("Shop").await;
    let order = app
        .post(
            "/v2/payments/orders",
            json!({"merchant_id": m, "psp_order_code": "extra", "payable_currency": "ETH_USDT",
              "payable_amount": "10", "fee_amount": "1"}),
        )
        .await
        .ok();
    let id = order["order_id"].as_str().unwrap();
    let address = order["receive_address"].as_str().unwrap();
    chain.pay_order(app, &order).await;
    chain.send(address, "ETH_USDT", U256::from(1u8)).await;
    let o = mine_until_order(app, chain, id, "both pay-ins credited", |o| tx_statuses(o) == ["Completed", "Completed"])
        .await;
    assert_eq!(
        (o["status"].as_str(), o["received_token_amount"].as_str()),
        (Some("Completed"), Some("10.000001")),
        "{o}"
    );
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "9.000001");
    app.paid_order_on(chain, &m, "1", "0").await;

    chain.send(address, "ETH_USDT", U256::from(base_units("2"))).await;
    let o = mine_until_order(app, chain, id, "the late payment", |o| {
        tx_statuses(o).len() == 3 && tx_statuses(o)[2] == "Completed"
    })
    .await;
    assert_eq!(
        (o["status"].as_str(), o["received_token_amount"].as_str()),
        (Some("Completed"), Some("12.000001")),
        "{o}"
    );
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "12.000001");
    app.paid_order_on(chain, &m, "1", "0").await;

    chain.send(address, "ETH_USDT", chain.absurd_amount()).await;
    let o = mine_until_order(app, chain, id, "the absurd pay-in held", |o| {
        tx_statuses(o).len() == 4 && tx_statuses(o)[3] == "Rejected"
    })
    .await;
    let held = &o["transactions"][3];
    assert!(held["failed_reason"].as_str().unwrap().starts_with("held:"), "{held}");
    assert_eq!(o["received_token_amount"], "12.000001", "nothing of it credited");
    let later = app.paid_order_on(chain, &m, "5", "0").await;
    assert_eq!(later["status"], "Completed");

    let reasons = reasons_of(app, &m).await;
    let late: Vec<_> = reasons.iter().filter(|r| r.0 == "LatePayment").map(|r| r.2.as_str()).collect();
    // The first two may confirm in either order (on the sandbox they share a block): whichever comes
    // second after the order completed is late, or the 1 unit completes nothing and pays the fee.
    assert!(late == ["2", "0.000001"] || late == ["2"], "{reasons:?}");
    assert!(reasons.iter().all(|r| ["OrderIn", "LatePayment"].contains(&r.0.as_str())), "{reasons:?}");
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("ebb_payins_held_total 1"), "{metrics}");
    let events: Vec<String> =
        sqlx::query_scalar("SELECT event_type FROM events WHERE kind = 'transaction' ORDER BY seq")
            .fetch_all(app.store.pool())
            .await
            .unwrap();
    assert_eq!(events.iter().filter(|e| *e == "payment.transaction.late").count(), late.len(), "{events:?}");
    assert_eq!(events.iter().filter(|e| *e == "payment.transaction.held").count(), 1, "{events:?}");
}

/// A token other than the order's that reaches its address is credited to the merchant in that token
/// (`UnexceptedIn`), never converted into the order's token; the order is still payable.
pub async fn another_token_is_credited_in_its_own_token(app: &TestApp, chain: &dyn TestChain) {
    let m = app.create_merchant("Shop").await;
    let order = app
        .post(
            "/v2/payments/orders",
            json!({"merchant_id": m, "psp_order_code": "usdc", "payable_currency": "ETH_USDT",
              "payable_amount": "10", "fee_amount": "0"}),
        )
        .await
        .ok();
    let id = order["order_id"].as_str().unwrap();
    let three_usdc = U256::from(3u8) * U256::from(10u8).pow(U256::from(chain.usdc_decimals()));
    chain.send(order["receive_address"].as_str().unwrap(), "ETH_USDC", three_usdc).await;
    let o = mine_until_order(app, chain, id, "the USDC pay-in", |o| tx_statuses(o) == ["Completed"]).await;
    assert_eq!((o["status"].as_str(), o["received_token_amount"].as_str()), (Some("Pending"), Some("0")), "{o}");
    assert_eq!(o["transactions"][0]["token_id"], "ETH_USDC");
    assert_eq!(o["transactions"][0]["amount"], "3");
    assert_eq!(app.merchant_balance(&m, "ETH_USDC").await["total_balance"], "3");
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "0");
    assert_eq!(reasons_of(app, &m).await, [("UnexceptedIn".into(), "UnexpectedIn".into(), "3".into())]);
    let tx_hash = chain.pay_order(app, &o).await;
    let paid = app.settle_payin(chain, id, &tx_hash).await;
    assert_eq!((paid["status"].as_str(), paid["received_token_amount"].as_str()), (Some("Completed"), Some("10")));
}

/// An order whose time runs out is stored `Expired` by the watcher (with its event) without anyone
/// reading it; a payment after that is a late payment (the order stays `Expired`, the merchant is
/// credited and told); once its watch window has passed, its address is no longer scanned.
async fn sandbox_an_expired_order_is_stored_expired_and_takes_late_payments(app: &TestApp) {
    let chain = app.sandbox("ETH");
    let m = app.create_merchant("Shop").await;
    let order = app
        .post(
            "/v2/payments/orders",
            json!({"merchant_id": m, "psp_order_code": "lapse", "payable_currency": "ETH_USDT",
              "payable_amount": "10", "fee_amount": "0", "expired_in": 1}),
        )
        .await
        .ok();
    let id = order["order_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stored = app.store.order(&id).await.unwrap().unwrap();
        if stored.status == ebb_core::OrderStatus::Expired {
            break;
        }
        assert!(Instant::now() < deadline, "the order was never stored Expired: {stored:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let order_events: Vec<String> =
        sqlx::query_scalar("SELECT snapshot FROM events WHERE subject_id = $1 AND kind = 'order' ORDER BY seq")
            .bind(&id)
            .fetch_all(app.store.pool())
            .await
            .unwrap();
    assert!(order_events.last().unwrap().contains("\"status\":\"Expired\""), "{order_events:?}");
    let address = order["receive_address"].as_str().unwrap();
    chain.send(address, "ETH_USDT", U256::from(base_units("10"))).await;
    let o = mine_until_order(app, &chain, &id, "the late payment", |o| tx_statuses(o) == ["Completed"]).await;
    assert_eq!((o["status"].as_str(), o["received_token_amount"].as_str()), (Some("Expired"), Some("10")), "{o}");
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "10");
    assert_eq!(reasons_of(app, &m).await[0].0, "LatePayment");
    // Past its watch window the address costs the watcher nothing: a transfer is not seen.
    sqlx::query("UPDATE orders SET watch_until = 0 WHERE order_id = $1")
        .bind(&id)
        .execute(app.store.pool())
        .await
        .unwrap();
    chain.send(address, "ETH_USDT", U256::from(1u8)).await;
    for _ in 0..5 {
        chain.mine().await;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let o = app.get(&format!("/v2/payments/orders/{id}")).await.ok();
    assert_eq!(tx_statuses(&o).len(), 1, "{o}");
}

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
    ebb_app::payins::set_cursor(&app.store, "ETH", 0).await.unwrap();
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
