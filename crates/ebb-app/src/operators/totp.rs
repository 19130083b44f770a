//! TOTP (RFC 6238 with RFC 4226's truncation: HMAC-SHA-1, 30-second steps, 6 digits), the second factor
//! of operators' logins, and the base32 form authenticator apps take a key in.

use hmac::{Hmac, Mac};
use sha1::Sha1;

pub const TOTP_STEP_S: i64 = 30;

/// The 6-digit code of `key` for time step `step`.
pub fn totp(key: &[u8], step: i64) -> u32 {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&(step as u64).to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = (h[19] & 0x0f) as usize;
    let bin = u32::from_be_bytes([h[offset] & 0x7f, h[offset + 1], h[offset + 2], h[offset + 3]]);
    bin % 1_000_000
}

/// The time step `code` belongs to, if it is the code of the step of `now_s` or of one step either
/// side (clocks drift; a code typed at a step's end arrives in the next).
pub fn totp_step_of(key: &[u8], code: &str, now_s: i64) -> Option<i64> {
    let code = code.trim().replace(' ', "");
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let code: u32 = code.parse().ok()?;
    let now = now_s / TOTP_STEP_S;
    [now, now - 1, now + 1].into_iter().find(|s| totp(key, *s) == code)
}

/// RFC 4648 base32 without padding: how authenticator apps take a key.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            out.push(ALPHABET[((buffer >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totp_matches_rfc_6238s_sha1_vectors() {
        // RFC 6238 appendix B, SHA-1 key, 8-digit codes: the last 6 digits are the 6-digit code.
        let key = b"12345678901234567890";
        for (t, code8) in [(59, 94287082u32), (1111111109, 7081804), (1111111111, 14050471), (1234567890, 89005924)] {
            assert_eq!(totp(key, t / 30), code8 % 1_000_000, "T = {t}");
        }
        let now = 1111111109;
        let code = format!("{:06}", totp(key, now / 30));
        assert_eq!(totp_step_of(key, &code, now), Some(now / 30));
        assert_eq!(totp_step_of(key, &code, now + 30), Some(now / 30), "one step late is accepted");
        assert_eq!(totp_step_of(key, &code, now + 90), None, "three steps late is not");
        assert_eq!(totp_step_of(key, "12345", now), None);
        assert_eq!(totp_step_of(key, "abcdef", now), None);
    }

    #[test]
    fn base32_follows_rfc_4648() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"foob"), "MZXW6YQ");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(&[0u8; 20]).len(), 32);
    }
}
