//! Merchants: the businesses a PSP collects for. Each has its own balance per token.

use crate::columns::Columns;
use crate::db::{self, Tx};
use crate::page::{self, Filter, Page, PageRequest};
use crate::{Store, StoreError};

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

/// How many merchant ids [`Store::merchant_exists`] remembers (~100 bytes each).
pub const KNOWN_MERCHANTS_CAP: usize = 100_000;

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

/// Inserts a new merchant.
pub async fn insert(conn: &mut Tx<'_>, m: &MerchantRow) -> Result<(), StoreError> {
    db::query(
        "INSERT INTO merchants (merchant_id, name, wallet_id, developer_fee_rate, wallet_setup, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&m.merchant_id)
    .bind(&m.name)
    .bind(&m.wallet_id)
    .bind(&m.developer_fee_rate)
    .bind(&m.wallet_setup)
    .bind(m.created_at)
    .bind(m.updated_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Changes a merchant's name and/or developer fee rate (`None` keeps each) and returns it as it is
/// now; `None` if there is no such merchant.
pub async fn update(
    conn: &mut Tx<'_>,
    merchant_id: &str,
    name: Option<String>,
    developer_fee_rate: Option<String>,
    now: i64,
) -> Result<Option<MerchantRow>, StoreError> {
    let done = db::query(
        "UPDATE merchants SET name = COALESCE($1, name), developer_fee_rate = COALESCE($2, developer_fee_rate), \
         updated_at = $3 WHERE merchant_id = $4",
    )
    .bind(name)
    .bind(developer_fee_rate)
    .bind(now)
    .bind(merchant_id)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    let row = db::query(&format!("SELECT {COLUMNS} FROM merchants WHERE merchant_id = $1"))
        .bind(merchant_id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(Some(from_row(&row)?))
}

/// Whether a merchant exists, read inside a write.
pub async fn exists(conn: &mut Tx<'_>, merchant_id: &str) -> Result<bool, StoreError> {
    let found = db::query("SELECT 1 AS one FROM merchants WHERE merchant_id = $1")
        .bind(merchant_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(found.is_some())
}

impl Store {
    pub async fn merchant(&self, merchant_id: &str) -> Result<Option<MerchantRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM merchants WHERE merchant_id = $1");
        if let Some(reader) = self.point_reader() {
            return reader.by_id(&sql, merchant_id, |row| from_row(row));
        }
        let row = sqlx::query(&sql).bind(merchant_id).fetch_optional(self.pool()).await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Whether a merchant exists. Merchants are never deleted, so one found once is remembered (up to
    /// [`KNOWN_MERCHANTS_CAP`] ids; the set starts over when full): the check before every refund create
    /// is then no database round trip.
    pub async fn merchant_exists(&self, merchant_id: &str) -> Result<bool, StoreError> {
        if self.known_merchants.lock().expect("known merchants lock").contains(merchant_id) {
            return Ok(true);
        }
        if self.merchant(merchant_id).await?.is_none() {
            return Ok(false);
        }
        let mut known = self.known_merchants.lock().expect("known merchants lock");
        if known.len() >= KNOWN_MERCHANTS_CAP {
            known.clear();
        }
        known.insert(merchant_id.to_owned());
        Ok(true)
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
}

#[cfg(test)]
mod tests {
    use sqlx::Executor;

    use crate::Store;

    #[tokio::test]
    async fn a_merchant_found_once_is_known_without_asking_again_and_a_missing_one_is_not_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&Store::sqlite_url_for_dir(dir.path()), 2).await.unwrap();
        store.migrate().await.unwrap();
        assert!(!store.merchant_exists("M_not_yet").await.unwrap());
        let m = super::MerchantRow {
            merchant_id: "M_shop".into(),
            name: "shop".into(),
            wallet_id: String::new(),
            developer_fee_rate: "0".into(),
            wallet_setup: "Default".into(),
            created_at: 0,
            updated_at: 0,
        };
        let row = m.clone();
        store.write(move |tx| Box::pin(async move { super::insert(tx, &row).await })).await.unwrap();
        assert!(store.merchant_exists(&m.merchant_id).await.unwrap());
        // Remembered: answered without the database (ebb never deletes a merchant; the test does, to
        // tell a remembered answer from a fresh read).
        store
            .pool()
            .execute(format!("DELETE FROM merchants WHERE merchant_id = '{}'", m.merchant_id).as_str())
            .await
            .unwrap();
        assert!(store.merchant_exists(&m.merchant_id).await.unwrap());
        // A miss is not remembered: the merchant asked about first, once it exists, is found.
        store
            .pool()
            .execute(
                "INSERT INTO merchants (merchant_id, name, wallet_id, developer_fee_rate, wallet_setup, created_at, \
                 updated_at) VALUES ('M_not_yet', 'late', '', '0', 'Default', 0, 0)",
            )
            .await
            .unwrap();
        assert!(store.merchant_exists("M_not_yet").await.unwrap());
        store.close().await;
    }
}
