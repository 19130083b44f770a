//! `ebb keys`: the API keys clients sign with, the KYT refund API's clients, merchants' CoinGate API
//! tokens, and the server key.

use anyhow::Context;
use clap::Subcommand;
use ebb_store::keys::KeyRole;

use super::{open_store, server_key, DbArgs};

#[derive(Subcommand)]
pub(super) enum KeysCommand {
    /// Register a client's Ed25519 public key (hex), PSP-wide or restricted to one merchant.
    Add {
        #[arg(long)]
        public_key: String,
        #[arg(long)]
        merchant: Option<String>,
        #[arg(long, default_value = "")]
        name: String,
        /// `operator` (does what its scope allows) or `approver` (reads, approves and rejects refunds,
        /// changes nothing else; PSP-wide only).
        #[arg(long, default_value = "operator", value_parser = parse_role)]
        role: KeyRole,
    },
    /// Make a client of the KYT refund API (`/v1.0`): prints its id and secret, which is shown this
    /// once (only its hash is kept). The client exchanges them for bearer tokens.
    AddClient {
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Give a merchant an API token for CoinGate's API (`/coingate`, `Authorization: Token …`): prints
    /// its id (`KT…`, to revoke it by) and the token, which is shown this once (only its hash is kept).
    AddToken {
        #[arg(long)]
        merchant: String,
        #[arg(long, default_value = "")]
        name: String,
        /// How the callbacks of the orders and refunds made with this token are sent: form
        /// (application/x-www-form-urlencoded, CoinGate's default) or json.
        #[arg(long, default_value = "form", value_parser = ["form", "json"])]
        callback_format: String,
    },
    /// The API keys, then the KYT refund API's clients, then the CoinGate API's tokens.
    List,
    /// Revoke an API key (its public key), a KYT client (its id, `KC…`) or a CoinGate API token (its
    /// id, `KT…`): its requests are refused from then on, and a client's tokens stop working.
    Revoke {
        #[arg(value_name = "PUBLIC_KEY_OR_CLIENT_ID")]
        public_key: String,
    },
    /// Print the public key that verifies ebb's responses (the SDK's `resp_pubkey`).
    ServerPublic,
    /// Print a new random Ed25519 key pair (seed and public key, hex) for a client or the server.
    Generate,
}

pub(super) async fn keys(command: KeysCommand, db: &DbArgs) -> anyhow::Result<()> {
    match command {
        KeysCommand::Generate => {
            let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
            println!("secret  {}", hex::encode(key.to_bytes()));
            println!("public  {}", hex::encode(key.verifying_key().to_bytes()));
            Ok(())
        }
        KeysCommand::ServerPublic => {
            let key = server_key(db)?;
            println!("{}", hex::encode(key.verifying_key().to_bytes()));
            Ok(())
        }
        KeysCommand::Add { public_key, merchant, name, role } => {
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(&public_key, &mut bytes).context("--public-key must be 64 hex digits")?;
            ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .context("--public-key is not a valid Ed25519 public key")?;
            let store = open_store(db).await?;
            let k = ebb_app::keys::add(&store, &public_key, &name, merchant.as_deref(), role).await?;
            println!(
                "added {} ({}, {})",
                k.api_key,
                k.merchant_id.as_deref().map(|m| format!("merchant {m}")).unwrap_or_else(|| "PSP-wide".into()),
                k.role
            );
            Ok(())
        }
        KeysCommand::AddClient { name } => {
            let store = open_store(db).await?;
            let c = ebb_app::kyt::add_client(&store, &name).await?;
            println!("client_id      {}", c.client_id);
            println!("client_secret  {}", c.client_secret);
            println!("(the secret is shown this once; POST /v1.0/auth/getToken exchanges the pair for a bearer token)");
            Ok(())
        }
        KeysCommand::AddToken { merchant, name, callback_format } => {
            let store = open_store(db).await?;
            let format = match callback_format.as_str() {
                "json" => ebb_store::webhooks::BodyFormat::CoinGateJson,
                _ => ebb_store::webhooks::BodyFormat::CoinGateForm,
            };
            let t = ebb_app::coingate::add_token(&store, &merchant, &name, format).await?;
            println!("token_id   {}", t.token_id);
            println!("api_token  {}", t.token);
            println!("(the token is shown this once; send it as Authorization: Token <api_token> to /coingate/v2/…)");
            Ok(())
        }
        KeysCommand::List => {
            let store = open_store(db).await?;
            for k in store.list_api_keys().await? {
                println!(
                    "{}  {}  {}  {}  {}",
                    k.api_key,
                    k.merchant_id.as_deref().unwrap_or("PSP-wide"),
                    k.role,
                    if k.revoked_at.is_some() { "revoked" } else { "active" },
                    k.name
                );
            }
            for c in store.list_api_clients().await? {
                let status = if c.revoked_at.is_some() { "revoked" } else { "active" };
                println!("{}  KYT refund API client  {status}  {}", c.client_id, c.name);
            }
            for t in store.list_merchant_tokens().await? {
                let status = if t.revoked_at.is_some() { "revoked" } else { "active" };
                let callbacks = t.callback_format.as_str().trim_start_matches("coingate_");
                println!(
                    "{}  {}  CoinGate API token  {status}  callbacks {callbacks}  {}",
                    t.token_id, t.merchant_id, t.name
                );
            }
            Ok(())
        }
        KeysCommand::Revoke { public_key } if public_key.starts_with("KC") => {
            let store = open_store(db).await?;
            ebb_app::kyt::revoke_client(&store, &public_key).await?;
            println!("revoked {public_key}");
            Ok(())
        }
        KeysCommand::Revoke { public_key } if public_key.starts_with("KT") => {
            let store = open_store(db).await?;
            ebb_app::coingate::revoke_token(&store, &public_key).await?;
            println!("revoked {public_key}");
            Ok(())
        }
        KeysCommand::Revoke { public_key } => {
            let store = open_store(db).await?;
            ebb_app::keys::revoke(&store, &public_key).await?;
            println!("revoked {}", public_key.to_ascii_lowercase());
            Ok(())
        }
    }
}

fn parse_role(s: &str) -> Result<KeyRole, String> {
    KeyRole::parse(s).ok_or_else(|| format!("--role must be operator or approver, not {s:?}"))
}
