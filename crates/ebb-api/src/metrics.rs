//! Prometheus metrics, rendered by hand in the text exposition format (a few counters do not need a
//! metrics framework).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS_S: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Default)]
pub struct Metrics {
    pub refunds_created: AtomicU64,
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
}

#[derive(Default, Clone)]
struct Histogram {
    buckets: [u64; BUCKETS_S.len()],
    count: u64,
    sum_s: f64,
}

impl Metrics {
    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        *self
            .requests
            .lock()
            .expect("metrics lock")
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default() += 1;
        let mut lat = self.latency.lock().expect("metrics lock");
        let h = lat.entry(route.to_owned()).or_default();
        h.count += 1;
        h.sum_s += seconds;
        for (i, bound) in BUCKETS_S.iter().enumerate() {
            if seconds <= *bound {
                h.buckets[i] += 1;
            }
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP ebb_refunds_created_total Refunds created (not counting idempotent repeats).\n");
        out.push_str("# TYPE ebb_refunds_created_total counter\n");
        let _ = writeln!(out, "ebb_refunds_created_total {}", self.refunds_created.load(Ordering::Relaxed));
        out.push_str("# HELP ebb_http_requests_total HTTP requests by method, route and status.\n");
        out.push_str("# TYPE ebb_http_requests_total counter\n");
        for ((m, r, s), n) in self.requests.lock().expect("metrics lock").iter() {
            let _ = writeln!(out, "ebb_http_requests_total{{method=\"{m}\",route=\"{r}\",status=\"{s}\"}} {n}");
        }
        out.push_str("# HELP ebb_http_request_duration_seconds HTTP request latency by route.\n");
        out.push_str("# TYPE ebb_http_request_duration_seconds histogram\n");
        for (r, h) in self.latency.lock().expect("metrics lock").iter() {
            for (i, bound) in BUCKETS_S.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "ebb_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"{bound}\"}} {}",
                    h.buckets[i]
                );
            }
            let _ = writeln!(out, "ebb_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "ebb_http_request_duration_seconds_sum{{route=\"{r}\"}} {}", h.sum_s);
            let _ = writeln!(out, "ebb_http_request_duration_seconds_count{{route=\"{r}\"}} {}", h.count);
        }
        out
    }
}

/// Counts and times every request under its route template (not the raw path: ids would explode the
/// label set).
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let response = next.run(req).await;
    state.metrics.observe(&method, &route, response.status().as_u16(), start.elapsed().as_secs_f64());
    response
}
