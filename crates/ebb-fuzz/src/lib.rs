//! The bodies of ebb's fuzz targets: each takes arbitrary bytes, feeds them to a parser that takes
//! outside input, and asserts what must hold of any answer (a panic is a finding). `fuzz/` runs them
//! under `cargo fuzz` (nightly, libFuzzer); `tests/corpus.rs` replays the committed corpus on stable,
//! so CI checks every input that ever mattered in seconds. docs/RELIABILITY.md has the runs.

use ebb_core::rate::{Rate, Rounding};
use ebb_core::screening::{looks_like_poisoning, normalize, Denylist};
use ebb_core::{Address, Amount, ChainFamily};

/// The targets by name, as `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/` call them.
pub const TARGETS: &[(&str, fn(&[u8]))] =
    &[("amount", amount), ("address", address), ("rate", rate), ("denylist", denylist)];

/// Two leading bytes as small numbers, and the rest as text (if it is UTF-8; HTTP and JSON give ebb
/// text, so other bytes say nothing new).
fn split(data: &[u8]) -> Option<(u8, u8, &str)> {
    let (&a, rest) = data.split_first()?;
    let (&b, rest) = rest.split_first()?;
    Some((a, b, std::str::from_utf8(rest).ok()?))
}

/// Decimal amounts (request bodies, forms): a parsed amount prints back to a text that parses to it.
pub fn amount(data: &[u8]) {
    let Some((d, m, text)) = split(data) else { return };
    let (decimals, max_scale) = (u32::from(d % 31), u32::from(m % 31));
    if let Ok(a) = Amount::parse_decimal(text, decimals, max_scale) {
        let printed = a.to_decimal_string(decimals);
        assert_eq!(Amount::parse_decimal(&printed, decimals, decimals), Ok(a), "{text:?} printed as {printed:?}");
        assert!(!printed.contains(['-', '+', 'e', ' ']), "{printed:?}");
    }
    match Amount::parse_positive(text, decimals, max_scale) {
        Ok(a) => assert!(!a.is_zero(), "{text:?} is positive"),
        Err(_) => {}
    }
    if let Ok(a) = Amount::from_base_units_str(text) {
        assert_eq!(Amount::from_base_units_str(&a.base_units().to_string()), Ok(a));
    }
}

/// Addresses (refund destinations, the refund page's form): a parsed address parses to itself, and
/// the screening helpers take anything.
pub fn address(data: &[u8]) {
    let Some((f, _, text)) = split(data) else { return };
    let family = [ChainFamily::Evm, ChainFamily::Tron, ChainFamily::Solana][usize::from(f % 3)];
    let _ = normalize(text);
    let half = text.len() / 2;
    if text.is_char_boundary(half) {
        let _ = looks_like_poisoning(family, &text[..half], &text[half..]);
    }
    if let Ok(a) = Address::parse(family, text) {
        assert_eq!(Address::parse(family, a.as_str()).as_ref(), Ok(&a), "{text:?}");
        assert!(!looks_like_poisoning(family, a.as_str(), a.as_str()), "an address does not poison itself");
    }
}

/// Exchange rates (price feeds' JSON numbers, configured rates): a parsed rate prints back to itself,
/// and converting with it never panics; rounding up never gives less than rounding down.
pub fn rate(data: &[u8]) {
    let Some((a, b, text)) = split(data) else { return };
    for parsed in [Rate::parse(text), Rate::parse_json_number(text)] {
        let Ok(r) = parsed else { continue };
        let printed = r.to_decimal_string();
        assert_eq!(Rate::parse(&printed), Ok(r), "{text:?} printed as {printed:?}");
        let (fiat_decimals, token_decimals) = (u32::from(a % 8), u32::from(b % 31));
        let value = u128::from_le_bytes({
            let mut v = [0u8; 16];
            for (i, byte) in text.bytes().take(16).enumerate() {
                v[i] = byte;
            }
            v
        });
        let down = r.token_for_fiat(value, fiat_decimals, token_decimals, Rounding::Down);
        let up = r.token_for_fiat(value, fiat_decimals, token_decimals, Rounding::Up);
        if let (Some(d), Some(u)) = (down, up) {
            assert!(u >= d && u.base_units() - d.base_units() <= 1, "{r} {value}: {d:?} {u:?}");
        }
        let down = r.fiat_for_token(Amount::from_base_units(value), token_decimals, fiat_decimals, Rounding::Down);
        let up = r.fiat_for_token(Amount::from_base_units(value), token_decimals, fiat_decimals, Rounding::Up);
        if let (Some(d), Some(u)) = (down, up) {
            assert!(u >= d && u - d <= 1, "{r} {value}: {d} {u}");
        }
    }
}

/// The operator's denylist file: every address it lists is found, in any case an EVM address takes.
pub fn denylist(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let list = Denylist::parse(text);
    for line in text.lines() {
        let entry = line.split('#').next().unwrap_or("").trim();
        if !entry.is_empty() {
            assert!(list.contains(entry), "{entry:?} is listed");
            assert!(list.contains(&entry.to_ascii_uppercase().replacen("0X", "0x", 1)) || !is_evm(entry));
        }
    }
}

fn is_evm(a: &str) -> bool {
    a.len() == 42 && (a.starts_with("0x") || a.starts_with("0X"))
}
