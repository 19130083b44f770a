//! Exchange rates from the price APIs, through Cobo's `GET /v2/payments/exchange_rates/{token}/{cur}`.
//!
//! CoinGecko and Kraken have no local version, so the suite serves their two endpoints itself, in
//! their published shapes (`/api/v3/simple/price` with JSON numbers, `/0/public/Ticker` with strings),
//! and makes each currency answer one way: a good price, 429, 500, garbage, too slow, an old price, or
//! "not listed".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ebb_app::prices::{CoinGeckoSource, Freshness, PricesSettings, SourceSettings};
use serde_json::json;

use crate::helpers::{spawn_app_with, Db, Options, TestApp};

/// How the test feed answers for one currency.
#[derive(Clone, Copy)]
enum Answer {
    /// The price as the API writes it (a JSON number's text for CoinGecko, a string for Kraken).
    Price(&'static str),
    /// A price last updated this many seconds ago (CoinGecko's `last_updated_at`).
    OldPrice(&'static str, i64),
    Status(u16),
    Garbage,
    Slow,
    Unlisted,
}

#[derive(Default)]
struct Feed {
    answers: HashMap<String, Answer>,
    asked: Vec<String>,
}

type Shared = Arc<Mutex<Feed>>;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

async fn answer_for(feed: &Shared, key: String) -> Result<Answer, Response> {
    let answer = {
        let mut f = feed.lock().unwrap();
        f.asked.push(key.clone());
        f.answers.get(&key).copied().unwrap_or(Answer::Unlisted)
    };
    match answer {
        Answer::Status(code) => Err((StatusCode::from_u16(code).unwrap(), "rate limited").into_response()),
        Answer::Garbage => Err((StatusCode::OK, "<html>maintenance</html>").into_response()),
        Answer::Slow => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Err((StatusCode::OK, "{}").into_response())
        }
        other => Ok(other),
    }
}

/// CoinGecko: `?ids=tether&vs_currencies=eur&include_last_updated_at=true&precision=full`.
async fn coingecko(State(feed): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let (id, vs) = (q["ids"].clone(), q["vs_currencies"].clone());
    assert_eq!(q.get("include_last_updated_at").map(String::as_str), Some("true"));
    let answer = match answer_for(&feed, format!("coingecko:{id}:{vs}")).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    // Written by hand: a JSON number's text exactly as CoinGecko sends it, never through a float.
    let body = match answer {
        Answer::Price(p) => format!(r#"{{"{id}":{{"{vs}":{p},"last_updated_at":{}}}}}"#, now() - 5),
        Answer::OldPrice(p, age) => format!(r#"{{"{id}":{{"{vs}":{p},"last_updated_at":{}}}}}"#, now() - age),
        _ => "{}".to_owned(),
    };
    (StatusCode::OK, [("content-type", "application/json")], body).into_response()
}

/// Kraken: `?pair=USDTEUR`, answered under Kraken's own name of the pair.
async fn kraken(State(feed): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let pair = q["pair"].clone();
    match answer_for(&feed, format!("kraken:{pair}")).await {
        Ok(Answer::Price(p)) => axum::Json(json!({"error": [], "result": {
            format!("{}Z{}", &pair[..pair.len() - 3], &pair[pair.len() - 3..]): {
                "a": ["1.00010", "1", "1.000"], "b": ["0.99990", "1", "1.000"], "c": [p, "10.0"],
                "v": ["1", "2"], "p": ["1", "1"], "t": [1, 2], "l": ["1", "1"], "h": ["1", "1"], "o": "1"}}}))
        .into_response(),
        Ok(_) => axum::Json(json!({"error": ["EQuery:Unknown asset pair"]})).into_response(),
        Err(r) => r,
    }
}

async fn start_feed(answers: &[(&str, Answer)]) -> (url::Url, Shared, tokio::task::JoinHandle<()>) {
    let feed: Shared = Arc::default();
    feed.lock().unwrap().answers = answers.iter().map(|(k, a)| ((*k).to_owned(), *a)).collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
    let router = axum::Router::new()
        .route("/api/v3/simple/price", axum::routing::get(coingecko))
        .route("/0/public/Ticker", axum::routing::get(kraken))
        .with_state(feed.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (url, feed, server)
}

fn sources(url: &url::Url, names: &[&str]) -> PricesSettings {
    let timeout = Duration::from_millis(500);
    let sources = names
        .iter()
        .map(|n| match *n {
            "coingecko" => SourceSettings::CoinGecko {
                base_url: url.clone(),
                api_key: None,
                ids: CoinGeckoSource::default_ids(),
                timeout,
            },
            "kraken" => SourceSettings::Kraken { base_url: url.clone(), assets: HashMap::new(), timeout },
            "static" => SourceSettings::Static(
                [(("USDT".to_owned(), "GBP".to_owned()), ebb_core::Rate::parse("0.79").unwrap())].into(),
            ),
            other => panic!("{other}"),
        })
        .collect();
    // Asked afresh every time: each call below shows its source's own answer.
    PricesSettings { sources, freshness: Freshness { refresh: Duration::ZERO, max_age: Duration::from_secs(600) } }
}

async fn rate(app: &TestApp, currency: &str) -> crate::helpers::Response {
    app.get(&format!("/v2/payments/exchange_rates/ETH_USDT/{currency}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coingecko_answers_exactly_and_its_failures_are_refused() {
    let (url, feed, server) = start_feed(&[
        ("coingecko:tether:eur", Answer::Price("0.921234567891234567")),
        ("coingecko:tether:usd", Answer::Price("9.9981e-1")),
        ("coingecko:tether:gbp", Answer::Status(429)),
        ("coingecko:tether:chf", Answer::Status(500)),
        ("coingecko:tether:jpy", Answer::Garbage),
        ("coingecko:tether:cad", Answer::Slow),
        ("coingecko:tether:aud", Answer::OldPrice("1.52", 3600)),
    ])
    .await;
    let app =
        spawn_app_with(Db::Sqlite, Options { prices: Some(sources(&url, &["coingecko"])), ..Options::default() }).await;
    let eur = rate(&app, "EUR").await.ok();
    assert_eq!(eur["rate"], "0.921234567891234567", "exact, never through a float: {eur}");
    assert_eq!((eur["token_id"].as_str(), eur["currency"].as_str()), (Some("ETH_USDT"), Some("EUR")));
    assert_eq!(eur["rate_source"], "coingecko");
    assert!((now() - eur["rate_timestamp"].as_i64().unwrap() - 5).abs() <= 2, "CoinGecko's own time: {eur}");
    assert_eq!(rate(&app, "USD").await.ok()["rate"], "0.99981", "exponent form read exactly");
    for (currency, says) in [
        ("GBP", "coingecko: answered HTTP 429"),
        ("CHF", "coingecko: answered HTTP 500"),
        ("JPY", "coingecko: answer is not a price"),
        ("CAD", "coingecko: timed out"),
        ("AUD", "coingecko: its rate is from 3600 s ago"),
    ] {
        let err = rate(&app, currency).await.error(503, 50301);
        assert!(err["error_message"].as_str().unwrap().contains(says), "{currency}: {err}");
    }
    // A pair no source lists, a currency ebb does not know, a token it does not know: the caller's.
    let err = rate(&app, "SEK").await.error(400, 40000);
    assert!(err["error_message"].as_str().unwrap().contains("no price source prices USDT in SEK"), "{err}");
    rate(&app, "XYZ").await.error(400, 40000);
    app.get("/v2/payments/exchange_rates/NOPE/EUR").await.error(400, 40003);
    assert!(feed.lock().unwrap().asked.iter().all(|k| k.starts_with("coingecko:tether:")));
    app.finish().await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kraken_answers_and_the_sources_fall_back_in_order() {
    let (url, feed, server) = start_feed(&[
        ("kraken:USDTEUR", Answer::Price("0.92010")),
        ("kraken:USDTUSD", Answer::Status(503)),
        ("kraken:USDTJPY", Answer::Garbage),
        ("coingecko:tether:eur", Answer::Status(429)),
        ("coingecko:tether:usd", Answer::Price("1.0002")),
        ("coingecko:tether:jpy", Answer::Slow),
    ])
    .await;
    let only_kraken =
        spawn_app_with(Db::Sqlite, Options { prices: Some(sources(&url, &["kraken"])), ..Options::default() }).await;
    let eur = rate(&only_kraken, "EUR").await.ok();
    assert_eq!((eur["rate"].as_str(), eur["rate_source"].as_str()), (Some("0.9201"), Some("kraken")), "{eur}");
    let err = rate(&only_kraken, "USD").await.error(503, 50301);
    assert!(err["error_message"].as_str().unwrap().contains("kraken: answered HTTP 503"), "{err}");
    let err = rate(&only_kraken, "JPY").await.error(503, 50301);
    assert!(err["error_message"].as_str().unwrap().contains("kraken: answer is not a price"), "{err}");
    rate(&only_kraken, "GBP").await.error(400, 40000);
    only_kraken.finish().await;

    // CoinGecko first, then Kraken, then the operator's table.
    let app = spawn_app_with(
        Db::Sqlite,
        Options { prices: Some(sources(&url, &["coingecko", "kraken", "static"])), ..Options::default() },
    )
    .await;
    let source_of = |v: serde_json::Value| (v["rate"].as_str().unwrap().to_owned(), v["rate_source"].clone());
    assert_eq!(source_of(rate(&app, "USD").await.ok()), ("1.0002".into(), json!("coingecko")));
    assert_eq!(source_of(rate(&app, "EUR").await.ok()), ("0.9201".into(), json!("kraken")), "after CoinGecko's 429");
    assert_eq!(source_of(rate(&app, "GBP").await.ok()), ("0.79".into(), json!("static")), "listed by neither feed");
    let err = rate(&app, "JPY").await.error(503, 50301);
    let message = err["error_message"].as_str().unwrap();
    assert!(message.contains("coingecko: timed out") && message.contains("kraken: answer is not a price"), "{err}");
    let asked = feed.lock().unwrap().asked.clone();
    let eur_asks: Vec<&String> = asked.iter().filter(|k| k.ends_with("eur") || k.ends_with("EUR")).collect();
    assert_eq!(eur_asks.len(), 3, "Kraken alone once, then CoinGecko and Kraken in order: {asked:?}");
    assert_eq!(eur_asks[1..], [&"coingecko:tether:eur".to_owned(), &"kraken:USDTEUR".to_owned()]);
    app.finish().await;
    server.abort();
}
