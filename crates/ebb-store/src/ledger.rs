//! Applying ledger entries: every posting updates its cached balance row and is journalled, inside the
//! caller's transaction. A non-world balance that would go below zero refuses the whole entry.

use std::collections::BTreeMap;

use ebb_core::ledger::{Account, Entry};

use crate::columns::Columns;
use crate::db::{self, Tx};
use crate::{ids, Backend, StoreError};

/// Why a balance changed, as ebb records it in `postings.source_type`. Each reason is reported as one
/// of Cobo's `PaymentBalanceChangeSourceType` values ([`SourceType::cobo`]), so the unmodified SDK
/// parses every balance change; the finer reason is shown beside it (`reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceType {
    /// A pay-in credited to its open order.
    OrderIn,
    /// A pay-in in the order's token to an order that was already `Completed` or `Expired`.
    LatePayment,
    /// A deposit nothing expected: a token other than the order's, at an order's receiving address.
    UnexpectedIn,
    /// A refund's amount: reserved at creation, paid out, or released.
    RefundOut,
    /// A refund's developer fee, moved with its amount.
    RefundFee,
    /// A pay-in held by its sender's screening, into the `held` account or out of it.
    Held,
}

impl SourceType {
    pub const ALL: [SourceType; 6] = [
        SourceType::OrderIn,
        SourceType::LatePayment,
        SourceType::UnexpectedIn,
        SourceType::RefundOut,
        SourceType::RefundFee,
        SourceType::Held,
    ];

    /// The stored name, shown as the balance change's `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceType::OrderIn => "OrderIn",
            SourceType::LatePayment => "LatePayment",
            SourceType::UnexpectedIn => "UnexpectedIn",
            SourceType::RefundOut => "RefundOut",
            SourceType::RefundFee => "RefundFee",
            SourceType::Held => "Held",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Cobo's source type for this reason (spelled as Cobo's SDK spells it, `UnexceptedIn` included).
    pub fn cobo(self) -> &'static str {
        match self {
            SourceType::OrderIn => "OrderIn",
            SourceType::LatePayment => "LatePayment",
            SourceType::UnexpectedIn => "UnexceptedIn",
            SourceType::RefundOut | SourceType::RefundFee => "RefundOut",
            // Only the `held` account carries these; no merchant or PSP balance change shows one.
            SourceType::Held => "OrderIn",
        }
    }

    /// The reasons reported as Cobo's source type `cobo` (none for a type ebb never records).
    pub fn with_cobo_type(cobo: &str) -> Vec<SourceType> {
        Self::ALL.into_iter().filter(|t| t.cobo() == cobo).collect()
    }
}

/// Cobo's `PaymentBalanceChangeSourceType` values (SDK 1.46.0).
pub const COBO_SOURCE_TYPES: [&str; 12] = [
    "Init",
    "OrderIn",
    "LatePayment",
    "TopUp",
    "UnexceptedIn",
    "RefundOut",
    "Payout",
    "UnexceptedOut",
    "Allocation",
    "SettlementNetwork",
    "BulkSend",
    "OnrampIn",
];

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
    pub(crate) fn from_row(row: &impl Columns) -> Result<Self, StoreError> {
        Ok(BalanceRow {
            account: row.col("account")?,
            token_id: row.col("token_id")?,
            balance: parse_i128(&row.col::<String>("balance")?)?,
            received: parse_i128(&row.col::<String>("received")?)?,
            developer_fee: parse_i128(&row.col::<String>("developer_fee")?)?,
            refunded: parse_i128(&row.col::<String>("refunded")?)?,
        })
    }
}

/// A journal row to write: account, token, delta, balance after ("" for journal-only accounts), source type.
type JournalRow = (String, String, i128, String, SourceType);

/// Posts `entry` (one source type for all its postings) and returns nothing; fails with
/// `InsufficientBalance` if a non-world account would go negative. Locks balance rows in key order so
/// two concurrent entries cannot deadlock.
pub(crate) async fn post(
    conn: &mut Tx<'_>,
    entry: &Entry,
    source_type: SourceType,
    source_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    post_many(conn, &[(entry, source_type)], source_id, now).await
}

/// Posts several entries of one source object (e.g. a refund's reservation and its fee) atomically.
///
/// Round trips matter here (SQLite's writer runs these serially): per cached account one SELECT (with
/// `FOR UPDATE` on PostgreSQL) and one INSERT or UPDATE, and one multi-row INSERT for the journal.
pub(crate) async fn post_many(
    conn: &mut Tx<'_>,
    entries: &[(&Entry, SourceType)],
    source_id: &str,
    now: i64,
) -> Result<(), StoreError> {
    // The postings per (account, token), in order; BTreeMap order is the lock order.
    let mut touched: BTreeMap<(String, String), Vec<(i128, SourceType)>> = BTreeMap::new();
    for (entry, st) in entries {
        for p in entry.postings() {
            touched.entry((p.account.key(), p.token_id.clone())).or_default().push((p.delta, *st));
        }
    }
    let lock = conn.backend().for_update();
    let entry_id = ids::new_id("E");
    // (account, token, delta, balance_after or "" for journal-only accounts, source type)
    let mut journal: Vec<JournalRow> = Vec::new();
    let mut updates: Vec<BalanceRow> = Vec::new();
    for ((account, token_id), deltas) in touched {
        let parsed =
            Account::from_key(&account).ok_or_else(|| StoreError::Internal(format!("account key {account:?}")))?;
        if !parsed.keeps_balance() {
            journal.extend(deltas.into_iter().map(|(d, st)| (account.clone(), token_id.clone(), d, String::new(), st)));
            continue;
        }
        let select = format!(
            "SELECT account, token_id, balance, received, developer_fee, refunded FROM balances \
             WHERE account = $1 AND token_id = $2{lock}"
        );
        let mut row = db::query(&select).bind(&account).bind(&token_id).fetch_optional(&mut *conn).await?;
        if row.is_none() {
            // First posting to this account and token. ON CONFLICT: a concurrent first posting (on
            // PostgreSQL) may create the row meanwhile; then we wait for its lock like any other.
            db::query(
                "INSERT INTO balances (account, token_id, balance, received, developer_fee, refunded) \
                 VALUES ($1, $2, '0', '0', '0', '0') ON CONFLICT (account, token_id) DO NOTHING",
            )
            .bind(&account)
            .bind(&token_id)
            .execute(&mut *conn)
            .await?;
            row = db::query(&select).bind(&account).bind(&token_id).fetch_optional(&mut *conn).await?;
        }
        let row = row.ok_or_else(|| StoreError::Internal(format!("balance row {account} {token_id} vanished")))?;
        let mut bal = BalanceRow::from_row(&row)?;
        for (delta, st) in deltas {
            let before = bal.balance;
            bal.balance = before.checked_add(delta).ok_or_else(|| StoreError::Internal("balance overflow".into()))?;
            if bal.balance < 0 && !parsed.may_go_negative() {
                return Err(StoreError::InsufficientBalance {
                    account,
                    token_id,
                    available: before.max(0).to_string(),
                    needed: (-delta).to_string(),
                });
            }
            match (&parsed, st) {
                (Account::Merchant(_), SourceType::OrderIn) => bal.received += delta,
                (Account::Psp, SourceType::OrderIn | SourceType::RefundFee) => bal.developer_fee += delta,
                (Account::Merchant(_) | Account::Psp, SourceType::RefundOut) => bal.refunded -= delta,
                _ => {}
            }
            journal.push((account.clone(), token_id.clone(), delta, bal.balance.to_string(), st));
        }
        updates.push(bal);
    }
    if journal.is_empty() {
        return Ok(());
    }
    // The journal rows (one multi-row insert), then the balance updates.
    let values: Vec<String> = (0..journal.len())
        .map(|i| {
            let b = i * 5;
            format!("($1, $2, $3, ${}, ${}, ${}, ${}, ${})", b + 4, b + 5, b + 6, b + 7, b + 8)
        })
        .collect();
    let insert = format!(
        "INSERT INTO postings (entry_id, source_id, created_at, account, token_id, delta, balance_after, source_type) \
         VALUES {}",
        values.join(", ")
    );
    if conn.backend() == Backend::Sqlite || updates.is_empty() {
        // The journal insert, then each balance update: on the SQLite writer a statement is a
        // function call.
        let done = bind_journal(db::query(&insert), &entry_id, source_id, now, &journal).execute(&mut *conn).await?;
        check_rows("journal insert", done.rows_affected(), values.len())?;
        for bal in &updates {
            let done = bind_update(db::query(UPDATE_BALANCE), bal).execute(&mut *conn).await?;
            check_rows("balance update", done.rows_affected(), 1)?;
        }
    } else {
        // PostgreSQL takes one statement per round trip: the journal insert rides in a CTE in front of
        // one UPDATE of all the balances (a round trip less per entry, inside the span the rows are
        // locked). It counts the main statement's rows only.
        let first_update_param = 4 + journal.len() * 5;
        let sql = format!(
            "WITH journal AS ({insert}) UPDATE balances AS b SET balance = v.balance, received = v.received, \
             developer_fee = v.developer_fee, refunded = v.refunded \
             FROM (VALUES {}) AS v (account, token_id, balance, received, developer_fee, refunded) \
             WHERE b.account = v.account AND b.token_id = v.token_id",
            conn.backend().values(first_update_param - 1, updates.len(), 6)
        );
        let journal_bound = bind_journal(db::query(&sql), &entry_id, source_id, now, &journal);
        let q = updates.iter().fold(journal_bound, |q, bal| bind_update(q, bal));
        let done = q.execute(&mut *conn).await?;
        check_rows("ledger write", done.rows_affected(), updates.len())?;
    }
    Ok(())
}

/// One cached balance row's new totals, bound by [`bind_update`].
const UPDATE_BALANCE: &str = "UPDATE balances SET balance = $3, received = $4, developer_fee = $5, refunded = $6 \
                              WHERE account = $1 AND token_id = $2";

/// Binds the journal insert's parameters: the entry's three, then five per journal row.
fn bind_journal<'q>(
    q: db::Query<'q>,
    entry_id: &str,
    source_id: &str,
    now: i64,
    journal: &[JournalRow],
) -> db::Query<'q> {
    let q = q.bind(entry_id).bind(source_id).bind(now);
    journal.iter().fold(q, |q, (account, token_id, delta, after, st)| {
        q.bind(account).bind(token_id).bind(delta.to_string()).bind(after).bind(st.as_str())
    })
}

/// Anything but the expected count means a statement was skipped or a balance row was not found.
fn check_rows(what: &str, done: u64, expected: usize) -> Result<(), StoreError> {
    if done != expected as u64 {
        return Err(StoreError::Internal(format!("{what} touched {done} rows, expected {expected}")));
    }
    Ok(())
}

/// Binds the six parameters of a balance UPDATE (account, token, balance, received, fee, refunded).
fn bind_update<'q>(q: db::Query<'q>, bal: &BalanceRow) -> db::Query<'q> {
    q.bind(bal.account.clone())
        .bind(bal.token_id.clone())
        .bind(bal.balance.to_string())
        .bind(bal.received.to_string())
        .bind(bal.developer_fee.to_string())
        .bind(bal.refunded.to_string())
}
