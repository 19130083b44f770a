//! CoinGate's integer ids for ebb's chains (platforms) and currencies.
//!
//! The chains and tokens ebb knows by default have fixed ids (the tables below). A chain or symbol
//! added in the configuration gets `100 +` its place among the added ones in id order, so its id
//! stays put as long as the configured set does. Fiat currencies are `1000 +` their place in
//! `ebb_core::rate::FIAT_CURRENCIES`.

use ebb_core::rate::FIAT_CURRENCIES;
use ebb_core::{Token, TokenRegistry};
use serde::Serialize;

/// (chain id, platform id, `id_name`, title).
const PLATFORMS: &[(&str, i64, &str, &str)] = &[
    ("ETH", 1, "ethereum", "Ethereum"),
    ("BSC_BNB", 2, "binance_smart_chain", "BNB Smart Chain"),
    ("TRON", 3, "tron", "Tron"),
    ("SOL", 4, "solana", "Solana"),
    ("MATIC", 5, "polygon", "Polygon"),
    ("ARBITRUM_ETH", 6, "arbitrum", "Arbitrum One"),
    ("BASE_ETH", 7, "base", "Base"),
];

/// (symbol, currency id, title).
const CRYPTO: &[(&str, i64, &str)] = &[("USDT", 1, "Tether"), ("USDC", 2, "USD Coin")];

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Platform {
    pub id: i64,
    pub id_name: String,
    pub title: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Currency {
    pub id: i64,
    pub title: String,
    pub kind: &'static str,
    pub symbol: String,
    pub native: bool,
    pub merchant_pay: bool,
    pub merchant_receive: bool,
    pub enabled: bool,
    pub platforms: Vec<PlatformEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct PlatformEntry {
    pub id: i64,
    pub id_name: String,
    pub title: String,
    pub enabled: bool,
}

/// Every chain of the registry as a platform, in id order.
pub(crate) fn platforms(registry: &TokenRegistry) -> Vec<(String, Platform)> {
    let mut chains: Vec<String> = registry.iter().map(|t| t.chain_id.clone()).collect();
    chains.sort();
    chains.dedup();
    let mut extra = 0;
    let mut out: Vec<(String, Platform)> = chains
        .into_iter()
        .map(|chain| {
            let platform = match PLATFORMS.iter().find(|p| p.0 == chain) {
                Some(&(_, id, id_name, title)) => Platform { id, id_name: id_name.into(), title: title.into() },
                None => {
                    extra += 1;
                    Platform { id: 100 + extra, id_name: chain.to_ascii_lowercase(), title: chain.clone() }
                }
            };
            (chain, platform)
        })
        .collect();
    out.sort_by_key(|(_, p)| p.id);
    out
}

pub(crate) fn platform_of(registry: &TokenRegistry, chain_id: &str) -> Option<Platform> {
    platforms(registry).into_iter().find(|(c, _)| c == chain_id).map(|(_, p)| p)
}

/// Every token symbol of the registry (crypto, with the platforms it is on), then the fiat currencies.
pub(crate) fn currencies(registry: &TokenRegistry) -> Vec<Currency> {
    let mut symbols: Vec<String> = registry.iter().map(|t| t.symbol.clone()).collect();
    symbols.sort();
    symbols.dedup();
    let platforms = platforms(registry);
    let mut extra = 0;
    let mut out: Vec<Currency> = symbols
        .into_iter()
        .map(|symbol| {
            let (id, title) = match CRYPTO.iter().find(|c| c.0 == symbol) {
                Some(&(_, id, title)) => (id, title.to_owned()),
                None => {
                    extra += 1;
                    (100 + extra, symbol.clone())
                }
            };
            let on: Vec<PlatformEntry> = platforms
                .iter()
                .filter(|(chain, _)| registry.iter().any(|t| t.symbol == symbol && &t.chain_id == chain))
                .map(|(_, p)| PlatformEntry {
                    id: p.id,
                    id_name: p.id_name.clone(),
                    title: p.title.clone(),
                    enabled: true,
                })
                .collect();
            Currency {
                id,
                title,
                kind: "crypto",
                symbol,
                native: false,
                merchant_pay: true,
                merchant_receive: true,
                enabled: true,
                platforms: on,
            }
        })
        .collect();
    out.sort_by_key(|c| c.id);
    out.extend(FIAT_CURRENCIES.iter().enumerate().map(|(i, (code, _))| Currency {
        id: 1000 + i as i64,
        title: (*code).to_owned(),
        kind: "fiat",
        symbol: (*code).to_owned(),
        native: false,
        merchant_pay: false,
        merchant_receive: false,
        enabled: true,
        platforms: Vec::new(),
    }));
    out
}

/// The token `pay_currency` names on `platform` (a platform id or `id_name`); without a platform, the
/// symbol's token on the platform with the lowest id (USDT on Ethereum), as a client that sends only
/// `pay_currency` expects one. `Err` says what is wrong.
pub(crate) fn token_for<'r>(
    registry: &'r TokenRegistry,
    pay_currency: &str,
    platform: Option<&str>,
) -> Result<&'r Token, String> {
    let symbol = pay_currency.to_ascii_uppercase();
    let candidates: Vec<&Token> = registry.iter().filter(|t| t.symbol == symbol).collect();
    if candidates.is_empty() {
        let known: Vec<String> =
            currencies(registry).into_iter().filter(|c| c.kind == "crypto").map(|c| c.symbol).collect();
        return Err(format!("pay_currency {pay_currency:?} is not paid in; supported: {}", known.join(", ")));
    }
    let names = |ts: &[&Token]| {
        ts.iter()
            .filter_map(|t| platform_of(registry, &t.chain_id))
            .map(|p| format!("{} ({})", p.id, p.id_name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match platform {
        None => candidates
            .iter()
            .copied()
            .min_by_key(|t| platform_of(registry, &t.chain_id).map_or(i64::MAX, |p| p.id))
            .ok_or_else(|| format!("{symbol} is on no platform")),
        Some(p) => candidates
            .iter()
            .copied()
            .find(|t| {
                platform_of(registry, &t.chain_id)
                    .is_some_and(|pl| pl.id.to_string() == p || pl.id_name.eq_ignore_ascii_case(p))
            })
            .ok_or_else(|| format!("platform_id {p:?} has no {symbol}; it is on {}", names(&candidates))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_tokens_have_fixed_ids() {
        let reg = TokenRegistry::cobo_defaults();
        let p = platforms(&reg);
        assert_eq!(p.iter().map(|(_, p)| p.id).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6, 7]);
        let c = currencies(&reg);
        assert_eq!((c[0].symbol.as_str(), c[0].id, c[0].platforms.len()), ("USDT", 1, 7));
        assert_eq!((c[1].symbol.as_str(), c[1].id), ("USDC", 2));
        assert!(c.iter().any(|c| c.symbol == "EUR" && c.id == 1001 && c.kind == "fiat"));
        assert_eq!(token_for(&reg, "usdt", Some("3")).unwrap().id, "TRON_USDT");
        assert_eq!(token_for(&reg, "USDC", Some("polygon")).unwrap().id, "MATIC_USDC2");
        assert_eq!(token_for(&reg, "USDT", None).unwrap().id, "ETH_USDT", "the lowest platform id");
        assert!(token_for(&reg, "USDC", Some("3")).unwrap_err().contains("has no USDC"));
        assert!(token_for(&reg, "BTC", None).unwrap_err().contains("not paid in"));
    }
}
