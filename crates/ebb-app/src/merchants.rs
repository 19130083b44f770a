//! Merchants: created and read by the PSP; a merchant may rename itself, only the PSP sets its
//! developer fee rate.

use ebb_core::clock::now_s;
use ebb_store::ids;
use ebb_store::merchants::{self as repo, MerchantRow};
use ebb_store::page::{Page, PageRequest};
use ebb_store::Store;

use crate::{Actor, AppError, AppResult};

/// A new merchant, as its creator gives it.
#[derive(Debug, Clone)]
pub struct NewMerchant {
    pub name: String,
    pub wallet_id: String,
    /// A decimal fraction (at most four decimals), as the surface checked it.
    pub developer_fee_rate: String,
    pub wallet_setup: String,
}

pub async fn create(store: &Store, actor: &Actor, new: NewMerchant) -> AppResult<MerchantRow> {
    actor.require_psp_for("make this call")?;
    let merchant = store
        .write(move |tx| {
            Box::pin(async move {
                let now = now_s();
                let row = MerchantRow {
                    merchant_id: ids::new_id("M"),
                    name: new.name,
                    wallet_id: new.wallet_id,
                    developer_fee_rate: new.developer_fee_rate,
                    wallet_setup: new.wallet_setup,
                    created_at: now,
                    updated_at: now,
                };
                repo::insert(tx, &row).await?;
                Ok(row)
            })
        })
        .await?;
    Ok(merchant)
}

pub async fn get(store: &Store, actor: &Actor, merchant_id: &str) -> AppResult<MerchantRow> {
    actor.check_merchant(merchant_id)?;
    store.merchant(merchant_id).await?.ok_or_else(|| AppError::not_found("merchant", merchant_id))
}

/// The merchants the actor may see whose name contains `keyword` (or whose id it is).
pub async fn list(
    store: &Store,
    actor: &Actor,
    keyword: Option<&str>,
    page: &PageRequest,
) -> AppResult<Page<MerchantRow>> {
    Ok(store.list_merchants(actor.merchant.as_deref(), keyword, page).await?)
}

/// Renames a merchant and/or sets its developer fee rate (a decimal fraction, PSP only).
pub async fn update(
    store: &Store,
    actor: &Actor,
    merchant_id: &str,
    name: Option<String>,
    developer_fee_rate: Option<String>,
) -> AppResult<MerchantRow> {
    actor.check_merchant(merchant_id)?;
    if developer_fee_rate.is_some() {
        actor.require_psp_for("set developer_fee_rate")?;
    }
    let id = merchant_id.to_owned();
    let updated = store
        .write(move |tx| Box::pin(async move { repo::update(tx, &id, name, developer_fee_rate, now_s()).await }))
        .await?;
    updated.ok_or_else(|| AppError::not_found("merchant", merchant_id))
}
