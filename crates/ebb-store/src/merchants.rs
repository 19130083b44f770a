//! Merchants: the businesses a PSP collects for. Each has its own balance per token.

use crate::page::{self, Filter, Page, PageRequest};
use crate::sqlite_read::Columns;
use crate::{ids, util::now_s, Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantRow {
    pub merchant_id: String,
    pub name: String,
    pub wallet_id: String,
    /// Decimal string as given (a fraction, e.g. "0.01"); ebb records it, Cobo applies it to pay-ins.
    pub developer_fee_rate: String,
    pub wallet_setup: String,
    pub created_at: i64,
    pub updated_at: i64,
}

pub struct NewMerchant {
    pub name: String,
    pub wallet_id: String,
    pub developer_fee_rate: String,
    pub wallet_setup: String,
}

const COLUMNS: &str = "seq, merchant_id, name, wallet_id, developer_fee_rate, wallet_setup, created_at, updated_at";

fn from_row(row: &impl Columns) -> Result<MerchantRow, StoreError> {
    Ok(MerchantRow {
        merchant_id: row.col("merchant_id")?,
        name: row.col("name")?,
        wallet_id: row.col("wallet_id")?,
        developer_fee_rate: row.col("developer_fee_rate")?,
        wallet_setup: row.col("wallet_setup")?,
        created_at: row.col("created_at")?,
        updated_at: row.col("updated_at")?,
    })
}

impl Store {
    pub async fn create_merchant(&self, m: NewMerchant) -> Result<MerchantRow, StoreError> {
        self.write(move |conn| {
            Box::pin(async move {
                let now = now_s();
                let row = MerchantRow {
                    merchant_id: ids::new_id("M"),
                    name: m.name,
                    wallet_id: m.wallet_id,
                    developer_fee_rate: m.developer_fee_rate,
                    wallet_setup: m.wallet_setup,
                    created_at: now,
                    updated_at: now,
                };
                sqlx::query(
                    "INSERT INTO merchants (merchant_id, name, wallet_id, developer_fee_rate, wallet_setup, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&row.merchant_id)
                .bind(&row.name)
                .bind(&row.wallet_id)
                .bind(&row.developer_fee_rate)
                .bind(&row.wallet_setup)
                .bind(now)
                .bind(now)
                .execute(&mut *conn)
                .await?;
                Ok(row)
            })
        })
        .await
    }

    pub async fn merchant(&self, merchant_id: &str) -> Result<Option<MerchantRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM merchants WHERE merchant_id = $1");
        if let Some(reader) = self.point_reader() {
            return reader.by_id(&sql, merchant_id, |row| from_row(row));
        }
        let row = sqlx::query(&sql).bind(merchant_id).fetch_optional(self.pool()).await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Lists merchants; `only` restricts to one merchant (a merchant-restricted key); `keyword`
    /// matches a part of the name (case-insensitive for ASCII) or the whole merchant id.
    pub async fn list_merchants(
        &self,
        only: Option<&str>,
        keyword: Option<&str>,
        page_req: &PageRequest,
    ) -> Result<Page<MerchantRow>, StoreError> {
        let mut f = Filter::default();
        if let Some(m) = only {
            f.eq("merchant_id", m);
        }
        if let Some(k) = keyword.filter(|k| !k.is_empty()) {
            f.name_contains_or_id("name", "merchant_id", k);
        }
        page::list(self.pool(), "merchants", COLUMNS, &f, page_req, from_row).await
    }

    pub async fn update_merchant(
        &self,
        merchant_id: &str,
        name: Option<String>,
        developer_fee_rate: Option<String>,
    ) -> Result<MerchantRow, StoreError> {
        let merchant_id = merchant_id.to_owned();
        self.write(move |conn| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE merchants SET name = COALESCE($1, name), developer_fee_rate = COALESCE($2, developer_fee_rate), \
                     updated_at = $3 WHERE merchant_id = $4",
                )
                .bind(name)
                .bind(developer_fee_rate)
                .bind(now_s())
                .bind(&merchant_id)
                .execute(&mut *conn)
                .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound { what: "merchant", id: merchant_id });
                }
                let row = sqlx::query(&format!("SELECT {COLUMNS} FROM merchants WHERE merchant_id = $1"))
                    .bind(&merchant_id)
                    .fetch_one(&mut *conn)
                    .await?;
                from_row(&row)
            })
        })
        .await
    }
}
