//! Pay-in orders: create one (with its own receiving address), expire it, read them.

use ebb_core::address::derive_deposit_address;
use ebb_core::clock::now_s;
use ebb_core::order::developer_fee_at_rate;
use ebb_core::rate::{fiat_decimals, Rate, Rounding};
use ebb_core::{Amount, OrderStatus, Token};
use ebb_store::merchants as merchants_repo;
use ebb_store::orders::{self as repo, OrderFilter, OrderRow, LATE_PAYMENT_WATCH_S};
use ebb_store::page::{Page, PageRequest};
use ebb_store::{ids, StoreError};

use crate::{Actor, AppError, AppResult, Engine};

/// A request for an order, typed.
#[derive(Debug, Clone)]
pub struct OrderRequest {
    pub merchant_id: String,
    pub merchant_order_code: Option<String>,
    pub psp_order_code: String,
    pub token: Token,
    pub price: OrderPrice,
    /// How much less than `payable_amount` still completes the order.
    pub amount_tolerance: Amount,
    pub expires_in_s: i64,
}

/// What an order costs.
#[derive(Debug, Clone)]
pub enum OrderPrice {
    /// Priced in its token: `payable`, of which `fee` is the PSP's developer fee.
    Token { payable: Amount, fee: Amount },
    /// Priced in a fiat currency (Cobo's `pricing_currency`; amounts in its minor units): the price
    /// plus the developer fee `fee`. The payable amount is `payable` when given, else converted at a
    /// fresh rate, rounded up.
    Fiat { currency: String, price: Amount, fee: Amount, payable: Option<Amount> },
}

/// An order's amounts in its token and how they were priced.
struct Priced {
    payable: Amount,
    fee: Amount,
    pricing_currency: Option<String>,
    pricing_amount: Option<String>,
    exchange_rate: String,
    rate_source: Option<String>,
    rate_at: Option<i64>,
}

/// The digits after the point of an order's own rate (price ÷ payable amount), rounded down.
const ORDER_RATE_SCALE: u32 = 12;

/// Turns an order's price into token amounts: a fiat price at a fresh rate (payable rounded up, the fee
/// down, so the fee never exceeds its share), or at the rate the price and the given payable amount make.
async fn price(engine: &Engine, token: &Token, price: OrderPrice) -> AppResult<Priced> {
    let (currency, price, fee, payable) = match price {
        OrderPrice::Token { payable, fee } => {
            return Ok(Priced {
                payable,
                fee,
                pricing_currency: None,
                pricing_amount: None,
                exchange_rate: "1".into(),
                rate_source: None,
                rate_at: None,
            })
        }
        OrderPrice::Fiat { currency, price, fee, payable } => (currency, price, fee, payable),
    };
    let decimals = fiat_decimals(&currency)
        .ok_or_else(|| AppError::Invalid(format!("{currency:?} is not a supported pricing currency")))?;
    let too_large = || AppError::InvalidAmount("the order's amounts are too large to convert".into());
    let total = price.checked_add(fee).ok_or_else(too_large)?;
    let (payable, fee_token, rate, source, at) = match payable {
        None => {
            let quote = engine.quote(token, &currency).await?;
            let payable = quote
                .rate
                .token_for_fiat(total.base_units(), decimals, token.decimals, Rounding::Up)
                .ok_or_else(too_large)?;
            let fee = quote
                .rate
                .token_for_fiat(fee.base_units(), decimals, token.decimals, Rounding::Down)
                .ok_or_else(too_large)?;
            (payable, fee, quote.rate, quote.source, quote.at)
        }
        Some(payable) => {
            let rate = Rate::of_price(total.base_units(), decimals, payable, token.decimals, ORDER_RATE_SCALE)
                .ok_or_else(|| AppError::InvalidAmount("the price and payable amount make no rate".into()))?;
            let fee = ebb_core::rate::share(payable, fee.base_units(), total.base_units()).ok_or_else(too_large)?;
            (payable, fee, rate, "order".to_owned(), now_s())
        }
    };
    if payable.is_zero() {
        return Err(AppError::InvalidAmount(format!("the price is worth less than one base unit of {}", token.id)));
    }
    Ok(Priced {
        payable,
        fee: fee_token,
        pricing_currency: Some(currency),
        pricing_amount: Some(price.to_decimal_string(decimals)),
        exchange_rate: rate.to_decimal_string(),
        rate_source: Some(source),
        rate_at: Some(at),
    })
}

/// Creates an order with its own receiving address.
pub async fn create(engine: &Engine, actor: &Actor, req: OrderRequest) -> AppResult<OrderRow> {
    let row = prepare(engine, actor, req).await?;
    let order = engine.store.write(move |tx| Box::pin(async move { insert_prepared(tx, row).await })).await?;
    Ok(order)
}

/// Checks an order request and prices it (a rate from the network, never inside a transaction): the
/// row [`insert_prepared`] stores. A merchant actor may give the PSP a larger developer fee than the
/// merchant's rate, never a smaller one.
pub(crate) async fn prepare(engine: &Engine, actor: &Actor, req: OrderRequest) -> AppResult<OrderRow> {
    actor.check_merchant(&req.merchant_id)?;
    let priced = price(engine, &req.token, req.price.clone()).await?;
    if priced.fee > priced.payable {
        return Err(AppError::InvalidAmount("the fee must not exceed the payable amount".into()));
    }
    if req.amount_tolerance >= priced.payable {
        return Err(AppError::InvalidAmount("the amount tolerance must be less than the payable amount".into()));
    }
    if actor.merchant.is_some() {
        let merchant = engine
            .store
            .merchant(&req.merchant_id)
            .await?
            .ok_or_else(|| AppError::not_found("merchant", &req.merchant_id))?;
        let least = developer_fee_at_rate(priced.payable, &merchant.developer_fee_rate).ok_or_else(|| {
            AppError::InvalidAmount("the payable amount is too large for the merchant's developer fee rate".into())
        })?;
        if priced.fee < least {
            actor.require_psp_for(&format!(
                "set a fee below the merchant's developer_fee_rate ({} × payable amount = {})",
                merchant.developer_fee_rate,
                least.to_decimal_string(req.token.decimals)
            ))?;
        }
    }
    let now = now_s();
    let order_id = ids::new_id("O");
    let receive_address = derive_deposit_address(req.token.family, &engine.deposit_seed()[..], &order_id).into_string();
    Ok(OrderRow {
        order_id,
        merchant_id: req.merchant_id,
        merchant_order_code: req.merchant_order_code,
        psp_order_code: req.psp_order_code,
        pricing_currency: priced.pricing_currency,
        pricing_amount: priced.pricing_amount,
        token_id: req.token.id,
        chain_id: req.token.chain_id,
        payable_amount: priced.payable,
        fee_amount: priced.fee,
        fee_credited: Amount::ZERO,
        exchange_rate: priced.exchange_rate,
        rate_source: priced.rate_source,
        rate_at: priced.rate_at,
        amount_tolerance: req.amount_tolerance,
        receive_address,
        status: OrderStatus::Pending,
        received_amount: Amount::ZERO,
        refunded_amount: Amount::ZERO,
        refunded_pricing: Amount::ZERO,
        expired_at: now + req.expires_in_s,
        created_at: now,
        updated_at: now,
        // The address stays watched for late payments after the order's end.
        watch_until: now + req.expires_in_s + LATE_PAYMENT_WATCH_S,
        transactions: Vec::new(),
    })
}

/// Stores a prepared order and raises its event, inside the caller's transaction.
pub(crate) async fn insert_prepared(tx: &mut ebb_store::Tx<'_>, row: OrderRow) -> Result<OrderRow, StoreError> {
    if !merchants_repo::exists(tx, &row.merchant_id).await? {
        return Err(StoreError::NotFound { what: "merchant", id: row.merchant_id });
    }
    if !repo::insert_order(tx, &row).await? {
        return Err(StoreError::AlreadyExists(format!("an order with psp_order_code {:?}", row.psp_order_code)));
    }
    repo::raise_order_changed(tx, &row.order_id).await?;
    repo::lock_order(tx, &row.order_id).await
}

/// An order the actor may see.
pub async fn get(engine: &Engine, actor: &Actor, order_id: &str) -> AppResult<OrderRow> {
    engine
        .store
        .order(order_id)
        .await?
        .filter(|o| actor.sees(Some(&o.merchant_id)))
        .ok_or_else(|| AppError::not_found("order", order_id))
}

/// Orders the actor may see; a merchant actor's filter is confined to its merchant.
pub async fn list(
    engine: &Engine,
    actor: &Actor,
    mut filter: OrderFilter,
    page: &PageRequest,
) -> AppResult<Page<OrderRow>> {
    filter.merchant_id = actor.merchant_filter(filter.merchant_id)?;
    Ok(engine.store.list_orders(&filter, page).await?)
}

/// Expires an order that has taken no payment yet (Cobo's `update_payment_order` with `expired: true`).
pub async fn expire(engine: &Engine, actor: &Actor, order_id: &str) -> AppResult<OrderRow> {
    get(engine, actor, order_id).await?;
    let id = order_id.to_owned();
    engine
        .store
        .write(move |tx| {
            Box::pin(async move {
                let order = repo::lock_order(tx, &id).await?;
                if !order.status.can_move_to(OrderStatus::Expired) {
                    return Err(StoreError::InvalidState(format!("order {id} is {} and cannot expire", order.status)));
                }
                repo::move_status(tx, &id, order.status, OrderStatus::Expired, now_s()).await?;
                repo::raise_order_changed(tx, &id).await
            })
        })
        .await?;
    engine.store.order(order_id).await?.ok_or_else(|| AppError::not_found("order", order_id))
}
