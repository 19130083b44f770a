//! Refund destinations that would lose the money, refused wherever a refund gets its address (the API
//! and the refund page): the zero and burn addresses, the contract of any token ebb knows, ebb's own
//! hot wallets, and every receiving address ebb has derived for an order. Tokens sent to a contract or
//! the zero address are gone; sent to ebb's own addresses they would come back as a pay-in while the
//! customer is told they were refunded.

use std::collections::HashMap;

use ebb_core::screening::normalize;
use ebb_core::{Address, TokenRegistry};

use crate::AppError;

/// Addresses that burn what they receive, per family: the EVM zero and `…dEaD` addresses, Tron's
/// zero account (`T9yD…`, the zero address in base58check), Solana's system program (all zeros).
const BURN_ADDRESSES: [(&str, &str); 4] = [
    ("0x0000000000000000000000000000000000000000", "the zero address"),
    ("0x000000000000000000000000000000000000dEaD", "a burn address"),
    ("T9yD14Nj9j7xAB4dbGeiX9h8unkKHxuWwb", "the zero address"),
    ("11111111111111111111111111111111", "the zero address"),
];

/// The addresses known without the database, each with why it is refused.
#[derive(Debug, Default)]
pub struct RefusedDestinations {
    refused: HashMap<String, String>,
}

impl RefusedDestinations {
    pub fn new<'a>(registry: &TokenRegistry, hot_wallets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut refused = HashMap::new();
        for (address, why) in BURN_ADDRESSES {
            refused.insert(normalize(address), why.to_owned());
        }
        for t in registry.iter().filter(|t| !t.contract.is_empty()) {
            refused.insert(normalize(&t.contract), format!("the contract of token {}", t.id));
        }
        for w in hot_wallets {
            refused.insert(normalize(w), "ebb's own hot wallet".to_owned());
        }
        Self { refused }
    }

    /// Why `address` may not receive a refund, if it may not (without the database's addresses).
    pub fn refusal(&self, address: &str) -> Option<&str> {
        self.refused.get(&normalize(address)).map(String::as_str)
    }
}

impl crate::Engine {
    /// Refuses a refund destination that would lose the money (the known ones above, and every
    /// receiving address ebb has derived for an order).
    pub async fn check_destination(&self, address: &Address) -> Result<(), AppError> {
        let why = match self.destinations.refusal(address.as_str()) {
            Some(why) => why.to_owned(),
            None if self.store.is_receive_address(address.as_str()).await? => {
                "one of ebb's own receiving addresses".to_owned()
            }
            None => return Ok(()),
        };
        Err(AppError::RefusedDestination { address: address.as_str().to_owned(), why })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burn_addresses_contracts_and_hot_wallets_are_refused_in_any_letter_case() {
        let registry = TokenRegistry::cobo_defaults();
        let hot = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
        let d = RefusedDestinations::new(&registry, [hot]);
        assert_eq!(d.refusal("0x0000000000000000000000000000000000000000"), Some("the zero address"));
        assert_eq!(d.refusal("0x000000000000000000000000000000000000dead"), Some("a burn address"));
        assert_eq!(d.refusal(&hot.to_lowercase()), Some("ebb's own hot wallet"));
        let usdt = registry.get("ETH_USDT").unwrap();
        assert_eq!(
            d.refusal(&usdt.contract.to_uppercase().replace("0X", "0x")).unwrap(),
            "the contract of token ETH_USDT"
        );
        let tron_usdt = registry.get("TRON_USDT").unwrap();
        assert!(d.refusal(&tron_usdt.contract).is_some());
        assert_eq!(d.refusal("T9yD14Nj9j7xAB4dbGeiX9h8unkKHxuWwb"), Some("the zero address"));
        assert_eq!(d.refusal("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"), None);
    }

    /// The listed zero addresses are what each family's parser makes of an all-zero account.
    #[test]
    fn the_zero_addresses_are_the_families_all_zero_accounts() {
        assert_eq!(Address::evm_from_bytes(&[0; 20]).as_str(), BURN_ADDRESSES[0].0);
        assert_eq!(Address::tron_from_bytes(&[0; 20]).as_str(), BURN_ADDRESSES[2].0);
        assert_eq!(Address::solana_from_bytes(&[0; 32]).as_str(), BURN_ADDRESSES[3].0);
    }
}
