//! Operators' passwords: argon2id (the `argon2` crate's defaults) in the PHC string format, hashed and
//! checked off the async threads.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use ebb_store::StoreError;

use crate::{AppError, AppResult};

pub(super) async fn hash_password(password: String) -> AppResult<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string())
    })
    .await
    .map_err(|e| AppError::Store(StoreError::Internal(format!("hashing a password: {e}"))))?
    .map_err(|e| AppError::Store(StoreError::Internal(format!("hashing a password: {e}"))))
}

/// Whether `password` matches the PHC string `hash`; with no hash, a hash of nothing is checked, so
/// that an unknown e-mail costs the same time as a wrong password.
pub(super) async fn verify_password(password: String, hash: Option<String>) -> AppResult<bool> {
    tokio::task::spawn_blocking(move || {
        let (stored, real) = match hash {
            Some(h) => (h, true),
            None => (DUMMY_HASH.to_owned(), false),
        };
        let Ok(parsed) = PasswordHash::new(&stored) else { return false };
        Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && real
    })
    .await
    .map_err(|e| AppError::Store(StoreError::Internal(format!("checking a password: {e}"))))
}

/// argon2id (default parameters) of a random password no one knows.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$4O4gHc3eCwEsLqb5VwvQ0L5d3bu9Z1rbJ1S0b1Hwlto";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passwords_verify_and_the_dummy_hash_never_does() {
        let h = hash_password("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery".into(), Some(h.clone())).await.unwrap());
        assert!(!verify_password("correct horse batterz".into(), Some(h)).await.unwrap());
        assert!(PasswordHash::new(DUMMY_HASH).is_ok(), "the dummy hash parses, so it costs a real check");
        assert!(!verify_password("".into(), None).await.unwrap());
    }
}
