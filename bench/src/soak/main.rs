//! ebb's soak: a long run of mixed load at a share of measured capacity against PostgreSQL, with ebb's
//! resources sampled each minute, then every invariant checked.
//!
//! - Setup: a fresh PostgreSQL database; `ebb serve` with the sandbox chain, payouts, the pay-in
//!   watcher and webhooks on; a webhook receiver on 127.0.0.1 subscribed to every event; MERCHANTS
//!   merchants, each funded by a large paid order.
//! - The mix, per 100 operations: 10 refunds created with an address, 2 created without one and then
//!   given it, 1 created and cancelled, 3 refund links (created by API, the page opened and its form
//!   posted by the "customer"), 3 orders created and paid on the sandbox chain (so pay-ins go on
//!   crediting balances), 50 refund gets, 20 refund lists, 11 order gets and lists. Behind them ebb pays
//!   every refund on the sandbox chain and sends each event to the receiver.
//! - Capacity: the mix driven closed-loop by CONCURRENCY clients for CAPACITY_SECONDS; then the payouts
//!   and webhooks that phase left behind drain before the soak starts.
//! - Soak: the same mix, open-loop at SHARE × capacity for SAMPLES × SAMPLE_SECONDS (30 minutes by default).
//!   Each operation is timed from the moment it was due, so a stall in ebb shows as latency, not as fewer requests.
//! - Each sample: ebb's resident memory and open files, ebb's connections to PostgreSQL, the sample's
//!   operations, errors, p50 and p99, refunds not yet final, deliveries not yet made.
//! - End: the load stops, payouts and webhooks drain, and the run checks: 0 errors; every refund final
//!   (Completed, or Failed for the cancelled ones); no refund paid by more than one completed payout,
//!   and each completed payout of the refund's amount; every event delivered to the receiver; the
//!   ledger balanced (`verify_ledger`); and flatness — the last sixth of the run against the second
//!   sixth: RSS within 10 % + 4 MB, open files within 8, connections within ebb's pool, p99 within
//!   1.5× + 1 ms.
//!
//! Usage: `cargo build --release -p ebb -p ebb-bench && target/release/ebb-bench-soak` (30 samples of a minute)
//! (exit status 1 when a check fails; the report is printed and written to target/bench/soak.md).

mod mix;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use ebb_bench::{ebb_cli, free_port, funded_merchant, now_ms, rss_mb, wait_ready, Client, Stats};
use ebb_store::Store;
use ed25519_dalek::SigningKey;
use mix::{Load, Merchant, Op};
use serde_json::Value;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "target/release/ebb")]
    ebb: PathBuf,
    #[arg(long, env = "EBB_TEST_POSTGRES_URL", default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    postgres: String,
    /// Samples the soak lasts for (after the capacity measurement): 30 of a minute each by default.
    #[arg(long, default_value_t = 30)]
    samples: u64,
    /// Seconds per sample (a minute in the real run; shorter in CI's short version).
    #[arg(long, default_value_t = 60)]
    sample_seconds: u64,
    /// Share of the measured capacity the soak runs at.
    #[arg(long, default_value_t = 0.5)]
    share: f64,
    /// A fixed rate in operations a second instead of a share of the capacity measured in this run
    /// (capacity varies between runs; a fixed rate makes two runs comparable).
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value_t = 30)]
    capacity_seconds: u64,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[arg(long, default_value_t = 16)]
    merchants: usize,
    /// The most operations in flight at once in the open-loop phase; an operation due while all are
    /// busy waits for one (and its wait counts in its latency).
    #[arg(long, default_value_t = 512)]
    max_in_flight: usize,
    #[arg(long, default_value = "target/bench/soak.md")]
    out: PathBuf,
}

/// Event ids as they arrive at the receiver (a repeat is a second delivery of one event).
type Arrivals = Arc<Mutex<(u64, HashSet<String>)>>;

async fn start_receiver() -> anyhow::Result<(String, Arrivals)> {
    let arrivals: Arrivals = Arc::default();
    let seen = arrivals.clone();
    let url = ebb_bench::start_receiver(move |event| {
        let id = event["event_id"].as_str().unwrap_or_default().to_owned();
        let mut s = seen.lock().unwrap();
        s.0 += 1;
        s.1.insert(id);
    })
    .await?;
    Ok((url, arrivals))
}

/// One sample of ebb and its database.
struct Sample {
    index: u64,
    rss_mb: f64,
    open_files: usize,
    connections: i64,
    ops: u64,
    errors: u64,
    p50_ms: f64,
    p99_ms: f64,
    refunds_open: i64,
    deliveries_open: i64,
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Refunds short of a final status, and deliveries still to make.
async fn backlog(db: &sqlx::PgPool) -> anyhow::Result<(i64, i64)> {
    let refunds: i64 = sqlx::query_scalar("SELECT count(*) FROM refunds WHERE status NOT IN ('Completed', 'Failed')")
        .fetch_one(db)
        .await?;
    let deliveries: i64 =
        sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE status = 'Retrying'").fetch_one(db).await?;
    Ok((refunds, deliveries))
}

async fn drain(db: &sqlx::PgPool, within: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let (refunds, deliveries) = backlog(db).await?;
        if refunds == 0 && deliveries == 0 {
            return Ok(start.elapsed());
        }
        if start.elapsed() > within {
            bail!("after {within:?}, {refunds} refunds are not final and {deliveries} deliveries not made");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = xs.collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let pg_name = format!("ebb_soak_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(&args.postgres).await?;
    sqlx::query(&format!("CREATE DATABASE {pg_name}")).execute(&admin).await?;
    let db_url = format!("{}/{pg_name}", &args.postgres[..args.postgres.rfind('/').context("database in URL")?]);
    let result = soak(&args, &db_url, &pg_name, &admin).await;
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {pg_name} WITH (FORCE)")).execute(&admin).await;
    let (report, passed) = result?;
    println!("{report}");
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, &report)?;
    if !passed {
        bail!("the soak failed a check (see the report)");
    }
    Ok(())
}

async fn soak(args: &Args, db_url: &str, pg_name: &str, admin: &sqlx::PgPool) -> anyhow::Result<(String, bool)> {
    let (hook_url, arrivals) = start_receiver().await?;
    let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    ebb_cli(
        &args.ebb,
        &["keys", "add", "--public-key", &hex::encode(key.verifying_key().to_bytes()), "--database-url", db_url],
    )?;
    ebb_cli(&args.ebb, &["webhooks", "add", "--url", &hook_url, "--database-url", db_url])?;
    let port = free_port();
    let log = std::fs::File::create(args.out.with_extension("ebb.log")).or_else(|_| {
        std::fs::create_dir_all(args.out.parent().unwrap_or(std::path::Path::new(".")))?;
        std::fs::File::create(args.out.with_extension("ebb.log"))
    })?;
    let mut child = tokio::process::Command::new(&args.ebb)
        .arg("serve")
        .env("EBB_DATABASE_URL", db_url)
        .env("EBB_SERVER_KEY", hex::encode(rand::random::<[u8; 32]>()))
        .env("EBB_LISTEN", format!("127.0.0.1:{port}"))
        .env("EBB_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
        .env("EBB_SANDBOX", "true")
        .env("EBB_SANDBOX_BLOCK_MS", "200")
        .env("EBB_WEBHOOK_ALLOW_PRIVATE_ADDRESSES", "true")
        .env("EBB_CLIENT_IP_HEADER", "X-Forwarded-For")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("starting ebb serve")?;
    let pid = child.id().context("ebb pid")?;
    // The refund page answers its form with a redirect, which the driver checks rather than follows.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.max_in_flight)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let client =
        Arc::new(Client { http, base: format!("http://127.0.0.1:{port}"), key, nonce: AtomicU64::new(now_ms()) });
    wait_ready(&client.http, &client.base).await?;
    let mut merchants = Vec::new();
    for i in 0..args.merchants {
        let (id, order) = funded_merchant(&client, &format!("soak {i}")).await?;
        merchants.push(Merchant { id, order });
    }
    let db = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(db_url).await?;
    let load = Arc::new(Load {
        client: client.clone(),
        merchants,
        run: uuid::Uuid::new_v4().simple().to_string(),
        made: Mutex::default(),
        errors: Mutex::default(),
    });

    // Capacity: the mix, closed-loop.
    eprintln!("ebb pid {pid}: capacity, {} clients for {} s", args.concurrency, args.capacity_seconds);
    let next = Arc::new(AtomicU64::new(0));
    let capacity = {
        let (load, next) = (load.clone(), next.clone());
        ebb_bench::drive(args.concurrency, args.capacity_seconds, move |_| {
            let (load, n) = (load.clone(), next.fetch_add(1, Ordering::Relaxed));
            async move { load.op(n).await }
        })
        .await
    };
    let drained_in = drain(&db, Duration::from_secs(600)).await?;
    let rate = args.rate.unwrap_or(args.share * capacity.per_second());
    eprintln!(
        "capacity {:.0} ops/s ({} errors), drained in {:.1} s; soak at {rate:.0} ops/s for {} samples of {} s",
        capacity.per_second(),
        capacity.errors,
        drained_in.as_secs_f64(),
        args.samples,
        args.sample_seconds
    );

    // The soak: open-loop at `rate`, sampled every `sample_seconds`.
    let latencies: Arc<Mutex<(Vec<u64>, u64)>> = Arc::default();
    // The whole soak's latencies per kind of operation, for the report.
    let by_op: Arc<Mutex<BTreeMap<Op, Vec<u64>>>> = Arc::default();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(args.max_in_flight));
    let start = Instant::now();
    let end = start + Duration::from_secs(args.samples * args.sample_seconds);
    let sampler = {
        let (latencies, db, admin, pg_name) = (latencies.clone(), db.clone(), admin.clone(), pg_name.to_owned());
        let every = Duration::from_secs(args.sample_seconds);
        let count = args.samples;
        tokio::spawn(async move {
            let mut samples = Vec::new();
            for index in 1..=count {
                tokio::time::sleep_until((start + every * index as u32).into()).await;
                let (lat, errors) = std::mem::take(&mut *latencies.lock().unwrap());
                let stats = Stats {
                    ops: lat.len() as u64,
                    seconds: every.as_secs_f64(),
                    latencies_us: lat,
                    errors,
                    cpu_busy: None,
                };
                // Client backends only: autovacuum's workers show in pg_stat_activity with the database too.
                let connections: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'",
                )
                .bind(&pg_name)
                .fetch_one(&admin)
                .await
                .unwrap_or(-1);
                // The sampler's own connection to ebb's database is not ebb's.
                let connections = connections - 1;
                let (refunds_open, deliveries_open) = backlog(&db).await.unwrap_or((-1, -1));
                let s = Sample {
                    index,
                    rss_mb: rss_mb(pid),
                    open_files: open_files(pid),
                    connections,
                    ops: stats.ops,
                    errors: stats.errors,
                    p50_ms: stats.pct_ms(0.5),
                    p99_ms: stats.pct_ms(0.99),
                    refunds_open,
                    deliveries_open,
                };
                eprintln!(
                    "{:>3}: rss {:.1} MB, files {}, connections {}, {} ops, {} errors, p50 {:.2} ms, p99 {:.2} ms, refunds open {}, deliveries open {}",
                    s.index, s.rss_mb, s.open_files, s.connections, s.ops, s.errors, s.p50_ms, s.p99_ms, s.refunds_open, s.deliveries_open
                );
                samples.push(s);
            }
            samples
        })
    };
    let mut due_count = 0u64;
    let mut late = 0u64;
    while Instant::now() < end {
        let due = start + Duration::from_secs_f64(due_count as f64 / rate);
        if due >= end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let permit = match in_flight.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                late += 1;
                in_flight.clone().acquire_owned().await.expect("semaphore open")
            }
        };
        let (load, latencies, by_op, n) =
            (load.clone(), latencies.clone(), by_op.clone(), next.fetch_add(1, Ordering::Relaxed));
        tokio::spawn(async move {
            let ok = load.op(n).await;
            let us = due.elapsed().as_micros() as u64;
            {
                let mut l = latencies.lock().unwrap();
                if ok {
                    l.0.push(us);
                } else {
                    l.1 += 1;
                }
            }
            if ok {
                by_op.lock().unwrap().entry(Op::of(n)).or_default().push(us);
            }
            drop(permit);
        });
        due_count += 1;
    }
    let samples = sampler.await?;
    // Operations still in flight finish before the drain.
    let _ = in_flight.acquire_many(args.max_in_flight as u32).await;
    let drained_after = drain(&db, Duration::from_secs(600)).await;
    let rss_end = rss_mb(pid);

    // Checks.
    let mut report = String::new();
    let mut checks: Vec<(String, bool)> = Vec::new();
    let made = std::mem::take(&mut *load.made.lock().unwrap());
    let soak_errors: u64 = samples.iter().map(|s| s.errors).sum();
    let errors = load.errors.lock().unwrap().clone();
    checks.push((
        format!("errors: {} in the capacity phase, {soak_errors} in the soak", capacity.errors),
        capacity.errors + soak_errors == 0,
    ));
    checks.push((format!("operations that waited for a free client: {late}"), late == 0));
    checks.push((
        match &drained_after {
            Ok(d) => format!("backlog drained {:.1} s after the load stopped", d.as_secs_f64()),
            Err(e) => format!("backlog not drained: {e:#}"),
        },
        drained_after.is_ok(),
    ));
    let by_status: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM refunds GROUP BY status ORDER BY status").fetch_all(&db).await?;
    let total: i64 = by_status.iter().map(|(_, c)| c).sum();
    let completed = by_status.iter().find(|(s, _)| s == "Completed").map(|(_, c)| *c).unwrap_or(0);
    let failed = by_status.iter().find(|(s, _)| s == "Failed").map(|(_, c)| *c).unwrap_or(0);
    checks.push((
        format!(
            "refunds: {total} in the database ({completed} Completed, {failed} Failed), {} made by the load of which {} cancelled",
            made.refunds.len(),
            made.cancelled.len()
        ),
        total == made.refunds.len() as i64 && failed == made.cancelled.len() as i64 && completed + failed == total,
    ));
    let paid_twice: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT refund_id FROM payment_transactions WHERE direction = 'out' AND status = 'Completed' \
         GROUP BY refund_id HAVING count(*) > 1) twice",
    )
    .fetch_one(&db)
    .await?;
    let wrong_amount: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM payment_transactions t JOIN refunds r ON r.refund_id = t.refund_id \
         WHERE t.direction = 'out' AND t.status = 'Completed' AND t.amount <> r.amount",
    )
    .fetch_one(&db)
    .await?;
    let payouts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM payment_transactions WHERE direction = 'out' AND status = 'Completed'",
    )
    .fetch_one(&db)
    .await?;
    checks.push((
        format!("completed payouts: {payouts}; refunds paid more than once: {paid_twice}; payouts of another amount: {wrong_amount}"),
        paid_twice == 0 && wrong_amount == 0 && payouts == completed,
    ));
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&db).await?;
    let (arrived, distinct) = {
        let a = arrivals.lock().unwrap();
        (a.0, a.1.len() as i64)
    };
    checks.push((
        format!("webhooks: {events} events, {distinct} distinct arrived ({arrived} deliveries in all)"),
        distinct == events,
    ));
    let store = Store::connect(db_url, 1).await?;
    let problems = store.verify_ledger().await?;
    checks.push((format!("ledger problems: {}", problems.len()), problems.is_empty()));

    // Flatness: the last sixth of the samples against the second sixth (the first is warm-up).
    let sixth = (samples.len() / 6).max(1);
    let flat = if samples.len() >= 6 {
        let early = &samples[sixth..2 * sixth];
        let late = &samples[samples.len() - sixth..];
        let m = |w: &[Sample], f: fn(&Sample) -> f64| mean(w.iter().map(f));
        let (rss0, rss1) = (m(early, |s| s.rss_mb), m(late, |s| s.rss_mb));
        let (fd0, fd1) = (m(early, |s| s.open_files as f64), m(late, |s| s.open_files as f64));
        let (p0, p1) = (m(early, |s| s.p99_ms), m(late, |s| s.p99_ms));
        let conn_max = samples.iter().map(|s| s.connections).max().unwrap_or(0);
        checks.push((format!("RSS {rss0:.1} → {rss1:.1} MB"), rss1 <= rss0 * 1.10 + 4.0));
        checks.push((format!("open files {fd0:.1} → {fd1:.1}"), fd1 <= fd0 + 8.0));
        checks.push((format!("connections to PostgreSQL: at most {conn_max} (pool 8)"), conn_max <= 8));
        checks.push((format!("p99 {p0:.2} → {p1:.2} ms"), p1 <= p0 * 1.5 + 1.0));
        true
    } else {
        false
    };

    let autovacuum: String = sqlx::query_scalar("SHOW autovacuum").fetch_one(&db).await?;
    report.push_str(&format!(
        "Run: `target/release/ebb-bench-soak --samples {} --sample-seconds {} {}` on {} cores, PostgreSQL (autovacuum {autovacuum}), {} merchants.\n\n",
        args.samples,
        args.sample_seconds,
        match args.rate {
            Some(rate) => format!("--rate {rate}"),
            None => format!("--share {}", args.share),
        },
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        args.merchants
    ));
    report.push_str(&format!(
        "Capacity (the mix closed-loop, {} clients, {} s): {:.0} ops/s, p99 {:.2} ms, {} errors; its payouts and webhooks drained {:.1} s later. Soak at {:.0} % of it: {rate:.0} ops/s for {} × {} s, {} operations.\n\n",
        args.concurrency,
        args.capacity_seconds,
        capacity.per_second(),
        capacity.pct_ms(0.99),
        capacity.errors,
        drained_in.as_secs_f64(),
        100.0 * rate / capacity.per_second(),
        args.samples,
        args.sample_seconds,
        due_count
    ));
    report.push_str("| sample | RSS | open files | PG connections | ops | errors | p50 | p99 | refunds not final | deliveries not made |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for s in &samples {
        report.push_str(&format!(
            "| {} | {:.1} MB | {} | {} | {} | {} | {:.2} ms | {:.2} ms | {} | {} |\n",
            s.index,
            s.rss_mb,
            s.open_files,
            s.connections,
            s.ops,
            s.errors,
            s.p50_ms,
            s.p99_ms,
            s.refunds_open,
            s.deliveries_open
        ));
    }
    report.push_str("\n| operation (whole soak) | count | p50 | p99 |\n|---|---|---|---|\n");
    for (op, lat) in std::mem::take(&mut *by_op.lock().unwrap()) {
        let stats = Stats { ops: lat.len() as u64, seconds: 0.0, latencies_us: lat, errors: 0, cpu_busy: None };
        report.push_str(&format!(
            "| {op:?} | {} | {:.2} ms | {:.2} ms |\n",
            stats.ops,
            stats.pct_ms(0.5),
            stats.pct_ms(0.99)
        ));
    }
    report.push_str(&format!("\nRSS after the drain: {rss_end:.1} MB.\n\n| check | passed |\n|---|---|\n"));
    for (what, ok) in &checks {
        report.push_str(&format!("| {what} | {} |\n", if *ok { "yes" } else { "**no**" }));
    }
    if !flat {
        report.push_str("| flatness | not judged: fewer than 6 samples |\n");
    }
    let mut ops: BTreeMap<String, u64> = BTreeMap::new();
    for n in 0..100 {
        *ops.entry(format!("{:?}", Op::of(n))).or_default() += 1;
    }
    report.push_str(&format!("\nThe mix per 100 operations: {ops:?}.\n"));
    if !errors.is_empty() {
        report.push_str(&format!("\nFirst errors:\n\n```\n{}\n```\n", errors.join("\n")));
    }
    child.kill().await.ok();
    let passed = checks.iter().all(|(_, ok)| *ok);
    Ok((report, passed))
}
