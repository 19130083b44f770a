//! Maker-checker approval of refunds: the PSP's policies, the approval a refund gets when it gets its
//! address, approving and rejecting it, and the queue.
//!
//! A policy is matched when a refund gets a destination (created with an address, its address set or
//! changed, a link's address submitted), against the policies committed at that moment. A refund
//! under a policy stays `Pending` and the payout executor does not take it until its approval is
//! `Approved` (`payouts::payable` filters it out, `payouts::start` checks again under the lock). Once
//! a refund is under a policy it never leaves it: a new address starts its approvals again (under a
//! stricter policy if one now applies), and changing or deleting the policy moves nothing already
//! waiting.

use ebb_core::approval::{applicable, Approval, ApprovalError, ApprovalPolicy, ApprovalStatus, RefundFacts, Vote};
use ebb_core::clock::now_s;
use ebb_core::refund::{rejected_reason, RefundEvent};
use ebb_core::screening::Verdict;
use ebb_core::RefundStatus;
use ebb_store::approvals::{self as repo, PolicyOrigin, PolicyRow};
use ebb_store::page::{Page, PageRequest};
use ebb_store::refunds::{self as refunds_repo, RefundFilter, RefundRow};
use ebb_store::{ids, StoreError, Tx};

use crate::screening::SCREENING_POLICY_ID;
use crate::{Actor, AppError, AppResult, Engine};

/// The most policies ebb keeps (each refund that gets an address is matched against all of them).
pub const MAX_POLICIES: usize = 100;
/// The most entries in one of a policy's lists.
pub const MAX_LIST: usize = 100;

/// The approval a refund gets with its destination: `refund` as it is about to be stored (its address,
/// merchant and channel final, its approval the one it had so far). `None` if no policy holds it.
pub(crate) async fn on_destination(
    tx: &mut Tx<'_>,
    refund: &RefundRow,
    decimals: u32,
) -> Result<Option<Approval>, StoreError> {
    let policies = repo::policies_in(tx).await?;
    let previous = refund.approval.clone();
    let screening_holds = refund.screening.as_ref().is_some_and(|s| s.verdict == Verdict::Hold);
    if policies.is_empty() && previous.is_none() && !screening_holds {
        return Ok(None);
    }
    let destination_is_new = match policies.iter().any(|p| p.new_destination_only) {
        true => !repo::paid_before(tx, &refund.chain_id, &refund.to_address).await?,
        false => false,
    };
    let facts = RefundFacts {
        token_id: &refund.token_id,
        decimals,
        merchant_id: refund.merchant_id.as_deref(),
        refund_type: refund.refund_type,
        amount: refund.amount,
        destination_is_new,
        channel: refund.channel,
        fiat: refund.pricing.as_ref().map(|p| (p.currency.as_str(), p.amount)),
    };
    let policy = applicable(&policies, &facts);
    let approval = match (previous, policy) {
        (Some(prev), Some(p)) if p.approvals_required > prev.required => Some(Approval::new(p)),
        (Some(mut prev), _) => {
            prev.reset();
            Some(prev)
        }
        (None, p) => p.map(Approval::new),
    };
    // An address screening held is reviewed like a refund under a one-approver policy; an approval the
    // refund needs anyway covers the review.
    Ok(match approval {
        None if screening_holds => Some(Approval::new(&ApprovalPolicy {
            policy_id: SCREENING_POLICY_ID.into(),
            name: "screening review".into(),
            token_ids: Vec::new(),
            merchant_ids: Vec::new(),
            refund_types: Vec::new(),
            min_amount: None,
            min_fiat: None,
            new_destination_only: false,
            channels: Vec::new(),
            approvals_required: 1,
        })),
        other => other,
    })
}

/// Approval policies are the PSP's: managed by its operators' keys, read by its keys.
fn require_psp_reader(actor: &Actor) -> AppResult<()> {
    actor.require_psp_for("see approval policies")
}

fn require_policy_manager(actor: &Actor) -> AppResult<()> {
    actor.require_psp_for("manage approval policies")?;
    actor.require_operator_for("manage approval policies")
}

/// Refuses a policy that could never be read or met, or that names tokens or merchants ebb does not
/// know (a typo there would silently let refunds through).
async fn check_policy(engine: &Engine, p: &ApprovalPolicy) -> AppResult<()> {
    p.check().map_err(|e| AppError::Invalid(e.to_string()))?;
    for (name, list) in [("token_ids", &p.token_ids), ("merchant_ids", &p.merchant_ids)] {
        if list.len() > MAX_LIST {
            return Err(AppError::Invalid(format!("{name} may hold at most {MAX_LIST} entries")));
        }
    }
    if let Some(t) = p.token_ids.iter().find(|t| engine.registry.get(t).is_none()) {
        return Err(AppError::Invalid(format!("token_ids names {t:?}, which is not a supported token")));
    }
    for m in &p.merchant_ids {
        if !engine.store.merchant_exists(m).await? {
            return Err(AppError::not_found("merchant", m));
        }
    }
    Ok(())
}

/// Adds a policy (its `policy_id` is given here). It applies to refunds that get their address from
/// now on.
pub async fn create_policy(engine: &Engine, actor: &Actor, mut policy: ApprovalPolicy) -> AppResult<PolicyRow> {
    require_policy_manager(actor)?;
    check_policy(engine, &policy).await?;
    policy.policy_id = ids::new_id("AP");
    let now = now_s();
    let row = PolicyRow { policy, origin: PolicyOrigin::Api, created_at: now, updated_at: now };
    let stored = row.clone();
    engine
        .store
        .write(move |tx| {
            Box::pin(async move {
                if repo::policies_in(tx).await?.len() >= MAX_POLICIES {
                    return Err(StoreError::InvalidState(format!(
                        "ebb keeps at most {MAX_POLICIES} approval policies; delete one first"
                    )));
                }
                repo::insert_policy(tx, &stored).await
            })
        })
        .await?;
    Ok(row)
}

pub async fn list_policies(engine: &Engine, actor: &Actor) -> AppResult<Vec<PolicyRow>> {
    require_psp_reader(actor)?;
    Ok(engine.store.approval_policies().await?)
}

pub async fn get_policy(engine: &Engine, actor: &Actor, policy_id: &str) -> AppResult<PolicyRow> {
    require_psp_reader(actor)?;
    engine.store.approval_policy(policy_id).await?.ok_or_else(|| AppError::not_found("approval policy", policy_id))
}

/// Locks a policy the API may change: one from the configuration file changes only there.
async fn lock_api_policy(tx: &mut Tx<'_>, policy_id: &str) -> Result<PolicyRow, StoreError> {
    let row = repo::lock_policy(tx, policy_id)
        .await?
        .ok_or_else(|| StoreError::NotFound { what: "approval policy", id: policy_id.to_owned() })?;
    if row.origin == PolicyOrigin::Config {
        return Err(StoreError::InvalidState(format!(
            "approval policy {policy_id} comes from the configuration file; change it there"
        )));
    }
    Ok(row)
}

/// Replaces a policy's name and criteria. Refunds already waiting keep the approval they have.
pub async fn update_policy(
    engine: &Engine,
    actor: &Actor,
    policy_id: &str,
    mut policy: ApprovalPolicy,
) -> AppResult<PolicyRow> {
    require_policy_manager(actor)?;
    check_policy(engine, &policy).await?;
    policy.policy_id = policy_id.to_owned();
    Ok(engine
        .store
        .write(move |tx| {
            Box::pin(async move {
                let current = lock_api_policy(tx, &policy.policy_id).await?;
                let row = PolicyRow { policy, updated_at: now_s(), ..current };
                repo::update_policy(tx, &row).await?;
                Ok(row)
            })
        })
        .await?)
}

/// Deletes a policy; returns it as it was. Refunds already waiting under it still wait.
pub async fn delete_policy(engine: &Engine, actor: &Actor, policy_id: &str) -> AppResult<PolicyRow> {
    require_policy_manager(actor)?;
    let policy_id = policy_id.to_owned();
    Ok(engine
        .store
        .write(move |tx| {
            Box::pin(async move {
                let current = lock_api_policy(tx, &policy_id).await?;
                repo::delete_policy(tx, &policy_id).await?;
                Ok(current)
            })
        })
        .await?)
}

/// Makes the configuration file's policies the ones in force of that origin (at start-up).
pub async fn load_config_policies(store: &ebb_store::Store, policies: Vec<ApprovalPolicy>) -> AppResult<()> {
    for p in &policies {
        p.check().map_err(|e| AppError::Invalid(format!("approval policy {}: {e}", p.policy_id)))?;
    }
    store.write(move |tx| Box::pin(async move { repo::replace_config_policies(tx, &policies, now_s()).await })).await?;
    Ok(())
}

/// The approval queue: refunds under a policy, newest first; `Pending` lists those still waiting
/// (their refund not cancelled meanwhile).
pub async fn queue(
    engine: &Engine,
    actor: &Actor,
    status: Option<ApprovalStatus>,
    merchant_id: Option<String>,
    page: &PageRequest,
) -> AppResult<Page<RefundRow>> {
    let filter = RefundFilter {
        merchant_id: actor.merchant_filter(merchant_id)?,
        statuses: match status {
            Some(ApprovalStatus::Pending) => vec![RefundStatus::Pending],
            _ => Vec::new(),
        },
        under_approval: true,
        approval_status: status,
        ..RefundFilter::default()
    };
    Ok(engine.store.list_refunds(&filter, page).await?)
}

/// What an approver does to a refund.
enum Decision {
    Approve { comment: Option<String> },
    Reject { reason: String },
}

/// Approves a refund waiting for approval; once its policy's number of distinct approvers is
/// reached it may pay out. The same approver approving again changes nothing.
pub async fn approve(engine: &Engine, actor: &Actor, refund_id: &str, comment: Option<String>) -> AppResult<RefundRow> {
    decide(engine, actor, refund_id, Decision::Approve { comment }).await
}

/// Rejects a refund waiting for approval: it fails with `Rejected: <reason>` and its funds go back
/// where they came from.
pub async fn reject(engine: &Engine, actor: &Actor, refund_id: &str, reason: String) -> AppResult<RefundRow> {
    decide(engine, actor, refund_id, Decision::Reject { reason }).await
}

async fn decide(engine: &Engine, actor: &Actor, refund_id: &str, decision: Decision) -> AppResult<RefundRow> {
    if actor.merchant.is_some() {
        return Err(AppError::Forbidden(
            "this API key is restricted to one merchant; a merchant's key never approves or rejects refunds".into(),
        ));
    }
    // The initiator never changes, so the maker-checker rule is checked before the write, where it can
    // answer as a refusal of this actor rather than a conflict of the refund's state.
    let current = crate::refunds::get(engine, actor, refund_id).await?;
    if current.initiator == actor.initiator {
        return Err(AppError::Forbidden(ApprovalError::OwnRefund.to_string()));
    }
    let (refund_id, approver, trail) = (refund_id.to_owned(), actor.initiator.clone(), actor.audit.clone());
    let r = engine
        .store
        .write(move |tx| {
            Box::pin(async move {
                let mut r = refunds_repo::lock_refund(tx, &refund_id, None).await?;
                let not_waiting = |why: String| StoreError::InvalidState(format!("refund {refund_id} {why}"));
                if r.status != RefundStatus::Pending {
                    return Err(not_waiting(format!("is {} and waits for no approval", r.status)));
                }
                let Some(mut approval) = r.approval.clone() else {
                    return Err(not_waiting("is under no approval policy".into()));
                };
                let now = now_s();
                let decided = |e: ApprovalError| not_waiting(format!("cannot take this decision: {e}"));
                let audit = |action: &'static str, detail: String| (action, detail);
                let (action, detail) = match &decision {
                    Decision::Approve { comment } => audit("refund.approve", comment.clone().unwrap_or_default()),
                    Decision::Reject { reason } => audit("refund.reject", reason.clone()),
                };
                crate::operators::audit_in(tx, trail.as_ref(), action, &refund_id, &detail).await?;
                match decision {
                    Decision::Approve { comment } => {
                        let vote = Vote { approver, at: now, comment };
                        if !approval.approve(vote, &r.initiator).map_err(decided)? {
                            return Ok(r);
                        }
                        repo::set_approval(tx, &refund_id, &approval, now).await?;
                    }
                    Decision::Reject { reason } => {
                        let failed_reason = rejected_reason(&reason);
                        approval
                            .reject(Vote { approver, at: now, comment: Some(reason) }, &r.initiator)
                            .map_err(decided)?;
                        repo::set_approval(tx, &refund_id, &approval, now).await?;
                        let next = r.status.apply(RefundEvent::Rejected).map_err(|e| not_waiting(e.to_string()))?;
                        refunds_repo::compare_and_set(tx, &r, next, Some(&failed_reason), None, now).await?;
                        refunds_repo::adjust_order_refunded(tx, &r, false).await?;
                        refunds_repo::post_reservation(tx, &r, true, now).await?;
                        r.status = next;
                        r.failed_reason = Some(failed_reason);
                    }
                }
                refunds_repo::raise_approval_changed(tx, &refund_id).await?;
                r.approval = Some(approval);
                r.updated_at = now;
                Ok(r)
            })
        })
        .await?;
    Ok(engine.store.with_transactions(r).await?)
}
