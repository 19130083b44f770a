//! Refund links: one-time URLs through which a customer submits the address a refund pays out to.
//!
//! The refund is created (and its funds reserved) with its first link, in `PendingConfirmation`. The
//! link only collects the address: opening it moves the refund to `AddressPending`, submitting moves it
//! to `AddressSubmitted` and on to `Pending`, from where the payout executor takes it. Each move is a
//! refund status change, so each raises the refund's webhook event in the same transaction.
//!
//! Single use lives in the database: a submit takes the link's row lock and changes it from `Active`
//! to `Used` only if it still is `Active`, so of two concurrent submits exactly one finds it so. Lock
//! order is always link, then refund (opening, submitting, re-linking), so PostgreSQL never deadlocks
//! them against each other.
//!
//! The use cases (make, open, submit a link) are composed in `ebb-app/src/links.rs` from the functions
//! here, each in one transaction.

use ebb_core::refund::RefundEvent;
use ebb_core::RefundStatus;

use crate::columns::Columns;
use crate::db::{self, Tx};
use crate::refunds::{compare_and_set, lock_refund, RefundRow};
use crate::{Store, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStatus {
    /// Can be opened and submitted (until it expires).
    Active,
    /// An address was submitted through it.
    Used,
    /// A newer link was made for the same refund.
    Replaced,
}

impl LinkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkStatus::Active => "Active",
            LinkStatus::Used => "Used",
            LinkStatus::Replaced => "Replaced",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [LinkStatus::Active, LinkStatus::Used, LinkStatus::Replaced].into_iter().find(|l| l.as_str() == s)
    }
}

/// How the page presents the merchant (Cobo's `display_info`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkDisplay {
    pub developer_name: Option<String>,
    pub logo_url: Option<String>,
    pub return_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRow {
    pub link_id: String,
    pub refund_id: String,
    pub status: LinkStatus,
    /// The original payer's address, pre-filled on the page; `""` when unknown.
    pub default_address: String,
    pub source_tx_id: Option<String>,
    pub display: LinkDisplay,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub opened_at_ms: Option<i64>,
    pub submitted_at_ms: Option<i64>,
    pub submitted_address: Option<String>,
}

impl LinkRow {
    pub fn is_expired(&self, now_ms: i64) -> bool {
        now_ms >= self.expires_at_ms
    }
}

/// A link and its refund, as a token finds them.
#[derive(Debug, Clone)]
pub struct LinkView {
    pub link: LinkRow,
    pub refund: RefundRow,
}

/// Why a link did not take a submitted address. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No link has this token (mistyped, tampered with, or never made).
    Unknown,
    Expired,
    /// An address was already submitted through this link.
    AlreadyUsed,
    /// The merchant made a newer link for the refund.
    Replaced,
    /// The refund no longer takes an address (cancelled, or its payout started after a re-link).
    RefundClosed(RefundStatus),
}

const COLUMNS: &str =
    "link_id, refund_id, status, default_address, source_tx_id, developer_name, logo_url, return_url, \
     created_at_ms, expires_at_ms, opened_at_ms, submitted_at_ms, submitted_address";

fn from_row(row: &impl Columns) -> Result<LinkRow, StoreError> {
    let status: String = row.col("status")?;
    Ok(LinkRow {
        link_id: row.col("link_id")?,
        refund_id: row.col("refund_id")?,
        status: LinkStatus::parse(&status)
            .ok_or_else(|| StoreError::Internal(format!("stored link status {status:?}")))?,
        default_address: row.col("default_address")?,
        source_tx_id: row.col("source_tx_id")?,
        display: LinkDisplay {
            developer_name: row.col("developer_name")?,
            logo_url: row.col("logo_url")?,
            return_url: row.col("return_url")?,
        },
        created_at_ms: row.col("created_at_ms")?,
        expires_at_ms: row.col("expires_at_ms")?,
        opened_at_ms: row.col("opened_at_ms")?,
        submitted_at_ms: row.col("submitted_at_ms")?,
        submitted_address: row.col("submitted_address")?,
    })
}

/// The link a token's hash finds, its row locked until the transaction ends.
pub async fn lock_link(conn: &mut Tx<'_>, token_hash: &str) -> Result<Option<LinkRow>, StoreError> {
    let lock = conn.backend().for_update();
    let row = db::query(&format!("SELECT {COLUMNS} FROM refund_links WHERE token_hash = $1{lock}"))
        .bind(token_hash)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Stores a new link (its token only as the hash).
pub async fn insert_link(conn: &mut Tx<'_>, link: &LinkRow, token_hash: &str) -> Result<(), StoreError> {
    db::query(
        "INSERT INTO refund_links (link_id, token_hash, refund_id, status, default_address, source_tx_id, \
         developer_name, logo_url, return_url, created_at_ms, expires_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&link.link_id)
    .bind(token_hash)
    .bind(&link.refund_id)
    .bind(link.status.as_str())
    .bind(&link.default_address)
    .bind(&link.source_tx_id)
    .bind(&link.display.developer_name)
    .bind(&link.display.logo_url)
    .bind(&link.display.return_url)
    .bind(link.created_at_ms)
    .bind(link.expires_at_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records the first opening of a link.
pub async fn record_opened(conn: &mut Tx<'_>, link_id: &str, now_ms: i64) -> Result<(), StoreError> {
    db::query("UPDATE refund_links SET opened_at_ms = $1 WHERE link_id = $2 AND opened_at_ms IS NULL")
        .bind(now_ms)
        .bind(link_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Uses a link up with the address submitted through it, only if it is still `Active`: of two
/// concurrent submits exactly one gets `true`.
pub async fn mark_used(conn: &mut Tx<'_>, link_id: &str, address: &str, now_ms: i64) -> Result<bool, StoreError> {
    let used = db::query(
        "UPDATE refund_links SET status = $1, submitted_at_ms = $2, submitted_address = $3, \
         opened_at_ms = COALESCE(opened_at_ms, $2) WHERE link_id = $4 AND status = $5",
    )
    .bind(LinkStatus::Used.as_str())
    .bind(now_ms)
    .bind(address)
    .bind(link_id)
    .bind(LinkStatus::Active.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(used.rows_affected() == 1)
}

impl Store {
    /// The link a token's hash finds, with its refund; `None` for an unknown token.
    pub async fn refund_link(&self, token_hash: &str) -> Result<Option<LinkView>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM refund_links WHERE token_hash = $1"))
            .bind(token_hash)
            .fetch_optional(self.pool())
            .await?;
        let Some(link) = row.as_ref().map(from_row).transpose()? else { return Ok(None) };
        let refund = self
            .refund(&link.refund_id, None)
            .await?
            .ok_or_else(|| StoreError::Internal(format!("link {} has no refund", link.link_id)))?;
        Ok(Some(LinkView { link, refund }))
    }
}

/// A second link for an existing link refund (the same link request again): earlier links die; a refund with a submitted address
/// whose payout has not started goes back to waiting for one.
pub async fn relink(conn: &mut Tx<'_>, refund: RefundRow, now_ms: i64) -> Result<RefundRow, StoreError> {
    // Links before the refund: the lock order every link operation keeps.
    let lock = conn.backend().for_update();
    db::query(&format!("SELECT link_id FROM refund_links WHERE refund_id = $1 AND status = 'Active'{lock}"))
        .bind(&refund.refund_id)
        .fetch_all(&mut *conn)
        .await?;
    let mut refund = lock_refund(conn, &refund.refund_id, None).await?;
    match refund.status {
        RefundStatus::PendingConfirmation | RefundStatus::AddressPending => {}
        RefundStatus::Pending => {
            let next = refund.status.apply(RefundEvent::Relinked).map_err(|_| {
                StoreError::InvalidState(format!(
                    "refund {} is {} and cannot be re-linked",
                    refund.refund_id, refund.status
                ))
            })?;
            // The address submitted through the old link no longer stands, nor do approvals of it.
            let approval = refund.approval.take().map(|mut a| {
                a.reset();
                a
            });
            if let Some(a) = &approval {
                crate::approvals::set_approval(conn, &refund.refund_id, a, now_ms / 1000).await?;
            }
            compare_and_set(conn, &refund, next, None, Some(""), now_ms / 1000).await?;
            if approval.is_some() {
                crate::refunds::raise_approval_changed(conn, &refund.refund_id).await?;
            }
            refund.approval = approval;
            refund.status = next;
            refund.to_address = String::new();
        }
        other => {
            return Err(StoreError::InvalidState(format!(
                "refund {} is {other}: its payout has started or ended, so a new link cannot change where it goes",
                refund.refund_id
            )))
        }
    }
    db::query("UPDATE refund_links SET status = $1 WHERE refund_id = $2 AND status = $3")
        .bind(LinkStatus::Replaced.as_str())
        .bind(&refund.refund_id)
        .bind(LinkStatus::Active.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(refund)
}
