//! Exchange rates and fiat amounts: exact decimals, and the one place amounts cross between a token
//! and a currency.
//!
//! A [`Rate`] is how many units of a fiat currency one whole token is worth (`0.92` EUR per USDT), as
//! Cobo's `exchange_rate` is written. It is an exact decimal (`mantissa / 10^scale`), parsed from
//! text without ever passing through a float, so `"0.1"` is one tenth.
//!
//! Rounding, always to the smaller unit of the side being computed, in the direction that protects
//! the party not choosing the number:
//! - an order's payable amount from its fiat price rounds **up** to the token's base unit (the shop
//!   is never paid less than its price): [`Rounding::Up`];
//! - a refund asked in fiat rounds **down** to the token's base unit (nobody is refunded more than
//!   asked): [`Rounding::Down`];
//! - a token amount counted in fiat (against an order's price) rounds **up** to the currency's minor
//!   unit, so the fiat cap is never overrun by rounding.

use std::fmt;

use ruint::aliases::U256;

use crate::Amount;

/// At most this many digits in a rate, and at most this many after its point: a price feed's answer
/// carries 8–18; the bound keeps every product inside 256 bits.
const MAX_DIGITS: usize = 36;
const MAX_SCALE: u32 = 30;

/// A positive exchange rate: units of a currency per one whole token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    mantissa: u128,
    scale: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error("rate {0:?} is not a positive decimal number")]
    Syntax(String),
    #[error("rate {0:?} has more digits than a rate may carry ({MAX_DIGITS}, {MAX_SCALE} after the point)")]
    TooPrecise(String),
    #[error("a rate must be greater than zero")]
    NotPositive,
}

/// Which way a conversion rounds what it cannot say exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    Down,
    Up,
}

impl Rate {
    /// Parses a plain decimal (`"0.92"`, `"1"`, `"64123.5"`): digits with at most one point.
    pub fn parse(s: &str) -> Result<Rate, RateError> {
        Self::parse_number(s, false)
    }

    /// Parses a JSON number's text exactly, exponent allowed (`"9.5e-05"`, `"1E+2"`), as price feeds
    /// that answer numbers write them. The text is never read as a float.
    pub fn parse_json_number(s: &str) -> Result<Rate, RateError> {
        Self::parse_number(s, true)
    }

    fn parse_number(s: &str, exponent: bool) -> Result<Rate, RateError> {
        let syntax = || RateError::Syntax(s.chars().take(64).collect());
        if s.is_empty() || s.len() > 128 {
            return Err(syntax());
        }
        let (number, exp) = match s.find(['e', 'E']) {
            Some(i) if exponent => {
                let e = &s[i + 1..];
                let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
                if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(syntax());
                }
                let value: i32 = digits.parse().map_err(|_| syntax())?;
                (&s[..i], if e.starts_with('-') { -value } else { value })
            }
            _ => (s, 0),
        };
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if int_part.is_empty() || !all_digits(int_part) || !all_digits(frac_part) || number.ends_with('.') {
            return Err(syntax());
        }
        let digits = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        if digits.is_empty() {
            return Err(RateError::NotPositive);
        }
        // value = digits × 10^(exp − len(frac))
        let mut power = exp - frac_part.len() as i32;
        let mut digits = digits.to_owned();
        while power < 0 && digits.ends_with('0') {
            digits.pop();
            power += 1;
        }
        let too_precise = || RateError::TooPrecise(s.chars().take(64).collect());
        if power > 0 {
            digits.extend(std::iter::repeat_n('0', power as usize));
            power = 0;
        }
        let scale = u32::try_from(-power).map_err(|_| too_precise())?;
        if digits.len() > MAX_DIGITS || scale > MAX_SCALE {
            return Err(too_precise());
        }
        let mantissa: u128 = digits.parse().map_err(|_| too_precise())?;
        Ok(Rate { mantissa, scale })
    }

    /// The canonical decimal text: no exponent, no trailing zeros after the point.
    pub fn to_decimal_string(self) -> String {
        Amount::from_base_units(self.mantissa).to_decimal_string(self.scale)
    }

    /// The token base units worth `fiat_minor` minor units of a currency with `fiat_decimals` (cents:
    /// 2), for a token with `token_decimals`: `fiat / rate`, rounded as asked. `None` if the answer
    /// does not fit an amount.
    pub fn token_for_fiat(
        self,
        fiat_minor: u128,
        fiat_decimals: u32,
        token_decimals: u32,
        round: Rounding,
    ) -> Option<Amount> {
        // fiat_minor / 10^fd / (m / 10^s) × 10^td = fiat_minor × 10^(s + td) / (m × 10^fd)
        let numerator = U256::from(fiat_minor).checked_mul(pow10(self.scale + token_decimals)?)?;
        let denominator = U256::from(self.mantissa).checked_mul(pow10(fiat_decimals)?)?;
        divide(numerator, denominator, round).map(Amount::from_base_units)
    }

    /// The minor units of a currency with `fiat_decimals` that `amount` of a token with
    /// `token_decimals` is worth: `amount × rate`, rounded as asked.
    pub fn fiat_for_token(
        self,
        amount: Amount,
        token_decimals: u32,
        fiat_decimals: u32,
        round: Rounding,
    ) -> Option<u128> {
        // amount / 10^td × m / 10^s × 10^fd = amount × m × 10^fd / 10^(td + s)
        let numerator = U256::from(amount.base_units())
            .checked_mul(U256::from(self.mantissa))?
            .checked_mul(pow10(fiat_decimals)?)?;
        divide(numerator, pow10(token_decimals + self.scale)?, round)
    }

    /// The rate that `amount` of a token is sold for `fiat_minor` of a currency at: an order's own
    /// rate when it was priced in the token as well as the currency. Rounded to `scale` decimals.
    pub fn of_price(
        fiat_minor: u128,
        fiat_decimals: u32,
        amount: Amount,
        token_decimals: u32,
        scale: u32,
    ) -> Option<Rate> {
        // fiat_minor / 10^fd ÷ (amount / 10^td) = fiat_minor × 10^(td + scale) / (amount × 10^fd) / 10^scale
        let numerator = U256::from(fiat_minor).checked_mul(pow10(token_decimals + scale)?)?;
        let denominator = U256::from(amount.base_units()).checked_mul(pow10(fiat_decimals)?)?;
        let mantissa = divide(numerator, denominator, Rounding::Down)?;
        (mantissa > 0).then_some(Rate { mantissa, scale: scale.min(MAX_SCALE) }).map(Rate::normalized)
    }

    fn normalized(mut self) -> Rate {
        while self.scale > 0 && self.mantissa % 10 == 0 {
            self.mantissa /= 10;
            self.scale -= 1;
        }
        self
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_decimal_string())
    }
}

/// `amount × part ÷ whole`, rounded down: the share of a token amount that `part` of a price is.
/// `None` if `whole` is zero or `part` exceeds it.
pub fn share(amount: Amount, part: u128, whole: u128) -> Option<Amount> {
    if part > whole {
        return None;
    }
    let numerator = U256::from(amount.base_units()).checked_mul(U256::from(part))?;
    divide(numerator, U256::from(whole), Rounding::Down).map(Amount::from_base_units)
}

fn pow10(exp: u32) -> Option<U256> {
    // 10^77 is the largest power of ten below 2^256.
    (exp <= 76).then(|| U256::from(10u8).pow(U256::from(exp)))
}

fn divide(numerator: U256, denominator: U256, round: Rounding) -> Option<u128> {
    if denominator.is_zero() {
        return None;
    }
    let (q, r) = numerator.div_rem(denominator);
    let q = if round == Rounding::Up && !r.is_zero() { q.checked_add(U256::from(1u8))? } else { q };
    u128::try_from(q).ok()
}

/// The currencies an order may be priced in and a refund asked in, with their minor units (ISO 4217).
/// A currency outside this list is refused, never guessed at.
pub const FIAT_CURRENCIES: &[(&str, u32)] = &[
    ("USD", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("CHF", 2),
    ("CAD", 2),
    ("AUD", 2),
    ("SGD", 2),
    ("HKD", 2),
    ("CNY", 2),
    ("JPY", 0),
    ("KRW", 0),
    ("PLN", 2),
    ("CZK", 2),
    ("SEK", 2),
    ("NOK", 2),
    ("DKK", 2),
    ("BRL", 2),
    ("INR", 2),
    ("TRY", 2),
    ("AED", 2),
];

/// The minor units of a supported fiat currency (`"EUR"` → 2), by its upper-case ISO code.
pub fn fiat_decimals(code: &str) -> Option<u32> {
    FIAT_CURRENCIES.iter().find(|(c, _)| *c == code).map(|(_, d)| *d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Rate {
        Rate::parse(s).unwrap()
    }

    #[test]
    fn parses_exactly_and_canonically() {
        assert_eq!(r("0.92").to_decimal_string(), "0.92");
        assert_eq!(r("0.920").to_decimal_string(), "0.92");
        assert_eq!(r("1").to_decimal_string(), "1");
        assert_eq!(r("64123.50").to_decimal_string(), "64123.5");
        assert_eq!(r("0.1"), Rate { mantissa: 1, scale: 1 });
        assert_eq!(Rate::parse_json_number("9.5e-05").unwrap().to_decimal_string(), "0.000095");
        assert_eq!(Rate::parse_json_number("1E+2").unwrap().to_decimal_string(), "100");
        assert_eq!(Rate::parse_json_number("1.25e1").unwrap().to_decimal_string(), "12.5");
        assert_eq!(Rate::parse_json_number("0.999812").unwrap().to_decimal_string(), "0.999812");
        // Plain text never takes an exponent; a JSON number never a sign.
        for bad in ["", ".5", "5.", "-1", "+1", "1e2", "0x10", "1,5", " 1", "NaN", "inf"] {
            assert!(Rate::parse(bad).is_err(), "{bad:?}");
        }
        for bad in ["-1", "1e", "1e+", "e5", "1e9999", "1.5.5", "1e-5e5"] {
            assert!(Rate::parse_json_number(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Rate::parse("0"), Err(RateError::NotPositive));
        assert_eq!(Rate::parse("0.000"), Err(RateError::NotPositive));
        assert!(matches!(Rate::parse_json_number("1e-40"), Err(RateError::TooPrecise(_))));
        assert!(matches!(Rate::parse(&"9".repeat(40)), Err(RateError::TooPrecise(_))));
    }

    #[test]
    fn fiat_to_token_rounds_as_asked() {
        // €50 at 0.92 EUR per USDT (6 decimals) = 54.347826086… USDT.
        let rate = r("0.92");
        assert_eq!(rate.token_for_fiat(5000, 2, 6, Rounding::Down).unwrap().base_units(), 54_347_826);
        assert_eq!(rate.token_for_fiat(5000, 2, 6, Rounding::Up).unwrap().base_units(), 54_347_827);
        // Exact: no rounding either way.
        assert_eq!(r("0.5").token_for_fiat(100, 2, 6, Rounding::Up).unwrap().base_units(), 2_000_000);
        assert_eq!(r("0.5").token_for_fiat(100, 2, 6, Rounding::Down).unwrap().base_units(), 2_000_000);
        // 18 decimals, a fine rate and a large price stay exact (256-bit intermediates).
        let fine = r("0.999812345678901234");
        let wei = fine.token_for_fiat(1_000_000_000_000, 2, 18, Rounding::Down).unwrap();
        assert_eq!(wei.base_units(), 10_001_876_895_418_523_196_354_687_594);
        // ¥ has no minor unit.
        assert_eq!(r("150").token_for_fiat(15_000, 0, 6, Rounding::Down).unwrap().base_units(), 100_000_000);
        // An answer past u128 is None, never wrapped.
        assert_eq!(
            Rate::parse("0.000000000000000000000000000001").unwrap().token_for_fiat(u128::MAX, 0, 18, Rounding::Down),
            None
        );
    }

    #[test]
    fn token_to_fiat_rounds_as_asked() {
        let rate = r("0.92");
        // 54.347827 USDT × 0.92 = 50.00000084 EUR.
        assert_eq!(rate.fiat_for_token(Amount::from_base_units(54_347_827), 6, 2, Rounding::Up), Some(5001));
        assert_eq!(rate.fiat_for_token(Amount::from_base_units(54_347_827), 6, 2, Rounding::Down), Some(5000));
        assert_eq!(rate.fiat_for_token(Amount::ZERO, 6, 2, Rounding::Up), Some(0));
        // Round trip: the payable amount of a price is never worth less than the price.
        for (price, rate) in [(5000u128, "0.92"), (1, "1.0001"), (999_999, "0.333333"), (12_345, "3")] {
            let rate = r(rate);
            let payable = rate.token_for_fiat(price, 2, 6, Rounding::Up).unwrap();
            assert!(rate.fiat_for_token(payable, 6, 2, Rounding::Down).unwrap() >= price, "{price} at {rate}");
            let refund = rate.token_for_fiat(price, 2, 6, Rounding::Down).unwrap();
            assert!(rate.fiat_for_token(refund, 6, 2, Rounding::Down).unwrap() <= price, "{price} at {rate}");
        }
    }

    #[test]
    fn the_rate_of_a_price() {
        let rate = Rate::of_price(5000, 2, Amount::from_base_units(54_347_827), 6, 12).unwrap();
        assert_eq!(rate.to_decimal_string(), "0.919999984544");
        assert_eq!(Rate::of_price(100, 2, Amount::from_base_units(1_000_000), 6, 12).unwrap().to_decimal_string(), "1");
        assert_eq!(Rate::of_price(0, 2, Amount::from_base_units(1), 6, 12), None);
    }

    #[test]
    fn a_share_rounds_down() {
        assert_eq!(share(Amount::from_base_units(10_000_000), 150, 1150), Some(Amount::from_base_units(1_304_347)));
        assert_eq!(share(Amount::from_base_units(7), 0, 3), Some(Amount::ZERO));
        assert_eq!(share(Amount::from_base_units(7), 3, 3), Some(Amount::from_base_units(7)));
        assert_eq!(share(Amount::from_base_units(7), 4, 3), None);
        assert_eq!(share(Amount::from_base_units(7), 0, 0), None);
    }

    #[test]
    fn fiat_currencies_have_minor_units() {
        assert_eq!(fiat_decimals("EUR"), Some(2));
        assert_eq!(fiat_decimals("JPY"), Some(0));
        assert_eq!(fiat_decimals("eur"), None);
        assert_eq!(fiat_decimals("XYZ"), None);
    }
}
