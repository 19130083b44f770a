//! Customer e-mail: which merchants' customers ebb writes to (and in which language), and the mail
//! outbox as the mail worker drives it: lease due mails, record what became of each, send one again.
//! Composing and sending are the worker's (docs/MAIL.md).

use ebb_core::clock::{now_ms, now_s};
use ebb_store::mails::{self as repo, MailOutcome, MailRow};
use ebb_store::{Store, StoreError};

use crate::{AppError, AppResult};

/// The languages ebb writes customers in.
pub const LOCALES: [&str; 2] = ["en", "zh"];

/// A customer's e-mail address as ebb takes it: `local@domain`, at most 254 characters, with nothing
/// that would make it a list or a display name (the mail worker sends to exactly this address).
pub fn check_address(field: &str, s: &str) -> AppResult<String> {
    let s = s.trim();
    let bad = || AppError::Invalid(format!("{field} is not an e-mail address"));
    if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control() || "<>,;\"()[]\\".contains(c)) {
        return Err(bad());
    }
    match s.split_once('@') {
        Some((local, domain)) if !local.is_empty() && !domain.is_empty() && !domain.contains('@') => {
            if domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
                return Err(bad());
            }
            Ok(s.to_owned())
        }
        _ => Err(bad()),
    }
}

/// Turns a merchant's customer e-mail on, in `locale` (`en` or `zh`), or off (`None`). An operator's
/// choice (the CLI): it decides whom ebb writes to.
pub async fn set_customer_mail(store: &Store, merchant_id: &str, locale: Option<&str>) -> AppResult<()> {
    if let Some(l) = locale {
        if !LOCALES.contains(&l) {
            return Err(AppError::Invalid(format!("ebb writes customers in {}, not {l:?}", LOCALES.join(" or "))));
        }
    }
    let (merchant_id, locale) = (merchant_id.to_owned(), locale.map(str::to_owned));
    store
        .write(move |tx| {
            Box::pin(async move { repo::set_customer_mail(tx, &merchant_id, locale.as_deref(), now_s()).await })
        })
        .await?;
    Ok(())
}

/// Leases up to `limit` due mails for `lease_ms` as `owner`.
pub async fn lease(store: &Store, owner: &str, lease_ms: i64, limit: i64) -> Result<Vec<MailRow>, StoreError> {
    let owner = owner.to_owned();
    store.write(move |tx| Box::pin(async move { repo::lease_due(tx, &owner, now_ms(), lease_ms, limit).await })).await
}

/// Records what became of a leased mail; `false` if the lease had passed to another worker.
pub async fn record(store: &Store, seq: i64, owner: &str, outcome: MailOutcome) -> Result<bool, StoreError> {
    let owner = owner.to_owned();
    store.write(move |tx| Box::pin(async move { repo::record(tx, seq, &owner, &outcome, now_ms()).await })).await
}

/// Sends a finished mail again now (an operator's replay); `false` if it is still pending. A link's mail
/// sent once has forgotten its token, so it cannot be sent again (the customer asks for a new link).
pub async fn retry(store: &Store, seq: i64) -> AppResult<bool> {
    Ok(store.write(move |tx| Box::pin(async move { repo::retry_now(tx, seq, now_ms()).await })).await?)
}

#[cfg(test)]
mod tests {
    use super::check_address;

    #[test]
    fn addresses_are_single_plain_mailboxes() {
        for good in ["buyer@example.com", "a.b+tag@sub.example.co", "x@localhost"] {
            assert_eq!(check_address("email", good).unwrap(), good);
        }
        for bad in [
            "",
            "buyer",
            "@example.com",
            "buyer@",
            "a@b@c",
            "Buyer <buyer@example.com>",
            "a@example.com, b@example.com",
            "a b@example.com",
            "a@example..com",
            "a@.example.com",
            "a\n@example.com",
        ] {
            assert!(check_address("email", bad).is_err(), "{bad:?}");
        }
        assert!(check_address("email", &format!("{}@example.com", "a".repeat(250))).is_err(), "too long");
    }
}
