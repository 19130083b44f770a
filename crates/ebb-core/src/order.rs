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

#[cfg(test)]
mod tests {
    use super::*;

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
