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

/// Upper bounds of the latency histogram, in microseconds (integers: sums stay exact however long ebb
/// runs; the exposition prints them as seconds).
const BUCKETS_US: [u64; 10] = [1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000, 5_000_000];

#[derive(Default)]
pub struct Metrics {
    pub refunds_created: AtomicU64,
    /// Pay-ins the watchers could not credit and hold for the operator.
    pub payins_held: std::sync::Arc<AtomicU64>,
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
}

#[derive(Default, Clone)]
struct Histogram {
    buckets: [u64; BUCKETS_US.len()],
    count: u64,
    sum_us: u64,
}

impl Metrics {
    fn observe(&self, method: &str, route: &str, status: u16, elapsed_us: u64) {
        *self
            .requests
            .lock()
            .expect("metrics lock")
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default() += 1;
        let mut lat = self.latency.lock().expect("metrics lock");
        let h = lat.entry(route.to_owned()).or_default();
        h.count += 1;
        h.sum_us = h.sum_us.saturating_add(elapsed_us);
        for (i, bound) in BUCKETS_US.iter().enumerate() {
            if elapsed_us <= *bound {
                h.buckets[i] += 1;
            }
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP ebb_refunds_created_total Refunds created (not counting idempotent repeats).\n");
        out.push_str("# TYPE ebb_refunds_created_total counter\n");
        let _ = writeln!(out, "ebb_refunds_created_total {}", self.refunds_created.load(Ordering::Relaxed));
        out.push_str(
            "# HELP ebb_payins_held_total Pay-ins that could not be credited and are held for the operator.\n",
        );
        out.push_str("# TYPE ebb_payins_held_total counter\n");
        let _ = writeln!(out, "ebb_payins_held_total {}", self.payins_held.load(Ordering::Relaxed));
        out.push_str("# HELP ebb_http_requests_total HTTP requests by method, route and status.\n");
        out.push_str("# TYPE ebb_http_requests_total counter\n");
        for ((m, r, s), n) in self.requests.lock().expect("metrics lock").iter() {
            let _ = writeln!(out, "ebb_http_requests_total{{method=\"{m}\",route=\"{r}\",status=\"{s}\"}} {n}");
        }
        out.push_str("# HELP ebb_http_request_duration_seconds HTTP request latency by route.\n");
        out.push_str("# TYPE ebb_http_request_duration_seconds histogram\n");
        for (r, h) in self.latency.lock().expect("metrics lock").iter() {
            for (i, bound) in BUCKETS_US.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "ebb_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"{}\"}} {}",
                    seconds(*bound),
                    h.buckets[i]
                );
            }
            let _ = writeln!(out, "ebb_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "ebb_http_request_duration_seconds_sum{{route=\"{r}\"}} {}", seconds(h.sum_us));
            let _ = writeln!(out, "ebb_http_request_duration_seconds_count{{route=\"{r}\"}} {}", h.count);
        }
        out
    }
}

/// Counts and times every request under its route template (not the raw path: ids would explode the
/// label set). Every label comes from a fixed set, whatever a client sends: the route is one of the
/// router's templates or `unmatched`, the method one of [`method_label`]'s.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    let method = method_label(req.method());
    let start = Instant::now();
    let response = next.run(req).await;
    state.metrics.observe(
        &method,
        &route,
        response.status().as_u16(),
        u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
    );
    response
}

/// The standard methods by name; any other (HTTP allows made-up ones) is `OTHER`.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "OTHER",
    }
}

/// Microseconds as a decimal number of seconds, e.g. 2500 → "0.0025".
fn seconds(us: u64) -> String {
    let frac = format!("{:06}", us % 1_000_000);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        (us / 1_000_000).to_string()
    } else {
        format!("{}.{frac}", us / 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microseconds_print_as_seconds() {
        assert_eq!(seconds(2_500), "0.0025");
        assert_eq!(seconds(1_000_000), "1");
        assert_eq!(seconds(1_234_567), "1.234567");
        assert_eq!(seconds(0), "0");
    }

    #[test]
    fn made_up_methods_share_one_label() {
        for m in ["FOO", "BAR", "PURGE", "X-1"] {
            assert_eq!(method_label(&axum::http::Method::from_bytes(m.as_bytes()).unwrap()), "OTHER");
        }
        assert_eq!(method_label(&axum::http::Method::GET), "GET");
    }

    #[test]
    fn the_histogram_counts_each_request_in_every_bucket_it_fits() {
        let m = Metrics::default();
        m.observe("GET", "/x", 200, 3_000);
        m.observe("GET", "/x", 200, 2_000_000);
        let text = m.render();
        assert!(text.contains("le=\"0.0025\"} 0"), "{text}");
        assert!(text.contains("le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("le=\"5\"} 2"), "{text}");
        assert!(text.contains("ebb_http_request_duration_seconds_sum{route=\"/x\"} 2.003"), "{text}");
        assert!(text.contains("status=\"200\"} 2"), "{text}");
    }
}
