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
        Answer::Price(p) => format!(r#"{{"{id}":{{"{vs}":{p},"last_updated_at":{}}}}}"#, now() - 1),
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
    sources_trusted_for(url, names, Duration::from_secs(600))
}

fn sources_trusted_for(url: &url::Url, names: &[&str], max_age: Duration) -> PricesSettings {
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
    PricesSettings { sources, freshness: Freshness { refresh: Duration::ZERO, max_age } }
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
    assert!((now() - eur["rate_timestamp"].as_i64().unwrap() - 1).abs() <= 1, "CoinGecko's own time: {eur}");
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

fn set_answer(feed: &Shared, key: &str, answer: Answer) {
    feed.lock().unwrap().answers.insert(key.to_owned(), answer);
}

async fn order(app: &TestApp, body: serde_json::Value) -> crate::helpers::Response {
    let mut body = body;
    body["psp_order_code"] = json!(format!("psp-{}", uuid::Uuid::new_v4()));
    app.post("/v2/payments/orders", body).await
}

async fn refund_in(app: &TestApp, order_id: &str, request_id: &str, field: (&str, &str)) -> crate::helpers::Response {
    let mut body = json!({"request_id": request_id, "order_id": order_id, "token_id": "ETH_USDT",
                          "refund_type": "Merchant", "to_address": crate::helpers::USER_ADDRESS});
    match field {
        ("EUR" | "USD", amount) => {
            body["pricing_amount"] = json!(amount);
            body["pricing_currency"] = json!(field.0);
        }
        (_, amount) => body["payable_amount"] = json!(amount),
    }
    app.post("/v2/payments/refunds", body).await
}

/// A EUR-priced order paid in USDT, and refunds asked in EUR at rates that move: converted at the rate
/// of the moment (rounded down), the snapshot stored; both guards at their edges (the token: never
/// more than the order received; the currency: never more than its price, counting refunds asked in
/// the token at the order's own rate).
async fn eur_priced_orders_and_refunds_at_moving_rates(db: Db) {
    let (url, feed, server) = start_feed(&[("coingecko:tether:eur", Answer::Price("0.92"))]).await;
    // Rates are trusted for 3 s: long enough for each step, short enough to see one go stale.
    let prices = sources_trusted_for(&url, &["coingecko"], Duration::from_secs(3));
    let app = spawn_app_with(db, Options { prices: Some(prices), ..Options::default() }).await;
    let m = app.create_merchant("Shop").await;
    let eur = |amount: &str| {
        json!({"merchant_id": m, "payable_currency": "ETH_USDT", "pricing_currency": "EUR",
                                    "pricing_amount": amount, "fee_amount": "0"})
    };

    // €50 at 0.92 EUR per USDT: 54.3478260869… USDT, rounded up.
    let o = order(&app, eur("50")).await.ok();
    assert_eq!(
        (o["payable_amount"].as_str(), o["exchange_rate"].as_str(), o["rate_source"].as_str()),
        (Some("54.347827"), Some("0.92"), Some("coingecko")),
        "{o}"
    );
    assert_eq!((o["pricing_currency"].as_str(), o["pricing_amount"].as_str()), (Some("EUR"), Some("50")));
    // A developer fee is in the pricing currency too: €100 + €15 = 125 USDT, the fee's share rounded down.
    let with_fee = order(
        &app,
        json!({"merchant_id": m, "payable_currency": "ETH_USDT", "pricing_currency": "EUR",
                                      "pricing_amount": "100", "fee_amount": "15"}),
    )
    .await
    .ok();
    assert_eq!(
        (with_fee["payable_amount"].as_str(), with_fee["fee_amount"].as_str()),
        (Some("125"), Some("16.304347"))
    );
    // Price and payable amount both given: the order's own rate, (price + fee) ÷ payable.
    let mut own = eur("50");
    own["payable_amount"] = json!("60");
    let own = order(&app, own).await.ok();
    assert_eq!((own["exchange_rate"].as_str(), own["rate_source"].as_str()), (Some("0.833333333333"), Some("order")));
    for (body, code) in [
        (
            json!({"merchant_id": m, "payable_currency": "ETH_USDT", "pricing_currency": "XYZ", "pricing_amount": "5", "fee_amount": "0"}),
            40000,
        ),
        (
            json!({"merchant_id": m, "payable_currency": "ETH_USDT", "pricing_currency": "EUR", "fee_amount": "0"}),
            40000,
        ),
        (
            json!({"merchant_id": m, "payable_currency": "ETH_USDT", "pricing_currency": "EUR", "pricing_amount": "1.001", "fee_amount": "0"}),
            40001,
        ),
        (
            json!({"merchant_id": m, "payable_currency": "ETH_USDT", "pricing_currency": "JPY", "pricing_amount": "1.5", "fee_amount": "0"}),
            40001,
        ),
        (
            json!({"merchant_id": m, "payable_currency": "ETH_USDT", "pricing_currency": "EUR", "pricing_amount": "5", "fee_amount": "0.5.5"}),
            40001,
        ),
    ] {
        order(&app, body.clone()).await.error(400, code);
    }

    let id = o["order_id"].as_str().unwrap().to_owned();
    app.pay_in_sandbox(&id, json!({})).await;

    // The token rose to 1.25 EUR: €40 is 32 USDT.
    set_answer(&feed, "coingecko:tether:eur", Answer::Price("1.25"));
    let r40 = refund_in(&app, &id, "eur-40", ("EUR", "40")).await.ok();
    assert_eq!(r40["amount"], "32");
    assert_eq!(
        r40["pricing"],
        json!({"currency": "EUR", "amount": "40", "asked_in": "currency", "exchange_rate": "1.25",
               "rate_source": "coingecko", "rate_timestamp": r40["pricing"]["rate_timestamp"]})
    );
    // The price guard: €11 more would pass the €50 price, though 8.8 USDT of 22.347827 are left.
    let err = refund_in(&app, &id, "eur-11", ("EUR", "11")).await.error(422, 42201);
    assert!(err["error_message"].as_str().unwrap().contains("10 EUR left"), "{err}");
    let r10 = refund_in(&app, &id, "eur-10", ("EUR", "10")).await.ok();
    assert_eq!(r10["amount"], "8");
    let after = app.get(&format!("/v2/payments/orders/{id}")).await.ok();
    assert_eq!(after["refunded_pricing_amount"], "50");
    // The price is all refunded; the 14.347827 USDT the rate's rise left stay the merchant's. A refund
    // asked in the token counts at the order's rate (1 USDT = €0.92): refused too.
    let err = refund_in(&app, &id, "usdt-1", ("token", "1")).await.error(422, 42201);
    assert!(err["error_message"].as_str().unwrap().contains("0 EUR left"), "{err}");

    // Cancelled, a refund gives its part of the price back.
    let r10_id = r10["refund_id"].as_str().unwrap();
    app.put(&format!("/v2/payments/refunds/{r10_id}/cancel"), None).await.ok();
    assert_eq!(app.get(&format!("/v2/payments/orders/{id}")).await.ok()["refunded_pricing_amount"], "40");

    // The token fell to 0.40 EUR: €10 is 25 USDT, more than the 22.347827 the order has left.
    set_answer(&feed, "coingecko:tether:eur", Answer::Price("0.4"));
    let err = refund_in(&app, &id, "eur-10-low", ("EUR", "10")).await.error(422, 42201);
    assert!(err["error_message"].as_str().unwrap().contains("ETH_USDT left"), "{err}");
    // In the token it still goes, counted at the order's rate: 2 USDT × 0.92 = €1.84.
    let r2 = refund_in(&app, &id, "usdt-2", ("token", "2")).await.ok();
    assert_eq!((r2["pricing"]["amount"].as_str(), r2["pricing"]["asked_in"].as_str()), (Some("1.84"), Some("token")));
    assert_eq!(r2["pricing"]["rate_source"], "order");
    assert_eq!(app.get(&format!("/v2/payments/orders/{id}")).await.ok()["refunded_pricing_amount"], "41.84");
    // Rounding down: €0.01 at 0.40 is 0.025 USDT exactly; at 0.3 it is 0.0333333… → 0.033333.
    set_answer(&feed, "coingecko:tether:eur", Answer::Price("0.3"));
    assert_eq!(refund_in(&app, &id, "cent", ("EUR", "0.01")).await.ok()["amount"], "0.033333");

    // The same request at a moved rate is the same request: the refund it made, unchanged.
    let again = refund_in(&app, &id, "eur-40", ("EUR", "40")).await.ok();
    assert_eq!((again["refund_id"].as_str(), again["amount"].as_str()), (r40["refund_id"].as_str(), Some("32")));
    refund_in(&app, &id, "eur-40", ("EUR", "41")).await.error(409, 40900);

    // Asked wrong.
    refund_in(&app, &id, "usd", ("USD", "1")).await.error(400, 40000);
    refund_in(&app, &id, "tiny", ("EUR", "0.001")).await.error(400, 40001);
    let mut both = json!({"request_id": "both", "order_id": id, "token_id": "ETH_USDT", "refund_type": "Merchant",
                          "payable_amount": "1", "pricing_amount": "1", "pricing_currency": "EUR"});
    app.post("/v2/payments/refunds", both.clone()).await.error(400, 40000);
    both.as_object_mut().unwrap().remove("payable_amount");
    both.as_object_mut().unwrap().remove("order_id");
    app.post("/v2/payments/refunds", both).await.error(400, 40000);
    // An order priced in its token has no currency to refund in.
    let plain = app.paid_order(&m, "10", "0").await;
    refund_in(&app, plain["order_id"].as_str().unwrap(), "plain", ("EUR", "1")).await.error(400, 40000);

    // The feed fails: the last rate serves while younger than max_age; then a refund in EUR is
    // refused with the feed's reason, and one in the token still goes.
    set_answer(&feed, "coingecko:tether:eur", Answer::Status(429));
    assert_eq!(refund_in(&app, &id, "cached", ("EUR", "0.03")).await.ok()["pricing"]["exchange_rate"], "0.3");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let err = refund_in(&app, &id, "no-rate", ("EUR", "1")).await.error(503, 50301);
    assert!(err["error_message"].as_str().unwrap().contains("answered HTTP 429"), "{err}");
    refund_in(&app, &id, "usdt-0.5", ("token", "0.5")).await.ok();

    // The Cobo API lists the refund with its snapshot.
    let listed = app.get(&format!("/v2/payments/refunds/{}", r40["refund_id"].as_str().unwrap())).await.ok();
    assert_eq!(listed["pricing"], r40["pricing"]);
    app.finish().await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eur_priced_orders_and_refunds_at_moving_rates_sqlite() {
    eur_priced_orders_and_refunds_at_moving_rates(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eur_priced_orders_and_refunds_at_moving_rates_postgres() {
    if crate::helpers::postgres_wanted().await {
        eur_priced_orders_and_refunds_at_moving_rates(Db::Postgres).await;
    }
}

/// An approval policy with a threshold in EUR: a refund of a EUR-priced order is held from €30 of its
/// price up (asked in EUR, or in the token counted at the order's rate); a refund with no value in EUR
/// is held whatever its size (the policy fails closed).
async fn approval_policies_take_fiat_thresholds(app: &TestApp) {
    let policy = app
        .post(
            "/v2/payments/approval_policies",
            json!({"name": "over €30", "fiat_currency": "EUR", "min_fiat_amount": "30", "approvals_required": 1}),
        )
        .await
        .ok();
    assert_eq!((policy["fiat_currency"].as_str(), policy["min_fiat_amount"].as_str()), (Some("EUR"), Some("30")));
    for bad in [
        json!({"name": "x", "fiat_currency": "EUR", "approvals_required": 1}),
        json!({"name": "x", "fiat_currency": "XYZ", "min_fiat_amount": "1", "approvals_required": 1}),
        json!({"name": "x", "fiat_currency": "EUR", "min_fiat_amount": "1.001", "approvals_required": 1}),
    ] {
        app.post("/v2/payments/approval_policies", bad).await.error(400, 40000);
    }
    let m = app.create_merchant("Shop").await;
    // €50 at ebb dev's 0.92: 54.347827 USDT.
    let o = order(
        &app,
        json!({"merchant_id": m, "payable_currency": "ETH_USDT", "pricing_currency": "EUR",
                               "pricing_amount": "50", "fee_amount": "0"}),
    )
    .await
    .ok();
    let id = o["order_id"].as_str().unwrap().to_owned();
    app.pay_in_sandbox(&id, json!({})).await;
    let held = |r: &serde_json::Value| r.get("approval").is_some_and(|a| a["status"] == "Pending");
    let small = refund_in(app, &id, "eur-29.99", ("EUR", "29.99")).await.ok();
    assert!(!held(&small), "€29.99 is under the threshold: {small}");
    let large = refund_in(app, &id, "eur-20-twice", ("EUR", "20")).await.ok();
    assert!(!held(&large));
    // In the token it counts at the order's rate: 0.01 USDT is €0.01 (rounded up), the last of the price.
    let token = refund_in(app, &id, "usdt-0.01", ("token", "0.01")).await.ok();
    assert!(!held(&token), "{token}");
    let o2 = order(
        &app,
        json!({"merchant_id": m, "payable_currency": "ETH_USDT", "pricing_currency": "EUR",
                                "pricing_amount": "100", "fee_amount": "0"}),
    )
    .await
    .ok();
    let id2 = o2["order_id"].as_str().unwrap().to_owned();
    app.pay_in_sandbox(&id2, json!({})).await;
    let at = refund_in(app, &id2, "eur-30", ("EUR", "30")).await.ok();
    assert!(held(&at), "exactly €30 is held: {at}");
    let in_token = refund_in(app, &id2, "usdt-40", ("token", "40")).await.ok();
    assert!(held(&in_token), "40 USDT counts €36.80 at the order's rate: {in_token}");
    // No value in EUR: a refund of an order priced in its token, held however small.
    let plain = app.paid_order(&m, "10", "0").await;
    let tiny = refund_in(app, plain["order_id"].as_str().unwrap(), "plain", ("token", "0.01")).await.ok();
    assert!(held(&tiny), "{tiny}");
}

crate::both_backends!(approval_policies_take_fiat_thresholds);
