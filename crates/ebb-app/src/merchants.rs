//! Merchants: created and read by the PSP; a merchant may rename itself, only the PSP sets its
//! developer fee rate.

use ebb_store::merchants::{MerchantRow, NewMerchant};
use ebb_store::page::{Page, PageRequest};
use ebb_store::Store;

use crate::{Actor, AppError, AppResult};

pub async fn create(store: &Store, actor: &Actor, new: NewMerchant) -> AppResult<MerchantRow> {
    actor.require_psp_for("make this call")?;
    Ok(store.create_merchant(new).await?)
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
    Ok(store.update_merchant(merchant_id, name, developer_fee_rate).await?)
}
