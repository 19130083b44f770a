//! Refunds: created against a balance (and optionally a paid order), idempotent on `request_id`.
//!
//! Money moves at creation: the amount and the developer fee go from the paying balance into
//! `Reserved` (`ebb_core::refund::reservation_entries`). Cancelling moves them back. Paying out
//! (`payouts/`) moves the amount to the world and the fee to the PSP. Which merchant a refund is for and
//! how much of an order is left to refund are `ebb-core` rules (`refund_merchant`, `refunded_after`),
//! applied under the order's row lock. The use cases (create, set the address, cancel) are composed in
//! `ebb-app/src/refunds.rs` from the functions here, each in one transaction.

use ebb_core::approval::{Approval, ApprovalStatus, RefundChannel};
use ebb_core::ledger::Account;
use ebb_core::refund::{refunded_after, reservation_entries, settlement_entries};
use ebb_core::screening::Screening;
use ebb_core::{Amount, RefundSource, RefundStatus};

use crate::columns::Columns;
use crate::db::{self, Tx};
use crate::events::{self, EventKind};
use crate::ledger::{self, SourceType};
use crate::orders::lock_order;
use crate::page::{self, Filter, Page, PageRequest};
use crate::transactions::{tx_from_prefixed_row, TransactionRow, TX_COLUMNS};
use crate::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RefundRow {
    pub refund_id: String,
    pub request_id: String,
    pub order_id: Option<String>,
    pub merchant_id: Option<String>,
    pub token_id: String,
    pub chain_id: String,
    #[serde(with = "crate::snapshot::amount")]
    pub amount: Amount,
    /// `""` until an address is set.
    pub to_address: String,
    #[serde(with = "crate::snapshot::refund_status")]
    pub status: RefundStatus,
    pub failed_reason: Option<String>,
    /// Why a `Pending` refund is not being paid out yet (hot wallet short of funds, gas above the cap...).
    pub hold_reason: Option<String>,
    #[serde(with = "crate::snapshot::refund_source")]
    pub refund_type: RefundSource,
    pub charge_merchant_fee: bool,
    #[serde(with = "crate::snapshot::amount_opt")]
    pub merchant_fee_amount: Option<Amount>,
    pub initiator: String,
    /// How the refund was made; approval policies match on it.
    #[serde(with = "crate::snapshot::refund_channel", default = "crate::snapshot::api_channel")]
    pub channel: RefundChannel,
    /// The maker-checker approval the refund waits for or passed; `None`: no policy applied.
    #[serde(with = "crate::snapshot::approval_opt", default)]
    pub approval: Option<Approval>,
    /// The screening of its destination, when it got one.
    #[serde(with = "crate::snapshot::screening_opt", default)]
    pub screening: Option<Screening>,
    /// What the refund counts for against its order's fiat price; `None` unless the order has one.
    #[serde(default)]
    pub pricing: Option<RefundPricing>,
    pub created_at: i64,
    pub updated_at: i64,
    pub transactions: Vec<TransactionRow>,
}

/// A refund of a fiat-priced order in the order's currency: asked in it (converted to the token at a
/// fresh rate when the refund was made) or asked in the token (counted at the order's own rate).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RefundPricing {
    /// The order's `pricing_currency`.
    pub currency: String,
    /// Minor units of `currency` the refund counts for against the order's price.
    #[serde(with = "crate::snapshot::amount")]
    pub amount: Amount,
    /// Asked in `currency` (else asked in the token).
    pub asked: bool,
    /// Units of `currency` per token that turned one amount into the other.
    pub rate: String,
    /// Where the rate came from (`order` for the order's own rate) and when it was true.
    pub rate_source: String,
    pub rate_at: i64,
}

/// Where a `request_id` is unique: among the requests of PSP-wide keys, or of one merchant's keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyScope {
    Psp,
    Merchant(String),
}

impl IdempotencyScope {
    /// As stored in `refunds.idem_scope`: `*` for the PSP, else the merchant id (never `*`).
    pub fn key(&self) -> &str {
        match self {
            IdempotencyScope::Psp => "*",
            IdempotencyScope::Merchant(m) => m,
        }
    }
}

/// Filters for listing refunds (all optional).
#[derive(Debug, Default, Clone)]
pub struct RefundFilter {
    pub merchant_id: Option<String>,
    pub request_id: Option<String>,
    pub statuses: Vec<RefundStatus>,
    /// Only refunds under an approval policy (the approval queue)...
    pub under_approval: bool,
    /// ...and of those, only the ones whose approval has this status.
    pub approval_status: Option<ApprovalStatus>,
    pub min_created_at: Option<i64>,
    pub max_created_at: Option<i64>,
    pub min_updated_at: Option<i64>,
    pub max_updated_at: Option<i64>,
    pub token_id: Option<String>,
    pub order_id: Option<String>,
    /// The destination, exactly as stored.
    pub to_address: Option<String>,
    /// The amount in base units (with `token_id`, an exact amount).
    pub amount: Option<String>,
}

impl RefundFilter {
    fn sql(&self) -> Filter {
        let mut f = Filter::default();
        for (col, v) in [
            ("merchant_id", &self.merchant_id),
            ("request_id", &self.request_id),
            ("token_id", &self.token_id),
            ("order_id", &self.order_id),
            ("to_address", &self.to_address),
            ("amount", &self.amount),
        ] {
            if let Some(v) = v {
                f.eq(col, v);
            }
        }
        let statuses: Vec<String> = self.statuses.iter().map(|s| s.as_str().to_owned()).collect();
        f.is_in("status", &statuses);
        match self.approval_status {
            Some(a) => {
                f.eq("approval_status", a.as_str());
            }
            None if self.under_approval => {
                f.not_null("approval_status");
            }
            None => {}
        }
        for (col, op, v) in [
            ("created_at", ">=", self.min_created_at),
            ("created_at", "<=", self.max_created_at),
            ("updated_at", ">=", self.min_updated_at),
            ("updated_at", "<=", self.max_updated_at),
        ] {
            if let Some(v) = v {
                f.cmp_int(col, op, v);
            }
        }
        f
    }
}

const COLUMNS: &str = "seq, refund_id, request_id, order_id, merchant_id, token_id, chain_id, amount, to_address, \
     status, failed_reason, refund_type, charge_merchant_fee, merchant_fee_amount, initiator, created_at, updated_at, \
     idem_scope, request_fingerprint, hold_reason, channel, approval, screening, pricing";

fn from_row(row: &impl Columns) -> Result<RefundRow, StoreError> {
    let status: String = row.col("status")?;
    let refund_type: String = row.col("refund_type")?;
    let fee: Option<String> = row.col("merchant_fee_amount")?;
    let channel: String = row.col("channel")?;
    let approval: Option<String> = row.col("approval")?;
    let screening: Option<String> = row.col("screening")?;
    let pricing: Option<String> = row.col("pricing")?;
    Ok(RefundRow {
        refund_id: row.col("refund_id")?,
        request_id: row.col("request_id")?,
        order_id: row.col("order_id")?,
        merchant_id: row.col("merchant_id")?,
        token_id: row.col("token_id")?,
        chain_id: row.col("chain_id")?,
        amount: Amount::from_base_units_str(&row.col::<String>("amount")?)?,
        to_address: row.col("to_address")?,
        status: RefundStatus::parse(&status)
            .ok_or_else(|| StoreError::Internal(format!("stored refund status {status:?}")))?,
        failed_reason: row.col("failed_reason")?,
        hold_reason: row.col("hold_reason")?,
        refund_type: RefundSource::parse(&refund_type)
            .ok_or_else(|| StoreError::Internal(format!("stored refund type {refund_type:?}")))?,
        charge_merchant_fee: row.col::<i64>("charge_merchant_fee")? != 0,
        merchant_fee_amount: fee.as_deref().map(Amount::from_base_units_str).transpose()?,
        initiator: row.col("initiator")?,
        channel: RefundChannel::parse(&channel)
            .ok_or_else(|| StoreError::Internal(format!("stored refund channel {channel:?}")))?,
        approval: approval
            .as_deref()
            .map(crate::snapshot::approval_from_json)
            .transpose()
            .map_err(|e| StoreError::Internal(format!("stored approval: {e}")))?,
        screening: screening
            .as_deref()
            .map(crate::snapshot::screening_from_json)
            .transpose()
            .map_err(|e| StoreError::Internal(format!("stored screening: {e}")))?,
        pricing: pricing
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| StoreError::Internal(format!("stored pricing: {e}")))?,
        created_at: row.col("created_at")?,
        updated_at: row.col("updated_at")?,
        transactions: Vec::new(),
    })
}

pub async fn lock_refund(conn: &mut Tx<'_>, refund_id: &str, scope: Option<&str>) -> Result<RefundRow, StoreError> {
    let lock = conn.backend().for_update();
    let row = db::query(&format!("SELECT {COLUMNS} FROM refunds WHERE refund_id = $1{lock}"))
        .bind(refund_id)
        .fetch_optional(&mut *conn)
        .await?;
    let not_found = || StoreError::NotFound { what: "refund", id: refund_id.to_owned() };
    let refund = from_row(&row.ok_or_else(not_found)?)?;
    // A merchant-restricted key must not learn that another merchant's refund exists.
    if scope.is_some_and(|m| refund.merchant_id.as_deref() != Some(m)) {
        return Err(not_found());
    }
    Ok(refund)
}

/// The account a refund is paid from.
pub(crate) fn source_account(r: &RefundRow) -> Result<Account, StoreError> {
    match r.refund_type {
        RefundSource::Psp => Ok(Account::Psp),
        RefundSource::Held => Ok(Account::Held),
        RefundSource::Merchant => r
            .merchant_id
            .clone()
            .map(Account::Merchant)
            .ok_or_else(|| StoreError::Internal(format!("merchant refund {} has no merchant", r.refund_id))),
    }
}

pub async fn post_reservation(conn: &mut Tx<'_>, r: &RefundRow, release: bool, now: i64) -> Result<(), StoreError> {
    let (amount, fee) =
        reservation_entries(&source_account(r)?, &r.token_id, r.amount, r.merchant_fee_amount, release)?;
    match &fee {
        Some(fee) => {
            ledger::post_many(
                conn,
                &[(&amount, SourceType::RefundOut), (fee, SourceType::RefundFee)],
                &r.refund_id,
                now,
            )
            .await
        }
        None => ledger::post(conn, &amount, SourceType::RefundOut, &r.refund_id, now).await,
    }
}

/// Settles a transfer of `amount` the chain confirmed (see [`settlement_entries`]).
pub async fn post_settlement(
    conn: &mut Tx<'_>,
    r: &RefundRow,
    amount: Amount,
    last: bool,
    now: i64,
) -> Result<(), StoreError> {
    match settlement_entries(&r.token_id, amount, r.merchant_fee_amount, last)? {
        (paid, Some(fee)) => {
            ledger::post_many(conn, &[(&paid, SourceType::RefundOut), (&fee, SourceType::RefundFee)], &r.refund_id, now)
                .await
        }
        (paid, None) => ledger::post(conn, &paid, SourceType::RefundOut, &r.refund_id, now).await,
    }
}

/// Moves an order's refunded totals by the refund (added on create, taken off on release): the token
/// amount, never beyond what the order received, and for a fiat-priced order the refund's `pricing`
/// amount, never beyond the order's price.
pub async fn adjust_order_refunded(conn: &mut Tx<'_>, r: &RefundRow, add: bool) -> Result<(), StoreError> {
    let Some(order_id) = &r.order_id else { return Ok(()) };
    let order = lock_order(conn, order_id).await?;
    let out_of_range = || StoreError::Internal(format!("refunded total of order {order_id} out of range"));
    let refunded = if add {
        refunded_after(order.received_amount, order.refunded_amount, r.amount).map_err(|refundable| {
            StoreError::OverRefund {
                order_id: order_id.clone(),
                token_id: order.token_id.clone(),
                refundable: refundable.to_string(),
            }
        })?
    } else {
        order.refunded_amount.checked_sub(r.amount).ok_or_else(out_of_range)?
    };
    let refunded_pricing = match (&r.pricing, order.fiat_price()) {
        (Some(p), Some((currency, decimals, price))) if p.currency == currency => {
            if add {
                refunded_after(price, order.refunded_pricing, p.amount).map_err(|refundable| {
                    StoreError::OverRefundPrice {
                        order_id: order_id.clone(),
                        currency: currency.to_owned(),
                        refundable: refundable.to_decimal_string(decimals),
                    }
                })?
            } else {
                order.refunded_pricing.checked_sub(p.amount).ok_or_else(out_of_range)?
            }
        }
        (None, _) => order.refunded_pricing,
        _ => return Err(StoreError::Invalid(format!("the refund is priced in a currency order {order_id} is not"))),
    };
    db::query("UPDATE orders SET refunded_amount = $1, refunded_pricing = $2 WHERE order_id = $3")
        .bind(refunded.to_string())
        .bind(refunded_pricing.to_string())
        .bind(order_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl Store {
    /// The refund with its transactions read afresh (after a write that read only the refund row).
    pub async fn with_transactions(&self, mut r: RefundRow) -> Result<RefundRow, StoreError> {
        r.transactions = self.transactions_of("refund_id", std::slice::from_ref(&r.refund_id)).await?;
        Ok(r)
    }

    /// A refund by id with its transactions, in one query (this is the hottest read); `scope` is the
    /// merchant a restricted key may see.
    pub async fn refund(&self, refund_id: &str, scope: Option<&str>) -> Result<Option<RefundRow>, StoreError> {
        let r = match self.point_reader() {
            Some(reader) => {
                let mut refund = None;
                reader.each_by_id(refund_join_sql(), refund_id, |row| add_join_row(&mut refund, row))?;
                refund
            }
            None => {
                let rows = sqlx::query(refund_join_sql()).bind(refund_id).fetch_all(self.pool()).await?;
                refund_from_join_rows(&rows)?
            }
        };
        Ok(r.filter(|r| scope.is_none_or(|m| r.merchant_id.as_deref() == Some(m))))
    }

    pub async fn list_refunds(
        &self,
        filter: &RefundFilter,
        page_req: &PageRequest,
    ) -> Result<Page<RefundRow>, StoreError> {
        let f = filter.sql();
        let mut page = page::list(self.pool(), "refunds", COLUMNS, &f, page_req, from_row).await?;
        let ids: Vec<String> = page.items.iter().map(|r| r.refund_id.clone()).collect();
        let mut txs = self.transactions_of("refund_id", &ids).await?;
        for r in &mut page.items {
            r.transactions = txs.extract_if(.., |t| t.refund_id.as_deref() == Some(&r.refund_id)).collect();
        }
        Ok(page)
    }

    /// Up to `limit` refunds after `after_seq`, oldest first, without their transactions: exports read
    /// in these batches, so that a year of refunds never sits in memory. Returns each with its `seq`.
    pub async fn refund_batch(
        &self,
        filter: &RefundFilter,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<(i64, RefundRow)>, StoreError> {
        let mut f = filter.sql();
        f.cmp_int("seq", ">", after_seq);
        let sql = format!("SELECT {COLUMNS} FROM refunds{} ORDER BY seq LIMIT {limit}", f.where_sql());
        let rows = f.bind_all(sqlx::query(&sql)).fetch_all(self.pool()).await?;
        rows.iter().map(|r| Ok((r.col::<i64>("seq")?, from_row(r)?))).collect()
    }
}

/// Inserts a new refund row under its idempotency scope and request fingerprint; `false` (nothing
/// written) if the scope already has this `request_id`. On PostgreSQL a concurrent insert of the same
/// request waits here on the unique index until the other transaction ends.
pub async fn insert_row(
    conn: &mut Tx<'_>,
    refund: &RefundRow,
    scope: &IdempotencyScope,
    fingerprint: &str,
) -> Result<bool, StoreError> {
    let inserted = db::query(
        "INSERT INTO refunds (refund_id, request_id, idem_scope, request_fingerprint, order_id, merchant_id, \
             token_id, chain_id, amount, to_address, status, failed_reason, refund_type, charge_merchant_fee, \
             merchant_fee_amount, initiator, created_at, updated_at, channel, approval, approval_status, screening, \
             pricing) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, \
             $22) \
             ON CONFLICT (idem_scope, request_id) DO NOTHING",
    )
    .bind(&refund.refund_id)
    .bind(&refund.request_id)
    .bind(scope.key())
    .bind(fingerprint)
    .bind(&refund.order_id)
    .bind(&refund.merchant_id)
    .bind(&refund.token_id)
    .bind(&refund.chain_id)
    .bind(refund.amount.to_string())
    .bind(&refund.to_address)
    .bind(refund.status.as_str())
    .bind(refund.refund_type.as_str())
    .bind(i64::from(refund.charge_merchant_fee))
    .bind(refund.merchant_fee_amount.map(|f| f.to_string()))
    .bind(&refund.initiator)
    .bind(refund.created_at)
    .bind(refund.updated_at)
    .bind(refund.channel.as_str())
    .bind(refund.approval.as_ref().map(crate::snapshot::approval_json))
    .bind(refund.approval.as_ref().map(|a| a.status.as_str()))
    .bind(refund.screening.as_ref().map(crate::snapshot::screening_json))
    .bind(refund.pricing.as_ref().map(|p| serde_json::to_string(p).expect("a pricing always serialises")))
    .execute(&mut *conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// The refund a scope's `request_id` made, with the fingerprint of the request that made it.
pub async fn find_by_request(
    conn: &mut Tx<'_>,
    scope: &IdempotencyScope,
    request_id: &str,
) -> Result<(RefundRow, String), StoreError> {
    let row = db::query(&format!("SELECT {COLUMNS} FROM refunds WHERE idem_scope = $1 AND request_id = $2"))
        .bind(scope.key())
        .bind(request_id)
        .fetch_one(&mut *conn)
        .await?;
    Ok((from_row(&row)?, row.col("request_fingerprint")?))
}

/// The refund-with-transactions join: one row per transaction (or one with NULL `t_` columns).
pub(crate) fn refund_join_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let r: Vec<String> = COLUMNS.split(", ").map(|c| format!("r.{}", c.trim())).collect();
        let t: Vec<String> = TX_COLUMNS.split(", ").map(|c| format!("t.{0} AS t_{0}", c.trim())).collect();
        format!(
            "SELECT {}, {} FROM refunds r LEFT JOIN payment_transactions t ON t.refund_id = r.refund_id \
             WHERE r.refund_id = $1 ORDER BY t.seq",
            r.join(", "),
            t.join(", ")
        )
    })
}

pub(crate) fn refund_from_join_rows(rows: &[impl Columns]) -> Result<Option<RefundRow>, StoreError> {
    let mut refund = None;
    for row in rows {
        add_join_row(&mut refund, row)?;
    }
    Ok(refund)
}

/// Folds one row of [`refund_join_sql`] into the refund: the first row gives the refund, every row with
/// a transaction adds it.
fn add_join_row(refund: &mut Option<RefundRow>, row: &impl Columns) -> Result<(), StoreError> {
    let r = match refund {
        Some(r) => r,
        None => refund.insert(from_row(row)?),
    };
    if row.col::<Option<String>>("t_tx_id")?.is_some() {
        r.transactions.push(tx_from_prefixed_row(row, "t_")?);
    }
    Ok(())
}

/// Moves a refund from its current status to `next`, only if nobody moved it meanwhile. Any change of
/// status or address ends a payout hold: the executor judges the refund afresh.
pub async fn compare_and_set(
    conn: &mut Tx<'_>,
    r: &RefundRow,
    next: RefundStatus,
    failed_reason: Option<&str>,
    to_address: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    let done = db::query(
        "UPDATE refunds SET status = $1, failed_reason = COALESCE($2, failed_reason), to_address = COALESCE($3, to_address), \
         hold_reason = NULL, updated_at = $4 WHERE refund_id = $5 AND status = $6",
    )
    .bind(next.as_str())
    .bind(failed_reason)
    .bind(to_address)
    .bind(now)
    .bind(&r.refund_id)
    .bind(r.status.as_str())
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() != 1 {
        return Err(StoreError::InvalidState(format!("refund {} changed concurrently; retry", r.refund_id)));
    }
    // Every status change of a refund passes here, after the changes to its transactions.
    raise_refund_changed(conn, &r.refund_id).await
}

/// A refund was created: its snapshot is the row just inserted (it has no transactions yet).
/// One made under an approval policy also says its approval began.
pub async fn raise_refund_created(conn: &mut Tx<'_>, r: &RefundRow) -> Result<(), StoreError> {
    let snapshot = events::json(r)?;
    if r.approval.is_some() {
        events::raise(conn, events::REFUND_APPROVAL_UPDATED, EventKind::Refund, &r.refund_id, snapshot.clone()).await?;
    }
    events::raise(conn, events::REFUND_STATUS_UPDATED, EventKind::Refund, &r.refund_id, snapshot).await?;
    if r.refund_type == RefundSource::Held {
        crate::dispositions::on_refund_changed(conn, r).await?;
        crate::kyt::on_refund_changed(conn, r).await?;
    }
    Ok(())
}

/// A refund's status changed: reads it back, with its transactions, inside the transaction.
pub(crate) async fn raise_refund_changed(conn: &mut Tx<'_>, refund_id: &str) -> Result<(), StoreError> {
    let r = raise_refund_event(conn, refund_id, events::REFUND_STATUS_UPDATED).await?;
    if r.refund_type == RefundSource::Held {
        crate::dispositions::on_refund_changed(conn, &r).await?;
        crate::kyt::on_refund_changed(conn, &r).await?;
    }
    Ok(())
}

/// A refund's approval changed (it began, a vote counted, it was decided or started again).
pub async fn raise_approval_changed(conn: &mut Tx<'_>, refund_id: &str) -> Result<(), StoreError> {
    raise_refund_event(conn, refund_id, events::REFUND_APPROVAL_UPDATED).await.map(|_| ())
}

async fn raise_refund_event(conn: &mut Tx<'_>, refund_id: &str, event_type: &str) -> Result<RefundRow, StoreError> {
    let rows = db::query(refund_join_sql()).bind(refund_id).fetch_all(&mut *conn).await?;
    let r = refund_from_join_rows(&rows)?
        .ok_or_else(|| StoreError::Internal(format!("refund {refund_id} vanished inside its transaction")))?;
    events::raise(conn, event_type, EventKind::Refund, refund_id, events::json(&r)?).await?;
    Ok(r)
}
