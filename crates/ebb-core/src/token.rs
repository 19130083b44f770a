//! The token registry: which token ids ebb knows, on which chain, with how many decimals.
//!
//! The defaults are the 13 tokens Cobo's refund API lists. An operator may replace or extend them
//! through configuration (e.g. a test token on a local chain); the registry is immutable once built.

use std::collections::BTreeMap;

/// How addresses look and are checked on a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChainFamily {
    Evm,
    Tron,
    Solana,
}

impl ChainFamily {
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "evm" => Some(Self::Evm),
            "tron" => Some(Self::Tron),
            "solana" => Some(Self::Solana),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Evm => "evm",
            Self::Tron => "tron",
            Self::Solana => "solana",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Cobo's token id, e.g. `ETH_USDT`.
    pub id: String,
    /// Cobo's chain id, e.g. `ETH`.
    pub chain_id: String,
    pub family: ChainFamily,
    pub symbol: String,
    pub decimals: u32,
    /// The token contract (ERC-20 / TRC-20 address or SPL mint).
    pub contract: String,
}

/// Cobo's rule for refund and link amounts: "a positive number with up to two decimal places".
pub const API_AMOUNT_MAX_SCALE: u32 = 2;

#[derive(Debug, Clone)]
pub struct TokenRegistry {
    tokens: BTreeMap<String, Token>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRegistryError {
    #[error("token {0}: decimals must be between 0 and 30")]
    Decimals(String),
    #[error("token id {0:?} must be 1 to 64 characters of A-Z, 0-9 and _")]
    Id(String),
}

impl TokenRegistry {
    pub fn new(tokens: impl IntoIterator<Item = Token>) -> Result<Self, TokenRegistryError> {
        let mut map = BTreeMap::new();
        for t in tokens {
            let id_ok = !t.id.is_empty()
                && t.id.len() <= 64
                && t.id.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
            if !id_ok {
                return Err(TokenRegistryError::Id(t.id));
            }
            // 30 keeps 10^decimals times any sane supply inside u128.
            if t.decimals > 30 {
                return Err(TokenRegistryError::Decimals(t.id));
            }
            map.insert(t.id.clone(), t);
        }
        Ok(Self { tokens: map })
    }

    /// The 13 stablecoin tokens of Cobo's refund API with their mainnet contracts.
    pub fn cobo_defaults() -> Self {
        use ChainFamily::*;
        let t = |id: &str, chain: &str, family, symbol: &str, decimals, contract: &str| Token {
            id: id.into(),
            chain_id: chain.into(),
            family,
            symbol: symbol.into(),
            decimals,
            contract: contract.into(),
        };
        Self::new([
            t("ETH_USDC", "ETH", Evm, "USDC", 6, "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"),
            t("ETH_USDT", "ETH", Evm, "USDT", 6, "0xdAC17F958D2ee523a2206206994597C13D831ec7"),
            t("ARBITRUM_USDCOIN", "ARBITRUM_ETH", Evm, "USDC", 6, "0xaf88d065e77c8cC2239327C5EDb3A432268e5831"),
            t("ARBITRUM_USDT", "ARBITRUM_ETH", Evm, "USDT", 6, "0xFd086bC7CD5C481DCC9C85ebE478A1C0b69FCbb9"),
            t("BASE_USDC", "BASE_ETH", Evm, "USDC", 6, "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"),
            t("BASE_USDT", "BASE_ETH", Evm, "USDT", 6, "0xfde4C96c8593536E31F229EA8f37b2ADa2699bb2"),
            t("MATIC_USDC2", "MATIC", Evm, "USDC", 6, "0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359"),
            t("MATIC_USDT", "MATIC", Evm, "USDT", 6, "0xc2132D05D31c914a87C6611C10748AEb04B58e8F"),
            t("BSC_USDC", "BSC_BNB", Evm, "USDC", 18, "0x8AC76a51cc950d9822D68b83fE1Ad97B32Cd580d"),
            t("BSC_USDT", "BSC_BNB", Evm, "USDT", 18, "0x55d398326f99059fF775485246999027B3197955"),
            t("TRON_USDT", "TRON", Tron, "USDT", 6, "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"),
            t("SOL_USDC", "SOL", Solana, "USDC", 6, "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v"),
            t("SOL_USDT", "SOL", Solana, "USDT", 6, "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB"),
        ])
        .expect("the built-in registry is valid")
    }

    pub fn get(&self, id: &str) -> Option<&Token> {
        self.tokens.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Token> {
        self.tokens.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Address;

    #[test]
    fn defaults_hold_cobos_thirteen_tokens_with_their_decimals() {
        let r = TokenRegistry::cobo_defaults();
        assert_eq!(r.iter().count(), 13);
        for t in r.iter() {
            let expected = if t.chain_id == "BSC_BNB" { 18 } else { 6 };
            assert_eq!(t.decimals, expected, "{}", t.id);
            // Every built-in contract is itself a valid address of its family.
            Address::parse(t.family, &t.contract).unwrap_or_else(|e| panic!("{}: {e}", t.id));
        }
    }

    #[test]
    fn refuses_bad_ids_and_decimals() {
        let mut t = TokenRegistry::cobo_defaults().get("ETH_USDT").unwrap().clone();
        t.decimals = 31;
        assert!(TokenRegistry::new([t.clone()]).is_err());
        t.decimals = 6;
        t.id = "eth usdt".into();
        assert!(TokenRegistry::new([t]).is_err());
    }
}
