//! Dispositions of held pay-ins (Cobo's Compliance API): release to the merchant (`Unfreeze`), pay
//! back (`Refund`: to the sender or another address) or set aside (`Isolate`: to the chain's quarantine
//! address).
//!
//! A `Refund` or `Isolate` is a refund of type `Held`: its amount moves from the `held` account into
//! `reserved` when it is made, and the payout executor pays it exactly once like any refund (approval
//! policies may match `refund_types: ["Held"]`; the destination of a `Refund` is screened, so a
//! sanctioned sender is never paid back). A payout that fails returns its funds to `held`, and the pay-in
//! can be disposed of again. What a pay-in still has in `held` is read from the ledger itself
//! (`dispositions::held_remaining`): no disposition can take more than is there.

use ebb_core::clock::{now_ms, now_s};
use ebb_core::refund::RefundStatus;
use ebb_core::{Address, Amount, RefundSource, Token, TxDirection};
use ebb_store::dispositions::{self as repo, DispositionRow};
use ebb_store::kyt as kyt_repo;
use ebb_store::orders::{self, Credit};
use ebb_store::payins as payins_repo;
use ebb_store::refunds::{self as refunds_repo, IdempotencyScope, RefundRow};
use ebb_store::transactions::{self, TransactionRow};
use ebb_store::{events, ids, Store, StoreError};

use crate::payins::{FROZEN, UNFROZEN};
use crate::{approvals, Actor, AppError, AppResult, Engine};

/// A payout disposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payout {
    Refund,
    Isolate,
}

impl Payout {
    pub fn as_str(self) -> &'static str {
        match self {
            Payout::Refund => "Refund",
            Payout::Isolate => "Isolate",
        }
    }

    /// Cobo's disposition status for a payout in this refund status.
    fn status(self, refund: RefundStatus) -> &'static str {
        match (self, refund) {
            (Payout::Refund, RefundStatus::Completed) => "Refunded",
            (Payout::Isolate, RefundStatus::Completed) => "Isolated",
            (Payout::Refund, RefundStatus::Failed | RefundStatus::PartiallyCompleted) => "RefundFailed",
            (Payout::Isolate, RefundStatus::Failed | RefundStatus::PartiallyCompleted) => "IsolateFailed",
            (Payout::Refund, _) => "Refunding",
            (Payout::Isolate, _) => "Isolating",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [Payout::Refund, Payout::Isolate].into_iter().find(|p| p.as_str() == s)
    }
}

/// Cobo's `disposition_status` of a disposition whose refund (none for an `Unfreeze`) is in
/// `refund_status`.
pub fn status_label(disposition_type: &str, refund_status: Option<&str>) -> &'static str {
    match (Payout::parse(disposition_type), refund_status.and_then(RefundStatus::parse)) {
        (Some(kind), Some(status)) => kind.status(status),
        _ => UNFROZEN,
    }
}

/// A held pay-in's latest disposition, as Cobo's `DispositionQueryResponse` tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispositionView {
    /// `Unfreeze`, `Refund` or `Isolate`.
    pub disposition_type: String,
    /// `Unfrozen`, `Refunding`, `Refunded`, `RefundFailed`, `Isolating`, `Isolated`, `IsolateFailed`
    /// (Cobo's `DispositionStatus`).
    pub status: String,
    /// The payout's transaction, once it has one.
    pub payout_tx_id: Option<String>,
    /// The refund paying a `Refund` or `Isolate` out.
    pub refund_id: Option<String>,
}

/// Cobo's funds status of a pay-in (`Normal`, `Frozen`, then its latest disposition's status) and
/// that disposition.
pub async fn funds(store: &Store, t: &TransactionRow) -> Result<(String, Option<DispositionView>), StoreError> {
    let latest = store.dispositions(&t.tx_id).await?.pop();
    let view = match latest {
        None => None,
        Some(d) => Some(match Payout::parse(&d.disposition_type) {
            None => DispositionView {
                disposition_type: d.disposition_type,
                status: UNFROZEN.into(),
                payout_tx_id: None,
                refund_id: None,
            },
            Some(kind) => {
                let refund_id = d.refund_id.clone().unwrap_or_default();
                let refund = store
                    .refund(&refund_id, None)
                    .await?
                    .ok_or_else(|| StoreError::Internal(format!("disposition refund {refund_id} is missing")))?;
                DispositionView {
                    disposition_type: d.disposition_type,
                    status: kind.status(refund.status).into(),
                    payout_tx_id: refund.transactions.last().map(|t| t.tx_id.clone()),
                    refund_id: Some(refund_id),
                }
            }
        }),
    };
    let funds = match (&view, t.funds_status.as_deref()) {
        (Some(v), _) => funds_status_of(&v.status).to_owned(),
        (None, Some(s)) => s.to_owned(),
        (None, None) => "Normal".to_owned(),
    };
    Ok((funds, view))
}

/// Cobo's KYT `funds_status` for a disposition status: the same words, except that a failed isolation
/// is `IsolationFailed` there (`FundsStatusType`) and `IsolateFailed` as a disposition status
/// (`DispositionStatus`).
pub fn funds_status_of(disposition_status: &str) -> &str {
    match disposition_status {
        "IsolateFailed" => ISOLATION_FAILED,
        other => other,
    }
}

/// A failed isolation, as a funds status.
pub const ISOLATION_FAILED: &str = "IsolationFailed";

/// PSP-wide operator keys and the CLI dispose of held funds; of the console's people, admins and
/// approvers (whose actors carry the approver key role, which refuses every other change).
fn require_compliance_officer(actor: &Actor) -> AppResult<()> {
    const WHAT: &str = "dispose of held funds";
    actor.require_psp_for(WHAT)?;
    match &actor.audit {
        Some(trail) if crate::operators::allows(trail.role, crate::operators::Permission::Approve) => Ok(()),
        Some(trail) => Err(AppError::Forbidden(format!("an operator of role {} cannot {WHAT}", trail.role))),
        None => actor.require_operator_for(WHAT),
    }
}

/// Locks a held pay-in that may be disposed of now and returns it with its dispositions' refund ids and
/// what it still holds. Refused: a pay-in never held, one released already, one with a payout under way.
pub(crate) async fn lock_disposable(
    tx: &mut ebb_store::Tx<'_>,
    tx_id: &str,
) -> Result<(String, String, Vec<String>, Amount), StoreError> {
    let Some((order_id, token_id, _, funds)) = payins_repo::lock_payin(tx, tx_id).await? else {
        return Err(StoreError::NotFound { what: "transaction", id: tx_id.to_owned() });
    };
    let refuse = |why: String| StoreError::InvalidState(format!("transaction {tx_id} {why}"));
    if funds.as_deref() != Some(FROZEN) {
        return Err(refuse(format!("holds no frozen funds (funds status {})", funds.as_deref().unwrap_or("Normal"))));
    }
    let past = repo::of(tx, tx_id).await?;
    let mut refund_ids = Vec::new();
    for d in &past {
        if d.disposition_type == "Unfreeze" {
            return Err(refuse("was released to its merchant already".into()));
        }
        let Some(refund_id) = &d.refund_id else { continue };
        let r = refunds_repo::lock_refund(tx, refund_id, None).await?;
        if !r.status.is_terminal() {
            return Err(refuse(format!("has a {} disposition under way (refund {refund_id})", d.disposition_type)));
        }
        refund_ids.push(refund_id.clone());
    }
    let remaining = repo::held_remaining(tx, tx_id, &refund_ids).await?;
    if remaining.is_zero() {
        return Err(refuse("holds nothing any more".into()));
    }
    Ok((order_id, token_id, refund_ids, remaining))
}

/// Releases a held pay-in (`Unfreeze`): what it still holds goes out of `held` and is credited as its
/// order's classification says, as if it had never been held, in one transaction.
pub async fn unfreeze(engine: &Engine, actor: &Actor, tx_id: &str) -> AppResult<Credit> {
    require_compliance_officer(actor)?;
    let (tx_id, trail) = (tx_id.to_owned(), actor.audit.clone());
    Ok(engine
        .store
        .write(move |tx| {
            Box::pin(async move {
                let credit = unfreeze_locked(tx, &tx_id).await?;
                crate::operators::audit_in(tx, trail.as_ref(), "payin.unfreeze", &tx_id, "").await?;
                Ok(credit)
            })
        })
        .await?)
}

async fn unfreeze_locked(tx: &mut ebb_store::Tx<'_>, tx_id: &str) -> Result<Credit, StoreError> {
    let (order_id, token_id, _, remaining) = lock_disposable(tx, tx_id).await?;
    payins_repo::post_held(tx, tx_id, &token_id, remaining, false).await?;
    let now = now_ms();
    payins_repo::set_funds_status(tx, tx_id, UNFROZEN, now).await?;
    let credit = orders::credit_payment(tx, &order_id, &token_id, remaining).await?;
    repo::record(
        tx,
        &DispositionRow {
            tx_id: tx_id.to_owned(),
            disposition_type: "Unfreeze".into(),
            refund_id: None,
            created_at: now_s(),
        },
    )
    .await?;
    transactions::raise_transaction_changed(tx, events::TRANSACTION_COMPLETED, tx_id).await?;
    repo::raise_kyt_screening(tx, tx_id, "Approved", UNFROZEN, now).await?;
    repo::raise_disposition_changed(
        tx,
        &repo::DispositionSnapshot {
            transaction_id: tx_id.to_owned(),
            disposition_type: "Unfreeze".into(),
            refund_status: None,
            destination_address: None,
            token_id,
            amount: remaining,
            updated_timestamp: now,
        },
    )
    .await?;
    Ok(credit)
}

/// A review result of a held pay-in (Cobo's `KytScreeningsDecisionsType`; a manual review gives only
/// `Approval` or `Rejection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewResult {
    Approval,
    ApprovalWithAlert,
    Rejection,
    ManualReview,
}

impl ReviewResult {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewResult::Approval => "Approval",
            ReviewResult::ApprovalWithAlert => "ApprovalWithAlert",
            ReviewResult::Rejection => "Rejection",
            ReviewResult::ManualReview => "ManualReview",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [ReviewResult::Approval, ReviewResult::ApprovalWithAlert, ReviewResult::Rejection, ReviewResult::ManualReview]
            .into_iter()
            .find(|r| r.as_str() == s)
    }

    /// Cobo's `review_status` after this result.
    pub fn review_status(self) -> &'static str {
        match self {
            ReviewResult::Approval | ReviewResult::ApprovalWithAlert => "Approved",
            ReviewResult::Rejection => "Rejected",
            ReviewResult::ManualReview => "PendingReview",
        }
    }
}

/// Where a review comes from: Cobo's `decisions` call (an external KYT result) or `manual_review`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewKind {
    Decision,
    ManualReview,
}

impl ReviewKind {
    fn as_str(self) -> &'static str {
        match self {
            ReviewKind::Decision => "decision",
            ReviewKind::ManualReview => "manual_review",
        }
    }
}

/// Records a review of a held pay-in that still holds its funds (none released, no payout under way).
/// An approval releases them as `unfreeze` does, in the same transaction; a rejection keeps them
/// frozen for a `refund` or `isolate`; `ManualReview` sends it back to review. Each raises
/// `compliance.kyt.screenings.status.updated`.
pub async fn review(
    engine: &Engine,
    actor: &Actor,
    tx_id: &str,
    kind: ReviewKind,
    result: ReviewResult,
) -> AppResult<()> {
    require_compliance_officer(actor)?;
    if kind == ReviewKind::ManualReview && !matches!(result, ReviewResult::Approval | ReviewResult::Rejection) {
        return Err(AppError::Invalid(format!("a manual review is Approval or Rejection, not {}", result.as_str())));
    }
    let row = repo::KytReviewRow {
        tx_id: tx_id.to_owned(),
        kind: kind.as_str().into(),
        result: result.as_str().into(),
        reviewer: actor.initiator.clone(),
        created_at_ms: now_ms(),
    };
    engine
        .store
        .write(move |tx| {
            Box::pin(async move {
                match result {
                    ReviewResult::Approval | ReviewResult::ApprovalWithAlert => {
                        repo::record_review(tx, &row).await?;
                        unfreeze_locked(tx, &row.tx_id).await?;
                    }
                    ReviewResult::Rejection | ReviewResult::ManualReview => {
                        let (_, _, refund_ids, _) = lock_disposable(tx, &row.tx_id).await?;
                        // Held again after a failed payout, the funds show that payout's failure.
                        let funds = match refund_ids.last() {
                            None => FROZEN.to_owned(),
                            Some(id) => {
                                let r = refunds_repo::lock_refund(tx, id, None).await?;
                                let last = repo::of(tx, &row.tx_id).await?.pop();
                                let kind =
                                    last.and_then(|d| Payout::parse(&d.disposition_type)).unwrap_or(Payout::Refund);
                                funds_status_of(kind.status(r.status)).to_owned()
                            }
                        };
                        repo::record_review(tx, &row).await?;
                        repo::raise_kyt_screening(tx, &row.tx_id, result.review_status(), &funds, row.created_at_ms)
                            .await?;
                    }
                }
                Ok(())
            })
        })
        .await?;
    Ok(())
}

/// Pays `amount` of a held pay-in out (`Refund` to `parse`'s address, or `Isolate` to the chain's
/// quarantine address, which the request must name): a refund of type `Held`, paid by the payout
/// executor. `parse` reads the destination for the pay-in's token (the surface's parser).
pub async fn pay_out<E>(
    engine: &Engine,
    actor: &Actor,
    tx_id: &str,
    kind: Payout,
    amount: impl FnOnce(&Token) -> Result<Amount, E>,
    parse: impl FnOnce(&Token) -> Result<Address, E>,
) -> Result<RefundRow, E>
where
    E: From<AppError>,
{
    pay_out_confirming(engine, actor, tx_id, kind, amount, parse, None).await
}

/// As [`pay_out`]; with `crypto_refund`, that crypto refund of the KYT refund API is confirmed as paid by
/// this refund in the same transaction (refused if it was confirmed already).
pub(crate) async fn pay_out_confirming<E>(
    engine: &Engine,
    actor: &Actor,
    tx_id: &str,
    kind: Payout,
    amount: impl FnOnce(&Token) -> Result<Amount, E>,
    parse: impl FnOnce(&Token) -> Result<Address, E>,
    crypto_refund: Option<String>,
) -> Result<RefundRow, E>
where
    E: From<AppError>,
{
    require_compliance_officer(actor)?;
    let t = engine.store.transaction(tx_id).await.map_err(AppError::from)?;
    let t = t.filter(|t| t.direction == TxDirection::In).ok_or_else(|| AppError::not_found("transaction", tx_id))?;
    let token = engine
        .registry
        .get(&t.token_id)
        .ok_or_else(|| AppError::Store(StoreError::Internal(format!("unknown token {}", t.token_id))))?
        .clone();
    let amount = amount(&token)?;
    let to = parse(&token)?;
    let screening = match kind {
        Payout::Refund => {
            engine.check_destination(&to).await?;
            Some(engine.screen_destination(&token.chain_id, &to).await?)
        }
        Payout::Isolate => {
            let quarantine = engine.screener.quarantine(&token.chain_id).ok_or_else(|| {
                AppError::InvalidState(format!(
                    "no quarantine address is configured for chain {} ([screening] quarantine)",
                    token.chain_id
                ))
            })?;
            if !to.as_str().eq_ignore_ascii_case(quarantine) {
                return Err(AppError::Invalid(format!(
                    "destination_address must be chain {}'s quarantine address {quarantine}",
                    token.chain_id
                ))
                .into());
            }
            None
        }
    };
    let (tx_id, initiator, trail) = (tx_id.to_owned(), actor.initiator.clone(), actor.audit.clone());
    let r = engine
        .store
        .write(move |tx| {
            Box::pin(async move {
                let (_, _, refund_ids, remaining) = lock_disposable(tx, &tx_id).await?;
                if amount > remaining {
                    return Err(StoreError::Invalid(format!(
                        "disposition_amount is more than transaction {tx_id} still holds ({remaining} base units)"
                    )));
                }
                let now = now_s();
                let mut refund = RefundRow {
                    refund_id: ids::new_id("R"),
                    request_id: format!("disposition-{tx_id}-{}", refund_ids.len() + 1),
                    order_id: None,
                    // Held funds are the PSP's to dispose of: no merchant's key sees or cancels this.
                    merchant_id: None,
                    token_id: token.id.clone(),
                    chain_id: token.chain_id.clone(),
                    amount,
                    to_address: to.as_str().to_owned(),
                    status: RefundStatus::Pending,
                    failed_reason: None,
                    hold_reason: None,
                    refund_type: RefundSource::Held,
                    charge_merchant_fee: false,
                    merchant_fee_amount: None,
                    initiator,
                    channel: ebb_core::approval::RefundChannel::Api,
                    approval: None,
                    screening,
                    pricing: None,
                    created_at: now,
                    updated_at: now,
                    transactions: Vec::new(),
                };
                refund.approval = approvals::on_destination(tx, &refund, token.decimals).await?;
                if let Some(id) = &crypto_refund {
                    // Before the refund's first event, which tells the crypto refund's client.
                    if !kyt_repo::confirm(tx, id, &refund.refund_id, &refund.to_address, now_ms()).await? {
                        return Err(StoreError::InvalidState(format!("crypto refund {id} was confirmed already")));
                    }
                }
                if !refunds_repo::insert_row(tx, &refund, &IdempotencyScope::Psp, kind.as_str()).await? {
                    return Err(StoreError::AlreadyExists(format!("refund request {}", refund.request_id)));
                }
                refunds_repo::post_reservation(tx, &refund, false, now).await?;
                // Recorded before the refund's first event, which announces the disposition too.
                repo::record(
                    tx,
                    &DispositionRow {
                        tx_id: tx_id.clone(),
                        disposition_type: kind.as_str().into(),
                        refund_id: Some(refund.refund_id.clone()),
                        created_at: now,
                    },
                )
                .await?;
                refunds_repo::raise_refund_created(tx, &refund).await?;
                let action = format!("payin.{}", kind.as_str().to_ascii_lowercase());
                crate::operators::audit_in(tx, trail.as_ref(), &action, &tx_id, &refund.refund_id).await?;
                Ok(refund)
            })
        })
        .await
        .map_err(AppError::from)?;
    Ok(r)
}
