//! Refund links: a one-time page where the customer gives the address a refund pays out to. Made by
//! the PSP or a merchant (`create`), opened and submitted by the customer (`open`, `submit`).

use ebb_core::clock::{now_ms, now_s};
use ebb_core::refund::{RefundEvent, RequestId};
use ebb_core::{Address, Amount, RefundSource, RefundStatus, Token, TxStatus};
use ebb_store::ids;
use ebb_store::links::{self as repo, LinkDisplay, LinkRow, LinkStatus, LinkView, Refusal};
use ebb_store::mails::{self, MailKind};
use ebb_store::refunds::{self as refunds_repo, RefundRow};
use ebb_store::StoreError;

use crate::refunds::{insert_refund, Created, NewRefund, RefundRequest};
use crate::{Actor, AppError, AppResult, Engine};

/// The secret in a refund link's URL. Only its hash ([`LinkToken::hash`]) is stored, so a link
/// cannot be shown again, and a database leak opens no link.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkToken(String);

impl LinkToken {
    /// 32 random bytes, URL-safe base64 (43 characters).
    pub fn generate() -> Self {
        LinkToken(crate::secrets::generate())
    }

    /// A token of the shape ebb hands out; anything else is refused before touching the database.
    pub fn parse(s: &str) -> Option<Self> {
        crate::secrets::well_formed(s).then(|| LinkToken(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the database keeps of a token: hex SHA-256.
    pub fn hash(&self) -> String {
        crate::secrets::hash(&self.0)
    }
}

impl std::fmt::Debug for LinkToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkToken(…)")
    }
}

/// The payment a link refunds: named by its order or by one of its pay-in transactions.
#[derive(Debug, Clone)]
pub enum RefundedPayment {
    Order(String),
    Transaction(String),
}

/// A payment found and checked for refunding: the order it belongs to, its token, and the address
/// that paid it (pre-filled on the page; `""` when unknown).
#[derive(Debug, Clone)]
pub struct PaymentToRefund {
    pub order_id: String,
    pub token: Token,
    pub payer: String,
    pub source_tx_id: Option<String>,
}

/// Finds the payment a link is to refund, as `actor` may see it; its token tells the surface how to
/// read the amounts of the rest of the request.
pub async fn find_payment(engine: &Engine, actor: &Actor, payment: RefundedPayment) -> AppResult<PaymentToRefund> {
    let store = &engine.store;
    let (order_id, token_id, payer, source_tx_id) = match payment {
        RefundedPayment::Order(order_id) => {
            let order = store.order(&order_id).await?.filter(|o| actor.sees(Some(&o.merchant_id)));
            let order = order.ok_or_else(|| AppError::not_found("order", &order_id))?;
            let payer = store.original_payer(&order_id).await?.unwrap_or_default();
            (order_id, order.token_id, payer, None)
        }
        RefundedPayment::Transaction(tx_id) => {
            let tx =
                store.payin_transaction(&tx_id).await?.ok_or_else(|| AppError::not_found("transaction", &tx_id))?;
            if tx.status != TxStatus::Completed {
                return Err(AppError::InvalidState(format!(
                    "transaction {tx_id} is {}; only a completed pay-in can be refunded",
                    tx.status
                )));
            }
            let order_id = tx.order_id.clone().ok_or_else(|| AppError::not_found("transaction", &tx_id))?;
            if actor.merchant.is_some() {
                let order = store.order(&order_id).await?;
                if order.is_none_or(|o| !actor.sees(Some(&o.merchant_id))) {
                    return Err(AppError::not_found("transaction", &tx_id));
                }
            }
            (order_id, tx.token_id, tx.from_address, Some(tx_id))
        }
    };
    let token = engine
        .registry
        .get(&token_id)
        .cloned()
        .ok_or_else(|| AppError::Store(ebb_store::StoreError::Internal(format!("unknown token {token_id}"))))?;
    Ok(PaymentToRefund { order_id, token, payer, source_tx_id })
}

/// A request for a refund link, typed.
#[derive(Debug, Clone)]
pub struct LinkRequest {
    /// `None`: a fresh one is made (a link request need not be idempotent).
    pub request_id: Option<RequestId>,
    pub payment: PaymentToRefund,
    pub amount: Amount,
    pub source: RefundSource,
    pub merchant_id: Option<String>,
    pub merchant_fee: Option<Amount>,
    pub display: LinkDisplay,
    /// E-mail the link, and then the refund's status changes, to this customer (the order's merchant
    /// must e-mail its customers).
    pub customer_email: Option<String>,
}

/// A link made: its token (shown once) and the refund it collects an address for.
#[derive(Debug, Clone)]
pub struct CreatedLink {
    pub token: LinkToken,
    pub refund: RefundRow,
    pub link: LinkRow,
}

/// Creates a refund (funds reserved, no address yet) and its first link, in one transaction; the same
/// request again makes a new link for the same refund and the earlier links die. A refund whose address
/// was submitted but whose payout has not started goes back to `AddressPending`; once its payout has
/// started it cannot be re-linked.
pub async fn create(engine: &Engine, actor: &Actor, req: LinkRequest) -> AppResult<CreatedLink> {
    actor.require_operator_for("create refund links")?;
    if req.source == RefundSource::Merchant && req.merchant_id.is_none() {
        return Err(AppError::Invalid(
            "a link refund paid by the merchant (refund source Merchant) names the merchant".into(),
        ));
    }
    let merchant_id = crate::refunds::admit(actor, req.source, req.merchant_id, req.amount, req.merchant_fee)?;
    let request_id = match req.request_id {
        Some(id) => id,
        // Generated ids are short alphanumerics, which always pass.
        None => RequestId::parse(&ids::new_id("link_")).map_err(internal)?,
    };
    let token = LinkToken::generate();
    let ttl_ms = i64::try_from(engine.link_ttl.as_millis()).unwrap_or(i64::MAX);
    crate::refunds::check_merchant_exists(engine, merchant_id.as_deref()).await?;
    let customer = match req.customer_email {
        Some(email) => {
            let order = engine
                .store
                .order(&req.payment.order_id)
                .await?
                .ok_or_else(|| AppError::not_found("order", &req.payment.order_id))?;
            let locale = engine.customer_mail_of(&order.merchant_id).await?.ok_or_else(|| {
                AppError::Invalid(format!(
                    "ebb does not e-mail the customers of merchant {} (ebb mail customers {} --lang en): \
                     leave out customer_email and hand the link over yourself",
                    order.merchant_id, order.merchant_id
                ))
            })?;
            Some((email, locale, token.as_str().to_owned()))
        }
        None => None,
    };
    let request = RefundRequest {
        request_id,
        merchant_id,
        order_id: Some(req.payment.order_id),
        token: req.payment.token,
        amount: req.amount,
        price: None,
        to_address: None,
        source: req.source,
        merchant_fee: req.merchant_fee,
    };
    let new = NewRefund {
        request,
        idem_scope: actor.idem_scope(),
        initiator: actor.initiator.clone(),
        via_link: true,
        screening: None,
        pricing: None,
        coingate: None,
        customer: None,
    };
    let (token_hash, payer, source_tx_id, display) =
        (token.hash(), req.payment.payer, req.payment.source_tx_id, req.display);
    let trail = actor.audit.clone();
    let (refund, link) = engine
        .store
        .write(move |tx| {
            Box::pin(async move {
                let now = now_ms();
                let refund = match insert_refund(tx, &new).await? {
                    Created::New(r) => r,
                    // The same link request again: a new link for the same refund.
                    Created::Existing(r) => repo::relink(tx, r, now).await?,
                };
                let link = new_link(&refund.refund_id, payer, source_tx_id, display, now, ttl_ms);
                repo::insert_link(tx, &link, &token_hash).await?;
                let detail =
                    format!("{} {}", refund.amount.to_decimal_string(new.request.token.decimals), refund.token_id);
                crate::operators::audit_in(tx, trail.as_ref(), "link.create", &refund.refund_id, &detail).await?;
                if let Some((email, locale, token)) = &customer {
                    let event = ebb_store::events::REFUND_STATUS_UPDATED;
                    mails::subscribe(tx, &refund.refund_id, event, email, locale).await?;
                    mails::insert_link_mail(tx, MailKind::RefundLink, &refund.refund_id, email, locale, token, now)
                        .await?;
                }
                Ok((refund, link))
            })
        })
        .await?;
    let refund = engine.store.refund(&refund.refund_id, None).await?.unwrap_or(refund);
    Ok(CreatedLink { token, refund, link })
}

fn new_link(
    refund_id: &str,
    default_address: String,
    source_tx_id: Option<String>,
    display: LinkDisplay,
    now_ms: i64,
    ttl_ms: i64,
) -> LinkRow {
    LinkRow {
        link_id: ids::new_id("L"),
        refund_id: refund_id.to_owned(),
        status: LinkStatus::Active,
        default_address,
        source_tx_id,
        display,
        created_at_ms: now_ms,
        expires_at_ms: now_ms.saturating_add(ttl_ms),
        opened_at_ms: None,
        submitted_at_ms: None,
        submitted_address: None,
    }
}

/// Inserts a link for a refund just made without an address, `default_address` pre-filled, inside the
/// refund's transaction (a refund whose customer confirms its address by e-mail).
pub(crate) async fn insert_link(
    tx: &mut ebb_store::Tx<'_>,
    refund_id: &str,
    default_address: &str,
    token: &LinkToken,
    now_ms: i64,
    ttl_ms: i64,
) -> Result<LinkRow, StoreError> {
    let link = new_link(refund_id, default_address.to_owned(), None, LinkDisplay::default(), now_ms, ttl_ms);
    repo::insert_link(tx, &link, &token.hash()).await?;
    Ok(link)
}

/// The link a token opens, with its refund, without changing anything; `None` for an unknown token.
pub async fn view(engine: &Engine, token: &LinkToken) -> AppResult<Option<LinkView>> {
    Ok(engine.store.refund_link(&token.hash()).await?)
}

/// The customer opened the link: recorded the first time, and a refund still waiting for its link to
/// be opened moves to `AddressPending` (and tells the merchant by webhook). Returns the link as it is
/// now; `None` for an unknown token.
pub async fn open(engine: &Engine, token: &LinkToken) -> AppResult<Option<LinkView>> {
    let token_hash = token.hash();
    let opened = engine
        .store
        .write(move |tx| {
            Box::pin(async move {
                let Some(link) = repo::lock_link(tx, &token_hash).await? else { return Ok(false) };
                let now = now_ms();
                if link.status != LinkStatus::Active || link.is_expired(now) {
                    return Ok(true);
                }
                if link.opened_at_ms.is_none() {
                    repo::record_opened(tx, &link.link_id, now).await?;
                }
                let refund = refunds_repo::lock_refund(tx, &link.refund_id, None).await?;
                if refund.status == RefundStatus::PendingConfirmation {
                    let next = refund.status.apply(RefundEvent::LinkOpened).map_err(internal)?;
                    refunds_repo::compare_and_set(tx, &refund, next, None, None, now_s()).await?;
                }
                Ok(true)
            })
        })
        .await?;
    match opened {
        true => view(engine, token).await,
        false => Ok(None),
    }
}

/// Takes the address the customer submitted: the link is used up and the refund moves through
/// `AddressSubmitted` to `Pending` with that address, in one transaction. A destination that would lose
/// the money is refused (`Err`); a link that no longer takes an address is an `Ok(Err(refusal))`, and
/// nothing changes. Single use is the link's row lock and a conditional update: of two concurrent
/// submits exactly one succeeds. Lock order is link, then refund, as everywhere links are changed.
pub async fn submit(engine: &Engine, token: &LinkToken, address: Address) -> AppResult<Result<RefundRow, Refusal>> {
    engine.check_destination(&address).await?;
    // The refund's chain is known once the link is read; a link that no longer takes an address is
    // refused inside the write, before the screening would matter.
    let screening = match engine.store.refund_link(&token.hash()).await? {
        Some(view) => Some(engine.screen_destination(&view.refund.chain_id, &address).await?),
        None => None,
    };
    let token_hash = token.hash();
    let registry = engine.registry.clone();
    let outcome = engine
        .store
        .write(move |tx| {
            Box::pin(async move {
                let Some(link) = repo::lock_link(tx, &token_hash).await? else { return Ok(Err(Refusal::Unknown)) };
                let now = now_ms();
                match link.status {
                    LinkStatus::Used => return Ok(Err(Refusal::AlreadyUsed)),
                    LinkStatus::Replaced => return Ok(Err(Refusal::Replaced)),
                    LinkStatus::Active if link.is_expired(now) => return Ok(Err(Refusal::Expired)),
                    LinkStatus::Active => {}
                }
                let mut refund = refunds_repo::lock_refund(tx, &link.refund_id, None).await?;
                if !refund.status.takes_link_address() {
                    return Ok(Err(Refusal::RefundClosed(refund.status)));
                }
                if !repo::mark_used(tx, &link.link_id, address.as_str(), now).await? {
                    return Ok(Err(Refusal::AlreadyUsed));
                }
                let now_s = now_s();
                let submitted = refund.status.apply(RefundEvent::LinkAddressSubmitted).map_err(internal)?;
                refunds_repo::compare_and_set(tx, &refund, submitted, None, Some(address.as_str()), now_s).await?;
                refund.status = submitted;
                let pending = submitted.apply(RefundEvent::LinkAddressConfirmed).map_err(internal)?;
                refund.to_address = address.into_string();
                refund.screening = screening;
                if let Some(s) = &refund.screening {
                    ebb_store::screening::set_refund_screening(tx, &refund.refund_id, s).await?;
                }
                let decimals = registry
                    .get(&refund.token_id)
                    .ok_or_else(|| internal(format!("unknown token {}", refund.token_id)))?
                    .decimals;
                let approval = crate::approvals::on_destination(tx, &refund, decimals).await?;
                if let Some(a) = &approval {
                    ebb_store::approvals::set_approval(tx, &refund.refund_id, a, now_s).await?;
                }
                refunds_repo::compare_and_set(tx, &refund, pending, None, None, now_s).await?;
                if approval.is_some() {
                    refunds_repo::raise_approval_changed(tx, &refund.refund_id).await?;
                }
                Ok(Ok(link.refund_id))
            })
        })
        .await?;
    match outcome {
        Ok(refund_id) => {
            let refund = engine.store.refund(&refund_id, None).await?;
            Ok(Ok(refund.ok_or_else(|| internal(format!("refund {refund_id} vanished")))?))
        }
        Err(refusal) => Ok(Err(refusal)),
    }
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_is_well_formed_and_only_its_hash_is_kept() {
        let t = LinkToken::generate();
        assert_eq!(LinkToken::parse(t.as_str()), Some(t.clone()));
        assert_eq!(t.hash().len(), 64);
        assert_ne!(t.hash(), LinkToken::generate().hash());
        assert!(LinkToken::parse("short").is_none());
        assert!(LinkToken::parse(&"a".repeat(42).replace('a', "+")).is_none());
        assert!(!format!("{t:?}").contains(t.as_str()));
    }
}
