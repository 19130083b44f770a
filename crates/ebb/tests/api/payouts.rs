//! The payout executor: refunds reach the chain exactly once, the ledger settles or releases, and a
//! payout that cannot go says why. The bodies taking a `&dyn TestChain` run on the sandbox chain here
//! and on anvil in `evm.rs`.

use ebb_chain::sandbox::{PARTIAL_ADDRESS, PARTIAL_REASON, REVERT_ADDRESS, REVERT_REASON, STUCK_ADDRESS};
use ebb_core::Amount;
use serde_json::{json, Value};

use crate::both_backends_paying;
use crate::chains::TestChain;
use crate::helpers::{TestApp, USER_ADDRESS};

both_backends_paying!(
    sandbox_pays_a_refund_once_and_settles_the_ledger,
    sandbox_holds_payouts_until_the_hot_wallet_is_funded,
    sandbox_broadcasts_a_payout_dropped_by_a_reorg_again,
    sandbox_pays_many_refunds_with_consecutive_nonces,
    sandbox_revert_address_fails_the_refund_and_releases_the_funds,
    sandbox_stuck_address_keeps_the_refund_processing,
    sandbox_partial_address_pays_half_and_releases_the_rest,
    an_address_changed_while_the_payout_is_prepared_is_never_paid,
);

/// While another transaction holds the hot wallet's nonce row (another ebb process storing a payout),
/// the executor waits for it on one pool connection, not on one per payable refund: the pool is the
/// API's too, and refunds queued for payout must not take all of it (the soak saw every request stall
/// behind payout starts waiting for this lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payout_starts_wait_for_the_nonce_lock_on_one_connection_on_postgres() {
    let Some(app) = crate::helpers::spawn_postgres_app_with(crate::helpers::Options::paying()).await else { return };
    let chain = app.sandbox("ETH");
    let m = app.create_merchant("Shop").await;
    app.paid_order_on(&chain, &m, "100", "0").await;
    // A first payout creates the wallet's nonce row.
    let first = create_refund(&app, &m, "first", "1", USER_ADDRESS, None).await;
    app.mine_until(&chain, first["refund_id"].as_str().unwrap(), "Completed").await;

    // Twelve refunds wait for an empty hot wallet, so that one tick finds them all payable at once.
    let funded = chain.token_balance(&chain.hot_wallet()).await;
    chain.set_hot_wallet_tokens(0).await;
    let mut ids = Vec::new();
    for i in 0..12 {
        let r = create_refund(&app, &m, &format!("queued-{i}"), "1", USER_ADDRESS, None).await;
        ids.push(r["refund_id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        app.wait_refund(id, "a hold reason", |r| r.get("hold_reason").is_some()).await;
    }
    let mut holder = app.store.pool().acquire().await.unwrap();
    sqlx::query("BEGIN").execute(&mut *holder).await.unwrap();
    sqlx::query("SELECT next_nonce FROM chain_nonces FOR UPDATE").fetch_all(&mut *holder).await.unwrap();
    chain.set_hot_wallet_tokens(funded).await;
    let waiting = || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query LIKE '%chain_nonces%'",
        )
        .fetch_one(app.store.pool())
        .await
        .unwrap();
        n
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while waiting().await == 0 {
        assert!(std::time::Instant::now() < deadline, "the executor never reached the nonce lock");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Give every payable refund time to reach the lock; the most seen waiting at once counts.
    let mut most = 0;
    for _ in 0..25 {
        most = most.max(waiting().await);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(most, 1, "payout stores waiting for the wallet's nonce lock at once");
    // The API still answers while the executor waits.
    app.get(&format!("/v2/payments/refunds/{}", ids[0])).await.ok();

    sqlx::query("ROLLBACK").execute(&mut *holder).await.unwrap();
    drop(holder);
    for id in &ids {
        app.mine_until(&chain, id, "Completed").await;
    }
    let nonces: Vec<i64> =
        sqlx::query_scalar("SELECT nonce FROM payment_transactions WHERE direction = 'out' ORDER BY nonce")
            .fetch_all(app.store.pool())
            .await
            .unwrap();
    assert_eq!(nonces, (nonces[0]..nonces[0] + 13).collect::<Vec<i64>>(), "one nonce each, none skipped");
    app.finish().await;
}

/// The refund's address changes between the executor reading the refund (and preparing its transfer)
/// and storing the signed payout: the attempt is abandoned before signing, and the refund is paid to
/// the new address only, once.
async fn an_address_changed_while_the_payout_is_prepared_is_never_paid(app: &TestApp) {
    const NEW_ADDRESS: &str = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359";
    let chain = app.sandbox("ETH");
    let m = app.create_merchant("Shop").await;
    app.paid_order(&m, "10", "0").await;
    let (store, engine, merchant, changed) = (
        app.store.clone(),
        app.engine.clone(),
        m.clone(),
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    let fired = changed.clone();
    let hook = ebb_worker::failpoint::set_hook(
        "payout.before_store",
        std::sync::Arc::new(move |refund_id: String| {
            let (store, engine, merchant, changed) = (store.clone(), engine.clone(), merchant.clone(), changed.clone());
            Box::pin(async move {
                let Ok(Some(r)) = store.refund(&refund_id, None).await else { return };
                if r.merchant_id.as_deref() != Some(merchant.as_str())
                    || changed.swap(true, std::sync::atomic::Ordering::SeqCst)
                {
                    return;
                }
                let operator = ebb_app::Actor::psp("test");
                let parse = |t: &ebb_core::Token| {
                    ebb_core::Address::parse(t.family, NEW_ADDRESS)
                        .map_err(|e| ebb_app::AppError::Invalid(e.to_string()))
                };
                ebb_app::refunds::set_address(&engine, &operator, &refund_id, parse)
                    .await
                    .expect("the address changes while Pending");
            })
        }),
    );
    let (old_before, new_before) = (chain.token_balance(USER_ADDRESS).await, chain.token_balance(NEW_ADDRESS).await);
    let refund = create_refund(app, &m, "moving", "2", USER_ADDRESS, None).await;
    let id = refund["refund_id"].as_str().unwrap();
    let done = app.mine_until(&chain, id, "Completed").await;
    ebb_worker::failpoint::clear_hook(hook);
    assert!(fired.load(std::sync::atomic::Ordering::SeqCst), "the hook changed the address inside the window");
    assert_eq!(done["to_address"], NEW_ADDRESS);
    let txs = done["transactions"].as_array().unwrap();
    assert_eq!(txs.len(), 1, "{done}");
    assert_eq!(txs[0]["to_address"], NEW_ADDRESS);
    assert_eq!(chain.token_balance(USER_ADDRESS).await, old_before, "nothing went to the old address");
    assert_eq!(chain.token_balance(NEW_ADDRESS).await - new_before, base_units("2"));
}

async fn sandbox_pays_a_refund_once_and_settles_the_ledger(app: &TestApp) {
    pays_a_refund_once_and_settles_the_ledger(app, &app.sandbox("ETH")).await;
}

async fn sandbox_holds_payouts_until_the_hot_wallet_is_funded(app: &TestApp) {
    holds_payouts_until_the_hot_wallet_is_funded(app, &app.sandbox("ETH")).await;
}

async fn sandbox_broadcasts_a_payout_dropped_by_a_reorg_again(app: &TestApp) {
    broadcasts_a_payout_dropped_by_a_reorg_again(app, &app.sandbox("ETH")).await;
}

async fn sandbox_pays_many_refunds_with_consecutive_nonces(app: &TestApp) {
    pays_many_refunds_with_consecutive_nonces(app, &app.sandbox("ETH"), 20).await;
}

pub async fn create_refund(
    app: &TestApp,
    merchant: &str,
    request_id: &str,
    amount: &str,
    to: &str,
    fee: Option<&str>,
) -> Value {
    let mut body = json!({"request_id": request_id, "merchant_id": merchant, "payable_amount": amount,
                          "token_id": "ETH_USDT", "refund_type": "Merchant", "to_address": to});
    if let Some(fee) = fee {
        body["charge_merchant_fee"] = json!(true);
        body["merchant_fee_amount"] = json!(fee);
        body["merchant_fee_token_id"] = json!("ETH_USDT");
    }
    app.post("/v2/payments/refunds", body).await.ok()
}

pub fn base_units(decimal: &str) -> u128 {
    Amount::parse_decimal(decimal, 6, 6).unwrap().base_units()
}

async fn psp_balance(app: &TestApp) -> String {
    app.get("/v2/payments/balance/psp?token_id=ETH_USDT").await.ok()["total_balance"].as_str().unwrap().to_owned()
}

/// Returns the refund's id.
pub async fn pays_a_refund_once_and_settles_the_ledger(app: &TestApp, chain: &dyn TestChain) -> String {
    let m = app.create_merchant("Shop").await;
    app.paid_order_on(chain, &m, "10", "0").await;
    let before = chain.token_balance(USER_ADDRESS).await;
    let r = create_refund(app, &m, "pay-1", "2.5", USER_ADDRESS, Some("0.5")).await;
    let id = r["refund_id"].as_str().unwrap().to_owned();
    // The executor signs, stores and broadcasts: Processing, with the transaction before it is mined.
    let processing = app.wait_refund(&id, "Processing", |r| r["status"] == "Processing").await;
    let leg = &processing["transactions"][0];
    assert_eq!(leg["status"], "Broadcasting");
    assert_eq!(leg["from_address"], chain.hot_wallet());
    assert_eq!(leg["to_address"], USER_ADDRESS);
    assert_eq!(leg["amount"], "2.5");
    let hash = leg["tx_hash"].as_str().unwrap().to_owned();

    let done = app.mine_until(chain, &id, "Completed").await;
    let legs = done["transactions"].as_array().unwrap();
    assert_eq!(legs.len(), 1, "{done}");
    assert_eq!((legs[0]["status"].as_str(), legs[0]["tx_hash"].as_str()), (Some("Completed"), Some(hash.as_str())));
    assert!(done.get("hold_reason").is_none());
    // On chain: the customer got exactly the refund amount, once.
    assert_eq!(chain.token_balance(USER_ADDRESS).await - before, base_units("2.5"));
    // In the ledger: 10 − 2.5 − 0.5 fee left with the merchant; the fee reached the PSP at payout.
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "7");
    assert_eq!(psp_balance(app).await, "0.5");
    app.put(&format!("/v2/payments/refunds/{id}/cancel"), None).await.error(409, 40901);
    let changes = app.get("/v2/payments/balance_changes?source_account=developer&token_id=ETH_USDT").await.ok();
    let rows = changes["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{changes}");
    assert_eq!(
        (
            rows[0]["source_type"].as_str(),
            rows[0]["reason"].as_str(),
            rows[0]["flow_direction"].as_str(),
            rows[0]["amount"].as_str()
        ),
        (Some("RefundOut"), Some("RefundFee"), Some("in"), Some("0.5"))
    );
    id
}

pub async fn holds_payouts_until_the_hot_wallet_is_funded(app: &TestApp, chain: &dyn TestChain) {
    let wallet = chain.hot_wallet();
    let wallet_before = chain.token_balance(&wallet).await;
    chain.set_hot_wallet_tokens(base_units("1")).await;
    let m = app.create_merchant("Shop").await;
    app.paid_order_on(chain, &m, "10", "0").await;
    let r = create_refund(app, &m, "held", "3", USER_ADDRESS, None).await;
    let id = r["refund_id"].as_str().unwrap();
    let held = app.wait_refund(id, "a hold reason", |r| r.get("hold_reason").is_some()).await;
    assert_eq!(held["status"], "Pending");
    let reason = held["hold_reason"].as_str().unwrap();
    assert!(reason.contains(&wallet) && reason.contains("3000000") && reason.contains("fund it"), "{reason}");
    assert_eq!(held["transactions"], json!([]), "nothing was signed");
    // Still cancellable while held.
    let other = create_refund(app, &m, "held-2", "1.5", USER_ADDRESS, None).await;
    let other_id = other["refund_id"].as_str().unwrap();
    app.wait_refund(other_id, "a hold reason", |r| r.get("hold_reason").is_some()).await;
    app.put(&format!("/v2/payments/refunds/{other_id}/cancel"), None).await.ok();

    chain.set_hot_wallet_tokens(wallet_before).await;
    let done = app.mine_until(chain, id, "Completed").await;
    assert!(done.get("hold_reason").is_none(), "{done}");
    assert_eq!(chain.token_balance(&wallet).await, wallet_before - base_units("3"));
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "7");
}

pub async fn broadcasts_a_payout_dropped_by_a_reorg_again(app: &TestApp, chain: &dyn TestChain) {
    let m = app.create_merchant("Shop").await;
    app.paid_order_on(chain, &m, "10", "0").await;
    let before = chain.token_balance(USER_ADDRESS).await;
    let r = create_refund(app, &m, "reorg", "4", USER_ADDRESS, None).await;
    let id = r["refund_id"].as_str().unwrap();
    let processing = app.wait_refund(id, "Processing", |r| r["status"] == "Processing").await;
    let hash = processing["transactions"][0]["tx_hash"].as_str().unwrap().to_owned();
    // Mined once (1 of 2 confirmations): the executor sees it Confirming.
    chain.mine().await;
    app.wait_refund(id, "Confirming", |r| r["transactions"][0]["status"] == "Confirming").await;
    // The block goes away, and the transaction with it.
    chain.reorg_last_block().await;
    assert_eq!(chain.token_balance(USER_ADDRESS).await, before);
    let done = app.mine_until(chain, id, "Completed").await;
    let legs = done["transactions"].as_array().unwrap();
    assert_eq!(legs.len(), 1, "one leg, never a second signature: {done}");
    assert_eq!(legs[0]["tx_hash"], hash.as_str(), "the stored bytes were broadcast again");
    assert_eq!(chain.token_balance(USER_ADDRESS).await - before, base_units("4"));
}

pub async fn pays_many_refunds_with_consecutive_nonces(app: &TestApp, chain: &dyn TestChain, n: i64) {
    let m = app.create_merchant("Shop").await;
    app.paid_order_on(chain, &m, "1000", "0").await;
    let before = chain.token_balance(USER_ADDRESS).await;
    let mut ids = Vec::new();
    for i in 0..n {
        let r = create_refund(app, &m, &format!("n-{i}"), "1.25", USER_ADDRESS, None).await;
        ids.push(r["refund_id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        app.mine_until(chain, id, "Completed").await;
    }
    assert_eq!(chain.token_balance(USER_ADDRESS).await - before, n as u128 * base_units("1.25"));
    let nonces: Vec<i64> =
        sqlx::query_scalar("SELECT nonce FROM payment_transactions WHERE direction = 'out' ORDER BY nonce")
            .fetch_all(app.store.pool())
            .await
            .unwrap();
    let first = nonces[0];
    assert_eq!(nonces, (first..first + n).collect::<Vec<i64>>());
    let left = Amount::from_base_units(base_units("1000") - n as u128 * base_units("1.25"));
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], left.to_decimal_string(6));
}

async fn sandbox_revert_address_fails_the_refund_and_releases_the_funds(app: &TestApp) {
    let chain = app.sandbox("ETH");
    let m = app.create_merchant("Shop").await;
    let order = app.paid_order(&m, "10", "0").await;
    let refund = |request_id: &str, to: &str| {
        json!({"request_id": request_id, "merchant_id": m, "order_id": order["order_id"], "payable_amount": "10",
               "token_id": "ETH_USDT", "refund_type": "Merchant", "to_address": to})
    };
    let r = app.post("/v2/payments/refunds", refund("rev", REVERT_ADDRESS)).await.ok();
    let id = r["refund_id"].as_str().unwrap();
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "0");
    let failed = app.mine_until(&chain, id, "Failed").await;
    assert_eq!(failed["failed_reason"], REVERT_REASON);
    assert_eq!(failed["transactions"][0]["status"], "Failed");
    assert_eq!(failed["transactions"][0]["failed_reason"], REVERT_REASON);
    // Released: the balance is back and the order can be refunded in full again.
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "10");
    let again = app.post("/v2/payments/refunds", refund("rev-2", USER_ADDRESS)).await.ok();
    app.mine_until(&chain, again["refund_id"].as_str().unwrap(), "Completed").await;
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "0");
}

async fn sandbox_stuck_address_keeps_the_refund_processing(app: &TestApp) {
    let chain = app.sandbox("ETH");
    let m = app.create_merchant("Shop").await;
    app.paid_order(&m, "10", "0").await;
    let r = create_refund(app, &m, "stuck", "1", STUCK_ADDRESS, None).await;
    let id = r["refund_id"].as_str().unwrap();
    app.wait_refund(id, "Processing", |r| r["status"] == "Processing").await;
    for _ in 0..5 {
        chain.mine().await;
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    let r = app.get(&format!("/v2/payments/refunds/{id}")).await.ok();
    assert_eq!(
        (r["status"].as_str(), r["transactions"][0]["status"].as_str()),
        (Some("Processing"), Some("Broadcasting"))
    );
    app.put(&format!("/v2/payments/refunds/{id}/cancel"), None).await.error(409, 40901);
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "9", "still reserved");
}

/// A payout split in two transfers whose second fails: the refund is `PartiallyCompleted`, the paid half
/// left for the world, the unpaid half and the developer fee back in the merchant's balance, and the
/// order refundable again by exactly the unpaid half.
async fn sandbox_partial_address_pays_half_and_releases_the_rest(app: &TestApp) {
    let chain = app.sandbox("ETH");
    let m = app.create_merchant("Shop").await;
    let order = app.paid_order(&m, "10", "0").await;
    let psp_before = psp_balance(app).await;
    let body = |request_id: &str, amount: &str, to: &str| {
        json!({"request_id": request_id, "merchant_id": m, "order_id": order["order_id"], "payable_amount": amount,
               "token_id": "ETH_USDT", "refund_type": "Merchant", "to_address": to,
               "charge_merchant_fee": true, "merchant_fee_amount": "0.5"})
    };
    let r = app.post("/v2/payments/refunds", body("half", "3", PARTIAL_ADDRESS)).await.ok();
    let id = r["refund_id"].as_str().unwrap();
    let done = app.mine_until(&chain, id, "PartiallyCompleted").await;
    assert_eq!(done["failed_reason"], PARTIAL_REASON);
    let legs = done["transactions"].as_array().unwrap();
    assert_eq!(legs.len(), 2, "{done}");
    assert_eq!((legs[0]["amount"].as_str(), legs[0]["status"].as_str()), (Some("1.5"), Some("Completed")));
    assert_eq!((legs[1]["amount"].as_str(), legs[1]["status"].as_str()), (Some("1.5"), Some("Failed")));
    assert_ne!(legs[0]["tx_hash"], legs[1]["tx_hash"]);
    assert_eq!(chain.0.balance(PARTIAL_ADDRESS, "ETH_USDT"), base_units("1.5"), "half arrived");
    // Paid 1.5 of 10; the fee is charged only for a refund paid in full.
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "8.5");
    assert_eq!(psp_balance(app).await, psp_before);
    app.post("/v2/payments/refunds", body("over", "8.51", USER_ADDRESS)).await.error(422, 42201);
    let rest = app.post("/v2/payments/refunds", body("rest", "8", USER_ADDRESS)).await.ok();
    app.mine_until(&chain, rest["refund_id"].as_str().unwrap(), "Completed").await;
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "0");
}
