//! CoinGate's API under `/coingate`: tokens, public data, and orders from creation through checkout to
//! a sandbox payment, on both backends; the same order seen through the Cobo API.

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::TestApp;

const FORM: ebb_store::webhooks::BodyFormat = ebb_store::webhooks::BodyFormat::CoinGateForm;

/// How a request body is sent.
enum Body {
    None,
    Form(Vec<(&'static str, String)>),
    Json(Value),
}

async fn cg(app: &TestApp, method: Method, path: &str, token: Option<&str>, body: Body) -> (u16, Value) {
    let mut req = app.client.request(method, format!("http://{}/coingate{path}", app.addr));
    if let Some(t) = token {
        req = req.header("Authorization", format!("Token {t}"));
    }
    req = match body {
        Body::None => req,
        Body::Form(pairs) => req
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()),
        Body::Json(v) => req.header("Content-Type", "application/json").body(v.to_string()),
    };
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    assert!(status < 500, "ebb answered {status}: {text}");
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn reason(answer: &(u16, Value)) -> (u16, &str) {
    (answer.0, answer.1["reason"].as_str().unwrap_or(""))
}

async fn token_for(app: &TestApp, merchant: &str) -> String {
    ebb_app::coingate::add_token(&app.store, merchant, "test", FORM).await.unwrap().token
}

async fn coingate_public_data_and_tokens(app: &TestApp) {
    let ping = cg(app, Method::GET, "/v2/ping", None, Body::None).await;
    assert_eq!((ping.0, ping.1["ping"].as_str()), (200, Some("pong")));
    let currencies = cg(app, Method::GET, "/v2/currencies/", None, Body::None).await.1;
    let usdt = currencies.as_array().unwrap().iter().find(|c| c["symbol"] == "USDT").unwrap().clone();
    assert_eq!((usdt["id"].as_i64(), usdt["kind"].as_str()), (Some(1), Some("crypto")));
    assert_eq!(usdt["platforms"].as_array().unwrap().len(), 7, "{usdt}");
    let fiat = cg(app, Method::GET, "/v2/currencies?kind=fiat", None, Body::None).await.1;
    assert!(fiat.as_array().unwrap().iter().all(|c| c["kind"] == "fiat"));
    assert!(fiat.as_array().unwrap().iter().any(|c| c["symbol"] == "EUR"));
    let platforms = cg(app, Method::GET, "/v2/platforms", None, Body::None).await.1;
    assert_eq!(platforms[0], json!({"id": 1, "id_name": "ethereum", "title": "Ethereum"}));
    // ebb dev's offline table: 1 USDT = 0.92 EUR; 1 EUR buys its inverse, rounded down.
    assert_eq!(cg(app, Method::GET, "/v2/rates/merchant/USDT/EUR", None, Body::None).await, (200, json!(0.92)));
    assert_eq!(cg(app, Method::GET, "/v2/rates/merchant/eur/usdt", None, Body::None).await.0, 200);
    let inverse = app
        .client
        .get(format!("http://{}/coingate/v2/rates/merchant/EUR/USDT", app.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(inverse, "1.086956521739");
    assert_eq!(
        reason(&cg(app, Method::GET, "/v2/rates/merchant/BTC/EUR", None, Body::None).await),
        (422, "OrderIsNotValid")
    );

    // Orders need a merchant's token: none, an unknown one, a revoked one are refused.
    let m = app.create_merchant("Shop").await;
    assert_eq!(reason(&cg(app, Method::GET, "/v2/orders", None, Body::None).await), (401, "BadAuthToken"));
    let unknown = ebb_app::secrets::generate();
    assert_eq!(reason(&cg(app, Method::GET, "/v2/orders", Some(&unknown), Body::None).await), (401, "BadAuthToken"));
    let issued = ebb_app::coingate::add_token(&app.store, &m, "shop", FORM).await.unwrap();
    assert_eq!(cg(app, Method::GET, "/v2/auth/test", Some(&issued.token), Body::None).await, (200, json!(true)));
    let bearer = app
        .client
        .get(format!("http://{}/coingate/v2/auth/test", app.addr))
        .header("Authorization", format!("Bearer {}", issued.token))
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status().as_u16(), 200, "Bearer works too");
    assert!(ebb_app::coingate::revoke_token(&app.store, &issued.token_id).await.unwrap());
    assert_eq!(
        reason(&cg(app, Method::GET, "/v2/auth/test", Some(&issued.token), Body::None).await),
        (401, "BadAuthToken")
    );
    assert!(ebb_app::coingate::add_token(&app.store, "Mnope", "x", FORM).await.is_err(), "a token for no merchant");
}

async fn coingate_orders_from_create_to_paid(app: &TestApp) {
    let m = app.create_merchant("Shop").await;
    let token = token_for(app, &m).await;
    let other = token_for(app, &app.create_merchant("Other").await).await;
    let t = Some(token.as_str());

    // Form-encoded, as CoinGate's examples send it.
    let form = |order_id: &str, amount: &str| {
        Body::Form(vec![
            ("order_id", order_id.to_owned()),
            ("price_amount", amount.to_owned()),
            ("price_currency", "EUR".into()),
            ("receive_currency", "EUR".into()),
            ("title", "Order #1".into()),
            ("callback_url", "https://shop.example/callback".into()),
            ("token", "merchant-secret".into()),
            ("purchaser_email", "buyer@example.com".into()),
        ])
    };
    let (status, created) = cg(app, Method::POST, "/v2/orders", t, form("shop-1", "46.00")).await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_i64().expect("an integer id");
    assert_eq!(
        (created["status"].as_str(), created["price_amount"].as_str(), created["price_currency"].as_str()),
        (Some("new"), Some("46"), Some("EUR"))
    );
    assert_eq!((created["order_id"].as_str(), created["token"].as_str()), (Some("shop-1"), Some("merchant-secret")));
    assert!(created["created_at"].as_str().unwrap().ends_with("+00:00"));
    // JSON, with the price a JSON number read exactly.
    // CoinGate's `shopper` object is accepted and not read.
    let (status, usd) = cg(
        app,
        Method::POST,
        "/v2/orders/",
        t,
        Body::Json(json!({"price_amount": 10.50, "price_currency": "usd", "receive_currency": "DO_NOT_CONVERT",
                          "shopper": {"type": "personal", "email": "buyer@example.com"}})),
    )
    .await;
    assert_eq!(
        (status, usd["price_amount"].as_str(), usd["do_not_convert"].as_bool()),
        (200, Some("10.5"), Some(true))
    );
    for body in [
        json!({"price_amount": "abc", "price_currency": "EUR", "receive_currency": "EUR"}),
        json!({"price_amount": "1.001", "price_currency": "EUR", "receive_currency": "EUR"}),
        json!({"price_amount": "5", "price_currency": "XYZ", "receive_currency": "EUR"}),
        json!({"price_amount": "5", "price_currency": "EUR"}),
        json!({"price_amount": "5", "price_currency": "EUR", "receive_currency": "EUR", "callback_url": "ftp://x"}),
        json!({"price_amount": "5", "price_currency": "EUR", "receive_currency": "EUR", "purchaser_email": "nobody"}),
        json!({"price_amount": {"x": 1}, "price_currency": "EUR", "receive_currency": "EUR"}),
    ] {
        let answer = cg(app, Method::POST, "/v2/orders", t, Body::Json(body.clone())).await;
        assert!(matches!(reason(&answer), (422, "OrderIsNotValid") | (400, "BadRequest")), "{body}: {answer:?}");
        assert!(!answer.1["message"].as_str().unwrap().is_empty() && answer.1["errors"].is_array());
    }

    // Paths as some clients write them: upper case, a trailing slash.
    let (status, got) = cg(app, Method::GET, &format!("/V2/Orders/{id}/"), t, Body::None).await;
    assert_eq!((status, got["status"].as_str(), got["payment_address"].as_str()), (200, Some("new"), Some("")));
    assert_eq!(
        reason(&cg(app, Method::GET, &format!("/v2/orders/{id}"), Some(&other), Body::None).await),
        (404, "OrderNotFound")
    );
    assert_eq!(reason(&cg(app, Method::GET, "/v2/orders/999999", t, Body::None).await), (404, "OrderNotFound"));
    assert_eq!(reason(&cg(app, Method::GET, "/v2/orders/abc", t, Body::None).await), (404, "OrderNotFound"));
    assert_eq!(reason(&cg(app, Method::GET, "/v2/nothing", t, Body::None).await), (404, "NotFound"));

    // Checkout: USDT is on seven chains; without platform_id it is paid on the lowest-numbered one.
    let checkout = |fields: Vec<(&'static str, String)>| {
        let path = format!("/v2/orders/{id}/checkout");
        async move { cg(app, Method::POST, &path, t, Body::Form(fields)).await }
    };
    let answer = checkout(vec![("pay_currency", "BTC".into())]).await;
    assert_eq!(reason(&answer), (422, "OrderIsNotValid"));
    assert!(answer.1["message"].as_str().unwrap().contains("not paid in"), "{answer:?}");
    let (status, out) = checkout(vec![("pay_currency", "USDT".into())]).await;
    assert_eq!(status, 200, "{out}");
    // €46 at 0.92 EUR per USDT.
    assert_eq!((out["pay_currency"].as_str(), out["pay_amount"].as_str()), (Some("USDT"), Some("50")));
    assert_eq!(out["platform"], json!({"id": 1, "id_name": "ethereum", "title": "Ethereum"}));
    assert_eq!(out["status"], "pending");
    let address = out["payment_address"].as_str().unwrap().to_owned();
    assert!(address.starts_with("0x") && address.len() == 42, "{out}");
    let again = checkout(vec![("pay_currency", "usdt".into()), ("platform_id", "1".into())]).await;
    assert_eq!(again.1["payment_address"].as_str(), Some(address.as_str()), "checking out again changes nothing");
    let again = checkout(vec![("pay_currency", "usdt".into()), ("platform_id", "ethereum".into())]).await;
    assert_eq!(again.1["payment_address"].as_str(), Some(address.as_str()), "checking out again changes nothing");
    assert_eq!(
        reason(&checkout(vec![("pay_currency", "USDT".into()), ("platform_id", "3".into())]).await),
        (422, "OrderIsNotValid")
    );

    // Paid on the sandbox chain through the ebb order checkout made; the Cobo API sees the same order.
    let ebb_order = app.store.coingate_order(id).await.unwrap().unwrap().order_id.unwrap();
    let cobo = app.get(&format!("/v2/payments/orders/{ebb_order}")).await.ok();
    assert_eq!(
        (cobo["psp_order_code"].as_str(), cobo["pricing_currency"].as_str(), cobo["receive_address"].as_str()),
        (Some(format!("coingate-{id}").as_str()), Some("EUR"), Some(address.as_str()))
    );
    assert_eq!(cobo["merchant_order_code"], "shop-1");
    app.pay_in_sandbox(&ebb_order, json!({})).await;
    let (_, paid) = cg(app, Method::GET, &format!("/v2/orders/{id}"), t, Body::None).await;
    assert_eq!(
        (paid["status"].as_str(), paid["receive_amount"].as_str(), paid["is_refundable"].as_bool()),
        (Some("paid"), Some("50"), Some(true)),
        "{paid}"
    );
    assert_eq!(app.merchant_balance(&m, "ETH_USDT").await["total_balance"], "50");

    // Listing: paged, sorted, filtered by time; a merchant sees only its own.
    for n in 0..3 {
        cg(app, Method::POST, "/v2/orders", t, form(&format!("more-{n}"), "1")).await;
    }
    let list = |q: &str, tok: &str| {
        let (path, tok) = (format!("/v2/orders?{q}"), tok.to_owned());
        async move { cg(app, Method::GET, &path, Some(&tok), Body::None).await }
    };
    let (_, first) = list("per_page=2&page=1&sort=created_at_asc", &token).await;
    assert_eq!((first["total_orders"].as_i64(), first["total_pages"].as_i64()), (Some(5), Some(3)), "{first}");
    assert_eq!(first["orders"][0]["id"].as_i64(), Some(id));
    assert_eq!(first["orders"].as_array().unwrap().len(), 2);
    let (_, last) = list("per_page=2&page=3&sort=created_at_asc", &token).await;
    assert_eq!(last["orders"][0]["order_id"], "more-2");
    let (_, newest) = list("per_page=1", &token).await;
    assert_eq!(newest["orders"][0]["order_id"], "more-2", "newest first by default");
    let (_, future) = list("created_at%5Bfrom%5D=2999-01-01", &token).await;
    assert_eq!(future["total_orders"], 0);
    let (_, today) = list("created_at%5Bfrom%5D=2000-01-01&created_at%5Bto%5D=2999-12-31T23:59:59Z", &token).await;
    assert_eq!(today["total_orders"], 5);
    assert_eq!(reason(&list("per_page=101", &token).await), (422, "OrderIsNotValid"));
    assert_eq!(reason(&list("sort=updated_at", &token).await), (422, "OrderIsNotValid"));
    assert_eq!(reason(&list("created_at%5Bfrom%5D=yesterday", &token).await), (422, "OrderIsNotValid"));
    assert_eq!(list("", &other).await.1["total_orders"], 0);
}

crate::both_backends!(coingate_public_data_and_tokens, coingate_orders_from_create_to_paid);

/// A paid CoinGate order and the CoinGate order id (and its ebb order's id).
async fn paid_coingate_order(app: &TestApp, token: &str, price: &str) -> (i64, String) {
    let body = Body::Form(vec![
        ("price_amount", price.to_owned()),
        ("price_currency", "EUR".into()),
        ("receive_currency", "EUR".into()),
        ("title", "Refundable".into()),
    ]);
    let (_, created) = cg(app, Method::POST, "/v2/orders", Some(token), body).await;
    let id = created["id"].as_i64().unwrap();
    let path = format!("/v2/orders/{id}/checkout");
    let (status, out) =
        cg(app, Method::POST, &path, Some(token), Body::Form(vec![("pay_currency", "USDT".into())])).await;
    assert_eq!(status, 200, "{out}");
    let ebb_order = app.store.coingate_order(id).await.unwrap().unwrap().order_id.unwrap();
    app.pay_in_sandbox(&ebb_order, json!({})).await;
    (id, ebb_order)
}

/// Refunds asked in the order's price currency through CoinGate's API: converted, guarded, paid out by
/// the executor, the same refund the Cobo API lists; listed, paged, sorted and filtered; every error
/// reason.
async fn coingate_refunds_in_the_price_currency(app: &TestApp) {
    let m = app.create_merchant("Shop").await;
    let token = token_for(app, &m).await;
    let other = token_for(app, &app.create_merchant("Other").await).await;
    let t = Some(token.as_str());
    // €46 at 0.92: 50 USDT paid.
    let (id, ebb_order) = paid_coingate_order(app, &token, "46").await;
    let refunds = format!("/v2/orders/{id}/refunds");
    let ask = |amount: &str| {
        Body::Form(vec![
            ("amount", amount.to_owned()),
            ("address", crate::helpers::USER_ADDRESS.into()),
            ("address_memo", "memo-1".into()),
            ("currency_id", "1".into()),
            ("platform_id", "1".into()),
            ("ledger_account_id", format!("{m}-ETH_USDT")),
            ("reason", "damaged".into()),
            ("email", "buyer@example.com".into()),
            ("callback_url", "https://shop.example/refund-callback".into()),
            ("skip_user_address_confirmation", "true".into()),
        ])
    };
    let (status, refund) = cg(app, Method::POST, &refunds, t, ask("23")).await;
    assert_eq!(status, 200, "{refund}");
    let refund_seq = refund["id"].as_i64().expect("an integer id");
    assert_eq!(
        (
            refund["request_amount"].as_str(),
            refund["request_currency"]["symbol"].as_str(),
            refund["refund_amount"].as_str()
        ),
        (Some("23"), Some("EUR"), Some("25")),
        "€23 at 0.92 EUR per USDT: {refund}"
    );
    assert_eq!(refund["status"], "pending");
    assert_eq!(
        refund["order"],
        json!({"id": id, "title": "Refundable", "price_amount": "46",
        "price_currency": {"id": 1001, "title": "EUR", "kind": "fiat", "symbol": "EUR"}})
    );
    assert_eq!(refund["refund_currency"]["platform"], json!({"id": 1, "title": "Ethereum"}));
    assert_eq!(refund["ledger_account"]["id"], format!("{m}-ETH_USDT"));
    assert_eq!(
        (refund["email"].as_str(), refund["reason"].as_str(), refund["memo"].as_str()),
        (Some("buyer@example.com"), Some("damaged"), Some("memo-1"))
    );

    // The Cobo API lists the same refund, with its pricing snapshot; the executor pays it out.
    let cobo = app.get(&format!("/v2/payments/refunds?merchant_id={m}")).await.ok();
    assert_eq!(cobo["data"].as_array().unwrap().len(), 1, "{cobo}");
    let cobo_refund = &cobo["data"][0];
    assert_eq!(
        (cobo_refund["order_id"].as_str(), cobo_refund["amount"].as_str()),
        (Some(ebb_order.as_str()), Some("25"))
    );
    assert_eq!(cobo_refund["pricing"]["amount"], "23");
    let refund_id = cobo_refund["refund_id"].as_str().unwrap().to_owned();
    app.mine_until(&app.sandbox("ETH"), &refund_id, "Completed").await;
    let (_, done) = cg(app, Method::GET, &format!("{refunds}/{refund_seq}"), t, Body::None).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(done["transactions"][0]["hash"].as_str().unwrap().starts_with("0x"), "{done}");
    let (_, order) = cg(app, Method::GET, &format!("/v2/orders/{id}"), t, Body::None).await;
    assert_eq!(order["status"], "partially_refunded");

    // The guards: €23.01 more is 25.01 USDT, more than the 25 left (in the token, said in the token's
    // decimals); €23 exactly is the rest of the price.
    let over = cg(app, Method::POST, &refunds, t, ask("23.01")).await;
    assert_eq!(reason(&over), (422, "RefundIsNotValid"));
    assert!(over.1["message"].as_str().unwrap().contains("(25 ETH_USDT left)"), "{over:?}");
    let (_, second) = cg(app, Method::POST, &refunds, t, ask("23")).await;
    let second_seq = second["id"].as_i64().unwrap();

    // Wrong in every way CoinGate names.
    let with =
        |pairs: Vec<(&'static str, &str)>| Body::Form(pairs.into_iter().map(|(k, v)| (k, v.to_owned())).collect());
    let addr = crate::helpers::USER_ADDRESS;
    for (body, why) in [
        (with(vec![("address", addr)]), "amount is required"),
        (with(vec![("amount", "1")]), "address is required"),
        (with(vec![("amount", "0"), ("address", addr)]), "amount"),
        (with(vec![("amount", "1.001"), ("address", addr)]), "amount"),
        (with(vec![("amount", "1"), ("address", "0x123")]), "address"),
        (with(vec![("amount", "1"), ("address", addr), ("currency_id", "2")]), "currency_id"),
        (with(vec![("amount", "1"), ("address", addr), ("platform_id", "3")]), "platform_id"),
        (with(vec![("amount", "1"), ("address", addr), ("ledger_account_id", "x")]), "ledger_account_id"),
        (with(vec![("amount", "1"), ("address", addr), ("email", "nobody")]), "e-mail"),
        (with(vec![("amount", "1"), ("address", addr), ("skip_user_address_confirmation", "maybe")]), "true or false"),
    ] {
        let answer = cg(app, Method::POST, &refunds, t, body).await;
        assert_eq!(reason(&answer), (422, "RefundIsNotValid"), "{why}: {answer:?}");
        assert!(answer.1["message"].as_str().unwrap().contains(why), "{why}: {answer:?}");
    }
    // An order never paid has nothing to refund; another merchant's order and refunds are not found.
    let (_, unpaid) = cg(
        app,
        Method::POST,
        "/v2/orders",
        t,
        Body::Json(json!({"price_amount": "5", "price_currency": "EUR", "receive_currency": "EUR"})),
    )
    .await;
    let unpaid_refunds = format!("/v2/orders/{}/refunds", unpaid["id"]);
    assert_eq!(reason(&cg(app, Method::POST, &unpaid_refunds, t, ask("1")).await), (422, "RefundIsNotValid"));
    assert_eq!(reason(&cg(app, Method::POST, &refunds, Some(&other), ask("1")).await), (404, "OrderNotFound"));
    assert_eq!(
        reason(&cg(app, Method::GET, &format!("{refunds}/{refund_seq}"), Some(&other), Body::None).await),
        (404, "OrderNotFound")
    );
    assert_eq!(
        reason(&cg(app, Method::GET, &format!("{unpaid_refunds}/{refund_seq}"), t, Body::None).await),
        (404, "RefundNotFound")
    );
    assert_eq!(
        reason(&cg(app, Method::GET, &format!("{refunds}/999999"), t, Body::None).await),
        (404, "RefundNotFound")
    );
    assert_eq!(reason(&cg(app, Method::GET, &format!("{refunds}/x"), t, Body::None).await), (404, "RefundNotFound"));

    // Listing: an order's refunds, oldest first; all refunds, sorted and filtered; only one's own.
    let (id2, _) = paid_coingate_order(app, &token, "9.2").await;
    cg(app, Method::POST, &format!("/v2/orders/{id2}/refunds"), t, ask("1")).await;
    let (_, of_order) = cg(app, Method::GET, &refunds, t, Body::None).await;
    assert_eq!(of_order["total_refunds"], 2);
    assert_eq!(of_order["refunds"][0]["id"].as_i64(), Some(refund_seq));
    let all = |q: &str, tok: &str| {
        let (path, tok) = (format!("/v2/refunds?{q}"), tok.to_owned());
        async move { cg(app, Method::GET, &path, Some(&tok), Body::None).await }
    };
    let (_, newest) = all("per_page=1", &token).await;
    assert_eq!((newest["total_refunds"].as_i64(), newest["total_pages"].as_i64()), (Some(3), Some(3)));
    assert_eq!(newest["refunds"][0]["order"]["id"].as_i64(), Some(id2), "newest first: {newest}");
    let (_, oldest) = all("per_page=2&page=1&sort=created_at_asc", &token).await;
    assert_eq!(oldest["refunds"][0]["id"].as_i64(), Some(refund_seq));
    // The paid refund changed last... unless a later one did; updated_at sorts by it either way.
    let (_, by_update) = all("sort=updated_at_desc", &token).await;
    let updated: Vec<String> =
        by_update["refunds"].as_array().unwrap().iter().map(|r| r["updated_at"].as_str().unwrap().to_owned()).collect();
    assert!(updated.windows(2).all(|w| w[0] >= w[1]), "{updated:?}");
    assert_eq!(all("updated_at%5Bfrom%5D=2999-01-01", &token).await.1["total_refunds"], 0);
    assert_eq!(all("created_at%5Bto%5D=2000-01-01", &token).await.1["total_refunds"], 0);
    assert_eq!(all("created_at%5Bfrom%5D=2000-01-01", &token).await.1["total_refunds"], 3);
    assert_eq!(reason(&all("sort=amount", &token).await), (422, "RefundIsNotValid"));
    assert_eq!(reason(&all("per_page=0", &token).await), (422, "RefundIsNotValid"));

    // What a refund may be paid in: the tokens, with their platforms (no fiat currency); a token is needed.
    let (status, supported) = cg(app, Method::GET, "/V2/Refunds/Supported-Currencies/", t, Body::None).await;
    assert_eq!(status, 200, "{supported}");
    let currencies = supported["currencies"].as_array().unwrap();
    assert!(currencies.iter().all(|c| c["kind"] == "crypto"), "{supported}");
    let usdt = currencies.iter().find(|c| c["symbol"] == "USDT").unwrap();
    assert_eq!((usdt["id"].as_i64(), usdt["platforms"][0]["id"].as_i64()), (Some(1), Some(1)), "{usdt}");
    assert_eq!(
        reason(&cg(app, Method::GET, "/v2/refunds/supported-currencies", None, Body::None).await),
        (401, "BadAuthToken")
    );
    assert_eq!(all("", &other).await.1["total_refunds"], 0);
    assert!(second_seq > refund_seq);

    // Ledger accounts: the merchant's balance of each token, as the Cobo API reports it.
    let (status, accounts) = cg(app, Method::GET, "/v2/ledger/accounts?per_page=100", t, Body::None).await;
    assert_eq!((status, accounts["total_accounts"].as_i64()), (200, Some(13)), "{accounts}");
    let account_id = format!("{m}-ETH_USDT");
    let usdt =
        accounts["accounts"].as_array().unwrap().iter().find(|a| a["id"] == account_id.as_str()).unwrap().clone();
    let cobo_balance = app.merchant_balance(&m, "ETH_USDT").await["total_balance"].clone();
    assert_eq!(usdt["balance"], cobo_balance, "{usdt}");
    assert_eq!(usdt["currency"]["symbol"], "USDT");
    let (status, one) = cg(app, Method::GET, &format!("/v2/ledger/accounts/{account_id}"), t, Body::None).await;
    assert_eq!((status, &one), (200, &usdt));
    let (_, paged) = cg(app, Method::GET, "/v2/ledger/accounts?per_page=5&page=3", t, Body::None).await;
    assert_eq!((paged["accounts"].as_array().unwrap().len(), paged["total_pages"].as_i64()), (3, Some(3)));
    let theirs = cg(app, Method::GET, &format!("/v2/ledger/accounts/{account_id}"), Some(&other), Body::None).await;
    assert_eq!(reason(&theirs), (404, "LedgerAccountNotFound"));
}

crate::both_backends_paying!(coingate_refunds_in_the_price_currency);

/// A callback's fields: a form body's pairs (nested as `a[b]`), or a JSON body flattened the same way.
fn callback_fields(r: &crate::webhooks::Received) -> std::collections::HashMap<String, String> {
    fn flatten(out: &mut std::collections::HashMap<String, String>, key: &str, v: &Value) {
        match v {
            Value::Object(m) => {
                for (k, inner) in m {
                    let name = if key.is_empty() { k.clone() } else { format!("{key}[{k}]") };
                    flatten(out, &name, inner);
                }
            }
            Value::String(s) => {
                out.insert(key.to_owned(), s.clone());
            }
            Value::Null => {
                out.insert(key.to_owned(), String::new());
            }
            other => {
                out.insert(key.to_owned(), other.to_string());
            }
        }
    }
    let content_type = r.headers.get("content-type").unwrap().to_str().unwrap();
    if content_type == "application/json" {
        let mut out = std::collections::HashMap::new();
        flatten(&mut out, "", &r.json());
        out
    } else {
        assert_eq!(content_type, "application/x-www-form-urlencoded");
        url::form_urlencoded::parse(r.body.as_bytes()).into_owned().collect()
    }
}

/// CoinGate's callbacks to `callback_url`: an order's status changes form-encoded with the merchant's
/// `token`; a refund's creation, processing and completion as JSON (a token made with the JSON format);
/// signed with ebb's key; in the attempt log of a callback endpoint the Cobo API does not list and will
/// not change, and sent again on a replay; a refusal (403) ends a callback at once.
async fn coingate_callbacks(app: &TestApp) {
    use crate::webhooks::Receiver;
    use std::time::Duration;
    let receiver = Receiver::start().await;
    let m = app.create_merchant("Shop").await;
    let form_token = token_for(app, &m).await;
    let json_token =
        ebb_app::coingate::add_token(&app.store, &m, "json", ebb_store::webhooks::BodyFormat::CoinGateJson)
            .await
            .unwrap()
            .token;
    let order_hook = format!("{}?for=orders", receiver.url);
    let body = Body::Form(vec![
        ("price_amount", "46".into()),
        ("price_currency", "EUR".into()),
        ("receive_currency", "EUR".into()),
        ("order_id", "shop-17".into()),
        ("callback_url", order_hook.clone()),
        ("token", "order-secret".into()),
    ]);
    let (_, created) = cg(app, Method::POST, "/v2/orders", Some(&form_token), body).await;
    let id = created["id"].as_i64().unwrap();
    let checkout = format!("/v2/orders/{id}/checkout");
    let pay = Body::Form(vec![("pay_currency", "USDT".into())]);
    assert_eq!(cg(app, Method::POST, &checkout, Some(&form_token), pay).await.0, 200);
    let ebb_order = app.store.coingate_order(id).await.unwrap().unwrap().order_id.unwrap();
    app.pay_in_sandbox(&ebb_order, json!({})).await;
    let got = receiver
        .wait_until(Duration::from_secs(20), "the order's paid callback", |r| {
            r.iter().any(|r| callback_fields(r).get("status").map(String::as_str) == Some("paid"))
        })
        .await;
    let paid = got.iter().find(|r| callback_fields(r)["status"] == "paid").unwrap();
    paid.verify_cobo(&app.server_public);
    let f = callback_fields(paid);
    for (k, v) in [
        ("id", id.to_string()),
        ("order_id", "shop-17".into()),
        ("token", "order-secret".into()),
        ("price_amount", "46".into()),
        ("price_currency", "EUR".into()),
        ("pay_currency", "USDT".into()),
        ("pay_amount", "50".into()),
        ("receive_amount", "50".into()),
        ("is_refundable", "true".into()),
    ] {
        assert_eq!(f.get(k), Some(&v), "{k} in {}", paid.body);
    }
    let statuses: Vec<String> = got.iter().map(|r| callback_fields(r)["status"].clone()).collect();
    assert!(!statuses.contains(&"pending".to_owned()), "no callback for the order's creation: {statuses:?}");

    // A refund made with the JSON token calls its own URL as JSON: created (pending), processing,
    // completed, in that order.
    let refund_hook = format!("{}?for=refunds", receiver.url);
    let ask = Body::Form(vec![
        ("amount", "23".into()),
        ("address", crate::helpers::USER_ADDRESS.into()),
        ("address_memo", "memo-1".into()),
        ("reason", "damaged".into()),
        ("email", "buyer@example.com".into()),
        ("callback_url", refund_hook.clone()),
        ("skip_user_address_confirmation", "true".into()),
    ]);
    let (status, refund) = cg(app, Method::POST, &format!("/v2/orders/{id}/refunds"), Some(&json_token), ask).await;
    assert_eq!(status, 200, "{refund}");
    let refund_id = app.store.coingate_refund(refund["id"].as_i64().unwrap()).await.unwrap().unwrap().refund_id;
    app.mine_until(&app.sandbox("ETH"), &refund_id, "Completed").await;
    let of_refund = |r: &[crate::webhooks::Received]| -> Vec<crate::webhooks::Received> {
        r.iter().filter(|r| r.headers.get("content-type").unwrap() == "application/json").cloned().collect()
    };
    let got = receiver
        .wait_until(Duration::from_secs(20), "the refund's completed callback", |r| {
            of_refund(r).iter().any(|r| r.json()["status"] == "completed")
        })
        .await;
    let refund_calls = of_refund(&got);
    let mut seen: Vec<String> = refund_calls.iter().map(|r| r.json()["status"].as_str().unwrap().to_owned()).collect();
    seen.dedup();
    assert_eq!(seen, ["pending", "processing", "completed"], "in order");
    let done = refund_calls.last().unwrap();
    done.verify_cobo(&app.server_public);
    let f = callback_fields(done);
    for (k, v) in [
        ("id", refund["id"].to_string()),
        ("order_id", id.to_string()),
        ("request_amount", "23".into()),
        ("request_currency[symbol]", "EUR".into()),
        ("request_currency[id]", "1001".into()),
        ("refund_amount", "25".into()),
        ("refund_currency[symbol]", "USDT".into()),
        ("refund_currency[platform][id]", "1".into()),
        ("address", crate::helpers::USER_ADDRESS.into()),
        ("additional_address_field", "memo-1".into()),
        ("email", "buyer@example.com".into()),
        ("reason", "damaged".into()),
        ("ledger_account[id]", format!("{m}-ETH_USDT")),
        ("ledger_account[currency][symbol]", "USDT".into()),
        ("token", "order-secret".into()),
    ] {
        assert_eq!(f.get(k), Some(&v), "{k} in {}", done.body);
    }
    assert!(!f.contains_key("compliance_rejection_reason"), "only when rejected: {}", done.body);

    // The callback URLs are endpoints of their own: not in the Cobo API's list, not changeable there,
    // with their attempts logged, and replayed on request.
    let listed = app.get("/v2/webhooks/endpoints").await.ok();
    assert_eq!(listed["data"].as_array().unwrap().len(), 0, "{listed}");
    let page = ebb_store::page::PageRequest { limit: 10, ..Default::default() };
    let endpoints = app.store.list_endpoints(None, None, true, &page).await.unwrap().items;
    let refund_endpoint = endpoints.iter().find(|e| e.url == refund_hook).expect("the refund's callback URL");
    assert_eq!(refund_endpoint.format, ebb_store::webhooks::BodyFormat::CoinGateJson);
    let put = app
        .put(
            &format!("/v2/webhooks/endpoints/{}", refund_endpoint.endpoint_id),
            Some(json!({"subscribed_events": ["payment.refund.status.updated"]})),
        )
        .await;
    assert!(put.status.is_client_error(), "{} {}", put.status, put.body);
    let filter = ebb_store::webhooks::DeliveryFilter::default();
    // A delivery is recorded a moment after the receiver has it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let log = loop {
        let log = app.store.list_deliveries(&refund_endpoint.endpoint_id, &filter, &page).await.unwrap().items;
        if log.len() >= 3 && log.iter().all(|d| d.status == "Success") {
            break log;
        }
        assert!(std::time::Instant::now() < deadline, "{log:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let before = receiver.received().len();
    let replayed = ebb_app::webhooks::retry_delivery(
        &app.store,
        &ebb_app::Actor::psp("test"),
        &refund_endpoint.endpoint_id,
        &log[0].event_id,
    )
    .await
    .unwrap();
    assert!(replayed);
    let again = receiver.wait_until(Duration::from_secs(10), "the replay", |r| r.len() > before).await;
    assert!(refund_calls.iter().any(|r| r.body == again[before].body), "a replay sends the same body");

    // 403 ends a callback: no retry (CoinGate's rule), where a Cobo webhook would be retried.
    let (id2, order2) = {
        let hook = format!("{}?for=refused", receiver.url);
        let body = Body::Form(vec![
            ("price_amount", "9.2".into()),
            ("price_currency", "EUR".into()),
            ("receive_currency", "EUR".into()),
            ("callback_url", hook),
        ]);
        let (_, created) = cg(app, Method::POST, "/v2/orders", Some(&form_token), body).await;
        let id2 = created["id"].as_i64().unwrap();
        let pay = Body::Form(vec![("pay_currency", "USDT".into())]);
        assert_eq!(cg(app, Method::POST, &format!("/v2/orders/{id2}/checkout"), Some(&form_token), pay).await.0, 200);
        (id2, app.store.coingate_order(id2).await.unwrap().unwrap().order_id.unwrap())
    };
    receiver.answer_next(&[(403, None), (403, None), (403, None), (403, None)]);
    app.pay_in_sandbox(&order2, json!({})).await;
    let endpoints = app.store.list_endpoints(None, None, true, &page).await.unwrap().items;
    let refused = endpoints.iter().find(|e| e.url.ends_with("for=refused")).unwrap().endpoint_id.clone();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let log = app.store.list_deliveries(&refused, &filter, &page).await.unwrap().items;
        if !log.is_empty() && log.iter().all(|d| d.status == "Failed") {
            assert!(log.iter().all(|d| d.attempts == 1), "one attempt each: {log:?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "order {id2}: {log:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

crate::both_backends_paying!(coingate_callbacks);
