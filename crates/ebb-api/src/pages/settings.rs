//! How refund links behave (`LinkSettings`, from the configuration) and what the page calls networks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ebb_core::screening::Denylist;

/// How refund links behave; `ebb serve` reads these from the configuration (docs/REFUND_LINKS.md).
#[derive(Debug, Clone)]
pub struct LinkSettings {
    /// The base URL customers reach ebb at (`https://refunds.example.com`); links are
    /// `{public_url}/refund-link?token=…`. Empty: `http://` + the address ebb listens on.
    pub public_url: String,
    /// How long a link stays usable.
    pub ttl: Duration,
    /// Addresses refused on submit.
    pub denylist: Arc<Denylist>,
    /// Form posts one link may make per window.
    pub posts_per_link: u32,
    /// Form posts one client address may make per window.
    pub posts_per_client: u32,
    pub limit_window: Duration,
    /// A header carrying the client's address, set by a reverse proxy in front of ebb (for example
    /// `X-Forwarded-For`: its last entry is used). Unset: the TCP peer's address.
    pub client_ip_header: Option<String>,
    /// Block-explorer transaction URL prefixes by chain id; a chain without one (the sandbox) shows
    /// the hash only.
    pub explorers: HashMap<String, String>,
}

impl Default for LinkSettings {
    fn default() -> Self {
        LinkSettings {
            public_url: String::new(),
            ttl: Duration::from_secs(7 * 24 * 3600),
            denylist: Arc::new(Denylist::default()),
            posts_per_link: 20,
            posts_per_client: 60,
            limit_window: Duration::from_secs(600),
            client_ip_header: None,
            explorers: default_explorers(),
        }
    }
}

/// The block explorers of the mainnets in the built-in token registry.
pub fn default_explorers() -> HashMap<String, String> {
    [
        ("ETH", "https://etherscan.io/tx/"),
        ("ARBITRUM_ETH", "https://arbiscan.io/tx/"),
        ("BASE_ETH", "https://basescan.org/tx/"),
        ("MATIC", "https://polygonscan.com/tx/"),
        ("BSC_BNB", "https://bscscan.com/tx/"),
        ("TRON", "https://tronscan.org/#/transaction/"),
        ("SOL", "https://solscan.io/tx/"),
    ]
    .into_iter()
    .map(|(c, u)| (c.to_owned(), u.to_owned()))
    .collect()
}

/// What a network is called on the page.
pub fn network_name(chain_id: &str) -> String {
    match chain_id {
        "ETH" => "Ethereum (ERC-20)",
        "ARBITRUM_ETH" => "Arbitrum One",
        "BASE_ETH" => "Base",
        "MATIC" => "Polygon PoS",
        "BSC_BNB" => "BNB Smart Chain (BEP-20)",
        "TRON" => "Tron (TRC-20)",
        "SOL" => "Solana (SPL)",
        other => other,
    }
    .to_owned()
}
