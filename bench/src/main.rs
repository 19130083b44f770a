//! ebb's benchmark: one run measures ebb and the baselines it is judged against, on this machine.
//!
//! For each backend (SQLite, PostgreSQL) it starts the given `ebb serve` binary as its own process,
//! then drives it with CONCURRENCY clients that sign every request as Cobo's SDK does:
//! - create-refund throughput and p50/p99 latency;
//! - get-refund throughput and p50/p99 latency;
//! - ebb's peak resident memory (VmHWM).
//!
//! Baselines, same run, same machine:
//! - the backend's raw durable single-row commit rate with ebb's settings (SQLite: WAL,
//!   synchronous=FULL, one writer committing one row per transaction, through sqlx and through
//!   rusqlite, the ratio taken against the faster; PostgreSQL: CONCURRENCY connections each
//!   committing one row per transaction);
//! - a hello-world axum handler driven by the same load generator.
//!
//! Usage: `cargo build --release -p ebb -p ebb-bench && target/release/ebb-bench --ebb target/release/ebb`

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use ebb_api::auth::double_sha256;
use ebb_bench::{
    busy_share, cpu_ticks, drive, free_port, funded_merchant, now_ms, peak_rss_mb, wait_ready, Client, Stats,
};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::json;
use sqlx::{Connection, Executor};

#[derive(Parser)]
struct Args {
    /// The ebb binary to measure (build it with --release).
    #[arg(long, default_value = "target/release/ebb")]
    ebb: PathBuf,
    /// PostgreSQL server for the PostgreSQL run (a database is created and dropped).
    #[arg(long, env = "EBB_TEST_POSTGRES_URL", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres: String,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Where to write the markdown report (also printed).
    #[arg(long, default_value = "target/bench/results.md")]
    out: PathBuf,
}

struct EbbRun {
    /// Refunds spread over `concurrency` merchants, as a PSP's traffic is.
    create: Stats,
    /// Every refund against one merchant's balance: its balance row is the contention point.
    create_hot: Stats,
    get: Stats,
    rss_mb: f64,
}

async fn run_ebb(args: &Args, database_url: &str) -> anyhow::Result<EbbRun> {
    let port = free_port();
    let server_key = hex::encode(rand::random::<[u8; 32]>());
    let client_key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let status = std::process::Command::new(&args.ebb)
        .args([
            "keys",
            "add",
            "--public-key",
            &hex::encode(client_key.verifying_key().to_bytes()),
            "--database-url",
            database_url,
        ])
        .stdout(Stdio::null())
        .status()
        .context("running ebb keys add")?;
    if !status.success() {
        bail!("ebb keys add failed");
    }
    let mut child = tokio::process::Command::new(&args.ebb)
        .arg("serve")
        .env("EBB_DATABASE_URL", database_url)
        .env("EBB_SERVER_KEY", &server_key)
        .env("EBB_LISTEN", format!("127.0.0.1:{port}"))
        .env("EBB_SANDBOX", "true")
        .env("EBB_SANDBOX_BLOCK_MS", "100")
        // Only the API is measured here: refunds stay where the API puts them.
        .env("EBB_PAYOUTS", "false")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .context("starting ebb serve")?;
    let pid = child.id().context("ebb pid")?;
    let client = Arc::new(Client {
        http: reqwest::Client::builder().pool_max_idle_per_host(args.concurrency * 2).build()?,
        base: format!("http://127.0.0.1:{port}"),
        key: client_key,
        nonce: AtomicU64::new(now_ms()),
    });
    wait_ready(&client.http, &client.base).await?;
    let mut merchants = Vec::new();
    for i in 0..args.concurrency {
        merchants.push(funded_merchant(&client, &format!("bench {i}")).await?.0);
    }
    let merchants = Arc::new(merchants);
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let create_refunds = |spread: bool, tag: &'static str| {
        let (client, merchants, run_id) = (client.clone(), merchants.clone(), run_id.clone());
        drive(args.concurrency, args.seconds, move |n| {
            let merchant = if spread { merchants[n as usize % merchants.len()].clone() } else { merchants[0].clone() };
            let (client, run_id) = (client.clone(), run_id.clone());
            async move {
                let body = json!({"request_id": format!("{run_id}-{tag}-{n}"), "merchant_id": merchant, "payable_amount": "0.01",
                                  "token_id": "ETH_USDT", "refund_type": "Merchant",
                                  "to_address": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"});
                matches!(client.call(reqwest::Method::POST, "/v2/payments/refunds", Some(&body)).await, Ok((201, _)))
            }
        })
    };
    // Progress on stderr, with ebb's pid, so a profiler can be attached to one phase.
    eprintln!("ebb pid {pid}: create refund (spread)");
    let create = create_refunds(true, "spread").await;
    eprintln!("ebb pid {pid}: create refund (hot)");
    let create_hot = create_refunds(false, "hot").await;
    let (_, listed) = client.call(reqwest::Method::GET, "/v2/payments/refunds?limit=1", None).await?;
    let refund_id = listed["data"][0]["refund_id"].as_str().context("a refund to get")?.to_owned();
    eprintln!("ebb pid {pid}: get refund");
    let get = {
        let client = client.clone();
        drive(args.concurrency, args.seconds, move |_| {
            let (client, path) = (client.clone(), format!("/v2/payments/refunds/{refund_id}"));
            async move { matches!(client.call(reqwest::Method::GET, &path, None).await, Ok((200, _))) }
        })
        .await
    };
    let rss_mb = peak_rss_mb(pid);
    child.kill().await.ok();
    Ok(EbbRun { create, create_hot, get, rss_mb })
}

/// The Ed25519 work of one signed request on one core: the client signs it, ebb verifies it and signs
/// its response. `cores` divided by this is what crypto alone leaves room for.
fn ed25519_per_request_us() -> f64 {
    let client = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let server = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let vk = client.verifying_key();
    let msg = double_sha256(b"GET|/v2/payments/refunds/R0123456789abcdef01234567|1700000000000||");
    let n = 2000;
    let start = Instant::now();
    for _ in 0..n {
        let sig = client.sign(&msg);
        ed25519_dalek::Verifier::verify(&vk, &msg, &sig).expect("verifies");
        std::hint::black_box(server.sign(&msg));
    }
    start.elapsed().as_secs_f64() * 1e6 / n as f64
}

/// SQLite with ebb's settings through rusqlite, the library ebb's SQLite writer uses: one connection
/// on this thread, one row per durable commit. No thread hand-off per statement, so this is SQLite's
/// own commit rate (and the stricter baseline).
fn sqlite_raw_commits_direct(seconds: u64, dir: &std::path::Path) -> anyhow::Result<Stats> {
    let conn = rusqlite::Connection::open(dir.join("raw-direct.sqlite3"))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)",
    )?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (start, ticks) = (Instant::now(), cpu_ticks());
    let mut lat = Vec::new();
    while Instant::now() < deadline {
        let t = Instant::now();
        conn.prepare_cached("INSERT INTO t (v) VALUES (?1)")?.execute(["x"])?;
        lat.push(t.elapsed().as_micros() as u64);
    }
    let cpu_busy = busy_share(ticks, cpu_ticks());
    Ok(Stats { ops: lat.len() as u64, seconds: start.elapsed().as_secs_f64(), latencies_us: lat, errors: 0, cpu_busy })
}

/// SQLite with ebb's settings through sqlx: one writer, one row per durable commit.
async fn sqlite_raw_commits(seconds: u64, dir: &std::path::Path) -> anyhow::Result<Stats> {
    let url = format!("sqlite://{}?mode=rwc", dir.join("raw.sqlite3").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await?;
    conn.execute("PRAGMA journal_mode = WAL").await?;
    conn.execute("PRAGMA synchronous = FULL").await?;
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)").await?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (start, ticks) = (Instant::now(), cpu_ticks());
    let mut lat = Vec::new();
    while Instant::now() < deadline {
        let t = Instant::now();
        sqlx::query("INSERT INTO t (v) VALUES ($1)").bind("x").execute(&mut conn).await?;
        lat.push(t.elapsed().as_micros() as u64);
    }
    let cpu_busy = busy_share(ticks, cpu_ticks());
    Ok(Stats { ops: lat.len() as u64, seconds: start.elapsed().as_secs_f64(), latencies_us: lat, errors: 0, cpu_busy })
}

/// PostgreSQL: `concurrency` connections, one row per commit each (the server's own group commit applies).
async fn postgres_raw_commits(seconds: u64, concurrency: usize, url: &str) -> anyhow::Result<Stats> {
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(concurrency as u32).connect(url).await?;
    sqlx::query("CREATE TABLE raw_commits (id BIGSERIAL PRIMARY KEY, v TEXT NOT NULL)").execute(&pool).await?;
    let stats = drive(concurrency, seconds, move |_| {
        let pool = pool.clone();
        async move { sqlx::query("INSERT INTO raw_commits (v) VALUES ($1)").bind("x").execute(&pool).await.is_ok() }
    })
    .await;
    Ok(stats)
}

async fn hello_world(seconds: u64, concurrency: usize) -> anyhow::Result<Stats> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "Hello, World!" }));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::builder().pool_max_idle_per_host(concurrency * 2).build()?;
    let stats = drive(concurrency, seconds, move |_| {
        let http = http.clone();
        async move { http.get(format!("http://{addr}/")).send().await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    server.abort();
    Ok(stats)
}

fn row(name: &str, s: &Stats) -> String {
    format!(
        "| {name} | {:.0}/s | {:.2} ms | {:.2} ms | {} | {} |\n",
        s.per_second(),
        s.pct_ms(0.5),
        s.pct_ms(0.99),
        s.errors,
        s.cpu_busy.map(|b| format!("{:.0}%", 100.0 * b)).unwrap_or_else(|| "?".into())
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tmp = std::env::temp_dir().join(format!("ebb-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&tmp)?;
    let mut report = String::new();
    report.push_str(&format!(
        "Run: `target/release/ebb-bench --seconds {} --concurrency {}` on {} cores, {} s per measurement.\n\n",
        args.seconds,
        args.concurrency,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        args.seconds
    ));

    let hello = hello_world(args.seconds, args.concurrency).await?;
    report.push_str("| measurement | throughput | p50 | p99 | errors | CPU busy |\n|---|---|---|---|---|---|\n");
    report.push_str(&row("baseline: hello-world axum handler", &hello));

    let sqlite_raw_sqlx = sqlite_raw_commits(args.seconds, &tmp).await?;
    report.push_str(&row("baseline: SQLite raw durable commits (1 writer, sqlx)", &sqlite_raw_sqlx));
    let sqlite_raw = sqlite_raw_commits_direct(args.seconds, &tmp)?;
    report.push_str(&row("baseline: SQLite raw durable commits (1 writer, rusqlite)", &sqlite_raw));
    // The ratio is taken against the faster of the two: the stricter baseline.
    let sqlite_raw = if sqlite_raw.per_second() >= sqlite_raw_sqlx.per_second() { sqlite_raw } else { sqlite_raw_sqlx };
    let sqlite = run_ebb(&args, &format!("sqlite://{}", tmp.join("ebb.sqlite3").display())).await?;
    report.push_str(&row("ebb SQLite: create refund (16 merchants)", &sqlite.create));
    report.push_str(&row("ebb SQLite: create refund (1 hot merchant)", &sqlite.create_hot));
    report.push_str(&row("ebb SQLite: get refund", &sqlite.get));

    let pg_name = format!("ebb_bench_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&args.postgres).await?;
    sqlx::query(&format!("CREATE DATABASE {pg_name}")).execute(&admin).await?;
    let pg_url = format!("{}/{pg_name}", &args.postgres[..args.postgres.rfind('/').context("database in URL")?]);
    let pg_raw = postgres_raw_commits(args.seconds, args.concurrency, &pg_url).await?;
    report.push_str(&row(
        &format!("baseline: PostgreSQL raw durable commits ({} connections)", args.concurrency),
        &pg_raw,
    ));
    let pg = run_ebb(&args, &pg_url).await;
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)")).execute(&admin).await;
    let pg = pg?;
    report.push_str(&row("ebb PostgreSQL: create refund (16 merchants)", &pg.create));
    report.push_str(&row("ebb PostgreSQL: create refund (1 hot merchant)", &pg.create_hot));
    report.push_str(&row("ebb PostgreSQL: get refund", &pg.get));

    report.push_str("\n| target | SQLite | PostgreSQL | required |\n|---|---|---|---|\n");
    let pct = |a: f64, b: f64| format!("{:.0}%", 100.0 * a / b);
    report.push_str(&format!(
        "| create ÷ raw commit rate (16 merchants) | {} | {} | ≥ 50% |\n",
        pct(sqlite.create.per_second(), sqlite_raw.per_second()),
        pct(pg.create.per_second(), pg_raw.per_second())
    ));
    report.push_str(&format!(
        "| create rate | {:.0}/s | {:.0}/s | ≥ 1,000/s |\n",
        sqlite.create.per_second(),
        pg.create.per_second()
    ));
    report.push_str(&format!(
        "| get ÷ hello-world | {} | {} | ≥ 40% |\n",
        pct(sqlite.get.per_second(), hello.per_second()),
        pct(pg.get.per_second(), hello.per_second())
    ));
    report.push_str(&format!(
        "| get rate | {:.0}/s | {:.0}/s | ≥ 10,000/s |\n",
        sqlite.get.per_second(),
        pg.get.per_second()
    ));
    report.push_str(&format!(
        "| get p99 | {:.2} ms | {:.2} ms | < 5 ms |\n",
        sqlite.get.pct_ms(0.99),
        pg.get.pct_ms(0.99)
    ));
    report.push_str(&format!(
        "| create rate, 1 hot merchant | {:.0}/s | {:.0}/s | (no target) |\n",
        sqlite.create_hot.per_second(),
        pg.create_hot.per_second()
    ));
    report.push_str(&format!("| ebb peak RSS | {:.1} MB | {:.1} MB | < 64 MB |\n", sqlite.rss_mb, pg.rss_mb));

    let crypto_us = ed25519_per_request_us();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    report.push_str(&format!(
        "\nEd25519 per signed request (client sign + ebb verify + ebb sign), one core: {crypto_us:.1} µs, \
         so signing alone caps a {cores}-core machine at {:.0} requests/s ({:.0}% of the hello-world rate).\n",
        cores * 1e6 / crypto_us,
        100.0 * cores * 1e6 / crypto_us / hello.per_second()
    ));
    // A signed request does at least what a hello-world request does (HTTP on both sides) plus its
    // Ed25519 work, on the same cores: that bounds any signed endpoint's rate, and so its share of the
    // hello-world rate, whatever the rest of it costs (the share is higher by 1/busy where hello-world
    // left cores idle).
    if let Some(busy) = hello.cpu_busy {
        let hello_us = busy * cores * 1e6 / hello.per_second();
        report.push_str(&format!(
            "A hello-world request costs {hello_us:.1} µs of CPU in all (client and server, {:.0}% of {cores} cores busy), \
             so a signed request, at least {hello_us:.1} + {crypto_us:.1} µs, can reach at most {:.0}% of the \
             hello-world rate on this machine.\n",
            100.0 * busy,
            100.0 * hello_us / ((hello_us + crypto_us) * busy)
        ));
    }
    println!("{report}");
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, &report)?;
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
