//! The KYT refund API's use cases: its clients and their bearer tokens, and crypto refunds of held
//! pay-ins.
//!
//! A crypto refund is the seed PSP's two-step refund of a pay-in its KYT screening held: `create`
//! names the pay-in and says what would be paid back (all it still holds), `confirm` pays it, to the
//! sender or to another address, as a `Refund` disposition (`dispositions::pay_out`): the same
//! screening of the destination, the same approval policies, the same executor. Until it is confirmed
//! nothing is reserved, and the operator may still dispose of the funds otherwise through Cobo's
//! Compliance API; the crypto refund then says so (`superseded`) and cannot be confirmed.

use ebb_core::clock::{now_ms, now_s};
use ebb_core::{Address, TxDirection};
use ebb_store::kyt::{self as repo, ClientRow, CryptoRefundRow, CryptoRefundSnapshot};
use ebb_store::{ids, Store, StoreError};

use crate::dispositions::{self, Payout};
use crate::{secrets, Actor, AppError, AppResult, Engine};

/// How long a bearer token is valid.
pub const TOKEN_TTL_MS: i64 = 2 * 60 * 60 * 1000;

/// Compares two hashes in time independent of where they differ.
fn same_hash(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new client: its id, and its secret, which is shown this once.
pub struct NewClient {
    pub client_id: String,
    pub client_secret: String,
}

/// Makes a KYT refund API client (the CLI, `ebb dev`).
pub async fn add_client(store: &Store, name: &str) -> AppResult<NewClient> {
    let secret = secrets::generate();
    let row = ClientRow {
        client_id: ids::new_id("KC"),
        name: name.to_owned(),
        secret_hash: secrets::hash(&secret),
        created_at: now_s(),
        revoked_at: None,
    };
    let client_id = row.client_id.clone();
    store.write(move |tx| Box::pin(async move { repo::insert_client(tx, &row).await })).await?;
    Ok(NewClient { client_id, client_secret: secret })
}

/// Revokes a client and its tokens; `Ok(false)` if it was revoked already.
pub async fn revoke_client(store: &Store, client_id: &str) -> AppResult<bool> {
    let id = client_id.to_owned();
    let changed = store.write(move |tx| Box::pin(async move { repo::revoke_client(tx, &id, now_s()).await })).await?;
    changed.ok_or_else(|| AppError::not_found("client", client_id))
}

/// A bearer token and when it stops working.
pub struct IssuedToken {
    pub token: String,
    pub expires_at_ms: i64,
}

/// Exchanges a client's id and secret for a bearer token; `None` for an unknown, revoked or wrong pair
/// (the caller cannot tell which).
pub async fn issue_token(store: &Store, client_id: &str, secret: &str) -> AppResult<Option<IssuedToken>> {
    let Some(client) = store.api_client(client_id).await? else { return Ok(None) };
    if client.revoked_at.is_some() || !same_hash(&client.secret_hash, &secrets::hash(secret)) {
        return Ok(None);
    }
    let token = secrets::generate();
    let (token_hash, now) = (secrets::hash(&token), now_ms());
    let expires_at_ms = now + TOKEN_TTL_MS;
    let id = client.client_id.clone();
    store
        .write(move |tx| Box::pin(async move { repo::insert_token(tx, &token_hash, &id, now, expires_at_ms).await }))
        .await?;
    Ok(Some(IssuedToken { token, expires_at_ms }))
}

/// The active client a bearer token belongs to, if it is valid now.
pub async fn client_of_token(store: &Store, token: &str) -> AppResult<Option<ClientRow>> {
    // A token has one shape; anything else is refused without a query.
    if !secrets::well_formed(token) {
        return Ok(None);
    }
    Ok(store.client_of_token(&secrets::hash(token), now_ms()).await?)
}

/// What a client names as the refunded payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginalType {
    /// `1`: a pay-in transaction, by its transaction id.
    Transaction = 1,
    /// `2`: an order, by its order id (it must have exactly one held pay-in).
    Order = 2,
}

impl OriginalType {
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            1 => Some(OriginalType::Transaction),
            2 => Some(OriginalType::Order),
            _ => None,
        }
    }
}

pub struct CreateRequest {
    pub original_type: OriginalType,
    pub original_id: String,
    pub client_reference: Option<String>,
}

/// The actor a client acts as: the PSP's compliance desk, recorded as the client.
fn actor(client: &ClientRow) -> Actor {
    Actor::psp(client.client_id.clone())
}

/// The held pay-in a request names: its transaction id and chain.
async fn held_payin(engine: &Engine, t: OriginalType, id: &str) -> AppResult<(String, String)> {
    match t {
        OriginalType::Transaction => {
            let found = engine.store.transaction(id).await?.filter(|t| t.direction == TxDirection::In);
            let t = found.ok_or_else(|| AppError::not_found("transaction", id))?;
            Ok((t.tx_id, t.chain_id))
        }
        OriginalType::Order => {
            let order = engine.store.order(id).await?.ok_or_else(|| AppError::not_found("order", id))?;
            let held: Vec<_> = order
                .transactions
                .iter()
                .filter(|t| t.direction == TxDirection::In && t.funds_status.as_deref() == Some(crate::payins::FROZEN))
                .collect();
            match held.as_slice() {
                [one] => Ok((one.tx_id.clone(), one.chain_id.clone())),
                [] => Err(AppError::InvalidState(format!("order {id} has no held pay-in; nothing awaits a refund"))),
                _ => Err(AppError::InvalidState(format!(
                    "order {id} has {} held pay-ins; name one by its transaction (originalTransactionType 1)",
                    held.len()
                ))),
            }
        }
    }
}

/// Makes (or returns) the crypto refund of a held pay-in: one awaits confirmation per pay-in at a time,
/// and asking again returns it. The amount is all the pay-in still holds. Refused for a pay-in that
/// holds nothing (never held, released, refunded, or with a payout under way).
pub async fn create(engine: &Engine, client: &ClientRow, req: CreateRequest) -> AppResult<CryptoRefundRow> {
    let (tx_id, chain_id) = held_payin(engine, req.original_type, &req.original_id).await?;
    let client_id = client.client_id.clone();
    let row = engine
        .store
        .write(move |tx| {
            Box::pin(async move {
                if let Some(reference) = &req.client_reference {
                    if let Some(made) = repo::by_reference(tx, &client_id, reference).await? {
                        if made.tx_id != tx_id {
                            return Err(StoreError::AlreadyExists(format!(
                                "clientReference {reference:?} names crypto refund {} of another payment",
                                made.crypto_refund_id
                            )));
                        }
                        return Ok(made);
                    }
                }
                let (_, token_id, _, remaining) = dispositions::lock_disposable(tx, &tx_id).await?;
                if let Some(waiting) = repo::unconfirmed_of(tx, &tx_id).await? {
                    if waiting.client_id != client_id {
                        return Err(StoreError::InvalidState(format!(
                            "transaction {tx_id} has crypto refund {} awaiting another client's confirmation",
                            waiting.crypto_refund_id
                        )));
                    }
                    return Ok(waiting);
                }
                let now = now_ms();
                let row = CryptoRefundRow {
                    crypto_refund_id: ids::new_id("CR"),
                    client_id,
                    client_reference: req.client_reference,
                    original_transaction_type: req.original_type as i64,
                    original_transaction_id: req.original_id,
                    tx_id,
                    token_id,
                    chain_id,
                    amount: remaining,
                    refund_id: None,
                    refund_address: None,
                    created_at_ms: now,
                    updated_at_ms: now,
                };
                repo::insert(tx, &row).await?;
                repo::raise_changed(tx, row.clone(), None, false).await?;
                Ok(row)
            })
        })
        .await?;
    Ok(row)
}

/// A client's crypto refund (another client's is not found).
async fn owned(engine: &Engine, client: &ClientRow, crypto_refund_id: &str) -> AppResult<CryptoRefundRow> {
    engine
        .store
        .crypto_refund(crypto_refund_id)
        .await?
        .filter(|r| r.client_id == client.client_id)
        .ok_or_else(|| AppError::not_found("crypto refund", crypto_refund_id))
}

/// Confirms a crypto refund: pays its amount back to `refund_address` if given, else to the pay-in's
/// sender. Confirming again returns it as it stands (another address is refused). `parse` reads the
/// address for the pay-in's token (the surface's parser).
pub async fn confirm<E>(
    engine: &Engine,
    client: &ClientRow,
    crypto_refund_id: &str,
    refund_address: Option<&str>,
    parse: impl FnOnce(&ebb_core::Token, &str) -> Result<Address, E>,
) -> Result<CryptoRefundSnapshot, E>
where
    E: From<AppError>,
{
    let row = owned(engine, client, crypto_refund_id).await?;
    if let Some(paid_to) = &row.refund_address {
        if refund_address.is_some_and(|a| !a.eq_ignore_ascii_case(paid_to)) {
            return Err(AppError::InvalidState(format!(
                "crypto refund {crypto_refund_id} was confirmed already, to {paid_to}"
            ))
            .into());
        }
        return Ok(view(engine, row).await?);
    }
    let payin = engine
        .store
        .transaction(&row.tx_id)
        .await
        .map_err(AppError::from)?
        .ok_or_else(|| AppError::not_found("transaction", &row.tx_id))?;
    let destination = refund_address.map(str::to_owned).unwrap_or(payin.from_address);
    let amount = row.amount;
    dispositions::pay_out_confirming(
        engine,
        &actor(client),
        &row.tx_id,
        Payout::Refund,
        |_| Ok(amount),
        |token| parse(token, &destination),
        Some(row.crypto_refund_id.clone()),
    )
    .await?;
    let row = owned(engine, client, crypto_refund_id).await?;
    Ok(view(engine, row).await?)
}

/// A client's crypto refund as it stands.
pub async fn get(engine: &Engine, client: &ClientRow, crypto_refund_id: &str) -> AppResult<CryptoRefundSnapshot> {
    let row = owned(engine, client, crypto_refund_id).await?;
    view(engine, row).await
}

/// A client's crypto refund by its `clientReference`.
pub async fn get_by_reference(
    engine: &Engine,
    client: &ClientRow,
    client_reference: &str,
) -> AppResult<CryptoRefundSnapshot> {
    let row = engine
        .store
        .crypto_refund_by_reference(&client.client_id, client_reference)
        .await?
        .ok_or_else(|| AppError::not_found("crypto refund with clientReference", client_reference))?;
    view(engine, row).await
}

async fn view(engine: &Engine, row: CryptoRefundRow) -> AppResult<CryptoRefundSnapshot> {
    if let Some(refund_id) = &row.refund_id {
        let refund = engine
            .store
            .refund(refund_id, None)
            .await?
            .ok_or_else(|| AppError::Store(StoreError::Internal(format!("crypto refund's refund {refund_id}"))))?;
        return Ok(CryptoRefundSnapshot {
            refund_status: Some(refund.status.as_str().to_owned()),
            tx_hash: refund.transactions.last().and_then(|t| t.tx_hash.clone()),
            row,
            superseded: false,
        });
    }
    let payin =
        engine.store.transaction(&row.tx_id).await?.ok_or_else(|| AppError::not_found("transaction", &row.tx_id))?;
    let (funds, _) = dispositions::funds(&engine.store, &payin).await?;
    // Frozen, or back in `held` after a failed payout: it can still be confirmed.
    let superseded = !matches!(funds.as_str(), crate::payins::FROZEN | "RefundFailed" | dispositions::ISOLATION_FAILED);
    Ok(CryptoRefundSnapshot { row, refund_status: None, tx_hash: None, superseded })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_url_safe_and_only_their_hash_matches() {
        let (a, b) = (secrets::generate(), secrets::generate());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(same_hash(&secrets::hash(&a), &secrets::hash(&a)));
        assert!(!same_hash(&secrets::hash(&a), &secrets::hash(&b)));
        assert!(!same_hash(&secrets::hash(&a), &secrets::hash(&a)[..10]));
    }

    #[test]
    fn original_transaction_types_are_one_and_two() {
        assert_eq!(OriginalType::from_code(1), Some(OriginalType::Transaction));
        assert_eq!(OriginalType::from_code(2), Some(OriginalType::Order));
        assert_eq!(OriginalType::from_code(0), None);
        assert_eq!(OriginalType::from_code(3), None);
    }
}
