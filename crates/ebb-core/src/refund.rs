//! The refund state machine. Legal transitions are data ([`TRANSITIONS`]); the store moves a refund
//! only through [`RefundStatus::apply`] and then compare-and-sets the row on the old status.

use std::fmt;

/// Cobo's refund statuses. A cancelled refund is `Failed` with failed reason "Cancelled": Cobo's status
/// set has no Cancelled value, and the SDK would read an unknown value as `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefundStatus {
    /// Created without a receiving address; waits for `PUT /refunds/{id}` with `to_address`.
    PendingConfirmation,
    /// A refund link was opened; the customer has not submitted an address yet.
    AddressPending,
    /// The customer submitted an address through the link.
    AddressSubmitted,
    /// Ready to pay out.
    Pending,
    /// At least one payout transaction is in flight.
    Processing,
    Completed,
    PartiallyCompleted,
    Failed,
}

/// What happens to a refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefundEvent {
    /// The merchant set or changed the receiving address through the API.
    AddressSet,
    LinkOpened,
    LinkAddressSubmitted,
    /// An address submitted through a link was accepted for payout.
    LinkAddressConfirmed,
    /// The merchant asked for a new link for a refund whose payout has not started: the address
    /// submitted before no longer stands, the customer submits again.
    Relinked,
    PayoutStarted,
    PayoutCompleted,
    PayoutPartiallyCompleted,
    PayoutFailed,
    Cancelled,
}

use RefundEvent as E;
use RefundStatus as S;

/// Every legal move: (from, event, to). Anything not listed is refused.
pub const TRANSITIONS: &[(RefundStatus, RefundEvent, RefundStatus)] = &[
    (S::PendingConfirmation, E::AddressSet, S::Pending),
    (S::Pending, E::AddressSet, S::Pending),
    (S::PendingConfirmation, E::LinkOpened, S::AddressPending),
    (S::AddressPending, E::LinkOpened, S::AddressPending),
    (S::AddressPending, E::LinkAddressSubmitted, S::AddressSubmitted),
    (S::PendingConfirmation, E::LinkAddressSubmitted, S::AddressSubmitted),
    (S::AddressSubmitted, E::LinkAddressConfirmed, S::Pending),
    (S::Pending, E::Relinked, S::AddressPending),
    (S::Pending, E::PayoutStarted, S::Processing),
    (S::Processing, E::PayoutCompleted, S::Completed),
    (S::Processing, E::PayoutPartiallyCompleted, S::PartiallyCompleted),
    (S::Processing, E::PayoutFailed, S::Failed),
    (S::Pending, E::PayoutFailed, S::Failed),
    (S::PendingConfirmation, E::Cancelled, S::Failed),
    (S::AddressPending, E::Cancelled, S::Failed),
    (S::AddressSubmitted, E::Cancelled, S::Failed),
    (S::Pending, E::Cancelled, S::Failed),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a refund in status {from} cannot take {event:?}")]
pub struct InvalidTransition {
    pub from: RefundStatus,
    pub event: RefundEvent,
}

pub const CANCELLED_REASON: &str = "Cancelled";

impl RefundStatus {
    pub const ALL: [RefundStatus; 8] = [
        S::PendingConfirmation,
        S::AddressPending,
        S::AddressSubmitted,
        S::Pending,
        S::Processing,
        S::Completed,
        S::PartiallyCompleted,
        S::Failed,
    ];

    pub fn apply(self, event: RefundEvent) -> Result<RefundStatus, InvalidTransition> {
        TRANSITIONS
            .iter()
            .find(|(from, e, _)| *from == self && *e == event)
            .map(|(_, _, to)| *to)
            .ok_or(InvalidTransition { from: self, event })
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, S::Completed | S::PartiallyCompleted | S::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            S::PendingConfirmation => "PendingConfirmation",
            S::AddressPending => "AddressPending",
            S::AddressSubmitted => "AddressSubmitted",
            S::Pending => "Pending",
            S::Processing => "Processing",
            S::Completed => "Completed",
            S::PartiallyCompleted => "PartiallyCompleted",
            S::Failed => "Failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for RefundStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which balance pays for a refund (Cobo's `refund_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefundSource {
    Merchant,
    Psp,
}

impl RefundSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Merchant => "Merchant",
            Self::Psp => "Psp",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Merchant" => Some(Self::Merchant),
            "Psp" => Some(Self::Psp),
            _ => None,
        }
    }
}

/// A rule a refund request breaks, before any balance or order is looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefundRuleError {
    #[error("a merchant fee can only be charged on a refund paid by the merchant (refund type Merchant)")]
    FeeWithoutMerchantSource,
    #[error("the merchant fee must be less than the refund amount")]
    FeeNotBelowAmount,
    #[error("a refund paid by the merchant (refund type Merchant) needs a merchant")]
    MerchantSourceWithoutMerchant,
}

/// The rules a refund request must keep on its own: a merchant fee only on a merchant-paid refund and
/// less than the refunded amount (the customer gets `amount - fee`, which must be positive), and a
/// merchant-paid refund names its merchant (directly or through its order).
pub fn check_request(
    source: RefundSource,
    amount: crate::Amount,
    merchant_fee: Option<crate::Amount>,
    has_merchant: bool,
) -> Result<(), RefundRuleError> {
    if let Some(fee) = merchant_fee {
        if source != RefundSource::Merchant {
            return Err(RefundRuleError::FeeWithoutMerchantSource);
        }
        if fee >= amount {
            return Err(RefundRuleError::FeeNotBelowAmount);
        }
    }
    if source == RefundSource::Merchant && !has_merchant {
        return Err(RefundRuleError::MerchantSourceWithoutMerchant);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_names() {
        for s in RefundStatus::ALL {
            assert_eq!(RefundStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(RefundStatus::parse("Cancelled"), None);
    }

    #[test]
    fn terminal_statuses_accept_no_event() {
        let events = [
            E::AddressSet,
            E::LinkOpened,
            E::LinkAddressSubmitted,
            E::LinkAddressConfirmed,
            E::Relinked,
            E::PayoutStarted,
            E::PayoutCompleted,
            E::PayoutPartiallyCompleted,
            E::PayoutFailed,
            E::Cancelled,
        ];
        for s in RefundStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for e in events {
                assert!(s.apply(e).is_err(), "{s} must not take {e:?}");
            }
        }
    }

    #[test]
    fn cancel_is_only_possible_before_processing() {
        assert_eq!(S::Pending.apply(E::Cancelled), Ok(S::Failed));
        assert_eq!(S::PendingConfirmation.apply(E::Cancelled), Ok(S::Failed));
        assert!(S::Processing.apply(E::Cancelled).is_err());
    }

    #[test]
    fn the_api_path_and_the_link_path_both_reach_pending() {
        assert_eq!(S::PendingConfirmation.apply(E::AddressSet), Ok(S::Pending));
        let linked = S::PendingConfirmation
            .apply(E::LinkOpened)
            .and_then(|s| s.apply(E::LinkAddressSubmitted))
            .and_then(|s| s.apply(E::LinkAddressConfirmed));
        assert_eq!(linked, Ok(S::Pending));
        assert!(S::Processing.apply(E::AddressSet).is_err());
    }

    #[test]
    fn a_new_link_reopens_only_a_refund_whose_payout_has_not_started() {
        assert_eq!(S::Pending.apply(E::Relinked), Ok(S::AddressPending));
        assert!(S::Processing.apply(E::Relinked).is_err());
    }

    #[test]
    fn a_fee_is_only_for_merchant_refunds_and_below_the_amount() {
        use crate::Amount;
        let a = |n| Amount::from_base_units(n);
        assert_eq!(check_request(RefundSource::Merchant, a(10), Some(a(9)), true), Ok(()));
        assert_eq!(check_request(RefundSource::Psp, a(10), None, false), Ok(()));
        assert_eq!(
            check_request(RefundSource::Merchant, a(10), Some(a(10)), true),
            Err(RefundRuleError::FeeNotBelowAmount)
        );
        assert_eq!(
            check_request(RefundSource::Psp, a(10), Some(a(1)), true),
            Err(RefundRuleError::FeeWithoutMerchantSource)
        );
        assert_eq!(
            check_request(RefundSource::Merchant, a(10), None, false),
            Err(RefundRuleError::MerchantSourceWithoutMerchant)
        );
    }

    #[test]
    fn the_table_has_no_duplicate_moves() {
        for (i, a) in TRANSITIONS.iter().enumerate() {
            for b in &TRANSITIONS[i + 1..] {
                assert!(!(a.0 == b.0 && a.1 == b.1), "{a:?} and {b:?} overlap");
            }
        }
    }
}
