//! Checks on an address a customer submits through a refund link, before it is accepted.
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
}
