//! The refund state machine. Legal transitions are data ([`TRANSITIONS`]); the store moves a refund
//! only through [`RefundStatus::apply`] and then compare-and-sets the row on the old status.

use std::fmt;

use crate::ledger::{Account, Entry, LedgerError};
use crate::Amount;

/// The client's name for a refund request, which makes it idempotent within its scope: non-empty,
/// at most [`RequestId::MAX_CHARS`] characters, no control characters (it is echoed in webhooks and
/// logs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestIdError {
    #[error("request_id must not be empty")]
    Empty,
    #[error("request_id is longer than {} characters", RequestId::MAX_CHARS)]
    TooLong,
    #[error("request_id must not contain control characters")]
    ControlCharacter,
}

impl RequestId {
    pub const MAX_CHARS: usize = 128;

    pub fn parse(s: &str) -> Result<Self, RequestIdError> {
        if s.trim().is_empty() {
            return Err(RequestIdError::Empty);
        }
        if s.chars().count() > Self::MAX_CHARS {
            return Err(RequestIdError::TooLong);
        }
        if s.chars().any(char::is_control) {
            return Err(RequestIdError::ControlCharacter);
        }
        Ok(RequestId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

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
    /// An approver rejected the refund its approval policy held (`crate::approval`).
    Rejected,
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
    (S::Pending, E::Rejected, S::Failed),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a refund in status {from} cannot take {event:?}")]
pub struct InvalidTransition {
    pub from: RefundStatus,
    pub event: RefundEvent,
}

pub const CANCELLED_REASON: &str = "Cancelled";

/// The `failed_reason` of a refund an approver rejected: `Rejected: <their reason>`.
pub fn rejected_reason(reason: &str) -> String {
    format!("Rejected: {reason}")
}

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

    /// Whether a refund in this status takes an address through a refund link (it has none yet, or
    /// the customer has opened the link and not submitted one).
    pub fn takes_link_address(self) -> bool {
        matches!(self, RefundStatus::PendingConfirmation | RefundStatus::AddressPending)
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
    /// A held pay-in's funds (a disposition of Cobo's Compliance API: refunded to the sender or
    /// another address, or isolated). Only the disposition use case makes such a refund; a client
    /// asking for a refund names `Merchant` or `Psp` ([`RefundSource::parse_requested`]).
    Held,
}

impl RefundSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Merchant => "Merchant",
            Self::Psp => "Psp",
            Self::Held => "Held",
        }
    }

    /// Any source, as stored or as an approval policy names it.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Merchant" => Some(Self::Merchant),
            "Psp" => Some(Self::Psp),
            "Held" => Some(Self::Held),
            _ => None,
        }
    }

    /// A source a client may ask a refund to be paid from: `Merchant` or `Psp`.
    pub fn parse_requested(s: &str) -> Option<Self> {
        Self::parse(s).filter(|src| *src != Self::Held)
    }
}

/// A rule a refund request breaks, before any balance or order is looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefundRuleError {
    #[error("a merchant fee can only be charged on a refund paid by the merchant (refund type Merchant)")]
    FeeWithoutMerchantSource,
    #[error("the merchant fee must be less than the refund amount")]
    FeeNotBelowAmount,
}

/// The rules a refund request must keep on its own: a merchant fee only on a merchant-paid refund and
/// less than the refunded amount (the customer gets `amount - fee`, which must be positive). Which
/// merchant pays is decided with the order ([`refund_merchant`]).
pub fn check_request(
    source: RefundSource,
    amount: Amount,
    merchant_fee: Option<Amount>,
) -> Result<(), RefundRuleError> {
    if let Some(fee) = merchant_fee {
        if source != RefundSource::Merchant {
            return Err(RefundRuleError::FeeWithoutMerchantSource);
        }
        if fee >= amount {
            return Err(RefundRuleError::FeeNotBelowAmount);
        }
    }
    Ok(())
}

/// The order a refund names, as far as the refund's rules need it.
#[derive(Debug, Clone, Copy)]
pub struct OrderFacts<'a> {
    pub order_id: &'a str,
    pub merchant_id: &'a str,
    pub token_id: &'a str,
}

/// Why a refund cannot be for the merchant or order it names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefundPartyError {
    #[error("order {order_id} belongs to another merchant")]
    OrderOfAnotherMerchant { order_id: String },
    #[error("order {order_id} was paid in {paid}, not {asked}")]
    OrderPaidInAnotherToken { order_id: String, paid: String, asked: String },
    /// The refund is for a merchant other than the one the requester is confined to (or none):
    /// reported as "merchant not found", so a merchant's key cannot learn which merchants exist.
    #[error("merchant {merchant_id:?} not found")]
    OutsideScope { merchant_id: String },
    #[error("merchant_id is required when refund_type is Merchant")]
    MerchantSourceWithoutMerchant,
}

/// Which merchant a refund is for: the one its order belongs to, else the one requested. The order
/// must belong to the requested merchant and have been paid in the refunded token; a requester confined
/// to one merchant (`scope`) refunds only that merchant; a merchant-paid refund needs a merchant.
pub fn refund_merchant(
    requested: Option<&str>,
    order: Option<OrderFacts<'_>>,
    token_id: &str,
    scope: Option<&str>,
    source: RefundSource,
) -> Result<Option<String>, RefundPartyError> {
    let mut merchant = requested.map(str::to_owned);
    if let Some(order) = order {
        if requested.is_some_and(|m| m != order.merchant_id) {
            return Err(RefundPartyError::OrderOfAnotherMerchant { order_id: order.order_id.to_owned() });
        }
        if order.token_id != token_id {
            return Err(RefundPartyError::OrderPaidInAnotherToken {
                order_id: order.order_id.to_owned(),
                paid: order.token_id.to_owned(),
                asked: token_id.to_owned(),
            });
        }
        merchant = Some(order.merchant_id.to_owned());
    }
    if let Some(scope) = scope {
        if merchant.as_deref() != Some(scope) {
            return Err(RefundPartyError::OutsideScope { merchant_id: merchant.unwrap_or_default() });
        }
    }
    if merchant.is_none() && source == RefundSource::Merchant {
        return Err(RefundPartyError::MerchantSourceWithoutMerchant);
    }
    Ok(merchant)
}

/// An order's refunded total after refunding `amount` more: never beyond what it received. `Err` holds
/// what is left to refund.
pub fn refunded_after(received: Amount, refunded: Amount, amount: Amount) -> Result<Amount, Amount> {
    let refundable = received.checked_sub(refunded).unwrap_or(Amount::ZERO);
    if amount > refundable {
        return Err(refundable);
    }
    refunded.checked_add(amount).ok_or(refundable)
}

/// The ledger entries that reserve a refund's funds at creation, or with `release` give them back: the
/// amount, and the merchant fee if any, move between the paying account and `Reserved`. Keeping the fee
/// reserved until payout (rather than crediting the PSP at creation) means a cancel can always return
/// it: the PSP cannot have spent it in between.
pub fn reservation_entries(
    payer: &Account,
    token_id: &str,
    amount: Amount,
    fee: Option<Amount>,
    release: bool,
) -> Result<(Entry, Option<Entry>), LedgerError> {
    let (from, to) = if release { (Account::Reserved, payer.clone()) } else { (payer.clone(), Account::Reserved) };
    let amount = Entry::builder().transfer(from.clone(), to.clone(), token_id, amount.base_units())?.build()?;
    let fee = match fee.filter(|f| !f.is_zero()) {
        Some(fee) => Some(Entry::builder().transfer(from, to, token_id, fee.base_units())?.build()?),
        None => None,
    };
    Ok((amount, fee))
}

/// The ledger entries of a transfer of `amount` the chain confirmed: it leaves `Reserved` for the
/// world; when the refund is paid in full (`last`), its merchant fee goes to the PSP (a fee is charged
/// only for a refund paid in full).
pub fn settlement_entries(
    token_id: &str,
    amount: Amount,
    fee: Option<Amount>,
    last: bool,
) -> Result<(Entry, Option<Entry>), LedgerError> {
    let paid = Entry::builder().transfer(Account::Reserved, Account::World, token_id, amount.base_units())?.build()?;
    let fee = match fee.filter(|f| !f.is_zero() && last) {
        Some(fee) => {
            Some(Entry::builder().transfer(Account::Reserved, Account::Psp, token_id, fee.base_units())?.build()?)
        }
        None => None,
    };
    Ok((paid, fee))
}

/// How a refund ends whose transfer failed or could not be sent, having paid `paid` of `amount` in
/// earlier transfers: `Failed` if nothing was paid, `PartiallyCompleted` otherwise; with what is to be
/// released (the unpaid rest; the merchant fee with it, as a fee is charged only for a refund paid in
/// full). `None` if more was paid than asked, which the payout start never allows.
pub fn unpaid_ending(amount: Amount, paid: Amount) -> Option<(RefundEvent, Amount)> {
    let rest = amount.checked_sub(paid)?;
    if paid.is_zero() {
        Some((RefundEvent::PayoutFailed, rest))
    } else {
        Some((RefundEvent::PayoutPartiallyCompleted, rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_id_is_named_text_of_bounded_length() {
        assert_eq!(RequestId::parse("order-42/refund-1").unwrap().as_str(), "order-42/refund-1");
        assert_eq!(RequestId::parse("  "), Err(RequestIdError::Empty));
        assert_eq!(RequestId::parse(&"r".repeat(129)), Err(RequestIdError::TooLong));
        assert!(RequestId::parse(&"é".repeat(128)).is_ok(), "characters, not bytes");
        assert_eq!(RequestId::parse("a\nb"), Err(RequestIdError::ControlCharacter));
    }

    #[test]
    fn a_refund_that_paid_nothing_fails_and_releases_everything() {
        let amount = Amount::from_base_units(100);
        assert_eq!(unpaid_ending(amount, Amount::ZERO), Some((RefundEvent::PayoutFailed, amount)));
    }

    #[test]
    fn a_refund_paid_in_part_ends_partially_completed_releasing_the_rest() {
        let (amount, paid) = (Amount::from_base_units(100), Amount::from_base_units(30));
        assert_eq!(
            unpaid_ending(amount, paid),
            Some((RefundEvent::PayoutPartiallyCompleted, Amount::from_base_units(70)))
        );
        assert_eq!(unpaid_ending(paid, amount), None, "overpaid");
    }

    #[test]
    fn the_merchant_fee_settles_only_with_the_last_transfer() {
        let fee = Some(Amount::from_base_units(5));
        let (paid, none) = settlement_entries("ETH", Amount::from_base_units(40), fee, false).unwrap();
        assert!(none.is_none());
        assert_eq!(
            paid,
            Entry::builder().transfer(Account::Reserved, Account::World, "ETH", 40).unwrap().build().unwrap()
        );
        let (_, fee) = settlement_entries("ETH", Amount::from_base_units(60), fee, true).unwrap();
        assert_eq!(
            fee,
            Some(Entry::builder().transfer(Account::Reserved, Account::Psp, "ETH", 5).unwrap().build().unwrap())
        );
        let (_, zero) = settlement_entries("ETH", Amount::from_base_units(60), Some(Amount::ZERO), true).unwrap();
        assert!(zero.is_none());
    }

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
            E::Rejected,
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
    fn only_a_refund_waiting_for_its_payout_can_be_rejected() {
        assert_eq!(S::Pending.apply(E::Rejected), Ok(S::Failed));
        for s in RefundStatus::ALL.into_iter().filter(|s| *s != S::Pending) {
            assert!(s.apply(E::Rejected).is_err(), "{s} must not take Rejected");
        }
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
        let a = Amount::from_base_units;
        assert_eq!(check_request(RefundSource::Merchant, a(10), Some(a(9))), Ok(()));
        assert_eq!(check_request(RefundSource::Psp, a(10), None), Ok(()));
        assert_eq!(check_request(RefundSource::Merchant, a(10), Some(a(10))), Err(RefundRuleError::FeeNotBelowAmount));
        assert_eq!(check_request(RefundSource::Psp, a(10), Some(a(1))), Err(RefundRuleError::FeeWithoutMerchantSource));
    }

    #[test]
    fn a_refund_is_for_its_orders_merchant_in_its_orders_token_within_the_requesters_scope() {
        let order = OrderFacts { order_id: "O1", merchant_id: "M1", token_id: "ETH_USDT" };
        let m = RefundSource::Merchant;
        assert_eq!(refund_merchant(None, Some(order), "ETH_USDT", None, m), Ok(Some("M1".into())));
        assert_eq!(refund_merchant(Some("M1"), Some(order), "ETH_USDT", Some("M1"), m), Ok(Some("M1".into())));
        assert!(matches!(
            refund_merchant(Some("M2"), Some(order), "ETH_USDT", None, m),
            Err(RefundPartyError::OrderOfAnotherMerchant { .. })
        ));
        assert!(matches!(
            refund_merchant(None, Some(order), "ETH_USDC", None, m),
            Err(RefundPartyError::OrderPaidInAnotherToken { .. })
        ));
        assert_eq!(
            refund_merchant(None, Some(order), "ETH_USDT", Some("M2"), m),
            Err(RefundPartyError::OutsideScope { merchant_id: "M1".into() })
        );
        assert_eq!(
            refund_merchant(None, None, "ETH_USDT", None, m),
            Err(RefundPartyError::MerchantSourceWithoutMerchant)
        );
        assert_eq!(refund_merchant(None, None, "ETH_USDT", None, RefundSource::Psp), Ok(None));
    }

    #[test]
    fn an_order_is_never_refunded_beyond_what_it_received() {
        let a = Amount::from_base_units;
        assert_eq!(refunded_after(a(10), a(4), a(6)), Ok(a(10)));
        assert_eq!(refunded_after(a(10), a(4), a(7)), Err(a(6)));
        // A refunded total above the received one (never stored) leaves nothing to refund.
        assert_eq!(refunded_after(a(3), a(4), a(1)), Err(Amount::ZERO));
    }

    #[test]
    fn a_reservation_and_its_release_are_mirror_entries_with_the_fee_apart() {
        let payer = Account::Merchant("M1".into());
        let a = Amount::from_base_units;
        let (amount, fee) = reservation_entries(&payer, "ETH_USDT", a(10), Some(a(2)), false).unwrap();
        let (back, fee_back) = reservation_entries(&payer, "ETH_USDT", a(10), Some(a(2)), true).unwrap();
        let flip = |e: &Entry| e.postings().iter().map(|p| (p.account.clone(), -p.delta)).collect::<Vec<_>>();
        let same = |e: &Entry| e.postings().iter().map(|p| (p.account.clone(), p.delta)).collect::<Vec<_>>();
        let mut x = flip(&amount);
        let mut y = same(&back);
        x.sort_by_key(|p| p.0.key());
        y.sort_by_key(|p| p.0.key());
        assert_eq!(x, y);
        assert!(same(&amount).contains(&(Account::Reserved, 10)));
        assert!(same(&fee.unwrap()).contains(&(Account::Reserved, 2)));
        assert!(same(&fee_back.unwrap()).contains(&(payer.clone(), 2)));
        assert!(reservation_entries(&payer, "ETH_USDT", a(10), Some(Amount::ZERO), false).unwrap().1.is_none());
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
