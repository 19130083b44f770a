//! Exact token amounts: decimal strings at the edges, integer base units inside.
//!
//! `"1.5"` of a 6-decimal token is `1_500_000` base units. Parsing refuses anything that cannot be
//! represented exactly (too many decimals, signs, exponents, blanks), so no rounding ever happens.

use std::fmt;

/// A non-negative amount of some token, in its base units (10^-decimals of one token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(u128);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount is empty")]
    Empty,
    #[error("amount {0:?} is not a plain decimal number (digits with at most one '.')")]
    Syntax(String),
    #[error("amount {value:?} has more than {max} decimal places")]
    TooManyDecimals { value: String, max: u32 },
    #[error("amount {0:?} is too large")]
    Overflow(String),
    #[error("amount must be greater than zero")]
    NotPositive,
}

/// The largest number of digits we accept in a decimal string: keeps parsing bounded and far
/// below u128's 38 digits even after scaling by 10^18.
const MAX_INPUT_LEN: usize = 40;

impl Amount {
    pub const ZERO: Amount = Amount(0);

    pub const fn from_base_units(units: u128) -> Self {
        Amount(units)
    }

    pub const fn base_units(self) -> u128 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Parses a decimal string of a token with `decimals` decimals, allowing at most
    /// `max_scale` digits after the point (`max_scale <= decimals`). Zero is accepted.
    pub fn parse_decimal(s: &str, decimals: u32, max_scale: u32) -> Result<Self, AmountError> {
        let max_scale = max_scale.min(decimals);
        if s.is_empty() {
            return Err(AmountError::Empty);
        }
        if s.len() > MAX_INPUT_LEN {
            return Err(AmountError::Overflow(s.chars().take(MAX_INPUT_LEN).collect()));
        }
        let (int_part, frac_part) = match s.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (s, None),
        };
        let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        let syntax_ok =
            !int_part.is_empty() && all_digits(int_part) && frac_part.is_none_or(|f| !f.is_empty() && all_digits(f));
        if !syntax_ok {
            return Err(AmountError::Syntax(s.to_owned()));
        }
        let frac = frac_part.unwrap_or("");
        // Trailing zeros carry no value: "1.500" is as exact as "1.5".
        let frac_trimmed = frac.trim_end_matches('0');
        if frac_trimmed.len() as u32 > max_scale {
            return Err(AmountError::TooManyDecimals { value: s.to_owned(), max: max_scale });
        }
        let overflow = || AmountError::Overflow(s.to_owned());
        let mut units: u128 = 0;
        for b in int_part.bytes() {
            units = units.checked_mul(10).and_then(|u| u.checked_add(u128::from(b - b'0'))).ok_or_else(overflow)?;
        }
        for i in 0..decimals as usize {
            let digit = frac_trimmed.as_bytes().get(i).map_or(0, |b| b - b'0');
            units = units.checked_mul(10).and_then(|u| u.checked_add(u128::from(digit))).ok_or_else(overflow)?;
        }
        Ok(Amount(units))
    }

    /// Like [`Amount::parse_decimal`] but refuses zero.
    pub fn parse_positive(s: &str, decimals: u32, max_scale: u32) -> Result<Self, AmountError> {
        let a = Self::parse_decimal(s, decimals, max_scale)?;
        if a.is_zero() {
            return Err(AmountError::NotPositive);
        }
        Ok(a)
    }

    /// The canonical decimal string: no trailing zeros after the point, no point for whole amounts.
    pub fn to_decimal_string(self, decimals: u32) -> String {
        let digits = self.0.to_string();
        let d = decimals as usize;
        if d == 0 {
            return digits;
        }
        let padded = if digits.len() <= d { format!("{}{}", "0".repeat(d + 1 - digits.len()), digits) } else { digits };
        let (int_part, frac_part) = padded.split_at(padded.len() - d);
        let frac = frac_part.trim_end_matches('0');
        if frac.is_empty() {
            int_part.to_owned()
        } else {
            format!("{int_part}.{frac}")
        }
    }

    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    /// `self - other`, or zero if `other` is larger.
    pub fn saturating_sub(self, other: Amount) -> Amount {
        Amount(self.0.saturating_sub(other.0))
    }

    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    /// Parses the integer base-unit string the store keeps (`"1500000"`).
    pub fn from_base_units_str(s: &str) -> Result<Self, AmountError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AmountError::Syntax(s.to_owned()));
        }
        s.parse::<u128>().map(Amount).map_err(|_| AmountError::Overflow(s.to_owned()))
    }
}

impl fmt::Display for Amount {
    /// Base units; use [`Amount::to_decimal_string`] for people.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_exactly() {
        let a = Amount::parse_decimal("1.5", 6, 6).unwrap();
        assert_eq!(a.base_units(), 1_500_000);
        assert_eq!(a.to_decimal_string(6), "1.5");
        assert_eq!(Amount::parse_decimal("0.000001", 6, 6).unwrap().base_units(), 1);
        assert_eq!(Amount::parse_decimal("10", 6, 2).unwrap().to_decimal_string(6), "10");
        assert_eq!(Amount::parse_decimal("1.500", 6, 2).unwrap().base_units(), 1_500_000);
        assert_eq!(Amount::from_base_units(1).to_decimal_string(18), "0.000000000000000001");
        assert_eq!(Amount::ZERO.to_decimal_string(6), "0");
    }

    #[test]
    fn eighteen_decimals_hold_large_amounts() {
        let a = Amount::parse_decimal("1000000000.25", 18, 2).unwrap();
        assert_eq!(a.base_units(), 1_000_000_000_250_000_000_000_000_000);
        assert_eq!(a.to_decimal_string(18), "1000000000.25");
    }

    #[test]
    fn refuses_inexact_or_malformed_input() {
        for bad in ["", ".5", "5.", "-1", "+1", "1e3", " 1", "1 ", "1,5", "0x10", "1.2.3", "NaN", "１"] {
            assert!(Amount::parse_decimal(bad, 6, 6).is_err(), "{bad:?} must be refused");
        }
        assert_eq!(
            Amount::parse_decimal("0.001", 6, 2),
            Err(AmountError::TooManyDecimals { value: "0.001".into(), max: 2 })
        );
        assert!(matches!(Amount::parse_decimal("0.0000001", 6, 18), Err(AmountError::TooManyDecimals { .. })));
        assert_eq!(Amount::parse_positive("0.00", 6, 2), Err(AmountError::NotPositive));
        assert!(matches!(Amount::parse_decimal(&"9".repeat(39), 0, 0), Err(AmountError::Overflow(_))));
        assert!(matches!(Amount::parse_decimal("999999999999999999999.1", 18, 2), Err(AmountError::Overflow(_))));
    }

    #[test]
    fn round_trips_every_scale() {
        for units in [0u128, 1, 9, 10, 123_456_789, u64::MAX as u128] {
            for dec in [0u32, 2, 6, 18] {
                let a = Amount::from_base_units(units);
                let s = a.to_decimal_string(dec);
                assert_eq!(Amount::parse_decimal(&s, dec, dec).unwrap(), a, "{units} at {dec}");
            }
        }
    }

    #[test]
    fn base_unit_strings() {
        assert_eq!(Amount::from_base_units_str("42").unwrap().base_units(), 42);
        assert!(Amount::from_base_units_str("-1").is_err());
        assert!(Amount::from_base_units_str("").is_err());
    }
}
