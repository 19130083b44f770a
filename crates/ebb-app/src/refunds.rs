//! Refunds: create one, set or change its address, cancel it, and read them.

use ebb_core::approval::RefundChannel;
use ebb_core::clock::now_s;
use ebb_core::rate::{Rate, Rounding};
use ebb_core::refund::{
    check_request, refund_merchant, OrderFacts, RefundEvent, RefundPartyError, RequestId, CANCELLED_REASON,
};
use ebb_core::screening::Screening;
use ebb_core::{Address, Amount, RefundSource, RefundStatus, Token};
use ebb_store::approvals as approvals_repo;
use ebb_store::coingate::CoinGateRefundExtra;
use ebb_store::mails::{self, MailKind};
use ebb_store::orders::lock_order;
use ebb_store::orders::OrderRow;
use ebb_store::page::{Page, PageRequest};
use ebb_store::refunds::{self as repo, IdempotencyScope, RefundFilter, RefundPricing, RefundRow};
use ebb_store::{ids, StoreError, Tx};

use crate::{approvals, Actor, AppError, AppResult, Engine};

/// A request to refund `amount` of `token`, typed; what the surface parsed from its wire format.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    /// Makes the request idempotent within the actor's scope.
    pub request_id: RequestId,
    pub merchant_id: Option<String>,
    /// The paid order refunded, if any: it bounds the amount and decides the merchant.
    pub order_id: Option<String>,
    pub token: Token,
    /// In the token; ignored (and computed) when `price` is given.
    pub amount: Amount,
    /// Asked in the order's pricing currency instead: converted at a fresh rate when the refund is made.
    pub price: Option<FiatAmount>,
    /// `None`: the address comes later ([`set_address`]).
    pub to_address: Option<Address>,
    pub source: RefundSource,
    /// The developer fee charged to the merchant; only on a merchant-paid refund.
    pub merchant_fee: Option<Amount>,
}

/// An amount of a fiat currency, in its minor units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiatAmount {
    pub currency: String,
    pub amount: Amount,
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
    if source == RefundSource::Held {
        return Err(AppError::Invalid(
            "held funds are paid out by a disposition (POST /v2/compliance/funds/disposition/refund or …/isolate)"
                .into(),
        ));
    }
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

/// A refund request as it is stored: typed, with who made it and under which idempotency scope.
#[derive(Debug, Clone)]
pub(crate) struct NewRefund {
    /// As admitted: its merchant is the one the actor may refund for.
    pub request: RefundRequest,
    /// Who may see this `request_id`; a merchant's scope also limits the refund to that merchant.
    pub idem_scope: IdempotencyScope,
    pub initiator: String,
    /// Made for a refund link: the address comes through the link. A link request and a refund request
    /// never count as the same request, whatever their fields.
    pub via_link: bool,
    /// The screening of `request.to_address` (not part of the request's fingerprint).
    pub screening: Option<Screening>,
    /// A refund asked in fiat: what it was converted at.
    pub pricing: Option<RefundPricing>,
    /// What CoinGate's API adds to a refund made through it, stored in the same transaction.
    pub coingate: Option<CoinGateRefundExtra>,
    /// The customer ebb e-mails about this refund.
    pub customer: Option<CustomerContact>,
}

/// A customer ebb e-mails about a refund (its merchant e-mails its customers): every status change from
/// its creation on, and, for a refund whose address the customer confirms, first the refund link.
#[derive(Debug, Clone)]
pub(crate) struct CustomerContact {
    pub email: String,
    /// `en` or `zh`: the merchant's choice.
    pub locale: String,
    /// The refund has no address yet: the customer confirms this one (or gives another) through a
    /// refund link made with it, whose token is e-mailed.
    pub confirm: Option<AddressToConfirm>,
}

#[derive(Debug, Clone)]
pub(crate) struct AddressToConfirm {
    pub address: Address,
    pub token: crate::links::LinkToken,
    pub ttl_ms: i64,
}

impl NewRefund {
    /// What makes two requests "the same request": every field the client chose, amounts in base
    /// units (so "1.5" and "1.50" are the same), not the initiator.
    fn fingerprint(&self) -> String {
        let r = &self.request;
        // Asked in fiat, the request is the fiat amount: the same request at a moved rate is the same.
        let amount = match &self.pricing {
            Some(p) if p.asked => format!("{}:{}", p.currency, p.amount),
            _ => r.amount.to_string(),
        };
        format!(
            "{}|{}|{}|{}|{}|{}|{}|{}",
            if self.via_link { "link-v1" } else { "v1" },
            r.merchant_id.as_deref().unwrap_or(""),
            r.order_id.as_deref().unwrap_or(""),
            r.token.id,
            amount,
            r.to_address.as_ref().map(Address::as_str).unwrap_or(""),
            r.source.as_str(),
            r.merchant_fee.map(|f| f.to_string()).unwrap_or_default(),
        )
    }
}

/// Whether a create made a new refund or found the one made earlier by the same request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    New(RefundRow),
    Existing(RefundRow),
}

impl Created {
    pub fn into_inner(self) -> RefundRow {
        match self {
            Created::New(r) | Created::Existing(r) => r,
        }
    }
}

/// Refuses a refund for a merchant that does not exist. Merchants are never deleted, so this may run
/// before, and outside, the write: it keeps a read off the serial SQLite writer and out of
/// PostgreSQL's lock-holding span. The foreign key on `refunds.merchant_id` backs it.
pub(crate) async fn check_merchant_exists(engine: &Engine, merchant_id: Option<&str>) -> AppResult<()> {
    match merchant_id {
        Some(m) if !engine.store.merchant_exists(m).await? => Err(AppError::not_found("merchant", m)),
        _ => Ok(()),
    }
}

/// Creates a refund and reserves its funds, or returns the one an identical earlier request made.
pub async fn create(engine: &Engine, actor: &Actor, req: RefundRequest) -> AppResult<Created> {
    actor.require_operator_for("create refunds")?;
    create_with(engine, actor, req, None, None).await
}

/// [`create`], storing what CoinGate's API adds to the refund with it, and e-mailing the customer.
pub(crate) async fn create_with(
    engine: &Engine,
    actor: &Actor,
    mut req: RefundRequest,
    coingate: Option<CoinGateRefundExtra>,
    customer: Option<CustomerContact>,
) -> AppResult<Created> {
    let pricing = match req.price.take() {
        Some(ask) => {
            let (amount, pricing) = convert_ask(engine, actor, &req, ask).await?;
            req.amount = amount;
            Some(pricing)
        }
        None => None,
    };
    req.merchant_id = admit(actor, req.source, req.merchant_id, req.amount, req.merchant_fee)?;
    let screening = match &req.to_address {
        Some(address) => {
            engine.check_destination(address).await?;
            Some(engine.screen_destination(&req.token.chain_id, address).await?)
        }
        None => None,
    };
    check_merchant_exists(engine, req.merchant_id.as_deref()).await?;
    let new = NewRefund {
        request: req,
        idem_scope: actor.idem_scope(),
        initiator: actor.initiator.clone(),
        via_link: customer.as_ref().is_some_and(|c| c.confirm.is_some()),
        screening,
        pricing,
        coingate,
        customer,
    };
    let trail = actor.audit.clone();
    let decimals = new.request.token.decimals;
    let created = engine
        .store
        .write(move |tx| {
            Box::pin(async move {
                let created = insert_refund(tx, &new).await?;
                if let Created::New(r) = &created {
                    let detail = format!("{} {}", r.amount.to_decimal_string(decimals), r.token_id);
                    crate::operators::audit_in(tx, trail.as_ref(), "refund.create", &r.refund_id, &detail).await?;
                }
                Ok(created)
            })
        })
        .await?;
    Ok(match created {
        // A refund found by its request_id may have payout legs by now; the transaction read only its row.
        Created::Existing(r) => Created::Existing(engine.store.with_transactions(r).await?),
        new => new,
    })
}

/// A refund asked in its order's pricing currency, in the token: converted at a fresh rate, rounded
/// down (nobody is refunded more than asked).
async fn convert_ask(
    engine: &Engine,
    actor: &Actor,
    req: &RefundRequest,
    ask: FiatAmount,
) -> AppResult<(Amount, RefundPricing)> {
    let order_id = req.order_id.as_deref().ok_or_else(|| {
        AppError::Invalid("a refund asked in a currency names its order (order_id), whose price is in it".into())
    })?;
    let order = crate::orders::get(engine, actor, order_id).await?;
    let decimals = match order.fiat_price() {
        Some((c, decimals, _)) if c == ask.currency => decimals,
        Some((c, _, _)) => {
            return Err(AppError::Invalid(format!("order {order_id} is priced in {c}, not {}", ask.currency)))
        }
        None => return Err(AppError::Invalid(format!("order {order_id} has no fiat price"))),
    };
    let quote = engine.quote(&req.token, &ask.currency).await?;
    let amount = quote
        .rate
        .token_for_fiat(ask.amount.base_units(), decimals, req.token.decimals, Rounding::Down)
        .filter(|a| !a.is_zero())
        .ok_or_else(|| {
            AppError::InvalidAmount(format!(
                "{} {} is worth no whole base unit of {} at {}",
                ask.amount.to_decimal_string(decimals),
                ask.currency,
                req.token.id,
                quote.rate
            ))
        })?;
    let pricing = RefundPricing {
        currency: ask.currency,
        amount: ask.amount,
        asked: true,
        rate: quote.rate.to_decimal_string(),
        rate_source: quote.source,
        rate_at: quote.at,
    };
    Ok((amount, pricing))
}

/// What a refund asked in the token counts for against a fiat-priced order: the amount at the order's
/// own rate, rounded up (rounding never lets refunds pass the price).
fn counted_at_order_rate(
    order: &OrderRow,
    amount: Amount,
    token_decimals: u32,
) -> Result<Option<RefundPricing>, StoreError> {
    let Some((currency, decimals, _)) = order.fiat_price() else { return Ok(None) };
    let rate = Rate::parse(&order.exchange_rate)
        .map_err(|_| StoreError::Internal(format!("order {}: stored exchange rate", order.order_id)))?;
    let counted = rate
        .fiat_for_token(amount, token_decimals, decimals, Rounding::Up)
        .ok_or_else(|| StoreError::Invalid("the refund is too large to count against the order's price".into()))?;
    Ok(Some(RefundPricing {
        currency: currency.to_owned(),
        amount: Amount::from_base_units(counted),
        asked: false,
        rate: order.exchange_rate.clone(),
        rate_source: "order".into(),
        rate_at: order.rate_at.unwrap_or(order.created_at),
    }))
}

/// Inserts a refund and reserves its funds, or finds the one an identical earlier request made; inside
/// the caller's transaction (a refund's, or a link's with its refund).
pub(crate) async fn insert_refund(tx: &mut Tx<'_>, new: &NewRefund) -> Result<Created, StoreError> {
    let fingerprint = new.fingerprint();
    let req = &new.request;
    // Lock the order first: concurrent refunds of one order queue here.
    let order = match &req.order_id {
        Some(order_id) => Some(lock_order(tx, order_id).await?),
        None => None,
    };
    let facts = order.as_ref().map(|o| OrderFacts {
        order_id: &o.order_id,
        merchant_id: &o.merchant_id,
        token_id: &o.token_id,
    });
    let scope = match &new.idem_scope {
        IdempotencyScope::Merchant(m) => Some(m.as_str()),
        IdempotencyScope::Psp => None,
    };
    let merchant_id =
        refund_merchant(req.merchant_id.as_deref(), facts, &req.token.id, scope, req.source).map_err(|e| match e {
            RefundPartyError::OutsideScope { merchant_id } => {
                StoreError::NotFound { what: "merchant", id: merchant_id }
            }
            other => StoreError::Invalid(other.to_string()),
        })?;
    let now = now_s();
    let mut refund = RefundRow {
        refund_id: ids::new_id("R"),
        request_id: req.request_id.as_str().to_owned(),
        order_id: req.order_id.clone(),
        merchant_id,
        token_id: req.token.id.clone(),
        chain_id: req.token.chain_id.clone(),
        amount: req.amount,
        to_address: req.to_address.as_ref().map(|a| a.as_str().to_owned()).unwrap_or_default(),
        status: if req.to_address.is_some() { RefundStatus::Pending } else { RefundStatus::PendingConfirmation },
        failed_reason: None,
        hold_reason: None,
        refund_type: req.source,
        charge_merchant_fee: req.merchant_fee.is_some(),
        merchant_fee_amount: req.merchant_fee,
        initiator: new.initiator.clone(),
        channel: if new.via_link { RefundChannel::Link } else { RefundChannel::Api },
        approval: None,
        screening: new.screening.clone(),
        pricing: match &new.pricing {
            Some(p) => Some(p.clone()),
            None => match &order {
                Some(o) => counted_at_order_rate(o, req.amount, req.token.decimals)?,
                None => None,
            },
        },
        created_at: now,
        updated_at: now,
        transactions: Vec::new(),
    };
    if req.to_address.is_some() {
        refund.approval = approvals::on_destination(tx, &refund, req.token.decimals).await?;
    }
    if !repo::insert_row(tx, &refund, &new.idem_scope, &fingerprint).await? {
        let (existing, stored_fingerprint) =
            repo::find_by_request(tx, &new.idem_scope, req.request_id.as_str()).await?;
        if stored_fingerprint != fingerprint {
            return Err(StoreError::IdempotencyConflict { request_id: req.request_id.to_string() });
        }
        return Ok(Created::Existing(existing));
    }
    repo::adjust_order_refunded(tx, &refund, true).await.map_err(|e| match e {
        // The store counts in base units; the caller reads the token's decimals.
        StoreError::OverRefund { order_id, token_id, refundable } => StoreError::OverRefund {
            refundable: Amount::from_base_units_str(&refundable)
                .map_or(refundable, |a| a.to_decimal_string(req.token.decimals)),
            order_id,
            token_id,
        },
        other => other,
    })?;
    repo::post_reservation(tx, &refund, false, now).await?;
    if let Some(extra) = &new.coingate {
        ebb_store::coingate::insert_refund_extra(tx, &refund.refund_id, extra).await?;
        // Before the refund's first event, so its callback URL hears of its creation too.
        if let (Some(url), Some(format)) = (&extra.callback_url, extra.callback_format) {
            let endpoint = ebb_store::webhooks::callback_endpoint(tx, url, format, now).await?;
            ebb_store::webhooks::subscribe_callback(
                tx,
                &refund.refund_id,
                ebb_store::events::REFUND_STATUS_UPDATED,
                &endpoint,
            )
            .await?;
        }
    }
    if let Some(customer) = &new.customer {
        // Before the first event too: the customer hears of every status from the first on (the mail
        // worker skips the ones with nothing to tell, such as waiting for the address).
        let refund_id = &refund.refund_id;
        let event = ebb_store::events::REFUND_STATUS_UPDATED;
        mails::subscribe(tx, refund_id, event, &customer.email, &customer.locale).await?;
        if let Some(confirm) = &customer.confirm {
            let now_ms = ebb_core::clock::now_ms();
            crate::links::insert_link(tx, refund_id, confirm.address.as_str(), &confirm.token, now_ms, confirm.ttl_ms)
                .await?;
            let kind = MailKind::AddressConfirmation;
            let token = confirm.token.as_str();
            mails::insert_link_mail(tx, kind, refund_id, &customer.email, &customer.locale, token, now_ms).await?;
        }
    }
    repo::raise_refund_created(tx, &refund).await?;
    Ok(Created::New(refund))
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
    let decimals = token.decimals;
    engine.check_destination(&address).await?;
    let screening = engine.screen_destination(&token.chain_id, &address).await?;
    let (refund_id, scope) = (refund_id.to_owned(), scope.map(str::to_owned));
    let r = engine
        .store
        .write(move |tx| {
            Box::pin(async move {
                let (mut r, next) = lock_for(tx, &refund_id, scope.as_deref(), RefundEvent::AddressSet).await?;
                let now = now_s();
                r.to_address = address.into_string();
                r.screening = Some(screening);
                let approval = approvals::on_destination(tx, &r, decimals).await?;
                if let Some(a) = &approval {
                    approvals_repo::set_approval(tx, &r.refund_id, a, now).await?;
                }
                if let Some(s) = &r.screening {
                    ebb_store::screening::set_refund_screening(tx, &r.refund_id, s).await?;
                }
                repo::compare_and_set(tx, &r, next, None, Some(&r.to_address), now).await?;
                if approval.is_some() {
                    repo::raise_approval_changed(tx, &r.refund_id).await?;
                }
                r.status = next;
                r.approval = approval;
                r.updated_at = now;
                Ok(r)
            })
        })
        .await
        .map_err(AppError::from)?;
    Ok(engine.store.with_transactions(r).await.map_err(AppError::from)?)
}

/// Cancels a refund that has not started paying out; its reserved funds go back where they came from.
pub async fn cancel(engine: &Engine, actor: &Actor, refund_id: &str) -> AppResult<RefundRow> {
    actor.require_operator_for("cancel refunds")?;
    let (refund_id, scope, trail) = (refund_id.to_owned(), actor.merchant.clone(), actor.audit.clone());
    let r = engine
        .store
        .write(move |tx| {
            Box::pin(async move {
                let (mut r, next) = lock_for(tx, &refund_id, scope.as_deref(), RefundEvent::Cancelled).await?;
                crate::operators::audit_in(tx, trail.as_ref(), "refund.cancel", &refund_id, "").await?;
                let now = now_s();
                repo::compare_and_set(tx, &r, next, Some(CANCELLED_REASON), None, now).await?;
                repo::adjust_order_refunded(tx, &r, false).await?;
                repo::post_reservation(tx, &r, true, now).await?;
                r.status = next;
                r.failed_reason = Some(CANCELLED_REASON.to_owned());
                r.updated_at = now;
                Ok(r)
            })
        })
        .await?;
    Ok(engine.store.with_transactions(r).await?)
}

/// Locks a refund the actor may see and finds the status `event` moves it to; a refund that cannot
/// take the event any more is an invalid state, said in terms of what was asked.
async fn lock_for(
    tx: &mut Tx<'_>,
    refund_id: &str,
    scope: Option<&str>,
    event: RefundEvent,
) -> Result<(RefundRow, RefundStatus), StoreError> {
    let r = repo::lock_refund(tx, refund_id, scope).await?;
    let cannot = match event {
        RefundEvent::AddressSet => "its address can no longer change",
        RefundEvent::Cancelled => "can no longer be cancelled",
        _ => "cannot take this change",
    };
    let next = r
        .status
        .apply(event)
        .map_err(|_| StoreError::InvalidState(format!("refund {refund_id} is {} and {cannot}", r.status)))?;
    Ok((r, next))
}
