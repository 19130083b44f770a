//! Refunds: create one, set or change its address, cancel it, and read them.

use ebb_core::refund::check_request;
use ebb_core::{Address, Amount, RefundSource, Token};
use ebb_store::page::{Page, PageRequest};
use ebb_store::refunds::{Created, NewRefund, RefundFilter, RefundRow};

use crate::{Actor, AppError, AppResult, Engine};

/// A request to refund `amount` of `token`, typed; what the surface parsed from its wire format.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    /// Makes the request idempotent within the actor's scope.
    pub request_id: String,
    pub merchant_id: Option<String>,
    /// The paid order refunded, if any: it bounds the amount and decides the merchant.
    pub order_id: Option<String>,
    pub token: Token,
    pub amount: Amount,
    /// `None`: the address comes later ([`set_address`]).
    pub to_address: Option<Address>,
    pub source: RefundSource,
    /// The developer fee charged to the merchant; only on a merchant-paid refund.
    pub merchant_fee: Option<Amount>,
}

/// The checks every refund request passes, whichever way it comes (API or refund link): who may
/// spend which balance, for which merchant, and the request's own rules. Returns the merchant the
/// refund is for, as far as the request says (an order may still decide it).
pub(crate) fn admit(
    actor: &Actor,
    source: RefundSource,
    merchant_id: Option<String>,
    amount: Amount,
    merchant_fee: Option<Amount>,
) -> AppResult<Option<String>> {
    if source == RefundSource::Psp {
        actor.require_psp_for("spend the PSP's balance (a refund of type Psp)")?;
    }
    if let Some(m) = &merchant_id {
        actor.check_merchant(m)?;
    }
    let merchant_id = merchant_id.or_else(|| actor.merchant.clone());
    check_request(source, amount, merchant_fee).map_err(|e| match e {
        ebb_core::refund::RefundRuleError::FeeNotBelowAmount => AppError::InvalidAmount(e.to_string()),
        _ => AppError::Invalid(e.to_string()),
    })?;
    Ok(merchant_id)
}

/// Creates a refund and reserves its funds, or returns the one an identical earlier request made.
pub async fn create(engine: &Engine, actor: &Actor, req: RefundRequest) -> AppResult<Created> {
    let merchant_id = admit(actor, req.source, req.merchant_id, req.amount, req.merchant_fee)?;
    if let Some(address) = &req.to_address {
        engine.check_destination(address).await?;
    }
    let new = NewRefund {
        request_id: req.request_id,
        idem_scope: actor.idem_scope(),
        merchant_id,
        order_id: req.order_id,
        token: req.token,
        amount: req.amount,
        to_address: req.to_address,
        source: req.source,
        merchant_fee: req.merchant_fee,
        initiator: actor.initiator.clone(),
        via_link: false,
    };
    Ok(engine.store.create_refund(new).await?)
}

/// A refund the actor may see, with its transactions.
pub async fn get(engine: &Engine, actor: &Actor, refund_id: &str) -> AppResult<RefundRow> {
    engine
        .store
        .refund(refund_id, actor.merchant.as_deref())
        .await?
        .ok_or_else(|| AppError::not_found("refund", refund_id))
}

/// Refunds the actor may see; a merchant actor's filter is confined to its merchant.
pub async fn list(
    engine: &Engine,
    actor: &Actor,
    mut filter: RefundFilter,
    page: &PageRequest,
) -> AppResult<Page<RefundRow>> {
    filter.merchant_id = actor.merchant_filter(filter.merchant_id)?;
    Ok(engine.store.list_refunds(&filter, page).await?)
}

/// Sets the receiving address of a refund in `PendingConfirmation` (it becomes `Pending`) or changes
/// it while `Pending`. `parse` turns the text into an address for the refund's token (the surface's
/// parser, which names its own field in errors).
pub async fn set_address<E>(
    engine: &Engine,
    actor: &Actor,
    refund_id: &str,
    parse: impl FnOnce(&Token) -> Result<Address, E>,
) -> Result<RefundRow, E>
where
    E: From<AppError>,
{
    let scope = actor.merchant.as_deref();
    let current = get(engine, actor, refund_id).await?;
    let token = engine.registry.get(&current.token_id).ok_or_else(|| {
        AppError::Store(ebb_store::StoreError::Internal(format!("unknown token {}", current.token_id)))
    })?;
    let address = parse(token)?;
    engine.check_destination(&address).await?;
    Ok(engine.store.set_refund_address(refund_id, scope, address).await.map_err(AppError::from)?)
}

/// Cancels a refund that has not started paying out; its reserved funds go back where they came from.
pub async fn cancel(engine: &Engine, actor: &Actor, refund_id: &str) -> AppResult<RefundRow> {
    Ok(engine.store.cancel_refund(refund_id, actor.merchant.as_deref()).await?)
}
