//! ebb's webhook benchmark: dispatch throughput from a backlog and state-change-to-arrival latency,
//! against a baseline measured in the same run.
//!
//! - Receiver: an axum handler on 127.0.0.1 that answers 200 at once and notes each arrival.
//! - Baseline: the same receiver hit by a plain loop of POSTs from one client, with a body of the size
//!   ebb sends.
//! - Throughput: EVENTS order events are queued by an API-only `ebb serve` (webhooks off); then an
//!   `ebb serve` with the dispatcher starts, and the rate is EVENTS over first-to-last arrival.
//! - Latency: with the dispatcher running and nothing queued, orders are created one at a time at
//!   about 100 a second; latency is arrival time minus the event's `created_timestamp`, which ebb takes
//!   inside the transaction of the change, just before its commit.
//!
//! Usage: `cargo build --release -p ebb -p ebb-bench && target/release/ebb-bench-webhooks --ebb target/release/ebb`

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use ebb_bench::{ebb_cli, free_port, now_ms, wait_ready, Client, Stats};
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "target/release/ebb")]
    ebb: PathBuf,
    #[arg(long, env = "EBB_TEST_POSTGRES_URL", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres: String,
    /// Events queued for the throughput run.
    #[arg(long, default_value_t = 10_000)]
    events: usize,
    /// Orders created one by one for the latency run.
    #[arg(long, default_value_t = 500)]
    latency_events: usize,
    #[arg(long, default_value = "target/bench/webhooks.md")]
    out: PathBuf,
}

/// Arrivals: (arrival ms, the event's created_timestamp ms).
type Arrivals = Arc<Mutex<Vec<(u64, u64)>>>;

async fn start_receiver() -> anyhow::Result<(String, Arrivals)> {
    let arrivals: Arrivals = Arc::default();
    let seen = arrivals.clone();
    let url = ebb_bench::start_receiver(move |event| {
        seen.lock().unwrap().push((now_ms(), event["created_timestamp"].as_u64().unwrap_or(0)));
    })
    .await?;
    Ok((url, arrivals))
}

fn serve(
    ebb: &PathBuf,
    db: &str,
    server_key: &str,
    port: u16,
    webhooks: bool,
) -> anyhow::Result<tokio::process::Child> {
    Ok(tokio::process::Command::new(ebb)
        .arg("serve")
        .env("EBB_DATABASE_URL", db)
        .env("EBB_SERVER_KEY", server_key)
        .env("EBB_LISTEN", format!("127.0.0.1:{port}"))
        .env("EBB_SANDBOX", "true")
        .env("EBB_PAYOUTS", "false")
        .env("EBB_WEBHOOKS", if webhooks { "true" } else { "false" })
        .env("EBB_WEBHOOK_ALLOW_PRIVATE_ADDRESSES", "true")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()?)
}

async fn create_orders(
    client: &Arc<Client>,
    merchant: &str,
    tag: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, next, merchant, tag) = (client.clone(), next.clone(), merchant.to_owned(), tag.to_owned());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as usize;
                    if i >= n {
                        return Ok::<(), anyhow::Error>(());
                    }
                    let body = json!({"merchant_id": merchant, "psp_order_code": format!("{tag}-{i}"),
                                      "payable_currency": "ETH_USDT", "payable_amount": "10", "fee_amount": "0.1"});
                    let (s, v) = client.call(reqwest::Method::POST, "/v2/payments/orders", Some(&body)).await?;
                    if s != 201 {
                        bail!("create order: {s} {v}");
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(())
}

struct Run {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn run_ebb(args: &Args, db: &str, url: &str, arrivals: &Arrivals) -> anyhow::Result<Run> {
    let server_key = hex::encode(rand::random::<[u8; 32]>());
    let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    ebb_cli(
        &args.ebb,
        &["keys", "add", "--public-key", &hex::encode(key.verifying_key().to_bytes()), "--database-url", db],
    )?;
    ebb_cli(
        &args.ebb,
        &["webhooks", "add", "--url", url, "--events", "payment.order.status.updated", "--database-url", db],
    )?;
    let port = free_port();
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let client =
        Arc::new(Client { http, base: format!("http://127.0.0.1:{port}"), key, nonce: AtomicU64::new(now_ms()) });

    // The backlog, queued with the dispatcher off.
    let mut api = serve(&args.ebb, db, &server_key, port, false)?;
    wait_ready(&client.http, &client.base).await?;
    let (_, m) = client.call(reqwest::Method::POST, "/v2/payments/merchants", Some(&json!({"name": "hooks"}))).await?;
    let merchant = m["merchant_id"].as_str().context("merchant")?.to_owned();
    create_orders(&client, &merchant, "backlog", args.events, 16).await?;
    api.kill().await.ok();
    api.wait().await.ok();
    arrivals.lock().unwrap().clear();

    let mut ebb = serve(&args.ebb, db, &server_key, port, true)?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while arrivals.lock().unwrap().len() < args.events {
        if Instant::now() > deadline {
            bail!("only {} of {} events arrived", arrivals.lock().unwrap().len(), args.events);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let per_second = {
        let a = arrivals.lock().unwrap();
        let first = a.iter().map(|x| x.0).min().unwrap_or(0);
        let last = a.iter().map(|x| x.0).max().unwrap_or(0);
        a.len() as f64 / ((last - first).max(1) as f64 / 1000.0)
    };

    // Latency with nothing queued: one order at a time, about 100 a second.
    wait_ready(&client.http, &client.base).await?;
    arrivals.lock().unwrap().clear();
    for i in 0..args.latency_events {
        let body = json!({"merchant_id": merchant, "psp_order_code": format!("latency-{i}"),
                          "payable_currency": "ETH_USDT", "payable_amount": "10", "fee_amount": "0.1"});
        client.call(reqwest::Method::POST, "/v2/payments/orders", Some(&body)).await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while arrivals.lock().unwrap().len() < args.latency_events && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Stats keeps microseconds; arrivals are in milliseconds.
    let latencies_us: Vec<u64> =
        arrivals.lock().unwrap().iter().map(|(at, created)| at.saturating_sub(*created) * 1000).collect();
    ebb.kill().await.ok();
    if latencies_us.len() < args.latency_events {
        bail!("only {} of {} latency events arrived", latencies_us.len(), args.latency_events);
    }
    let latency = Stats { ops: latencies_us.len() as u64, seconds: 0.0, latencies_us, errors: 0, cpu_busy: None };
    Ok(Run { per_second, p50_ms: latency.pct_ms(0.5), p99_ms: latency.pct_ms(0.99) })
}

/// A plain loop of POSTs from one client to the same receiver, with a body of the size ebb sends.
async fn baseline(url: &str, n: usize, arrivals: &Arrivals) -> anyhow::Result<f64> {
    let http = reqwest::Client::new();
    let body =
        json!({"event_id": "E0", "url": url, "created_timestamp": now_ms(), "type": "payment.order.status.updated",
                      "data": {"data_type": "PaymentOrder", "padding": "x".repeat(900)}, "sequence": 1})
        .to_string();
    let started = Instant::now();
    for _ in 0..n {
        let r = http.post(url).header("content-type", "application/json").body(body.clone()).send().await?;
        r.bytes().await?;
    }
    // A throughput (POSTs per second), not an amount of money.
    let posts_per_second = n as f64 / started.elapsed().as_secs_f64();
    arrivals.lock().unwrap().clear();
    Ok(posts_per_second)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (url, arrivals) = start_receiver().await?;
    let base = baseline(&url, args.events, &arrivals).await?;
    let dir = tempfile::tempdir()?;
    let sqlite = run_ebb(&args, &format!("sqlite://{}/bench.sqlite3", dir.path().display()), &url, &arrivals).await?;
    let pg_name = format!("ebb_bench_{}", uuid::Uuid::new_v4().simple());
    let admin = ebb_store::Store::connect(&args.postgres, 1).await?;
    sqlx::query(&format!("CREATE DATABASE {pg_name}")).execute(admin.pool()).await?;
    let pg_url = format!("{}/{pg_name}", &args.postgres[..args.postgres.rfind('/').context("a database in the URL")?]);
    let pg = run_ebb(&args, &pg_url, &url, &arrivals).await;
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)")).execute(admin.pool()).await;
    let pg = pg?;
    let mut report = String::new();
    report.push_str(&format!(
        "| | events/s from a backlog of {} | vs baseline | latency p50 | latency p99 |\n|---|---|---|---|---|\n",
        args.events
    ));
    report.push_str(&format!("| baseline: one client, a loop of POSTs | {base:.0} | 100% | | |\n"));
    for (name, r) in [("ebb, SQLite", &sqlite), ("ebb, PostgreSQL", &pg)] {
        report.push_str(&format!(
            "| {name} | {:.0} | {:.0}% | {:.0} ms | {:.0} ms |\n",
            r.per_second,
            100.0 * r.per_second / base,
            r.p50_ms,
            r.p99_ms
        ));
    }
    println!("{report}");
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, report)?;
    Ok(())
}
