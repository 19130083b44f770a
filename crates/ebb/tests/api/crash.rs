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

struct Server {
    child: Child,
    base: String,
}

fn start(db_url: &str, server_key: &str) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .arg("serve")
        .env("EBB_DATABASE_URL", db_url)
        .env("EBB_SERVER_KEY", server_key)
        .env("EBB_LISTEN", format!("127.0.0.1:{port}"))
        .env("EBB_SANDBOX", "true")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("ebb serve starts");
    Server { child, base: format!("http://127.0.0.1:{port}") }
}

async fn wait_ready(http: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if http.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("ebb did not become ready at {base}");
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    key: &SigningKey,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let nonce = next_nonce().to_string();
    let sig = key.sign(&double_sha256(&request_message(method.as_str(), path, &nonce, "", body.as_bytes())));
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

async fn acknowledged_refunds_survive_kill_9(db_url: &str) {
    let server_key = hex::encode(rand_bytes());
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
    let name = format!("ebb_test_{}", uuid::Uuid::new_v4().simple());
    let admin = Store::connect(&postgres_admin_url(), 1).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(admin.pool()).await.unwrap();
    let base = postgres_admin_url();
    let url = format!("{}/{name}", &base[..base.rfind('/').unwrap()]);
    acknowledged_refunds_survive_kill_9(&url).await;
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(admin.pool()).await;
    admin.close().await;
}
