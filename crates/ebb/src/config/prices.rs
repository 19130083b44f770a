//! The configuration file's `[prices]`: where exchange rates come from (docs/PRICES.md).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context};
use ebb_app::prices::{CoinGeckoSource, Freshness, PricesSettings, SourceSettings};
use ebb_core::rate::{fiat_decimals, Rate};
use serde::Deserialize;

/// `[prices]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct PricesConfig {
    /// The sources asked, in order: `static`, `coingecko`, `kraken`. Default: `static` when a table is
    /// given, else none (every conversion refused).
    pub sources: Option<Vec<String>>,
    /// A cached rate younger than this many seconds is used without asking again (default 60).
    pub refresh_s: Option<u64>,
    /// No rate older than this many seconds is used: conversions are refused (default 600).
    pub max_age_s: Option<u64>,
    /// How long one request to a price API may take (default 3000 ms).
    pub timeout_ms: Option<u64>,
    /// The operator's table: `USDT = { USD = "1", EUR = "0.92" }` (currency per one token).
    #[serde(default, rename = "static")]
    pub static_rates: HashMap<String, HashMap<String, String>>,
    /// CoinGecko's API base (default `https://api.coingecko.com`).
    pub coingecko_url: Option<String>,
    /// An environment variable holding a CoinGecko API key, sent as `x-cg-pro-api-key` (optional).
    pub coingecko_api_key_env: Option<String>,
    /// CoinGecko's coin id of each symbol, beside the defaults (`USDT = "tether"`, …).
    #[serde(default)]
    pub coingecko_ids: HashMap<String, String>,
    /// Kraken's API base (default `https://api.kraken.com`).
    pub kraken_url: Option<String>,
    /// Kraken's asset name of each symbol where it differs from the symbol (`BTC = "XBT"`).
    #[serde(default)]
    pub kraken_assets: HashMap<String, String>,
}

fn http_url(what: &str, url: &str) -> anyhow::Result<url::Url> {
    let parsed = url::Url::parse(url).with_context(|| format!("[prices] {what} {url:?}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        bail!("[prices] {what} must be http or https, not {url:?}");
    }
    Ok(parsed)
}

impl PricesConfig {
    pub fn resolve(&self) -> anyhow::Result<PricesSettings> {
        let mut table = HashMap::new();
        for (symbol, rates) in &self.static_rates {
            for (currency, rate) in rates {
                if fiat_decimals(currency).is_none() {
                    bail!("[prices.static] {symbol}.{currency}: {currency:?} is not a supported currency");
                }
                let rate = Rate::parse(rate).with_context(|| format!("[prices.static] {symbol}.{currency}"))?;
                table.insert((symbol.clone(), currency.clone()), rate);
            }
        }
        let default_sources = if table.is_empty() { vec![] } else { vec!["static".to_owned()] };
        let timeout = Duration::from_millis(self.timeout_ms.unwrap_or(3000));
        let mut sources = Vec::new();
        for name in self.sources.clone().unwrap_or(default_sources) {
            sources.push(match name.as_str() {
                "static" => SourceSettings::Static(table.clone()),
                "coingecko" => {
                    let api_key = match &self.coingecko_api_key_env {
                        None => None,
                        Some(env) => Some(std::env::var(env).ok().filter(|k| !k.is_empty()).with_context(|| {
                            format!("[prices] coingecko_api_key_env names {env}, which holds no key")
                        })?),
                    };
                    let mut ids = CoinGeckoSource::default_ids();
                    ids.extend(self.coingecko_ids.clone());
                    SourceSettings::CoinGecko {
                        base_url: http_url(
                            "coingecko_url",
                            self.coingecko_url.as_deref().unwrap_or("https://api.coingecko.com"),
                        )?,
                        api_key,
                        ids,
                        timeout,
                    }
                }
                "kraken" => SourceSettings::Kraken {
                    base_url: http_url("kraken_url", self.kraken_url.as_deref().unwrap_or("https://api.kraken.com"))?,
                    assets: self.kraken_assets.clone(),
                    timeout,
                },
                other => bail!("[prices] sources: {other:?} is not a source (static, coingecko, kraken)"),
            });
        }
        let freshness = Freshness {
            refresh: Duration::from_secs(self.refresh_s.unwrap_or(60)),
            max_age: Duration::from_secs(self.max_age_s.unwrap_or(600)),
        };
        if freshness.max_age.is_zero() || freshness.refresh > freshness.max_age {
            bail!("[prices] max_age_s must be positive and at least refresh_s");
        }
        Ok(PricesSettings { sources, freshness })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_sources_in_order() {
        let cfg: PricesConfig = toml::from_str(
            r#"
            sources = ["kraken", "static"]
            max_age_s = 300
            [static]
            USDT = { USD = "1", EUR = "0.92" }
            "#,
        )
        .unwrap();
        let s = cfg.resolve().unwrap();
        assert!(
            matches!(s.sources[..], [SourceSettings::Kraken { .. }, SourceSettings::Static(ref t)] if t.len() == 2)
        );
        assert_eq!(s.freshness.max_age, Duration::from_secs(300));
        // No table, no sources: nothing is priced.
        assert!(PricesConfig::default().resolve().unwrap().sources.is_empty());
    }

    #[test]
    fn refuses_what_cannot_be_a_rate() {
        for (text, says) in [
            ("[static]\nUSDT = { USD = \"0\" }", "greater than zero"),
            ("[static]\nUSDT = { USD = \"1e2\" }", "not a positive decimal"),
            ("[static]\nUSDT = { XYZ = \"1\" }", "not a supported currency"),
            ("sources = [\"oracle\"]", "not a source"),
            ("kraken_url = \"ftp://x\"\nsources = [\"kraken\"]", "http or https"),
            ("refresh_s = 900", "at least refresh_s"),
        ] {
            let cfg: PricesConfig = toml::from_str(text).unwrap();
            let err = format!("{:#}", cfg.resolve().unwrap_err());
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
