//! Pay-in orders and the payments that settle them.

use ebb_core::ledger::{Account, Entry};
use ebb_core::order::{self, CreditError, OrderAmounts, PaymentCredit};
use ebb_core::{Amount, OrderStatus};

use crate::columns::{amount, Columns};
use crate::db::{self, Tx};
use crate::events::{self, EventKind};
use crate::ledger::{self, SourceType};
use crate::page::{self, Filter, Page, PageRequest};
use crate::transactions::{order_transactions_sql, tx_from_prefixed_row, tx_from_row, TransactionRow, TX_COLUMNS};
use crate::{Store, StoreError};
use ebb_core::clock::now_s;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OrderRow {
    pub order_id: String,
    pub merchant_id: String,
    pub merchant_order_code: Option<String>,
    pub psp_order_code: String,
    pub pricing_currency: Option<String>,
    pub pricing_amount: Option<String>,
    pub token_id: String,
    pub chain_id: String,
    #[serde(with = "crate::snapshot::amount")]
    pub payable_amount: Amount,
    #[serde(with = "crate::snapshot::amount")]
    pub fee_amount: Amount,
    /// How much of `fee_amount` payments have credited to the PSP so far.
    #[serde(with = "crate::snapshot::amount")]
    pub fee_credited: Amount,
    /// Units of `pricing_currency` per token (`"1"` for an order priced in its token).
    pub exchange_rate: String,
    /// Where `exchange_rate` came from (`static`, `coingecko`, `kraken`, or `order` when the request
    /// gave both the price and the payable amount) and when it was true; `None` without a pricing
    /// currency.
    #[serde(default)]
    pub rate_source: Option<String>,
    #[serde(default)]
    pub rate_at: Option<i64>,
    #[serde(with = "crate::snapshot::amount")]
    pub amount_tolerance: Amount,
    pub receive_address: String,
    /// The stored status; see [`OrderRow::effective_status`].
    #[serde(with = "crate::snapshot::order_status")]
    pub status: OrderStatus,
    #[serde(with = "crate::snapshot::amount")]
    pub received_amount: Amount,
    #[serde(with = "crate::snapshot::amount")]
    pub refunded_amount: Amount,
    /// The part of the price (minor units of `pricing_currency`) the order's live refunds count for.
    #[serde(with = "crate::snapshot::amount", default)]
    pub refunded_pricing: Amount,
    pub expired_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// Until when (seconds) the watcher looks for payments to the receiving address.
    #[serde(default)]
    pub watch_until: i64,
    pub transactions: Vec<TransactionRow>,
}

impl OrderRow {
    /// The order's fiat price: its currency, the currency's minor units and the price in them. `None`
    /// for an order priced in its token, and for one stored before ebb had prices whose pricing fields
    /// are not a supported currency and amount (such an order is refunded in its token alone).
    pub fn fiat_price(&self) -> Option<(&str, u32, Amount)> {
        let currency = self.pricing_currency.as_deref()?;
        let decimals = ebb_core::rate::fiat_decimals(currency)?;
        let price = Amount::parse_positive(self.pricing_amount.as_deref()?, decimals, decimals).ok()?;
        ebb_core::Rate::parse(&self.exchange_rate).ok()?;
        Some((currency, decimals, price))
    }

    /// A `Pending` order past its expiry time is `Expired`, whether or not the pay-in watcher's expiry
    /// pass has stored that yet.
    pub fn effective_status(&self, now: i64) -> OrderStatus {
        if self.status == OrderStatus::Pending && now >= self.expired_at {
            OrderStatus::Expired
        } else {
            self.status
        }
    }
}

/// How long after an order's end (its expiry, or its last credited payment) the watcher keeps looking
/// at its receiving address for late payments. Transfers after that still reach the address (the
/// operator can recover them with `ebb orders deposit-key`) but are not seen by ebb. docs/OPERATIONS.md.
pub const LATE_PAYMENT_WATCH_S: i64 = 7 * 24 * 3600;

const COLUMNS: &str = "seq, order_id, merchant_id, merchant_order_code, psp_order_code, pricing_currency, pricing_amount, \
     token_id, chain_id, payable_amount, fee_amount, fee_credited, exchange_rate, amount_tolerance, receive_address, status, \
     received_amount, refunded_amount, expired_at, created_at, updated_at, watch_until, rate_source, rate_at, \
     refunded_pricing";

fn from_row(row: &impl Columns) -> Result<OrderRow, StoreError> {
    let status: String = row.col("status")?;
    Ok(OrderRow {
        order_id: row.col("order_id")?,
        merchant_id: row.col("merchant_id")?,
        merchant_order_code: row.col("merchant_order_code")?,
        psp_order_code: row.col("psp_order_code")?,
        pricing_currency: row.col("pricing_currency")?,
        pricing_amount: row.col("pricing_amount")?,
        token_id: row.col("token_id")?,
        chain_id: row.col("chain_id")?,
        payable_amount: amount(row, "payable_amount")?,
        fee_amount: amount(row, "fee_amount")?,
        fee_credited: amount(row, "fee_credited")?,
        exchange_rate: row.col("exchange_rate")?,
        rate_source: row.col("rate_source")?,
        rate_at: row.col("rate_at")?,
        amount_tolerance: amount(row, "amount_tolerance")?,
        receive_address: row.col("receive_address")?,
        status: OrderStatus::parse(&status)
            .ok_or_else(|| StoreError::Internal(format!("stored order status {status:?}")))?,
        received_amount: amount(row, "received_amount")?,
        refunded_amount: amount(row, "refunded_amount")?,
        refunded_pricing: amount(row, "refunded_pricing")?,
        expired_at: row.col("expired_at")?,
        created_at: row.col("created_at")?,
        updated_at: row.col("updated_at")?,
        watch_until: row.col("watch_until")?,
        transactions: Vec::new(),
    })
}

/// The order-with-transactions join: one row per transaction (or one with NULL `t_` columns).
fn order_join_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let o: Vec<String> = COLUMNS.split(", ").map(|c| format!("o.{}", c.trim())).collect();
        let t: Vec<String> = TX_COLUMNS.split(", ").map(|c| format!("t.{0} AS t_{0}", c.trim())).collect();
        format!(
            "SELECT {}, {} FROM orders o LEFT JOIN payment_transactions t ON t.order_id = o.order_id \
             WHERE o.order_id = $1 ORDER BY t.seq",
            o.join(", "),
            t.join(", ")
        )
    })
}

/// Folds one row of [`order_join_sql`] into the order: the first row gives the order, every row with a
/// transaction adds it.
fn add_join_row(order: &mut Option<OrderRow>, row: &impl Columns) -> Result<(), StoreError> {
    let o = match order {
        Some(o) => o,
        None => order.insert(from_row(row)?),
    };
    if row.col::<Option<String>>("t_tx_id")?.is_some() {
        o.transactions.push(tx_from_prefixed_row(row, "t_")?);
    }
    Ok(())
}

/// Filters for listing orders.
#[derive(Debug, Default, Clone)]
pub struct OrderFilter {
    pub merchant_id: Option<String>,
    pub psp_order_code: Option<String>,
    pub statuses: Vec<OrderStatus>,
}

/// Reads an order and locks its row until the transaction ends (PostgreSQL; SQLite's single writer
/// already excludes others).
pub async fn lock_order(conn: &mut Tx<'_>, order_id: &str) -> Result<OrderRow, StoreError> {
    let lock = conn.backend().for_update();
    let row = db::query(&format!("SELECT {COLUMNS} FROM orders WHERE order_id = $1{lock}"))
        .bind(order_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound { what: "order", id: order_id.to_owned() })?;
    from_row(&row)
}

/// Inserts a new order; `false` (nothing written) if its `psp_order_code` is taken.
pub async fn insert_order(conn: &mut Tx<'_>, o: &OrderRow) -> Result<bool, StoreError> {
    let inserted = db::query(
        "INSERT INTO orders (order_id, merchant_id, merchant_order_code, psp_order_code, pricing_currency, \
         pricing_amount, token_id, chain_id, payable_amount, fee_amount, fee_credited, exchange_rate, \
         amount_tolerance, receive_address, status, received_amount, refunded_amount, expired_at, created_at, updated_at, \
         watch_until, rate_source, rate_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23) \
         ON CONFLICT (psp_order_code) DO NOTHING",
    )
    .bind(&o.order_id)
    .bind(&o.merchant_id)
    .bind(&o.merchant_order_code)
    .bind(&o.psp_order_code)
    .bind(&o.pricing_currency)
    .bind(&o.pricing_amount)
    .bind(&o.token_id)
    .bind(&o.chain_id)
    .bind(o.payable_amount.to_string())
    .bind(o.fee_amount.to_string())
    .bind(o.fee_credited.to_string())
    .bind(&o.exchange_rate)
    .bind(o.amount_tolerance.to_string())
    .bind(&o.receive_address)
    .bind(o.status.as_str())
    .bind(o.received_amount.to_string())
    .bind(o.refunded_amount.to_string())
    .bind(o.expired_at)
    .bind(o.created_at)
    .bind(o.updated_at)
    .bind(o.watch_until)
    .bind(&o.rate_source)
    .bind(o.rate_at)
    .execute(&mut *conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Moves an order from `from` to `to` (a payment in its token was seen: `Pending` → `Processing`; its
/// only payment left the chain: back again; expired on request, which also stamps `expired_at`), only
/// if it is still `from` and the order state machine allows the move; `false` otherwise.
pub async fn move_status(
    conn: &mut Tx<'_>,
    order_id: &str,
    from: OrderStatus,
    to: OrderStatus,
    now: i64,
) -> Result<bool, StoreError> {
    if !from.can_move_to(to) {
        return Ok(false);
    }
    let done = db::query(
        "UPDATE orders SET status = $1, updated_at = $2, \
         expired_at = CASE WHEN $1 = 'Expired' THEN $2 ELSE expired_at END WHERE order_id = $3 AND status = $4",
    )
    .bind(to.as_str())
    .bind(now)
    .bind(order_id)
    .bind(from.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

impl Store {
    /// An order with its transactions, read in one statement, so that its totals and its
    /// transactions are of one moment (a credit commits both together).
    pub async fn order(&self, order_id: &str) -> Result<Option<OrderRow>, StoreError> {
        let mut order = None;
        match self.point_reader() {
            Some(reader) => reader.each_by_id(order_join_sql(), order_id, |row| add_join_row(&mut order, row))?,
            None => {
                let rows = sqlx::query(order_join_sql()).bind(order_id).fetch_all(self.pool()).await?;
                for row in &rows {
                    add_join_row(&mut order, row)?;
                }
            }
        }
        Ok(order)
    }

    pub async fn list_orders(
        &self,
        filter: &OrderFilter,
        page_req: &PageRequest,
    ) -> Result<Page<OrderRow>, StoreError> {
        let mut f = Filter::default();
        if let Some(m) = &filter.merchant_id {
            f.eq("merchant_id", m);
        }
        if let Some(c) = &filter.psp_order_code {
            f.eq("psp_order_code", c);
        }
        if !filter.statuses.is_empty() {
            // Filter on the status an order reads as (see `effective_status`): a Pending order past its
            // expiry is Expired.
            let now = f.bind_int(now_s());
            let parts: Vec<String> = filter
                .statuses
                .iter()
                .map(|s| match s {
                    OrderStatus::Pending => format!("(status = 'Pending' AND expired_at > {now})"),
                    OrderStatus::Expired => {
                        format!("(status = 'Expired' OR (status = 'Pending' AND expired_at <= {now}))")
                    }
                    other => format!("status = {}", f.bind_str(other.as_str())),
                })
                .collect();
            f.clause(format!("({})", parts.join(" OR ")));
        }
        let mut page = page::list(self.pool(), "orders", COLUMNS, &f, page_req, from_row).await?;
        let ids: Vec<String> = page.items.iter().map(|o| o.order_id.clone()).collect();
        let mut txs = self.transactions_of("order_id", &ids).await?;
        for o in &mut page.items {
            o.transactions = txs.extract_if(.., |t| t.order_id.as_deref() == Some(&o.order_id)).collect();
        }
        Ok(page)
    }

    /// Up to `limit` `Pending` orders on `chain_id` whose time has run out at `now`, the earliest first.
    pub async fn orders_due_for_expiry(&self, chain_id: &str, now: i64, limit: i64) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT order_id FROM orders WHERE chain_id = $1 AND status = 'Pending' AND expired_at <= $2 \
             ORDER BY expired_at LIMIT $3",
        )
        .bind(chain_id)
        .bind(now)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// Whether `address` (as stored: EIP-55 on EVM chains) is the receiving address of an order.
    pub async fn is_receive_address(&self, address: &str) -> Result<bool, StoreError> {
        const SQL: &str = "SELECT 1 AS one FROM orders WHERE receive_address = $1 LIMIT 1";
        // An index probe: on SQLite on the calling thread, like the other point reads.
        if let Some(reader) = self.point_reader() {
            return Ok(reader.by_id(SQL, address, |_| Ok(()))?.is_some());
        }
        let found = sqlx::query(SQL).bind(address).fetch_optional(self.pool()).await?;
        Ok(found.is_some())
    }
}

/// How a confirmed pay-in was credited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credit {
    /// To its open order, which is now in this status.
    Order(OrderStatus),
    /// In the order's token to an order already `Completed` or `Expired`: credited to the merchant and
    /// counted in the order's received amount; the order's status stays.
    Late,
    /// In another token than the order's: credited to the merchant in that token, not to the order.
    Unexpected,
    /// Its sender's screening held it: in the `held` account, credited to nobody (see
    /// `ebb-app/src/payins.rs`).
    Held,
}

/// Credits a confirmed pay-in of `amount` of `token_id` to the merchant of `order_id`, under the
/// order's lock, and raises the order's event. Money that reached the order's address is always
/// credited somewhere (the ledger follows the chain):
/// - in the order's token to an open order: the merchant gets the amount less the order's remaining
///   developer fee, the PSP that fee, and the order becomes `Completed` (or `Underpaid` while short of
///   the payable amount less the tolerance);
/// - in the order's token to a `Completed` or `Expired` order (a `Pending` one past its expiry is
///   expired first): the same split, as a `LatePayment`; the status stays;
/// - in any other token: all of it to the merchant in that token, as `UnexpectedIn`; the order's
///   amounts do not change.
///
/// The split and the status are `ebb_core::order::credit_payment`'s; this applies them. Fails (and
/// changes nothing) when the amount does not fit the ledger's integers.
pub async fn credit_payment(
    conn: &mut Tx<'_>,
    order_id: &str,
    token_id: &str,
    amount: Amount,
) -> Result<Credit, StoreError> {
    let mut order = lock_order(conn, order_id).await?;
    let now = now_s();
    if token_id != order.token_id {
        let entry = Entry::builder()
            .transfer(Account::World, Account::Merchant(order.merchant_id.clone()), token_id, amount.base_units())
            .map_err(|e| StoreError::Invalid(format!("a pay-in of {amount} base units of {token_id}: {e}")))?
            .build()?;
        ledger::post(conn, &entry, SourceType::UnexpectedIn, order_id, now).await?;
        raise_order_changed(conn, order_id).await?;
        return Ok(Credit::Unexpected);
    }
    if order.effective_status(now) == OrderStatus::Expired && order.status != OrderStatus::Expired {
        store_expiry(conn, &order, now).await?;
        order.status = OrderStatus::Expired;
    }
    let amounts = OrderAmounts {
        payable: order.payable_amount,
        tolerance: order.amount_tolerance,
        received: order.received_amount,
        fee: order.fee_amount,
        fee_credited: order.fee_credited,
    };
    let credit = order::credit_payment(order.status, amounts, amount).map_err(|e| match e {
        CreditError::Overflow => {
            StoreError::Invalid(format!("a pay-in of {amount} base units overflows order {order_id}'s received amount"))
        }
        CreditError::IllegalMove(from, to) => {
            StoreError::InvalidState(format!("order {order_id} cannot move from {from} to {to}"))
        }
    })?;
    let PaymentCredit { received, fee_now, to_merchant, status: new_status, late } = credit;
    let fee_credited = order.fee_credited;
    let updated = db::query(
        "UPDATE orders SET received_amount = $1, fee_credited = $2, status = $3, updated_at = $4, watch_until = $5 \
         WHERE order_id = $6 AND status = $7",
    )
    .bind(received.to_string())
    .bind(fee_credited.checked_add(fee_now).expect("bounded by fee_amount").to_string())
    .bind(new_status.as_str())
    .bind(now)
    .bind(order.watch_until.max(now + LATE_PAYMENT_WATCH_S))
    .bind(order_id)
    .bind(order.status.as_str())
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() != 1 {
        return Err(StoreError::Internal(format!("order {order_id} changed under its lock")));
    }
    let overflow = |e| StoreError::Invalid(format!("a pay-in of {amount} base units to order {order_id}: {e}"));
    let entry = Entry::builder()
        .transfer(
            Account::World,
            Account::Merchant(order.merchant_id.clone()),
            &order.token_id,
            to_merchant.base_units(),
        )
        .map_err(overflow)?
        .transfer(Account::World, Account::Psp, &order.token_id, fee_now.base_units())
        .map_err(overflow)?
        .build()?;
    let source = if late { SourceType::LatePayment } else { SourceType::OrderIn };
    ledger::post(conn, &entry, source, order_id, now).await?;
    raise_order_changed(conn, order_id).await?;
    Ok(if late { Credit::Late } else { Credit::Order(new_status) })
}

/// Stores the expiry of a `Pending` order whose time has run out, and raises its event. The address
/// stays watched for [`LATE_PAYMENT_WATCH_S`] past the expiry.
pub async fn store_expiry(conn: &mut Tx<'_>, order: &OrderRow, now: i64) -> Result<bool, StoreError> {
    let expired = db::query(
        "UPDATE orders SET status = 'Expired', updated_at = $1 WHERE order_id = $2 AND status = 'Pending' AND expired_at <= $1",
    )
    .bind(now)
    .bind(&order.order_id)
    .execute(&mut *conn)
    .await?;
    if expired.rows_affected() == 1 {
        raise_order_changed(conn, &order.order_id).await?;
    }
    Ok(expired.rows_affected() == 1)
}

/// An order was created or its status changed.
pub async fn raise_order_changed(conn: &mut Tx<'_>, order_id: &str) -> Result<(), StoreError> {
    let mut order = lock_order(conn, order_id).await?;
    let rows = db::query(&order_transactions_sql()).bind(order_id).fetch_all(&mut *conn).await?;
    order.transactions = rows.iter().map(tx_from_row).collect::<Result<_, _>>()?;
    events::raise(conn, events::ORDER_STATUS_UPDATED, EventKind::Order, order_id, events::json(&order)?).await?;
    Ok(())
}
