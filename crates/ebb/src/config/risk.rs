//! The configuration file's risk controls: approval policies (`[[approval_policies]]`) and screening
//! (`[screening]`); docs/RISK.md.

use std::time::Duration;

use anyhow::{bail, Context};
use ebb_app::screening::{ChainalysisSettings, ScreeningSettings};
use ebb_core::approval::{parse_names, ApprovalPolicy, FiatMinimum, RefundChannel};
use ebb_core::screening::{ScreeningRules, Verdict};
use ebb_core::{RefundSource, TokenRegistry};
use serde::Deserialize;

/// One approval policy of the configuration file; the fields of `POST /v2/payments/approval_policies`
/// with a `policy_id` of the operator's choosing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub policy_id: String,
    pub name: String,
    #[serde(default)]
    pub token_ids: Vec<String>,
    #[serde(default)]
    pub merchant_ids: Vec<String>,
    /// `Merchant`, `Psp` and/or `Held`.
    #[serde(default)]
    pub refund_types: Vec<String>,
    pub min_amount: Option<String>,
    /// The least value matched in `fiat_currency` (both or neither).
    pub min_fiat_amount: Option<String>,
    pub fiat_currency: Option<String>,
    #[serde(default)]
    pub new_destination_only: bool,
    /// `Api` and/or `Link`.
    #[serde(default)]
    pub sources: Vec<String>,
    pub approvals_required: u8,
}

impl PolicyConfig {
    pub(crate) fn resolve(&self, registry: &TokenRegistry) -> anyhow::Result<ApprovalPolicy> {
        let what = || format!("approval policy {:?}", self.policy_id);
        if self.policy_id.trim().is_empty() || self.policy_id.len() > 64 {
            bail!("an approval policy's policy_id must be 1 to 64 characters");
        }
        if let Some(t) = self.token_ids.iter().find(|t| registry.get(t).is_none()) {
            bail!("{}: token_ids names {t:?}, which is not a supported token", what());
        }
        let named = |e: String| anyhow::anyhow!("{}: {e}", what());
        let policy = ApprovalPolicy {
            policy_id: self.policy_id.clone(),
            name: self.name.clone(),
            token_ids: self.token_ids.clone(),
            merchant_ids: self.merchant_ids.clone(),
            refund_types: parse_names("refund_types", &self.refund_types, RefundSource::parse).map_err(named)?,
            min_amount: self.min_amount.clone(),
            min_fiat: match (&self.fiat_currency, &self.min_fiat_amount) {
                (Some(currency), Some(amount)) => {
                    Some(FiatMinimum { currency: currency.clone(), amount: amount.clone() })
                }
                (None, None) => None,
                _ => bail!("{}: give both fiat_currency and min_fiat_amount, or neither", what()),
            },
            new_destination_only: self.new_destination_only,
            channels: parse_names("sources", &self.sources, RefundChannel::parse).map_err(named)?,
            approvals_required: self.approvals_required,
        };
        policy.check().with_context(what)?;
        Ok(policy)
    }
}

/// `[screening]`: which providers, and what each risk level does (`allow`, `hold` or `refuse`).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ScreeningConfig {
    /// Screen against the OFAC SDN list shipped with ebb (or a newer one loaded); default true.
    pub ofac: Option<bool>,
    pub severe: Option<String>,
    pub high: Option<String>,
    pub medium: Option<String>,
    pub low: Option<String>,
    pub unknown: Option<String>,
    /// When a provider cannot answer; `hold` (default) or `refuse`, never `allow`.
    pub unavailable: Option<String>,
    /// The base URL of a Chainalysis-style sanctions API (`GET {url}/api/v1/address/{address}`).
    pub chainalysis_url: Option<String>,
    /// The environment variable holding its API key (default `EBB_CHAINALYSIS_API_KEY`).
    pub chainalysis_api_key_env: Option<String>,
    /// How long one screening request may take (default 3000 ms).
    pub timeout_ms: Option<u64>,
    /// Where the `isolate` disposition sends held funds, by chain id (`ETH = "0x…"`).
    #[serde(default)]
    pub quarantine: std::collections::HashMap<String, String>,
}

impl ScreeningConfig {
    pub fn resolve(&self) -> anyhow::Result<ScreeningSettings> {
        let d = ScreeningRules::default();
        let verdict = |name: &str, v: &Option<String>, default: Verdict| -> anyhow::Result<Verdict> {
            match v {
                None => Ok(default),
                Some(s) => Verdict::parse(s)
                    .with_context(|| format!("[screening] {name} must be allow, hold or refuse, not {s:?}")),
            }
        };
        let rules = ScreeningRules {
            severe: verdict("severe", &self.severe, d.severe)?,
            high: verdict("high", &self.high, d.high)?,
            medium: verdict("medium", &self.medium, d.medium)?,
            low: verdict("low", &self.low, d.low)?,
            unknown: verdict("unknown", &self.unknown, d.unknown)?,
            unavailable: verdict("unavailable", &self.unavailable, d.unavailable)?,
        };
        rules.check().context("[screening]")?;
        let chainalysis = match &self.chainalysis_url {
            None => None,
            Some(url) => {
                let parsed = url::Url::parse(url).with_context(|| format!("[screening] chainalysis_url {url:?}"))?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    bail!("[screening] chainalysis_url must be http or https, not {url:?}");
                }
                let env = self.chainalysis_api_key_env.as_deref().unwrap_or("EBB_CHAINALYSIS_API_KEY");
                let api_key = std::env::var(env)
                    .ok()
                    .filter(|k| !k.is_empty())
                    .with_context(|| format!("[screening] chainalysis_url is set but {env} holds no API key"))?;
                Some(ChainalysisSettings {
                    base_url: url.clone(),
                    api_key,
                    timeout: Duration::from_millis(self.timeout_ms.unwrap_or(3000)),
                })
            }
        };
        Ok(ScreeningSettings {
            rules,
            ofac: self.ofac.unwrap_or(true),
            chainalysis,
            quarantine: self.quarantine.clone(),
        })
    }
}
