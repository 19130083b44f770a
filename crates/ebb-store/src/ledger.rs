//! Applying ledger entries: every posting updates its cached balance row and is journalled, inside the
//! caller's transaction. A non-world balance that would go below zero refuses the whole entry.

use std::collections::BTreeMap;

use ebb_core::ledger::{Account, Entry};
use sqlx::{AnyConnection, Row};

use crate::{for_update, ids, StoreError};

/// Why a balance changed: Cobo's `PaymentBalanceChangeSourceType` values, plus `RefundFee` for the
/// developer fee a merchant pays on a refund (Cobo has no value for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceType {
    OrderIn,
    RefundOut,
    RefundFee,
}

impl SourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceType::OrderIn => "OrderIn",
            SourceType::RefundOut => "RefundOut",
            SourceType::RefundFee => "RefundFee",
        }
    }
}

/// A cached balance with its running totals, in base units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BalanceRow {
    pub account: String,
    pub token_id: String,
    pub balance: i128,
    pub received: i128,
    pub developer_fee: i128,
    pub refunded: i128,
}

fn parse_i128(s: &str) -> Result<i128, StoreError> {
    s.parse::<i128>().map_err(|_| StoreError::Internal(format!("stored amount {s:?} is not an integer")))
}

impl BalanceRow {
    pub(crate) fn from_row(row: &sqlx::any::AnyRow) -> Result<Self, StoreError> {
        Ok(BalanceRow {
            account: row.try_get("account")?,
            token_id: row.try_get("token_id")?,
            balance: parse_i128(&row.try_get::<String, _>("balance")?)?,
            received: parse_i128(&row.try_get::<String, _>("received")?)?,
            developer_fee: parse_i128(&row.try_get::<String, _>("developer_fee")?)?,
            refunded: parse_i128(&row.try_get::<String, _>("refunded")?)?,
        })
    }
}

/// Posts `entry` (one source type for all its postings) and returns nothing; fails with
/// `InsufficientBalance` if a non-world account would go negative. Locks balance rows in key order so
/// two concurrent entries cannot deadlock.
pub(crate) async fn post(
    conn: &mut AnyConnection,
    entry: &Entry,
    source_type: SourceType,
    source_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    post_many(conn, &[(entry, source_type)], source_id, now).await
}

/// Posts several entries of one source object (e.g. a refund's reservation and its fee) atomically.
pub(crate) async fn post_many(
    conn: &mut AnyConnection,
    entries: &[(&Entry, SourceType)],
    source_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    // Net change per (account, token), and the postings in order, for the journal.
    let mut touched: BTreeMap<(String, String), Vec<(i128, SourceType)>> = BTreeMap::new();
    for (entry, st) in entries {
        for p in entry.postings() {
            touched.entry((p.account.key(), p.token_id.clone())).or_default().push((p.delta, *st));
        }
    }
    let lock = for_update(conn);
    let entry_id = ids::new_id("E");
    for ((account, token_id), deltas) in touched {
        sqlx::query(
            "INSERT INTO balances (account, token_id, balance, received, developer_fee, refunded) \
             VALUES ($1, $2, '0', '0', '0', '0') ON CONFLICT (account, token_id) DO NOTHING",
        )
        .bind(&account)
        .bind(&token_id)
        .execute(&mut *conn)
        .await?;
        let row = sqlx::query(&format!(
            "SELECT account, token_id, balance, received, developer_fee, refunded FROM balances \
             WHERE account = $1 AND token_id = $2{lock}"
        ))
        .bind(&account)
        .bind(&token_id)
        .fetch_one(&mut *conn)
        .await?;
        let mut bal = BalanceRow::from_row(&row)?;
        let parsed = Account::from_key(&account);
        let may_go_negative = parsed.as_ref().is_some_and(Account::may_go_negative);
        for (delta, st) in deltas {
            let before = bal.balance;
            bal.balance = before.checked_add(delta).ok_or_else(|| StoreError::Internal("balance overflow".into()))?;
            if bal.balance < 0 && !may_go_negative {
                return Err(StoreError::InsufficientBalance {
                    account,
                    token_id,
                    available: before.max(0).to_string(),
                    needed: (-delta).to_string(),
                });
            }
            match (&parsed, st) {
                (Some(Account::Merchant(_)), SourceType::OrderIn) => bal.received += delta,
                (Some(Account::Psp), SourceType::OrderIn | SourceType::RefundFee) => bal.developer_fee += delta,
                (Some(Account::Merchant(_) | Account::Psp), SourceType::RefundOut) => bal.refunded -= delta,
                _ => {}
            }
            sqlx::query(
                "INSERT INTO postings (entry_id, account, token_id, delta, balance_after, source_type, source_id, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&entry_id)
            .bind(&account)
            .bind(&token_id)
            .bind(delta.to_string())
            .bind(bal.balance.to_string())
            .bind(st.as_str())
            .bind(source_id)
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        sqlx::query(
            "UPDATE balances SET balance = $1, received = $2, developer_fee = $3, refunded = $4 \
             WHERE account = $5 AND token_id = $6",
        )
        .bind(bal.balance.to_string())
        .bind(bal.received.to_string())
        .bind(bal.developer_fee.to_string())
        .bind(bal.refunded.to_string())
        .bind(&account)
        .bind(&token_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
