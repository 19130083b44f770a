//! The use cases only CoinGate's dialect has: merchants' API tokens, and CoinGate orders, which are
//! priced before the customer picks the token they pay in. A CoinGate order becomes an ordinary ebb
//! order at checkout (made by [`crate::orders`]' own steps, in the transaction that links it), so
//! payments, the watcher, balances, refunds and webhooks are the same as for a Cobo order.

use ebb_core::clock::now_s;
use ebb_core::rate::fiat_decimals;
use ebb_core::refund::RequestId;
use ebb_core::{Address, Amount, RefundSource, Token};
use ebb_store::coingate::{
    self as repo, CoinGateOrderFilter, CoinGateOrderRow, CoinGateRefundExtra, CoinGateRefundFilter, CoinGateRefundRef,
    MerchantTokenRow,
};
use ebb_store::orders::OrderRow;
use ebb_store::refunds::RefundRow;
use ebb_store::webhooks::{self as webhooks_repo, BodyFormat};
use ebb_store::{events, ids, Store, StoreError};

use crate::links::LinkToken;
use crate::orders::{OrderPrice, OrderRequest};
use crate::refunds::{AddressToConfirm, Created, CustomerContact, FiatAmount, RefundRequest};
use crate::{secrets, Actor, AppError, AppResult, Engine};

/// A token as `ebb keys add-token` shows it, once.
pub struct IssuedToken {
    pub token_id: String,
    pub token: String,
}

/// Gives a merchant a new API token (`Authorization: Token …` on the CoinGate API), whose orders and
/// refunds call their `callback_url` in `callback_format` (`CoinGateForm` or `CoinGateJson`).
pub async fn add_token(
    store: &Store,
    merchant_id: &str,
    name: &str,
    callback_format: BodyFormat,
) -> AppResult<IssuedToken> {
    if !callback_format.is_callback() {
        return Err(AppError::Invalid("a CoinGate token's callbacks are form-encoded or JSON".into()));
    }
    let token = secrets::generate();
    let row = MerchantTokenRow {
        token_id: ids::new_id("KT"),
        token_hash: secrets::hash(&token),
        merchant_id: merchant_id.to_owned(),
        name: name.to_owned(),
        callback_format,
        created_at: now_s(),
        revoked_at: None,
    };
    let token_id = row.token_id.clone();
    store
        .write(move |tx| {
            Box::pin(async move {
                if !ebb_store::merchants::exists(tx, &row.merchant_id).await? {
                    return Err(StoreError::NotFound { what: "merchant", id: row.merchant_id });
                }
                repo::insert_token(tx, &row).await
            })
        })
        .await?;
    Ok(IssuedToken { token_id, token })
}

/// Revokes a token (`KT…`): whether it was active until now; not found if there is none.
pub async fn revoke_token(store: &Store, token_id: &str) -> AppResult<bool> {
    let id = token_id.to_owned();
    let changed = store.write(move |tx| Box::pin(async move { repo::revoke_token(tx, &id, now_s()).await })).await?;
    changed.ok_or_else(|| AppError::not_found("token", token_id))
}

/// The active token a request presents, if any.
pub async fn token_of(store: &Store, token: &str) -> AppResult<Option<MerchantTokenRow>> {
    if !secrets::well_formed(token) {
        return Ok(None);
    }
    Ok(store.merchant_token(&secrets::hash(token)).await?)
}

/// A CoinGate order request, typed.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub merchant_order_id: Option<String>,
    /// A canonical decimal in `price_currency`: a fiat currency, or a token symbol.
    pub price_amount: String,
    pub price_currency: String,
    pub receive_currency: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub callback_url: Option<String>,
    /// How `callback_url` is called: the format of the token making the order.
    pub callback_format: BodyFormat,
    pub cancel_url: Option<String>,
    pub success_url: Option<String>,
    pub token: Option<String>,
    pub purchaser_email: Option<String>,
}

/// How long a checked-out order waits for its payment.
pub const CHECKOUT_EXPIRY_S: i64 = 1800;

/// Stores a CoinGate order for the actor's merchant; nothing is payable until checkout.
pub async fn create_order(engine: &Engine, actor: &Actor, req: NewOrder) -> AppResult<CoinGateOrderRow> {
    let merchant_id = actor
        .merchant
        .clone()
        .ok_or_else(|| AppError::Forbidden("a CoinGate order belongs to the merchant whose token made it".into()))?;
    let row = CoinGateOrderRow {
        seq: 0,
        merchant_id,
        merchant_order_id: req.merchant_order_id,
        price_amount: req.price_amount,
        price_currency: req.price_currency,
        receive_currency: req.receive_currency,
        title: req.title,
        description: req.description,
        callback_url: req.callback_url,
        callback_format: req.callback_format,
        cancel_url: req.cancel_url,
        success_url: req.success_url,
        token: req.token,
        purchaser_email: req.purchaser_email,
        order_id: None,
        created_at: now_s(),
    };
    Ok(engine.store.write(move |tx| Box::pin(async move { repo::insert_order(tx, &row).await })).await?)
}

/// A CoinGate order the actor may see, with its ebb order once checked out.
pub async fn get_order(engine: &Engine, actor: &Actor, seq: i64) -> AppResult<(CoinGateOrderRow, Option<OrderRow>)> {
    let order = engine
        .store
        .coingate_order(seq)
        .await?
        .filter(|o| actor.sees(Some(&o.merchant_id)))
        .ok_or_else(|| AppError::not_found("order", &seq.to_string()))?;
    let paid_by = match &order.order_id {
        Some(id) => engine.store.order(id).await?,
        None => None,
    };
    Ok((order, paid_by))
}

/// A page of the actor's merchant's CoinGate orders with their ebb orders, and the total.
pub async fn list_orders(
    engine: &Engine,
    actor: &Actor,
    mut filter: CoinGateOrderFilter,
) -> AppResult<(Vec<(CoinGateOrderRow, Option<OrderRow>)>, i64)> {
    filter.merchant_id =
        actor.merchant.clone().ok_or_else(|| AppError::Forbidden("CoinGate orders are listed per merchant".into()))?;
    let (rows, total) = engine.store.list_coingate_orders(&filter).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let paid_by = match &row.order_id {
            Some(id) => engine.store.order(id).await?,
            None => None,
        };
        out.push((row, paid_by));
    }
    Ok((out, total))
}

/// Checks an order out in `token`: makes its ebb order (priced from the CoinGate order's price, at a
/// fresh rate for a fiat price) and links it, in one transaction. Checking out again in the same token
/// returns the same order; in another token it is refused.
pub async fn checkout(
    engine: &Engine,
    actor: &Actor,
    seq: i64,
    token: Token,
    purchaser_email: Option<String>,
) -> AppResult<(CoinGateOrderRow, OrderRow)> {
    let (order, paid_by) = get_order(engine, actor, seq).await?;
    if let Some(existing) = paid_by {
        return match existing.token_id == token.id {
            true => Ok((order, existing)),
            false => {
                Err(AppError::InvalidState(format!("order {seq} is already checked out in {}", existing.token_id)))
            }
        };
    }
    let price = if order.price_currency == token.symbol {
        let payable = Amount::parse_positive(&order.price_amount, token.decimals, token.decimals)
            .map_err(|e| AppError::InvalidAmount(format!("price_amount in {}: {e}", token.symbol)))?;
        OrderPrice::Token { payable, fee: Amount::ZERO }
    } else {
        let decimals = fiat_decimals(&order.price_currency).ok_or_else(|| {
            AppError::Invalid(format!(
                "an order priced in {} is paid in {} only",
                order.price_currency, order.price_currency
            ))
        })?;
        let price = Amount::parse_positive(&order.price_amount, decimals, decimals)
            .map_err(|e| AppError::Store(StoreError::Internal(format!("stored price_amount: {e}"))))?;
        OrderPrice::Fiat { currency: order.price_currency.clone(), price, fee: Amount::ZERO, payable: None }
    };
    let request = OrderRequest {
        merchant_id: order.merchant_id.clone(),
        merchant_order_code: order.merchant_order_id.clone(),
        psp_order_code: format!("coingate-{seq}"),
        token,
        price,
        amount_tolerance: Amount::ZERO,
        expires_in_s: CHECKOUT_EXPIRY_S,
    };
    let prepared = crate::orders::prepare(engine, actor, request).await?;
    let (order, paid_by) = engine
        .store
        .write(move |tx| {
            Box::pin(async move {
                let mut cg = repo::lock_order(tx, seq).await?;
                if cg.order_id.is_some() {
                    return Err(StoreError::InvalidState(format!("order {seq} was checked out meanwhile")));
                }
                if let Some(email) = purchaser_email {
                    cg.purchaser_email = Some(email);
                }
                let made = crate::orders::insert_prepared(tx, prepared).await?;
                repo::set_order(tx, seq, &made.order_id, cg.purchaser_email.as_deref()).await?;
                // After the ebb order's first event: CoinGate calls back from the first status change on.
                if let Some(url) = &cg.callback_url {
                    let endpoint = webhooks_repo::callback_endpoint(tx, url, cg.callback_format, now_s()).await?;
                    webhooks_repo::subscribe_callback(tx, &made.order_id, events::ORDER_STATUS_UPDATED, &endpoint)
                        .await?;
                }
                cg.order_id = Some(made.order_id.clone());
                Ok((cg, made))
            })
        })
        .await?;
    Ok((order, paid_by))
}

/// A refund of a CoinGate order through CoinGate's API, typed.
#[derive(Debug, Clone)]
pub struct NewRefund {
    /// In the order's price currency (its minor units for a fiat currency, else the token's base units).
    pub amount: Amount,
    pub address: Address,
    pub extra: CoinGateRefundExtra,
    /// The customer confirms `address` through a refund link e-mailed to `extra.email` before it is
    /// paid (CoinGate's default; `skip_user_address_confirmation` turns it off).
    pub confirm_by_mail: bool,
}

/// The token a checked-out CoinGate order was paid in: what its refunds are paid in.
pub async fn paid_token(engine: &Engine, actor: &Actor, seq: i64) -> AppResult<(CoinGateOrderRow, OrderRow, Token)> {
    let (order, paid_by) = get_order(engine, actor, seq).await?;
    let paid_by = paid_by
        .ok_or_else(|| AppError::InvalidState(format!("order {seq} was never checked out, so nothing was paid")))?;
    let token = engine.registry().get(&paid_by.token_id).cloned().ok_or_else(|| {
        AppError::Store(StoreError::Internal(format!(
            "order {} is in unknown token {}",
            paid_by.order_id, paid_by.token_id
        )))
    })?;
    Ok((order, paid_by, token))
}

/// Refunds part of a paid CoinGate order, from the merchant's balance, in the token it was paid in: an
/// amount in a fiat price currency is converted at a fresh rate (docs/PRICES.md), and both of the
/// order's guards apply. The refund is an ordinary ebb refund (screening, approvals, payout), with the
/// API's fields stored in its transaction.
pub async fn create_refund(
    engine: &Engine,
    actor: &Actor,
    seq: i64,
    req: NewRefund,
) -> AppResult<(RefundRow, CoinGateRefundRef)> {
    let (order, paid_by, token) = paid_token(engine, actor, seq).await?;
    let mut extra = req.extra;
    let locale = match &extra.email {
        Some(_) => engine.customer_mail_of(&order.merchant_id).await?,
        None => None,
    };
    let confirm = req.confirm_by_mail && extra.email.is_some();
    if confirm && locale.is_none() {
        return Err(AppError::Invalid(
            "ebb does not e-mail this merchant's customers, so the customer cannot confirm the address: send \
             skip_user_address_confirmation=true, or have the operator turn customer e-mail on \
             (ebb mail customers M… --lang en)"
                .into(),
        ));
    }
    let customer = match (&extra.email, locale) {
        (Some(email), Some(locale)) => Some(CustomerContact {
            email: email.clone(),
            locale,
            confirm: confirm.then(|| AddressToConfirm {
                address: req.address.clone(),
                token: LinkToken::generate(),
                ttl_ms: i64::try_from(engine.link_ttl().as_millis()).unwrap_or(i64::MAX),
            }),
        }),
        _ => None,
    };
    if confirm {
        extra.address_to_confirm = Some(req.address.as_str().to_owned());
    }
    let (amount, price) = match fiat_decimals(&order.price_currency) {
        Some(_) => (Amount::ZERO, Some(FiatAmount { currency: order.price_currency.clone(), amount: req.amount })),
        None => (req.amount, None),
    };
    let request_id = RequestId::parse(&ids::new_id("coingate_"))
        .map_err(|e| AppError::Store(StoreError::Internal(format!("a generated request id: {e}"))))?;
    let request = RefundRequest {
        request_id,
        merchant_id: Some(order.merchant_id.clone()),
        order_id: Some(paid_by.order_id.clone()),
        token,
        amount,
        price,
        to_address: (!confirm).then_some(req.address),
        source: RefundSource::Merchant,
        merchant_fee: None,
    };
    let refund = match crate::refunds::create_with(engine, actor, request, Some(extra), customer).await? {
        Created::New(r) | Created::Existing(r) => r,
    };
    let reference = engine.store.coingate_refund_of(&refund.refund_id).await?.ok_or_else(|| {
        AppError::Store(StoreError::Internal(format!("refund {} has no CoinGate order", refund.refund_id)))
    })?;
    Ok((refund, reference))
}

/// A refund of one of the actor's merchant's CoinGate orders, by its integer id.
pub async fn get_refund(engine: &Engine, actor: &Actor, seq: i64) -> AppResult<(RefundRow, CoinGateRefundRef)> {
    let not_found = || AppError::not_found("refund", &seq.to_string());
    let reference = engine.store.coingate_refund(seq).await?.ok_or_else(not_found)?;
    let refund = engine.store.refund(&reference.refund_id, actor.merchant.as_deref()).await?.ok_or_else(not_found)?;
    Ok((refund, reference))
}

/// A page of the refunds of the actor's merchant's CoinGate orders, and the total.
pub async fn list_refunds(
    engine: &Engine,
    actor: &Actor,
    mut filter: CoinGateRefundFilter,
) -> AppResult<(Vec<(RefundRow, CoinGateRefundRef)>, i64)> {
    filter.merchant_id =
        actor.merchant.clone().ok_or_else(|| AppError::Forbidden("CoinGate refunds are listed per merchant".into()))?;
    let (refs, total) = engine.store.list_coingate_refunds(&filter).await?;
    let mut out = Vec::with_capacity(refs.len());
    for r in refs {
        if let Some(refund) = engine.store.refund(&r.refund_id, actor.merchant.as_deref()).await? {
            out.push((refund, r));
        }
    }
    Ok((out, total))
}
