//! The webhook SSRF guard's address test: an address is public unless it lies in one of IANA's
//! special-purpose ranges (the IPv4 and IPv6 Special-Purpose Address Registries) or a multicast or
//! deprecated range. Every range of both registries is refused, including the few marked "globally
//! reachable" (anycast services such as AS112 or AMT): none of them is a merchant's webhook receiver,
//! and a test of "is it one of these" is easier to check than one of "which of these are harmless".
//! The IPv6 ranges that embed an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo) are
//! refused whole, whatever address they embed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const MAX_URL_LEN: usize = 500;

/// A webhook URL as given (trimmed): http(s), with a host, without credentials or control
/// characters, at most 500 characters; else why not. The URL parser would drop leading control
/// characters and tabs or newlines anywhere, so a URL with them is not the one ebb would contact (and
/// PostgreSQL cannot store a NUL): it is refused rather than kept as given. Where it may point is checked at delivery time, against the addresses
/// it resolves to ([`is_public`]), since a name can resolve anywhere.
pub fn check_webhook_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    if url.len() > MAX_URL_LEN {
        return Err(format!("url must be at most {MAX_URL_LEN} characters"));
    }
    if url.chars().any(char::is_control) {
        return Err("url must not contain control characters".into());
    }
    let parsed = url::Url::parse(url).map_err(|e| format!("url is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err("url must be an http:// or https:// URL with a host".into());
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("url must not carry credentials; authenticate deliveries by their signature".into());
    }
    Ok(url.to_owned())
}

/// (network, prefix length, what it is).
const SPECIAL_V4: &[(Ipv4Addr, u8, &str)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8, "this network"),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "private use"),
    (Ipv4Addr::new(100, 64, 0, 0), 10, "shared address space (CGNAT)"),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback"),
    (Ipv4Addr::new(169, 254, 0, 0), 16, "link local"),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "private use"),
    (Ipv4Addr::new(192, 0, 0, 0), 24, "IETF protocol assignments"),
    (Ipv4Addr::new(192, 0, 2, 0), 24, "documentation (TEST-NET-1)"),
    (Ipv4Addr::new(192, 31, 196, 0), 24, "AS112-v4"),
    (Ipv4Addr::new(192, 52, 193, 0), 24, "AMT"),
    (Ipv4Addr::new(192, 88, 99, 0), 24, "deprecated 6to4 relay anycast"),
    (Ipv4Addr::new(192, 168, 0, 0), 16, "private use"),
    (Ipv4Addr::new(192, 175, 48, 0), 24, "direct delegation AS112 service"),
    (Ipv4Addr::new(198, 18, 0, 0), 15, "benchmarking"),
    (Ipv4Addr::new(198, 51, 100, 0), 24, "documentation (TEST-NET-2)"),
    (Ipv4Addr::new(203, 0, 113, 0), 24, "documentation (TEST-NET-3)"),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast"),
    (Ipv4Addr::new(240, 0, 0, 0), 4, "reserved"),
    (Ipv4Addr::new(255, 255, 255, 255), 32, "limited broadcast"),
];

const SPECIAL_V6: &[(Ipv6Addr, u8, &str)] = &[
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 128, "unspecified"),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1), 128, "loopback"),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96, "IPv4-compatible (deprecated)"),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96, "IPv4-mapped"),
    (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96, "IPv4/IPv6 translation (NAT64)"),
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48, "local-use IPv4/IPv6 translation"),
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64, "discard-only"),
    (Ipv6Addr::new(0x100, 0, 0, 1, 0, 0, 0, 0), 64, "dummy IPv6 prefix"),
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23, "IETF protocol assignments"),
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32, "Teredo"),
    (Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 0), 48, "benchmarking"),
    (Ipv6Addr::new(0x2001, 3, 0, 0, 0, 0, 0, 0), 32, "AMT"),
    (Ipv6Addr::new(0x2001, 4, 0x112, 0, 0, 0, 0, 0), 48, "AS112-v6"),
    (Ipv6Addr::new(0x2001, 0x10, 0, 0, 0, 0, 0, 0), 28, "ORCHID (deprecated)"),
    (Ipv6Addr::new(0x2001, 0x20, 0, 0, 0, 0, 0, 0), 28, "ORCHIDv2"),
    (Ipv6Addr::new(0x2001, 0x30, 0, 0, 0, 0, 0, 0), 28, "drone remote ID"),
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32, "documentation"),
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16, "6to4"),
    (Ipv6Addr::new(0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0), 48, "direct delegation AS112 service"),
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20, "documentation"),
    (Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0), 16, "segment routing (SRv6) SIDs"),
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7, "unique local"),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, "link-local unicast"),
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, "site-local (deprecated)"),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, "multicast"),
];

/// Why `ip` is refused (the special-purpose range it lies in), or `None` for a public address.
pub fn special_purpose(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let a = u32::from(v4);
            SPECIAL_V4.iter().find(|(net, len, _)| a & mask32(*len) == u32::from(*net)).map(|(_, _, what)| *what)
        }
        IpAddr::V6(v6) => {
            let a = u128::from(v6);
            SPECIAL_V6.iter().find(|(net, len, _)| a & mask128(*len) == u128::from(*net)).map(|(_, _, what)| *what)
        }
    }
}

/// Whether an address is on the public internet (the SSRF guard lets only these through).
pub fn is_public(ip: IpAddr) -> bool {
    special_purpose(ip).is_none()
}

fn mask32(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

fn mask128(len: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each range's first and last address is refused, and so are the address forms the guard once
    /// let through.
    /// Found by the `webhook_url` fuzz target: "\0\0http:)/user:ph" was accepted as given, leading
    /// NULs and all, because the URL parser skips them.
    #[test]
    fn urls_with_control_characters_are_refused() {
        for refused in
            ["\0\0http:)/user:ph", "\0https://example.com/", "https://exa\nmple.com/", "https://example.com/\thook"]
        {
            assert_eq!(
                check_webhook_url(refused),
                Err("url must not contain control characters".into()),
                "{refused:?}"
            );
        }
        assert_eq!(check_webhook_url("  https://example.com/hook \n"), Ok("https://example.com/hook".into()));
    }

    #[test]
    fn every_special_purpose_range_is_refused_at_both_ends() {
        for (net, len, what) in SPECIAL_V4 {
            let first = u32::from(*net);
            let last = first | !mask32(*len);
            for a in [first, last] {
                let ip = IpAddr::V4(Ipv4Addr::from(a));
                assert!(!is_public(ip), "{ip} ({what})");
            }
        }
        for (net, len, what) in SPECIAL_V6 {
            let first = u128::from(*net);
            let last = first | !mask128(*len);
            for a in [first, last] {
                let ip = IpAddr::V6(Ipv6Addr::from(a));
                assert!(!is_public(ip), "{ip} ({what})");
            }
        }
    }

    #[test]
    fn address_forms_that_embed_or_hide_a_private_address_are_refused() {
        for refused in [
            "::127.0.0.1",
            "::10.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:1.1.1.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "198.18.0.1",
            "198.19.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "192.0.0.170",
            "192.88.99.1",
            "169.254.169.254",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "224.0.0.1",
            "0.1.2.3",
        ] {
            let ip: IpAddr = refused.parse().unwrap();
            assert!(!is_public(ip), "{refused} passed the guard");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.128.0.1",
            "198.20.0.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "2001:4860:4860::8888",
        ] {
            let ip: IpAddr = public.parse().unwrap();
            assert!(is_public(ip), "{public} was refused as {:?}", special_purpose(ip));
        }
    }
}
