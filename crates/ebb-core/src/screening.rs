//! Screening addresses: the risk a provider sees in an address, what ebb does about it, and the
//! checks on an address a customer submits through a refund link.
//!
//! - Risk and verdict: each provider (a list, an HTTP service) answers with a [`Finding`] — a
//!   [`RiskLevel`], categories and its reference — or cannot answer. [`judge`] combines the findings
//!   under the operator's [`ScreeningRules`]: the highest level decides, and a provider that could not
//!   answer holds the address for review (never allows it).
//!
//! - The operator's denylist (a screening list: sanctioned, stolen-funds or scam addresses). Matching
//!   is exact, except that EVM addresses match whatever their letter case.
//! - Address poisoning: scammers send dust from an address whose first and last characters match the
//!   victim's usual counterparty, hoping it gets copied from the history. A submitted address that
//!   shares its first and last [`POISONING_MATCH`] characters with the original payer's address but is
//!   not that address is exactly what such an attack produces, so the customer is warned.

use std::collections::HashSet;

use crate::ChainFamily;

/// How many leading and trailing characters (after the family's fixed prefix) make two different
/// addresses "look alike".
pub const POISONING_MATCH: usize = 4;

/// The form an address is compared in: EVM addresses are case-insensitive (the case is only a
/// checksum), base58 addresses are not.
pub fn normalize(address: &str) -> String {
    let a = address.trim();
    let is_evm = a.len() == 42 && (a.starts_with("0x") || a.starts_with("0X"));
    if is_evm {
        a.to_ascii_lowercase()
    } else {
        a.to_owned()
    }
}

/// The characters of an address a person actually compares: without `0x` (EVM) or the leading `T`
/// (Tron), which every address of the family shares.
fn distinctive(family: ChainFamily, normalized: &str) -> &str {
    match family {
        ChainFamily::Evm => normalized.strip_prefix("0x").unwrap_or(normalized),
        ChainFamily::Tron => normalized.strip_prefix('T').unwrap_or(normalized),
        ChainFamily::Solana => normalized,
    }
}

/// Whether `submitted` differs from `original` yet starts and ends like it: the mark of a poisoning
/// address. An empty original (no known payer) never matches.
pub fn looks_like_poisoning(family: ChainFamily, original: &str, submitted: &str) -> bool {
    let (o, s) = (normalize(original), normalize(submitted));
    if o.is_empty() || o == s {
        return false;
    }
    let (o, s) = (distinctive(family, &o), distinctive(family, &s));
    let n = POISONING_MATCH;
    if o.len() < 2 * n || s.len() < 2 * n || !o.is_ascii() || !s.is_ascii() {
        return false;
    }
    o[..n] == s[..n] && o[o.len() - n..] == s[s.len() - n..]
}

/// The operator's screening denylist: one address per line; blank lines and `#` comments ignored.
#[derive(Debug, Default, Clone)]
pub struct Denylist {
    addresses: HashSet<String>,
}

impl Denylist {
    pub fn parse(text: &str) -> Self {
        let addresses = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter(|l| !l.is_empty())
            .map(normalize)
            .collect();
        Denylist { addresses }
    }

    pub fn len(&self) -> usize {
        self.addresses.len()
    }

    pub fn is_empty(&self) -> bool {
        self.addresses.is_empty()
    }

    pub fn contains(&self, address: &str) -> bool {
        self.addresses.contains(&normalize(address))
    }
}

/// How risky a provider finds an address, least first. `Unknown`: the provider knows nothing of it
/// (a list that does not name it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RiskLevel {
    Unknown,
    Low,
    Medium,
    High,
    Severe,
}

impl RiskLevel {
    pub const ALL: [RiskLevel; 5] =
        [RiskLevel::Unknown, RiskLevel::Low, RiskLevel::Medium, RiskLevel::High, RiskLevel::Severe];

    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::Unknown => "Unknown",
            RiskLevel::Low => "Low",
            RiskLevel::Medium => "Medium",
            RiskLevel::High => "High",
            RiskLevel::Severe => "Severe",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

/// One provider's answer about one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub provider: String,
    pub level: RiskLevel,
    /// What the provider says the address is (`sanctions`, `scam`, `denylist`...); empty when nothing.
    pub categories: Vec<String>,
    /// The provider's own reference for what it found (a list's date, an identification's URL).
    pub reference: Option<String>,
}

/// What ebb does with a screened address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Allow,
    /// Accepted, but nothing is paid to it until a person reviews it (an approval).
    Hold,
    /// Refused: nothing is ever sent there.
    Refuse,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "Allow",
            Verdict::Hold => "Hold",
            Verdict::Refuse => "Refuse",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Verdict::Allow, Verdict::Hold, Verdict::Refuse].into_iter().find(|v| v.as_str().eq_ignore_ascii_case(s))
    }
}

/// The operator's mapping from risk to verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScreeningRules {
    pub severe: Verdict,
    pub high: Verdict,
    pub medium: Verdict,
    pub low: Verdict,
    pub unknown: Verdict,
    /// When a provider could not answer (down, slow, garbage): never `Allow`.
    pub unavailable: Verdict,
}

impl Default for ScreeningRules {
    /// Sanctioned: refused; high risk: held for review; the rest allowed; no answer: held.
    fn default() -> Self {
        ScreeningRules {
            severe: Verdict::Refuse,
            high: Verdict::Hold,
            medium: Verdict::Allow,
            low: Verdict::Allow,
            unknown: Verdict::Allow,
            unavailable: Verdict::Hold,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    #[error("an address no provider could screen must be held or refused, never allowed")]
    AllowsUnscreened,
    #[error("a Severe (sanctioned) address must be held or refused, never allowed")]
    AllowsSevere,
}

impl ScreeningRules {
    pub fn check(&self) -> Result<(), RulesError> {
        if self.unavailable == Verdict::Allow {
            return Err(RulesError::AllowsUnscreened);
        }
        if self.severe == Verdict::Allow {
            return Err(RulesError::AllowsSevere);
        }
        Ok(())
    }

    pub fn for_level(&self, level: RiskLevel) -> Verdict {
        match level {
            RiskLevel::Severe => self.severe,
            RiskLevel::High => self.high,
            RiskLevel::Medium => self.medium,
            RiskLevel::Low => self.low,
            RiskLevel::Unknown => self.unknown,
        }
    }
}

/// An address's screening: every provider's finding, the providers that could not answer, the
/// highest level found, and the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screening {
    pub address: String,
    pub level: RiskLevel,
    pub verdict: Verdict,
    pub findings: Vec<Finding>,
    /// Providers that could not answer, each with why.
    pub unavailable: Vec<(String, String)>,
    /// Seconds.
    pub screened_at: i64,
}

impl Screening {
    /// The findings that raised the level, said in one line (for errors and logs).
    pub fn summary(&self) -> String {
        let mut parts: Vec<String> = self
            .findings
            .iter()
            .filter(|f| f.level > RiskLevel::Unknown)
            .map(|f| {
                let cats =
                    if f.categories.is_empty() { String::new() } else { format!(": {}", f.categories.join(", ")) };
                format!("{} says {}{cats}", f.provider, f.level.as_str())
            })
            .collect();
        parts.extend(self.unavailable.iter().map(|(p, why)| format!("{p} could not answer ({why})")));
        if parts.is_empty() {
            "no provider knows anything against it".into()
        } else {
            parts.join("; ")
        }
    }
}

/// Combines the providers' answers under `rules`: the highest level found decides, and any provider
/// that could not answer makes the verdict at least `rules.unavailable`.
pub fn judge(
    rules: &ScreeningRules,
    address: &str,
    findings: Vec<Finding>,
    unavailable: Vec<(String, String)>,
    now: i64,
) -> Screening {
    let level = findings.iter().map(|f| f.level).max().unwrap_or(RiskLevel::Unknown);
    let mut verdict = rules.for_level(level);
    if !unavailable.is_empty() {
        verdict = verdict.max(rules.unavailable);
    }
    Screening { address: address.to_owned(), level, verdict, findings, unavailable, screened_at: now }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYER: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";

    #[test]
    fn a_look_alike_of_the_payer_is_flagged() {
        // Same first four and last four hex digits, different middle.
        let poison = "0x5aAe00000000000000000000000000000000eAed";
        assert!(looks_like_poisoning(ChainFamily::Evm, PAYER, poison));
        // Letter case does not hide it.
        assert!(looks_like_poisoning(ChainFamily::Evm, PAYER, &poison.to_lowercase()));
    }

    #[test]
    fn the_payer_itself_and_unrelated_addresses_are_not_flagged() {
        assert!(!looks_like_poisoning(ChainFamily::Evm, PAYER, PAYER));
        assert!(!looks_like_poisoning(ChainFamily::Evm, PAYER, &PAYER.to_lowercase()));
        assert!(!looks_like_poisoning(ChainFamily::Evm, PAYER, "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"));
        // Only the start, or only the end, in common: not the attack's shape.
        assert!(!looks_like_poisoning(ChainFamily::Evm, PAYER, "0x5aAe000000000000000000000000000000001234"));
        assert!(!looks_like_poisoning(ChainFamily::Evm, PAYER, "0x123400000000000000000000000000000000eAed"));
        // No known payer: nothing to compare with.
        assert!(!looks_like_poisoning(ChainFamily::Evm, "", "0x5aAe00000000000000000000000000000000eAed"));
    }

    #[test]
    fn tron_compares_after_the_shared_t() {
        let payer = "TJCnKsPa7y5okkXvQAidZBzqx3QyQ6sxMW";
        assert!(looks_like_poisoning(ChainFamily::Tron, payer, "TJCnKzzzzzzzzzzzzzzzzzzzzzzzz6sxMW"));
        // Sharing the T and three more is not enough.
        assert!(!looks_like_poisoning(ChainFamily::Tron, payer, "TJCnzzzzzzzzzzzzzzzzzzzzzzzzzzsxMW"));
    }

    #[test]
    fn the_denylist_ignores_comments_and_evm_case() {
        let list = Denylist::parse(
            "# sanctioned\n0x5AAEB6053F3E94C9B9A09F33669435E7EF1BEAED  # dprk\n\nTJCnKsPa7y5okkXvQAidZBzqx3QyQ6sxMW\n",
        );
        assert_eq!(list.len(), 2);
        assert!(list.contains(PAYER));
        assert!(list.contains("TJCnKsPa7y5okkXvQAidZBzqx3QyQ6sxMW"));
        // base58 is case-sensitive: another case is another address.
        assert!(!list.contains("tjcnkspa7y5okkxvqaidzbzqx3qyq6sxmw"));
        assert!(!list.contains("0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"));
    }

    fn finding(provider: &str, level: RiskLevel) -> Finding {
        Finding { provider: provider.into(), level, categories: vec!["x".into()], reference: None }
    }

    #[test]
    fn the_highest_finding_decides_and_silence_allows() {
        let rules = ScreeningRules::default();
        let quiet = judge(&rules, "a", vec![finding("ofac", RiskLevel::Unknown)], vec![], 0);
        assert_eq!((quiet.level, quiet.verdict), (RiskLevel::Unknown, Verdict::Allow));
        let mixed =
            judge(&rules, "a", vec![finding("list", RiskLevel::High), finding("ofac", RiskLevel::Severe)], vec![], 0);
        assert_eq!((mixed.level, mixed.verdict), (RiskLevel::Severe, Verdict::Refuse));
        let high =
            judge(&rules, "a", vec![finding("list", RiskLevel::High), finding("ofac", RiskLevel::Unknown)], vec![], 0);
        assert_eq!(high.verdict, Verdict::Hold);
        assert!(high.summary().contains("list says High: x"), "{}", high.summary());
    }

    #[test]
    fn a_provider_that_cannot_answer_holds_and_never_lowers_a_refusal() {
        let rules = ScreeningRules::default();
        let down = vec![("chainalysis".to_owned(), "timed out".to_owned())];
        let held = judge(&rules, "a", vec![finding("ofac", RiskLevel::Unknown)], down.clone(), 0);
        assert_eq!(held.verdict, Verdict::Hold);
        assert!(held.summary().contains("chainalysis could not answer (timed out)"));
        let refused = judge(&rules, "a", vec![finding("ofac", RiskLevel::Severe)], down, 0);
        assert_eq!(refused.verdict, Verdict::Refuse);
    }

    #[test]
    fn rules_that_would_allow_the_unscreened_or_the_sanctioned_are_refused() {
        assert!(ScreeningRules::default().check().is_ok());
        let r = ScreeningRules { unavailable: Verdict::Allow, ..ScreeningRules::default() };
        assert_eq!(r.check(), Err(RulesError::AllowsUnscreened));
        let r = ScreeningRules { severe: Verdict::Allow, ..ScreeningRules::default() };
        assert_eq!(r.check(), Err(RulesError::AllowsSevere));
        assert_eq!(Verdict::parse("hold"), Some(Verdict::Hold));
        assert_eq!(RiskLevel::parse("Severe"), Some(RiskLevel::Severe));
        assert!(RiskLevel::Severe > RiskLevel::High && RiskLevel::Low > RiskLevel::Unknown);
    }
}
