//! Screening refund destinations: the providers, the screener that asks them all, and what a verdict
//! does to a refund.
//!
//! Providers ([`Provider`]): the operator's denylist (an address on it is `High`), screening lists
//! kept in the database (the OFAC SDN list shipped with ebb: `Severe`), and an HTTP service in the
//! shape of Chainalysis' public sanctions API. The [`Screener`] asks each and judges the answers with
//! the operator's [`ScreeningRules`] (`ebb_core::screening::judge`): `Refuse` refuses the address where
//! it was given (nothing is stored, nothing is ever sent there); `Hold` accepts it and holds the refund
//! for review (an approval of at least one approver, policy `screening`); `Allow` lets it through. A
//! provider that cannot answer (down, slow, garbage) holds, never allows.

use std::sync::Arc;
use std::time::Duration;

use ebb_core::clock::now_s;
use ebb_core::screening::{judge, Denylist, Finding, RiskLevel, Screening, ScreeningRules, Verdict};
use ebb_core::Address;
use ebb_store::kya::{self as kya_repo, KyaRow};
use ebb_store::screening::{self as repo, ListMeta};
use ebb_store::Store;
use futures::future::BoxFuture;

use crate::{AppError, AppResult};

/// The list id of the OFAC SDN list in `screening_lists`.
pub const OFAC_LIST: &str = "ofac";
/// The date of the OFAC snapshot shipped in `data/ofac/` (its README says where it comes from).
pub const SHIPPED_OFAC_DATE: &str = "2024-09-27";
/// The pseudo-policy under which a refund screening held waits for review.
pub const SCREENING_POLICY_ID: &str = "screening";

/// The shipped snapshot: every per-asset file of the extractor, one address per line.
const SHIPPED_OFAC: [&str; 6] = [
    include_str!("../../../data/ofac/sanctioned_addresses_ETH.txt"),
    include_str!("../../../data/ofac/sanctioned_addresses_USDT.txt"),
    include_str!("../../../data/ofac/sanctioned_addresses_USDC.txt"),
    include_str!("../../../data/ofac/sanctioned_addresses_TRX.txt"),
    include_str!("../../../data/ofac/sanctioned_addresses_ARB.txt"),
    include_str!("../../../data/ofac/sanctioned_addresses_BSC.txt"),
];

/// One source of risk information about addresses.
pub trait Provider: Send + Sync {
    fn name(&self) -> &str;
    /// What the provider knows of `address` on `chain_id`; `Err(why)` if it could not answer.
    fn screen<'a>(&'a self, chain_id: &'a str, address: &'a str) -> BoxFuture<'a, Result<Finding, String>>;
}

/// The operator's denylist (`screening_denylist_file`): an address on it is `High` risk.
pub struct DenylistProvider(pub Arc<Denylist>);

impl Provider for DenylistProvider {
    fn name(&self) -> &str {
        "denylist"
    }

    fn screen<'a>(&'a self, _chain_id: &'a str, address: &'a str) -> BoxFuture<'a, Result<Finding, String>> {
        let listed = self.0.contains(address);
        Box::pin(async move {
            Ok(Finding {
                provider: "denylist".into(),
                level: if listed { RiskLevel::High } else { RiskLevel::Unknown },
                categories: if listed { vec!["denylist".into()] } else { Vec::new() },
                reference: None,
            })
        })
    }
}

/// A sanctions list kept in the database: an address on it is `Severe`.
pub struct ListProvider {
    pub store: Store,
    pub list_id: String,
}

impl Provider for ListProvider {
    fn name(&self) -> &str {
        &self.list_id
    }

    fn screen<'a>(&'a self, _chain_id: &'a str, address: &'a str) -> BoxFuture<'a, Result<Finding, String>> {
        Box::pin(async move {
            let listed = self.store.listed(&self.list_id, address).await.map_err(|e| e.to_string())?;
            let meta = match listed {
                true => self.store.screening_list(&self.list_id).await.map_err(|e| e.to_string())?,
                false => None,
            };
            Ok(Finding {
                provider: self.list_id.clone(),
                level: if listed { RiskLevel::Severe } else { RiskLevel::Unknown },
                categories: if listed { vec!["sanctions".into()] } else { Vec::new() },
                reference: meta.map(|m| format!("{} of {}", m.source, m.dated)),
            })
        })
    }
}

/// An HTTP provider in the shape of Chainalysis' public sanctions API: `GET {base}/api/v1/address/{a}`
/// with `X-API-Key`, answering `{"identifications": [{category, name, description, url}]}`. An
/// identification of category `sanctions` is `Severe`, any other `High`; none is `Unknown` (the API
/// vouches for nobody).
pub struct ChainalysisProvider {
    client: reqwest::Client,
    base_url: String,
    api_key: String,
}

impl ChainalysisProvider {
    pub fn new(base_url: &str, api_key: &str, timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(ChainalysisProvider {
            client,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
        })
    }
}

#[derive(serde::Deserialize)]
struct Identifications {
    identifications: Vec<Identification>,
}

#[derive(serde::Deserialize)]
struct Identification {
    category: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    url: Option<String>,
}

/// The most of an answer read: an identification list is small; anything larger is not this API.
const MAX_ANSWER: usize = 64 * 1024;

impl Provider for ChainalysisProvider {
    fn name(&self) -> &str {
        "chainalysis"
    }

    fn screen<'a>(&'a self, _chain_id: &'a str, address: &'a str) -> BoxFuture<'a, Result<Finding, String>> {
        Box::pin(async move {
            // The address is checked for its chain before it gets here: it holds no path characters.
            let url = format!("{}/api/v1/address/{address}", self.base_url);
            let resp = self
                .client
                .get(&url)
                .header("X-API-Key", &self.api_key)
                .header("Accept", "application/json")
                .send()
                .await
                .map_err(|e| if e.is_timeout() { "timed out".to_owned() } else { format!("unreachable: {e}") })?;
            let status = resp.status();
            if !status.is_success() {
                return Err(format!("answered HTTP {}", status.as_u16()));
            }
            let body = resp.bytes().await.map_err(|e| format!("answer cut short: {e}"))?;
            if body.len() > MAX_ANSWER {
                return Err(format!("answer of {} bytes is not an identification list", body.len()));
            }
            let parsed: Identifications =
                serde_json::from_slice(&body).map_err(|e| format!("answer is not an identification list: {e}"))?;
            let level = parsed
                .identifications
                .iter()
                .map(|i| if i.category.eq_ignore_ascii_case("sanctions") { RiskLevel::Severe } else { RiskLevel::High })
                .max()
                .unwrap_or(RiskLevel::Unknown);
            let mut categories: Vec<String> =
                parsed.identifications.iter().map(|i| i.category.to_lowercase()).collect();
            categories.dedup();
            let reference = parsed.identifications.iter().find_map(|i| i.url.clone().or_else(|| i.name.clone()));
            Ok(Finding { provider: "chainalysis".into(), level, categories, reference })
        })
    }
}

/// What the operator configured (`[screening]`); `ebb dev` and tests take the default: the OFAC list
/// and the denylist, the default rules, no HTTP provider.
#[derive(Debug, Clone)]
pub struct ScreeningSettings {
    pub rules: ScreeningRules,
    /// Screen against the OFAC SDN list (the shipped one, or a newer one loaded).
    pub ofac: bool,
    pub chainalysis: Option<ChainalysisSettings>,
    /// Where isolated funds go, by chain id (the `isolate` disposition).
    pub quarantine: std::collections::HashMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct ChainalysisSettings {
    pub base_url: String,
    pub api_key: String,
    pub timeout: Duration,
}

impl Default for ScreeningSettings {
    fn default() -> Self {
        ScreeningSettings {
            rules: ScreeningRules::default(),
            ofac: true,
            chainalysis: None,
            quarantine: Default::default(),
        }
    }
}

impl ScreeningSettings {
    /// The screener these settings describe, with the operator's denylist.
    pub fn screener(&self, store: &Store, denylist: Arc<Denylist>) -> AppResult<Screener> {
        let mut providers: Vec<Arc<dyn Provider>> = vec![Arc::new(DenylistProvider(denylist))];
        if self.ofac {
            providers.push(Arc::new(ListProvider { store: store.clone(), list_id: OFAC_LIST.into() }));
        }
        if let Some(c) = &self.chainalysis {
            providers.push(Arc::new(
                ChainalysisProvider::new(&c.base_url, &c.api_key, c.timeout).map_err(AppError::Invalid)?,
            ));
        }
        Ok(Screener::new(self.rules, providers)?.with_quarantine(self.quarantine.clone()))
    }
}

/// Every provider, and the rules that turn their answers into a verdict.
pub struct Screener {
    rules: ScreeningRules,
    providers: Vec<Arc<dyn Provider>>,
    /// Where isolated funds go, by chain id.
    quarantine: std::collections::HashMap<String, String>,
}

impl Screener {
    pub fn new(rules: ScreeningRules, providers: Vec<Arc<dyn Provider>>) -> AppResult<Self> {
        rules.check().map_err(|e| AppError::Invalid(e.to_string()))?;
        Ok(Screener { rules, providers, quarantine: Default::default() })
    }

    /// Isolated funds on these chains go to these addresses (`[screening] quarantine`).
    pub fn with_quarantine(mut self, quarantine: std::collections::HashMap<String, String>) -> Self {
        self.quarantine = quarantine;
        self
    }

    /// The quarantine address of a chain, if one is configured.
    pub fn quarantine(&self, chain_id: &str) -> Option<&str> {
        self.quarantine.get(chain_id).map(String::as_str)
    }

    /// Nobody to ask: every address is `Unknown` and allowed (a store-only test or tool).
    pub fn none() -> Self {
        Screener { rules: ScreeningRules::default(), providers: Vec::new(), quarantine: Default::default() }
    }

    pub fn rules(&self) -> &ScreeningRules {
        &self.rules
    }

    /// Asks every provider at once and judges the answers.
    pub async fn screen(&self, chain_id: &str, address: &str) -> Screening {
        let answers = futures::future::join_all(self.providers.iter().map(|p| p.screen(chain_id, address))).await;
        let (mut findings, mut unavailable) = (Vec::new(), Vec::new());
        for (p, answer) in self.providers.iter().zip(answers) {
            match answer {
                Ok(f) => findings.push(f),
                Err(why) => {
                    tracing::warn!(provider = p.name(), %address, %why, "a screening provider could not answer");
                    unavailable.push((p.name().to_owned(), why));
                }
            }
        }
        judge(&self.rules, address, findings, unavailable, now_s())
    }
}

impl crate::Engine {
    /// Screens a refund destination on `chain_id`: refused (`Err`) if the verdict is `Refuse`,
    /// otherwise the screening, to store with the refund (a `Hold` holds it for review).
    pub async fn screen_destination(&self, chain_id: &str, address: &Address) -> AppResult<Screening> {
        let s = self.screener.screen(chain_id, address.as_str()).await;
        if s.verdict == Verdict::Refuse {
            tracing::warn!(%address, chain = chain_id, level = s.level.as_str(), summary = %s.summary(),
                "screening refused a refund destination");
            return Err(AppError::RefusedByScreening { address: address.as_str().to_owned(), why: s.summary() });
        }
        Ok(s)
    }

    pub fn screener(&self) -> &Arc<Screener> {
        &self.screener
    }
}

/// One address to screen through Cobo's KYA API, parsed for its chain.
#[derive(Debug, Clone)]
pub struct KyaRequest {
    pub request_id: String,
    pub address: Address,
    pub chain_id: String,
    pub note: Option<String>,
}

/// Screens addresses on request (Cobo's `create_kya_screenings`) with the same providers and rules as
/// refund destinations, and stores each answer. A `request_id` used before answers with the screening
/// it made (if the same address and chain were asked; otherwise it is a conflict).
pub async fn screen_addresses(
    engine: &crate::Engine,
    actor: &crate::Actor,
    requests: Vec<KyaRequest>,
) -> AppResult<Vec<KyaRow>> {
    actor.require_psp_for("screen addresses")?;
    actor.require_operator_for("screen addresses")?;
    let mut out = Vec::with_capacity(requests.len());
    for req in requests {
        let s = engine.screener.screen(&req.chain_id, req.address.as_str()).await;
        let row = KyaRow {
            screening_id: ebb_store::ids::new_uuid(),
            request_id: req.request_id.clone(),
            requested_by: actor.initiator.clone(),
            address: req.address.as_str().to_owned(),
            chain_id: req.chain_id.clone(),
            note: req.note.clone(),
            status: if s.unavailable.is_empty() { "Screened" } else { "Failed" }.to_owned(),
            screening: s,
            created_at_ms: ebb_core::clock::now_ms(),
        };
        let stored = engine
            .store
            .write(move |tx| {
                Box::pin(async move {
                    if kya_repo::insert(tx, &row).await? {
                        kya_repo::raise_screened(tx, &row).await?;
                        return Ok(row);
                    }
                    let existing = kya_repo::find_by_request(tx, &row.request_id).await?;
                    if existing.address != row.address || existing.chain_id != row.chain_id {
                        return Err(ebb_store::StoreError::IdempotencyConflict { request_id: row.request_id });
                    }
                    Ok(existing)
                })
            })
            .await?;
        out.push(stored);
    }
    Ok(out)
}

/// Parses a list file: one address per line, blank lines and `#` comments ignored.
pub fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Replaces the list `list_id` with `addresses`, dated `dated` (`YYYY-MM-DD`). An older date than the
/// list in the database is refused unless `force`: a newer list must not be replaced by mistake.
pub async fn load_list(
    store: &Store,
    list_id: &str,
    dated: &str,
    source: &str,
    addresses: Vec<String>,
    force: bool,
) -> AppResult<ListMeta> {
    check_date(dated)?;
    if addresses.is_empty() {
        return Err(AppError::Invalid("the list holds no address".into()));
    }
    if let Some(current) = store.screening_list(list_id).await? {
        if current.dated.as_str() > dated && !force {
            return Err(AppError::InvalidState(format!(
                "the {list_id} list in the database is of {}, newer than {dated}; give --force to replace it anyway",
                current.dated
            )));
        }
    }
    let meta = ListMeta {
        list_id: list_id.to_owned(),
        dated: dated.to_owned(),
        source: source.to_owned(),
        entries: addresses.len() as i64,
        loaded_at: now_s(),
    };
    let stored = meta.clone();
    store.write(move |tx| Box::pin(async move { repo::replace_list(tx, &stored, &addresses).await })).await?;
    Ok(store.screening_list(list_id).await?.unwrap_or(meta))
}

/// Loads the shipped OFAC snapshot unless the database holds it or a newer one (at start-up).
pub async fn ensure_shipped_ofac(store: &Store) -> AppResult<()> {
    match store.screening_list(OFAC_LIST).await? {
        Some(current) if current.dated.as_str() >= SHIPPED_OFAC_DATE => Ok(()),
        _ => {
            let addresses: Vec<String> = SHIPPED_OFAC.iter().flat_map(|t| parse_list(t)).collect();
            let meta = load_list(store, OFAC_LIST, SHIPPED_OFAC_DATE, "OFAC SDN list", addresses, false).await?;
            tracing::info!(dated = %meta.dated, entries = meta.entries, "loaded the shipped OFAC SDN address list");
            Ok(())
        }
    }
}

fn check_date(d: &str) -> AppResult<()> {
    let b = d.as_bytes();
    let ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    match ok {
        true => Ok(()),
        false => Err(AppError::Invalid(format!("a list's date is YYYY-MM-DD, not {d:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_snapshot_parses_and_holds_known_entries() {
        let all: Vec<String> = SHIPPED_OFAC.iter().flat_map(|t| parse_list(t)).collect();
        assert!(all.len() > 180, "{}", all.len());
        assert!(all.iter().any(|a| a == "TBHTJqAy4DhHhmT3dNceJYNRz4SdLofLre"));
        assert!(all.iter().any(|a| a.eq_ignore_ascii_case("0x01e2919679362dFBC9ee1644Ba9C6da6D6245BB1")));
    }

    #[test]
    fn list_dates_are_checked() {
        assert!(check_date("2024-09-27").is_ok());
        for bad in ["2024-9-27", "27-09-2024", "2024/09/27", "", "2024-09-27x"] {
            assert!(check_date(bad).is_err(), "{bad}");
        }
    }
}
