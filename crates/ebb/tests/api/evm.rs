//! Payouts on a real EVM node: anvil with the test ERC-20 of tests/fixtures as `ETH_USDT`. The shared
//! bodies of `payouts.rs` run here unchanged; the rest are failures only a real node shows.

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use serde_json::json;
use std::str::FromStr;

use crate::chains::{Anvil, TestChain};
use crate::faults::Fault;
use crate::helpers::{Options, TestApp, USER_ADDRESS};
use crate::payouts::{self, base_units, create_refund};

fn options(anvil: &Anvil) -> Options {
    Options {
        payouts: true,
        chains: vec![anvil.chain_setting(2)],
        tokens: vec![anvil.token_as_eth_usdt(), anvil.second_token_as_eth_usdc()],
        ..Options::default()
    }
}

macro_rules! on_anvil {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use crate::helpers::Db;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let Some(anvil) = crate::chains::Anvil::start().await else { return };
                let app = crate::helpers::spawn_app_with(Db::Sqlite, super::options(&anvil)).await;
                super::$name(&app, &anvil).await;
                app.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if !crate::helpers::postgres_wanted().await {
                    return;
                }
                let Some(anvil) = crate::chains::Anvil::start().await else { return };
                let app = crate::helpers::spawn_app_with(Db::Postgres, super::options(&anvil)).await;
                super::$name(&app, &anvil).await;
                app.finish().await;
            }
        }
    )*};
}

on_anvil!(
    a_refund_is_paid_on_chain_once,
    payouts_wait_for_tokens_in_the_hot_wallet,
    payouts_wait_for_gas_in_the_hot_wallet,
    a_payout_reorged_out_is_broadcast_again,
    a_dropped_payout_is_broadcast_again,
    ten_refunds_use_ten_consecutive_nonces,
    a_transfer_the_contract_refuses_fails_before_anything_is_sent,
    a_transfer_reverted_on_chain_fails_the_refund_and_releases_the_funds,
    a_customer_payment_is_refunded_to_the_payer,
    a_rescanned_payin_is_counted_once,
    a_payin_reorged_out_is_never_credited,
    extra_payments_are_credited_and_never_stall_the_chain,
    another_token_is_credited_in_its_own_token,
);

/// The RPC node goes away for a while (connections reset, then closed), before a payout starts and
/// while one is in flight; then the network to it stalls while a payout is broadcast, so ebb cannot know
/// whether the node got the transaction, and the held bytes arrive late. ebb retries and finishes each
/// payout exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payouts_survive_the_rpc_node_being_down_for_a_while() {
    let Some(anvil) = Anvil::start().await else { return };
    let proxy = crate::faults::FaultProxy::start(anvil.url.trim_start_matches("http://")).await;
    let mut setting = anvil.chain_setting(2);
    if let ebb::config::ChainSetting::Evm(c) = &mut setting {
        c.rpc_url = format!("http://{}", proxy.addr);
        c.rpc_timeout = std::time::Duration::from_millis(500);
    }
    let options =
        Options { payouts: true, chains: vec![setting], tokens: vec![anvil.token_as_eth_usdt()], ..Options::default() };
    let app = crate::helpers::spawn_app_with(crate::helpers::Db::Sqlite, options).await;
    let m = app.create_merchant("Shop").await;
    app.paid_order_on(&anvil, &m, "10", "0").await;

    // Down before the payout starts: the refund waits (no hold reason: nothing is wrong with the wallet).
    proxy.set(Fault::Reset);
    let first = create_refund(&app, &m, "down-1", "2", USER_ADDRESS, None).await;
    let first_id = first["refund_id"].as_str().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let r = app.get(&format!("/v2/payments/refunds/{first_id}")).await.ok();
    assert_eq!(r["status"], "Pending", "{r}");
    assert!(r.get("hold_reason").is_none(), "{r}");
    proxy.set(Fault::Pass);
    let processing = app.wait_refund(first_id, "Processing", |r| r["status"] == "Processing").await;
    let hash = processing["transactions"][0]["tx_hash"].as_str().unwrap().to_owned();

    // Down while it is in flight: the chain mines it meanwhile; ebb learns the outcome once back.
    proxy.set(Fault::Close);
    anvil.mine().await;
    anvil.mine().await;
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_eq!(app.get(&format!("/v2/payments/refunds/{first_id}")).await.ok()["status"], "Processing");
    proxy.set(Fault::Pass);
    let done = app.mine_until(&anvil, first_id, "Completed").await;
    assert_eq!(done["transactions"][0]["tx_hash"], hash.as_str());
    assert_eq!(anvil.payouts_on_chain().await, vec![(user(), U256::from(base_units("2")))]);

    // Stalled while the next payout is broadcast: every call times out (500 ms) with its bytes held,
    // and they reach the node when the stall ends, after ebb has tried again.
    proxy.set(Fault::Stall);
    let second = create_refund(&app, &m, "stalled-1", "3", USER_ADDRESS, None).await;
    let second_id = second["refund_id"].as_str().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    let r = app.get(&format!("/v2/payments/refunds/{second_id}")).await.ok();
    assert!(r["status"] == "Pending" || r["status"] == "Processing", "{r}");
    proxy.set(Fault::Pass);
    app.mine_until(&anvil, second_id, "Completed").await;
    anvil.mine().await;
    assert_eq!(
        anvil.payouts_on_chain().await,
        vec![(user(), U256::from(base_units("2"))), (user(), U256::from(base_units("3")))]
    );
    app.finish().await;
}

async fn a_customer_payment_is_refunded_to_the_payer(app: &TestApp, anvil: &Anvil) {
    crate::payins::refunds_the_payer_exactly(app, anvil).await;
}

async fn a_rescanned_payin_is_counted_once(app: &TestApp, anvil: &Anvil) {
    crate::payins::never_counts_a_rescanned_payin_twice(app, anvil).await;
}

async fn a_payin_reorged_out_is_never_credited(app: &TestApp, anvil: &Anvil) {
    crate::payins::never_credits_a_payin_reorged_out(app, anvil).await;
}

fn user() -> Address {
    Address::from_str(USER_ADDRESS).unwrap()
}

async fn a_refund_is_paid_on_chain_once(app: &TestApp, anvil: &Anvil) {
    let id = payouts::pays_a_refund_once_and_settles_the_ledger(app, anvil).await;
    assert_eq!(anvil.payouts_on_chain().await, vec![(user(), U256::from(base_units("2.5")))]);
    // The hash ebb shows is the real transaction's, mined successfully.
    let r = app.get(&format!("/v2/payments/refunds/{id}")).await.ok();
    let hash = alloy::primitives::B256::from_str(r["transactions"][0]["tx_hash"].as_str().unwrap()).unwrap();
    let receipt = anvil.owner.get_transaction_receipt(hash).await.unwrap().expect("mined");
    assert!(receipt.status());
}

async fn payouts_wait_for_tokens_in_the_hot_wallet(app: &TestApp, anvil: &Anvil) {
    payouts::holds_payouts_until_the_hot_wallet_is_funded(app, anvil).await;
    assert_eq!(anvil.payouts_on_chain().await.len(), 1);
}

async fn payouts_wait_for_gas_in_the_hot_wallet(app: &TestApp, anvil: &Anvil) {
    let wallet = anvil.hot_wallet();
    anvil.rpc("anvil_setBalance", json!([wallet, "0x0"])).await;
    let m = app.create_merchant("Shop").await;
    app.paid_order_on(anvil, &m, "10", "0").await;
    let r = create_refund(app, &m, "gas", "1", USER_ADDRESS, None).await;
    let id = r["refund_id"].as_str().unwrap();
    let held = app.wait_refund(id, "a hold reason", |r| r.get("hold_reason").is_some()).await;
    let reason = held["hold_reason"].as_str().unwrap();
    assert!(reason.contains("gas") && reason.contains(&wallet), "{reason}");
    assert_eq!(held["status"], "Pending");
    anvil.rpc("anvil_setBalance", json!([wallet, "0x8ac7230489e80000"])).await; // 10 ETH
    app.mine_until(anvil, id, "Completed").await;
    assert_eq!(anvil.payouts_on_chain().await.len(), 1);
}

async fn a_payout_reorged_out_is_broadcast_again(app: &TestApp, anvil: &Anvil) {
    payouts::broadcasts_a_payout_dropped_by_a_reorg_again(app, anvil).await;
    assert_eq!(anvil.payouts_on_chain().await.len(), 1, "one transfer on the final chain");
}

async fn a_dropped_payout_is_broadcast_again(app: &TestApp, anvil: &Anvil) {
    let m = app.create_merchant("Shop").await;
    app.paid_order_on(anvil, &m, "10", "0").await;
    let r = create_refund(app, &m, "drop", "2", USER_ADDRESS, None).await;
    let id = r["refund_id"].as_str().unwrap();
    let processing = app.wait_refund(id, "Processing", |r| r["status"] == "Processing").await;
    let hash = processing["transactions"][0]["tx_hash"].as_str().unwrap().to_owned();
    // The node forgets the transaction (as a mempool evicts one); the executor must notice and resend it.
    anvil.rpc("anvil_dropTransaction", json!([hash])).await;
    let done = app.mine_until(anvil, id, "Completed").await;
    assert_eq!(done["transactions"].as_array().unwrap().len(), 1);
    assert_eq!(done["transactions"][0]["tx_hash"], hash.as_str());
    assert_eq!(anvil.payouts_on_chain().await, vec![(user(), U256::from(base_units("2")))]);
}

async fn ten_refunds_use_ten_consecutive_nonces(app: &TestApp, anvil: &Anvil) {
    payouts::pays_many_refunds_with_consecutive_nonces(app, anvil, 10).await;
    assert_eq!(anvil.payouts_on_chain().await.len(), 10);
}

async fn a_transfer_the_contract_refuses_fails_before_anything_is_sent(app: &TestApp, anvil: &Anvil) {
    let pending = anvil.token().setBlocked(user(), true).send().await.unwrap();
    anvil.mine().await;
    pending.get_receipt().await.unwrap();
    let m = app.create_merchant("Shop").await;
    app.paid_order_on(anvil, &m, "10", "0").await;
    let r = create_refund(app, &m, "blocked", "3", USER_ADDRESS, None).await;
    let id = r["refund_id"].as_str().unwrap();
    let failed = app.wait_refund(id, "Failed", |r| r["status"] == "Failed").await;
    let reason = failed["failed_reason"].as_str().unwrap();
    assert!(reason.contains("TestToken: recipient blocked"), "{reason}");
    assert_eq!(failed["transactions"], json!([]), "nothing was signed or sent");
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "10", "released");
    assert!(anvil.payouts_on_chain().await.is_empty());
}

async fn a_transfer_reverted_on_chain_fails_the_refund_and_releases_the_funds(app: &TestApp, anvil: &Anvil) {
    let m = app.create_merchant("Shop").await;
    app.paid_order_on(anvil, &m, "10", "0").await;
    let r = create_refund(app, &m, "frozen", "3", USER_ADDRESS, None).await;
    let id = r["refund_id"].as_str().unwrap();
    app.wait_refund(id, "Processing", |r| r["status"] == "Processing").await;
    // The payout passed its dry run and waits in the mempool; the token freezes in the same block,
    // ahead of it (a higher tip), so the payout is mined and reverts.
    let freeze = anvil
        .token()
        .setFrozen(true)
        .max_priority_fee_per_gas(100_000_000_000)
        .max_fee_per_gas(200_000_000_000)
        .send()
        .await
        .unwrap();
    let failed = app.mine_until(anvil, id, "Failed").await;
    freeze.get_receipt().await.unwrap();
    let reason = failed["failed_reason"].as_str().unwrap();
    assert!(reason.contains("TestToken: frozen"), "{reason}");
    assert_eq!(failed["transactions"][0]["status"], "Failed");
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "10", "released");
    assert!(anvil.payouts_on_chain().await.is_empty());
}

/// Gas gets expensive while a payout waits: the executor replaces it with the same transfer and nonce at
/// higher fees, stored before it is sent; exactly one of the two is mined, and the refund shows it.
async fn an_underpriced_payout_is_replaced_with_higher_fees(app: &TestApp, anvil: &Anvil) {
    let m = app.create_merchant("Shop").await;
    app.paid_order_on(anvil, &m, "10", "0").await;
    let r = create_refund(app, &m, "bump", "2", USER_ADDRESS, None).await;
    let id = r["refund_id"].as_str().unwrap();
    let processing = app.wait_refund(id, "Processing", |r| r["status"] == "Processing").await;
    let first = processing["transactions"][0]["tx_hash"].as_str().unwrap().to_owned();
    // The next block's base fee jumps to 100 gwei, far above what the payout bids; it stays unmined.
    anvil.rpc("anvil_setNextBlockBaseFeePerGas", json!(["0x174876e800"])).await;
    anvil.mine().await;
    let replaced = app.wait_refund(id, "replaced", |r| r["transactions"][0]["tx_hash"] != first.as_str()).await;
    let second = replaced["transactions"][0]["tx_hash"].as_str().unwrap().to_owned();
    let done = app.mine_until(anvil, id, "Completed").await;
    assert_eq!(done["transactions"].as_array().unwrap().len(), 1, "one leg, replaced in place");
    assert_eq!(done["transactions"][0]["tx_hash"], second.as_str());
    assert_eq!(anvil.payouts_on_chain().await, vec![(user(), U256::from(base_units("2")))], "paid once");
    let mined = anvil
        .owner
        .get_transaction_by_hash(alloy::primitives::B256::from_str(&second).unwrap())
        .await
        .unwrap()
        .expect("the replacement is on chain");
    use alloy::consensus::Transaction as _;
    assert!(mined.inner.max_fee_per_gas() >= 87_500_000_000, "bids at least the raised base fee");
    let versions: Vec<String> = sqlx::query_scalar("SELECT tx_hash FROM payout_versions ORDER BY signed_at_ms")
        .fetch_all(app.store.pool())
        .await
        .unwrap();
    assert_eq!(versions.first(), Some(&first));
    assert!(versions.contains(&second) && versions.len() >= 2, "{versions:?}");
}
on_anvil!(an_underpriced_payout_is_replaced_with_higher_fees);

/// An order's receiving address is spendable: `ebb orders deposit-key` prints its private key, and
/// that key moves what the customer paid to it.
async fn an_orders_receiving_address_is_spendable_with_its_deposit_key(app: &TestApp, anvil: &Anvil) {
    let m = app.create_merchant("Shop").await;
    let order = app.paid_order_on(anvil, &m, "10", "0").await;
    let (id, address) = (order["order_id"].as_str().unwrap(), order["receive_address"].as_str().unwrap());
    assert_eq!(anvil.token_balance(address).await, base_units("10"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["orders", "deposit-key", id, "--database-url", &app.database_url])
        .env("EBB_SERVER_KEY", &app.server_key_hex)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let key = text.lines().find_map(|l| l.strip_prefix("private key")).expect("a key").trim().to_owned();
    let before = anvil.token_balance(USER_ADDRESS).await;
    anvil.transfer_as(&key, USER_ADDRESS, base_units("10")).await;
    assert_eq!(anvil.token_balance(address).await, 0);
    assert_eq!(anvil.token_balance(USER_ADDRESS).await - before, base_units("10"));
    // Another server key does not get it.
    let wrong = std::process::Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["orders", "deposit-key", id, "--database-url", &app.database_url])
        .env("EBB_SERVER_KEY", hex::encode([7u8; 32]))
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("not derived from this server key"));
}
on_anvil!(an_orders_receiving_address_is_spendable_with_its_deposit_key);

async fn extra_payments_are_credited_and_never_stall_the_chain(app: &TestApp, anvil: &Anvil) {
    crate::payins::extra_payments_are_credited_and_never_stall_the_chain(app, anvil).await;
}

async fn another_token_is_credited_in_its_own_token(app: &TestApp, anvil: &Anvil) {
    crate::payins::another_token_is_credited_in_its_own_token(app, anvil).await;
}

/// The test customer's account, which `Anvil::pay` pays from.
fn customer() -> String {
    use alloy::signers::local::PrivateKeySigner;
    PrivateKeySigner::from_str(crate::chains::CUSTOMER_KEY).unwrap().address().to_checksum(None)
}

/// Anvil, with the customer on the operator's denylist (High: its pay-ins are held) and a quarantine
/// address for the `isolate` disposition.
fn holding_options(anvil: &Anvil) -> Options {
    Options {
        links: Some(ebb_api::pages::LinkSettings {
            denylist: std::sync::Arc::new(ebb_core::screening::Denylist::parse(&customer())),
            ..Default::default()
        }),
        screening: Some(ebb_app::screening::ScreeningSettings {
            quarantine: [("ETH".to_owned(), crate::screening::QUARANTINE.to_owned())].into_iter().collect(),
            ..Default::default()
        }),
        ..options(anvil)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_disposition_of_held_funds_runs_to_its_end_on_anvil_sqlite() {
    let Some(anvil) = Anvil::start().await else { return };
    let app = crate::helpers::spawn_app_with(crate::helpers::Db::Sqlite, holding_options(&anvil)).await;
    each_disposition_of_held_funds_runs_to_its_end_on_anvil(&app, &anvil).await;
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_disposition_of_held_funds_runs_to_its_end_on_anvil_postgres() {
    let Some(anvil) = Anvil::start().await else { return };
    let Some(app) = crate::helpers::spawn_postgres_app_with(holding_options(&anvil)).await else { return };
    each_disposition_of_held_funds_runs_to_its_end_on_anvil(&app, &anvil).await;
    app.finish().await;
}

/// Four pay-ins from a high-risk (denylisted, unsanctioned) customer are held; one is refunded to the
/// customer (held for an approval first: the destination is high-risk too), one to another address,
/// one isolated, one released. Afterwards the chain and the ledger agree to the base unit: each
/// destination got its 10, the hot wallet paid exactly 30, the merchant holds only the released 10.
async fn each_disposition_of_held_funds_runs_to_its_end_on_anvil(app: &TestApp, anvil: &Anvil) {
    let m = app.create_merchant("Shop").await;
    let mut held = Vec::new();
    for i in 0..4 {
        let order = app
            .post(
                "/v2/payments/orders",
                json!({"merchant_id": m, "psp_order_code": format!("held-{i}"), "payable_currency": "ETH_USDT",
                       "payable_amount": "10", "fee_amount": "0"}),
            )
            .await
            .ok();
        let hash = anvil.pay(order["receive_address"].as_str().unwrap(), base_units("10")).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let tx_id = loop {
            let o = app.get(&format!("/v2/payments/orders/{}", order["order_id"].as_str().unwrap())).await.ok();
            let t =
                o["transactions"].as_array().and_then(|ts| ts.iter().find(|t| t["tx_hash"] == hash.as_str()).cloned());
            if let Some(t) = t.filter(|t| t["status"] == "Completed") {
                assert_eq!(o["status"], "Processing", "a held pay-in completes no order: {o}");
                break t["tx_id"].as_str().unwrap().to_owned();
            }
            assert!(std::time::Instant::now() < deadline, "the pay-in never confirmed: {o}");
            anvil.mine().await;
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        };
        let kyt = app.get(&format!("/v2/compliance/kyt/screenings/status?transaction_id={tx_id}")).await.ok();
        assert_eq!(kyt["funds_status"], "Frozen", "{kyt}");
        held.push(tx_id);
    }
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "0");
    let hot_before = anvil.token_balance(&anvil.hot_wallet()).await;
    let (customer_before, user_before) =
        (anvil.token_balance(&customer()).await, anvil.token_balance(USER_ADDRESS).await);
    let quarantine = crate::screening::QUARANTINE;
    let body =
        |tx: &str, to: &str| json!({"transaction_id": tx, "destination_address": to, "disposition_amount": "10"});

    app.post("/v2/compliance/funds/disposition/refund", body(&held[0], &customer())).await.ok();
    app.post("/v2/compliance/funds/disposition/refund", body(&held[1], USER_ADDRESS)).await.ok();
    app.post("/v2/compliance/funds/disposition/isolate", body(&held[2], quarantine)).await.ok();
    app.post("/v2/compliance/funds/disposition/unfreeze", json!({"transaction_id": held[3]})).await.ok();
    let refund_of = |tx: String| async move {
        app.get(&format!("/v2/compliance/funds/disposition?transaction_id={tx}")).await.ok()["refund_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let to_customer = refund_of(held[0].clone()).await;
    let waiting = app.get(&format!("/v2/payments/refunds/{to_customer}")).await.ok();
    assert_eq!(waiting["approval"]["policy_id"], "screening", "a high-risk destination waits: {waiting}");
    let approver = crate::helpers::Signing {
        key: app.new_key_with_role(None, ebb_store::keys::KeyRole::Approver).await,
        ..app.signing()
    };
    let path = format!("/v2/payments/refunds/{to_customer}/approve");
    app.call_signed(&approver, reqwest::Method::POST, &path, Some(b"{}".to_vec())).await.ok();
    for tx in &held[..3] {
        let refund_id = refund_of(tx.clone()).await;
        app.mine_until(anvil, &refund_id, "Completed").await;
    }
    let statuses: Vec<String> = futures::future::join_all(held.iter().map(|tx| async move {
        app.get(&format!("/v2/compliance/funds/disposition?transaction_id={tx}")).await.ok()["disposition_status"]
            .as_str()
            .unwrap()
            .to_owned()
    }))
    .await;
    assert_eq!(statuses, ["Refunded", "Refunded", "Isolated", "Unfrozen"]);

    // Chain = ledger, to the base unit.
    assert_eq!(anvil.token_balance(&customer()).await - customer_before, base_units("10"));
    assert_eq!(anvil.token_balance(USER_ADDRESS).await - user_before, base_units("10"));
    assert_eq!(anvil.token_balance(quarantine).await, base_units("10"));
    assert_eq!(hot_before - anvil.token_balance(&anvil.hot_wallet()).await, base_units("30"));
    assert_eq!(anvil.payouts_on_chain().await.len(), 3, "one transfer per payout disposition");
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "10", "only the released pay-in");
    // The reconciliation says so too, through the node: each receiving address holds its recorded pay-in,
    // the hot wallet's three Transfers are the three payouts (the customers' pay-ins are not its), and
    // what the chain holds beyond the ledger is the hot wallet's funding.
    let (differences, beyond) = crate::console::reconciled(app).await;
    assert_eq!((differences, beyond), (vec![], hot_before as i128));
}
