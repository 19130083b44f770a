//! Refunds: created against a balance (and optionally a paid order), idempotent on `request_id`.
//!
//! Money moves at creation: the amount and the developer fee go from the paying balance into
//! `Reserved` (`ebb_core::refund::reservation_entries`). Cancelling moves them back. Paying out
//! (`payouts/`) moves the amount to the world and the fee to the PSP. Which merchant a refund is for and
//! how much of an order is left to refund are `ebb-core` rules (`refund_merchant`, `refunded_after`),
//! applied here under the order's row lock.

use ebb_core::ledger::Account;
use ebb_core::refund::{
    refund_merchant, refunded_after, reservation_entries, OrderFacts, RefundEvent, RefundPartyError, CANCELLED_REASON,
};
use ebb_core::{Address, Amount, RefundSource, RefundStatus, Token};

use crate::columns::Columns;
use crate::db::{self, Tx};
use crate::events::{self, EventKind};
use crate::ledger::{self, SourceType};
use crate::orders::lock_order;
use crate::page::{self, Filter, Page, PageRequest};
use crate::transactions::{tx_from_prefixed_row, TransactionRow, TX_COLUMNS};
use crate::{ids, now_s, Store, StoreError};

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
    pub created_at: i64,
    pub updated_at: i64,
    pub transactions: Vec<TransactionRow>,
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

/// A validated request to create a refund. Amounts are in the token's base units.
#[derive(Debug, Clone)]
pub struct NewRefund {
    pub request_id: String,
    /// Who may see this `request_id`; a merchant's scope also limits the refund to that merchant.
    pub idem_scope: IdempotencyScope,
    pub merchant_id: Option<String>,
    pub order_id: Option<String>,
    pub token: Token,
    pub amount: Amount,
    pub to_address: Option<Address>,
    pub source: RefundSource,
    /// The developer fee charged to the merchant (only with `RefundSource::Merchant`).
    pub merchant_fee: Option<Amount>,
    pub initiator: String,
    /// Made by `POST /links/refunds`: the address comes through the link. A link request and a refund
    /// request never count as the same request, whatever their fields.
    pub via_link: bool,
}

impl NewRefund {
    /// What makes two requests "the same request": every field the client chose, amounts in base
    /// units (so "1.5" and "1.50" are the same), not the initiator.
    fn fingerprint(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}|{}|{}|{}",
            if self.via_link { "link-v1" } else { "v1" },
            self.merchant_id.as_deref().unwrap_or(""),
            self.order_id.as_deref().unwrap_or(""),
            self.token.id,
            self.amount,
            self.to_address.as_ref().map(Address::as_str).unwrap_or(""),
            self.source.as_str(),
            self.merchant_fee.map(|f| f.to_string()).unwrap_or_default(),
        )
    }
}

/// Whether `create_refund` made a new refund or found the one made earlier by the same request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    New(RefundRow),
    Existing(RefundRow),
}

impl Created {
    pub fn into_inner(self) -> RefundRow {
        match self {
            Created::New(r) | Created::Existing(r) => r,
        }
    }
}

/// Filters for listing refunds (all optional).
#[derive(Debug, Default, Clone)]
pub struct RefundFilter {
    pub merchant_id: Option<String>,
    pub request_id: Option<String>,
    pub statuses: Vec<RefundStatus>,
    pub min_created_at: Option<i64>,
    pub max_created_at: Option<i64>,
    pub min_updated_at: Option<i64>,
    pub max_updated_at: Option<i64>,
}

const COLUMNS: &str = "seq, refund_id, request_id, order_id, merchant_id, token_id, chain_id, amount, to_address, \
     status, failed_reason, refund_type, charge_merchant_fee, merchant_fee_amount, initiator, created_at, updated_at, \
     idem_scope, request_fingerprint, hold_reason";

fn from_row(row: &impl Columns) -> Result<RefundRow, StoreError> {
    let status: String = row.col("status")?;
    let refund_type: String = row.col("refund_type")?;
    let fee: Option<String> = row.col("merchant_fee_amount")?;
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
        created_at: row.col("created_at")?,
        updated_at: row.col("updated_at")?,
        transactions: Vec::new(),
    })
}

pub(crate) async fn lock_refund(
    conn: &mut Tx<'_>,
    refund_id: &str,
    scope: Option<&str>,
) -> Result<RefundRow, StoreError> {
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
        RefundSource::Merchant => r
            .merchant_id
            .clone()
            .map(Account::Merchant)
            .ok_or_else(|| StoreError::Internal(format!("merchant refund {} has no merchant", r.refund_id))),
    }
}

pub(crate) async fn post_reservation(
    conn: &mut Tx<'_>,
    r: &RefundRow,
    release: bool,
    now: i64,
) -> Result<(), StoreError> {
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

/// Moves an order's refunded total by `delta` (positive on create, negative on release).
pub(crate) async fn adjust_order_refunded(conn: &mut Tx<'_>, r: &RefundRow, add: bool) -> Result<(), StoreError> {
    let Some(order_id) = &r.order_id else { return Ok(()) };
    let order = lock_order(conn, order_id).await?;
    let refunded = if add {
        refunded_after(order.received_amount, order.refunded_amount, r.amount).map_err(|refundable| {
            StoreError::OverRefund {
                order_id: order_id.clone(),
                token_id: order.token_id.clone(),
                refundable: refundable.to_string(),
            }
        })?
    } else {
        order
            .refunded_amount
            .checked_sub(r.amount)
            .ok_or_else(|| StoreError::Internal(format!("refunded total of order {order_id} out of range")))?
    };
    db::query("UPDATE orders SET refunded_amount = $1 WHERE order_id = $2")
        .bind(refunded.to_string())
        .bind(order_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl Store {
    /// Creates a refund, or returns the one an identical earlier request created.
    pub async fn create_refund(&self, new: NewRefund) -> Result<Created, StoreError> {
        // Merchants are never deleted, so this check may run before, and outside, the write: it keeps a
        // read off the serial SQLite writer and out of PostgreSQL's lock-holding span. The foreign key
        // on refunds.merchant_id backs it.
        if let Some(m) = &new.merchant_id {
            if !self.merchant_exists(m).await? {
                return Err(StoreError::NotFound { what: "merchant", id: m.clone() });
            }
        }
        let created = self.write(move |conn| Box::pin(async move { insert_refund(conn, &new).await })).await;
        match created {
            // A refund found by its request_id may have payout legs by now; the transaction above read only
            // the refund row.
            Ok(Created::Existing(r)) => Ok(Created::Existing(self.with_transactions(r).await?)),
            other => other,
        }
    }

    async fn with_transactions(&self, mut r: RefundRow) -> Result<RefundRow, StoreError> {
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
        let mut f = Filter::default();
        if let Some(m) = &filter.merchant_id {
            f.eq("merchant_id", m);
        }
        if let Some(r) = &filter.request_id {
            f.eq("request_id", r);
        }
        let statuses: Vec<String> = filter.statuses.iter().map(|s| s.as_str().to_owned()).collect();
        f.is_in("status", &statuses);
        for (col, op, v) in [
            ("created_at", ">=", filter.min_created_at),
            ("created_at", "<=", filter.max_created_at),
            ("updated_at", ">=", filter.min_updated_at),
            ("updated_at", "<=", filter.max_updated_at),
        ] {
            if let Some(v) = v {
                f.cmp_int(col, op, v);
            }
        }
        let mut page = page::list(self.pool(), "refunds", COLUMNS, &f, page_req, from_row).await?;
        let ids: Vec<String> = page.items.iter().map(|r| r.refund_id.clone()).collect();
        let mut txs = self.transactions_of("refund_id", &ids).await?;
        for r in &mut page.items {
            r.transactions = txs.extract_if(.., |t| t.refund_id.as_deref() == Some(&r.refund_id)).collect();
        }
        Ok(page)
    }

    /// Sets or changes the receiving address of a refund that has not started paying out.
    pub async fn set_refund_address(
        &self,
        refund_id: &str,
        scope: Option<&str>,
        to: Address,
    ) -> Result<RefundRow, StoreError> {
        let (refund_id, scope) = (refund_id.to_owned(), scope.map(str::to_owned));
        let r = self
            .write(move |conn| {
                Box::pin(async move {
                    let mut r = lock_refund(conn, &refund_id, scope.as_deref()).await?;
                    let next = r.status.apply(RefundEvent::AddressSet).map_err(|_| {
                        StoreError::InvalidState(format!(
                            "refund {refund_id} is {} and its address can no longer change",
                            r.status
                        ))
                    })?;
                    let now = now_s();
                    compare_and_set(conn, &r, next, None, Some(to.as_str()), now).await?;
                    r.status = next;
                    r.to_address = to.into_string();
                    r.updated_at = now;
                    Ok(r)
                })
            })
            .await?;
        self.with_transactions(r).await
    }

    /// Cancels a refund that has not started paying out; its reserved funds go back where they came from.
    pub async fn cancel_refund(&self, refund_id: &str, scope: Option<&str>) -> Result<RefundRow, StoreError> {
        let (refund_id, scope) = (refund_id.to_owned(), scope.map(str::to_owned));
        let r = self
            .write(move |conn| {
                Box::pin(async move {
                    let mut r = lock_refund(conn, &refund_id, scope.as_deref()).await?;
                    let next = r.status.apply(RefundEvent::Cancelled).map_err(|_| {
                        StoreError::InvalidState(format!(
                            "refund {refund_id} is {} and can no longer be cancelled",
                            r.status
                        ))
                    })?;
                    let now = now_s();
                    compare_and_set(conn, &r, next, Some(CANCELLED_REASON), None, now).await?;
                    adjust_order_refunded(conn, &r, false).await?;
                    post_reservation(conn, &r, true, now).await?;
                    r.status = next;
                    r.failed_reason = Some(CANCELLED_REASON.to_owned());
                    r.updated_at = now;
                    Ok(r)
                })
            })
            .await?;
        self.with_transactions(r).await
    }
}

/// Inserts a refund and reserves its funds, or finds the one an identical earlier request made; inside
/// the caller's transaction.
pub(crate) async fn insert_refund(conn: &mut Tx<'_>, new: &NewRefund) -> Result<Created, StoreError> {
    let fingerprint = new.fingerprint();
    // Lock the order first: concurrent refunds of one order queue here.
    let order = match &new.order_id {
        Some(order_id) => Some(lock_order(conn, order_id).await?),
        None => None,
    };
    let facts = order.as_ref().map(|o| OrderFacts {
        order_id: &o.order_id,
        merchant_id: &o.merchant_id,
        token_id: &o.token_id,
    });
    let scope = match &new.idem_scope {
        IdempotencyScope::Merchant(m) => Some(m.as_str()),
        IdempotencyScope::Psp => None,
    };
    let merchant_id =
        refund_merchant(new.merchant_id.as_deref(), facts, &new.token.id, scope, new.source).map_err(|e| match e {
            RefundPartyError::OutsideScope { merchant_id } => {
                StoreError::NotFound { what: "merchant", id: merchant_id }
            }
            other => StoreError::Invalid(other.to_string()),
        })?;
    let now = now_s();
    let refund = RefundRow {
        refund_id: ids::new_id("R"),
        request_id: new.request_id.clone(),
        order_id: new.order_id.clone(),
        merchant_id,
        token_id: new.token.id.clone(),
        chain_id: new.token.chain_id.clone(),
        amount: new.amount,
        to_address: new.to_address.as_ref().map(|a| a.as_str().to_owned()).unwrap_or_default(),
        status: if new.to_address.is_some() { RefundStatus::Pending } else { RefundStatus::PendingConfirmation },
        failed_reason: None,
        hold_reason: None,
        refund_type: new.source,
        charge_merchant_fee: new.merchant_fee.is_some(),
        merchant_fee_amount: new.merchant_fee,
        initiator: new.initiator.clone(),
        created_at: now,
        updated_at: now,
        transactions: Vec::new(),
    };
    // On PostgreSQL a concurrent identical request waits here on the unique index
    // until this transaction ends, then finds the row.
    let inserted = db::query(
        "INSERT INTO refunds (refund_id, request_id, idem_scope, request_fingerprint, order_id, merchant_id, \
             token_id, chain_id, amount, to_address, status, failed_reason, refund_type, charge_merchant_fee, \
             merchant_fee_amount, initiator, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, $12, $13, $14, $15, $16, $17) \
             ON CONFLICT (idem_scope, request_id) DO NOTHING",
    )
    .bind(&refund.refund_id)
    .bind(&refund.request_id)
    .bind(new.idem_scope.key())
    .bind(&fingerprint)
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
    .bind(now)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 0 {
        let row = db::query(&format!("SELECT {COLUMNS} FROM refunds WHERE idem_scope = $1 AND request_id = $2"))
            .bind(new.idem_scope.key())
            .bind(&new.request_id)
            .fetch_one(&mut *conn)
            .await?;
        let stored_fingerprint: String = row.col("request_fingerprint")?;
        if stored_fingerprint != fingerprint {
            return Err(StoreError::IdempotencyConflict { request_id: new.request_id.clone() });
        }
        return Ok(Created::Existing(from_row(&row)?));
    }
    adjust_order_refunded(conn, &refund, true).await?;
    post_reservation(conn, &refund, false, now).await?;
    raise_refund_created(conn, &refund).await?;
    Ok(Created::New(refund))
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
pub(crate) async fn compare_and_set(
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
pub(crate) async fn raise_refund_created(conn: &mut Tx<'_>, r: &RefundRow) -> Result<(), StoreError> {
    events::raise(conn, events::REFUND_STATUS_UPDATED, EventKind::Refund, &r.refund_id, events::json(r)?).await?;
    Ok(())
}

/// A refund's status changed: reads it back, with its transactions, inside the transaction.
pub(crate) async fn raise_refund_changed(conn: &mut Tx<'_>, refund_id: &str) -> Result<(), StoreError> {
    let rows = db::query(refund_join_sql()).bind(refund_id).fetch_all(&mut *conn).await?;
    let r = refund_from_join_rows(&rows)?
        .ok_or_else(|| StoreError::Internal(format!("refund {refund_id} vanished inside its transaction")))?;
    events::raise(conn, events::REFUND_STATUS_UPDATED, EventKind::Refund, refund_id, events::json(&r)?).await?;
    Ok(())
}
