//! Turning request strings into domain values, with messages that say what is wrong.

use ebb_core::amount::AmountError;
use ebb_core::refund::RequestId;
use ebb_core::{Address, Amount, Token, TokenRegistry};

use crate::error::{ApiError, ErrorCode};

pub fn token<'r>(registry: &'r TokenRegistry, field: &str, id: &str) -> Result<&'r Token, ApiError> {
    registry.get(id).ok_or_else(|| {
        let known: Vec<&str> = registry.iter().map(|t| t.id.as_str()).collect();
        ApiError::new(
            ErrorCode::UnknownToken,
            format!("{field}: unknown token {id:?}; supported: {}", known.join(", ")),
        )
    })
}

fn amount_error(field: &str, e: AmountError) -> ApiError {
    ApiError::new(ErrorCode::InvalidAmount, format!("{field}: {e}"))
}

/// A positive amount with at most `max_scale` decimals (bounded by the token's own decimals).
pub fn positive_amount(field: &str, s: &str, token: &Token, max_scale: u32) -> Result<Amount, ApiError> {
    Amount::parse_positive(s, token.decimals, max_scale).map_err(|e| amount_error(field, e))
}

/// An amount that may be zero, with up to the token's decimals.
pub fn amount(field: &str, s: &str, token: &Token) -> Result<Amount, ApiError> {
    Amount::parse_decimal(s, token.decimals, token.decimals).map_err(|e| amount_error(field, e))
}

/// A supported fiat currency (`EUR`), and its minor units.
pub fn fiat_currency(field: &str, code: &str) -> Result<u32, ApiError> {
    ebb_core::rate::fiat_decimals(code).ok_or_else(|| {
        let known: Vec<&str> = ebb_core::rate::FIAT_CURRENCIES.iter().map(|(c, _)| *c).collect();
        ApiError::invalid(format!("{field}: {code:?} is not a supported currency; supported: {}", known.join(", ")))
    })
}

/// An amount of a fiat currency with `decimals` minor units, in those minor units (cents).
pub fn fiat_amount(field: &str, s: &str, decimals: u32, positive: bool) -> Result<Amount, ApiError> {
    let parsed = if positive {
        Amount::parse_positive(s, decimals, decimals)
    } else {
        Amount::parse_decimal(s, decimals, decimals)
    };
    parsed.map_err(|e| amount_error(field, e))
}

pub fn address(field: &str, s: &str, token: &Token) -> Result<Address, ApiError> {
    Address::parse(token.family, s).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidAddress,
            format!("{field}: {e} (token {} is on chain {})", token.id, token.chain_id),
        )
    })
}

pub fn request_id(s: &str) -> Result<RequestId, ApiError> {
    RequestId::parse(s).map_err(|e| ApiError::invalid(e.to_string()))
}

/// Client-chosen identifiers and names: non-empty, bounded, no control characters.
pub fn text(field: &str, s: &str, max_len: usize) -> Result<String, ApiError> {
    if s.trim().is_empty() {
        return Err(ApiError::invalid(format!("{field} must not be empty")));
    }
    if s.chars().count() > max_len {
        return Err(ApiError::invalid(format!("{field} is longer than {max_len} characters")));
    }
    if s.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!("{field} must not contain control characters")));
    }
    Ok(s.to_owned())
}

pub fn optional_text(field: &str, s: Option<&str>, max_len: usize) -> Result<Option<String>, ApiError> {
    s.filter(|v| !v.is_empty()).map(|v| text(field, v, max_len)).transpose()
}

/// Cobo's list limit: 1 to 50, default 10.
pub fn limit(l: Option<i64>) -> Result<u32, ApiError> {
    match l {
        None => Ok(ebb_store::page::DEFAULT_LIMIT),
        Some(v) if (1..=i64::from(ebb_store::page::MAX_LIMIT)).contains(&v) => Ok(v as u32),
        Some(v) => Err(ApiError::invalid(format!("limit must be between 1 and 50, not {v}"))),
    }
}

/// A comma-separated list of names, each parsed by `parse`.
pub fn list_of<T>(field: &str, s: Option<&str>, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, ApiError> {
    let Some(s) = s.filter(|s| !s.is_empty()) else { return Ok(Vec::new()) };
    s.split(',')
        .map(|v| parse(v.trim()).ok_or_else(|| ApiError::invalid(format!("{field}: unknown value {v:?}"))))
        .collect()
}

/// A developer fee rate: a decimal fraction from 0 to 1 with at most 4 decimals.
pub fn fee_rate(s: &str) -> Result<String, ApiError> {
    let a = Amount::parse_decimal(s, 4, 4).map_err(|e| amount_error("developer_fee_rate", e))?;
    if a.base_units() > 10_000 {
        return Err(ApiError::new(ErrorCode::InvalidAmount, "developer_fee_rate must be between 0 and 1"));
    }
    Ok(a.to_decimal_string(4))
}

/// An absolute http(s) URL of at most `max_len` characters (a logo or return URL shown to customers:
/// never `javascript:` or `data:`).
pub fn http_url(field: &str, s: &str, max_len: usize) -> Result<String, ApiError> {
    let s = text(field, s, max_len)?;
    let url = url::Url::parse(&s).map_err(|e| ApiError::invalid(format!("{field} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ApiError::invalid(format!("{field} must be an http or https URL")));
    }
    Ok(url.to_string())
}
