//! Settings: an optional `ebb.toml`, overridden by `EBB_*` environment variables. `ebb dev` needs
//! neither. Secrets (the server's signing key) come from a file or the environment, never the database.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use ebb_api::pages::LinkSettings;
use ebb_chain::evm::EvmConfig;
use ebb_core::approval::ApprovalPolicy;
use ebb_core::screening::Denylist;
use ebb_core::{ChainFamily, Token, TokenRegistry};
use ebb_worker::WebhookSettings;
use ed25519_dalek::SigningKey;
use serde::Deserialize;

mod console;
mod prices;
mod risk;
pub use console::ConsoleConfig;
use ebb_app::prices::PricesSettings;
use ebb_app::screening::ScreeningSettings;
use ebb_worker::mail::MailSettings;
pub use prices::PricesConfig;
pub use risk::{PolicyConfig, ScreeningConfig};

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub database_url: Option<String>,
    /// A file holding the 32-byte Ed25519 seed of the response-signing key, in hex.
    pub server_key_file: Option<PathBuf>,
    pub sandbox: Option<bool>,
    pub log_format: Option<String>,
    pub max_connections: Option<u32>,
    /// Tokens added to (or replacing, by id) the built-in registry.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Chains ebb pays out on. With `sandbox = true`, every chain of the registry without an entry
    /// here runs on the built-in sandbox chain.
    #[serde(default)]
    pub chains: Vec<ChainConfig>,
    /// How often the sandbox chains mine a block (default 1000 ms).
    pub sandbox_block_ms: Option<u64>,
    /// How often the payout executor looks for work (default 1000 ms).
    pub payout_interval_ms: Option<u64>,
    /// How long a payout may wait unmined before its fees are compared with the network's and, if too
    /// low, raised by a replacement (default 60000 ms).
    pub payout_bump_after_ms: Option<u64>,
    /// Whether this process pays out refunds (default true).
    pub payouts: Option<bool>,
    /// Whether this process watches the chains for pay-ins (default true).
    pub watch_payins: Option<bool>,
    /// Whether this process delivers webhooks (default true).
    pub webhooks: Option<bool>,
    /// How long one webhook POST may take (default 10000 ms).
    pub webhook_timeout_ms: Option<u64>,
    /// The waits before each webhook retry, in ms (default: docs/WEBHOOKS.md, 14 retries over 3 days).
    pub webhook_retry_schedule_ms: Option<Vec<u64>>,
    /// Let webhook endpoints resolve to loopback, private and link-local addresses (default false: the
    /// SSRF guard refuses them). `ebb dev` allows them.
    pub webhook_allow_private_addresses: Option<bool>,
    /// The base URL customers reach ebb at; refund links are `{public_url}/refund-link?token=…`
    /// (default: `http://` + the listening address).
    pub public_url: Option<String>,
    /// How long a refund link stays usable, in seconds (default 604800: 7 days).
    pub refund_link_ttl_s: Option<u64>,
    /// A file of addresses refused on the refund page: one per line, `#` comments.
    pub screening_denylist_file: Option<PathBuf>,
    /// Form posts per refund link per window (default 20).
    pub refund_link_posts_per_link: Option<u32>,
    /// Form posts per client address per window (default 60).
    pub refund_link_posts_per_client: Option<u32>,
    /// The rate-limit window, in seconds (default 600).
    pub refund_link_limit_window_s: Option<u64>,
    /// A header a reverse proxy sets to the client's address (`X-Forwarded-For`: its last entry); unset,
    /// the TCP peer's address is the client's.
    pub client_ip_header: Option<String>,
    /// Maker-checker approval policies (`[[approval_policies]]`, docs/RISK.md); they replace, at every
    /// start, the policies an earlier start read from the file.
    #[serde(default)]
    pub approval_policies: Vec<PolicyConfig>,
    /// Screening of refund destinations (`[screening]`, docs/RISK.md).
    #[serde(default)]
    pub screening: ScreeningConfig,
    /// Exchange rates (`[prices]`, docs/PRICES.md).
    #[serde(default)]
    pub prices: PricesConfig,
    /// Customer e-mail (`[mail]`, docs/MAIL.md); without it ebb e-mails nobody.
    #[serde(default)]
    pub mail: MailConfig,
    /// The operator console's sessions and logins (`[console]`, docs/CONSOLE.md).
    #[serde(default)]
    pub console: ConsoleConfig,
}

/// `[mail]`: the SMTP server customer e-mail goes through, and its sender.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    /// `smtp://host:25` (plain), `smtp://user:pass@host:587?tls=required` (STARTTLS),
    /// `smtps://user:pass@host:465` (TLS).
    pub smtp_url: Option<String>,
    /// The sender: `Shop Refunds <refunds@shop.example>`.
    pub from: Option<String>,
}

impl MailConfig {
    fn resolve(&self) -> anyhow::Result<Option<MailSettings>> {
        match (&self.smtp_url, &self.from) {
            (None, None) => Ok(None),
            (Some(url), Some(from)) => {
                let parsed = url::Url::parse(url).with_context(|| "[mail] smtp_url is not a URL")?;
                if !matches!(parsed.scheme(), "smtp" | "smtps") {
                    bail!("[mail] smtp_url must be smtp:// or smtps://, not {}://", parsed.scheme());
                }
                Ok(Some(MailSettings::new(url.clone(), from.clone())))
            }
            _ => bail!("[mail] needs both smtp_url and from"),
        }
    }
}

/// One chain's payout settings (`[[chains]]`); docs/OPERATIONS.md explains each.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// Cobo's chain id: `ETH`, `ARBITRUM_ETH`, `BASE_ETH`, `MATIC`, `BSC_BNB`, ...
    pub chain_id: String,
    /// `evm` (default) or `sandbox`.
    pub kind: Option<String>,
    pub rpc_url: Option<String>,
    /// The EIP-155 chain id the node must report.
    pub evm_chain_id: Option<u64>,
    /// Blocks, counting the transaction's own, before a payout counts as final (default 12).
    pub confirmations: Option<u64>,
    /// A file holding the hot wallet's private key in hex.
    pub hot_wallet_key_file: Option<PathBuf>,
    /// Or the name of an environment variable holding it.
    pub hot_wallet_key_env: Option<String>,
    /// Never pay more than this per gas unit, in gwei (default 500).
    pub max_fee_per_gas_gwei: Option<u64>,
    /// How long one RPC call may take (default 10000 ms).
    pub rpc_timeout_ms: Option<u64>,
    /// The block explorer's transaction URL prefix shown on refund pages (`https://etherscan.io/tx/`);
    /// `""` shows hashes only. Default: the known explorer of the chain id, none for a sandbox.
    pub explorer_tx_url: Option<String>,
}

/// A chain to pay out on, resolved (secrets read).
#[derive(Debug, Clone)]
pub enum ChainSetting {
    Evm(EvmConfig),
    Sandbox { chain_id: String, confirmations: u64 },
}

impl ChainSetting {
    pub fn chain_id(&self) -> &str {
        match self {
            ChainSetting::Evm(c) => &c.chain_id,
            ChainSetting::Sandbox { chain_id, .. } => chain_id,
        }
    }
}

impl ChainConfig {
    fn resolve(&self) -> anyhow::Result<ChainSetting> {
        let id = &self.chain_id;
        match self.kind.as_deref().unwrap_or("evm") {
            "sandbox" => {
                Ok(ChainSetting::Sandbox { chain_id: id.clone(), confirmations: self.confirmations.unwrap_or(2) })
            }
            "evm" => {
                let key = match (&self.hot_wallet_key_file, &self.hot_wallet_key_env) {
                    (Some(path), None) => std::fs::read_to_string(path)
                        .with_context(|| format!("chain {id}: reading hot_wallet_key_file {}", path.display()))?,
                    (None, Some(var)) => std::env::var(var).with_context(|| {
                        format!("chain {id}: environment variable {var} (hot_wallet_key_env) is not set")
                    })?,
                    _ => bail!("chain {id}: set exactly one of hot_wallet_key_file and hot_wallet_key_env"),
                };
                Ok(ChainSetting::Evm(EvmConfig {
                    chain_id: id.clone(),
                    rpc_url: self.rpc_url.clone().with_context(|| format!("chain {id}: rpc_url is required"))?,
                    evm_chain_id: self.evm_chain_id.with_context(|| format!("chain {id}: evm_chain_id is required"))?,
                    confirmations: self.confirmations.unwrap_or(12).max(1),
                    hot_wallet_key: key.trim().to_owned(),
                    max_fee_per_gas_cap: u128::from(self.max_fee_per_gas_gwei.unwrap_or(500)) * 1_000_000_000,
                    rpc_timeout: Duration::from_millis(self.rpc_timeout_ms.unwrap_or(10_000)),
                }))
            }
            other => bail!("chain {id}: kind must be evm or sandbox, not {other:?}"),
        }
    }
}

/// The background work of this process.
#[derive(Debug, Clone, Copy)]
pub struct WorkerSettings {
    /// Whether this process pays out refunds. Off for an API-only process beside worker processes
    /// (`payouts = false`, `EBB_PAYOUTS=false`); several processes may pay out on one PostgreSQL.
    pub run_payouts: bool,
    /// Whether this process watches the chains for pay-ins (`watch_payins = false`, `EBB_WATCH_PAYINS=false`).
    pub run_watcher: bool,
    /// Whether this process delivers webhooks (`webhooks = false`, `EBB_WEBHOOKS=false`); several
    /// processes may deliver from one PostgreSQL.
    pub run_webhooks: bool,
    pub sandbox_block: Duration,
    pub payout_interval: Duration,
    pub bump_after: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            run_payouts: true,
            run_watcher: true,
            run_webhooks: true,
            sandbox_block: Duration::from_millis(1000),
            payout_interval: Duration::from_millis(1000),
            bump_after: ebb_worker::payout::DEFAULT_BUMP_AFTER,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub id: String,
    pub chain_id: String,
    /// `evm`, `tron` or `solana`.
    pub family: String,
    pub symbol: String,
    pub decimals: u32,
    pub contract: String,
}

/// Everything the server needs, resolved.
#[derive(Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub database_url: String,
    pub server_key: SigningKey,
    pub sandbox: bool,
    pub max_connections: u32,
    pub registry: TokenRegistry,
    pub chains: Vec<ChainSetting>,
    pub workers: WorkerSettings,
    pub webhooks: WebhookSettings,
    /// Refund links; an empty `public_url` means `http://` + the bound address.
    pub links: LinkSettings,
    /// The configuration file's approval policies.
    pub approval_policies: Vec<ApprovalPolicy>,
    pub screening: ScreeningSettings,
    pub prices: PricesSettings,
    /// Customer e-mail; `None`: ebb e-mails nobody.
    pub mail: Option<MailSettings>,
    /// The operator console's sessions and logins.
    pub console: ebb_app::operators::ConsoleSettings,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

impl FileConfig {
    /// A config file's text, before the environment's overrides (the `config` fuzz target's entry).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(toml::from_str(text)?)
    }

    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let mut cfg = match path {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).with_context(|| format!("reading config file {}", p.display()))?;
                Self::parse(&text).with_context(|| format!("parsing config file {}", p.display()))?
            }
            None => FileConfig::default(),
        };
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if let Some(v) = env("EBB_LISTEN") {
            cfg.listen = Some(v);
        }
        if let Some(v) = env("EBB_DATABASE_URL") {
            cfg.database_url = Some(v);
        }
        if let Some(v) = env("EBB_MAIL_SMTP_URL") {
            cfg.mail.smtp_url = Some(v);
        }
        if let Some(v) = env("EBB_MAIL_FROM") {
            cfg.mail.from = Some(v);
        }
        if let Some(v) = env("EBB_SERVER_KEY_FILE") {
            cfg.server_key_file = Some(v.into());
        }
        if let Some(v) = env("EBB_SANDBOX") {
            cfg.sandbox = Some(matches!(v.as_str(), "1" | "true" | "yes"));
        }
        if let Some(v) = env("EBB_PAYOUTS") {
            cfg.payouts = Some(matches!(v.as_str(), "1" | "true" | "yes"));
        }
        if let Some(v) = env("EBB_WATCH_PAYINS") {
            cfg.watch_payins = Some(matches!(v.as_str(), "1" | "true" | "yes"));
        }
        if let Some(v) = env("EBB_WEBHOOKS") {
            cfg.webhooks = Some(matches!(v.as_str(), "1" | "true" | "yes"));
        }
        if let Some(v) = env("EBB_WEBHOOK_ALLOW_PRIVATE_ADDRESSES") {
            cfg.webhook_allow_private_addresses = Some(matches!(v.as_str(), "1" | "true" | "yes"));
        }
        if let Some(v) = env("EBB_WEBHOOK_TIMEOUT_MS") {
            cfg.webhook_timeout_ms = Some(v.parse().context("EBB_WEBHOOK_TIMEOUT_MS must be a number")?);
        }
        if let Some(v) = env("EBB_WEBHOOK_RETRY_SCHEDULE_MS") {
            let waits: Result<Vec<u64>, _> = v.split(',').map(|w| w.trim().parse::<u64>()).collect();
            cfg.webhook_retry_schedule_ms =
                Some(waits.context("EBB_WEBHOOK_RETRY_SCHEDULE_MS must be comma-separated milliseconds")?);
        }
        if let Some(v) = env("EBB_SANDBOX_BLOCK_MS") {
            cfg.sandbox_block_ms = Some(v.parse().context("EBB_SANDBOX_BLOCK_MS must be a number")?);
        }
        if let Some(v) = env("EBB_PAYOUT_BUMP_AFTER_MS") {
            cfg.payout_bump_after_ms = Some(v.parse().context("EBB_PAYOUT_BUMP_AFTER_MS must be a number")?);
        }
        if let Some(v) = env("EBB_PAYOUT_INTERVAL_MS") {
            cfg.payout_interval_ms = Some(v.parse().context("EBB_PAYOUT_INTERVAL_MS must be a number")?);
        }
        if let Some(v) = env("EBB_PUBLIC_URL") {
            cfg.public_url = Some(v);
        }
        if let Some(v) = env("EBB_REFUND_LINK_TTL_S") {
            cfg.refund_link_ttl_s = Some(v.parse().context("EBB_REFUND_LINK_TTL_S must be a number")?);
        }
        if let Some(v) = env("EBB_SCREENING_DENYLIST_FILE") {
            cfg.screening_denylist_file = Some(v.into());
        }
        if let Some(v) = env("EBB_CLIENT_IP_HEADER") {
            cfg.client_ip_header = Some(v);
        }
        if let Some(v) = env("EBB_LOG_FORMAT") {
            cfg.log_format = Some(v);
        }
        if let Some(v) = env("EBB_MAX_CONNECTIONS") {
            cfg.max_connections = Some(v.parse().context("EBB_MAX_CONNECTIONS must be a number")?);
        }
        Ok(cfg)
    }

    pub fn registry(&self) -> anyhow::Result<TokenRegistry> {
        let mut tokens: Vec<Token> = TokenRegistry::cobo_defaults().iter().cloned().collect();
        for t in &self.tokens {
            let family = ChainFamily::parse(&t.family)
                .with_context(|| format!("token {}: family must be evm, tron or solana", t.id))?;
            ebb_core::Address::parse(family, &t.contract)
                .with_context(|| format!("token {}: contract address", t.id))?;
            tokens.retain(|x| x.id != t.id);
            tokens.push(Token {
                id: t.id.clone(),
                chain_id: t.chain_id.clone(),
                family,
                symbol: t.symbol.clone(),
                decimals: t.decimals,
                contract: t.contract.clone(),
            });
        }
        Ok(TokenRegistry::new(tokens)?)
    }

    pub fn workers(&self) -> WorkerSettings {
        let d = WorkerSettings::default();
        WorkerSettings {
            run_payouts: self.payouts.unwrap_or(d.run_payouts),
            run_watcher: self.watch_payins.unwrap_or(d.run_watcher),
            run_webhooks: self.webhooks.unwrap_or(d.run_webhooks),
            sandbox_block: self.sandbox_block_ms.map(Duration::from_millis).unwrap_or(d.sandbox_block),
            payout_interval: self.payout_interval_ms.map(Duration::from_millis).unwrap_or(d.payout_interval),
            bump_after: self.payout_bump_after_ms.map(Duration::from_millis).unwrap_or(d.bump_after),
        }
    }

    pub fn webhook_settings(&self) -> WebhookSettings {
        let d = WebhookSettings::default();
        WebhookSettings {
            timeout: self.webhook_timeout_ms.map(Duration::from_millis).unwrap_or(d.timeout),
            retry_schedule: match &self.webhook_retry_schedule_ms {
                Some(waits) => waits.iter().copied().map(Duration::from_millis).collect(),
                None => d.retry_schedule,
            },
            allow_private_addresses: self.webhook_allow_private_addresses.unwrap_or(false),
            ..d
        }
    }

    pub fn link_settings(&self) -> anyhow::Result<LinkSettings> {
        let d = LinkSettings::default();
        let denylist = match &self.screening_denylist_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading screening_denylist_file {}", path.display()))?;
                Denylist::parse(&text)
            }
            None => Denylist::default(),
        };
        let mut explorers = d.explorers.clone();
        for c in &self.chains {
            if c.kind.as_deref() == Some("sandbox") {
                explorers.remove(&c.chain_id);
            }
            match c.explorer_tx_url.as_deref() {
                Some("") => {
                    explorers.remove(&c.chain_id);
                }
                Some(url) => {
                    explorers.insert(c.chain_id.clone(), url.to_owned());
                }
                None => {}
            }
        }
        if let Some(url) = &self.public_url {
            let parsed = url::Url::parse(url).with_context(|| format!("public_url {url:?} is not a URL"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                bail!("public_url must be an http or https URL, not {url:?}");
            }
        }
        Ok(LinkSettings {
            public_url: self.public_url.clone().unwrap_or_default(),
            ttl: self.refund_link_ttl_s.map(Duration::from_secs).unwrap_or(d.ttl),
            denylist: std::sync::Arc::new(denylist),
            posts_per_link: self.refund_link_posts_per_link.unwrap_or(d.posts_per_link),
            posts_per_client: self.refund_link_posts_per_client.unwrap_or(d.posts_per_client),
            limit_window: self.refund_link_limit_window_s.map(Duration::from_secs).unwrap_or(d.limit_window),
            client_ip_header: self.client_ip_header.clone().filter(|h| !h.is_empty()),
            explorers,
        })
    }

    pub fn approval_policies(&self, registry: &TokenRegistry) -> anyhow::Result<Vec<ApprovalPolicy>> {
        let policies: Vec<ApprovalPolicy> =
            self.approval_policies.iter().map(|p| p.resolve(registry)).collect::<anyhow::Result<_>>()?;
        let mut ids: Vec<&str> = policies.iter().map(|p| p.policy_id.as_str()).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            bail!("two approval policies have the policy_id {:?}", w[0]);
        }
        Ok(policies)
    }

    /// The server key: `EBB_SERVER_KEY` (hex), else the configured file.
    pub fn server_key(&self) -> anyhow::Result<SigningKey> {
        if let Ok(hex_seed) = std::env::var("EBB_SERVER_KEY") {
            return parse_seed(hex_seed.trim()).context("EBB_SERVER_KEY");
        }
        match &self.server_key_file {
            Some(p) => read_key_file(p),
            None => bail!("no server key: set server_key_file in the config, EBB_SERVER_KEY_FILE or EBB_SERVER_KEY (generate one with `ebb keys generate`)"),
        }
    }

    /// Customer e-mail's settings, if `[mail]` (or `EBB_MAIL_SMTP_URL` and `EBB_MAIL_FROM`) names a server.
    pub fn mail_settings(&self) -> anyhow::Result<Option<MailSettings>> {
        self.mail.resolve()
    }

    /// The operator console's settings (`[console]`).
    pub fn console_settings(&self) -> anyhow::Result<ebb_app::operators::ConsoleSettings> {
        self.console.resolve()
    }

    pub fn settings(&self) -> anyhow::Result<Settings> {
        let listen = self.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        Ok(Settings {
            listen: listen.parse().with_context(|| format!("listen address {listen:?}"))?,
            database_url: self.database_url.clone().context(
                "no database: set database_url in the config or EBB_DATABASE_URL (sqlite://… or postgres://…)",
            )?,
            server_key: self.server_key()?,
            sandbox: self.sandbox.unwrap_or(false),
            max_connections: self.max_connections.unwrap_or(8),
            registry: self.registry()?,
            chains: self.chains.iter().map(ChainConfig::resolve).collect::<anyhow::Result<_>>()?,
            workers: self.workers(),
            webhooks: self.webhook_settings(),
            links: self.link_settings()?,
            approval_policies: self.approval_policies(&self.registry()?)?,
            screening: self.screening.resolve()?,
            prices: self.prices.resolve()?,
            mail: self.mail_settings()?,
            console: self.console.resolve()?,
        })
    }
}

pub fn parse_seed(hex_seed: &str) -> anyhow::Result<SigningKey> {
    let mut seed = [0u8; 32];
    hex::decode_to_slice(hex_seed, &mut seed).context("expected 64 hex digits (a 32-byte Ed25519 seed)")?;
    Ok(SigningKey::from_bytes(&seed))
}

pub fn read_key_file(path: &Path) -> anyhow::Result<SigningKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading key file {}", path.display()))?;
    parse_seed(text.trim()).with_context(|| format!("key file {}", path.display()))
}

/// Writes a new random key to `path` (mode 0600), or reads the one there.
pub fn read_or_create_key_file(path: &Path) -> anyhow::Result<SigningKey> {
    if path.exists() {
        return read_key_file(path);
    }
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    write_secret(path, &hex::encode(key.to_bytes()))?;
    Ok(key)
}

/// Writes a file only its owner can read.
pub fn write_secret(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).with_context(|| format!("writing {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(name: &str) -> FileConfig {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        toml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    #[test]
    fn the_example_configurations_parse_and_resolve() {
        let anvil = example("ebb.anvil.toml");
        assert_eq!(anvil.chains.len(), 1);
        assert!(anvil.registry().unwrap().get("ETH_USDT").is_some());
        let mainnet = example("ebb.mainnet.toml");
        let ids: Vec<&str> = mainnet.chains.iter().map(|c| c.chain_id.as_str()).collect();
        assert_eq!(ids, ["ETH", "ARBITRUM_ETH", "BASE_ETH", "MATIC", "BSC_BNB"]);
        // Every configured chain has tokens in the built-in registry.
        let registry = mainnet.registry().unwrap();
        for id in ids {
            assert!(registry.iter().any(|t| t.chain_id == id), "{id}");
        }
        let policies = mainnet.approval_policies(&registry).unwrap();
        assert_eq!(policies.len(), 2);
        assert_eq!(policies[1].channels, vec![ebb_core::approval::RefundChannel::Link]);
    }

    #[test]
    fn approval_policies_of_the_file_are_checked_at_start() {
        let registry = TokenRegistry::cobo_defaults();
        let parse = |extra: &str| -> anyhow::Result<Vec<ApprovalPolicy>> {
            let cfg: FileConfig = toml::from_str(&format!(
                "[[approval_policies]]\npolicy_id = \"p\"\nname = \"P\"\napprovals_required = 1\n{extra}"
            ))?;
            cfg.approval_policies(&registry)
        };
        assert_eq!(parse("min_amount = \"10.5\"").unwrap()[0].min_amount.as_deref(), Some("10.5"));
        for (extra, says) in [
            ("token_ids = [\"NOPE\"]", "NOPE"),
            ("sources = [\"Email\"]", "Email"),
            ("refund_types = [\"Anyone\"]", "Anyone"),
            ("min_amount = \"ten\"", "min_amount"),
            ("approver = \"x\"", "unknown field"),
            ("[[approval_policies]]\npolicy_id = \"p\"\nname = \"Q\"\napprovals_required = 2", "two approval policies"),
        ] {
            let err = format!("{:#}", parse(extra).unwrap_err());
            assert!(err.contains(says), "{extra}: {err}");
        }
        let cfg: FileConfig =
            toml::from_str("[[approval_policies]]\npolicy_id = \"p\"\nname = \"P\"\napprovals_required = 0").unwrap();
        assert!(format!("{:#}", cfg.approval_policies(&registry).unwrap_err()).contains("approvals_required"));
    }

    #[test]
    fn a_chain_needs_exactly_one_key_source_and_resolves_caps_in_wei() {
        let mut c = ChainConfig {
            chain_id: "ETH".into(),
            kind: None,
            rpc_url: Some("http://127.0.0.1:8545".into()),
            evm_chain_id: Some(1),
            confirmations: None,
            hot_wallet_key_file: None,
            hot_wallet_key_env: None,
            max_fee_per_gas_gwei: Some(7),
            rpc_timeout_ms: None,
            explorer_tx_url: None,
        };
        assert!(c.resolve().is_err(), "no key source");
        c.hot_wallet_key_env = Some("EBB_TEST_CONFIG_KEY_THAT_IS_NOT_SET".into());
        let err = c.resolve().unwrap_err().to_string();
        assert!(err.contains("EBB_TEST_CONFIG_KEY_THAT_IS_NOT_SET"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("hot.key");
        std::fs::write(&key, "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d\n").unwrap();
        c.hot_wallet_key_env = None;
        c.hot_wallet_key_file = Some(key);
        match c.resolve().unwrap() {
            ChainSetting::Evm(e) => {
                assert_eq!(e.max_fee_per_gas_cap, 7_000_000_000);
                assert_eq!(e.confirmations, 12);
                assert!(!format!("{e:?}").contains("59c6"), "the key never appears in Debug output");
            }
            other => panic!("{other:?}"),
        }
    }
}
