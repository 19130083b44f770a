//! What ebb's benchmarks share: a load driver with latency percentiles and a client that signs
//! requests as Cobo's SDK does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ebb_api::auth::{double_sha256, request_message};
use ed25519_dalek::{Signer, SigningKey};
use serde_json::Value;

pub struct Stats {
    pub ops: u64,
    pub seconds: f64,
    pub latencies_us: Vec<u64>,
    pub errors: u64,
    /// The machine's busy share of all cores over the run (from /proc/stat), where known.
    pub cpu_busy: Option<f64>,
}

/// The machine's (busy, total) CPU time so far, in clock ticks, from the first line of /proc/stat.
pub fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal ...: idle and iowait are the idle time.
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    let total: u64 = fields.iter().take(8).sum();
    Some((total - idle, total))
}

/// The busy share between two [`cpu_ticks`] readings.
pub fn busy_share(before: Option<(u64, u64)>, after: Option<(u64, u64)>) -> Option<f64> {
    let ((b0, t0), (b1, t1)) = (before?, after?);
    (t1 > t0).then(|| (b1 - b0) as f64 / (t1 - t0) as f64)
}

impl Stats {
    pub fn per_second(&self) -> f64 {
        self.ops as f64 / self.seconds
    }
    pub fn pct_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let mut v = self.latencies_us.clone();
        v.sort_unstable();
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i] as f64 / 1000.0
    }
}

/// Runs `op` from `concurrency` tasks for `seconds`, timing each call.
pub async fn drive<F, Fut>(concurrency: usize, seconds: u64, op: F) -> Stats
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let ticks = cpu_ticks();
    let counter = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (op, counter) = (op.clone(), counter.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let t = Instant::now();
                    if op(n).await {
                        lat.push(t.elapsed().as_micros() as u64);
                    } else {
                        errors += 1;
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await.expect("bench task");
        all.extend(lat);
        errors += e;
    }
    let cpu_busy = busy_share(ticks, cpu_ticks());
    Stats { ops: all.len() as u64, seconds: start.elapsed().as_secs_f64(), latencies_us: all, errors, cpu_busy }
}

pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub key: SigningKey,
    /// The last nonce sent (see [`Client::next_nonce`]).
    pub nonce: AtomicU64,
}

impl Client {
    /// The clock in milliseconds, or one past the last nonce if that is later: distinct nonces (identical
    /// concurrent requests would otherwise repeat a signature) that stay within ebb's 5-minute window
    /// however many requests a second the client sends, more or fewer than a thousand.
    pub fn next_nonce(&self) -> u64 {
        let now = now_ms();
        let previous = self
            .nonce
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| Some(now.max(last + 1)))
            .expect("the update always returns Some");
        now.max(previous + 1)
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let (p, q) = path.split_once('?').unwrap_or((path, ""));
        let nonce = self.next_nonce().to_string();
        let sig = hex::encode(
            self.key.sign(&double_sha256(&request_message(method.as_str(), p, &nonce, q, body.as_bytes()))).to_bytes(),
        );
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .header("Biz-Api-Key", hex::encode(self.key.verifying_key().to_bytes()))
            .header("Biz-Api-Nonce", nonce)
            .header("Biz-Api-Signature", sig);
        if !body.is_empty() {
            req = req.header("Content-Type", "application/json").body(body);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let v = resp.json().await.unwrap_or(Value::Null);
        Ok((status, v))
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A process's peak resident memory (`VmHWM`), in MB.
pub fn peak_rss_mb(pid: u32) -> f64 {
    status_mb(pid, "VmHWM:")
}

/// A process's resident memory now (`VmRSS`), in MB.
pub fn rss_mb(pid: u32) -> f64 {
    status_mb(pid, "VmRSS:")
}

fn status_mb(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Runs an `ebb` command (`keys add`, `webhooks add`, ...) and checks it succeeded.
pub fn ebb_cli(ebb: &std::path::Path, args: &[&str]) -> anyhow::Result<()> {
    let status = std::process::Command::new(ebb).args(args).stdout(std::process::Stdio::null()).status()?;
    if !status.success() {
        anyhow::bail!("ebb {args:?} failed");
    }
    Ok(())
}

/// A merchant named `name` with a large paid order, so refunds never run out of balance: its id and the
/// order's.
pub async fn funded_merchant(client: &Client, name: &str) -> anyhow::Result<(String, String)> {
    use anyhow::Context;
    let (_, m) =
        client.call(reqwest::Method::POST, "/v2/payments/merchants", Some(&serde_json::json!({"name": name}))).await?;
    let merchant = m["merchant_id"].as_str().context("merchant created")?.to_owned();
    let body = serde_json::json!({"merchant_id": merchant, "psp_order_code": uuid::Uuid::new_v4().to_string(),
                                  "payable_currency": "ETH_USDT", "payable_amount": "100000000", "fee_amount": "0"});
    let (_, o) = client.call(reqwest::Method::POST, "/v2/payments/orders", Some(&body)).await?;
    let order = o["order_id"].as_str().context("order created")?.to_owned();
    let (s, _) = client.call(reqwest::Method::POST, &format!("/v2/sandbox/orders/{order}/payments"), None).await?;
    if s != 201 {
        anyhow::bail!("sandbox payment failed: {s}");
    }
    // The pay-in watcher credits the order once the sandbox chain has confirmed the transfer.
    for _ in 0..600 {
        let (_, o) = client.call(reqwest::Method::GET, &format!("/v2/payments/orders/{order}"), None).await?;
        if o["status"] == "Completed" {
            return Ok((merchant, order));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("order {order} was never credited")
}

/// Waits until ebb at `base` answers `/readyz` (10 s at most).
pub async fn wait_ready(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    for _ in 0..200 {
        if http.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("ebb did not become ready at {base}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client that sends fewer than a thousand requests a second used to fall behind the clock by the
    /// difference every second (the nonce was a counter started at the clock), until ebb refused its
    /// requests as older than five minutes, seven minutes into the soak.
    #[test]
    fn nonces_increase_and_follow_the_clock() {
        let client = Client {
            http: reqwest::Client::new(),
            base: String::new(),
            key: SigningKey::from_bytes(&[1; 32]),
            nonce: AtomicU64::new(now_ms() - 600_000),
        };
        let first = client.next_nonce();
        assert!(first >= now_ms() - 1_000, "a stale last nonce does not hold the next one back");
        let second = client.next_nonce();
        assert!(second > first);
        client.nonce.store(now_ms() + 10_000, Ordering::Relaxed);
        assert_eq!(client.next_nonce(), client.nonce.load(Ordering::Relaxed), "one past a nonce ahead of the clock");
    }
}

/// Starts a webhook receiver on 127.0.0.1 that answers 200 at once and hands each delivery's JSON body
/// (`Value::Null` if it is not JSON) to `note`; returns the URL to subscribe.
pub async fn start_receiver(note: impl Fn(Value) + Clone + Send + Sync + 'static) -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let note = note.clone();
            async move {
                note(serde_json::from_str::<Value>(&body).unwrap_or(Value::Null));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}
