use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ebb::config::{ChainSetting, FileConfig, WorkerSettings};
use ebb::{Application, Settings};
use ebb_api::auth::{double_sha256, request_message};
use ebb_chain::sandbox::SandboxChain;
use ebb_store::keys::KeyRole;

use crate::chains::{Sandbox, TestChain};
use ebb_store::Store;
use ebb_worker::WebhookSettings;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Like `both_backends!`, with the payout executor running.
#[macro_export]
macro_rules! both_backends_paying {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use $crate::helpers::Options;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = $crate::helpers::spawn_app_with($crate::helpers::Db::Sqlite, Options::paying()).await;
                super::$name(&app).await;
                app.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(app) = $crate::helpers::spawn_postgres_app_with(Options::paying()).await else { return };
                super::$name(&app).await;
                app.finish().await;
            }
        }
    )*};
}

/// Runs a test body on SQLite and PostgreSQL with the given options.
#[macro_export]
macro_rules! both_backends_with {
    ($name:ident, $options:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = $crate::helpers::spawn_app_with($crate::helpers::Db::Sqlite, $options).await;
                super::$name(&app).await;
                app.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(app) = $crate::helpers::spawn_postgres_app_with($options).await else { return };
                super::$name(&app).await;
                app.finish().await;
            }
        }
    };
}

/// Runs the named async test body once against each backend: `both_backends!(my_test);` makes
/// `my_test::sqlite` and `my_test::postgres`.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = $crate::helpers::spawn_app($crate::helpers::Db::Sqlite).await;
                super::$name(&app).await;
                app.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(app) = $crate::helpers::spawn_postgres_app().await else { return };
                super::$name(&app).await;
                app.finish().await;
            }
        }
    )*};
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub client: reqwest::Client,
    /// A PSP-wide key registered at start.
    pub key: SigningKey,
    pub server_public: VerifyingKey,
    /// The server's signing key (hex seed) and database, for running `ebb` commands against this server.
    pub server_key_hex: String,
    pub database_url: String,
    pub store: Store,
    /// The server's use cases, for a test that acts inside the server as a surface would.
    pub engine: ebb_app::Engine,
    pg_database: Option<String>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    sandboxes: HashMap<String, Arc<SandboxChain>>,
    _dir: tempfile::TempDir,
}

/// The server PostgreSQL tests create their databases in.
pub fn postgres_admin_url() -> String {
    std::env::var("EBB_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `None` (skipping, loudly) only outside CI when no PostgreSQL is reachable; with `CI=true` a missing
/// server fails the test.
pub async fn spawn_postgres_app() -> Option<TestApp> {
    spawn_postgres_app_with(Options::default()).await
}

pub async fn spawn_postgres_app_with(options: Options) -> Option<TestApp> {
    if postgres_wanted().await {
        Some(spawn_app_with(Db::Postgres, options).await)
    } else {
        None
    }
}

/// Whether to run a PostgreSQL test: always under `CI=true` (where a missing server then fails the
/// test), otherwise only if a server answers, with a loud line when it does not.
pub async fn postgres_wanted() -> bool {
    if std::env::var("CI").is_ok_and(|v| v == "true") || Store::connect(&postgres_admin_url(), 1).await.is_ok() {
        return true;
    }
    eprintln!(
        "SKIPPED: no PostgreSQL at {} (set EBB_TEST_POSTGRES_URL; CI=true makes this a failure)",
        postgres_admin_url()
    );
    false
}

/// What a test's ebb runs besides the API.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Run the payout executor (every 20 ms). Off by default, so that tests of the API see refunds
    /// stay where the API put them.
    pub payouts: bool,
    /// Chains other than the sandbox (an EVM chain on anvil).
    pub chains: Vec<ChainSetting>,
    /// Tokens replacing the built-in ones by id (the test ERC-20 as `ETH_USDT`).
    pub tokens: Vec<ebb_core::Token>,
    /// The webhook dispatcher's settings; default [`test_webhook_settings`].
    pub webhooks: Option<WebhookSettings>,
    /// Refund-link settings (denylist, rate limits, TTL); default [`ebb_api::pages::LinkSettings`].
    pub links: Option<ebb_api::pages::LinkSettings>,
    /// Approval policies as the configuration file gives them.
    pub approval_policies: Vec<ebb_core::approval::ApprovalPolicy>,
    /// Screening settings; default the OFAC list and the default rules.
    pub screening: Option<ebb_app::screening::ScreeningSettings>,
    /// Exchange rates; default `ebb dev`'s offline table (USD 1, EUR 0.92 per token).
    pub prices: Option<ebb_app::prices::PricesSettings>,
    /// Customer e-mail through an SMTP server (`crate::mail::SmtpServer`); default none.
    pub mail: Option<ebb_worker::mail::MailSettings>,
    /// The console's session and login settings; default [`ebb_app::operators::ConsoleSettings`].
    pub console: Option<ebb_app::operators::ConsoleSettings>,
    /// On PostgreSQL, reach the server through this address (a `faults::FaultProxy`) instead of the
    /// test URL's host and port. The test database is still created directly.
    pub postgres_via: Option<std::net::SocketAddr>,
    /// On SQLite, the directory of the database file (a small filesystem) instead of the test's own
    /// temporary directory.
    pub sqlite_dir: Option<std::path::PathBuf>,
}

/// Webhooks for tests: endpoints on 127.0.0.1 allowed, a schedule of three quick retries, a short
/// timeout, a quick poll.
pub fn test_webhook_settings() -> WebhookSettings {
    WebhookSettings {
        timeout: Duration::from_secs(2),
        retry_schedule: vec![Duration::from_millis(200), Duration::from_millis(400), Duration::from_millis(800)],
        allow_private_addresses: true,
        poll_interval: Duration::from_millis(20),
        ..WebhookSettings::default()
    }
}

impl Options {
    pub fn paying() -> Self {
        Self { payouts: true, ..Self::default() }
    }
}

pub async fn spawn_app(db: Db) -> TestApp {
    spawn_app_with(db, Options::default()).await
}

pub async fn spawn_app_with(db: Db, options: Options) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        let _ = tracing_subscriber_init();
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (url, pg_database) = match db {
        Db::Sqlite => (Store::sqlite_url_for_dir(options.sqlite_dir.as_deref().unwrap_or(dir.path())), None),
        Db::Postgres => {
            let name = format!("ebb_test_{}", uuid::Uuid::new_v4().simple());
            let admin = Store::connect(&postgres_admin_url(), 1)
                .await
                .expect("PostgreSQL for the tests (EBB_TEST_POSTGRES_URL)");
            sqlx::query(&format!("CREATE DATABASE {name}")).execute(admin.pool()).await.expect("create test database");
            admin.close().await;
            let mut url = reqwest::Url::parse(&postgres_admin_url()).expect("EBB_TEST_POSTGRES_URL is a URL");
            url.set_path(&name);
            if let Some(via) = options.postgres_via {
                url.set_ip_host(via.ip()).expect("a URL with a host");
                url.set_port(Some(via.port())).expect("a URL with a host");
            }
            (url.to_string(), Some(name))
        }
    };
    let server_key = SigningKey::from_bytes(&rand_bytes());
    let registry = ebb_core::TokenRegistry::new(
        FileConfig::default()
            .registry()
            .unwrap()
            .iter()
            .filter(|t| !options.tokens.iter().any(|o| o.id == t.id))
            .cloned()
            .chain(options.tokens.iter().cloned()),
    )
    .unwrap();
    let settings = Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: url,
        server_key: server_key.clone(),
        sandbox: true,
        max_connections: 16,
        registry: registry.clone(),
        chains: options.chains.clone(),
        // The sandbox chains mine only when a test says so (`TestApp::mine`): tests decide what the
        // chain does between two steps of the executor.
        workers: WorkerSettings {
            run_payouts: options.payouts,
            run_watcher: true,
            run_webhooks: true,
            sandbox_block: Duration::from_secs(3600),
            payout_interval: Duration::from_millis(20),
            // Only an underpriced payout is replaced, so checking early changes nothing else.
            bump_after: Duration::from_millis(100),
        },
        webhooks: options.webhooks.clone().unwrap_or_else(test_webhook_settings),
        links: options.links.clone().unwrap_or_default(),
        approval_policies: options.approval_policies.clone(),
        screening: options.screening.clone().unwrap_or_default(),
        prices: options.prices.clone().unwrap_or_else(|| ebb::dev::offline_prices(&registry)),
        mail: options.mail.clone(),
        console: options.console.clone().unwrap_or_default(),
    };
    let database_url = settings.database_url.clone();
    let app = Application::build(settings).await.expect("ebb starts");
    let sandboxes = app.sandbox_chains();
    let addr = app.local_addr();
    let store = app.store().clone();
    let engine = app.engine().clone();
    let key = SigningKey::from_bytes(&rand_bytes());
    ebb_app::keys::add(&store, &hex::encode(key.verifying_key().to_bytes()), "test", None, KeyRole::Operator)
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    TestApp {
        addr,
        client: reqwest::Client::new(),
        key,
        server_public: server_key.verifying_key(),
        server_key_hex: hex::encode(server_key.to_bytes()),
        database_url,
        store,
        engine,
        pg_database,
        shutdown: Some(tx),
        server: Some(server),
        sandboxes,
        _dir: dir,
    }
}

fn tracing_subscriber_init() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt().with_test_writer().with_env_filter("info,sqlx=warn").try_init()
}

pub fn rand_bytes() -> [u8; 32] {
    let mut b = [0u8; 32];
    for chunk in b.chunks_mut(16) {
        chunk.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..chunk.len()]);
    }
    b
}

/// Milliseconds, strictly increasing across the process: concurrent identical requests get distinct
/// nonces and so distinct signatures (a repeated signature is a replay).
pub fn next_nonce() -> i64 {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev + 1);
        match LAST.compare_exchange(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(p) => prev = p,
        }
    }
}

pub struct Response {
    pub status: StatusCode,
    pub body: Value,
}

impl Response {
    #[track_caller]
    pub fn ok(self) -> Value {
        assert!(self.status.is_success(), "expected success, got {}: {}", self.status, self.body);
        self.body
    }

    #[track_caller]
    pub fn error(self, status: u16, code: i64) -> Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        assert_eq!(self.body["error_code"], code, "{}", self.body);
        assert!(self.body["error_message"].as_str().is_some_and(|m| !m.is_empty()), "{}", self.body);
        assert!(self.body["error_id"].as_str().is_some_and(|m| !m.is_empty()), "{}", self.body);
        self.body
    }
}

/// How to sign a request: normally right; tests of authentication bend one part.
#[derive(Clone)]
pub struct Signing {
    pub key: SigningKey,
    pub nonce: Option<i64>,
    /// Sign with this key but claim `claimed_key` in Biz-Api-Key.
    pub claimed_key: Option<String>,
    pub omit_headers: bool,
}

impl TestApp {
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    pub fn signing(&self) -> Signing {
        Signing { key: self.key.clone(), nonce: None, claimed_key: None, omit_headers: false }
    }

    pub async fn get(&self, path_and_query: &str) -> Response {
        self.call(Method::GET, path_and_query, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Option<Value>) -> Response {
        self.call(Method::PUT, path, body).await
    }

    pub async fn call(&self, method: Method, path_and_query: &str, body: Option<Value>) -> Response {
        self.call_signed(&self.signing(), method, path_and_query, body.map(|b| b.to_string().into_bytes())).await
    }

    /// Sends a request signed as Cobo's SDK does and checks the response's signature.
    pub async fn call_signed(
        &self,
        s: &Signing,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Response {
        let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
        let body = body.unwrap_or_default();
        let nonce = s.nonce.unwrap_or_else(next_nonce).to_string();
        let message = request_message(method.as_str(), path, &nonce, query, &body);
        let signature = hex::encode(s.key.sign(&double_sha256(&message)).to_bytes());
        let api_key = s.claimed_key.clone().unwrap_or_else(|| hex::encode(s.key.verifying_key().to_bytes()));
        let mut req = self.client.request(method, self.url(path_and_query));
        if !s.omit_headers {
            req = req
                .header("Biz-Api-Key", api_key)
                .header("Biz-Api-Nonce", nonce)
                .header("Biz-Api-Signature", signature);
        }
        if !body.is_empty() {
            req = req.header("Content-Type", "application/json").body(body);
        }
        self.send_checked(req).await
    }

    pub async fn send_checked(&self, req: reqwest::RequestBuilder) -> Response {
        let resp = req.send().await.expect("request reaches ebb");
        let status = resp.status();
        let ts = resp.headers().get("biz-timestamp").map(|v| v.to_str().unwrap().to_owned());
        let sig = resp.headers().get("biz-resp-signature").map(|v| v.to_str().unwrap().to_owned());
        let bytes = resp.bytes().await.unwrap();
        let (ts, sig) =
            (ts.expect("Biz-Timestamp on every /v2 response"), sig.expect("Biz-Resp-Signature on every /v2 response"));
        let mut signed = bytes.to_vec();
        signed.push(b'|');
        signed.extend_from_slice(ts.as_bytes());
        let mut sig_bytes = [0u8; 64];
        hex::decode_to_slice(&sig, &mut sig_bytes).unwrap();
        self.server_public
            .verify(&double_sha256(&signed), &Signature::from_bytes(&sig_bytes))
            .expect("response signature verifies with the server key");
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON body") };
        // 503 is an answer ebb gives on purpose (a database or a price feed it cannot reach); any other
        // 5xx is a defect.
        assert!(status.as_u16() < 500 || status.as_u16() == 503, "ebb answered {status}: {body}");
        Response { status, body }
    }

    /// Registers another client key, optionally restricted to one merchant.
    pub async fn new_key(&self, merchant: Option<&str>) -> SigningKey {
        self.new_key_with_role(merchant, KeyRole::Operator).await
    }

    pub async fn new_key_with_role(&self, merchant: Option<&str>, role: KeyRole) -> SigningKey {
        let key = SigningKey::from_bytes(&rand_bytes());
        let public = hex::encode(key.verifying_key().to_bytes());
        ebb_app::keys::add(&self.store, &public, "extra", merchant, role).await.unwrap();
        key
    }

    pub async fn create_merchant(&self, name: &str) -> String {
        let m = self.post("/v2/payments/merchants", json!({"name": name})).await.ok();
        m["merchant_id"].as_str().unwrap().to_owned()
    }

    /// A merchant's order of `amount` ETH_USDT (developer fee `fee`), paid in full on the sandbox chain
    /// and confirmed.
    pub async fn paid_order(&self, merchant_id: &str, amount: &str, fee: &str) -> Value {
        self.paid_order_on(&self.sandbox("ETH"), merchant_id, amount, fee).await
    }

    /// The same, paid on `chain` (the sandbox, or anvil by a customer account).
    pub async fn paid_order_on(&self, chain: &dyn TestChain, merchant_id: &str, amount: &str, fee: &str) -> Value {
        let order = self
            .post(
                "/v2/payments/orders",
                json!({
                    "merchant_id": merchant_id,
                    "psp_order_code": format!("psp-{}", uuid::Uuid::new_v4()),
                    "payable_currency": "ETH_USDT",
                    "payable_amount": amount,
                    "fee_amount": fee,
                }),
            )
            .await
            .ok();
        let id = order["order_id"].as_str().unwrap();
        let tx_hash = chain.pay_order(self, &order).await;
        self.settle_payin(chain, id, &tx_hash).await
    }

    /// Pays an order through the sandbox endpoint (`body` as the endpoint takes it) and waits until the
    /// watcher has confirmed the payment; returns the submitted transfer and the order then.
    pub async fn pay_in_sandbox(&self, order_id: &str, body: Value) -> (Value, Value) {
        let tx = self.post(&format!("/v2/sandbox/orders/{order_id}/payments"), body).await.ok();
        assert_eq!(tx["status"], "Pending", "{tx}");
        let order = self.get(&format!("/v2/payments/orders/{order_id}")).await.ok();
        let chain = self.sandbox(order["chain_id"].as_str().unwrap());
        let order = self.settle_payin(&chain, order_id, tx["tx_hash"].as_str().unwrap()).await;
        (tx, order)
    }

    /// Mines until the order shows the pay-in `tx_hash` as `Completed` (10 s at most); returns the order.
    pub async fn settle_payin(&self, chain: &dyn TestChain, order_id: &str, tx_hash: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let order = self.get(&format!("/v2/payments/orders/{order_id}")).await.ok();
            // The order row and its transactions are two reads: wait for both to show the credit.
            let done = order["transactions"]
                .as_array()
                .is_some_and(|txs| txs.iter().any(|t| t["tx_hash"] == tx_hash && t["status"] == "Completed"))
                && (order["status"] == "Completed" || order["status"] == "Underpaid");
            if done {
                return order;
            }
            assert!(std::time::Instant::now() < deadline, "pay-in {tx_hash} never confirmed: {order}");
            chain.mine().await;
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    pub async fn merchant_balance(&self, merchant_id: &str, token: &str) -> Value {
        let b =
            self.get(&format!("/v2/payments/balance/merchants?merchant_ids={merchant_id}&token_id={token}")).await.ok();
        b["data"][0].clone()
    }

    /// Stops the server, checks the ledger is consistent, and drops a PostgreSQL test database.
    pub async fn finish(mut self) {
        let problems = self.store.verify_ledger().await.unwrap();
        assert!(problems.is_empty(), "ledger inconsistent: {problems:?}");
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
        self.store.close().await;
        if let Some(name) = self.pg_database.take() {
            let admin = Store::connect(&postgres_admin_url(), 1).await.unwrap();
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(admin.pool()).await;
            admin.close().await;
        }
    }
}

impl TestApp {
    /// The sandbox chain of `chain_id`.
    pub fn sandbox(&self, chain_id: &str) -> Sandbox {
        Sandbox(self.sandboxes.get(chain_id).cloned().unwrap_or_else(|| panic!("no sandbox chain {chain_id}")))
    }

    /// Mines blocks on `chain` until the refund reaches `status` (10 s at most).
    pub async fn mine_until(&self, chain: &dyn TestChain, refund_id: &str, status: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.get(&format!("/v2/payments/refunds/{refund_id}")).await.ok();
            if r["status"] == status {
                return r;
            }
            assert!(std::time::Instant::now() < deadline, "refund never reached {status}: {r}");
            chain.mine().await;
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    /// Waits (without mining) until `check` holds for the refund (10 s at most).
    pub async fn wait_refund(&self, refund_id: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let r = self.get(&format!("/v2/payments/refunds/{refund_id}")).await.ok();
            if check(&r) {
                return r;
            }
            assert!(std::time::Instant::now() < deadline, "refund never got {what}: {r}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub const USER_ADDRESS: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
