//! Settings: an optional `ebb.toml`, overridden by `EBB_*` environment variables. `ebb dev` needs
//! neither. Secrets (the server's signing key) come from a file or the environment, never the database.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use ebb_core::{ChainFamily, Token, TokenRegistry};
use ed25519_dalek::SigningKey;
use serde::Deserialize;

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
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

impl FileConfig {
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let mut cfg = match path {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).with_context(|| format!("reading config file {}", p.display()))?;
                toml::from_str(&text).with_context(|| format!("parsing config file {}", p.display()))?
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
        if let Some(v) = env("EBB_SERVER_KEY_FILE") {
            cfg.server_key_file = Some(v.into());
        }
        if let Some(v) = env("EBB_SANDBOX") {
            cfg.sandbox = Some(matches!(v.as_str(), "1" | "true" | "yes"));
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
