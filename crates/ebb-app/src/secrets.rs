//! Bearer secrets ebb hands out (refund-link tokens, KYT client secrets and tokens): 256 random bits,
//! shown once, stored only as a hash. A slow password hash would add nothing to a value no one can
//! guess.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The length of [`generate`]'s answer.
pub const LEN: usize = 43;

/// 32 random bytes, URL-safe base64 without padding ([`LEN`] characters).
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    B64.encode(bytes)
}

/// Whether `s` has the shape [`generate`] gives; anything else is refused before touching the database.
pub fn well_formed(s: &str) -> bool {
    s.len() == LEN && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What the database keeps of a secret: hex SHA-256.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}
