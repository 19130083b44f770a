//! Screening lists kept in the database (the OFAC SDN list and any list loaded at run time), and a
//! refund's stored screening. The verdict rules are `ebb_core::screening`; the providers and the use
//! cases are `ebb-app/src/screening.rs`.

use ebb_core::screening::{normalize, Screening};

use crate::columns::Columns;
use crate::db::{self, Tx};
use crate::{Store, StoreError};

/// A list as loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListMeta {
    pub list_id: String,
    /// The date the list's publisher gave it (`YYYY-MM-DD`).
    pub dated: String,
    /// Where it was read from.
    pub source: String,
    pub entries: i64,
    pub loaded_at: i64,
}

/// Replaces a list with `addresses` (normalised here; duplicates kept once), in one transaction.
pub async fn replace_list(conn: &mut Tx<'_>, meta: &ListMeta, addresses: &[String]) -> Result<(), StoreError> {
    // Two processes starting on one PostgreSQL database both load the shipped list: the second waits
    // here for the first to commit, then replaces what it wrote (SQLite's single writer serialises
    // them anyway).
    if conn.backend() == crate::Backend::Postgres {
        db::query("SELECT pg_advisory_xact_lock(hashtext('screening_list:' || $1))::text")
            .bind(&meta.list_id)
            .execute(&mut *conn)
            .await?;
    }
    db::query("DELETE FROM screening_list_entries WHERE list_id = $1").bind(&meta.list_id).execute(&mut *conn).await?;
    db::query("DELETE FROM screening_lists WHERE list_id = $1").bind(&meta.list_id).execute(&mut *conn).await?;
    let mut unique: Vec<String> = addresses.iter().map(|a| normalize(a)).filter(|a| !a.is_empty()).collect();
    unique.sort_unstable();
    unique.dedup();
    // Rows of 100 per statement: one round trip per hundred addresses on PostgreSQL.
    for chunk in unique.chunks(100) {
        let values: Vec<String> = (0..chunk.len()).map(|i| format!("($1, ${})", i + 2)).collect();
        let sql = format!("INSERT INTO screening_list_entries (list_id, address) VALUES {}", values.join(", "));
        let mut q = db::query(&sql).bind(&meta.list_id);
        for a in chunk {
            q = q.bind(a);
        }
        q.execute(&mut *conn).await?;
    }
    db::query("INSERT INTO screening_lists (list_id, dated, source, entries, loaded_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&meta.list_id)
        .bind(&meta.dated)
        .bind(&meta.source)
        .bind(unique.len() as i64)
        .bind(meta.loaded_at)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Stores a refund's screening.
pub async fn set_refund_screening(conn: &mut Tx<'_>, refund_id: &str, s: &Screening) -> Result<(), StoreError> {
    db::query("UPDATE refunds SET screening = $1 WHERE refund_id = $2")
        .bind(crate::snapshot::screening_json(s))
        .bind(refund_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl Store {
    pub async fn screening_list(&self, list_id: &str) -> Result<Option<ListMeta>, StoreError> {
        let row =
            sqlx::query("SELECT list_id, dated, source, entries, loaded_at FROM screening_lists WHERE list_id = $1")
                .bind(list_id)
                .fetch_optional(self.pool())
                .await?;
        row.map(|r| {
            Ok(ListMeta {
                list_id: r.col("list_id")?,
                dated: r.col("dated")?,
                source: r.col("source")?,
                entries: r.col("entries")?,
                loaded_at: r.col("loaded_at")?,
            })
        })
        .transpose()
    }

    /// Whether `list_id` names `address` (compared normalised).
    pub async fn listed(&self, list_id: &str, address: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT list_id FROM screening_list_entries WHERE address = $1 AND list_id = $2")
            .bind(normalize(address))
            .bind(list_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.is_some())
    }
}
