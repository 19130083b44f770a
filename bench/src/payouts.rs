//! ebb's payout benchmark on anvil (automine), against a baseline measured in the same run.
//!
//! - baseline: a minimal alloy loop sending ERC-20 `transfer`s from a funded account, one after the
//!   other, each waited for (send + receipt): what one sender gets from this node;
//! - ebb: COUNT refunds are queued (created with payouts off), then `ebb serve` starts paying; the rate
//!   is COUNT / time until the last is `Completed` (confirmations = 1). Run for each COUNT (100 and
//!   1,000 by default): a per-refund cost that grew with the refunds already done would show as a lower
//!   rate at 1,000;
//! - latency: refunds created one at a time, each timed from the create call (`Pending`) until a GET
//!   reads `Completed`;
//! - gas used per payout, from the receipts.
//!
//! Usage: `cargo build --release -p ebb -p ebb-bench && target/release/ebb-bench-payouts`
//! (anvil from `npm ci --prefix scripts/node`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use anyhow::{bail, Context};
use clap::Parser;
use ebb_bench::{free_port, now_ms, peak_rss_mb, wait_ready, Client};
use ed25519_dalek::SigningKey;
use serde_json::json;

alloy::sol! {
    #[sol(rpc)]
    interface TestToken {
        function mint(address to, uint256 amount) external;
        function transfer(address to, uint256 amount) external returns (bool);
    }
}

/// anvil's development accounts 0 (token owner), 1 (ebb's hot wallet), 2 (customer), 3 (baseline sender).
const OWNER_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const HOT_WALLET_KEY: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const CUSTOMER_KEY: &str = "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804ccab365a";
const BASELINE_KEY: &str = "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6";
const REFUND_TO: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "target/release/ebb")]
    ebb: PathBuf,
    #[arg(long, default_value = "scripts/node/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")]
    anvil: PathBuf,
    /// Queued refunds per run.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    counts: Vec<usize>,
    /// Transfers in the baseline loop.
    #[arg(long, default_value_t = 300)]
    baseline: usize,
    #[arg(long, default_value = "target/bench/payouts.md")]
    out: PathBuf,
}

struct Anvil {
    child: Child,
    url: String,
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_anvil(bin: &Path) -> anyhow::Result<Anvil> {
    let mut child = Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {} (npm ci --prefix scripts/node)", bin.display()))?;
    let stdout = child.stdout.take().context("anvil stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(port) = line.strip_prefix("Listening on 127.0.0.1:") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(port.trim().to_owned());
                }
            }
        }
    });
    let port = rx.recv_timeout(Duration::from_secs(20)).context("anvil's port")?;
    Ok(Anvil { child, url: format!("http://127.0.0.1:{port}") })
}

fn provider(url: &str, key: &str) -> anyhow::Result<DynProvider> {
    let signer = PrivateKeySigner::from_str(key)?;
    Ok(ProviderBuilder::new().wallet(signer).connect_http(url.parse()?).erased())
}

fn address_of(key: &str) -> Address {
    PrivateKeySigner::from_str(key).expect("a valid key").address()
}

/// Sequential `transfer`s, each waited for: the rate one sender gets from this node.
async fn baseline(url: &str, token: Address, n: usize) -> anyhow::Result<(f64, u64)> {
    let sender = provider(url, BASELINE_KEY)?;
    let token = TestToken::new(token, sender);
    let to = Address::from_str(REFUND_TO)?;
    let start = Instant::now();
    let mut gas = 0u64;
    for _ in 0..n {
        let receipt = token.transfer(to, U256::from(10_000u64)).send().await?.get_receipt().await?;
        if !receipt.status() {
            bail!("baseline transfer reverted");
        }
        gas += receipt.gas_used;
    }
    Ok((n as f64 / start.elapsed().as_secs_f64(), gas / n as u64))
}

/// Kills the child when dropped: an error on the way must not leave `ebb serve` running.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct EbbRun {
    payouts_per_second: f64,
    seconds: f64,
    gas_per_payout: u64,
    latency_p50_ms: f64,
    latency_max_ms: f64,
    rss_mb: f64,
}

async fn completed(client: &Client) -> anyhow::Result<u64> {
    let (_, page) = client.call(reqwest::Method::GET, "/v2/payments/refunds?statuses=Completed&limit=1", None).await?;
    page["pagination"]["total_count"].as_u64().context("total_count")
}

async fn run_ebb(
    args: &Args,
    anvil: &Anvil,
    owner: &DynProvider,
    token: Address,
    count: usize,
) -> anyhow::Result<EbbRun> {
    let dir = tempfile::tempdir()?;
    let db = format!("sqlite://{}", dir.path().join("ebb.sqlite3").display());
    let port = free_port();
    let config = dir.path().join("ebb.toml");
    std::fs::write(
        &config,
        format!(
            "database_url = \"{db}\"\nlisten = \"127.0.0.1:{port}\"\nsandbox = false\npayout_interval_ms = 10\n\n\
             [[tokens]]\nid = \"ETH_USDT\"\nchain_id = \"ETH\"\nfamily = \"evm\"\nsymbol = \"USDT\"\ndecimals = 6\n\
             contract = \"{}\"\n\n[[chains]]\nchain_id = \"ETH\"\nrpc_url = \"{}\"\nevm_chain_id = 31337\n\
             confirmations = 1\nhot_wallet_key_env = \"EBB_BENCH_HOT_WALLET_KEY\"\n",
            token.to_checksum(None),
            anvil.url
        ),
    )?;
    let server_key = hex::encode(rand::random::<[u8; 32]>());
    let client_key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let status = Command::new(&args.ebb)
        .args([
            "keys",
            "add",
            "--public-key",
            &hex::encode(client_key.verifying_key().to_bytes()),
            "--database-url",
            &db,
        ])
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("ebb keys add failed");
    }
    let serve = |payouts: bool| {
        Command::new(&args.ebb)
            .args(["serve", "--config", config.to_str().unwrap()])
            .env("EBB_SERVER_KEY", &server_key)
            .env("EBB_BENCH_HOT_WALLET_KEY", HOT_WALLET_KEY)
            .env("EBB_PAYOUTS", if payouts { "true" } else { "false" })
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
    };
    let client = Arc::new(Client {
        http: reqwest::Client::new(),
        base: format!("http://127.0.0.1:{port}"),
        key: client_key,
        nonce: AtomicU64::new(now_ms()),
    });

    // Queue: a merchant paid on chain by a customer, then COUNT refunds, with payouts off.
    let server = Guard(serve(false)?);
    wait_ready(&client.http, &client.base).await?;
    let (_, m) = client.call(reqwest::Method::POST, "/v2/payments/merchants", Some(&json!({"name": "bench"}))).await?;
    let merchant = m["merchant_id"].as_str().context("merchant")?.to_owned();
    let (_, o) = client
        .call(
            reqwest::Method::POST,
            "/v2/payments/orders",
            Some(&json!({"merchant_id": merchant, "psp_order_code": "bench", "payable_currency": "ETH_USDT",
                         "payable_amount": "100000", "fee_amount": "0"})),
        )
        .await?;
    let order_id = o["order_id"].as_str().context("order")?.to_owned();
    let receive = Address::from_str(o["receive_address"].as_str().context("receive address")?)?;
    let customer = provider(&anvil.url, CUSTOMER_KEY)?;
    let amount = U256::from(100_000u64 * 1_000_000);
    TestToken::new(token, owner.clone()).mint(address_of(CUSTOMER_KEY), amount).send().await?.get_receipt().await?;
    TestToken::new(token, customer).transfer(receive, amount).send().await?.get_receipt().await?;
    loop {
        let (_, o) = client.call(reqwest::Method::GET, &format!("/v2/payments/orders/{order_id}"), None).await?;
        if o["status"] == "Completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let creators: Vec<_> = (0..16)
        .map(|_| {
            let (client, next, merchant) = (client.clone(), next.clone(), merchant.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= count {
                        return Ok::<_, anyhow::Error>(());
                    }
                    let body = json!({"request_id": format!("q-{i}"), "merchant_id": merchant, "payable_amount": "0.01",
                                      "token_id": "ETH_USDT", "refund_type": "Merchant", "to_address": REFUND_TO});
                    let (s, b) = client.call(reqwest::Method::POST, "/v2/payments/refunds", Some(&body)).await?;
                    if s != 201 {
                        bail!("create refund: {s} {b}");
                    }
                }
            })
        })
        .collect();
    for c in creators {
        c.await??;
    }
    drop(server);

    // Pay: start with payouts on and time until every queued refund is Completed.
    let server = Guard(serve(true)?);
    let start = Instant::now();
    wait_ready(&client.http, &client.base).await?;
    while completed(&client).await? < count as u64 {
        if start.elapsed() > Duration::from_secs(600) {
            bail!("payouts did not finish in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = start.elapsed().as_secs_f64();

    // Gas per payout, from the receipts of the payout transactions.
    let (_, page) = client.call(reqwest::Method::GET, "/v2/payments/refunds?limit=50", None).await?;
    let mut gas = Vec::new();
    for r in page["data"].as_array().context("refunds")? {
        let hash = B256::from_str(r["transactions"][0]["tx_hash"].as_str().context("tx hash")?)?;
        let receipt = owner.get_transaction_receipt(hash).await?.context("receipt")?;
        gas.push(receipt.gas_used);
    }

    // Latency: one refund at a time, create → Completed.
    let mut latencies = Vec::new();
    for i in 0..20 {
        let body = json!({"request_id": format!("l-{i}"), "merchant_id": merchant, "payable_amount": "0.01",
                          "token_id": "ETH_USDT", "refund_type": "Merchant", "to_address": REFUND_TO});
        let t = Instant::now();
        let (_, r) = client.call(reqwest::Method::POST, "/v2/payments/refunds", Some(&body)).await?;
        let id = r["refund_id"].as_str().context("refund id")?.to_owned();
        loop {
            let (_, r) = client.call(reqwest::Method::GET, &format!("/v2/payments/refunds/{id}"), None).await?;
            if r["status"] == "Completed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(|a, b| a.total_cmp(b));
    let rss_mb = peak_rss_mb(server.0.id());
    drop(server);
    Ok(EbbRun {
        payouts_per_second: count as f64 / seconds,
        seconds,
        gas_per_payout: gas.iter().sum::<u64>() / gas.len().max(1) as u64,
        latency_p50_ms: latencies[latencies.len() / 2],
        latency_max_ms: *latencies.last().unwrap(),
        rss_mb,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let anvil = start_anvil(&args.anvil)?;
    let owner = provider(&anvil.url, OWNER_KEY)?;
    let code = std::fs::read_to_string("crates/ebb/tests/fixtures/TestToken.bin").context("the test token bytecode")?;
    let deploy = TransactionRequest::default().with_deploy_code(alloy::hex::decode(code.trim())?);
    let token = owner.send_transaction(deploy).await?.get_receipt().await?.contract_address.context("deployed")?;
    // Gas money for the accounts that send transactions (only some of anvil's accounts start funded).
    for key in [HOT_WALLET_KEY, CUSTOMER_KEY, BASELINE_KEY] {
        let address = address_of(key).to_checksum(None);
        owner.raw_request::<_, serde_json::Value>("anvil_setBalance".into(), (address, "0x56bc75e2d63100000")).await?;
    }
    let supply = U256::from(10u64).pow(U256::from(15u64));
    for key in [HOT_WALLET_KEY, BASELINE_KEY] {
        TestToken::new(token, owner.clone()).mint(address_of(key), supply).send().await?.get_receipt().await?;
    }

    let (baseline_per_second, baseline_gas) = baseline(&anvil.url, token, args.baseline).await?;
    let mut report = format!(
        "Run: `target/release/ebb-bench-payouts` on {} cores; anvil 1.7.1 with automine, ebb on SQLite, confirmations 1.\n\n\
         | measurement | payouts/s | total | gas per transfer | ratio to baseline |\n|---|---|---|---|---|\n\
         | baseline: alloy loop, {} sequential `transfer`s (send + receipt) | {baseline_per_second:.0}/s | | {baseline_gas} | 100% |\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        args.baseline,
    );
    let mut runs = Vec::new();
    for &count in &args.counts {
        let run = run_ebb(&args, &anvil, &owner, token, count).await?;
        report.push_str(&format!(
            "| ebb: {count} queued refunds → Completed | {:.0}/s | {:.2} s | {} | {:.0}% |\n",
            run.payouts_per_second,
            run.seconds,
            run.gas_per_payout,
            100.0 * run.payouts_per_second / baseline_per_second
        ));
        runs.push((count, run));
    }
    report.push_str(
        "\n| run | Pending → Completed p50 | max (20 refunds, one at a time) | ebb peak RSS |\n|---|---|---|---|\n",
    );
    for (count, run) in &runs {
        report.push_str(&format!(
            "| after {count} | {:.1} ms | {:.1} ms | {:.1} MB |\n",
            run.latency_p50_ms, run.latency_max_ms, run.rss_mb
        ));
    }
    if let [(a, first), .., (b, last)] = runs.as_slice() {
        report.push_str(&format!(
            "\nRate at {b} queued ÷ rate at {a}: {:.0}% (a per-refund cost growing with the refunds already done would push this well below 100%).\n",
            100.0 * last.payouts_per_second / first.payouts_per_second
        ));
    }
    println!("{report}");
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, &report)?;
    Ok(())
}
