//! Reading balances and their history (the ledger's postings).

use ebb_core::ledger::Account;
use sqlx::Row;

use crate::columns::Columns;
use crate::ledger::{BalanceRow, SourceType};
use crate::page::{self, Filter, Page, PageRequest};
use crate::{Store, StoreError};

/// One posting as a balance change of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceChangeRow {
    pub source_id: String,
    pub source_type: SourceType,
    pub token_id: String,
    /// Signed base units.
    pub delta: i128,
    pub balance_after: i128,
    pub created_at: i64,
}

#[derive(Debug, Default, Clone)]
pub struct BalanceChangeFilter {
    pub token_id: Option<String>,
    /// `Some(true)`: only credits; `Some(false)`: only debits.
    pub inflow: Option<bool>,
    /// Cobo's source type: every reason reported as it.
    pub source_type: Option<String>,
    pub source_id: Option<String>,
    pub min_created_at: Option<i64>,
    pub max_created_at: Option<i64>,
}

const BALANCE_COLUMNS: &str = "account, token_id, balance, received, developer_fee, refunded";

fn parse(s: &str) -> Result<i128, StoreError> {
    s.parse().map_err(|_| StoreError::Internal(format!("stored amount {s:?}")))
}

impl Store {
    /// Balances of the given accounts, optionally of one token. Accounts never credited have no rows.
    pub async fn balances(&self, accounts: &[Account], token_id: Option<&str>) -> Result<Vec<BalanceRow>, StoreError> {
        let keys: Vec<String> = accounts.iter().map(Account::key).collect();
        let mut f = Filter::default();
        f.is_in("account", &keys);
        if let Some(t) = token_id {
            f.eq("token_id", t);
        }
        let sql = format!("SELECT {BALANCE_COLUMNS} FROM balances{} ORDER BY account, token_id", f.where_sql());
        let rows = f.bind_all(sqlx::query(&sql)).fetch_all(self.pool()).await?;
        rows.iter().map(BalanceRow::from_row).collect()
    }

    /// Every balance row of every account (for reconciliation and tests).
    pub async fn all_balances(&self) -> Result<Vec<BalanceRow>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {BALANCE_COLUMNS} FROM balances ORDER BY account, token_id"))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(BalanceRow::from_row).collect()
    }

    /// Checks the ledger: per token, all postings sum to zero, and each cached balance equals the sum of
    /// its account's postings. Returns the problems found (empty when consistent).
    pub async fn verify_ledger(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT account, token_id, delta FROM postings").fetch_all(self.pool()).await?;
        let mut per_token: std::collections::BTreeMap<String, i128> = Default::default();
        let mut per_account: std::collections::BTreeMap<(String, String), i128> = Default::default();
        for r in rows {
            let (account, token, delta): (String, String, String) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            let d = parse(&delta)?;
            *per_token.entry(token.clone()).or_default() += d;
            *per_account.entry((account, token)).or_default() += d;
        }
        let mut problems: Vec<String> = per_token
            .iter()
            .filter(|(_, s)| **s != 0)
            .map(|(t, s)| format!("postings of {t} sum to {s}, not 0"))
            .collect();
        // Journal-only accounts have no cached row to compare.
        per_account.retain(|(a, _), _| Account::from_key(a).is_some_and(|a| a.keeps_balance()));
        for b in self.all_balances().await? {
            let sum = per_account.remove(&(b.account.clone(), b.token_id.clone())).unwrap_or(0);
            if sum != b.balance {
                problems.push(format!("{} {}: balance {} but postings sum to {sum}", b.account, b.token_id, b.balance));
            }
            if b.balance < 0 && b.account != Account::World.key() {
                problems.push(format!("{} {} is negative: {}", b.account, b.token_id, b.balance));
            }
        }
        problems.extend(per_account.keys().map(|(a, t)| format!("{a} {t} has postings but no balance row")));
        Ok(problems)
    }

    pub async fn balance_changes(
        &self,
        account: &Account,
        filter: &BalanceChangeFilter,
        page_req: &PageRequest,
    ) -> Result<Page<BalanceChangeRow>, StoreError> {
        let mut f = Filter::default();
        f.eq("account", account.key());
        if let Some(t) = &filter.token_id {
            f.eq("token_id", t);
        }
        if let Some(t) = &filter.source_type {
            let reasons: Vec<String> = SourceType::with_cobo_type(t).iter().map(|r| r.as_str().to_owned()).collect();
            if reasons.is_empty() {
                // A type ebb never records: nothing matches.
                f.clause("1 = 0".to_owned());
            } else {
                f.is_in("source_type", &reasons);
            }
        }
        if let Some(s) = &filter.source_id {
            f.eq("source_id", s);
        }
        if let Some(v) = filter.min_created_at {
            f.cmp_int("created_at", ">=", v);
        }
        if let Some(v) = filter.max_created_at {
            f.cmp_int("created_at", "<=", v);
        }
        if let Some(inflow) = filter.inflow {
            // Debits are stored with a leading '-'; text comparison keeps this exact for any size.
            f.sign(inflow);
        }
        page::list(
            self.pool(),
            "postings",
            "seq, source_id, source_type, token_id, delta, balance_after, created_at",
            &f,
            page_req,
            |r| {
                Ok(BalanceChangeRow {
                    source_id: r.col("source_id")?,
                    source_type: {
                        let stored: String = r.col("source_type")?;
                        SourceType::parse(&stored)
                            .ok_or_else(|| StoreError::Internal(format!("stored source type {stored:?}")))?
                    },
                    token_id: r.col("token_id")?,
                    delta: parse(&r.col::<String>("delta")?)?,
                    balance_after: parse(&r.col::<String>("balance_after")?)?,
                    created_at: r.col("created_at")?,
                })
            },
        )
        .await
    }
}
