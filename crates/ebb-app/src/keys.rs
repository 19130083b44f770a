//! API keys: the client public keys that may sign requests, PSP-wide or confined to one merchant.
//! Managed by the operator (the CLI, `ebb dev`), never over the API.

use ebb_store::keys::ApiKeyRow;
use ebb_store::Store;

use crate::AppResult;

/// Registers a client public key (lower-case hex); refuses one that exists already.
pub async fn add(store: &Store, public_key: &str, name: &str, merchant_id: Option<&str>) -> AppResult<ApiKeyRow> {
    Ok(store.add_api_key(public_key, name, merchant_id).await?)
}

/// Revokes a key: its requests are refused from then on (within the API's key cache lifetime).
pub async fn revoke(store: &Store, public_key: &str) -> AppResult<()> {
    Ok(store.revoke_api_key(public_key).await?)
}
