//! `ebb dev`: zero configuration. A data directory holds the SQLite database, the server key and the
//! demo credentials (`dev.json`), created on first start and reused after.

use ebb_store::webhooks::BodyFormat;
use std::path::{Path, PathBuf};

use anyhow::Context;
use std::sync::Arc;
use std::time::Duration;

use ebb_api::pages::LinkPages;
use ebb_app::links::{self, LinkRequest, RefundedPayment};
use ebb_app::merchants::NewMerchant;
use ebb_app::orders::{self, OrderPrice, OrderRequest};
use ebb_app::{sandbox, Actor, Engine};
use ebb_core::{Address, Amount, OrderStatus, RefundSource};
use ebb_store::keys::KeyRole;
use ebb_store::links::LinkDisplay;
use ebb_store::Store;
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::config::{read_or_create_key_file, write_secret};

/// Where `ebb dev` isolates held funds on its sandbox EVM chains (the `isolate` disposition).
pub const SANDBOX_QUARANTINE: &str = "0x0000000000000000000000000000000000001501";

/// `ebb dev`'s offline exchange rates, currency per one token of every symbol: demonstration values
/// (a stablecoin at par in USD and at 0.92 in EUR), not market data. docs/PRICES.md lists them.
pub const OFFLINE_RATES: &[(&str, &str)] = &[("USD", "1"), ("EUR", "0.92")];

/// A static table of [`OFFLINE_RATES`] for every symbol of the registry.
pub fn offline_prices(registry: &ebb_core::TokenRegistry) -> ebb_app::prices::PricesSettings {
    let symbols: std::collections::BTreeSet<String> = registry.iter().map(|t| t.symbol.clone()).collect();
    ebb_app::prices::PricesSettings::static_table(symbols, OFFLINE_RATES)
}

/// What `ebb dev` prints and writes to `DIR/dev.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevInfo {
    pub base_url: String,
    pub api_key: String,
    pub api_secret: String,
    pub server_public_key: String,
    pub merchant_id: String,
    /// The KYT refund API (`/v1.0`) and a client of it (docs/API.md, "KYT refund API").
    #[serde(default)]
    pub kyt_api_base_url: String,
    #[serde(default)]
    pub kyt_api_client_id: String,
    #[serde(default)]
    pub kyt_api_client_secret: String,
    /// CoinGate's API (`/coingate`) and the demo merchant's token for it (docs/COINGATE.md).
    #[serde(default)]
    pub coingate_base_url: String,
    #[serde(default)]
    pub coingate_api_token: String,
    /// The operator console and its demo admin (no second factor: `ebb dev` only).
    #[serde(default)]
    pub console_url: String,
    #[serde(default)]
    pub console_email: String,
    #[serde(default)]
    pub console_password: String,
}

/// The demo admin `ebb dev` makes for the console.
pub const DEMO_ADMIN: &str = "admin@ebb.dev";

pub fn server_key_path(dir: &Path) -> PathBuf {
    dir.join("server_key.hex")
}

pub fn dev_json_path(dir: &Path) -> PathBuf {
    dir.join("dev.json")
}

pub fn server_key(dir: &Path) -> anyhow::Result<SigningKey> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating data directory {}", dir.display()))?;
    read_or_create_key_file(&server_key_path(dir))
}

/// Makes sure the demo merchant and the PSP-wide demo API key exist; returns the credentials.
pub async fn ensure_demo(
    store: &Store,
    dir: &Path,
    server_key: &SigningKey,
    base_url: &str,
) -> anyhow::Result<DevInfo> {
    let path = dev_json_path(dir);
    let previous: Option<DevInfo> = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok());
    let mut info = match previous {
        Some(p)
            if store.api_key(&p.api_key).await?.is_some_and(|k| k.revoked_at.is_none())
                && store.merchant(&p.merchant_id).await?.is_some() =>
        {
            p
        }
        _ => {
            let new = NewMerchant {
                name: "Demo Merchant".into(),
                wallet_id: String::new(),
                developer_fee_rate: "0".into(),
                wallet_setup: "Default".into(),
            };
            let merchant = ebb_app::merchants::create(store, &Actor::psp("ebb_dev"), new).await?;
            let client = SigningKey::generate(&mut rand::rngs::OsRng);
            let api_key = hex::encode(client.verifying_key().to_bytes());
            ebb_app::keys::add(store, &api_key, "ebb dev (PSP-wide)", None, KeyRole::Operator).await?;
            DevInfo {
                base_url: String::new(),
                api_key,
                api_secret: hex::encode(client.to_bytes()),
                server_public_key: String::new(),
                merchant_id: merchant.merchant_id,
                kyt_api_base_url: String::new(),
                kyt_api_client_id: String::new(),
                kyt_api_client_secret: String::new(),
                coingate_base_url: String::new(),
                coingate_api_token: String::new(),
                console_url: String::new(),
                console_email: String::new(),
                console_password: String::new(),
            }
        }
    };
    let client_active = !info.kyt_api_client_id.is_empty()
        && store.api_client(&info.kyt_api_client_id).await?.is_some_and(|c| c.revoked_at.is_none());
    if !client_active {
        let c = ebb_app::kyt::add_client(store, "ebb dev").await?;
        info.kyt_api_client_id = c.client_id;
        info.kyt_api_client_secret = c.client_secret;
    }
    let token_active = !info.coingate_api_token.is_empty()
        && ebb_app::coingate::token_of(store, &info.coingate_api_token)
            .await?
            .is_some_and(|t| t.merchant_id == info.merchant_id);
    if !token_active {
        info.coingate_api_token =
            ebb_app::coingate::add_token(store, &info.merchant_id, "ebb dev", BodyFormat::CoinGateForm).await?.token;
    }
    let origin = base_url.trim_end_matches('/').trim_end_matches("/v2");
    if info.console_password.is_empty() {
        info.console_password = ebb_app::secrets::generate()[..20].to_owned();
    }
    info.console_email = DEMO_ADMIN.to_owned();
    ebb_app::operators::ensure_dev_admin(store, DEMO_ADMIN, &info.console_password).await?;
    info.console_url = format!("{origin}/console");
    info.coingate_base_url = format!("{origin}/coingate");
    info.kyt_api_base_url = format!("{origin}/v1.0");
    info.base_url = base_url.to_owned();
    info.server_public_key = hex::encode(server_key.verifying_key().to_bytes());
    write_secret(&path, &serde_json::to_string_pretty(&info)?)?;
    Ok(info)
}

/// The sender of the demo payment: the refund page pre-fills it.
pub const DEMO_PAYER: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";

/// A ready-made refund link for a newcomer to open: pays a 10 USDT demo order on the sandbox chain,
/// waits until it is credited, and makes a link refunding 5 of it. Each `ebb dev` start makes a new
/// one (only the token's hash is stored, so an old link cannot be shown again). Made through the same
/// use cases as the API's.
pub async fn demo_link(engine: &Engine, pages: &LinkPages, merchant_id: &str) -> anyhow::Result<String> {
    let actor = Actor::psp("ebb_dev");
    let token = engine.registry().get("ETH_USDT").context("the demo needs the ETH_USDT token")?.clone();
    let decimals = token.decimals;
    let amount = |s: &str| Amount::parse_decimal(s, decimals, decimals);
    let order = orders::create(
        engine,
        &actor,
        OrderRequest {
            merchant_id: merchant_id.to_owned(),
            merchant_order_code: None,
            psp_order_code: ebb_store::ids::new_id("demo-order-"),
            token: token.clone(),
            price: OrderPrice::Token { payable: amount("10")?, fee: Amount::ZERO },
            amount_tolerance: Amount::ZERO,
            expires_in_s: 1800,
        },
    )
    .await?;
    let payer = Address::parse(token.family, DEMO_PAYER)?;
    sandbox::pay_order(engine, &actor, &order.order_id, None, Some(payer)).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let now = orders::get(engine, &actor, &order.order_id).await?;
        if now.status == OrderStatus::Completed {
            break;
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "the demo payment was not credited in time");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let payment = links::find_payment(engine, &actor, RefundedPayment::Order(order.order_id.clone())).await?;
    let created = links::create(
        engine,
        &actor,
        LinkRequest {
            request_id: Some(ebb_core::refund::RequestId::parse(&ebb_store::ids::new_id("demo-link-"))?),
            payment,
            amount: amount("5")?,
            source: RefundSource::Merchant,
            merchant_id: Some(merchant_id.to_owned()),
            merchant_fee: None,
            display: LinkDisplay { developer_name: Some("Demo Merchant".into()), logo_url: None, return_url: None },
            customer_email: None,
        },
    )
    .await?;
    Ok(format!("{}?token={}", pages.page_url(), created.token.as_str()))
}

/// Starts [`demo_link`] in the background (with the sandbox's `ETH` chain) and prints the link when
/// it is ready.
pub fn spawn_demo_link(engine: Engine, pages: Arc<LinkPages>, merchant_id: String) {
    tokio::spawn(async move {
        match demo_link(&engine, &pages, &merchant_id).await {
            Ok(url) => {
                println!();
                println!("A demo refund link (5 USDT back to the demo payer; open it in a browser):");
                println!("  {url}");
            }
            Err(e) => tracing::warn!(error = %e, "could not make the demo refund link"),
        }
    });
}
