//! `ebb dev`: zero configuration. A data directory holds the SQLite database, the server key and the
//! demo credentials (`dev.json`), created on first start and reused after.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ebb_store::merchants::NewMerchant;
use ebb_store::Store;
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::config::{read_or_create_key_file, write_secret};

/// What `ebb dev` prints and writes to `DIR/dev.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevInfo {
    pub base_url: String,
    pub api_key: String,
    pub api_secret: String,
    pub server_public_key: String,
    pub merchant_id: String,
}

pub fn server_key_path(dir: &Path) -> PathBuf {
    dir.join("server_key.hex")
}

pub fn dev_json_path(dir: &Path) -> PathBuf {
    dir.join("dev.json")
}

pub fn server_key(dir: &Path) -> anyhow::Result<SigningKey> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating data directory {}", dir.display()))?;
    read_or_create_key_file(&server_key_path(dir))
}

/// Makes sure the demo merchant and the PSP-wide demo API key exist; returns the credentials.
pub async fn ensure_demo(
    store: &Store,
    dir: &Path,
    server_key: &SigningKey,
    base_url: &str,
) -> anyhow::Result<DevInfo> {
    let path = dev_json_path(dir);
    let previous: Option<DevInfo> = std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok());
    let mut info = match previous {
        Some(p)
            if store.api_key(&p.api_key).await?.is_some_and(|k| k.revoked_at.is_none())
                && store.merchant(&p.merchant_id).await?.is_some() =>
        {
            p
        }
        _ => {
            let merchant = store
                .create_merchant(NewMerchant {
                    name: "Demo Merchant".into(),
                    wallet_id: String::new(),
                    developer_fee_rate: "0".into(),
                    wallet_setup: "Default".into(),
                })
                .await?;
            let client = SigningKey::generate(&mut rand::rngs::OsRng);
            let api_key = hex::encode(client.verifying_key().to_bytes());
            store.add_api_key(&api_key, "ebb dev (PSP-wide)", None).await?;
            DevInfo {
                base_url: String::new(),
                api_key,
                api_secret: hex::encode(client.to_bytes()),
                server_public_key: String::new(),
                merchant_id: merchant.merchant_id,
            }
        }
    };
    info.base_url = base_url.to_owned();
    info.server_public_key = hex::encode(server_key.verifying_key().to_bytes());
    write_secret(&path, &serde_json::to_string_pretty(&info)?)?;
    Ok(info)
}
