//! The console's CSV export and ebb's memory: a merchant with ROWS refunds and another with ROWS / 10
//! are put in the database, and an operator downloads each one's refunds CSV while ebb's resident memory
//! is sampled every 10 ms. A streamed export holds one batch at a time, so the peak above idle must be
//! the same for both sizes: the figure is the big export's growth next to the small one's, on each
//! backend, in one run.
//!
//! Usage: `cargo build -p ebb -p ebb-bench && target/debug/ebb-bench-export --ebb target/debug/ebb`
//! (memory does not depend on the build's optimisation; a release build gives the same shape faster).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use ebb_bench::{free_port, wait_ready};
use ebb_store::Store;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "target/debug/ebb")]
    ebb: PathBuf,
    #[arg(long, env = "EBB_TEST_POSTGRES_URL", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres: String,
    /// Refunds of the big export (the small one has a tenth).
    #[arg(long, default_value_t = 100_000)]
    rows: i64,
    #[arg(long, default_value = "target/bench/export.md")]
    out: PathBuf,
}

const EMAIL: &str = "bench@ebb.dev";
const PASSWORD: &str = "bench password, not secret";

/// Resident memory of `pid` now, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse().ok())
        .unwrap_or(0)
}

/// Fills the database: two merchants, `rows` and `rows / 10` completed refunds. Returns their ids.
async fn fill(url: &str, rows: i64) -> anyhow::Result<(String, String)> {
    let store = Store::connect(url, 2).await?;
    store.migrate().await?;
    let mut ids = Vec::new();
    for (name, n) in [("big", rows), ("small", rows / 10)] {
        let m = ebb_app::merchants::create(
            &store,
            &ebb_app::Actor::psp("bench"),
            ebb_app::merchants::NewMerchant {
                name: name.into(),
                wallet_id: String::new(),
                developer_fee_rate: "0".into(),
                wallet_setup: "Default".into(),
            },
        )
        .await?;
        let columns = "refund_id, request_id, idem_scope, request_fingerprint, merchant_id, token_id, chain_id, \
                       amount, to_address, status, refund_type, charge_merchant_fee, initiator, created_at, updated_at";
        let values = format!(
            "'R{name}' || i, '{name}-' || i, '*', '', '{id}', 'ETH_USDT', 'ETH', '1000000', \
             '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed', 'Completed', 'Merchant', 0, 'bench', 1700000000 + i, \
             1700000000 + i",
            id = m.merchant_id
        );
        let sql = match store.backend() {
            ebb_store::Backend::Sqlite => format!(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
                 INSERT INTO refunds ({columns}) SELECT {values} FROM n"
            ),
            ebb_store::Backend::Postgres => {
                format!("INSERT INTO refunds ({columns}) SELECT {values} FROM generate_series(1, {n}) AS i")
            }
        };
        sqlx::query(&sql).execute(store.pool()).await?;
        ids.push(m.merchant_id);
    }
    ebb_app::operators::ensure_dev_admin(&store, EMAIL, PASSWORD).await?;
    store.close().await;
    Ok((ids[0].clone(), ids[1].clone()))
}

fn cookies(resp: &reqwest::Response, jar: &mut Vec<String>) {
    for c in resp.headers().get_all(reqwest::header::SET_COOKIE) {
        let kv = c.to_str().unwrap_or_default().split(';').next().unwrap_or_default().to_owned();
        let name = kv.split('=').next().unwrap_or_default().to_owned();
        jar.retain(|k| !k.starts_with(&format!("{name}=")));
        jar.push(kv);
    }
}

/// Logs in as the bench's operator; returns the cookie header.
async fn login(http: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let mut jar = Vec::new();
    let page = http.get(format!("{base}/console/login")).send().await?;
    cookies(&page, &mut jar);
    let body = page.text().await?;
    let start = body.find("name=\"csrf\" value=\"").context("the login form")? + 19;
    let csrf = &body[start..start + body[start..].find('"').context("the csrf field")?];
    let form = [("email", EMAIL), ("password", PASSWORD), ("code", ""), ("csrf", csrf)];
    let resp = http.post(format!("{base}/console/login")).header("Cookie", jar.join("; ")).form(&form).send().await?;
    if resp.status() != reqwest::StatusCode::SEE_OTHER {
        bail!("login: {}", resp.status());
    }
    cookies(&resp, &mut jar);
    Ok(jar.join("; "))
}

struct Export {
    rows: i64,
    bytes: u64,
    seconds: f64,
    peak_kib: u64,
}

/// Downloads one merchant's refunds CSV, counting its rows, while sampling ebb's memory.
async fn export(http: &reqwest::Client, base: &str, cookie: &str, merchant: &str, pid: u32) -> anyhow::Result<Export> {
    let peak = Arc::new(AtomicU64::new(rss_kib(pid)));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let started = Instant::now();
    let mut resp = http
        .get(format!("{base}/console/export/refunds.csv?merchant_id={merchant}"))
        .header("Cookie", cookie)
        .send()
        .await?;
    if !resp.status().is_success() {
        bail!("export: {}", resp.status());
    }
    let (mut bytes, mut lines) = (0u64, 0i64);
    while let Some(chunk) = resp.chunk().await? {
        bytes += chunk.len() as u64;
        lines += chunk.iter().filter(|b| **b == b'\n').count() as i64;
    }
    let seconds = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    sampler.await?;
    Ok(Export { rows: lines - 1, bytes, seconds, peak_kib: peak.load(Ordering::Relaxed) })
}

async fn run(args: &Args, url: &str) -> anyhow::Result<(u64, Export, Export)> {
    let (big, small) = fill(url, args.rows).await?;
    let port = free_port();
    let key = hex::encode(rand::random::<[u8; 32]>());
    let mut child = tokio::process::Command::new(&args.ebb)
        .arg("serve")
        .env("EBB_DATABASE_URL", url)
        .env("EBB_SERVER_KEY", key)
        .env("EBB_LISTEN", format!("127.0.0.1:{port}"))
        .env("EBB_SANDBOX", "true")
        .env("EBB_PAYOUTS", "false")
        .env("EBB_WEBHOOKS", "false")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().context("ebb's pid")?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    wait_ready(&http, &base).await?;
    let cookie = login(&http, &base).await?;
    // A first small export warms up what any export allocates once.
    export(&http, &base, &cookie, &small, pid).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle = rss_kib(pid);
    let small = export(&http, &base, &cookie, &small, pid).await?;
    let big = export(&http, &base, &cookie, &big, pid).await?;
    child.kill().await?;
    if big.rows != args.rows || small.rows != args.rows / 10 {
        bail!("exported {} and {} rows, not {} and {}", big.rows, small.rows, args.rows, args.rows / 10);
    }
    Ok((idle, small, big))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let sqlite = run(&args, &format!("sqlite://{}/bench.sqlite3", dir.path().display())).await?;
    let pg_name = format!("ebb_bench_{}", uuid::Uuid::new_v4().simple());
    let admin = Store::connect(&args.postgres, 1).await?;
    sqlx::query(&format!("CREATE DATABASE {pg_name}")).execute(admin.pool()).await?;
    let pg_url = format!("{}/{pg_name}", &args.postgres[..args.postgres.rfind('/').context("a database in the URL")?]);
    let pg = run(&args, &pg_url).await;
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)")).execute(admin.pool()).await;
    let pg = pg?;
    let mut report = String::from(
        "| backend | rows | CSV | seconds | rows/s | ebb's peak RSS | above idle |\n|---|---|---|---|---|---|---|\n",
    );
    for (name, (idle, small, big)) in [("SQLite", &sqlite), ("PostgreSQL", &pg)] {
        for e in [small, big] {
            report.push_str(&format!(
                "| {name} | {} | {:.1} MiB | {:.2} | {:.0} | {:.1} MiB | {:+.1} MiB |\n",
                e.rows,
                e.bytes as f64 / 1_048_576.0,
                e.seconds,
                e.rows as f64 / e.seconds,
                e.peak_kib as f64 / 1024.0,
                (e.peak_kib as f64 - *idle as f64) / 1024.0,
            ));
        }
    }
    println!("{report}");
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, report)?;
    Ok(())
}
