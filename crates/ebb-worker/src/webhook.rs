//! The webhook dispatcher: delivers the outbox's events to merchant endpoints.
//!
//! Each round it asks which active endpoints have deliveries due, leases a batch per endpoint (at most
//! [`WebhookSettings::per_endpoint_in_flight`] in flight per endpoint, so one slow or dead endpoint
//! cannot take the slots of the others), POSTs each signed event with a timeout, and hands the outcome
//! to a recorder task that writes many outcomes per database transaction. The retry state lives in the
//! delivery rows: a restart resumes where the last recorded attempt left off, and an attempt cut by a
//! crash is tried again when its lease expires (the receiver may see that one event twice; it carries
//! the same `event_id`).

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ebb_app::deliveries;
use ebb_core::signing::{sign_body, standard_signature};
use ebb_store::webhooks::{AfterAttempt, AttemptRecord, AttemptRow, DeliveryRow, LeasedDelivery};
use ebb_store::{ids, now_ms, Store};
use ed25519_dalek::SigningKey;
use rand::Rng;
use tokio::sync::{mpsc, watch, Notify, Semaphore};

use crate::ssrf::{is_public, special_purpose};

/// Waits between attempts, after the first failure, the second, … (15 attempts over 3 days 3 hours,
/// before jitter, which only adds). Documented in docs/WEBHOOKS.md.
pub const DEFAULT_RETRY_SCHEDULE: [Duration; 14] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(2 * 60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(60 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(4 * 3600),
    Duration::from_secs(8 * 3600),
    Duration::from_secs(12 * 3600),
    Duration::from_secs(12 * 3600),
    Duration::from_secs(12 * 3600),
    Duration::from_secs(12 * 3600),
    Duration::from_secs(12 * 3600),
];

/// The longest wait a `Retry-After` header can ask for; beyond it the schedule's wait applies.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);
/// How much of a response is read before the connection is dropped.
const RESPONSE_CAP: usize = 64 * 1024;
/// How much of a response body the attempt log keeps.
const RESPONSE_EXCERPT: usize = 2 * 1024;
/// How much longer than the timeout a lease lasts: the time to record an attempt's outcome.
const LEASE_MARGIN: Duration = Duration::from_secs(5);
/// How many finished attempts one recording transaction takes.
const RECORD_BATCH: usize = 256;

#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// How long one POST may take, connection included.
    pub timeout: Duration,
    /// The wait before each retry; its length is the number of retries.
    pub retry_schedule: Vec<Duration>,
    /// Whether endpoints may resolve to loopback, private, link-local or other non-public addresses
    /// (the SSRF guard is off). `ebb dev` allows them; `ebb serve` refuses them unless configured.
    pub allow_private_addresses: bool,
    /// How often to look for due deliveries when idle.
    pub poll_interval: Duration,
    pub max_in_flight: usize,
    pub per_endpoint_in_flight: usize,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            retry_schedule: DEFAULT_RETRY_SCHEDULE.to_vec(),
            allow_private_addresses: false,
            poll_interval: Duration::from_millis(50),
            max_in_flight: 512,
            per_endpoint_in_flight: 128,
        }
    }
}

/// A delivery's body as POSTed.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub content_type: &'static str,
    pub body: String,
}

/// Renders the body POSTed for a delivery in its endpoint's format (the API crate knows the wire
/// formats; a callback's may read the store).
pub type Renderer =
    Arc<dyn Fn(DeliveryRow) -> Pin<Box<dyn Future<Output = Result<Rendered, String>> + Send>> + Send + Sync>;

pub struct WebhookDispatcher {
    store: Store,
    render: Renderer,
    server_key: SigningKey,
    client: reqwest::Client,
    settings: WebhookSettings,
}

impl WebhookDispatcher {
    pub fn new(
        store: Store,
        render: Renderer,
        server_key: SigningKey,
        settings: WebhookSettings,
    ) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            // A proxy from the environment would resolve names itself, past the guard below.
            .no_proxy()
            .user_agent(concat!("ebb-webhooks/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(settings.per_endpoint_in_flight);
        if !settings.allow_private_addresses {
            builder = builder.dns_resolver(Arc::new(PublicOnlyResolver));
        }
        let client = builder.build().map_err(|e| format!("webhook HTTP client: {e}"))?;
        Ok(Self { store, render, server_key, client, settings })
    }

    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(Arc::new(self).run(shutdown))
    }

    async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let (results_tx, results_rx) = mpsc::unbounded_channel::<AttemptRecord>();
        let recorded = Arc::new(Notify::new());
        let recorder = tokio::spawn(record_loop(self.store.clone(), results_rx, recorded.clone()));
        let slots = Arc::new(Semaphore::new(self.settings.max_in_flight));
        let per_endpoint: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        // A lease outlives the longest attempt, so no other dispatcher takes a delivery mid-attempt.
        let lease_ms = (self.settings.timeout + LEASE_MARGIN).as_millis() as i64;
        let leases = deliveries::Leases::new(self.store.clone());
        match leases.release_stale().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(n, "webhook deliveries held by a previous run are due again"),
            Err(e) => {
                tracing::warn!(error = %e, "could not free the leases of a previous run; they expire by themselves")
            }
        }
        let refill_at = (self.settings.per_endpoint_in_flight / 2).max(1);
        let mut failing = false;
        while !*shutdown.borrow() {
            let mut leased_any = false;
            match deliveries::endpoints_due(&self.store, now_ms()).await {
                Ok(endpoints) => {
                    if failing {
                        tracing::info!("webhook dispatcher recovered");
                        failing = false;
                    }
                    for endpoint in endpoints {
                        let busy = per_endpoint.lock().expect("poisoned").get(&endpoint).copied().unwrap_or(0);
                        let room =
                            self.settings.per_endpoint_in_flight.saturating_sub(busy).min(slots.available_permits());
                        // Lease in batches: a round costs the same few queries for one delivery as for a
                        // hundred, so an endpoint with attempts in flight waits until half its slots are free.
                        if room == 0 || (busy > 0 && room < refill_at) {
                            continue;
                        }
                        let leased = match leases.take(&endpoint, room as i64, lease_ms).await {
                            Ok(l) => l,
                            Err(e) => {
                                tracing::warn!(error = %e, endpoint = %endpoint, "leasing webhook deliveries failed");
                                continue;
                            }
                        };
                        for delivery in leased {
                            leased_any = true;
                            let permit = slots.clone().acquire_owned().await.expect("never closed");
                            *per_endpoint.lock().expect("poisoned").entry(endpoint.clone()).or_default() += 1;
                            let (this, results, per_endpoint, endpoint, recorded) = (
                                self.clone(),
                                results_tx.clone(),
                                per_endpoint.clone(),
                                endpoint.clone(),
                                recorded.clone(),
                            );
                            tokio::spawn(async move {
                                let record = this.attempt(delivery).await;
                                let _ = results.send(record);
                                let busy = match per_endpoint.lock().expect("poisoned").get_mut(&endpoint) {
                                    Some(n) => {
                                        *n = n.saturating_sub(1);
                                        *n
                                    }
                                    None => 0,
                                };
                                drop(permit);
                                if busy <= refill_at {
                                    recorded.notify_one();
                                }
                            });
                        }
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "webhook dispatcher cannot read its queue; retrying");
                    }
                    failing = true;
                }
            }
            if !leased_any {
                tokio::select! {
                    _ = tokio::time::sleep(self.settings.poll_interval) => {}
                    _ = recorded.notified() => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        // Let the attempts in flight finish (each is bounded by the timeout) and their outcomes land.
        let all = self.settings.max_in_flight as u32;
        let _ = tokio::time::timeout(self.settings.timeout + Duration::from_secs(1), slots.acquire_many(all)).await;
        drop(results_tx);
        let _ = recorder.await;
    }

    /// One POST of one delivery; never fails, the outcome says what happened.
    async fn attempt(&self, leased: LeasedDelivery) -> AttemptRecord {
        let LeasedDelivery { delivery: d, signing_secret, lease_owner } = leased;
        let started_ms = now_ms();
        let Rendered { content_type, body } = match (self.render)(d.clone()).await {
            Ok(r) => r,
            Err(e) => {
                return self.record(&d, lease_owner, started_ms, Vec::new(), String::new(), Err(format!("render: {e}")))
            }
        };
        let mut headers: Vec<(&'static str, String)> = vec![("content-type", content_type.into())];
        let timestamp_ms = now_ms();
        headers.push(("biz-timestamp", timestamp_ms.to_string()));
        headers.push(("biz-resp-signature", sign_body(&self.server_key, body.as_bytes(), &timestamp_ms.to_string())));
        if let Some(secret) = &signing_secret {
            let ts = timestamp_ms / 1000;
            if let Some(sig) = standard_signature(secret, &d.event_id, ts, body.as_bytes()) {
                headers.push(("webhook-id", d.event_id.clone()));
                headers.push(("webhook-timestamp", ts.to_string()));
                headers.push(("webhook-signature", sig));
            }
        }
        let outcome = self.post(&d.url, &headers, body.clone()).await;
        self.record(&d, lease_owner, started_ms, headers, body, outcome)
    }

    async fn post(&self, url: &str, headers: &[(&'static str, String)], body: String) -> Result<Response, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("refused: only http and https URLs are called, not {}", parsed.scheme()));
        }
        // An IP literal never reaches the resolver, so the guard checks it here.
        if !self.settings.allow_private_addresses {
            let ip = match parsed.host() {
                Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
                Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
                _ => None,
            };
            if let Some((ip, what)) = ip.and_then(|ip| special_purpose(ip).map(|what| (ip, what))) {
                return Err(format!("refused: {ip} is not a public address ({what}; webhook SSRF guard)"));
            }
        }
        let mut req = self.client.post(parsed).body(body);
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let started = Instant::now();
        let mut resp = req.send().await.map_err(|e| describe(&e, self.settings.timeout))?;
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
        let mut read = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    read.extend_from_slice(&chunk);
                    if read.len() >= RESPONSE_CAP {
                        break;
                    }
                }
                Ok(None) => break,
                // The status is what counts; a body cut short (or too slow) is only less to log.
                Err(_) => break,
            }
        }
        read.truncate(RESPONSE_EXCERPT);
        Ok(Response {
            status,
            body: String::from_utf8_lossy(&read).into_owned(),
            elapsed_ms: started.elapsed().as_millis() as i64,
            retry_after,
        })
    }

    fn record(
        &self,
        d: &DeliveryRow,
        lease_owner: String,
        started_ms: i64,
        headers: Vec<(&'static str, String)>,
        body: String,
        outcome: Result<Response, String>,
    ) -> AttemptRecord {
        let headers_json = serde_json::Value::Object(
            headers.into_iter().map(|(k, v)| (k.to_owned(), serde_json::Value::String(v))).collect(),
        )
        .to_string();
        let (success, next, status, response_body, elapsed, reason) = match outcome {
            Ok(r) if (200..300).contains(&r.status) => {
                (true, AfterAttempt::Delivered, Some(r.status), Some(r.body), Some(r.elapsed_ms), None)
            }
            // CoinGate stops a callback for good on a redirect or a refusal, and so does ebb.
            Ok(r) if d.format.is_callback() && matches!(r.status, 301 | 302 | 401 | 403 | 410) => (
                false,
                AfterAttempt::Failed,
                Some(r.status),
                Some(r.body),
                Some(r.elapsed_ms),
                Some(format!("the callback URL answered {}; this callback is not sent again", r.status)),
            ),
            Ok(r) if r.status == 410 => (
                false,
                AfterAttempt::EndpointGone,
                Some(r.status),
                Some(r.body),
                Some(r.elapsed_ms),
                Some("the endpoint answered 410 Gone; it is disabled".to_owned()),
            ),
            Ok(r) => (
                false,
                self.after_failure(d, r.retry_after),
                Some(r.status),
                Some(r.body),
                Some(r.elapsed_ms),
                Some(format!("the endpoint answered {}", r.status)),
            ),
            Err(reason) => (false, self.after_failure(d, None), None, None, None, Some(reason)),
        };
        AttemptRecord {
            delivery_seq: d.delivery_seq,
            lease_owner,
            attempt: AttemptRow {
                attempt_id: ids::new_id("A"),
                created_at_ms: started_ms,
                request_headers: headers_json,
                request_body: body,
                response_status: status.map(i64::from),
                response_body,
                response_time_ms: elapsed,
                success,
                failure_reason: reason,
            },
            next,
        }
    }

    /// The next step after a failed attempt: the next wait of the schedule (plus up to 25 % jitter, so
    /// a recovering endpoint is not hit by every delayed event at once), or at least what `Retry-After`
    /// asked for; `Failed` when no retries are left.
    fn after_failure(&self, d: &DeliveryRow, retry_after: Option<Duration>) -> AfterAttempt {
        let schedule = &self.settings.retry_schedule;
        let left = d.retries_left.unwrap_or(schedule.len() as i64);
        if left <= 0 || schedule.is_empty() {
            return AfterAttempt::Failed;
        }
        let index = (schedule.len() as i64 - left).clamp(0, schedule.len() as i64 - 1) as usize;
        let mut wait = schedule[index].mul_f64(1.0 + rand::thread_rng().gen_range(0.0..0.25));
        if let Some(asked) = retry_after {
            wait = wait.max(asked.min(MAX_RETRY_AFTER));
        }
        AfterAttempt::RetryAt { at_ms: now_ms() + wait.as_millis() as i64, retries_left: left - 1 }
    }
}

struct Response {
    status: u16,
    body: String,
    elapsed_ms: i64,
    retry_after: Option<Duration>,
}

/// Writes finished attempts, many per transaction. A failed write is retried with the same batch: the
/// deliveries stay leased meanwhile, so nothing else sends them.
async fn record_loop(store: Store, mut rx: mpsc::UnboundedReceiver<AttemptRecord>, recorded: Arc<Notify>) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while rx.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        let mut delay = Duration::from_millis(100);
        loop {
            match deliveries::record(&store, batch.clone()).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, n = batch.len(), "recording webhook attempts failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        batch.clear();
        recorded.notify_one();
    }
}

/// `Retry-After` as seconds or an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    if let Ok(secs) = v.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v.trim()).ok()?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or_default())
}

fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("timed out after {} ms", timeout.as_millis());
    }
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// Resolves names to their public addresses only: a name that resolves only to private ones (an
/// internal service, a rebinding trick) fails to connect.
struct PublicOnlyResolver;

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = addrs.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(format!("refused: {host} resolves to no public address (webhook SSRF guard)").into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_retries_for_more_than_three_days() {
        let total: Duration = DEFAULT_RETRY_SCHEDULE.iter().sum();
        assert!(total >= Duration::from_secs(3 * 24 * 3600), "{total:?}");
        assert!(DEFAULT_RETRY_SCHEDULE.windows(2).all(|w| w[0] <= w[1]), "waits never shrink");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        let later = std::time::SystemTime::now() + Duration::from_secs(600);
        let d = parse_retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(d > Duration::from_secs(590) && d <= Duration::from_secs(600), "{d:?}");
        assert_eq!(parse_retry_after("soon"), None);
    }
}
