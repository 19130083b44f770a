//! The signatures ebb puts on what it sends: Cobo's (API responses and webhooks) and Standard Webhooks'
//! (webhooks, per endpoint), and the parts of a signed request ebb reads before it checks one. Pure
//! functions; the keys come from the caller.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The string a request signature covers: `METHOD|PATH|NONCE|QUERY|BODY`.
pub fn request_message(method: &str, path: &str, nonce: &str, query: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(method.len() + path.len() + nonce.len() + query.len() + body.len() + 4);
    for (i, part) in
        [method.as_bytes(), path.as_bytes(), nonce.as_bytes(), query.as_bytes(), body].into_iter().enumerate()
    {
        if i > 0 {
            m.push(b'|');
        }
        m.extend_from_slice(part);
    }
    m
}

/// Exactly `N` bytes in hex (either case), as `Biz-Api-Key` (32) and `Biz-Api-Signature` (64) carry.
pub fn fixed_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}

/// `Biz-Api-Nonce`: the client's clock in milliseconds since the epoch, as plain decimal digits.
pub fn nonce_millis(s: &str) -> Option<i64> {
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `sha256(sha256(message))`, the digest Cobo's signatures cover.
pub fn double_sha256(message: &[u8]) -> [u8; 32] {
    Sha256::digest(Sha256::digest(message)).into()
}

/// Cobo's response and webhook signature: `hex(Ed25519(sha256(sha256(body | "|" | timestamp))))`,
/// sent as `Biz-Resp-Signature` beside `Biz-Timestamp`.
pub fn sign_body(key: &SigningKey, body: &[u8], timestamp: &str) -> String {
    let mut message = Vec::with_capacity(body.len() + 1 + timestamp.len());
    message.extend_from_slice(body);
    message.push(b'|');
    message.extend_from_slice(timestamp.as_bytes());
    hex::encode(key.sign(&double_sha256(&message)).to_bytes())
}

/// Prefix of a Standard Webhooks secret; the rest is the key in base64.
pub const STANDARD_SECRET_PREFIX: &str = "whsec_";

/// A new Standard Webhooks secret: `whsec_` and 32 random bytes in base64.
pub fn new_standard_secret() -> String {
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    format!("{STANDARD_SECRET_PREFIX}{}", BASE64.encode(key))
}

/// The `webhook-signature` header of Standard Webhooks: `v1,` and the base64 HMAC-SHA256, keyed with
/// the secret's decoded bytes, of `id.timestamp.body`. `None` if `secret` is not a `whsec_` secret.
pub fn standard_signature(secret: &str, msg_id: &str, timestamp_s: i64, body: &[u8]) -> Option<String> {
    let key = BASE64.decode(secret.strip_prefix(STANDARD_SECRET_PREFIX)?).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())))
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signature, Verifier};

    use super::*;

    #[test]
    fn cobo_signature_verifies_with_the_public_key_over_body_bar_timestamp() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let sig = sign_body(&key, b"{\"a\":1}", "1700000000000");
        let sig = Signature::from_slice(&hex::decode(sig).unwrap()).unwrap();
        let digest = double_sha256(b"{\"a\":1}|1700000000000");
        assert!(key.verifying_key().verify(&digest, &sig).is_ok());
        assert!(key.verifying_key().verify(&double_sha256(b"{\"a\":2}|1700000000000"), &sig).is_err());
    }

    /// The example of the Standard Webhooks specification (its reference libraries' test vector).
    #[test]
    fn standard_signature_matches_the_specification_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            standard_signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap(),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert!(standard_signature("not-a-secret", "id", 1, body).is_none());
    }

    #[test]
    fn new_secrets_are_distinct_and_usable() {
        let (a, b) = (new_standard_secret(), new_standard_secret());
        assert_ne!(a, b);
        assert!(standard_signature(&a, "id", 1, b"x").is_some());
    }
}
