//! CoinGate's dialect's own rows: merchants' API tokens, and CoinGate orders (priced at creation, their
//! ebb order made at checkout). See `ebb-app/src/coingate.rs` and docs/COINGATE.md.

use crate::columns::Columns;
use crate::db::{self, Tx};
use crate::page::Filter;
use crate::webhooks::BodyFormat;
use crate::{Store, StoreError};

/// A merchant's API token, as stored: only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantTokenRow {
    /// The public handle (`KT…`) it is listed and revoked by.
    pub token_id: String,
    pub token_hash: String,
    pub merchant_id: String,
    pub name: String,
    /// How the callbacks of the orders and refunds it makes are sent.
    pub callback_format: BodyFormat,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

const TOKEN_COLUMNS: &str = "token_id, token_hash, merchant_id, name, callback_format, created_at, revoked_at";

fn callback_format(row: &impl Columns) -> Result<BodyFormat, StoreError> {
    let f: String = row.col("callback_format")?;
    BodyFormat::parse(&f)
        .filter(|f| f.is_callback())
        .ok_or_else(|| StoreError::Internal(format!("stored callback format {f:?}")))
}

fn token_from_row(row: &impl Columns) -> Result<MerchantTokenRow, StoreError> {
    Ok(MerchantTokenRow {
        token_id: row.col("token_id")?,
        token_hash: row.col("token_hash")?,
        merchant_id: row.col("merchant_id")?,
        name: row.col("name")?,
        callback_format: callback_format(row)?,
        created_at: row.col("created_at")?,
        revoked_at: row.col("revoked_at")?,
    })
}

pub async fn insert_token(conn: &mut Tx<'_>, t: &MerchantTokenRow) -> Result<(), StoreError> {
    db::query(
        "INSERT INTO merchant_tokens (token_id, token_hash, merchant_id, name, callback_format, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&t.token_id)
    .bind(&t.token_hash)
    .bind(&t.merchant_id)
    .bind(&t.name)
    .bind(t.callback_format.as_str())
    .bind(t.created_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Revokes a token; `None` if there is no such token, else whether it was active until now.
pub async fn revoke_token(conn: &mut Tx<'_>, token_id: &str, now: i64) -> Result<Option<bool>, StoreError> {
    let done = db::query("UPDATE merchant_tokens SET revoked_at = $1 WHERE token_id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(token_id)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 1 {
        return Ok(Some(true));
    }
    let found = db::query("SELECT 1 AS one FROM merchant_tokens WHERE token_id = $1")
        .bind(token_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(found.map(|_| false))
}

/// A CoinGate order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoinGateOrderRow {
    /// CoinGate's integer `id`.
    pub seq: i64,
    pub merchant_id: String,
    /// The merchant's own `order_id`.
    pub merchant_order_id: Option<String>,
    /// A canonical decimal in `price_currency`.
    pub price_amount: String,
    pub price_currency: String,
    pub receive_currency: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub callback_url: Option<String>,
    /// How `callback_url` is called (the format of the token that made the order).
    pub callback_format: BodyFormat,
    pub cancel_url: Option<String>,
    pub success_url: Option<String>,
    /// The merchant's secret, echoed in callbacks.
    pub token: Option<String>,
    pub purchaser_email: Option<String>,
    /// The ebb order made at checkout.
    pub order_id: Option<String>,
    pub created_at: i64,
}

const ORDER_COLUMNS: &str = "seq, merchant_id, merchant_order_id, price_amount, price_currency, receive_currency, \
     title, description, callback_url, callback_format, cancel_url, success_url, token, purchaser_email, order_id, \
     created_at";

fn order_from_row(row: &impl Columns) -> Result<CoinGateOrderRow, StoreError> {
    Ok(CoinGateOrderRow {
        seq: row.col("seq")?,
        merchant_id: row.col("merchant_id")?,
        merchant_order_id: row.col("merchant_order_id")?,
        price_amount: row.col("price_amount")?,
        price_currency: row.col("price_currency")?,
        receive_currency: row.col("receive_currency")?,
        title: row.col("title")?,
        description: row.col("description")?,
        callback_url: row.col("callback_url")?,
        callback_format: callback_format(row)?,
        cancel_url: row.col("cancel_url")?,
        success_url: row.col("success_url")?,
        token: row.col("token")?,
        purchaser_email: row.col("purchaser_email")?,
        order_id: row.col("order_id")?,
        created_at: row.col("created_at")?,
    })
}

/// Inserts a CoinGate order (its `seq` is ignored) and returns it with the `seq` the database gave.
pub async fn insert_order(conn: &mut Tx<'_>, o: &CoinGateOrderRow) -> Result<CoinGateOrderRow, StoreError> {
    let row = db::query(&format!(
        "INSERT INTO coingate_orders (merchant_id, merchant_order_id, price_amount, price_currency, receive_currency, \
         title, description, callback_url, callback_format, cancel_url, success_url, token, purchaser_email, \
         created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING {ORDER_COLUMNS}"
    ))
    .bind(&o.merchant_id)
    .bind(&o.merchant_order_id)
    .bind(&o.price_amount)
    .bind(&o.price_currency)
    .bind(&o.receive_currency)
    .bind(&o.title)
    .bind(&o.description)
    .bind(&o.callback_url)
    .bind(o.callback_format.as_str())
    .bind(&o.cancel_url)
    .bind(&o.success_url)
    .bind(&o.token)
    .bind(&o.purchaser_email)
    .bind(o.created_at)
    .fetch_one(&mut *conn)
    .await?;
    order_from_row(&row)
}

/// Reads a CoinGate order and locks its row until the transaction ends (PostgreSQL; SQLite's single
/// writer already excludes others).
pub async fn lock_order(conn: &mut Tx<'_>, seq: i64) -> Result<CoinGateOrderRow, StoreError> {
    let lock = conn.backend().for_update();
    let row = db::query(&format!("SELECT {ORDER_COLUMNS} FROM coingate_orders WHERE seq = $1{lock}"))
        .bind(seq)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound { what: "order", id: seq.to_string() })?;
    order_from_row(&row)
}

/// Links the ebb order made at checkout, with the purchaser's e-mail as the checkout left it.
pub async fn set_order(
    conn: &mut Tx<'_>,
    seq: i64,
    order_id: &str,
    purchaser_email: Option<&str>,
) -> Result<(), StoreError> {
    db::query("UPDATE coingate_orders SET order_id = $1, purchaser_email = $2 WHERE seq = $3 AND order_id IS NULL")
        .bind(order_id)
        .bind(purchaser_email)
        .bind(seq)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// What a refund made through CoinGate's API adds to its ebb refund.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoinGateRefundExtra {
    pub email: Option<String>,
    pub reason: Option<String>,
    pub callback_url: Option<String>,
    /// How `callback_url` is called, when the refund is made; not stored (its subscription is).
    pub callback_format: Option<BodyFormat>,
    pub address_memo: Option<String>,
    /// The address the customer is asked to confirm by e-mail (the refund has none until then).
    pub address_to_confirm: Option<String>,
}

pub async fn insert_refund_extra(
    conn: &mut Tx<'_>,
    refund_id: &str,
    e: &CoinGateRefundExtra,
) -> Result<(), StoreError> {
    db::query(
        "INSERT INTO coingate_refunds (refund_id, email, reason, callback_url, address_memo, address_to_confirm) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(refund_id)
    .bind(&e.email)
    .bind(&e.reason)
    .bind(&e.callback_url)
    .bind(&e.address_memo)
    .bind(&e.address_to_confirm)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Which refunds of a merchant's CoinGate orders to list, and how.
#[derive(Debug, Clone, Default)]
pub struct CoinGateRefundFilter {
    pub merchant_id: String,
    /// Only this CoinGate order's.
    pub order_seq: Option<i64>,
    pub min_created_at: Option<i64>,
    pub max_created_at: Option<i64>,
    pub min_updated_at: Option<i64>,
    pub max_updated_at: Option<i64>,
    /// `created_at` or `updated_at`.
    pub sort_by_updated: bool,
    pub ascending: bool,
    /// 1-based.
    pub page: i64,
    pub per_page: i64,
}

/// A refund as CoinGate's API lists it: its integer id, the CoinGate order it refunds, and what the
/// API added.
#[derive(Debug, Clone)]
pub struct CoinGateRefundRef {
    pub seq: i64,
    pub refund_id: String,
    pub order_seq: i64,
    pub extra: CoinGateRefundExtra,
}

const REFUND_REF_COLUMNS: &str = "r.seq AS seq, r.refund_id AS refund_id, c.seq AS order_seq, x.email AS email, \
     x.reason AS reason, x.callback_url AS callback_url, x.address_memo AS address_memo, \
     x.address_to_confirm AS address_to_confirm";
const REFUND_REF_FROM: &str = "refunds r JOIN coingate_orders c ON c.order_id = r.order_id \
     LEFT JOIN coingate_refunds x ON x.refund_id = r.refund_id";

fn refund_ref_from_row(row: &impl Columns) -> Result<CoinGateRefundRef, StoreError> {
    Ok(CoinGateRefundRef {
        seq: row.col("seq")?,
        refund_id: row.col("refund_id")?,
        order_seq: row.col("order_seq")?,
        extra: CoinGateRefundExtra {
            email: row.col("email")?,
            reason: row.col("reason")?,
            callback_url: row.col("callback_url")?,
            callback_format: None,
            address_memo: row.col("address_memo")?,
            address_to_confirm: row.col("address_to_confirm")?,
        },
    })
}

/// Which CoinGate orders to list, and how.
#[derive(Debug, Clone, Default)]
pub struct CoinGateOrderFilter {
    pub merchant_id: String,
    pub min_created_at: Option<i64>,
    pub max_created_at: Option<i64>,
    /// Oldest first (else newest first).
    pub ascending: bool,
    /// 1-based.
    pub page: i64,
    pub per_page: i64,
}

impl Store {
    /// The active token with this hash.
    pub async fn merchant_token(&self, token_hash: &str) -> Result<Option<MerchantTokenRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM merchant_tokens WHERE token_hash = $1 AND revoked_at IS NULL"
        ))
        .bind(token_hash)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    pub async fn list_merchant_tokens(&self) -> Result<Vec<MerchantTokenRow>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {TOKEN_COLUMNS} FROM merchant_tokens ORDER BY created_at, token_id"))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    pub async fn coingate_order(&self, seq: i64) -> Result<Option<CoinGateOrderRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {ORDER_COLUMNS} FROM coingate_orders WHERE seq = $1"))
            .bind(seq)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(order_from_row).transpose()
    }

    /// The CoinGate order an ebb order was made for at checkout.
    pub async fn coingate_order_of(&self, order_id: &str) -> Result<Option<CoinGateOrderRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {ORDER_COLUMNS} FROM coingate_orders WHERE order_id = $1"))
            .bind(order_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(order_from_row).transpose()
    }

    /// A refund of a CoinGate order by its integer id.
    pub async fn coingate_refund(&self, seq: i64) -> Result<Option<CoinGateRefundRef>, StoreError> {
        let sql = format!("SELECT {REFUND_REF_COLUMNS} FROM {REFUND_REF_FROM} WHERE r.seq = $1");
        let row = sqlx::query(&sql).bind(seq).fetch_optional(self.pool()).await?;
        row.as_ref().map(refund_ref_from_row).transpose()
    }

    /// The same, by the refund's ebb id.
    pub async fn coingate_refund_of(&self, refund_id: &str) -> Result<Option<CoinGateRefundRef>, StoreError> {
        let sql = format!("SELECT {REFUND_REF_COLUMNS} FROM {REFUND_REF_FROM} WHERE r.refund_id = $1");
        let row = sqlx::query(&sql).bind(refund_id).fetch_optional(self.pool()).await?;
        row.as_ref().map(refund_ref_from_row).transpose()
    }

    /// A page of the refunds of a merchant's CoinGate orders, and how many there are in all.
    pub async fn list_coingate_refunds(
        &self,
        f: &CoinGateRefundFilter,
    ) -> Result<(Vec<CoinGateRefundRef>, i64), StoreError> {
        let mut filter = Filter::default();
        filter.eq("c.merchant_id", f.merchant_id.clone());
        if let Some(seq) = f.order_seq {
            filter.cmp_int("c.seq", "=", seq);
        }
        for (column, op, bound) in [
            ("r.created_at", ">=", f.min_created_at),
            ("r.created_at", "<=", f.max_created_at),
            ("r.updated_at", ">=", f.min_updated_at),
            ("r.updated_at", "<=", f.max_updated_at),
        ] {
            if let Some(t) = bound {
                filter.cmp_int(column, op, t);
            }
        }
        let where_sql = filter.where_sql();
        let total: i64 = {
            let sql = format!("SELECT COUNT(*) AS n FROM {REFUND_REF_FROM} {where_sql}");
            let row = filter.bind_all(sqlx::query(&sql)).fetch_one(self.pool()).await?;
            row.col("n")?
        };
        let column = if f.sort_by_updated { "r.updated_at" } else { "r.created_at" };
        let order = if f.ascending { "ASC" } else { "DESC" };
        let sql = format!(
            "SELECT {REFUND_REF_COLUMNS} FROM {REFUND_REF_FROM} {where_sql} ORDER BY {column} {order}, r.seq {order} \
             LIMIT {} OFFSET {}",
            f.per_page,
            (f.page - 1).saturating_mul(f.per_page)
        );
        let rows = filter.bind_all(sqlx::query(&sql)).fetch_all(self.pool()).await?;
        Ok((rows.iter().map(refund_ref_from_row).collect::<Result<_, _>>()?, total))
    }

    /// A page of a merchant's CoinGate orders, and how many there are in all.
    pub async fn list_coingate_orders(
        &self,
        f: &CoinGateOrderFilter,
    ) -> Result<(Vec<CoinGateOrderRow>, i64), StoreError> {
        let mut filter = Filter::default();
        filter.eq("merchant_id", f.merchant_id.clone());
        if let Some(t) = f.min_created_at {
            filter.cmp_int("created_at", ">=", t);
        }
        if let Some(t) = f.max_created_at {
            filter.cmp_int("created_at", "<=", t);
        }
        let where_sql = filter.where_sql();
        let total: i64 = {
            let sql = format!("SELECT COUNT(*) AS n FROM coingate_orders {where_sql}");
            let row = filter.bind_all(sqlx::query(&sql)).fetch_one(self.pool()).await?;
            row.col("n")?
        };
        let order = if f.ascending { "ASC" } else { "DESC" };
        let sql = format!(
            "SELECT {ORDER_COLUMNS} FROM coingate_orders {where_sql} ORDER BY seq {order} LIMIT {} OFFSET {}",
            f.per_page,
            (f.page - 1).saturating_mul(f.per_page)
        );
        let rows = filter.bind_all(sqlx::query(&sql)).fetch_all(self.pool()).await?;
        Ok((rows.iter().map(order_from_row).collect::<Result<_, _>>()?, total))
    }
}
