//! API keys: the client public keys that may sign requests, PSP-wide or confined to one merchant,
//! each an operator's or an approver's. Managed by the operator (the CLI, `ebb dev`), never over the
//! API.

use ebb_core::clock::now_s;
use ebb_store::keys::{self as repo, ApiKeyRow, KeyRole};
use ebb_store::{merchants, Store, StoreError};

use crate::{AppError, AppResult};

/// Registers a client public key (lower-case hex); refuses one that exists already, and an approver's
/// key confined to a merchant (a merchant never approves its own refunds).
pub async fn add(
    store: &Store,
    public_key: &str,
    name: &str,
    merchant_id: Option<&str>,
    role: KeyRole,
) -> AppResult<ApiKeyRow> {
    if role == KeyRole::Approver && merchant_id.is_some() {
        return Err(AppError::Invalid("an approver's key is PSP-wide: a merchant's key never approves refunds".into()));
    }
    let key = ApiKeyRow {
        api_key: public_key.to_ascii_lowercase(),
        name: name.to_owned(),
        merchant_id: merchant_id.map(str::to_owned),
        role,
        created_at: now_s(),
        revoked_at: None,
    };
    let added = store
        .write(move |tx| {
            Box::pin(async move {
                if let Some(m) = &key.merchant_id {
                    if !merchants::exists(tx, m).await? {
                        return Err(StoreError::NotFound { what: "merchant", id: m.clone() });
                    }
                }
                if !repo::insert(tx, &key).await? {
                    return Err(StoreError::AlreadyExists(format!("api key {}", key.api_key)));
                }
                Ok(key)
            })
        })
        .await?;
    Ok(added)
}

/// Revokes a key: its requests are refused from then on (within the API's key cache lifetime).
/// Revoking twice is harmless; an unknown key is not found.
pub async fn revoke(store: &Store, public_key: &str) -> AppResult<()> {
    let api_key = public_key.to_ascii_lowercase();
    store
        .write(move |tx| {
            Box::pin(async move {
                if !repo::mark_revoked(tx, &api_key, now_s()).await? && !repo::exists(tx, &api_key).await? {
                    return Err(StoreError::NotFound { what: "api key", id: api_key });
                }
                Ok(())
            })
        })
        .await?;
    Ok(())
}
