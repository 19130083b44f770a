//! Webhook endpoints, the deliveries of events to them, and the log of every attempt.
//!
//! A delivery is `Retrying` until an attempt succeeds (`Success`) or the tries run out (`Failed`). A
//! dispatcher leases due deliveries (`lease_owner`, `lease_until_ms`) with a conditional update, so two
//! dispatchers — two processes on one PostgreSQL — never hold the same delivery at once; a lease that
//! outlives its holder (a crash mid-attempt) expires and the delivery is tried again. Within one
//! endpoint, a delivery waits while an earlier event of the same subject is still `Retrying`: a refund's
//! events arrive in the order they happened.
//!
//! This file: endpoints and reading deliveries; `dispatch.rs`: retrying and recording deliveries;
//! `lease.rs`: leasing them.

mod dispatch;
pub mod lease;
pub use dispatch::{prune_attempts, record_attempts, retry_failed, retry_now};

use crate::columns::Columns;
use crate::db::{self, Tx};
use crate::events::EventKind;
use crate::page::{self, Filter, Page, PageRequest};
use crate::{Store, StoreError};

pub const STATUS_ACTIVE: &str = "STATUS_ACTIVE";
/// What an endpoint's deliveries carry. A `Cobo` endpoint is registered and subscribes to event types;
/// the others are callback URLs (CoinGate's `callback_url`), made by ebb when an object names one and
/// sent only the events of the objects that did (`callback_subscriptions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// Cobo's webhook envelope, JSON.
    Cobo,
    /// CoinGate's callback fields, form-encoded (nested fields as `a[b]`).
    CoinGateForm,
    /// CoinGate's callback fields as JSON.
    CoinGateJson,
}

impl BodyFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            BodyFormat::Cobo => "cobo",
            BodyFormat::CoinGateForm => "coingate_form",
            BodyFormat::CoinGateJson => "coingate_json",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [BodyFormat::Cobo, BodyFormat::CoinGateForm, BodyFormat::CoinGateJson].into_iter().find(|f| f.as_str() == s)
    }

    /// A callback URL's endpoint (made by ebb), not one registered through the API or the CLI.
    pub fn is_callback(self) -> bool {
        self != BodyFormat::Cobo
    }
}

fn format_col(row: &impl Columns) -> Result<BodyFormat, StoreError> {
    let f: String = row.col("format")?;
    BodyFormat::parse(&f).ok_or_else(|| StoreError::Internal(format!("stored endpoint format {f:?}")))
}

pub const STATUS_INACTIVE: &str = "STATUS_INACTIVE";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointRow {
    pub endpoint_id: String,
    pub url: String,
    pub description: String,
    pub subscribed_events: Vec<String>,
    pub status: String,
    pub disabled_reason: Option<String>,
    pub signing_secret: Option<String>,
    pub format: BodyFormat,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewEndpoint {
    pub url: String,
    pub description: String,
    pub subscribed_events: Vec<String>,
    /// The Standard Webhooks secret (`whsec_…`), when that signature is wanted.
    pub signing_secret: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct EndpointUpdate {
    pub url: Option<String>,
    pub description: Option<String>,
    pub subscribed_events: Option<Vec<String>>,
    pub status: Option<String>,
}

/// An event as delivered to one endpoint.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub delivery_seq: i64,
    pub endpoint_id: String,
    pub url: String,
    pub format: BodyFormat,
    pub event_id: String,
    pub event_type: String,
    pub event_seq: i64,
    pub kind: EventKind,
    pub snapshot: String,
    pub created_at_ms: i64,
    pub status: String,
    pub attempts: i64,
    /// `None` until the first attempt failed: the dispatcher's whole schedule is left.
    pub retries_left: Option<i64>,
    pub next_attempt_ms: i64,
}

/// A delivery a dispatcher holds for one attempt.
#[derive(Debug, Clone)]
pub struct LeasedDelivery {
    pub delivery: DeliveryRow,
    pub signing_secret: Option<String>,
    pub lease_owner: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRow {
    pub attempt_id: String,
    pub created_at_ms: i64,
    /// JSON object of the request headers.
    pub request_headers: String,
    pub request_body: String,
    pub response_status: Option<i64>,
    pub response_body: Option<String>,
    pub response_time_ms: Option<i64>,
    pub success: bool,
    pub failure_reason: Option<String>,
}

/// What becomes of a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterAttempt {
    Delivered,
    RetryAt {
        at_ms: i64,
        retries_left: i64,
    },
    Failed,
    /// The endpoint answered 410 Gone: the delivery fails and the endpoint is disabled.
    EndpointGone,
}

/// One finished attempt, to be recorded.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery_seq: i64,
    pub lease_owner: String,
    pub attempt: AttemptRow,
    pub next: AfterAttempt,
}

const ENDPOINT_COLUMNS: &str = "seq, endpoint_id, url, description, subscribed_events, status, disabled_reason, \
     signing_secret, format, created_at, updated_at";
pub(crate) const DELIVERY_COLUMNS: &str =
    "seq, endpoint_id, url, format, event_id, event_type, event_seq, kind, snapshot, created_at_ms, \
     status, attempts, retries_left, next_attempt_ms";
const ATTEMPT_COLUMNS: &str = "seq, attempt_id, created_at_ms, request_headers, request_body, response_status, \
     response_body, response_time_ms, success, failure_reason";

fn encode_events(types: &[String]) -> String {
    format!(",{},", types.join(","))
}

fn endpoint_from_row(row: &impl Columns) -> Result<EndpointRow, StoreError> {
    let subscribed: String = row.col("subscribed_events")?;
    Ok(EndpointRow {
        endpoint_id: row.col("endpoint_id")?,
        url: row.col("url")?,
        description: row.col("description")?,
        subscribed_events: subscribed.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        status: row.col("status")?,
        disabled_reason: row.col("disabled_reason")?,
        signing_secret: row.col("signing_secret")?,
        format: format_col(row)?,
        created_at: row.col("created_at")?,
        updated_at: row.col("updated_at")?,
    })
}

pub(crate) fn delivery_from_row(row: &impl Columns) -> Result<DeliveryRow, StoreError> {
    let kind: String = row.col("kind")?;
    let retries_left: i64 = row.col("retries_left")?;
    Ok(DeliveryRow {
        delivery_seq: row.col("seq")?,
        endpoint_id: row.col("endpoint_id")?,
        url: row.col("url")?,
        format: format_col(row)?,
        event_id: row.col("event_id")?,
        event_type: row.col("event_type")?,
        event_seq: row.col("event_seq")?,
        kind: EventKind::parse(&kind).ok_or_else(|| StoreError::Internal(format!("stored event kind {kind:?}")))?,
        snapshot: row.col("snapshot")?,
        created_at_ms: row.col("created_at_ms")?,
        status: row.col("status")?,
        attempts: row.col("attempts")?,
        retries_left: (retries_left >= 0).then_some(retries_left),
        next_attempt_ms: row.col("next_attempt_ms")?,
    })
}

fn attempt_from_row(row: &impl Columns) -> Result<AttemptRow, StoreError> {
    Ok(AttemptRow {
        attempt_id: row.col("attempt_id")?,
        created_at_ms: row.col("created_at_ms")?,
        request_headers: row.col("request_headers")?,
        request_body: row.col("request_body")?,
        response_status: row.col("response_status")?,
        response_body: row.col("response_body")?,
        response_time_ms: row.col("response_time_ms")?,
        success: row.col::<i64>("success")? != 0,
        failure_reason: row.col("failure_reason")?,
    })
}

/// The endpoint, read inside a write; not found if there is none.
pub async fn endpoint_on(conn: &mut Tx<'_>, endpoint_id: &str) -> Result<EndpointRow, StoreError> {
    let row = db::query(&format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE endpoint_id = $1"))
        .bind(endpoint_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound { what: "webhook endpoint", id: endpoint_id.to_owned() })?;
    endpoint_from_row(&row)
}

/// Inserts a new endpoint, active, and returns it as stored.
pub async fn insert_endpoint(
    conn: &mut Tx<'_>,
    endpoint_id: &str,
    e: &NewEndpoint,
    now: i64,
) -> Result<EndpointRow, StoreError> {
    db::query(
        "INSERT INTO webhook_endpoints (endpoint_id, url, description, subscribed_events, status, \
         disabled_reason, signing_secret, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, NULL, $6, $7, $7)",
    )
    .bind(endpoint_id)
    .bind(&e.url)
    .bind(&e.description)
    .bind(encode_events(&e.subscribed_events))
    .bind(STATUS_ACTIVE)
    .bind(&e.signing_secret)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    endpoint_on(conn, endpoint_id).await
}

/// Applies the given changes to an endpoint and returns it as it is now; not found if there is no such
/// endpoint. A status change clears a `disabled_reason`; setting `STATUS_ACTIVE` lets the deliveries
/// that waited while it was inactive resume.
pub async fn update_endpoint(
    conn: &mut Tx<'_>,
    endpoint_id: &str,
    u: &EndpointUpdate,
    now: i64,
) -> Result<EndpointRow, StoreError> {
    endpoint_on(conn, endpoint_id).await?;
    db::query(
        "UPDATE webhook_endpoints SET url = COALESCE($1, url), description = COALESCE($2, description), \
         subscribed_events = COALESCE($3, subscribed_events), status = COALESCE($4, status), \
         disabled_reason = CASE WHEN $4 IS NULL THEN disabled_reason ELSE NULL END, updated_at = $5 \
         WHERE endpoint_id = $6",
    )
    .bind(&u.url)
    .bind(&u.description)
    .bind(u.subscribed_events.as_deref().map(encode_events))
    .bind(&u.status)
    .bind(now)
    .bind(endpoint_id)
    .execute(&mut *conn)
    .await?;
    endpoint_on(conn, endpoint_id).await
}

/// The endpoint of a callback URL in a format, made (active) the first time it is named.
pub async fn callback_endpoint(
    conn: &mut Tx<'_>,
    url: &str,
    format: BodyFormat,
    now: i64,
) -> Result<String, StoreError> {
    debug_assert!(format.is_callback());
    let find = "SELECT endpoint_id FROM webhook_endpoints WHERE format = $1 AND url = $2";
    if let Some(row) = db::query(find).bind(format.as_str()).bind(url).fetch_optional(&mut *conn).await? {
        return row.col("endpoint_id");
    }
    db::query(
        "INSERT INTO webhook_endpoints (endpoint_id, url, description, subscribed_events, status, disabled_reason, \
         signing_secret, format, created_at, updated_at) VALUES ($1, $2, $3, ',', $4, NULL, NULL, $5, $6, $6) \
         ON CONFLICT (format, url) WHERE format <> 'cobo' DO NOTHING",
    )
    .bind(crate::ids::new_id("W"))
    .bind(url)
    .bind(format!("callback URL ({})", format.as_str()))
    .bind(STATUS_ACTIVE)
    .bind(format.as_str())
    .bind(now)
    .execute(&mut *conn)
    .await?;
    let row = db::query(find).bind(format.as_str()).bind(url).fetch_one(&mut *conn).await?;
    row.col("endpoint_id")
}

/// Sends the events of type `event_type` of `subject_id` raised from now on to a callback endpoint too.
pub async fn subscribe_callback(
    conn: &mut Tx<'_>,
    subject_id: &str,
    event_type: &str,
    endpoint_id: &str,
) -> Result<(), StoreError> {
    db::query(
        "INSERT INTO callback_subscriptions (subject_id, event_type, endpoint_id) VALUES ($1, $2, $3) \
         ON CONFLICT (subject_id, event_type) DO UPDATE SET endpoint_id = excluded.endpoint_id",
    )
    .bind(subject_id)
    .bind(event_type)
    .bind(endpoint_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Filters for listing deliveries of one endpoint.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub status: Option<String>,
    pub event_type: Option<String>,
}

impl Store {
    pub async fn endpoint(&self, endpoint_id: &str) -> Result<Option<EndpointRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE endpoint_id = $1"))
            .bind(endpoint_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(endpoint_from_row).transpose()
    }

    /// Registered endpoints; with `callbacks`, the callback URLs' endpoints too.
    pub async fn list_endpoints(
        &self,
        status: Option<&str>,
        event_type: Option<&str>,
        callbacks: bool,
        page_req: &PageRequest,
    ) -> Result<Page<EndpointRow>, StoreError> {
        let mut f = Filter::default();
        if !callbacks {
            f.eq("format", BodyFormat::Cobo.as_str());
        }
        if let Some(s) = status {
            f.eq("status", s);
        }
        if let Some(t) = event_type {
            let p = f.bind_str(&format!("%,{t},%"));
            f.clause(format!("subscribed_events LIKE {p}"));
        }
        page::list(self.pool(), "webhook_endpoints", ENDPOINT_COLUMNS, &f, page_req, endpoint_from_row).await
    }

    pub async fn list_deliveries(
        &self,
        endpoint_id: &str,
        filter: &DeliveryFilter,
        page_req: &PageRequest,
    ) -> Result<Page<DeliveryRow>, StoreError> {
        let mut f = Filter::default();
        f.eq("endpoint_id", endpoint_id);
        if let Some(s) = &filter.status {
            f.eq("status", s);
        }
        if let Some(t) = &filter.event_type {
            f.eq("event_type", t);
        }
        page::list(self.pool(), "webhook_delivery_view", DELIVERY_COLUMNS, &f, page_req, delivery_from_row).await
    }

    pub async fn delivery(&self, endpoint_id: &str, event_id: &str) -> Result<Option<DeliveryRow>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_delivery_view WHERE endpoint_id = $1 AND event_id = $2"
        ))
        .bind(endpoint_id)
        .bind(event_id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(delivery_from_row).transpose()
    }

    /// The attempts to deliver one event to one endpoint, newest first.
    pub async fn list_attempts(
        &self,
        delivery_seq: i64,
        page_req: &PageRequest,
    ) -> Result<Page<AttemptRow>, StoreError> {
        let mut f = Filter::default();
        f.cmp_int("delivery_seq", "=", delivery_seq);
        page::list(self.pool(), "webhook_attempts", ATTEMPT_COLUMNS, &f, page_req, attempt_from_row).await
    }
}
