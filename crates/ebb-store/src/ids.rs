//! Identifiers ebb hands out: a letter saying what it is, then 96 random bits.

use rand::RngCore;

pub fn new_id(prefix: &str) -> String {
    let mut bytes = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// A 32-byte hex hash for sandbox transactions (`0x…`).
pub fn new_tx_hash() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("0x{}", hex::encode(bytes))
}
