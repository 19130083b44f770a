//! The bodies of ebb's fuzz targets: each takes arbitrary bytes, feeds them to a parser that takes
//! outside input, and asserts what must hold of any answer (a panic is a finding). `fuzz/` runs them
//! under `cargo fuzz` (nightly, libFuzzer); `tests/corpus.rs` replays the committed corpus on stable,
//! so CI checks every input that ever mattered in seconds. docs/RELIABILITY.md has the runs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub mod server;

use ebb_core::rate::{Rate, Rounding};
use ebb_core::screening::{looks_like_poisoning, normalize, Denylist};
use ebb_core::{Address, Amount, ChainFamily};

/// The targets by name, as `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/` call them.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("amount", amount),
    ("address", address),
    ("rate", rate),
    ("denylist", denylist),
    ("signed_request", signed_request),
    ("accept_language", accept_language),
    ("webhook_url", webhook_url),
    ("config", server::config),
    ("api_body", server::api_body),
];

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

/// The signed request's parts (`Biz-Api-Key`, `Biz-Api-Nonce`, `Biz-Api-Signature`, and the canonical
/// string over method, path, nonce, query and body): the header parsers take anything, a key or
/// signature they accept is exactly its hex, and the canonical string keeps every part where a
/// verifier finds it.
pub fn signed_request(data: &[u8]) {
    let Some((_, _, text)) = split(data) else { return };
    let parts: Vec<&str> = text.splitn(6, '\n').collect();
    let part = |i: usize| parts.get(i).copied().unwrap_or("");
    let (key, nonce, signature, method, path, rest) = (part(0), part(1), part(2), part(3), part(4), part(5));
    if let Some(k) = ebb_core::signing::fixed_hex::<32>(key) {
        assert_eq!(hex_of(&k), key.to_ascii_lowercase(), "{key:?}");
    }
    if let Some(s) = ebb_core::signing::fixed_hex::<64>(signature) {
        assert_eq!(hex_of(&s), signature.to_ascii_lowercase(), "{signature:?}");
    }
    if let Some(n) = ebb_core::signing::nonce_millis(nonce) {
        assert!(n >= 0 && n.to_string().trim_start_matches('0') == nonce.trim_start_matches('0'), "{nonce:?}");
    }
    let (query, body) = rest.split_once('?').unwrap_or(("", rest));
    let message = ebb_core::signing::request_message(method, path, nonce, query, body.as_bytes());
    assert_eq!(message.len(), method.len() + path.len() + nonce.len() + query.len() + body.len() + 4);
    assert!(message.starts_with(method.as_bytes()) && message.ends_with(body.as_bytes()));
    // Without bars in the first four parts (a method, a path and a nonce never have one, a query has
    // them percent-encoded), the message splits back into exactly those parts.
    if ![method, path, nonce, query].iter().any(|p| p.contains('|')) {
        let mut split = message.splitn(5, |b| *b == b'|');
        for expected in [method, path, nonce, query] {
            assert_eq!(split.next(), Some(expected.as_bytes()));
        }
        assert_eq!(split.next(), Some(body.as_bytes()));
    }
    let _ = ebb_core::signing::double_sha256(&message);
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `Accept-Language` (the refund page and the console): any header gives a language ebb speaks or
/// none, and a header naming only one of them picks it unless it refuses it with `q=0`.
pub fn accept_language(data: &[u8]) {
    let Some((_, _, text)) = split(data) else { return };
    let speaks = ["en", "zh"];
    if let Some(i) = ebb_core::language::preferred(text, &speaks) {
        assert!(i < speaks.len());
        assert!(text.to_ascii_lowercase().contains(speaks[i]), "{text:?} chose {}", speaks[i]);
    }
    let q = ebb_core::language::thousandths(text);
    assert!(q <= 1000, "{text:?} read as {q}");
    if !text.contains(',') {
        let single = format!("zh;q={text}");
        let refused = ebb_core::language::thousandths(text.split(';').next().unwrap_or("")) == 0;
        assert_eq!(ebb_core::language::preferred(&single, &speaks), (!refused).then_some(1), "{single:?}");
    }
}

/// Webhook URLs and the SSRF guard: a URL ebb accepts is http(s), without control characters; an
/// address is refused exactly when a special-purpose range names it; and an IPv6 address that embeds
/// an IPv4 one (mapped, compatible, NAT64, 6to4) is never public, whatever it embeds.
pub fn webhook_url(data: &[u8]) {
    let Some((a, b, text)) = split(data) else { return };
    if let Ok(url) = ebb_core::ssrf::check_webhook_url(text) {
        let lower = url.to_ascii_lowercase();
        assert!(lower.starts_with("http:") || lower.starts_with("https:"), "{url:?}");
        assert!(!url.chars().any(char::is_control), "{url:?}");
        assert!(url.len() <= 500);
    }
    let mut bytes = [0u8; 16];
    for (i, byte) in [a, b].into_iter().chain(text.bytes()).take(16).enumerate() {
        bytes[i] = byte;
    }
    let v6 = Ipv6Addr::from(bytes);
    let v4 = Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]);
    for ip in [IpAddr::V6(v6), IpAddr::V4(v4)] {
        assert_eq!(ebb_core::ssrf::is_public(ip), ebb_core::ssrf::special_purpose(ip).is_none(), "{ip}");
    }
    let o = v4.octets();
    let embedding = [
        v4.to_ipv6_mapped(),
        v4.to_ipv6_compatible(),
        Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, u16::from_be_bytes([o[0], o[1]]), u16::from_be_bytes([o[2], o[3]])),
        Ipv6Addr::new(0x2002, u16::from_be_bytes([o[0], o[1]]), u16::from_be_bytes([o[2], o[3]]), 0, 0, 0, 0, 1),
    ];
    for ip in embedding {
        assert!(!ebb_core::ssrf::is_public(IpAddr::V6(ip)), "{ip} embeds {v4}");
    }
    if let Ok(parsed) = text.parse::<IpAddr>() {
        assert_eq!(ebb_core::ssrf::is_public(parsed), ebb_core::ssrf::special_purpose(parsed).is_none());
    }
}
