//! Approval policies and refunds' approvals, as stored. The rules (which policy applies, how votes add
//! up) are `ebb_core::approval`; the use cases that combine them are `ebb-app/src/approvals.rs`.
//!
//! A refund's approval lives on its row (`refunds.approval`, one JSON document, and
//! `refunds.approval_status` beside it for the payout gate and the queue): reading a refund needs no
//! join, and every change of an approval happens under the refund's row lock, which also serialises
//! it against cancelling, changing the address and the payout executor.

use ebb_core::approval::{Approval, ApprovalPolicy, FiatMinimum, RefundChannel};
use ebb_core::RefundSource;

use crate::columns::Columns;
use crate::db::{self, Tx};
use crate::{Store, StoreError};

/// Who owns a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyOrigin {
    /// Made through the API; changed and deleted there.
    Api,
    /// Read from the configuration file at start-up; changed only there.
    Config,
}

impl PolicyOrigin {
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyOrigin::Api => "api",
            PolicyOrigin::Config => "config",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "api" => Some(PolicyOrigin::Api),
            "config" => Some(PolicyOrigin::Config),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRow {
    pub policy: ApprovalPolicy,
    pub origin: PolicyOrigin,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "policy_id, name, token_ids, merchant_ids, refund_types, sources, min_amount, \
     new_destination_only, approvals_required, origin, created_at, updated_at, fiat_currency, min_fiat_amount";

fn list_json(v: &[impl AsRef<str>]) -> String {
    serde_json::to_string(&v.iter().map(AsRef::as_ref).collect::<Vec<&str>>()).expect("strings serialise")
}

fn list_from<T>(row: &impl Columns, col: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, StoreError> {
    let text: String = row.col(col)?;
    let items: Vec<String> =
        serde_json::from_str(&text).map_err(|e| StoreError::Internal(format!("stored policy {col}: {e}")))?;
    items
        .iter()
        .map(|s| parse(s).ok_or_else(|| StoreError::Internal(format!("stored policy {col} holds {s:?}"))))
        .collect()
}

fn from_row(row: &impl Columns) -> Result<PolicyRow, StoreError> {
    let origin: String = row.col("origin")?;
    let required: i64 = row.col("approvals_required")?;
    Ok(PolicyRow {
        policy: ApprovalPolicy {
            policy_id: row.col("policy_id")?,
            name: row.col("name")?,
            token_ids: list_from(row, "token_ids", |s| Some(s.to_owned()))?,
            merchant_ids: list_from(row, "merchant_ids", |s| Some(s.to_owned()))?,
            refund_types: list_from(row, "refund_types", RefundSource::parse)?,
            channels: list_from(row, "sources", RefundChannel::parse)?,
            min_amount: row.col("min_amount")?,
            min_fiat: match (row.col::<Option<String>>("fiat_currency")?, row.col::<Option<String>>("min_fiat_amount")?)
            {
                (Some(currency), Some(amount)) => Some(FiatMinimum { currency, amount }),
                _ => None,
            },
            new_destination_only: row.col::<i64>("new_destination_only")? != 0,
            approvals_required: u8::try_from(required)
                .map_err(|_| StoreError::Internal(format!("stored approvals_required {required}")))?,
        },
        origin: PolicyOrigin::parse(&origin)
            .ok_or_else(|| StoreError::Internal(format!("stored policy origin {origin:?}")))?,
        created_at: row.col("created_at")?,
        updated_at: row.col("updated_at")?,
    })
}

/// The policies in force, inside a transaction (a refund is matched against what is committed when it
/// gets its address).
pub async fn policies_in(conn: &mut Tx<'_>) -> Result<Vec<ApprovalPolicy>, StoreError> {
    let rows =
        db::query(&format!("SELECT {COLUMNS} FROM approval_policies ORDER BY policy_id")).fetch_all(&mut *conn).await?;
    rows.iter().map(|r| from_row(r).map(|p| p.policy)).collect()
}

/// A policy, locked for a change.
pub async fn lock_policy(conn: &mut Tx<'_>, policy_id: &str) -> Result<Option<PolicyRow>, StoreError> {
    let lock = conn.backend().for_update();
    let row = db::query(&format!("SELECT {COLUMNS} FROM approval_policies WHERE policy_id = $1{lock}"))
        .bind(policy_id)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn insert_policy(conn: &mut Tx<'_>, p: &PolicyRow) -> Result<(), StoreError> {
    bind_policy(
        db::query(&format!(
            "INSERT INTO approval_policies ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
             $13, $14)"
        )),
        p,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Replaces a policy's criteria (its origin and creation time stay).
pub async fn update_policy(conn: &mut Tx<'_>, p: &PolicyRow) -> Result<(), StoreError> {
    bind_policy(
        db::query(
            "UPDATE approval_policies SET name = $2, token_ids = $3, merchant_ids = $4, refund_types = $5, \
             sources = $6, min_amount = $7, new_destination_only = $8, approvals_required = $9, \
             updated_at = $12, fiat_currency = $13, min_fiat_amount = $14 WHERE policy_id = $1 AND origin = $10 AND created_at = $11",
        ),
        p,
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn bind_policy<'q>(q: db::Query<'q>, p: &PolicyRow) -> db::Query<'q> {
    let a = &p.policy;
    q.bind(&a.policy_id)
        .bind(&a.name)
        .bind(list_json(&a.token_ids))
        .bind(list_json(&a.merchant_ids))
        .bind(list_json(&a.refund_types.iter().map(|t| t.as_str()).collect::<Vec<_>>()))
        .bind(list_json(&a.channels.iter().map(|c| c.as_str()).collect::<Vec<_>>()))
        .bind(a.min_amount.clone())
        .bind(i64::from(a.new_destination_only))
        .bind(i64::from(a.approvals_required))
        .bind(p.origin.as_str())
        .bind(p.created_at)
        .bind(p.updated_at)
        .bind(a.min_fiat.as_ref().map(|m| m.currency.clone()))
        .bind(a.min_fiat.as_ref().map(|m| m.amount.clone()))
}

pub async fn delete_policy(conn: &mut Tx<'_>, policy_id: &str) -> Result<(), StoreError> {
    db::query("DELETE FROM approval_policies WHERE policy_id = $1").bind(policy_id).execute(&mut *conn).await?;
    Ok(())
}

/// Makes the configuration file's policies the ones of origin `config`: those it no longer names are
/// deleted, the others written as it says. Refunds already waiting keep their approvals.
pub async fn replace_config_policies(
    conn: &mut Tx<'_>,
    policies: &[ApprovalPolicy],
    now: i64,
) -> Result<(), StoreError> {
    db::query("DELETE FROM approval_policies WHERE origin = 'config'").execute(&mut *conn).await?;
    for p in policies {
        if lock_policy(conn, &p.policy_id).await?.is_some() {
            return Err(StoreError::Config(format!(
                "approval policy {} of the configuration file has the id of a policy made through the API",
                p.policy_id
            )));
        }
        let row = PolicyRow { policy: p.clone(), origin: PolicyOrigin::Config, created_at: now, updated_at: now };
        insert_policy(conn, &row).await?;
    }
    Ok(())
}

/// Stores a refund's approval (and its status, for the gate and the queue).
pub async fn set_approval(conn: &mut Tx<'_>, refund_id: &str, approval: &Approval, now: i64) -> Result<(), StoreError> {
    db::query("UPDATE refunds SET approval = $1, approval_status = $2, updated_at = $3 WHERE refund_id = $4")
        .bind(crate::snapshot::approval_json(approval))
        .bind(approval.status.as_str())
        .bind(now)
        .bind(refund_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Whether a refund on `chain_id` was ever paid to `address` (a payout completed, in full or in part).
pub async fn paid_before(conn: &mut Tx<'_>, chain_id: &str, address: &str) -> Result<bool, StoreError> {
    let row = db::query(
        "SELECT refund_id FROM refunds WHERE to_address = $1 AND chain_id = $2 \
         AND status IN ('Completed', 'PartiallyCompleted') LIMIT 1",
    )
    .bind(address)
    .bind(chain_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.is_some())
}

impl Store {
    /// Every policy, oldest first.
    pub async fn approval_policies(&self) -> Result<Vec<PolicyRow>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM approval_policies ORDER BY created_at, policy_id"))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(from_row).collect()
    }

    pub async fn approval_policy(&self, policy_id: &str) -> Result<Option<PolicyRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM approval_policies WHERE policy_id = $1"))
            .bind(policy_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }
}
