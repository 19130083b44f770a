//! Receiving addresses, checked per chain family before any money is sent to them.
//!
//! - EVM: `0x` + 40 hex digits; an all-lower or all-upper address is accepted as is, a mixed-case one
//!   must carry a correct EIP-55 checksum (a typo in a checksummed address is caught here).
//! - Tron: base58check, 25 bytes starting with 0x41 (`T…`).
//! - Solana: base58 of exactly 32 bytes.

use std::fmt;

use sha3::{Digest, Keccak256};

use crate::ChainFamily;

/// An address that passed its chain family's syntax check. Kept as the user wrote it
/// (EVM addresses are normalised to their EIP-55 form).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address is empty")]
    Empty,
    #[error("not an EVM address: expected 0x followed by 40 hexadecimal digits")]
    EvmSyntax,
    #[error("EVM address has a wrong EIP-55 checksum (check for a typo; expected {expected})")]
    EvmChecksum { expected: String },
    #[error("not a Tron address: expected a base58check address starting with T")]
    Tron,
    #[error("not a Solana address: expected base58 of 32 bytes")]
    Solana,
}

impl Address {
    pub fn parse(family: ChainFamily, s: &str) -> Result<Self, AddressError> {
        if s.is_empty() {
            return Err(AddressError::Empty);
        }
        match family {
            ChainFamily::Evm => parse_evm(s),
            ChainFamily::Tron => parse_tron(s),
            ChainFamily::Solana => parse_solana(s),
        }
    }

    /// An address read back from ebb's own database, which stores only addresses that were parsed
    /// for their token's chain family before they were stored.
    pub fn from_stored(s: String) -> Self {
        Address(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// An EVM address from 20 raw bytes, in EIP-55 form.
    pub fn evm_from_bytes(bytes: &[u8; 20]) -> Self {
        Address(eip55(&hex::encode(bytes)))
    }

    /// A Tron address from the 20-byte account id (the same id an EVM address has).
    pub fn tron_from_bytes(bytes: &[u8; 20]) -> Self {
        let mut payload = Vec::with_capacity(21);
        payload.push(0x41);
        payload.extend_from_slice(bytes);
        Address(bs58::encode(payload).with_check().into_string())
    }

    /// A Solana address from a 32-byte public key.
    pub fn solana_from_bytes(bytes: &[u8; 32]) -> Self {
        Address(bs58::encode(bytes).into_string())
    }
}

/// The private key of an order's receiving address: `keccak256("ebb deposit key v1" || seed ||
/// order_id)`, hashed again in the (astronomically unlikely) case it is not a valid secp256k1 scalar.
/// Whoever holds the seed can spend what was paid to the address (`ebb orders deposit-key`).
pub fn derive_deposit_key(seed: &[u8], order_id: &str) -> [u8; 32] {
    let mut h = Keccak256::new();
    h.update(b"ebb deposit key v1");
    h.update(seed);
    h.update(order_id.as_bytes());
    let mut key: [u8; 32] = h.finalize().into();
    while k256::SecretKey::from_slice(&key).is_err() {
        key = Keccak256::digest(key).into();
    }
    key
}

/// The address of a deposit key on a chain family: the secp256k1 public key's Keccak-derived account
/// on EVM chains and Tron, the Ed25519 public key (of the key as seed) on Solana.
pub fn address_of_key(family: ChainFamily, key: &[u8; 32]) -> Address {
    match family {
        ChainFamily::Evm | ChainFamily::Tron => {
            let secret = k256::SecretKey::from_slice(key).expect("a valid scalar (derive_deposit_key)");
            let point = k256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&secret.public_key(), false);
            let digest: [u8; 32] = Keccak256::digest(&point.as_bytes()[1..]).into();
            let mut account = [0u8; 20];
            account.copy_from_slice(&digest[12..]);
            if family == ChainFamily::Evm {
                Address::evm_from_bytes(&account)
            } else {
                Address::tron_from_bytes(&account)
            }
        }
        ChainFamily::Solana => {
            Address::solana_from_bytes(&ed25519_dalek::SigningKey::from_bytes(key).verifying_key().to_bytes())
        }
    }
}

/// A per-order receiving address, derived from a wallet seed through a private key
/// ([`derive_deposit_key`]): deterministic, so an order's address never changes; distinct per order;
/// and spendable by whoever holds the seed.
pub fn derive_deposit_address(family: ChainFamily, seed: &[u8], order_id: &str) -> Address {
    address_of_key(family, &derive_deposit_key(seed, order_id))
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn parse_evm(s: &str) -> Result<Address, AddressError> {
    let hex_part = s.strip_prefix("0x").ok_or(AddressError::EvmSyntax)?;
    if hex_part.len() != 40 || !hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AddressError::EvmSyntax);
    }
    let lower = hex_part.to_ascii_lowercase();
    let checksummed = eip55(&lower);
    let mixed = hex_part.bytes().any(|b| b.is_ascii_lowercase()) && hex_part.bytes().any(|b| b.is_ascii_uppercase());
    if mixed && s != checksummed {
        return Err(AddressError::EvmChecksum { expected: checksummed });
    }
    Ok(Address(checksummed))
}

/// EIP-55: upper-case each hex letter whose nibble in keccak256(lower-case hex) is >= 8.
fn eip55(lower_hex: &str) -> String {
    let hash = Keccak256::digest(lower_hex.as_bytes());
    let mut out = String::with_capacity(42);
    out.push_str("0x");
    for (i, c) in lower_hex.chars().enumerate() {
        let nibble = (hash[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
        out.push(if c.is_ascii_alphabetic() && nibble >= 8 { c.to_ascii_uppercase() } else { c });
    }
    out
}

fn parse_tron(s: &str) -> Result<Address, AddressError> {
    if !s.starts_with('T') || s.len() != 34 {
        return Err(AddressError::Tron);
    }
    let bytes = bs58::decode(s).with_check(None).into_vec().map_err(|_| AddressError::Tron)?;
    if bytes.len() != 21 || bytes[0] != 0x41 {
        return Err(AddressError::Tron);
    }
    Ok(Address(s.to_owned()))
}

fn parse_solana(s: &str) -> Result<Address, AddressError> {
    if s.len() < 32 || s.len() > 44 {
        return Err(AddressError::Solana);
    }
    let bytes = bs58::decode(s).into_vec().map_err(|_| AddressError::Solana)?;
    if bytes.len() != 32 {
        return Err(AddressError::Solana);
    }
    Ok(Address(s.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ChainFamily::*;

    /// Known keys and their Ethereum accounts: private key 1, and anvil's first development account.
    #[test]
    fn a_deposit_key_gives_the_account_ethereum_gives_it() {
        let mut one = [0u8; 32];
        one[31] = 1;
        assert_eq!(address_of_key(Evm, &one).as_str(), "0x7E5F4552091A69125d5DfCb7b8C2659029395Bdf");
        let mut anvil = [0u8; 32];
        hex::decode_to_slice("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80", &mut anvil).unwrap();
        assert_eq!(address_of_key(Evm, &anvil).as_str(), "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266");
        // Tron uses the same account bytes.
        let tron = address_of_key(Tron, &one);
        assert_eq!(
            bs58::decode(tron.as_str()).with_check(None).into_vec().unwrap()[1..],
            hex::decode("7e5f4552091a69125d5dfcb7b8c2659029395bdf").unwrap()[..]
        );
    }

    #[test]
    fn evm_checksum_is_enforced_on_mixed_case() {
        // The EIP-55 test vectors.
        for good in [
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
            "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
        ] {
            assert_eq!(Address::parse(Evm, good).unwrap().as_str(), good);
        }
        // One letter's case flipped: a typo the checksum catches.
        let typo = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD";
        assert!(matches!(Address::parse(Evm, typo), Err(AddressError::EvmChecksum { .. })));
        // All-lower and all-upper carry no checksum and are normalised.
        let lower = "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed";
        assert_eq!(Address::parse(Evm, lower).unwrap().as_str(), "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed");
        for bad in [
            "",
            "5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
            "0x5aaeb6053f",
            "0xZZaeb6053f3e94c9b9a09f33669435e7ef1beaed",
        ] {
            assert!(Address::parse(Evm, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tron_addresses_need_a_valid_checksum() {
        let usdt = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t";
        assert!(Address::parse(Tron, usdt).is_ok());
        assert!(Address::parse(Tron, "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6u").is_err());
        assert!(Address::parse(Tron, "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed").is_err());
        let made = Address::tron_from_bytes(&[7u8; 20]);
        assert!(Address::parse(Tron, made.as_str()).is_ok());
    }

    #[test]
    fn derived_deposit_addresses_are_valid_stable_and_distinct() {
        for family in [Evm, Tron, Solana] {
            let a = derive_deposit_address(family, b"seed", "O1");
            assert_eq!(a, derive_deposit_address(family, b"seed", "O1"));
            assert_ne!(a, derive_deposit_address(family, b"seed", "O2"));
            assert_ne!(a, derive_deposit_address(family, b"other", "O1"));
            assert!(Address::parse(family, a.as_str()).is_ok(), "{a}");
            assert_eq!(a, address_of_key(family, &derive_deposit_key(b"seed", "O1")));
        }
    }

    #[test]
    fn solana_addresses_are_32_bytes_of_base58() {
        assert!(Address::parse(Solana, "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v").is_ok());
        assert!(Address::parse(Solana, "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt10").is_err()); // '0' is not base58
        assert!(Address::parse(Solana, "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t").is_err());
        let made = Address::solana_from_bytes(&[9u8; 32]);
        assert!(Address::parse(Solana, made.as_str()).is_ok());
    }
}
