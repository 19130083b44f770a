//! Maker-checker approval of refunds: which policy a refund falls under, and how approvals add up.
//!
//! A policy matches a refund by its token, merchant, refund source, amount, whether its destination
//! was ever paid before and the way it was made (API or refund link); every criterion left empty
//! matches anything. Of several matching policies the strictest applies: the one asking for the most
//! approvals (ties go to the lowest policy id, so the choice never depends on the order policies are
//! read in). A refund under a policy waits until that many distinct approvers, none of them its
//! initiator, approve it; one rejection ends it. Pure rules here; storing, locking and the payout
//! executor's gate live in the layers above.

use std::fmt;

use crate::{Amount, RefundSource};

/// The most approvals a policy may ask for.
pub const MAX_APPROVALS: u8 = 5;

/// How a refund was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefundChannel {
    /// `POST /v2/payments/refunds` (or another API dialect).
    Api,
    /// A refund link: the customer submitted the address.
    Link,
}

impl RefundChannel {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundChannel::Api => "Api",
            RefundChannel::Link => "Link",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Api" => Some(RefundChannel::Api),
            "Link" => Some(RefundChannel::Link),
            _ => None,
        }
    }
}

/// What a policy asks of the refunds it matches. Empty lists match anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalPolicy {
    pub policy_id: String,
    pub name: String,
    pub token_ids: Vec<String>,
    pub merchant_ids: Vec<String>,
    pub refund_types: Vec<RefundSource>,
    /// The least amount matched, as a decimal in the refund's token ("1000" is 1,000 USDT for a USDT
    /// refund); `None`: any amount.
    pub min_amount: Option<String>,
    /// The least value matched in a fiat currency; `None`: any value. See [`FiatMinimum`].
    pub min_fiat: Option<FiatMinimum>,
    /// Only refunds to an address ebb has never paid before.
    pub new_destination_only: bool,
    pub channels: Vec<RefundChannel>,
    /// 1 to [`MAX_APPROVALS`].
    pub approvals_required: u8,
}

/// A threshold in a fiat currency (`1000` `EUR`, inclusive). A refund's value in it is what the refund
/// counts for against its order's price (its `pricing`, docs/PRICES.md). A refund with no value in that
/// currency (no fiat-priced order, or one priced in another currency) matches: without a rate inside
/// the transaction its value cannot be shown to be below the threshold, and a policy fails closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FiatMinimum {
    pub currency: String,
    /// A decimal in `currency`, at most its minor units.
    pub amount: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("min_fiat_amount {amount:?} is not a non-negative amount of {currency}")]
    MinFiat { currency: String, amount: String },
    #[error("approvals_required must be between 1 and {MAX_APPROVALS}, not {0}")]
    ApprovalsRequired(u8),
    #[error("min_amount {0:?} is not a non-negative decimal within the ledger's range")]
    MinAmount(String),
    #[error("name must not be empty")]
    NoName,
}

impl ApprovalPolicy {
    /// Refuses a policy that could never be satisfied or read.
    pub fn check(&self) -> Result<(), PolicyError> {
        if self.name.trim().is_empty() {
            return Err(PolicyError::NoName);
        }
        if !(1..=MAX_APPROVALS).contains(&self.approvals_required) {
            return Err(PolicyError::ApprovalsRequired(self.approvals_required));
        }
        if let Some(m) = &self.min_fiat {
            let bad = || PolicyError::MinFiat { currency: m.currency.clone(), amount: m.amount.clone() };
            let decimals = crate::rate::fiat_decimals(&m.currency).ok_or_else(bad)?;
            Amount::parse_decimal(&m.amount, decimals, decimals).map_err(|_| bad())?;
        }
        if let Some(min) = &self.min_amount {
            // Read at its own precision here (matching reads it at the refund token's).
            let scale = min.split_once('.').map_or(0, |(_, f)| f.len()) as u32;
            Amount::parse_decimal(min, scale, scale).map_err(|_| PolicyError::MinAmount(min.clone()))?;
        }
        Ok(())
    }

    /// Whether this policy covers the refund.
    pub fn matches(&self, r: &RefundFacts<'_>) -> bool {
        let listed =
            |list: &[String], v: Option<&str>| list.is_empty() || v.is_some_and(|v| list.iter().any(|x| x == v));
        listed(&self.token_ids, Some(r.token_id))
            && listed(&self.merchant_ids, r.merchant_id)
            && (self.refund_types.is_empty() || self.refund_types.contains(&r.refund_type))
            && (self.channels.is_empty() || self.channels.contains(&r.channel))
            && (!self.new_destination_only || r.destination_is_new)
            && self.min_amount.as_deref().is_none_or(|min| at_least(r.amount, min, r.decimals))
            && self.min_fiat.as_ref().is_none_or(|m| fiat_at_least(r.fiat, m))
    }
}

/// `amount` ≥ the decimal `min` in a token of `decimals`. A minimum finer than the token's precision
/// is rounded up (a refund must reach it); one beyond the ledger's range is never reached.
fn at_least(amount: Amount, min: &str, decimals: u32) -> bool {
    let (whole, frac) = min.split_once('.').unwrap_or((min, ""));
    let kept = &frac[..frac.len().min(decimals as usize)];
    let dropped_nonzero = frac.len() > kept.len() && frac[kept.len()..].bytes().any(|b| b != b'0');
    let truncated = if kept.is_empty() { whole.to_owned() } else { format!("{whole}.{kept}") };
    let Ok(floor) = Amount::parse_decimal(&truncated, decimals, decimals) else { return false };
    match dropped_nonzero {
        false => amount >= floor,
        true => amount > floor,
    }
}

/// Whether a refund worth `fiat` (currency, minor units) reaches `min`; a refund with no value in
/// `min`'s currency does (see [`FiatMinimum`]).
fn fiat_at_least(fiat: Option<(&str, Amount)>, min: &FiatMinimum) -> bool {
    let Some(decimals) = crate::rate::fiat_decimals(&min.currency) else { return true };
    let Ok(threshold) = Amount::parse_decimal(&min.amount, decimals, decimals) else { return true };
    match fiat {
        Some((currency, value)) if currency == min.currency => value >= threshold,
        _ => true,
    }
}

/// Reads one of a policy's lists of names (`refund_types` with [`RefundSource::parse`], `sources` with
/// [`RefundChannel::parse`]); `Err` says which field holds which unknown value.
pub fn parse_names<T>(field: &str, names: &[String], parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    names
        .iter()
        .map(|n| parse(n).ok_or_else(|| format!("{field} holds {n:?}, which is not one of its values")))
        .collect()
}

/// What a policy looks at in a refund.
#[derive(Debug, Clone, Copy)]
pub struct RefundFacts<'a> {
    pub token_id: &'a str,
    pub decimals: u32,
    pub merchant_id: Option<&'a str>,
    pub refund_type: RefundSource,
    pub amount: Amount,
    pub destination_is_new: bool,
    pub channel: RefundChannel,
    /// What the refund counts for against its order's fiat price: (currency, minor units).
    pub fiat: Option<(&'a str, Amount)>,
}

/// The policy that applies to a refund, if any: the strictest of those that match.
pub fn applicable<'p>(policies: &'p [ApprovalPolicy], refund: &RefundFacts<'_>) -> Option<&'p ApprovalPolicy> {
    policies
        .iter()
        .filter(|p| p.matches(refund))
        .max_by(|a, b| a.approvals_required.cmp(&b.approvals_required).then_with(|| b.policy_id.cmp(&a.policy_id)))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Rejected,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "Pending",
            ApprovalStatus::Approved => "Approved",
            ApprovalStatus::Rejected => "Rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Pending" => Some(ApprovalStatus::Pending),
            "Approved" => Some(ApprovalStatus::Approved),
            "Rejected" => Some(ApprovalStatus::Rejected),
            _ => None,
        }
    }
}

impl fmt::Display for ApprovalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One approver's approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vote {
    pub approver: String,
    pub at: i64,
    pub comment: Option<String>,
}

/// A refund's approval under the policy that applied when it was made (a later change of the policy
/// does not move it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub policy_id: String,
    pub required: u8,
    pub approvals: Vec<Vote>,
    pub status: ApprovalStatus,
    /// Why it was rejected, with who rejected it.
    pub rejection: Option<Vote>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    #[error("the refund's initiator cannot approve or reject it")]
    OwnRefund,
    #[error("the approval is {0} already")]
    Decided(ApprovalStatus),
}

impl Approval {
    pub fn new(policy: &ApprovalPolicy) -> Self {
        Approval {
            policy_id: policy.policy_id.clone(),
            required: policy.approvals_required,
            approvals: Vec::new(),
            status: ApprovalStatus::Pending,
            rejection: None,
        }
    }

    fn open(&self, approver: &str, initiator: &str) -> Result<(), ApprovalError> {
        if approver == initiator {
            return Err(ApprovalError::OwnRefund);
        }
        if self.status != ApprovalStatus::Pending {
            return Err(ApprovalError::Decided(self.status));
        }
        Ok(())
    }

    /// Adds `vote` unless its approver approved already (an approver counts once); `Approved` once the
    /// policy's number of distinct approvers is reached. `true` if the vote counted.
    pub fn approve(&mut self, vote: Vote, initiator: &str) -> Result<bool, ApprovalError> {
        self.open(&vote.approver, initiator)?;
        if self.approvals.iter().any(|v| v.approver == vote.approver) {
            return Ok(false);
        }
        self.approvals.push(vote);
        if self.approvals.len() >= usize::from(self.required) {
            self.status = ApprovalStatus::Approved;
        }
        Ok(true)
    }

    /// Ends the approval: the refund fails.
    pub fn reject(&mut self, vote: Vote, initiator: &str) -> Result<(), ApprovalError> {
        self.open(&vote.approver, initiator)?;
        self.status = ApprovalStatus::Rejected;
        self.rejection = Some(vote);
        Ok(())
    }

    /// What was approved no longer stands (the destination changed): approvals start again. A
    /// rejected approval stays rejected.
    pub fn reset(&mut self) {
        if self.status != ApprovalStatus::Rejected {
            self.approvals.clear();
            self.status = ApprovalStatus::Pending;
        }
    }

    /// Whether the payout may start.
    pub fn releases_payout(&self) -> bool {
        self.status == ApprovalStatus::Approved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(id: &str, required: u8) -> ApprovalPolicy {
        ApprovalPolicy {
            policy_id: id.into(),
            name: id.into(),
            token_ids: vec![],
            merchant_ids: vec![],
            refund_types: vec![],
            min_amount: None,
            min_fiat: None,
            new_destination_only: false,
            channels: vec![],
            approvals_required: required,
        }
    }

    fn refund(amount: u128) -> RefundFacts<'static> {
        RefundFacts {
            token_id: "ETH_USDT",
            decimals: 6,
            merchant_id: Some("M1"),
            refund_type: RefundSource::Merchant,
            amount: Amount::from_base_units(amount),
            destination_is_new: true,
            channel: RefundChannel::Api,
            fiat: None,
        }
    }

    fn vote(who: &str) -> Vote {
        Vote { approver: who.into(), at: 1, comment: None }
    }

    #[test]
    fn an_empty_policy_matches_everything_and_each_criterion_narrows_it() {
        let r = refund(1_000_000);
        assert!(policy("P", 1).matches(&r));
        let narrowed = [
            ApprovalPolicy { token_ids: vec!["TRON_USDT".into()], ..policy("P", 1) },
            ApprovalPolicy { merchant_ids: vec!["M2".into()], ..policy("P", 1) },
            ApprovalPolicy { refund_types: vec![RefundSource::Psp], ..policy("P", 1) },
            ApprovalPolicy { channels: vec![RefundChannel::Link], ..policy("P", 1) },
            ApprovalPolicy { min_amount: Some("1.000001".into()), ..policy("P", 1) },
        ];
        for p in &narrowed {
            assert!(!p.matches(&r), "{p:?}");
        }
        let old_destination = RefundFacts { destination_is_new: false, ..r };
        assert!(!ApprovalPolicy { new_destination_only: true, ..policy("P", 1) }.matches(&old_destination));
        assert!(ApprovalPolicy { new_destination_only: true, ..policy("P", 1) }.matches(&r));
    }

    #[test]
    fn a_merchant_list_never_matches_a_refund_without_a_merchant() {
        let psp_refund = RefundFacts { merchant_id: None, refund_type: RefundSource::Psp, ..refund(1) };
        assert!(!ApprovalPolicy { merchant_ids: vec!["M1".into()], ..policy("P", 1) }.matches(&psp_refund));
    }

    #[test]
    fn a_fiat_minimum_reads_the_refunds_value_and_fails_closed() {
        let min = |amount: &str| ApprovalPolicy {
            min_fiat: Some(FiatMinimum { currency: "EUR".into(), amount: amount.into() }),
            ..policy("P", 1)
        };
        let worth = |currency: &'static str, cents: u128| RefundFacts {
            fiat: Some((currency, Amount::from_base_units(cents))),
            ..refund(1)
        };
        assert!(min("30").matches(&worth("EUR", 3000)), "exactly €30");
        assert!(!min("30").matches(&worth("EUR", 2999)));
        assert!(min("30.5").matches(&worth("EUR", 3050)) && !min("30.5").matches(&worth("EUR", 3049)));
        // No value in EUR: in another currency, or none at all.
        assert!(min("30").matches(&worth("USD", 1)));
        assert!(min("30").matches(&refund(1)));
        assert!(min("30").check().is_ok());
        for (currency, amount) in [("EUR", "1.001"), ("EUR", "-1"), ("XYZ", "1"), ("JPY", "1.5")] {
            let p = ApprovalPolicy {
                min_fiat: Some(FiatMinimum { currency: currency.into(), amount: amount.into() }),
                ..policy("P", 1)
            };
            assert!(matches!(p.check(), Err(PolicyError::MinFiat { .. })), "{currency} {amount}");
        }
    }

    #[test]
    fn the_minimum_is_read_in_the_refunds_token_and_reached_inclusively() {
        let p = ApprovalPolicy { min_amount: Some("1000".into()), ..policy("P", 1) };
        assert!(p.matches(&refund(1_000_000_000)), "exactly 1000 USDT");
        assert!(!p.matches(&refund(999_999_999)));
        // Finer than the token: 0.0000005 of a 6-decimal token is reached only by a whole base unit.
        let fine = ApprovalPolicy { min_amount: Some("0.0000005".into()), ..policy("P", 1) };
        assert!(!fine.matches(&refund(0)));
        assert!(fine.matches(&refund(1)));
        let beyond = ApprovalPolicy { min_amount: Some("1e9".into()), ..policy("P", 1) };
        assert!(!beyond.matches(&refund(u128::MAX)));
    }

    #[test]
    fn the_strictest_matching_policy_applies_whatever_the_order() {
        let low = ApprovalPolicy { min_amount: Some("10".into()), ..policy("P-low", 1) };
        let high = ApprovalPolicy { min_amount: Some("1000".into()), ..policy("P-high", 3) };
        let other_token = ApprovalPolicy { token_ids: vec!["BTC".into()], ..policy("P-btc", 5) };
        let all = [low.clone(), high.clone(), other_token.clone()];
        let reversed = [other_token, high.clone(), low.clone()];
        assert_eq!(applicable(&all, &refund(2_000_000_000)), Some(&high));
        assert_eq!(applicable(&reversed, &refund(2_000_000_000)), Some(&high));
        assert_eq!(applicable(&all, &refund(50_000_000)), Some(&low));
        assert_eq!(applicable(&all, &refund(1_000_000)), None);
        let (a, b) = (policy("P-a", 2), policy("P-b", 2));
        assert_eq!(applicable(&[b.clone(), a.clone()], &refund(1)), Some(&a), "ties: the lowest id");
    }

    #[test]
    fn policies_that_cannot_be_met_or_read_are_refused() {
        assert_eq!(policy("P", 0).check(), Err(PolicyError::ApprovalsRequired(0)));
        assert_eq!(policy("P", 6).check(), Err(PolicyError::ApprovalsRequired(6)));
        assert!(policy("P", 5).check().is_ok());
        assert!(ApprovalPolicy { min_amount: Some("1000".into()), ..policy("P", 1) }.check().is_ok());
        assert!(ApprovalPolicy { min_amount: Some("0.000000000000000001".into()), ..policy("P", 1) }.check().is_ok());
        let bad = ApprovalPolicy { min_amount: Some("-1".into()), ..policy("P", 1) };
        assert_eq!(bad.check(), Err(PolicyError::MinAmount("-1".into())));
        assert_eq!(ApprovalPolicy { name: " ".into(), ..policy("P", 1) }.check(), Err(PolicyError::NoName));
    }

    #[test]
    fn distinct_approvers_other_than_the_initiator_release_the_payout() {
        let mut a = Approval::new(&policy("P", 2));
        assert_eq!(a.approve(vote("maker"), "maker"), Err(ApprovalError::OwnRefund));
        assert_eq!(a.approve(vote("checker-1"), "maker"), Ok(true));
        assert_eq!(a.approve(vote("checker-1"), "maker"), Ok(false), "an approver counts once");
        assert!(!a.releases_payout());
        assert_eq!(a.approve(vote("checker-2"), "maker"), Ok(true));
        assert_eq!(a.status, ApprovalStatus::Approved);
        assert!(a.releases_payout());
        assert_eq!(a.approve(vote("checker-3"), "maker"), Err(ApprovalError::Decided(ApprovalStatus::Approved)));
    }

    #[test]
    fn one_rejection_ends_it_and_a_changed_destination_starts_approvals_again() {
        let mut a = Approval::new(&policy("P", 2));
        a.approve(vote("checker-1"), "maker").unwrap();
        a.reset();
        assert!(a.approvals.is_empty());
        assert_eq!(a.status, ApprovalStatus::Pending);
        assert_eq!(a.reject(vote("maker"), "maker"), Err(ApprovalError::OwnRefund));
        a.reject(Vote { comment: Some("wrong customer".into()), ..vote("checker-2") }, "maker").unwrap();
        assert_eq!(a.status, ApprovalStatus::Rejected);
        a.reset();
        assert_eq!(a.status, ApprovalStatus::Rejected, "a rejection stands");
        assert_eq!(a.approve(vote("checker-1"), "maker"), Err(ApprovalError::Decided(ApprovalStatus::Rejected)));
    }
}
