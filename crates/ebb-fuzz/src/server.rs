//! The targets that need ebb itself: its configuration file, and the request bodies of each of its
//! APIs (Cobo's, CoinGate's, the KYT refund API) sent through the real router, in process, to an
//! application on a SQLite database in a temporary directory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use ebb::config::FileConfig;
use ebb_chain::Chain;
use ebb_core::signing::{double_sha256, request_message};
use ebb_store::keys::KeyRole;
use ebb_store::webhooks::BodyFormat;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};
use tower::ServiceExt;

/// `ebb.toml` (operators write it; ebb reads it at every start): parsing and resolving it either
/// succeeds or says what is wrong, for any text. Paths it names are not opened (the fuzzer would name
/// `/dev/zero`, and key files are secrets, not input); a chain's key comes from a variable the target
/// sets instead.
pub fn config(data: &[u8]) {
    static ENV: std::sync::Once = std::sync::Once::new();
    ENV.call_once(|| {
        // Before any thread of the target reads the environment.
        std::env::set_var("EBB_SERVER_KEY", "11".repeat(32));
        std::env::set_var("EBB_FUZZ_HOT_WALLET_KEY", "22".repeat(32));
    });
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(mut config) = FileConfig::parse(text) else { return };
    config.server_key_file = None;
    config.screening_denylist_file = None;
    for chain in &mut config.chains {
        if chain.hot_wallet_key_file.take().is_some() {
            chain.hot_wallet_key_env = Some("EBB_FUZZ_HOT_WALLET_KEY".into());
        }
    }
    if let Ok(settings) = config.settings() {
        assert!(settings.max_connections > 0 || config.max_connections == Some(0), "{text:?}");
    }
}

/// A request the `api_body` target sends: method, path, and how it is authenticated.
struct Route {
    method: Method,
    path: String,
    auth: Auth,
}

#[derive(Clone, Copy)]
enum Auth {
    /// Cobo's signed request, by the operator's key or the approver's.
    Signed,
    /// CoinGate's `Authorization: Token …`.
    CoinGate,
    /// The KYT refund API's bearer token (`/auth/getToken` takes none).
    Kyt,
    None,
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    api: Api,
    _dir: tempfile::TempDir,
}

/// The application's routes and what requests to them need.
struct Api {
    router: axum::Router,
    operator: SigningKey,
    approver: SigningKey,
    coingate_token: String,
    kyt_token: String,
    routes: Vec<Route>,
    /// What `$M`, `$O` and `$R` in a body stand for: the merchant, its paid order, a refund.
    names: [(&'static [u8], String); 3],
    nonce: AtomicU64,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        // On tmpfs where there is one: every accepted create is a durable commit.
        let dir = tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).unwrap();
        let key_file = dir.path().join("server.key");
        std::fs::write(&key_file, "33".repeat(32)).unwrap();
        let toml = format!(
            "listen = \"127.0.0.1:0\"\ndatabase_url = \"sqlite://{}\"\nserver_key_file = {:?}\nsandbox = true\n\
             sandbox_block_ms = 3600000\npayouts = false\nwatch_payins = false\nwebhooks = false\n\
             webhook_allow_private_addresses = true\n",
            dir.path().join("ebb.sqlite3").display(),
            key_file.display().to_string()
        );
        let mut settings = FileConfig::parse(&toml).unwrap().settings().unwrap();
        settings.prices = ebb::dev::offline_prices(&settings.registry);
        let api = runtime.block_on(setup(settings));
        Harness { runtime, api, _dir: dir }
    })
}

/// What the routes' paths name (a merchant, a paid order, a refund, ...), made once.
async fn setup(settings: ebb::Settings) -> Api {
    let app = ebb::Application::build(settings).await.unwrap();
    let store = app.store().clone();
    let operator = SigningKey::from_bytes(&[4; 32]);
    let approver = SigningKey::from_bytes(&[5; 32]);
    for (key, role) in [(&operator, KeyRole::Operator), (&approver, KeyRole::Approver)] {
        ebb_app::keys::add(&store, &hex::encode(key.verifying_key().to_bytes()), "fuzz", None, role).await.unwrap();
    }
    let mut h = Api {
        router: app.router(),
        operator,
        approver,
        coingate_token: String::new(),
        kyt_token: String::new(),
        routes: Vec::new(),
        names: Default::default(),
        nonce: AtomicU64::new(ebb_core::clock::now_ms() as u64),
    };
    let ok = |(status, v): (u16, Value), what: &str| {
        assert!((200..300).contains(&status), "fuzz setup: {what}: {status} {v}");
        v
    };
    let merchant = ok(h.signed(Method::POST, "/v2/payments/merchants", br#"{"name":"Fuzz"}"#).await, "merchant");
    let merchant = merchant["merchant_id"].as_str().unwrap().to_owned();
    let order_body = json!({"merchant_id": merchant, "psp_order_code": "fuzz-1", "payable_currency": "ETH_USDT",
                            "payable_amount": "100000000", "fee_amount": "0"});
    let order = ok(h.signed(Method::POST, "/v2/payments/orders", order_body.to_string().as_bytes()).await, "order");
    let order = order["order_id"].as_str().unwrap().to_owned();
    // The order paid on the sandbox chain and credited, so refunds have a balance to come from.
    ok(h.signed(Method::POST, &format!("/v2/sandbox/orders/{order}/payments"), b"").await, "payment");
    let chain = app.sandbox_chains().get("ETH").cloned().expect("the sandbox ETH chain");
    let watcher = ebb_worker::PayinWatcher::new(
        store.clone(),
        chain.clone() as Arc<dyn Chain>,
        &app.registry(),
        Duration::from_secs(1),
    );
    for _ in 0..100 {
        chain.mine();
        watcher.tick().await.unwrap();
        let o = h.signed(Method::GET, &format!("/v2/payments/orders/{order}"), b"").await.1;
        if o["status"] == "Completed" {
            break;
        }
    }
    let refund_body = json!({"request_id": "fuzz-setup", "merchant_id": merchant, "payable_amount": "1",
                             "token_id": "ETH_USDT", "refund_type": "Merchant"});
    let refund = ok(h.signed(Method::POST, "/v2/payments/refunds", refund_body.to_string().as_bytes()).await, "refund");
    let refund = refund["refund_id"].as_str().unwrap().to_owned();
    let endpoint = ok(
        h.signed(
            Method::POST,
            "/v2/webhooks/endpoints",
            br#"{"url":"http://127.0.0.1:9/hook","subscribed_events":["payment.refund.status.updated"]}"#,
        )
        .await,
        "webhook endpoint",
    );
    let endpoint = endpoint["endpoint_id"].as_str().unwrap().to_owned();
    let policy = ok(
        h.signed(Method::POST, "/v2/payments/approval_policies", br#"{"name":"fuzz","approvals_required":1}"#).await,
        "approval policy",
    );
    let policy = policy["policy_id"].as_str().unwrap().to_owned();
    h.coingate_token =
        ebb_app::coingate::add_token(&store, &merchant, "fuzz", BodyFormat::CoinGateJson).await.unwrap().token;
    let client = ebb_app::kyt::add_client(&store, "fuzz").await.unwrap();
    h.kyt_token =
        ebb_app::kyt::issue_token(&store, &client.client_id, &client.client_secret).await.unwrap().unwrap().token;

    h.names = [(b"$M", merchant.clone()), (b"$O", order.clone()), (b"$R", refund.clone())];
    let signed = |method: Method, path: String| Route { method, path, auth: Auth::Signed };
    h.routes = vec![
        signed(Method::POST, "/v2/payments/refunds".into()),
        signed(Method::PUT, format!("/v2/payments/refunds/{refund}")),
        signed(Method::POST, format!("/v2/payments/refunds/{refund}/approve")),
        signed(Method::POST, format!("/v2/payments/refunds/{refund}/reject")),
        signed(Method::POST, "/v2/payments/links/refunds".into()),
        signed(Method::POST, "/v2/payments/merchants".into()),
        signed(Method::PUT, format!("/v2/payments/merchants/{merchant}")),
        signed(Method::POST, "/v2/payments/orders".into()),
        signed(Method::PUT, format!("/v2/payments/orders/{order}")),
        signed(Method::POST, "/v2/webhooks/endpoints".into()),
        signed(Method::PUT, format!("/v2/webhooks/endpoints/{endpoint}")),
        signed(Method::POST, "/v2/webhooks/events/trigger".into()),
        signed(Method::POST, "/v2/payments/approval_policies".into()),
        signed(Method::PUT, format!("/v2/payments/approval_policies/{policy}")),
        signed(Method::POST, "/v2/compliance/kya/screenings".into()),
        signed(Method::POST, "/v2/compliance/kyt/screenings/manual_review".into()),
        signed(Method::POST, "/v2/compliance/kyt/screenings/decisions".into()),
        signed(Method::POST, "/v2/compliance/funds/disposition/unfreeze".into()),
        signed(Method::POST, "/v2/compliance/funds/disposition/refund".into()),
        signed(Method::POST, "/v2/compliance/funds/disposition/isolate".into()),
        signed(Method::POST, format!("/v2/sandbox/orders/{order}/payments")),
        Route { method: Method::POST, path: "/coingate/v2/orders".into(), auth: Auth::CoinGate },
        Route { method: Method::POST, path: "/coingate/v2/orders/1/checkout".into(), auth: Auth::CoinGate },
        Route { method: Method::POST, path: "/coingate/v2/orders/1/refunds".into(), auth: Auth::CoinGate },
        Route { method: Method::POST, path: "/v1.0/auth/getToken".into(), auth: Auth::None },
        Route { method: Method::POST, path: "/v1.0/payment/crypto/createCryptoRefund".into(), auth: Auth::Kyt },
        Route { method: Method::POST, path: "/v1.0/payment/crypto/confirmCryptoRefund".into(), auth: Auth::Kyt },
    ];
    // A CoinGate order for the paths above (its id is 1: the first of this database).
    let cg = json!({"order_id": "fuzz-1", "price_amount": "10", "price_currency": "USDT", "receive_currency": "USDT"});
    let _ = h
        .send(
            &Route { method: Method::POST, path: "/coingate/v2/orders".into(), auth: Auth::CoinGate },
            0,
            cg.to_string().as_bytes(),
        )
        .await;
    h
}

impl Api {
    async fn signed(&self, method: Method, path: &str, body: &[u8]) -> (u16, Value) {
        self.send(&Route { method, path: path.into(), auth: Auth::Signed }, 0, body).await
    }

    /// Sends `body` on `route`; `flags` bit 0 picks the approver's key, bit 1 a form content type.
    async fn send(&self, route: &Route, flags: u8, body: &[u8]) -> (u16, Value) {
        let content_type = if flags & 2 == 0 { "application/json" } else { "application/x-www-form-urlencoded" };
        let mut req = Request::builder().method(route.method.clone()).uri(&route.path);
        if !body.is_empty() {
            req = req.header("Content-Type", content_type);
        }
        req = match route.auth {
            Auth::Signed => {
                let key = if flags & 1 == 0 { &self.operator } else { &self.approver };
                // Distinct nonces: a repeated signature is a replay.
                let nonce = self.nonce.fetch_add(1, Ordering::Relaxed).to_string();
                let message = request_message(route.method.as_str(), &route.path, &nonce, "", body);
                req.header("Biz-Api-Key", hex::encode(key.verifying_key().to_bytes()))
                    .header("Biz-Api-Nonce", nonce)
                    .header("Biz-Api-Signature", hex::encode(key.sign(&double_sha256(&message)).to_bytes()))
            }
            Auth::CoinGate => req.header("Authorization", format!("Token {}", self.coingate_token)),
            Auth::Kyt => req.header("Authorization", format!("Bearer {}", self.kyt_token)),
            Auth::None => req,
        };
        let response = self.router.clone().oneshot(req.body(Body::from(body.to_vec())).unwrap()).await.unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap_or_default();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into())),
        )
    }
}

/// Each API's request bodies: the first byte picks the route, the second the key and content type,
/// the rest is the body as sent, with `$M`, `$O` and `$R` standing for the ids of a funded merchant,
/// its paid order and a refund (so inputs reach past the lookups). Whatever the body, ebb answers below 500 (a 500 or a panic is a
/// finding: bad input is the client's error, said as such).
pub fn api_body(data: &[u8]) {
    let Some((&r, rest)) = data.split_first() else { return };
    let Some((&flags, body)) = rest.split_first() else { return };
    let h = harness();
    let route = &h.api.routes[usize::from(r) % h.api.routes.len()];
    let body = h.api.names.iter().fold(body.to_vec(), |b, (name, id)| replace(&b, name, id.as_bytes()));
    let (status, answer) = h.runtime.block_on(h.api.send(route, flags, &body));
    assert!(
        status < 500,
        "{} {}: {status} {answer}\nbody: {:?}",
        route.method,
        route.path,
        String::from_utf8_lossy(&body)
    );
}

fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixture's ids stand in for `$M`, `$O` and `$R`, so a well-formed body gets past every lookup
    /// and is accepted: the fuzzer starts from requests that do something.
    #[test]
    fn well_formed_bodies_with_the_fixture_ids_are_accepted() {
        let h = harness();
        let send = |route: usize, flags: u8, body: &str| {
            let body =
                h.api.names.iter().fold(body.as_bytes().to_vec(), |b, (name, id)| replace(&b, name, id.as_bytes()));
            h.runtime.block_on(h.api.send(&h.api.routes[route], flags, &body))
        };
        let refund = r#"{"request_id":"t0","merchant_id":"$M","payable_amount":"0.5","token_id":"ETH_USDT","refund_type":"Merchant","to_address":"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"}"#;
        assert_eq!(send(0, 0, refund).0, 201);
        let link = r#"{"request_id":"t4","business_info":{"order_id":"$O","amount":"0.5","refund_source":"Merchant","merchant_id":"$M"},"display_info":{"developer_name":"Shop"}}"#;
        assert_eq!(send(4, 0, link).0, 201);
        let order = r#"{"merchant_id":"$M","psp_order_code":"t7","payable_currency":"ETH_USDT","payable_amount":"10","fee_amount":"0.1"}"#;
        assert_eq!(send(7, 0, order).0, 201);
        assert_eq!(send(21, 2, "order_id=t21&price_amount=46&price_currency=EUR&receive_currency=EUR").0, 200);
        assert_eq!(send(0, 0, "{").0, 400);
    }

    #[test]
    fn the_example_configs_resolve() {
        for file in ["ebb.anvil.toml", "ebb.mainnet.toml"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(file);
            let text = std::fs::read_to_string(path).unwrap();
            assert!(FileConfig::parse(&text).is_ok(), "{file}");
        }
        config(b"listen = 1");
    }
}
