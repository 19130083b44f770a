//! Serde adapters for the domain types inside stored event snapshots (`events.snapshot`): amounts as
//! base-unit strings, statuses as their names. The snapshot is a storage format, read back only by
//! ebb; the API renders it in Cobo's shape.

use ebb_core::approval::{Approval, ApprovalStatus, RefundChannel, Vote};
use ebb_core::screening::{Finding, RiskLevel, Screening, Verdict};
use ebb_core::{Amount, OrderStatus, RefundSource, RefundStatus, TxDirection, TxStatus};
use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};

fn parse<'de, D: Deserializer<'de>, T>(d: D, what: &str, f: impl Fn(&str) -> Option<T>) -> Result<T, D::Error> {
    let s = String::deserialize(d)?;
    f(&s).ok_or_else(|| D::Error::custom(format!("not a {what}: {s:?}")))
}

pub(crate) mod amount {
    use super::*;
    pub fn serialize<S: Serializer>(a: &Amount, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&a.to_string())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Amount, D::Error> {
        parse(d, "base-unit amount", |s| Amount::from_base_units_str(s).ok())
    }
}

pub(crate) mod amount_opt {
    use super::*;
    pub fn serialize<S: Serializer>(a: &Option<Amount>, s: S) -> Result<S::Ok, S::Error> {
        match a {
            Some(a) => s.serialize_some(&a.to_string()),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Amount>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| Amount::from_base_units_str(&s).map_err(|_| D::Error::custom(format!("not an amount: {s:?}"))))
            .transpose()
    }
}

macro_rules! named {
    ($module:ident, $ty:ty, $what:literal) => {
        pub(crate) mod $module {
            use super::*;
            pub fn serialize<S: Serializer>(v: &$ty, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(v.as_str())
            }
            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                parse(d, $what, <$ty>::parse)
            }
        }
    };
}

named!(refund_status, RefundStatus, "refund status");
named!(refund_source, RefundSource, "refund source");
named!(order_status, OrderStatus, "order status");
named!(tx_status, TxStatus, "transaction status");
named!(tx_direction, TxDirection, "transaction direction");
named!(refund_channel, RefundChannel, "refund channel");

/// Snapshots written before refunds recorded their channel were all made through the API.
pub(crate) fn api_channel() -> RefundChannel {
    RefundChannel::Api
}

/// A refund's approval as stored, in `refunds.approval` and inside refund snapshots.
#[derive(Serialize, Deserialize)]
struct StoredApproval {
    policy_id: String,
    required: u8,
    approvals: Vec<StoredVote>,
    status: String,
    rejection: Option<StoredVote>,
}

#[derive(Serialize, Deserialize)]
struct StoredVote {
    approver: String,
    at: i64,
    comment: Option<String>,
}

impl From<&Vote> for StoredVote {
    fn from(v: &Vote) -> Self {
        StoredVote { approver: v.approver.clone(), at: v.at, comment: v.comment.clone() }
    }
}

impl From<StoredVote> for Vote {
    fn from(v: StoredVote) -> Self {
        Vote { approver: v.approver, at: v.at, comment: v.comment }
    }
}

impl From<&Approval> for StoredApproval {
    fn from(a: &Approval) -> Self {
        StoredApproval {
            policy_id: a.policy_id.clone(),
            required: a.required,
            approvals: a.approvals.iter().map(StoredVote::from).collect(),
            status: a.status.as_str().to_owned(),
            rejection: a.rejection.as_ref().map(StoredVote::from),
        }
    }
}

impl StoredApproval {
    fn into_approval(self) -> Result<Approval, String> {
        Ok(Approval {
            status: ApprovalStatus::parse(&self.status)
                .ok_or_else(|| format!("not an approval status: {:?}", self.status))?,
            policy_id: self.policy_id,
            required: self.required,
            approvals: self.approvals.into_iter().map(Vote::from).collect(),
            rejection: self.rejection.map(Vote::from),
        })
    }
}

/// `refunds.approval`'s text.
pub(crate) fn approval_json(a: &Approval) -> String {
    serde_json::to_string(&StoredApproval::from(a)).expect("an approval always serialises")
}

pub(crate) fn approval_from_json(s: &str) -> Result<Approval, String> {
    serde_json::from_str::<StoredApproval>(s).map_err(|e| e.to_string())?.into_approval()
}

pub(crate) mod approval_opt {
    use super::*;
    pub fn serialize<S: Serializer>(a: &Option<Approval>, s: S) -> Result<S::Ok, S::Error> {
        a.as_ref().map(StoredApproval::from).serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Approval>, D::Error> {
        Option::<StoredApproval>::deserialize(d)?.map(|a| a.into_approval().map_err(D::Error::custom)).transpose()
    }
}

/// A screening as stored, in `refunds.screening` and inside refund snapshots.
#[derive(Serialize, Deserialize)]
struct StoredScreening {
    address: String,
    level: String,
    verdict: String,
    findings: Vec<StoredFinding>,
    unavailable: Vec<(String, String)>,
    screened_at: i64,
}

#[derive(Serialize, Deserialize)]
struct StoredFinding {
    provider: String,
    level: String,
    categories: Vec<String>,
    reference: Option<String>,
}

impl From<&Screening> for StoredScreening {
    fn from(s: &Screening) -> Self {
        StoredScreening {
            address: s.address.clone(),
            level: s.level.as_str().to_owned(),
            verdict: s.verdict.as_str().to_owned(),
            findings: s
                .findings
                .iter()
                .map(|f| StoredFinding {
                    provider: f.provider.clone(),
                    level: f.level.as_str().to_owned(),
                    categories: f.categories.clone(),
                    reference: f.reference.clone(),
                })
                .collect(),
            unavailable: s.unavailable.clone(),
            screened_at: s.screened_at,
        }
    }
}

impl StoredScreening {
    fn into_screening(self) -> Result<Screening, String> {
        let level = |s: &str| RiskLevel::parse(s).ok_or_else(|| format!("not a risk level: {s:?}"));
        Ok(Screening {
            level: level(&self.level)?,
            verdict: Verdict::parse(&self.verdict).ok_or_else(|| format!("not a verdict: {:?}", self.verdict))?,
            findings: self
                .findings
                .into_iter()
                .map(|f| {
                    Ok(Finding {
                        level: level(&f.level)?,
                        provider: f.provider,
                        categories: f.categories,
                        reference: f.reference,
                    })
                })
                .collect::<Result<_, String>>()?,
            address: self.address,
            unavailable: self.unavailable,
            screened_at: self.screened_at,
        })
    }
}

/// `refunds.screening`'s text.
pub(crate) fn screening_json(s: &Screening) -> String {
    serde_json::to_string(&StoredScreening::from(s)).expect("a screening always serialises")
}

pub(crate) fn screening_from_json(s: &str) -> Result<Screening, String> {
    serde_json::from_str::<StoredScreening>(s).map_err(|e| e.to_string())?.into_screening()
}

pub(crate) mod screening_opt {
    use super::*;
    pub fn serialize<S: Serializer>(v: &Option<Screening>, s: S) -> Result<S::Ok, S::Error> {
        v.as_ref().map(StoredScreening::from).serialize(s)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Screening>, D::Error> {
        Option::<StoredScreening>::deserialize(d)?.map(|v| v.into_screening().map_err(D::Error::custom)).transpose()
    }
}
