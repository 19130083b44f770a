//! Address screenings asked through Cobo's KYA API: stored as asked and answered, idempotent on the
//! client's `request_id`.

use ebb_core::screening::Screening;

use crate::columns::Columns;
use crate::db::{self, Tx};
use crate::page::{self, Filter, Page, PageRequest};
use crate::{Store, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KyaRow {
    pub screening_id: String,
    pub request_id: String,
    pub requested_by: String,
    pub address: String,
    pub chain_id: String,
    pub note: Option<String>,
    /// Cobo's `KyaScreeningStatus`: `Screened`, or `Failed` when a provider could not answer.
    pub status: String,
    pub screening: Screening,
    pub created_at_ms: i64,
}

const COLUMNS: &str =
    "seq, screening_id, request_id, requested_by, address, chain_id, note, status, screening, created_at_ms";

fn from_row(row: &impl Columns) -> Result<KyaRow, StoreError> {
    let screening: String = row.col("screening")?;
    Ok(KyaRow {
        screening_id: row.col("screening_id")?,
        request_id: row.col("request_id")?,
        requested_by: row.col("requested_by")?,
        address: row.col("address")?,
        chain_id: row.col("chain_id")?,
        note: row.col("note")?,
        status: row.col("status")?,
        screening: crate::snapshot::screening_from_json(&screening)
            .map_err(|e| StoreError::Internal(format!("stored KYA screening: {e}")))?,
        created_at_ms: row.col("created_at_ms")?,
    })
}

/// Stores a screening; `false` (nothing written) if its `request_id` was used before.
pub async fn insert(conn: &mut Tx<'_>, r: &KyaRow) -> Result<bool, StoreError> {
    let done = db::query(
        "INSERT INTO kya_screenings (screening_id, request_id, requested_by, address, chain_id, note, status, \
         screening, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (request_id) DO NOTHING",
    )
    .bind(&r.screening_id)
    .bind(&r.request_id)
    .bind(&r.requested_by)
    .bind(&r.address)
    .bind(&r.chain_id)
    .bind(&r.note)
    .bind(&r.status)
    .bind(crate::snapshot::screening_json(&r.screening))
    .bind(r.created_at_ms)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn find_by_request(conn: &mut Tx<'_>, request_id: &str) -> Result<KyaRow, StoreError> {
    let row = db::query(&format!("SELECT {COLUMNS} FROM kya_screenings WHERE request_id = $1"))
        .bind(request_id)
        .fetch_one(&mut *conn)
        .await?;
    from_row(&row)
}

impl Store {
    pub async fn kya_screening(&self, screening_id: &str) -> Result<Option<KyaRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM kya_screenings WHERE screening_id = $1"))
            .bind(screening_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Screenings newest first, optionally only the given ids.
    pub async fn list_kya_screenings(
        &self,
        ids: &[String],
        page_req: &PageRequest,
    ) -> Result<Page<KyaRow>, StoreError> {
        let mut f = Filter::default();
        f.is_in("screening_id", ids);
        page::list(self.pool(), "kya_screenings", COLUMNS, &f, page_req, from_row).await
    }
}

/// What `compliance.kya.screenings.status.updated` remembers: Cobo's
/// `ComplianceKyaScreeningsUpdateEventData` without its `data_type`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct KyaSnapshot {
    pub screening_id: String,
    pub address: String,
    pub chain_id: String,
    pub status: String,
    pub created_timestamp: i64,
    pub updated_timestamp: i64,
}

/// Raises `compliance.kya.screenings.status.updated` for a screening just stored (ebb answers a
/// screening at once, so this is its only event).
pub async fn raise_screened(conn: &mut Tx<'_>, r: &KyaRow) -> Result<(), StoreError> {
    let snapshot = KyaSnapshot {
        screening_id: r.screening_id.clone(),
        address: r.address.clone(),
        chain_id: r.chain_id.clone(),
        status: r.status.clone(),
        created_timestamp: r.created_at_ms,
        updated_timestamp: r.created_at_ms,
    };
    crate::events::raise(
        conn,
        crate::events::KYA_SCREENING_UPDATED,
        crate::events::EventKind::KyaScreening,
        &r.screening_id,
        crate::events::json(&snapshot)?,
    )
    .await?;
    Ok(())
}
