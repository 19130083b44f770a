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

use ebb_core::refund::RefundEvent;
use ebb_core::{Address, RefundStatus};

use crate::columns::Columns;
use crate::db::{self, Tx};
use crate::refunds::{compare_and_set, insert_refund, lock_refund, Created, NewRefund, RefundRow};
use crate::{ids, now_ms, now_s, Store, StoreError};

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

/// A request for a refund link: the refund (without an address) and how to present it.
#[derive(Debug, Clone)]
pub struct NewRefundLink {
    pub refund: NewRefund,
    /// Hex SHA-256 of the token handed out; the token itself is never stored.
    pub token_hash: String,
    pub default_address: String,
    pub source_tx_id: Option<String>,
    pub display: LinkDisplay,
    pub expires_at_ms: i64,
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

/// Statuses in which a refund takes an address through a link.
fn takes_link_address(s: RefundStatus) -> bool {
    matches!(s, RefundStatus::PendingConfirmation | RefundStatus::AddressPending)
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

async fn lock_link(conn: &mut Tx<'_>, token_hash: &str) -> Result<Option<LinkRow>, StoreError> {
    let lock = conn.backend().for_update();
    let row = db::query(&format!("SELECT {COLUMNS} FROM refund_links WHERE token_hash = $1{lock}"))
        .bind(token_hash)
        .fetch_optional(&mut *conn)
        .await?;
    row.as_ref().map(from_row).transpose()
}

impl Store {
    /// Creates a refund and its first link; or, for a request with the `request_id` and fields of an
    /// earlier link request, a new link for that refund, which kills the earlier links. A refund whose
    /// address was submitted but whose payout has not started goes back to `AddressPending`; once its
    /// payout has started it cannot be re-linked.
    pub async fn create_refund_link(&self, new: NewRefundLink) -> Result<(RefundRow, LinkRow), StoreError> {
        if let Some(m) = &new.refund.merchant_id {
            if self.merchant(m).await?.is_none() {
                return Err(StoreError::NotFound { what: "merchant", id: m.clone() });
            }
        }
        let (refund, link) = self
            .write(move |conn| {
                Box::pin(async move {
                    let now = now_ms();
                    let refund = match insert_refund(conn, &new.refund).await? {
                        Created::New(r) => r,
                        Created::Existing(r) => relink(conn, r, now).await?,
                    };
                    let link = LinkRow {
                        link_id: ids::new_id("L"),
                        refund_id: refund.refund_id.clone(),
                        status: LinkStatus::Active,
                        default_address: new.default_address.clone(),
                        source_tx_id: new.source_tx_id.clone(),
                        display: new.display.clone(),
                        created_at_ms: now,
                        expires_at_ms: new.expires_at_ms,
                        opened_at_ms: None,
                        submitted_at_ms: None,
                        submitted_address: None,
                    };
                    db::query(
                        "INSERT INTO refund_links (link_id, token_hash, refund_id, status, default_address, source_tx_id, \
                         developer_name, logo_url, return_url, created_at_ms, expires_at_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    )
                    .bind(&link.link_id)
                    .bind(&new.token_hash)
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
                    Ok((refund, link))
                })
            })
            .await?;
        let refund = self.refund(&refund.refund_id, None).await?.unwrap_or(refund);
        Ok((refund, link))
    }

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

    /// Records that the customer opened an active link: the first time, the link's `opened_at_ms`, and a
    /// refund still waiting for its link to be opened moves to `AddressPending`. Returns the link as it
    /// is now.
    pub async fn open_refund_link(&self, token_hash: &str) -> Result<Option<LinkView>, StoreError> {
        let key = token_hash.to_owned();
        let token_hash = key.clone();
        let opened = self
            .write(move |conn| {
                Box::pin(async move {
                    let Some(link) = lock_link(conn, &token_hash).await? else { return Ok(None) };
                    let now = now_ms();
                    if link.status != LinkStatus::Active || link.is_expired(now) {
                        return Ok(Some(link.refund_id));
                    }
                    if link.opened_at_ms.is_none() {
                        db::query("UPDATE refund_links SET opened_at_ms = $1 WHERE link_id = $2")
                            .bind(now)
                            .bind(&link.link_id)
                            .execute(&mut *conn)
                            .await?;
                    }
                    let refund = lock_refund(conn, &link.refund_id, None).await?;
                    if refund.status == RefundStatus::PendingConfirmation {
                        let next = refund.status.apply(RefundEvent::LinkOpened).map_err(internal)?;
                        compare_and_set(conn, &refund, next, None, None, now_s()).await?;
                    }
                    Ok(Some(link.refund_id))
                })
            })
            .await?;
        match opened {
            Some(_) => self.refund_link(&key).await,
            None => Ok(None),
        }
    }

    /// Takes the address a customer submitted through a link: the link becomes `Used`, the refund
    /// `AddressSubmitted` and then `Pending` with that address, in one transaction. A refusal changes
    /// nothing.
    pub async fn submit_refund_link(
        &self,
        token_hash: &str,
        address: Address,
    ) -> Result<Result<RefundRow, Refusal>, StoreError> {
        let token_hash = token_hash.to_owned();
        let outcome = self
            .write(move |conn| {
                Box::pin(async move {
                    let Some(link) = lock_link(conn, &token_hash).await? else { return Ok(Err(Refusal::Unknown)) };
                    let now = now_ms();
                    match link.status {
                        LinkStatus::Used => return Ok(Err(Refusal::AlreadyUsed)),
                        LinkStatus::Replaced => return Ok(Err(Refusal::Replaced)),
                        LinkStatus::Active if link.is_expired(now) => return Ok(Err(Refusal::Expired)),
                        LinkStatus::Active => {}
                    }
                    let mut refund = lock_refund(conn, &link.refund_id, None).await?;
                    if !takes_link_address(refund.status) {
                        return Ok(Err(Refusal::RefundClosed(refund.status)));
                    }
                    let used = db::query(
                        "UPDATE refund_links SET status = $1, submitted_at_ms = $2, submitted_address = $3, \
                         opened_at_ms = COALESCE(opened_at_ms, $2) WHERE link_id = $4 AND status = $5",
                    )
                    .bind(LinkStatus::Used.as_str())
                    .bind(now)
                    .bind(address.as_str())
                    .bind(&link.link_id)
                    .bind(LinkStatus::Active.as_str())
                    .execute(&mut *conn)
                    .await?;
                    if used.rows_affected() != 1 {
                        return Ok(Err(Refusal::AlreadyUsed));
                    }
                    let now_s = now_s();
                    let submitted = refund.status.apply(RefundEvent::LinkAddressSubmitted).map_err(internal)?;
                    compare_and_set(conn, &refund, submitted, None, Some(address.as_str()), now_s).await?;
                    refund.status = submitted;
                    let pending = submitted.apply(RefundEvent::LinkAddressConfirmed).map_err(internal)?;
                    compare_and_set(conn, &refund, pending, None, None, now_s).await?;
                    Ok(Ok(link.refund_id))
                })
            })
            .await?;
        match outcome {
            Ok(refund_id) => Ok(Ok(self
                .refund(&refund_id, None)
                .await?
                .ok_or_else(|| StoreError::Internal(format!("refund {refund_id} vanished")))?)),
            Err(refusal) => Ok(Err(refusal)),
        }
    }
}

fn internal(e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(e.to_string())
}

/// A second link for an existing link refund: earlier links die; a refund with a submitted address
/// whose payout has not started goes back to waiting for one.
async fn relink(conn: &mut Tx<'_>, refund: RefundRow, now_ms: i64) -> Result<RefundRow, StoreError> {
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
            // The address submitted through the old link no longer stands.
            compare_and_set(conn, &refund, next, None, Some(""), now_ms / 1000).await?;
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
