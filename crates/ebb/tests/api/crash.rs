//! Durability: a refund ebb acknowledged survives `kill -9`, on both backends.
//!
//! This runs the real `ebb serve` binary as a child process (in-process servers cannot be SIGKILLed),
//! kills it while refunds are being created, starts it again on the same database and checks that every
//! acknowledged refund is there and the ledger adds up.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ebb_api::auth::{double_sha256, request_message};
use ebb_store::Store;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};

use crate::helpers::{next_nonce, postgres_admin_url, rand_bytes, USER_ADDRESS};

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) base: String,
}

/// A failing test must not leave `ebb serve` running.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(db_url: &str, server_key: &str) -> Server {
    start_with(db_url, server_key, &[])
}

fn start_with(db_url: &str, server_key: &str, env: &[(&str, &str)]) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .arg("serve")
        .envs(env.iter().copied())
        .env("EBB_DATABASE_URL", db_url)
        .env("EBB_SERVER_KEY", server_key)
        .env("EBB_LISTEN", format!("127.0.0.1:{port}"))
        .env("EBB_SANDBOX", "true")
        .env("EBB_SANDBOX_BLOCK_MS", "50")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("ebb serve starts");
    Server { child, base: format!("http://127.0.0.1:{port}") }
}

pub(crate) async fn wait_ready(http: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if http.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("ebb did not become ready at {base}");
}

pub(crate) async fn call(
    http: &reqwest::Client,
    base: &str,
    key: &SigningKey,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let nonce = next_nonce().to_string();
    let (p, q) = path.split_once('?').unwrap_or((path, ""));
    let sig = key.sign(&double_sha256(&request_message(method.as_str(), p, &nonce, q, body.as_bytes())));
    let mut req = http
        .request(method, format!("{base}{path}"))
        .header("Biz-Api-Key", hex::encode(key.verifying_key().to_bytes()))
        .header("Biz-Api-Nonce", nonce)
        .header("Biz-Api-Signature", hex::encode(sig.to_bytes()));
    if !body.is_empty() {
        req = req.header("Content-Type", "application/json").body(body);
    }
    // A request cut by the kill has no answer: it was not acknowledged.
    let resp = req.send().await.ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.json().await.ok()?))
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// An `ebb.toml` for `ebb serve` on `db_url`, paying out on `anvil` (its token as `ETH_USDT`).
pub(crate) fn anvil_config(
    dir: &std::path::Path,
    file: &str,
    db_url: &str,
    port: u16,
    anvil: &crate::chains::Anvil,
) -> std::path::PathBuf {
    let config = dir.join(file);
    std::fs::write(
        &config,
        format!(
            r#"database_url = "{db_url}"
listen = "127.0.0.1:{port}"
sandbox = true
payout_interval_ms = 20

[[tokens]]
id = "ETH_USDT"
chain_id = "ETH"
family = "evm"
symbol = "USDT"
decimals = 6
contract = "{contract}"

[[chains]]
chain_id = "ETH"
kind = "evm"
rpc_url = "{rpc}"
evm_chain_id = 31337
confirmations = 1
hot_wallet_key_env = "EBB_TEST_HOT_WALLET_KEY"
"#,
            contract = anvil.token.to_checksum(None),
            rpc = anvil.url
        ),
    )
    .unwrap();
    config
}

/// Mines a block while a test waits for payouts. anvil with automine mines when a transaction
/// arrives; a payout that waited in its pool behind a missing nonce (a restart re-broadcasting an
/// earlier payout after later ones) becomes minable only when that one arrives, and would wait for the
/// next transaction if nothing else made blocks. A real chain keeps making them.
pub(crate) async fn mine_a_block(anvil: &crate::chains::Anvil) {
    unstick_anvil_pool(anvil).await;
    anvil.rpc("evm_mine", json!([])).await;
}

/// Works around a race in anvil's pool, not a fault of ebb. anvil (1.7) reads the sender's nonce
/// when a transaction arrives and files it as needing the previous nonce's transaction; if a block
/// mines that one before the filing, the new transaction waits in `queued` (txpool_content) for a
/// transaction that will never come, although its nonce is now the account's, and nothing after it
/// is mined either. A real node re-checks its queue on every block; anvil never does. Resending the
/// bytes answers "already imported", and `anvil_dropTransaction` only looks at the ready set, so the
/// wallet's pool is emptied with `anvil_removePoolTransactions`: ebb's executor then finds its open
/// payouts unknown to the node and re-broadcasts their stored bytes (decision 12: re-broadcast, never
/// re-sign), which anvil files afresh against the current nonce. (Two concurrent
/// `eth_sendTransaction`s with consecutive nonces and an `evm_mine` show the race within seconds.)
async fn unstick_anvil_pool(anvil: &crate::chains::Anvil) {
    use crate::chains::TestChain;
    let wallet = anvil.hot_wallet().to_lowercase();
    let Ok(nonce) = anvil.try_rpc("eth_getTransactionCount", json!([wallet, "latest"])).await else { return };
    let Some(nonce) = nonce.as_str().and_then(|n| u64::from_str_radix(n.trim_start_matches("0x"), 16).ok()) else {
        return;
    };
    let Ok(pool) = anvil.try_rpc("txpool_content", json!([])).await else { return };
    let mine = |set: &str| {
        pool[set]
            .as_object()
            .and_then(|by_sender| by_sender.iter().find(|(k, _)| k.to_lowercase() == wallet).map(|(_, v)| v.clone()))
    };
    let pending_next = mine("pending").is_some_and(|txs| txs.get(nonce.to_string()).is_some());
    let queued_next = mine("queued").is_some_and(|txs| txs.get(nonce.to_string()).is_some());
    if queued_next && !pending_next {
        eprintln!("anvil filed the hot wallet's next transaction (nonce {nonce}) as queued: emptying its pool for ebb to re-broadcast");
        let _ = anvil.try_rpc("anvil_removePoolTransactions", json!([wallet])).await;
    }
}

/// `ebb serve --config CONFIG` with the anvil hot wallet's key and the given failpoints.
fn serve_on_anvil(config: &std::path::Path, server_key: &str, failpoints: &str, port: u16) -> Server {
    Server {
        base: format!("http://127.0.0.1:{port}"),
        child: Command::new(env!("CARGO_BIN_EXE_ebb"))
            .args(["serve", "--config", config.to_str().unwrap()])
            .env("EBB_SERVER_KEY", server_key)
            .env("EBB_TEST_HOT_WALLET_KEY", crate::chains::HOT_WALLET_KEY)
            .env("EBB_FAILPOINTS", failpoints)
            .env("RUST_LOG", "warn")
            // Warnings and the failpoint's last words go to the test run's output: a phase that
            // stalls (CI once saw one) then shows why.
            .stdout(Stdio::null())
            .spawn()
            .expect("ebb serve starts"),
    }
}

/// Registers a new client key on `db_url` with `ebb keys add`.
pub(crate) fn add_client_key(db_url: &str) -> SigningKey {
    let client = SigningKey::from_bytes(&rand_bytes());
    let status = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args([
            "keys",
            "add",
            "--public-key",
            &hex::encode(client.verifying_key().to_bytes()),
            "--database-url",
            db_url,
        ])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "ebb keys add");
    client
}

/// A new PostgreSQL database for a test that runs `ebb serve` itself.
pub(crate) struct FreshPostgres {
    name: String,
    pub(crate) url: String,
}

impl FreshPostgres {
    pub(crate) async fn create() -> Self {
        let name = format!("ebb_test_{}", uuid::Uuid::new_v4().simple());
        let admin = Store::connect(&postgres_admin_url(), 1).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(admin.pool()).await.unwrap();
        admin.close().await;
        let base = postgres_admin_url();
        let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
        FreshPostgres { name, url }
    }

    pub(crate) async fn drop(self) {
        let admin = Store::connect(&postgres_admin_url(), 1).await.unwrap();
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(admin.pool()).await;
        admin.close().await;
    }
}

/// Polls an order until the pay-in watcher has credited it.
pub(crate) async fn wait_order_completed(http: &reqwest::Client, base: &str, key: &SigningKey, order_id: &str) {
    for _ in 0..300 {
        let (_, o) = call(http, base, key, reqwest::Method::GET, &format!("/v2/payments/orders/{order_id}"), None)
            .await
            .unwrap();
        if o["status"] == "Completed" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("order {order_id} was never credited");
}

async fn acknowledged_refunds_survive_kill_9(db_url: &str) {
    let server_key = hex::encode(rand_bytes());
    let client = add_client_key(db_url);
    let http = reqwest::Client::new();
    let mut server = start(db_url, &server_key);
    wait_ready(&http, &server.base).await;
    let base = server.base.clone();
    let post = |path: &'static str, body: Value| call(&http, &base, &client, reqwest::Method::POST, path, Some(body));
    let (_, m) = post("/v2/payments/merchants", json!({"name": "crash"})).await.unwrap();
    let merchant = m["merchant_id"].as_str().unwrap().to_owned();
    let (_, o) = post(
        "/v2/payments/orders",
        json!({"merchant_id": merchant, "psp_order_code": "crash", "payable_currency": "ETH_USDT",
        "payable_amount": "1000", "fee_amount": "0"}),
    )
    .await
    .unwrap();
    let order = o["order_id"].as_str().unwrap().to_owned();
    let (s, _) =
        call(&http, &base, &client, reqwest::Method::POST, &format!("/v2/sandbox/orders/{order}/payments"), None)
            .await
            .unwrap();
    assert_eq!(s, 201);
    wait_order_completed(&http, &base, &client, &order).await;

    // 300 creates from 16 clients; the server is killed after the 60th acknowledgement.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<()>();
    let kill_tx = std::sync::Mutex::new(Some(kill_tx));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let worker = || async {
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if i >= 300 {
                return;
            }
            let body = json!({"request_id": format!("k-{i}"), "merchant_id": merchant, "payable_amount": "1",
                              "token_id": "ETH_USDT", "refund_type": "Merchant", "to_address": USER_ADDRESS});
            match call(&http, &base, &client, reqwest::Method::POST, "/v2/payments/refunds", Some(body)).await {
                Some((201, r)) => {
                    let mut a = acked.lock().unwrap();
                    a.push(r["refund_id"].as_str().unwrap().to_owned());
                    if a.len() == 60 {
                        if let Some(tx) = kill_tx.lock().unwrap().take() {
                            let _ = tx.send(());
                        }
                    }
                }
                Some((status, body)) => panic!("unexpected answer {status}: {body}"),
                None => return, // the server is gone
            }
        }
    };
    let killer = async {
        let _ = kill_rx.await;
        // SIGKILL: no shutdown, no flush.
        server.child.kill().unwrap();
        server.child.wait().unwrap();
    };
    tokio::join!(killer, futures::future::join_all((0..16).map(|_| worker())));
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 60, "{} acknowledged", acked.len());

    let mut server = start(db_url, &server_key);
    wait_ready(&http, &server.base).await;
    for id in &acked {
        let (s, r) =
            call(&http, &server.base, &client, reqwest::Method::GET, &format!("/v2/payments/refunds/{id}"), None)
                .await
                .unwrap();
        assert_eq!(s, 200, "acknowledged refund {id} lost: {r}");
    }
    server.child.kill().unwrap();
    server.child.wait().unwrap();

    let store = Store::connect(db_url, 1).await.unwrap();
    assert_eq!(store.verify_ledger().await.unwrap(), Vec::<String>::new());
    let stored = sqlx::query("SELECT COUNT(*) AS n FROM refunds").fetch_one(store.pool()).await.unwrap();
    let stored: i64 = sqlx::Row::get(&stored, "n");
    assert!(stored as usize >= acked.len());
    let balance =
        store.balances(&[ebb_core::ledger::Account::Merchant(merchant.clone())], Some("ETH_USDT")).await.unwrap();
    assert_eq!(balance[0].balance, (1000 - stored as i128) * 1_000_000, "every stored refund reserved exactly once");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_refunds_survive_kill_9_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    acknowledged_refunds_survive_kill_9(&Store::sqlite_url_for_dir(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_refunds_survive_kill_9_postgres() {
    if !crate::helpers::postgres_wanted().await {
        return;
    }
    let db = FreshPostgres::create().await;
    acknowledged_refunds_survive_kill_9(&db.url).await;
    db.drop().await;
}

/// Where the payouts stand, so that a stalled phase shows its cause: refunds and payout legs by status,
/// the first open legs, the hot wallet's nonce on chain and what anvil's pool holds.
pub(crate) async fn payout_standing(db_url: &str, anvil: &crate::chains::Anvil) -> String {
    use crate::chains::TestChain;
    let store = Store::connect(db_url, 1).await.unwrap();
    let by_status: Vec<(String, Option<String>, i64)> =
        sqlx::query_as("SELECT status, hold_reason, COUNT(*) FROM refunds GROUP BY status, hold_reason")
            .fetch_all(store.pool())
            .await
            .unwrap();
    let legs: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, COUNT(*) FROM payment_transactions WHERE direction = 'out' GROUP BY status")
            .fetch_all(store.pool())
            .await
            .unwrap();
    let open: Vec<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT nonce, status, tx_hash FROM payment_transactions \
         WHERE direction = 'out' AND status IN ('Broadcasting', 'Confirming') ORDER BY nonce LIMIT 5",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let next_nonce: Vec<(String, i64)> =
        sqlx::query_as("SELECT address, next_nonce FROM chain_nonces").fetch_all(store.pool()).await.unwrap();
    store.close().await;
    let chain_nonce = (
        anvil.rpc("eth_getTransactionCount", json!([anvil.hot_wallet(), "latest"])).await,
        anvil.rpc("eth_getTransactionCount", json!([anvil.hot_wallet(), "pending"])).await,
    );
    let pool = anvil.try_rpc("txpool_inspect", json!([])).await;
    format!(
        "refunds {by_status:?}, payout legs {legs:?}, first open legs (nonce, status, hash) {open:?}, \
         stored next nonce {next_nonce:?}, the hot wallet's nonce on chain (latest, pending) {chain_nonce:?}, \
         anvil's pool {pool:?}"
    )
}

/// Payouts are exactly-once across crashes: 100 refunds on anvil while `ebb serve` aborts at chosen
/// points of the payout (after the signed transaction is stored, after it is broadcast, before the
/// ledger settles), restarting each time. Afterwards every refund is `Completed`, the chain holds
/// exactly 100 transfers from the hot wallet, and ledger and chain agree to the base unit.
async fn payouts_are_exactly_once_across_crashes(db_url: &str) {
    use alloy::primitives::U256;

    use crate::chains::{Anvil, TestChain};
    use crate::payouts::base_units;

    let Some(anvil) = Anvil::start_with(true).await else { return };
    let dir = tempfile::tempdir().unwrap();
    let server_key = hex::encode(rand_bytes());
    let client = add_client_key(db_url);
    let port = free_port();
    let config = anvil_config(dir.path(), "ebb.toml", db_url, port, &anvil);
    let start = |failpoints: &str| serve_on_anvil(&config, &server_key, failpoints, port);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let hot_before = anvil.token_balance(&anvil.hot_wallet()).await;

    let mut merchant = String::new();
    let phases = ["payout.after_store=10", "payout.after_broadcast=15", "payout.before_settle=20", ""];
    for (phase, failpoints) in phases.iter().enumerate() {
        let mut server = start(failpoints);
        wait_ready(&http, &base).await;
        let (h, b, c) = (&http, &base, &client);
        let post =
            |path: String, body: Option<Value>| async move { call(h, b, c, reqwest::Method::POST, &path, body).await };
        if phase == 0 {
            let (_, m) = post("/v2/payments/merchants".into(), Some(json!({"name": "crash"}))).await.unwrap();
            merchant = m["merchant_id"].as_str().unwrap().to_owned();
            let (_, o) = post(
                "/v2/payments/orders".into(),
                Some(json!({"merchant_id": merchant, "psp_order_code": "crash", "payable_currency": "ETH_USDT",
                            "payable_amount": "1000", "fee_amount": "0"})),
            )
            .await
            .unwrap();
            let order = o["order_id"].as_str().unwrap();
            // ETH is the anvil chain here: a customer pays the order on chain and the watcher credits it.
            anvil.pay(o["receive_address"].as_str().unwrap(), base_units("1000")).await;
            wait_order_completed(&http, &base, &client, order).await;
        }
        // (Re)send all 100 creates: idempotent, so the ones a crash cut short are made now.
        for i in 0..100 {
            let body = json!({"request_id": format!("p-{i}"), "merchant_id": merchant, "payable_amount": "1.5",
                              "token_id": "ETH_USDT", "refund_type": "Merchant", "to_address": USER_ADDRESS});
            match post("/v2/payments/refunds".into(), Some(body)).await {
                Some((201, _)) => {}
                Some((s, b)) => panic!("unexpected answer {s}: {b}"),
                None => break, // the failpoint fired
            }
        }
        if failpoints.is_empty() {
            // The last run, without crashes: wait for every refund to complete.
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                let (_, page) = call(
                    &http,
                    &base,
                    &client,
                    reqwest::Method::GET,
                    "/v2/payments/refunds?statuses=Completed&limit=1",
                    None,
                )
                .await
                .unwrap();
                if page["pagination"]["total_count"] == 100 {
                    break;
                }
                if std::time::Instant::now() >= deadline {
                    // What the stuck ones look like: status, hold reason, their legs.
                    let (_, stuck) = call(
                        &http,
                        &base,
                        &client,
                        reqwest::Method::GET,
                        "/v2/payments/refunds?statuses=Pending,Processing,Failed&limit=5",
                        None,
                    )
                    .await
                    .unwrap();
                    let standing = payout_standing(db_url, &anvil).await;
                    panic!("refunds did not all complete: {page}\nsome of the others: {stuck}\n{standing}");
                }
                mine_a_block(&anvil).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            drop(server);
        } else {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                if let Some(status) = server.child.try_wait().unwrap() {
                    assert!(!status.success(), "{failpoints}: ebb should have aborted");
                    break;
                }
                if std::time::Instant::now() >= deadline {
                    let standing = payout_standing(db_url, &anvil).await;
                    panic!("failpoint {failpoints} never fired; {standing}");
                }
                mine_a_block(&anvil).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    // The chain: exactly 100 transfers of 1.5 from the hot wallet, nothing more.
    let on_chain = anvil.payouts_on_chain().await;
    assert_eq!(on_chain.len(), 100, "transfers on chain");
    assert!(on_chain.iter().all(|(_, v)| *v == U256::from(base_units("1.5"))));
    assert_eq!(hot_before - anvil.token_balance(&anvil.hot_wallet()).await, 100 * base_units("1.5"));
    // The database: 100 completed payouts, one per refund, and a ledger that adds up.
    let store = Store::connect(db_url, 1).await.unwrap();
    assert_eq!(store.verify_ledger().await.unwrap(), Vec::<String>::new());
    let legs: Vec<(String, String)> =
        sqlx::query_as("SELECT refund_id, status FROM payment_transactions WHERE direction = 'out'")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(legs.len(), 100, "one payout transaction per refund");
    assert!(legs.iter().all(|(_, s)| s == "Completed"));
    let balance = store.balances(&[ebb_core::ledger::Account::Merchant(merchant)], Some("ETH_USDT")).await.unwrap();
    assert_eq!(balance[0].balance, 850_000_000, "1000 paid in, 100 × 1.5 paid out");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payouts_are_exactly_once_across_crashes_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    payouts_are_exactly_once_across_crashes(&Store::sqlite_url_for_dir(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payouts_are_exactly_once_across_crashes_postgres() {
    if !crate::helpers::postgres_wanted().await {
        return;
    }
    let db = FreshPostgres::create().await;
    payouts_are_exactly_once_across_crashes(&db.url).await;
    db.drop().await;
}

/// Two `ebb serve` processes on one PostgreSQL database pay out the same queue on anvil: every refund is
/// paid exactly once, the nonces are consecutive with none used twice, and the ledger is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_postgres_pay_each_refund_once() {
    use crate::chains::{Anvil, TestChain};
    use crate::payouts::base_units;

    if !crate::helpers::postgres_wanted().await {
        return;
    }
    let Some(anvil) = Anvil::start_with(true).await else { return };
    let db = FreshPostgres::create().await;
    let dir = tempfile::tempdir().unwrap();
    let server_key = hex::encode(rand_bytes());
    let client = add_client_key(&db.url);
    let (port_a, port_b) = (free_port(), free_port());
    let config_a = anvil_config(dir.path(), "a.toml", &db.url, port_a, &anvil);
    let config_b = anvil_config(dir.path(), "b.toml", &db.url, port_b, &anvil);
    let a = serve_on_anvil(&config_a, &server_key, "", port_a);
    let b = serve_on_anvil(&config_b, &server_key, "", port_b);
    let http = reqwest::Client::new();
    wait_ready(&http, &a.base).await;
    wait_ready(&http, &b.base).await;
    let post = |base: &str, path: &str, body: Value| {
        let (base, path) = (base.to_owned(), path.to_owned());
        let (h, c) = (&http, &client);
        async move { call(h, &base, c, reqwest::Method::POST, &path, Some(body)).await.unwrap() }
    };
    let (_, m) = post(&a.base, "/v2/payments/merchants", json!({"name": "two"})).await;
    let merchant = m["merchant_id"].as_str().unwrap().to_owned();
    let (_, o) = post(
        &a.base,
        "/v2/payments/orders",
        json!({"merchant_id": merchant, "psp_order_code": "two", "payable_currency": "ETH_USDT",
               "payable_amount": "100", "fee_amount": "0"}),
    )
    .await;
    anvil.pay(o["receive_address"].as_str().unwrap(), base_units("100")).await;
    wait_order_completed(&http, &b.base, &client, o["order_id"].as_str().unwrap()).await;
    let hot_before = anvil.token_balance(&anvil.hot_wallet()).await;
    // 60 refunds, created through both processes, paid by whichever leases them.
    for i in 0..60 {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        let body = json!({"request_id": format!("two-{i}"), "merchant_id": merchant, "payable_amount": "1",
                          "token_id": "ETH_USDT", "refund_type": "Merchant", "to_address": USER_ADDRESS});
        assert_eq!(post(base, "/v2/payments/refunds", body).await.0, 201);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let path = "/v2/payments/refunds?statuses=Completed&limit=1";
        let (_, page) = call(&http, &a.base, &client, reqwest::Method::GET, path, None).await.unwrap();
        if page["pagination"]["total_count"] == 60 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not all refunds completed: {page}");
        mine_a_block(&anvil).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop((a, b));
    assert_eq!(anvil.payouts_on_chain().await.len(), 60, "each refund paid once on chain");
    assert_eq!(hot_before - anvil.token_balance(&anvil.hot_wallet()).await, 60 * base_units("1"));
    let store = Store::connect(&db.url, 1).await.unwrap();
    assert_eq!(store.verify_ledger().await.unwrap(), Vec::<String>::new());
    let nonces: Vec<i64> =
        sqlx::query_scalar("SELECT nonce FROM payment_transactions WHERE direction = 'out' ORDER BY nonce")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(nonces.len(), 60);
    assert_eq!(nonces, (nonces[0]..nonces[0] + 60).collect::<Vec<i64>>(), "consecutive, none twice");
    let balance = store.balances(&[ebb_core::ledger::Account::Merchant(merchant)], Some("ETH_USDT")).await.unwrap();
    assert_eq!(balance[0].balance, 40_000_000);
    store.close().await;
    db.drop().await;
}

/// `ebb serve` delivering webhooks to a loopback receiver quickly: no payouts, a short timeout and
/// schedule.
const WEBHOOK_ENV: [(&str, &str); 4] = [
    ("EBB_PAYOUTS", "false"),
    ("EBB_WEBHOOK_ALLOW_PRIVATE_ADDRESSES", "true"),
    ("EBB_WEBHOOK_TIMEOUT_MS", "1000"),
    ("EBB_WEBHOOK_RETRY_SCHEDULE_MS", "100,200,400,800"),
];

/// Registers a webhook endpoint for order events with `ebb webhooks add`.
fn add_webhook(db_url: &str, url: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["webhooks", "add", "--url", url, "--events", "payment.order.status.updated", "--database-url", db_url])
        .output()
        .unwrap();
    assert!(out.status.success(), "ebb webhooks add: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("added W"));
}

async fn create_orders(http: &reqwest::Client, bases: &[&str], client: &SigningKey, n: usize) {
    let (_, m) =
        call(http, bases[0], client, reqwest::Method::POST, "/v2/payments/merchants", Some(json!({"name": "hooks"})))
            .await
            .unwrap();
    let merchant = m["merchant_id"].as_str().unwrap().to_owned();
    for i in 0..n {
        let body = json!({"merchant_id": merchant, "psp_order_code": format!("hook-{i}"), "payable_currency": "ETH_USDT",
                          "payable_amount": "1", "fee_amount": "0"});
        let base = bases[i % bases.len()];
        let (s, o) = call(http, base, client, reqwest::Method::POST, "/v2/payments/orders", Some(body)).await.unwrap();
        assert_eq!(s, 201, "{o}");
    }
}

/// Counts deliveries by status.
async fn delivery_statuses(db_url: &str) -> std::collections::HashMap<String, i64> {
    let store = Store::connect(db_url, 1).await.unwrap();
    let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM webhook_deliveries GROUP BY status")
        .fetch_all(store.pool())
        .await
        .unwrap();
    store.close().await;
    rows.iter().map(|r| (sqlx::Row::get::<String, _>(r, "status"), sqlx::Row::get::<i64, _>(r, "n"))).collect()
}

/// `kill -9` while events are being delivered: after a restart every event arrives; the only repeats are
/// attempts that were in flight at the kill, and they carry the same event id.
async fn webhooks_survive_kill_9(db_url: &str) {
    use crate::webhooks::Receiver;
    const EVENTS: usize = 400;
    let in_flight = ebb_worker::WebhookSettings::default().per_endpoint_in_flight;
    let receiver = Receiver::start().await;
    // Slow enough that the kill lands mid-dispatch: a limited number in flight, 200 ms each.
    receiver.set_delay(Duration::from_millis(200));
    add_webhook(db_url, &receiver.url);
    let server_key = hex::encode(rand_bytes());
    let client = add_client_key(db_url);
    let http = reqwest::Client::new();
    // Events are queued before the server that delivers them starts.
    let api_only = start_with(db_url, &server_key, &[("EBB_WEBHOOKS", "false"), ("EBB_PAYOUTS", "false")]);
    wait_ready(&http, &api_only.base).await;
    create_orders(&http, &[&api_only.base], &client, EVENTS).await;
    drop(api_only);

    let mut server = start_with(db_url, &server_key, &WEBHOOK_ENV);
    receiver.wait_until(Duration::from_secs(20), "deliveries under way", |g| g.len() >= 40).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    // Requests the killed process had already written can still be read by the receiver after the
    // kill (they are in its socket buffers): they are attempts cut by the kill too, so wait until
    // nothing more arrives before taking the list.
    let mut arrived = receiver.received().len();
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = receiver.received().len();
        if now == arrived {
            break;
        }
        arrived = now;
    }
    let before_kill: std::collections::HashSet<String> = receiver.received().iter().map(|r| r.event_id()).collect();
    assert!(before_kill.len() < EVENTS, "the kill came after everything was delivered");

    let server = start_with(db_url, &server_key, &WEBHOOK_ENV);
    wait_ready(&http, &server.base).await;
    let got = receiver
        .wait_until(Duration::from_secs(30), "every event after the restart", |g| {
            g.iter().map(|r| r.event_id()).collect::<std::collections::HashSet<_>>().len() == EVENTS
        })
        .await;
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for r in &got {
        *seen.entry(r.event_id()).or_default() += 1;
    }
    let repeated: Vec<&String> = seen.iter().filter(|(_, n)| **n > 1).map(|(id, _)| id).collect();
    assert!(repeated.len() <= in_flight, "{} events repeated; at most {in_flight} were in flight", repeated.len());
    assert!(repeated.iter().all(|id| before_kill.contains(*id)), "only an attempt cut by the kill repeats");
    assert!(seen.values().all(|n| *n <= 2));
    // Every delivery ends Success once its outcome is recorded.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let statuses = delivery_statuses(db_url).await;
        if statuses.get("Success") == Some(&(EVENTS as i64)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{statuses:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_survive_kill_9_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    webhooks_survive_kill_9(&Store::sqlite_url_for_dir(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_survive_kill_9_postgres() {
    if !crate::helpers::postgres_wanted().await {
        return;
    }
    let db = FreshPostgres::create().await;
    webhooks_survive_kill_9(&db.url).await;
    db.drop().await;
}

/// Two `ebb serve` processes on one PostgreSQL deliver the same queue, with failures forcing retries:
/// no event is ever attempted by both at once, every attempt is logged, and every event arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_never_attempt_one_event_at_once() {
    use crate::webhooks::Receiver;
    const EVENTS: usize = 120;
    if !crate::helpers::postgres_wanted().await {
        return;
    }
    let db = FreshPostgres::create().await;
    let receiver = Receiver::start().await;
    receiver.set_delay(Duration::from_millis(30));
    // A third of the first attempts fail, so many events are attempted more than once.
    receiver.answer_next(&[(500, None); 40]);
    add_webhook(&db.url, &receiver.url);
    let server_key = hex::encode(rand_bytes());
    let client = add_client_key(&db.url);
    let http = reqwest::Client::new();
    let a = start_with(&db.url, &server_key, &WEBHOOK_ENV);
    let b = start_with(&db.url, &server_key, &WEBHOOK_ENV);
    wait_ready(&http, &a.base).await;
    wait_ready(&http, &b.base).await;
    create_orders(&http, &[&a.base, &b.base], &client, EVENTS).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let statuses = delivery_statuses(&db.url).await;
        if statuses.get("Success") == Some(&(EVENTS as i64)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{statuses:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop((a, b));
    assert_eq!(receiver.max_concurrent_per_event(), 1, "an event was attempted twice at once");
    let store = Store::connect(&db.url, 1).await.unwrap();
    let attempts: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM webhook_attempts").fetch_one(store.pool()).await.unwrap();
    store.close().await;
    assert_eq!(receiver.received().len() as i64, attempts, "every request the receiver saw is a logged attempt");
    assert!(attempts >= EVENTS as i64 + 40);
    db.drop().await;
}
