//! Approval policies, refunds' approvals and destination screenings (ebb extensions: Cobo's Payments API has no approval
//! objects; its refund keeps status `Pending` while it waits).

use ebb_core::approval::{parse_names, Approval, ApprovalPolicy, FiatMinimum, RefundChannel};
use ebb_core::screening::Screening;
use ebb_core::RefundSource;
use ebb_store::approvals::PolicyRow;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::validate;

/// A policy as created or replaced. Lists left out or empty match anything.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalPolicyRequest {
    pub name: String,
    #[serde(default)]
    pub token_ids: Vec<String>,
    #[serde(default)]
    pub merchant_ids: Vec<String>,
    /// `Merchant`, `Psp` and/or `Held` (a disposition of held funds): who funds the refund.
    #[serde(default)]
    pub refund_types: Vec<String>,
    /// The least amount matched, a decimal in the refund's token (inclusive).
    pub min_amount: Option<String>,
    /// The least value matched in `fiat_currency` (inclusive): what a refund counts for against its
    /// order's fiat price; a refund with no value in that currency always matches (docs/RISK.md).
    pub min_fiat_amount: Option<String>,
    /// The currency of `min_fiat_amount` (`EUR`, `USD`, …); both or neither.
    pub fiat_currency: Option<String>,
    /// Only refunds to an address no refund was ever paid to.
    #[serde(default)]
    pub new_destination_only: bool,
    /// `Api` and/or `Link`: how the refund was made.
    #[serde(default)]
    pub sources: Vec<String>,
    /// 1 to 5 distinct approvers, none of them the refund's initiator.
    pub approvals_required: u8,
}

impl ApprovalPolicyRequest {
    /// The policy asked for (its id is the use case's to give).
    pub fn into_policy(self) -> Result<ApprovalPolicy, ApiError> {
        for (field, list) in [("token_ids", &self.token_ids), ("merchant_ids", &self.merchant_ids)] {
            for v in list.iter() {
                validate::text(field, v, 128)?;
            }
        }
        Ok(ApprovalPolicy {
            policy_id: String::new(),
            name: validate::text("name", &self.name, 200)?,
            refund_types: parse_names("refund_types", &self.refund_types, RefundSource::parse)
                .map_err(ApiError::invalid)?,
            channels: parse_names("sources", &self.sources, RefundChannel::parse).map_err(ApiError::invalid)?,
            token_ids: self.token_ids,
            merchant_ids: self.merchant_ids,
            min_amount: validate::optional_text("min_amount", self.min_amount.as_deref(), 80)?,
            min_fiat: match (
                validate::optional_text("fiat_currency", self.fiat_currency.as_deref(), 16)?,
                validate::optional_text("min_fiat_amount", self.min_fiat_amount.as_deref(), 80)?,
            ) {
                (Some(currency), Some(amount)) => Some(FiatMinimum { currency, amount }),
                (None, None) => None,
                _ => return Err(ApiError::invalid("give both fiat_currency and min_fiat_amount, or neither")),
            },
            new_destination_only: self.new_destination_only,
            approvals_required: self.approvals_required,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalPolicyView {
    pub policy_id: String,
    pub name: String,
    pub token_ids: Vec<String>,
    pub merchant_ids: Vec<String>,
    pub refund_types: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_amount: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_fiat_amount: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fiat_currency: Option<String>,
    pub new_destination_only: bool,
    pub sources: Vec<String>,
    pub approvals_required: u8,
    /// `api`, or `config` for a policy from the configuration file (changed only there).
    pub origin: String,
    /// Seconds.
    pub created_timestamp: i64,
    /// Seconds.
    pub updated_timestamp: i64,
}

impl From<PolicyRow> for ApprovalPolicyView {
    fn from(r: PolicyRow) -> Self {
        let p = r.policy;
        ApprovalPolicyView {
            policy_id: p.policy_id,
            name: p.name,
            token_ids: p.token_ids,
            merchant_ids: p.merchant_ids,
            refund_types: p.refund_types.iter().map(|t| t.as_str().to_owned()).collect(),
            min_amount: p.min_amount,
            min_fiat_amount: p.min_fiat.as_ref().map(|m| m.amount.clone()),
            fiat_currency: p.min_fiat.map(|m| m.currency),
            new_destination_only: p.new_destination_only,
            sources: p.channels.iter().map(|c| c.as_str().to_owned()).collect(),
            approvals_required: p.approvals_required,
            origin: r.origin.as_str().to_owned(),
            created_timestamp: r.created_at,
            updated_timestamp: r.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalPolicyList {
    pub data: Vec<ApprovalPolicyView>,
}

/// ebb extension on a refund: the maker-checker approval it waits for or passed.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundApproval {
    pub policy_id: String,
    /// How many distinct approvers the policy asked for when it applied.
    pub required: u8,
    pub approvals: Vec<ApprovalVote>,
    /// `Pending`, `Approved` or `Rejected`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejection: Option<ApprovalVote>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalVote {
    /// The approver's key.
    pub approver: String,
    /// Seconds.
    pub timestamp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl From<Approval> for RefundApproval {
    fn from(a: Approval) -> Self {
        let vote =
            |v: ebb_core::approval::Vote| ApprovalVote { approver: v.approver, timestamp: v.at, comment: v.comment };
        RefundApproval {
            policy_id: a.policy_id,
            required: a.required,
            approvals: a.approvals.into_iter().map(vote).collect(),
            status: a.status.as_str().to_owned(),
            rejection: a.rejection.map(vote),
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveRefundRequest {
    pub comment: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectRefundRequest {
    /// Becomes the refund's `failed_reason`: `Rejected: <reason>`.
    pub reason: String,
}

/// ebb extension on a refund: the screening of its destination.
#[derive(Debug, Serialize, ToSchema)]
pub struct DestinationScreening {
    /// The highest level any provider found: `Severe`, `High`, `Medium`, `Low` or `Unknown`.
    pub level: String,
    /// `Allow`, or `Hold` (the refund waits for review as an approval).
    pub verdict: String,
    pub findings: Vec<ScreeningFinding>,
    /// Providers that could not answer, with why (such an answer holds the refund).
    pub unavailable: Vec<UnavailableProvider>,
    /// Seconds.
    pub screened_timestamp: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScreeningFinding {
    pub provider: String,
    pub level: String,
    pub categories: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnavailableProvider {
    pub provider: String,
    pub reason: String,
}

impl From<Screening> for DestinationScreening {
    fn from(s: Screening) -> Self {
        DestinationScreening {
            level: s.level.as_str().to_owned(),
            verdict: s.verdict.as_str().to_owned(),
            findings: s
                .findings
                .into_iter()
                .map(|f| ScreeningFinding {
                    provider: f.provider,
                    level: f.level.as_str().to_owned(),
                    categories: f.categories,
                    reference: f.reference,
                })
                .collect(),
            unavailable: s
                .unavailable
                .into_iter()
                .map(|(provider, reason)| UnavailableProvider { provider, reason })
                .collect(),
            screened_timestamp: s.screened_at,
        }
    }
}
