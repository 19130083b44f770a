//! Cobo's Compliance API shapes (the SDK's `ComplianceApi`): address screenings (KYA).

use ebb_core::screening::{RiskLevel, Screening};
use ebb_store::kya::KyaRow;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::approvals::DestinationScreening;

#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateKyaScreeningsBody {
    /// 1 to 50 addresses.
    pub screenings: Vec<KyaScreeningRequest>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct KyaScreeningRequest {
    /// 1 to 128 characters, unique: the same request again answers with the screening it made.
    pub request_id: String,
    pub address: String,
    pub chain_id: String,
    /// At most 100 characters.
    pub note: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KyaScreeningResult {
    pub request_id: String,
    /// A UUID.
    pub screening_id: String,
    pub address: String,
    pub chain_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Milliseconds.
    pub created_timestamp: i64,
    pub requested_by: String,
    /// `Screened`, or `Failed` when a provider could not answer (the assessment then covers the others).
    pub status: String,
    pub risk_assessment: KyaRiskAssessment,
    /// ebb extension: every provider's finding and ebb's verdict (`Allow`, `Hold`, `Refuse`) under
    /// the configured rules, as a refund destination would get it.
    pub screening: DestinationScreening,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KyaRiskAssessment {
    /// Cobo's levels: `High` (ebb's `Severe` and `High`), `Medium`, `Low` (ebb's `Low` and `Unknown`).
    pub level: String,
    pub summary: String,
    pub details: Vec<KyaRiskDetail>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KyaRiskDetail {
    pub category: String,
    /// `high`, `medium` or `low`: the level of the finding that named the category.
    pub exposure: String,
}

fn cobo_level(l: RiskLevel) -> &'static str {
    match l {
        RiskLevel::Severe | RiskLevel::High => "High",
        RiskLevel::Medium => "Medium",
        RiskLevel::Low | RiskLevel::Unknown => "Low",
    }
}

fn assessment(s: &Screening) -> KyaRiskAssessment {
    let details = s
        .findings
        .iter()
        .flat_map(|f| {
            f.categories
                .iter()
                .map(move |c| KyaRiskDetail { category: c.clone(), exposure: cobo_level(f.level).to_lowercase() })
        })
        .collect();
    KyaRiskAssessment {
        level: cobo_level(s.level).to_owned(),
        summary: format!("{}: {}", s.level.as_str(), s.summary()),
        details,
    }
}

impl From<KyaRow> for KyaScreeningResult {
    fn from(r: KyaRow) -> Self {
        KyaScreeningResult {
            risk_assessment: assessment(&r.screening),
            screening: r.screening.into(),
            request_id: r.request_id,
            screening_id: r.screening_id,
            address: r.address,
            chain_id: r.chain_id,
            note: r.note,
            created_timestamp: r.created_at_ms,
            requested_by: r.requested_by,
            status: r.status,
        }
    }
}

/// Cobo's `KytScreeningsTransaction`: where a transaction's screening and funds stand.
#[derive(Debug, Serialize, ToSchema)]
pub struct KytScreeningsTransaction {
    pub transaction_id: String,
    /// `Deposit` (a pay-in) or `Withdrawal` (a refund's payout).
    pub transaction_type: String,
    /// `Approved` (screened and allowed, or released), `PendingReview` (held), `Rejected` (held, and a
    /// review rejected it: it waits for a refund or isolate), `Bypassed` (not
    /// screened: a payout, whose destination is screened on the refund, or a pay-in seen before
    /// sender screening existed).
    pub review_status: String,
    /// `Normal`; `Frozen` (held, not credited); then the latest disposition's status: `Unfrozen`,
    /// `Refunding`, `Refunded`, `RefundFailed`, `Isolating`, `Isolated`, `IsolationFailed` (Cobo's
    /// `FundsStatusType`, which spells a failed isolation differently from `DispositionStatus`).
    pub funds_status: String,
    /// ebb extension: the sender's screening, for a pay-in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub screening: Option<DestinationScreening>,
}

impl KytScreeningsTransaction {
    /// `funds_status` as `ebb_app::dispositions::funds` reads it.
    /// `review`: the latest review's result (`decisions`, `manual_review`), if any.
    pub fn new(t: ebb_store::transactions::TransactionRow, funds_status: String, review: Option<&str>) -> Self {
        let deposit = t.direction == ebb_core::TxDirection::In;
        let held = t.screening.as_ref().is_some_and(|s| s.verdict != ebb_core::screening::Verdict::Allow);
        let reviewed = review.and_then(ebb_app::dispositions::ReviewResult::parse).map(|r| r.review_status());
        let review_status = match (&t.screening, funds_status.as_str(), reviewed) {
            (_, "Unfrozen", _) => "Approved",
            (_, _, Some(status)) => status,
            (Some(_), _, None) if held => "PendingReview",
            (Some(_), _, None) => "Approved",
            (None, _, None) => "Bypassed",
        };
        KytScreeningsTransaction {
            transaction_id: t.tx_id,
            transaction_type: if deposit { "Deposit" } else { "Withdrawal" }.to_owned(),
            review_status: review_status.to_owned(),
            funds_status,
            screening: t.screening.map(Into::into),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UnfreezeDisposition {
    pub transaction_id: String,
}

/// Cobo's `DispositionResponse`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DispositionResponse {
    pub transaction_id: String,
    pub status: String,
}

/// Cobo's `DispositionQueryResponse`: a held pay-in's latest disposition.
#[derive(Debug, Serialize, ToSchema)]
pub struct DispositionQueryResponse {
    pub transaction_id: String,
    /// `Unfreeze`, `Refund` or `Isolate`.
    pub disposition_type: String,
    pub disposition_status: String,
    /// The payout's transaction (`Refund`, `Isolate`), once signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disposition_transaction_id: Option<String>,
    /// ebb extension: the refund (type `Held`) paying a `Refund` or `Isolate` out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund_id: Option<String>,
}

/// Cobo's `RefundDisposition` and `IsolateDisposition`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PayoutDisposition {
    pub transaction_id: String,
    /// `Refund`: any address (screened); `Isolate`: the chain's configured quarantine address.
    pub destination_address: String,
    /// A decimal in the pay-in's token, at most what it still holds.
    pub disposition_amount: String,
    /// Accepted and not stored.
    pub category_names: Option<Vec<String>>,
    /// Accepted and not stored; at most 200 characters.
    pub description: Option<String>,
}

/// Cobo's `SubmitKytScreeningsReviewBody` (`result`: `Approval` or `Rejection`) and
/// `SubmitKytScreeningsDecisionsBody` (`result`: also `ApprovalWithAlert`, `ManualReview`).
#[derive(Debug, Deserialize, ToSchema)]
pub struct KytReviewBody {
    pub transaction_id: String,
    pub result: String,
}

/// Cobo's `SubmitKytResponse`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubmitKytResponse {
    pub transaction_id: String,
    pub submitted: bool,
}
