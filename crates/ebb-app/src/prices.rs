//! Exchange rates: where they come from, how long one may be used, and what happens when none is
//! fresh.
//!
//! A [`RateSource`] answers "how much `currency` is one `symbol` worth" with a [`Quote`] (the rate,
//! when it was true, who said it). Sources: the operator's static table (a stablecoin peg is one of
//! its rows, never assumed), and HTTP services in the shapes of CoinGecko's `/api/v3/simple/price`
//! and Kraken's `/0/public/Ticker`. [`Prices`] asks them in the configured order, keeps each answer
//! for `refresh`, and refuses any conversion with no quote younger than `max_age`: a rate too old
//! to trust is an error, never a number.
//!
//! Rates are keyed by the token's symbol (`USDT`), not its id: USDT on Tron and on Base is one
//! price.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ebb_core::clock::now_s;
use ebb_core::rate::{fiat_decimals, Rate};
use futures::future::BoxFuture;
use serde_json::value::RawValue;

use crate::{AppError, AppResult};

/// A rate and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub rate: Rate,
    /// The source's name (`static`, `coingecko`, `kraken`).
    pub source: String,
    /// When the rate was true (Unix seconds): the source's own time where it gives one.
    pub at: i64,
}

/// Why a source gave no rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// The source does not price this pair at all (not configured, not listed).
    Unpriced,
    /// The source should have answered and did not (down, slow, garbage).
    Failed(String),
}

/// One place rates come from.
pub trait RateSource: Send + Sync {
    fn name(&self) -> &str;
    /// One `symbol` in `currency` (both upper case).
    fn quote<'a>(&'a self, symbol: &'a str, currency: &'a str) -> BoxFuture<'a, Result<Quote, SourceError>>;
}

/// The operator's own table (`[prices.static]`): a rate that is true until the configuration changes.
pub struct StaticSource {
    table: HashMap<(String, String), Rate>,
}

impl StaticSource {
    pub fn new(table: HashMap<(String, String), Rate>) -> Self {
        StaticSource { table }
    }
}

impl RateSource for StaticSource {
    fn name(&self) -> &str {
        "static"
    }

    fn quote<'a>(&'a self, symbol: &'a str, currency: &'a str) -> BoxFuture<'a, Result<Quote, SourceError>> {
        let found = self.table.get(&(symbol.to_owned(), currency.to_owned())).copied();
        Box::pin(async move {
            let rate = found.ok_or(SourceError::Unpriced)?;
            Ok(Quote { rate, source: "static".into(), at: now_s() })
        })
    }
}

/// The most of an answer read: a ticker is a few hundred bytes.
const MAX_ANSWER: usize = 64 * 1024;

fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| e.to_string())
}

/// GETs `url` and returns its body, or why not.
async fn get_body(client: &reqwest::Client, url: url::Url, headers: &[(&str, &str)]) -> Result<Vec<u8>, SourceError> {
    let mut req = client.get(url).header("Accept", "application/json");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let failed = SourceError::Failed;
    let resp = req
        .send()
        .await
        .map_err(|e| failed(if e.is_timeout() { "timed out".into() } else { format!("unreachable: {e}") }))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(failed(format!("answered HTTP {}", status.as_u16())));
    }
    let body = resp.bytes().await.map_err(|e| failed(format!("answer cut short: {e}")))?;
    if body.len() > MAX_ANSWER {
        return Err(failed(format!("answer of {} bytes is not a price", body.len())));
    }
    Ok(body.to_vec())
}

/// CoinGecko's simple price API: `GET {base}/api/v3/simple/price?ids={id}&vs_currencies={cur}
/// &include_last_updated_at=true&precision=full` answering `{"tether": {"eur": 0.92,
/// "last_updated_at": 1764000000}}`. The price is a JSON number; its text is read exactly.
pub struct CoinGeckoSource {
    client: reqwest::Client,
    base_url: url::Url,
    api_key: Option<String>,
    /// CoinGecko's coin id of each symbol (`USDT` → `tether`).
    ids: HashMap<String, String>,
}

impl CoinGeckoSource {
    pub fn new(
        base_url: url::Url,
        api_key: Option<String>,
        ids: HashMap<String, String>,
        timeout: Duration,
    ) -> Result<Self, String> {
        Ok(CoinGeckoSource { client: http_client(timeout)?, base_url, api_key, ids })
    }

    /// The coin ids of the tokens ebb knows by default.
    pub fn default_ids() -> HashMap<String, String> {
        [("USDT", "tether"), ("USDC", "usd-coin"), ("ETH", "ethereum"), ("BNB", "binancecoin"), ("SOL", "solana")]
            .into_iter()
            .map(|(s, id)| (s.to_owned(), id.to_owned()))
            .collect()
    }
}

impl RateSource for CoinGeckoSource {
    fn name(&self) -> &str {
        "coingecko"
    }

    fn quote<'a>(&'a self, symbol: &'a str, currency: &'a str) -> BoxFuture<'a, Result<Quote, SourceError>> {
        Box::pin(async move {
            let id = self.ids.get(symbol).ok_or(SourceError::Unpriced)?;
            let vs = currency.to_ascii_lowercase();
            let mut url = self.base_url.clone();
            url.path_segments_mut()
                .map_err(|_| SourceError::Failed("base URL cannot take a path".into()))?
                .pop_if_empty()
                .extend(["api", "v3", "simple", "price"]);
            url.query_pairs_mut()
                .append_pair("ids", id)
                .append_pair("vs_currencies", &vs)
                .append_pair("include_last_updated_at", "true")
                .append_pair("precision", "full");
            let headers: Vec<(&str, &str)> =
                self.api_key.as_deref().map(|k| ("x-cg-pro-api-key", k)).into_iter().collect();
            let body = get_body(&self.client, url, &headers).await?;
            let garbage = |why: String| SourceError::Failed(format!("answer is not a price: {why}"));
            let coins: HashMap<String, HashMap<String, Box<RawValue>>> =
                serde_json::from_slice(&body).map_err(|e| garbage(e.to_string()))?;
            // An unknown id or currency answers `{}` or a coin without the currency.
            let coin = coins.get(id.as_str()).ok_or(SourceError::Unpriced)?;
            let price = coin.get(&vs).ok_or(SourceError::Unpriced)?;
            let rate = Rate::parse_json_number(price.get()).map_err(|e| garbage(e.to_string()))?;
            let at = match coin.get("last_updated_at") {
                Some(t) => t.get().parse::<i64>().map_err(|_| garbage(format!("last_updated_at {}", t.get())))?,
                None => now_s(),
            };
            Ok(Quote { rate, source: "coingecko".into(), at })
        })
    }
}

/// Kraken's public ticker: `GET {base}/0/public/Ticker?pair={ASSET}{CURRENCY}` answering
/// `{"error": [], "result": {"USDTZEUR": {"c": ["0.92010", "12.5"], …}}}`: the last trade's price
/// (`c[0]`, a string). Kraken names some pairs its own way in the answer, so the one result is taken
/// whatever its key. The ticker has no time; the quote's is when it was read.
pub struct KrakenSource {
    client: reqwest::Client,
    base_url: url::Url,
    /// Kraken's asset name of each symbol where it differs (`BTC` → `XBT`).
    assets: HashMap<String, String>,
}

impl KrakenSource {
    pub fn new(base_url: url::Url, assets: HashMap<String, String>, timeout: Duration) -> Result<Self, String> {
        Ok(KrakenSource { client: http_client(timeout)?, base_url, assets })
    }
}

#[derive(serde::Deserialize)]
struct KrakenAnswer {
    #[serde(default)]
    error: Vec<String>,
    #[serde(default)]
    result: HashMap<String, KrakenTicker>,
}

#[derive(serde::Deserialize)]
struct KrakenTicker {
    c: Vec<String>,
}

impl RateSource for KrakenSource {
    fn name(&self) -> &str {
        "kraken"
    }

    fn quote<'a>(&'a self, symbol: &'a str, currency: &'a str) -> BoxFuture<'a, Result<Quote, SourceError>> {
        Box::pin(async move {
            let asset = self.assets.get(symbol).map_or(symbol, String::as_str);
            let mut url = self.base_url.clone();
            url.path_segments_mut()
                .map_err(|_| SourceError::Failed("base URL cannot take a path".into()))?
                .pop_if_empty()
                .extend(["0", "public", "Ticker"]);
            url.query_pairs_mut().append_pair("pair", &format!("{asset}{currency}"));
            let body = get_body(&self.client, url, &[]).await?;
            let garbage = |why: String| SourceError::Failed(format!("answer is not a price: {why}"));
            let answer: KrakenAnswer = serde_json::from_slice(&body).map_err(|e| garbage(e.to_string()))?;
            if let Some(e) = answer.error.first() {
                // Kraken says `EQuery:Unknown asset pair` for a pair it does not list.
                return Err(if e.contains("Unknown asset pair") {
                    SourceError::Unpriced
                } else {
                    SourceError::Failed(format!("answered error {e:?}"))
                });
            }
            let mut tickers = answer.result.into_values();
            let (Some(ticker), None) = (tickers.next(), tickers.next()) else {
                return Err(garbage("not exactly one pair".into()));
            };
            let last = ticker.c.first().ok_or_else(|| garbage("no last trade".into()))?;
            let rate = Rate::parse(last).map_err(|e| garbage(e.to_string()))?;
            Ok(Quote { rate, source: "kraken".into(), at: now_s() })
        })
    }
}

/// How long quotes are kept and trusted.
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    /// A cached quote younger than this is used without asking the sources again.
    pub refresh: Duration,
    /// No quote older than this is ever used: past it, conversions are refused.
    pub max_age: Duration,
}

impl Default for Freshness {
    fn default() -> Self {
        Freshness { refresh: Duration::from_secs(60), max_age: Duration::from_secs(600) }
    }
}

/// The rate sources in their order, and the quotes they gave.
pub struct Prices {
    sources: Vec<Arc<dyn RateSource>>,
    freshness: Freshness,
    cache: Mutex<HashMap<(String, String), Quote>>,
    /// One refresh at a time: concurrent requests for a stale pair wait for one answer instead of
    /// each asking the sources.
    refreshing: futures::lock::Mutex<()>,
}

impl Prices {
    pub fn new(sources: Vec<Arc<dyn RateSource>>, freshness: Freshness) -> Self {
        Prices { sources, freshness, cache: Mutex::default(), refreshing: futures::lock::Mutex::new(()) }
    }

    /// No source: every conversion is refused as unpriced.
    pub fn none() -> Self {
        Self::new(Vec::new(), Freshness::default())
    }

    pub fn source_names(&self) -> Vec<String> {
        self.sources.iter().map(|s| s.name().to_owned()).collect()
    }

    /// A rate for one `symbol` in `currency` no older than `max_age`: the cached one while younger than
    /// `refresh`, else the first source in order that answers with a fresh rate, else the cached one
    /// while it is still younger than `max_age`. Refused as `RateUnavailable` when none is fresh, and
    /// as `Invalid` when no source prices the pair at all.
    pub async fn quote(&self, symbol: &str, currency: &str) -> AppResult<Quote> {
        if fiat_decimals(currency).is_none() {
            return Err(AppError::Invalid(format!("{currency:?} is not a supported currency")));
        }
        let key = (symbol.to_owned(), currency.to_owned());
        let max_age = self.freshness.max_age.as_secs() as i64;
        let cached = |within: i64| {
            let cache = self.cache.lock().expect("the price cache is never poisoned");
            cache.get(&key).filter(|q| now_s() - q.at < within).cloned()
        };
        if let Some(q) = cached(self.freshness.refresh.as_secs() as i64) {
            return Ok(q);
        }
        let _one_refresh = self.refreshing.lock().await;
        if let Some(q) = cached(self.freshness.refresh.as_secs() as i64) {
            return Ok(q);
        }
        let mut failures = Vec::new();
        for source in &self.sources {
            match source.quote(symbol, currency).await {
                Ok(q) if now_s() - q.at < max_age => {
                    self.cache.lock().expect("the price cache is never poisoned").insert(key, q.clone());
                    return Ok(q);
                }
                Ok(q) => failures.push(format!("{}: its rate is from {} s ago", source.name(), now_s() - q.at)),
                Err(SourceError::Unpriced) => {}
                Err(SourceError::Failed(why)) => {
                    tracing::warn!(source = source.name(), symbol, currency, why, "price source failed");
                    failures.push(format!("{}: {why}", source.name()));
                }
            }
        }
        if let Some(q) = cached(max_age) {
            return Ok(q);
        }
        if failures.is_empty() {
            return Err(AppError::Invalid(format!("no price source prices {symbol} in {currency}")));
        }
        Err(AppError::RateUnavailable(format!(
            "no rate for {symbol} in {currency} younger than {max_age} s ({})",
            failures.join("; ")
        )))
    }
}

impl crate::Engine {
    /// A fresh rate of `token` in `currency` (upper case), or why there is none.
    pub async fn quote(&self, token: &ebb_core::Token, currency: &str) -> AppResult<Quote> {
        self.prices().quote(&token.symbol, currency).await
    }
}

/// One configured source, resolved (secrets read).
#[derive(Debug, Clone)]
pub enum SourceSettings {
    /// Rates by (symbol, currency).
    Static(HashMap<(String, String), Rate>),
    CoinGecko {
        base_url: url::Url,
        api_key: Option<String>,
        ids: HashMap<String, String>,
        timeout: Duration,
    },
    Kraken {
        base_url: url::Url,
        assets: HashMap<String, String>,
        timeout: Duration,
    },
}

/// What the operator configured (`[prices]`): the sources in order and how fresh a rate must be.
/// The default has no source: every conversion is refused until one is configured.
#[derive(Debug, Clone, Default)]
pub struct PricesSettings {
    pub sources: Vec<SourceSettings>,
    pub freshness: Freshness,
}

impl PricesSettings {
    /// A static table giving every symbol the same rate in each currency: `ebb dev`'s offline table
    /// and the tests'.
    pub fn static_table(symbols: impl IntoIterator<Item = String>, rates: &[(&str, &str)]) -> Self {
        let mut table = HashMap::new();
        for symbol in symbols {
            for (currency, rate) in rates {
                table.insert((symbol.clone(), (*currency).to_owned()), Rate::parse(rate).expect("a valid rate"));
            }
        }
        PricesSettings { sources: vec![SourceSettings::Static(table)], freshness: Freshness::default() }
    }

    pub fn prices(&self) -> AppResult<Prices> {
        let mut sources: Vec<Arc<dyn RateSource>> = Vec::new();
        for s in &self.sources {
            sources.push(match s {
                SourceSettings::Static(table) => Arc::new(StaticSource::new(table.clone())),
                SourceSettings::CoinGecko { base_url, api_key, ids, timeout } => Arc::new(
                    CoinGeckoSource::new(base_url.clone(), api_key.clone(), ids.clone(), *timeout)
                        .map_err(AppError::Invalid)?,
                ),
                SourceSettings::Kraken { base_url, assets, timeout } => {
                    Arc::new(KrakenSource::new(base_url.clone(), assets.clone(), *timeout).map_err(AppError::Invalid)?)
                }
            });
        }
        Ok(Prices::new(sources, self.freshness))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A source whose answers the test sets.
    struct Scripted {
        name: &'static str,
        answer: Mutex<Result<Quote, SourceError>>,
        asked: AtomicUsize,
    }

    impl Scripted {
        fn new(name: &'static str, answer: Result<Quote, SourceError>) -> Arc<Self> {
            Arc::new(Scripted { name, answer: Mutex::new(answer), asked: AtomicUsize::new(0) })
        }
        fn set(&self, answer: Result<Quote, SourceError>) {
            *self.answer.lock().unwrap() = answer;
        }
    }

    impl RateSource for Scripted {
        fn name(&self) -> &str {
            self.name
        }
        fn quote<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<Quote, SourceError>> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            let answer = self.answer.lock().unwrap().clone();
            Box::pin(async move { answer })
        }
    }

    fn quote(rate: &str, source: &str, age: i64) -> Result<Quote, SourceError> {
        Ok(Quote { rate: Rate::parse(rate).unwrap(), source: source.into(), at: now_s() - age })
    }

    fn prices(sources: Vec<Arc<dyn RateSource>>, refresh: u64, max_age: u64) -> Prices {
        Prices::new(sources, Freshness { refresh: Duration::from_secs(refresh), max_age: Duration::from_secs(max_age) })
    }

    #[test]
    fn falls_back_in_order_and_caches() {
        futures::executor::block_on(async {
            let first = Scripted::new("first", Err(SourceError::Failed("answered HTTP 429".into())));
            let second = Scripted::new("second", quote("0.92", "second", 0));
            let p = prices(vec![first.clone(), second.clone()], 60, 600);
            assert_eq!(p.quote("USDT", "EUR").await.unwrap().source, "second");
            assert_eq!(p.quote("USDT", "EUR").await.unwrap().source, "second");
            assert_eq!((first.asked.load(Ordering::SeqCst), second.asked.load(Ordering::SeqCst)), (1, 1), "cached");
            // The first source is back: asked again once the cached quote is past `refresh`.
            let p = prices(vec![first.clone(), second.clone()], 0, 600);
            first.set(quote("0.93", "first", 0));
            assert_eq!(p.quote("USDT", "EUR").await.unwrap().rate.to_decimal_string(), "0.93");
        });
    }

    #[test]
    fn refuses_a_stale_rate_with_the_reasons() {
        futures::executor::block_on(async {
            let feed = Scripted::new("feed", quote("0.92", "feed", 0));
            let p = prices(vec![feed.clone()], 0, 600);
            p.quote("USDT", "EUR").await.unwrap();
            // The feed fails: the cached quote serves while younger than max_age.
            feed.set(Err(SourceError::Failed("timed out".into())));
            assert_eq!(p.quote("USDT", "EUR").await.unwrap().rate.to_decimal_string(), "0.92");
            // Past max_age nothing serves, whatever is cached.
            let p = prices(vec![feed.clone()], 0, 1);
            p.cache.lock().unwrap().insert(("USDT".into(), "EUR".into()), quote("0.92", "feed", 5).unwrap());
            let err = p.quote("USDT", "EUR").await.unwrap_err();
            assert!(matches!(&err, AppError::RateUnavailable(m) if m.contains("feed: timed out")), "{err}");
            // A source's own old rate is no better than none.
            feed.set(quote("0.92", "feed", 3600));
            let err = p.quote("USDT", "EUR").await.unwrap_err();
            assert!(matches!(&err, AppError::RateUnavailable(m) if m.contains("from 3600 s ago")), "{err}");
        });
    }

    #[test]
    fn an_unpriced_pair_and_an_unknown_currency_are_the_callers_errors() {
        futures::executor::block_on(async {
            let p = prices(vec![Scripted::new("feed", Err(SourceError::Unpriced))], 60, 600);
            assert!(matches!(p.quote("USDT", "EUR").await, Err(AppError::Invalid(m)) if m.contains("no price source")));
            assert!(matches!(p.quote("USDT", "XYZ").await, Err(AppError::Invalid(m)) if m.contains("not a supported")));
        });
    }
}
