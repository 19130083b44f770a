//! The crash campaign (issue 18): refunds of every kind on anvil while `ebb serve` is killed at random
//! moments, then the figures that say nothing was lost, paid twice, left stuck or undelivered.
//!
//! Each refund is one of four kinds: created with its address; created without one and given it by
//! `PUT /refunds/{id}`; made by a refund link whose page the customer submits; created and cancelled.
//! Clients keep working through the kills (a request without an answer is sent again, as a PSP's
//! client would), while a supervisor kills a process with SIGKILL after a random delay, or starts it
//! armed with a random failpoint of the payout path (`EBB_FAILPOINTS`) that aborts it later, and
//! restarts whatever died. On PostgreSQL two processes share the database and are killed
//! independently; on SQLite there is one.
//!
//! The size comes from the environment: `EBB_CAMPAIGN_REFUNDS` (150), `EBB_CAMPAIGN_KILLS` (12) and
//! `EBB_CAMPAIGN_SEED` (from the clock). The seed is printed first, so a failing run replays with it
//! (the random choices replay; the moments the processes die depend on the machine's timing too).
//! CI runs the defaults; docs/RELIABILITY.md has the full campaign's command and figures.
//!
//! Partial payouts are not in the campaign: only the sandbox chain splits a payout, and its chain lives
//! in the `ebb serve` process, so a kill would take the chain with it.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::U256;
use ebb_store::Store;
use ed25519_dalek::SigningKey;
use reqwest::Method;
use serde_json::{json, Value};

use crate::chains::{Anvil, TestChain};
use crate::crash::{
    add_client_key, anvil_config, call, free_port, mine_a_block, payout_standing, wait_order_completed, wait_ready,
    FreshPostgres, Server,
};
use crate::helpers::rand_bytes;
use crate::webhooks::Receiver;

/// SplitMix64: small, seedable, and the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes20(&mut self) -> [u8; 20] {
        let mut b = [0u8; 20];
        for chunk in b.chunks_mut(8) {
            chunk.copy_from_slice(&self.next().to_le_bytes()[..chunk.len()]);
        }
        b
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    WithAddress,
    AddressLater,
    Link,
    Cancelled,
}

/// One refund of the campaign, decided before it starts.
#[derive(Debug, Clone)]
struct Planned {
    request_id: String,
    kind: Kind,
    /// Decimal USDT and the same in base units (6 decimals).
    amount: String,
    base_units: u128,
    /// A fresh address per refund: a transfer on chain names the refund it pays.
    address: String,
}

fn plan(rng: &mut Rng, n: usize) -> Vec<Planned> {
    (0..n)
        .map(|i| {
            let kind = match rng.below(10) {
                0..=3 => Kind::WithAddress,
                4..=5 => Kind::AddressLater,
                6..=7 => Kind::Link,
                _ => Kind::Cancelled,
            };
            // 0.01 to 2.00 USDT (Cobo's amounts have at most two decimals).
            let cents = u128::from(rng.below(200) + 1);
            let base_units = cents * 10_000;
            let amount = format!("{}.{:02}", cents / 100, cents % 100);
            let address = alloy::primitives::Address::from(rng.bytes20()).to_checksum(None);
            Planned { request_id: format!("c{i}"), kind, amount, base_units, address }
        })
        .collect()
}

/// The payout path's crash points (crates/ebb-worker/src/failpoint.rs).
const FAILPOINTS: [&str; 3] = ["payout.after_store", "payout.after_broadcast", "payout.before_settle"];

/// One `ebb serve` of the fleet: its config and port stay; the process comes and goes.
struct Process {
    config: PathBuf,
    log: PathBuf,
    port: u16,
    server: Option<Server>,
    armed: Option<String>,
}

struct Fleet {
    server_key: String,
    processes: Vec<Process>,
}

impl Fleet {
    fn spawn(&mut self, i: usize, failpoint: Option<String>) {
        let p = &mut self.processes[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&p.log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ebb"))
            .args(["serve", "--config", p.config.to_str().unwrap()])
            .env("EBB_SERVER_KEY", &self.server_key)
            .env("EBB_TEST_HOT_WALLET_KEY", crate::chains::HOT_WALLET_KEY)
            .env("EBB_FAILPOINTS", failpoint.as_deref().unwrap_or(""))
            .env("EBB_WEBHOOK_ALLOW_PRIVATE_ADDRESSES", "true")
            .env("EBB_WEBHOOK_TIMEOUT_MS", "2000")
            .env("EBB_WEBHOOK_RETRY_SCHEDULE_MS", "100,200,400,800,1600")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("ebb serve starts");
        p.server = Some(Server { child, base: format!("http://127.0.0.1:{}", p.port) });
        p.armed = failpoint;
    }

    fn bases(&self) -> Vec<String> {
        self.processes.iter().map(|p| format!("http://127.0.0.1:{}", p.port)).collect()
    }

    /// The last lines every process wrote, for a failure's message.
    fn logs(&self) -> String {
        self.processes
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p.log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                format!("{}:\n{}", p.log.display(), lines[lines.len().saturating_sub(15)..].join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[derive(Default, Debug)]
struct Kills {
    signalled: usize,
    failpoints: usize,
}

impl Kills {
    fn total(&self) -> usize {
        self.signalled + self.failpoints
    }
}

/// Sends a signed request to one of `bases`, again and again until some process answers (a kill
/// leaves requests without one). Panics after two minutes: a campaign that cannot reach ebb at all
/// has found a fault of its own.
async fn send(
    http: &reqwest::Client,
    bases: &[String],
    key: &SigningKey,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut attempt = 0usize;
    loop {
        let base = &bases[(attempt + path.len()) % bases.len()];
        if let Some(answer) = call(http, base, key, method.clone(), path, body.clone()).await {
            return answer;
        }
        assert!(Instant::now() < deadline, "no process answered {method} {path} for two minutes");
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What one client saw go wrong: an answer that no retry explains.
type Anomalies = Mutex<Vec<String>>;

struct Client<'a> {
    http: &'a reqwest::Client,
    bases: &'a [String],
    key: &'a SigningKey,
    merchant: &'a str,
    order: &'a str,
    anomalies: &'a Anomalies,
}

impl Client<'_> {
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        send(self.http, self.bases, self.key, method, path, body).await
    }

    fn anomaly(&self, what: String) {
        self.anomalies.lock().unwrap().push(what);
    }

    async fn refund(&self, refund_id: &str) -> Value {
        self.send(Method::GET, &format!("/v2/payments/refunds/{refund_id}"), None).await.1
    }

    /// Creates the refund (with or without its address); a resend after a lost answer is the same
    /// request id and gets the same refund.
    async fn create(&self, p: &Planned, with_address: bool) -> Option<String> {
        let mut body = json!({"request_id": p.request_id, "merchant_id": self.merchant, "payable_amount": p.amount,
                              "token_id": "ETH_USDT", "refund_type": "Merchant"});
        if with_address {
            body["to_address"] = json!(p.address);
        }
        match self.send(Method::POST, "/v2/payments/refunds", Some(body)).await {
            (201, r) => Some(r["refund_id"].as_str().unwrap().to_owned()),
            (s, r) => {
                self.anomaly(format!("{}: create answered {s}: {r}", p.request_id));
                None
            }
        }
    }

    /// Runs one planned refund to the point where only ebb has work left; returns its refund id.
    async fn run(&self, p: &Planned) -> Option<String> {
        match p.kind {
            Kind::WithAddress => self.create(p, true).await,
            Kind::AddressLater => {
                let id = self.create(p, false).await?;
                let path = format!("/v2/payments/refunds/{id}");
                let (s, r) = self.send(Method::PUT, &path, Some(json!({"to_address": p.address}))).await;
                // A resend after an update that took effect may be refused (the refund has moved on):
                // what counts is the address it has.
                if s != 200 && self.refund(&id).await["to_address"] != p.address {
                    self.anomaly(format!("{}: update answered {s}: {r}", p.request_id));
                }
                Some(id)
            }
            Kind::Cancelled => {
                let id = self.create(p, false).await?;
                let (s, r) = self.send(Method::PUT, &format!("/v2/payments/refunds/{id}/cancel"), None).await;
                if s != 200 && self.refund(&id).await["failed_reason"] != "Cancelled" {
                    self.anomaly(format!("{}: cancel answered {s}: {r}", p.request_id));
                }
                Some(id)
            }
            Kind::Link => self.by_link(p).await,
        }
    }

    /// A refund link made by API and submitted on its page by the customer's browser (no JavaScript:
    /// the form's hidden fields and the page's cookie, both from the same process).
    async fn by_link(&self, p: &Planned) -> Option<String> {
        let body = json!({
            "request_id": p.request_id,
            "business_info": {"order_id": self.order, "amount": p.amount, "refund_source": "Merchant",
                              "merchant_id": self.merchant},
            "display_info": {"developer_name": "Campaign Shop"},
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            assert!(Instant::now() < deadline, "{}: the link never took its address", p.request_id);
            // A lost answer loses the link's token: asking again makes a new link for the same refund.
            let (s, link) = self.send(Method::POST, "/v2/payments/links/refunds", Some(body.clone())).await;
            if s != 201 {
                self.anomaly(format!("{}: link create answered {s}: {link}", p.request_id));
                return None;
            }
            let path = format!("/v2/payments/refunds?request_id={}", p.request_id);
            let found = self.send(Method::GET, &path, None).await.1;
            let refund_id = found["data"][0]["refund_id"].as_str().expect("the link's refund").to_owned();
            if self.refund(&refund_id).await["to_address"] == p.address {
                return Some(refund_id);
            }
            let token = link["token"].as_str().unwrap();
            for base in self.bases {
                if self.submit_on_page(base, token, &p.address).await {
                    return Some(refund_id);
                }
                // No answer, or the process died between page and post: the refund may have taken the
                // address anyway.
                if self.refund(&refund_id).await["to_address"] == p.address {
                    return Some(refund_id);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Opens the link's page on `base` and posts its form with `address`; whether the page said yes.
    async fn submit_on_page(&self, base: &str, token: &str, address: &str) -> bool {
        let Ok(page) = self.http.get(format!("{base}/refund-link?token={token}")).send().await else { return false };
        let cookie = page
            .headers()
            .get(reqwest::header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .map(|c| c.split(';').next().unwrap_or("").to_owned());
        let Ok(html) = page.text().await else { return false };
        let field = |name: &str| {
            let needle = format!("name=\"{name}\" value=\"");
            let start = html.find(&needle)? + needle.len();
            Some(html[start..start + html[start..].find('"')?].to_owned())
        };
        let (Some(form_token), Some(csrf), Some(cookie)) = (field("token"), field("csrf"), cookie) else {
            return false;
        };
        let form = [("token", form_token.as_str()), ("csrf", csrf.as_str()), ("address", address)];
        let encoded: Vec<String> = form.iter().map(|(k, v)| format!("{k}={}", urlencode(v))).collect();
        let posted = self
            .http
            .post(format!("{base}/refund-link/submit"))
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(reqwest::header::COOKIE, cookie)
            .body(encoded.join("&"))
            .send()
            .await;
        posted.is_ok_and(|r| r.status().as_u16() == 303)
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The hot wallet's native balance (wei).
async fn native_balance(anvil: &Anvil) -> u128 {
    let hex = anvil.rpc("eth_getBalance", json!([anvil.hot_wallet(), "latest"])).await;
    u128::from_str_radix(hex.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// The figures a campaign ends with (printed through `Debug`).
#[derive(Debug, Default)]
#[allow(dead_code)]
struct Figures {
    refunds: usize,
    by_kind: HashMap<&'static str, usize>,
    kills: usize,
    kills_by_signal: usize,
    kills_by_failpoint: usize,
    duplicate_payouts: usize,
    transfers_not_matching_a_refund: usize,
    lost: usize,
    stuck: usize,
    events: usize,
    undelivered_events: usize,
    postings_sum_nonzero_tokens: usize,
    ledger_problems: usize,
    token_delta: u128,
    ledger_payouts: u128,
    native_delta: u128,
    gas_recorded: u128,
    seconds: u64,
}

async fn campaign(db_url: &str, processes: usize) {
    let seed = std::env::var("EBB_CAMPAIGN_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    let n = env_or("EBB_CAMPAIGN_REFUNDS", 150) as usize;
    let kill_target = env_or("EBB_CAMPAIGN_KILLS", 12) as usize;
    let backend = if db_url.starts_with("postgres") { "postgres" } else { "sqlite" };
    eprintln!("crash campaign on {backend}: seed {seed}, {n} refunds, {kill_target} kills, {processes} process(es)");
    let started = Instant::now();
    let mut rng = Rng(seed);
    let planned = plan(&mut rng, n);

    let Some(anvil) = Anvil::start_with(true).await else { return };
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let client_key = add_client_key(db_url);
    let out = Command::new(env!("CARGO_BIN_EXE_ebb"))
        .args(["webhooks", "add", "--url", &receiver.url, "--database-url", db_url])
        .output()
        .unwrap();
    assert!(out.status.success(), "ebb webhooks add: {}", String::from_utf8_lossy(&out.stderr));
    let mut fleet = Fleet { server_key: hex::encode(rand_bytes()), processes: Vec::new() };
    for i in 0..processes {
        let port = free_port();
        let config = anvil_config(dir.path(), &format!("ebb-{i}.toml"), db_url, port, &anvil);
        fleet.processes.push(Process {
            config,
            log: dir.path().join(format!("ebb-{i}.log")),
            port,
            server: None,
            armed: None,
        });
        fleet.spawn(i, None);
    }
    let bases = fleet.bases();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    for base in &bases {
        wait_ready(&http, base).await;
    }

    // The merchant's funds: one order paid on chain, large enough for every refund and link.
    let funded: u128 = (planned.iter().map(|p| p.base_units).sum::<u128>() / 1_000_000 + 1) * 1_000_000;
    let funded_decimal = (funded / 1_000_000).to_string();
    let (_, m) =
        send(&http, &bases, &client_key, Method::POST, "/v2/payments/merchants", Some(json!({"name": "campaign"})))
            .await;
    let merchant = m["merchant_id"].as_str().unwrap().to_owned();
    let (_, o) = send(
        &http,
        &bases,
        &client_key,
        Method::POST,
        "/v2/payments/orders",
        Some(json!({"merchant_id": merchant, "psp_order_code": "campaign", "payable_currency": "ETH_USDT",
                    "payable_amount": funded_decimal, "fee_amount": "0"})),
    )
    .await;
    let order = o["order_id"].as_str().unwrap().to_owned();
    anvil.pay(o["receive_address"].as_str().unwrap(), funded).await;
    wait_order_completed(&http, &bases[0], &client_key, &order).await;
    let hot_tokens_before = anvil.token_balance(&anvil.hot_wallet()).await;
    let hot_native_before = native_balance(&anvil).await;

    // The clients: 8 at once over the planned refunds.
    let anomalies: Anomalies = Mutex::default();
    let refund_ids: Mutex<HashMap<String, String>> = Mutex::default();
    let next = AtomicUsize::new(0);
    let clients_done = AtomicBool::new(false);
    let client = Client {
        http: &http,
        bases: &bases,
        key: &client_key,
        merchant: &merchant,
        order: &order,
        anomalies: &anomalies,
    };
    let worker = || async {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(p) = planned.get(i) else { return };
            if let Some(id) = client.run(p).await {
                refund_ids.lock().unwrap().insert(p.request_id.clone(), id);
            }
        }
    };
    let clients = async {
        futures::future::join_all((0..8).map(|_| worker())).await;
        clients_done.store(true, Ordering::Relaxed);
    };

    // The supervisor: kills after random delays, arms failpoints on restarts, restarts the dead. It
    // stops when the kills are done and the clients too.
    let kills = Arc::new(Mutex::new(Kills::default()));
    let fleet = Mutex::new(fleet);
    let supervisor = async {
        let mut next_kill = Instant::now() + Duration::from_millis(200 + rng.below(1_500));
        let mut last_mine = Instant::now();
        loop {
            let done = kills.lock().unwrap().total() >= kill_target;
            if done && clients_done.load(Ordering::Relaxed) {
                return;
            }
            {
                let mut f = fleet.lock().unwrap();
                for i in 0..f.processes.len() {
                    let exited = f.processes[i].server.as_mut().unwrap().child.try_wait().unwrap().is_some();
                    if exited {
                        let armed = f.processes[i].armed.clone();
                        assert!(armed.is_some(), "ebb serve {i} died without being killed:\n{}", f.logs());
                        kills.lock().unwrap().failpoints += 1;
                        let arm = arm(&mut rng, &kills, kill_target);
                        f.spawn(i, arm);
                    }
                }
                if !done && Instant::now() >= next_kill {
                    let i = rng.below(f.processes.len() as u64) as usize;
                    let mut server = f.processes[i].server.take().unwrap();
                    // SIGKILL: no shutdown, no flush.
                    server.child.kill().unwrap();
                    server.child.wait().unwrap();
                    kills.lock().unwrap().signalled += 1;
                    let arm = arm(&mut rng, &kills, kill_target);
                    f.spawn(i, arm);
                    next_kill = Instant::now() + Duration::from_millis(200 + rng.below(1_800));
                }
            }
            if last_mine.elapsed() > Duration::from_millis(500) {
                mine_a_block(&anvil).await;
                last_mine = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::join!(clients, supervisor);
    let anomalies = anomalies.into_inner().unwrap();
    let refund_ids = refund_ids.into_inner().unwrap();
    let mut fleet = fleet.into_inner().unwrap();
    // The campaign's kills are done: a process still armed is restarted without its failpoint.
    for i in 0..fleet.processes.len() {
        if fleet.processes[i].armed.is_some() {
            drop(fleet.processes[i].server.take());
            fleet.spawn(i, None);
        }
    }
    let kills = std::mem::take(&mut *kills.lock().unwrap());
    assert!(anomalies.is_empty(), "seed {seed}: {anomalies:#?}\n{}", fleet.logs());

    // Every refund reaches its end: paid, or cancelled.
    // A cancelled refund ends `Failed` with the reason `Cancelled`, as Cobo's do.
    let ended = |k: Kind, r: &Value| match k {
        Kind::Cancelled => r["status"] == "Failed" && r["failed_reason"] == "Cancelled",
        _ => r["status"] == "Completed",
    };
    let deadline = Instant::now() + Duration::from_secs(120 + n as u64 / 5);
    let mut figures = Figures { refunds: n, ..Figures::default() };
    let ends: HashMap<String, Value> = loop {
        let mut ends = HashMap::new();
        let mut open = 0;
        for p in &planned {
            let Some(id) = refund_ids.get(&p.request_id) else { continue };
            let r = send(&http, &bases, &client_key, Method::GET, &format!("/v2/payments/refunds/{id}"), None).await.1;
            if !ended(p.kind, &r) {
                open += 1;
            }
            ends.insert(p.request_id.clone(), r);
        }
        if open == 0 || Instant::now() >= deadline {
            break ends;
        }
        mine_a_block(&anvil).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    for p in &planned {
        *figures.by_kind.entry(format!("{:?}", p.kind).leak()).or_default() += 1;
        match ends.get(&p.request_id) {
            None => figures.lost += 1,
            Some(r) if !ended(p.kind, r) => {
                eprintln!("stuck: {} ({:?}) is {}: {r}", p.request_id, p.kind, r["status"]);
                figures.stuck += 1;
            }
            Some(r) if p.kind != Kind::Cancelled && r["to_address"] != p.address => {
                eprintln!("wrong address: {} ({:?}): {r}", p.request_id, p.kind);
                figures.lost += 1;
            }
            Some(_) => {}
        }
    }

    // Every event reaches the receiver: wait for the deliveries to settle, then compare ids.
    let store = Store::connect(db_url, 1).await.unwrap();
    let events: HashSet<String> = loop {
        let undelivered: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE status <> 'Success'")
            .fetch_one(store.pool())
            .await
            .unwrap();
        if undelivered == 0 || Instant::now() >= deadline + Duration::from_secs(30) {
            break sqlx::query_scalar::<_, String>("SELECT DISTINCT event_id FROM webhook_deliveries")
                .fetch_all(store.pool())
                .await
                .unwrap()
                .into_iter()
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let received: HashSet<String> = receiver.received().iter().map(|r| r.event_id()).collect();
    figures.events = events.len();
    figures.undelivered_events = events.difference(&received).count();
    let all_events: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(store.pool()).await.unwrap();

    // The chain against the refunds: one transfer per paid refund, of its amount, to its address.
    let on_chain = anvil.payouts_on_chain().await;
    let by_address: HashMap<String, &Planned> = planned.iter().map(|p| (p.address.to_lowercase(), p)).collect();
    let mut transfers_per_refund: HashMap<&str, usize> = HashMap::new();
    for (to, value) in &on_chain {
        match by_address.get(&to.to_checksum(None).to_lowercase()) {
            Some(p) if *value == U256::from(p.base_units) && p.kind != Kind::Cancelled => {
                *transfers_per_refund.entry(&p.request_id).or_default() += 1;
            }
            _ => figures.transfers_not_matching_a_refund += 1,
        }
    }
    figures.duplicate_payouts = transfers_per_refund.values().map(|n| n - 1).sum();

    // The ledger: every token's postings sum to zero, balances match the journal, and the payouts it
    // recorded are what left the hot wallet, gas included.
    figures.ledger_problems = store.verify_ledger().await.unwrap().len();
    let deltas: Vec<(String, String)> =
        sqlx::query_as("SELECT token_id, delta FROM postings").fetch_all(store.pool()).await.unwrap();
    let mut sums: HashMap<String, i128> = HashMap::new();
    for (token, delta) in deltas {
        *sums.entry(token).or_default() += delta.parse::<i128>().unwrap();
    }
    figures.postings_sum_nonzero_tokens = sums.values().filter(|s| **s != 0).count();
    let legs: Vec<(String, String, Option<String>)> =
        sqlx::query_as("SELECT status, amount, network_fee FROM payment_transactions WHERE direction = 'out'")
            .fetch_all(store.pool())
            .await
            .unwrap();
    figures.ledger_payouts =
        legs.iter().filter(|(s, ..)| s == "Completed").map(|(_, a, _)| a.parse::<u128>().unwrap()).sum();
    figures.gas_recorded = legs.iter().filter_map(|(_, _, f)| f.as_ref()).map(|f| f.parse::<u128>().unwrap()).sum();
    figures.token_delta = hot_tokens_before - anvil.token_balance(&anvil.hot_wallet()).await;
    figures.native_delta = hot_native_before - native_balance(&anvil).await;
    let standing = if figures.stuck > 0 { payout_standing(db_url, &anvil).await } else { String::new() };
    store.close().await;
    drop(fleet.processes.iter_mut().map(|p| p.server.take()).collect::<Vec<_>>());

    figures.kills = kills.total();
    figures.kills_by_signal = kills.signalled;
    figures.kills_by_failpoint = kills.failpoints;
    figures.seconds = started.elapsed().as_secs();
    let paid = planned.iter().filter(|p| p.kind != Kind::Cancelled).count();
    eprintln!(
        "crash campaign on {backend}, seed {seed}: {figures:#?}\n({} transfers on chain for {paid} paid refunds; \
         {all_events} events in all)",
        on_chain.len()
    );
    let logs = fleet.logs();
    let fail = |what: &str| format!("seed {seed}: {what}\n{figures:#?}\n{standing}\n{logs}");
    assert_eq!(figures.duplicate_payouts, 0, "{}", fail("a refund paid twice"));
    assert_eq!(figures.transfers_not_matching_a_refund, 0, "{}", fail("a transfer no refund asked for"));
    assert_eq!((figures.lost, figures.stuck), (0, 0), "{}", fail("refunds lost or stuck"));
    assert_eq!(on_chain.len(), paid, "{}", fail("every paid refund has its transfer"));
    assert_eq!(figures.undelivered_events, 0, "{}", fail("events never delivered"));
    assert_eq!(figures.events as i64, all_events, "{}", fail("every event has a delivery to the endpoint"));
    assert_eq!((figures.ledger_problems, figures.postings_sum_nonzero_tokens), (0, 0), "{}", fail("the ledger"));
    assert_eq!(figures.token_delta, figures.ledger_payouts, "{}", fail("hot-wallet tokens against the ledger"));
    assert_eq!(figures.native_delta, figures.gas_recorded, "{}", fail("hot-wallet gas against what ebb recorded"));
    assert!(figures.kills >= kill_target, "{}", fail("fewer kills than asked"));
}

/// A failpoint for the next start, while the campaign still needs kills: half the starts are armed.
fn arm(rng: &mut Rng, kills: &Mutex<Kills>, target: usize) -> Option<String> {
    if kills.lock().unwrap().total() >= target || rng.below(2) == 0 {
        return None;
    }
    let point = FAILPOINTS[rng.below(FAILPOINTS.len() as u64) as usize];
    Some(format!("{point}={}", 1 + rng.below(6)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_campaign_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    campaign(&Store::sqlite_url_for_dir(dir.path()), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_campaign_postgres_two_processes() {
    if !crate::helpers::postgres_wanted().await {
        return;
    }
    let db = FreshPostgres::create().await;
    campaign(&db.url, 2).await;
    db.drop().await;
}

#[test]
fn the_plan_replays_from_its_seed() {
    let a = plan(&mut Rng(42), 50);
    let b = plan(&mut Rng(42), 50);
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
    assert_ne!(format!("{a:?}"), format!("{:?}", plan(&mut Rng(43), 50)));
    let kinds: HashSet<Kind> = a.iter().map(|p| p.kind).collect();
    assert_eq!(kinds.len(), 4, "every kind of refund appears");
    let addresses: HashSet<&str> = a.iter().map(|p| p.address.as_str()).collect();
    assert_eq!(addresses.len(), 50, "one address per refund");
}
