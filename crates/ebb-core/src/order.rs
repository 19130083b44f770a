//! Pay-in order statuses and their legal moves.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderStatus {
    Pending,
    /// A payment was seen but is not yet confirmed.
    Processing,
    Completed,
    Expired,
    /// Paid less than the payable amount minus the tolerance.
    Underpaid,
}

use OrderStatus as S;

const MOVES: &[(OrderStatus, OrderStatus)] = &[
    (S::Pending, S::Processing),
    (S::Pending, S::Completed),
    (S::Pending, S::Underpaid),
    (S::Pending, S::Expired),
    (S::Processing, S::Completed),
    (S::Processing, S::Underpaid),
    // The only payment seen left the chain (a reorg) before its confirmations.
    (S::Processing, S::Pending),
    (S::Underpaid, S::Completed),
    (S::Underpaid, S::Underpaid),
];

impl OrderStatus {
    pub const ALL: [OrderStatus; 5] = [S::Pending, S::Processing, S::Completed, S::Expired, S::Underpaid];

    pub fn can_move_to(self, to: OrderStatus) -> bool {
        MOVES.contains(&(self, to))
    }

    /// Whether a payment may still be credited to an order in this status.
    pub fn accepts_payment(self) -> bool {
        matches!(self, S::Pending | S::Processing | S::Underpaid)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            S::Pending => "Pending",
            S::Processing => "Processing",
            S::Completed => "Completed",
            S::Expired => "Expired",
            S::Underpaid => "Underpaid",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The least developer fee of a payment of `amount` at `rate` (a fraction with up to four decimals,
/// as merchants store it): `amount × rate`, rounded down to the base unit. `None` if the rate is not
/// such a fraction or the product overflows.
pub fn developer_fee_at_rate(amount: crate::Amount, rate: &str) -> Option<crate::Amount> {
    let rate = crate::Amount::parse_decimal(rate, 4, 4).ok()?;
    amount.base_units().checked_mul(rate.base_units()).map(|n| crate::Amount::from_base_units(n / 10_000))
}

/// An order's amounts, as crediting a payment needs them (base units of the order's token).
#[derive(Debug, Clone, Copy)]
pub struct OrderAmounts {
    pub payable: crate::Amount,
    pub tolerance: crate::Amount,
    pub received: crate::Amount,
    /// The developer fee the PSP takes from the order's payments, and how much of it it has taken.
    pub fee: crate::Amount,
    pub fee_credited: crate::Amount,
}

/// What crediting one payment does to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaymentCredit {
    /// The order's received total after the payment.
    pub received: crate::Amount,
    /// The part of the payment that goes to the PSP as the order's fee, and the rest, the merchant's.
    pub fee_now: crate::Amount,
    pub to_merchant: crate::Amount,
    pub status: OrderStatus,
    /// The order took no more payments (`Completed`, `Expired`): credited as a late payment, its status
    /// unchanged.
    pub late: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditError {
    #[error("the order's received amount would overflow")]
    Overflow,
    #[error("an order cannot move from {0} to {1}")]
    IllegalMove(OrderStatus, OrderStatus),
}

/// Credits a payment of `amount` to an order in `status`: the fee is taken first until the order's fee
/// is covered, the rest is the merchant's; an open order is `Completed` once it has received its
/// payable amount less the tolerance, else `Underpaid`; an order that takes no more payments keeps its
/// status and the payment is late.
pub fn credit_payment(
    status: OrderStatus,
    order: OrderAmounts,
    amount: crate::Amount,
) -> Result<PaymentCredit, CreditError> {
    let received = order.received.checked_add(amount).ok_or(CreditError::Overflow)?;
    let fee_left = order.fee.checked_sub(order.fee_credited).unwrap_or(crate::Amount::ZERO);
    let fee_now = fee_left.min(amount);
    let to_merchant = amount.checked_sub(fee_now).expect("fee_now <= amount");
    let late = !status.accepts_payment();
    let next = if late {
        status
    } else if received.checked_add(order.tolerance).is_some_and(|r| r >= order.payable) {
        S::Completed
    } else {
        S::Underpaid
    };
    if status != next && !status.can_move_to(next) {
        return Err(CreditError::IllegalMove(status, next));
    }
    Ok(PaymentCredit { received, fee_now, to_merchant, status: next, late })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amounts(payable: u128, tolerance: u128, received: u128, fee: u128, fee_credited: u128) -> OrderAmounts {
        let a = crate::Amount::from_base_units;
        OrderAmounts {
            payable: a(payable),
            tolerance: a(tolerance),
            received: a(received),
            fee: a(fee),
            fee_credited: a(fee_credited),
        }
    }

    #[test]
    fn a_payment_pays_the_fee_first_and_completes_the_order_within_its_tolerance() {
        let a = crate::Amount::from_base_units;
        let c = credit_payment(S::Pending, amounts(100, 5, 0, 3, 0), a(95)).unwrap();
        assert_eq!((c.received, c.fee_now, c.to_merchant, c.status, c.late), (a(95), a(3), a(92), S::Completed, false));
        let c = credit_payment(S::Pending, amounts(100, 5, 0, 3, 0), a(2)).unwrap();
        assert_eq!((c.fee_now, c.to_merchant, c.status), (a(2), a(0), S::Underpaid));
        let c = credit_payment(S::Underpaid, amounts(100, 0, 2, 3, 2), a(98)).unwrap();
        assert_eq!((c.fee_now, c.to_merchant, c.status), (a(1), a(97), S::Completed));
    }

    #[test]
    fn a_payment_to_a_finished_order_is_late_and_changes_no_status() {
        let a = crate::Amount::from_base_units;
        for s in [S::Completed, S::Expired] {
            let c = credit_payment(s, amounts(100, 0, 100, 3, 3), a(7)).unwrap();
            assert_eq!((c.received, c.fee_now, c.to_merchant, c.status, c.late), (a(107), a(0), a(7), s, true));
        }
        assert_eq!(credit_payment(S::Pending, amounts(1, 0, u128::MAX, 0, 0), a(1)), Err(CreditError::Overflow));
    }

    #[test]
    fn the_developer_fee_at_a_rate_rounds_down_to_the_base_unit() {
        use crate::Amount;
        assert_eq!(
            developer_fee_at_rate(Amount::from_base_units(1_000_000), "0.0125"),
            Some(Amount::from_base_units(12_500))
        );
        assert_eq!(developer_fee_at_rate(Amount::from_base_units(99), "0.01"), Some(Amount::ZERO));
        assert_eq!(developer_fee_at_rate(Amount::from_base_units(u128::MAX), "0.5"), None);
        assert_eq!(developer_fee_at_rate(Amount::from_base_units(1), "0.00001"), None);
    }

    #[test]
    fn completed_and_expired_orders_are_final() {
        for to in OrderStatus::ALL {
            assert!(!S::Completed.can_move_to(to));
            assert!(!S::Expired.can_move_to(to));
        }
        assert!(!S::Completed.accepts_payment());
        assert!(S::Underpaid.can_move_to(S::Completed));
    }
}
