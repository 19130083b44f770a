//! The mail outbox: customer e-mails, written in the transaction of what they tell and sent by the mail
//! worker (docs/MAIL.md).
//!
//! A mail is either an event's news for a subscribed customer (`mail_subscriptions`, fanned out by
//! `events::raise` with the webhook deliveries), or a refund link's URL (`address_confirmation`,
//! `refund_link`), whose token is kept here, and only here, until the mail is sent or given up. A
//! worker leases due mails with a conditional update (one holder per mail across processes; a lease
//! that outlives a crash expires), and records each outcome under its lease.

use crate::columns::Columns;
use crate::db::{self, Tx};
use crate::events::EventKind;
use crate::{Store, StoreError};

pub const PENDING: &str = "Pending";
pub const SENT: &str = "Sent";
pub const SKIPPED: &str = "Skipped";
pub const FAILED: &str = "Failed";

/// What a mail tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailKind {
    /// An event of its subject (a refund's status change).
    Event,
    /// A CoinGate refund's address, to be confirmed through its refund link.
    AddressConfirmation,
    /// A refund link, for the customer to give the address.
    RefundLink,
}

impl MailKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MailKind::Event => "event",
            MailKind::AddressConfirmation => "address_confirmation",
            MailKind::RefundLink => "refund_link",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [MailKind::Event, MailKind::AddressConfirmation, MailKind::RefundLink].into_iter().find(|k| k.as_str() == s)
    }
}

/// A mail, with its event when it has one.
#[derive(Debug, Clone)]
pub struct MailRow {
    pub seq: i64,
    pub kind: MailKind,
    /// The refund it is about.
    pub subject_id: String,
    pub to_address: String,
    /// `en` or `zh`.
    pub locale: String,
    /// A link mail's token, until the mail is sent or given up.
    pub link_token: Option<String>,
    /// An event mail's event: its type, kind and snapshot.
    pub event: Option<(String, EventKind, String)>,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub message: Option<String>,
    pub created_at_ms: i64,
}

const COLUMNS: &str = "m.seq AS seq, m.kind AS kind, m.subject_id AS subject_id, m.to_address AS to_address, \
     m.locale AS locale, m.link_token AS link_token, m.status AS status, m.attempts AS attempts, \
     m.next_attempt_ms AS next_attempt_ms, m.last_error AS last_error, m.message AS message, \
     m.created_at_ms AS created_at_ms, e.event_type AS event_type, e.kind AS event_kind, e.snapshot AS snapshot";
const FROM: &str = "mails m LEFT JOIN events e ON e.seq = m.event_seq";

fn from_row(row: &impl Columns) -> Result<MailRow, StoreError> {
    let kind: String = row.col("kind")?;
    let event_type: Option<String> = row.col("event_type")?;
    let event = match event_type {
        Some(t) => {
            let k: String = row.col("event_kind")?;
            let k = EventKind::parse(&k).ok_or_else(|| StoreError::Internal(format!("stored event kind {k:?}")))?;
            Some((t, k, row.col("snapshot")?))
        }
        None => None,
    };
    Ok(MailRow {
        seq: row.col("seq")?,
        kind: MailKind::parse(&kind).ok_or_else(|| StoreError::Internal(format!("stored mail kind {kind:?}")))?,
        subject_id: row.col("subject_id")?,
        to_address: row.col("to_address")?,
        locale: row.col("locale")?,
        link_token: row.col("link_token")?,
        event,
        status: row.col("status")?,
        attempts: row.col("attempts")?,
        next_attempt_ms: row.col("next_attempt_ms")?,
        last_error: row.col("last_error")?,
        message: row.col("message")?,
        created_at_ms: row.col("created_at_ms")?,
    })
}

/// E-mails the events of type `event_type` of `subject_id` raised from now on to `to_address`.
pub async fn subscribe(
    conn: &mut Tx<'_>,
    subject_id: &str,
    event_type: &str,
    to_address: &str,
    locale: &str,
) -> Result<(), StoreError> {
    db::query(
        "INSERT INTO mail_subscriptions (subject_id, event_type, to_address, locale) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (subject_id, event_type, to_address) DO NOTHING",
    )
    .bind(subject_id)
    .bind(event_type)
    .bind(to_address)
    .bind(locale)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Queues a refund link's mail (its token kept until the mail is sent).
pub async fn insert_link_mail(
    conn: &mut Tx<'_>,
    kind: MailKind,
    refund_id: &str,
    to_address: &str,
    locale: &str,
    link_token: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    debug_assert!(kind != MailKind::Event);
    db::query(
        "INSERT INTO mails (kind, subject_id, event_seq, to_address, locale, link_token, status, attempts, \
         next_attempt_ms, created_at_ms, updated_at_ms) VALUES ($1, $2, NULL, $3, $4, $5, $6, 0, $7, $7, $7)",
    )
    .bind(kind.as_str())
    .bind(refund_id)
    .bind(to_address)
    .bind(locale)
    .bind(link_token)
    .bind(PENDING)
    .bind(now_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The language a merchant's customers are written in, if it e-mails them; inside a write.
pub async fn customer_mail_on(conn: &mut Tx<'_>, merchant_id: &str) -> Result<Option<String>, StoreError> {
    let row = db::query("SELECT customer_mail FROM merchants WHERE merchant_id = $1")
        .bind(merchant_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| StoreError::NotFound { what: "merchant", id: merchant_id.to_owned() })?;
    row.col("customer_mail")
}

/// Turns a merchant's customer e-mail on (in a language) or off (`None`).
pub async fn set_customer_mail(
    conn: &mut Tx<'_>,
    merchant_id: &str,
    locale: Option<&str>,
    now_s: i64,
) -> Result<(), StoreError> {
    let done = db::query("UPDATE merchants SET customer_mail = $1, updated_at = $2 WHERE merchant_id = $3")
        .bind(locale)
        .bind(now_s)
        .bind(merchant_id)
        .execute(&mut *conn)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound { what: "merchant", id: merchant_id.to_owned() });
    }
    Ok(())
}

/// What became of a leased mail.
#[derive(Debug, Clone)]
pub enum MailOutcome {
    /// Accepted by the SMTP server; the message as sent.
    Sent { message: String },
    /// Nothing to tell about this change.
    Skipped,
    /// Try again at `at_ms`.
    Retry { at_ms: i64, error: String },
    /// Out of tries, or never sendable.
    Failed { error: String },
}

/// Leases up to `limit` due mails for `lease_ms`; the ones this owner got.
pub async fn lease_due(
    conn: &mut Tx<'_>,
    owner: &str,
    now_ms: i64,
    lease_ms: i64,
    limit: i64,
) -> Result<Vec<MailRow>, StoreError> {
    let due = db::query(
        "SELECT seq FROM mails WHERE status = 'Pending' AND next_attempt_ms <= $1 \
         AND (lease_until_ms IS NULL OR lease_until_ms <= $1) ORDER BY next_attempt_ms, seq LIMIT $2",
    )
    .bind(now_ms)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let mut leased = Vec::with_capacity(due.len());
    for row in due {
        let seq: i64 = row.col("seq")?;
        let took = db::query(
            "UPDATE mails SET lease_owner = $1, lease_until_ms = $2, attempts = attempts + 1, updated_at_ms = $3 \
             WHERE seq = $4 AND status = 'Pending' AND (lease_until_ms IS NULL OR lease_until_ms <= $3)",
        )
        .bind(owner)
        .bind(now_ms + lease_ms)
        .bind(now_ms)
        .bind(seq)
        .execute(&mut *conn)
        .await?;
        if took.rows_affected() == 1 {
            let row = db::query(&format!("SELECT {COLUMNS} FROM {FROM} WHERE m.seq = $1"))
                .bind(seq)
                .fetch_one(&mut *conn)
                .await?;
            leased.push(from_row(&row)?);
        }
    }
    Ok(leased)
}

/// Records a leased mail's outcome, if this owner still holds it; whether it did. A finished mail
/// forgets its link's token.
pub async fn record(
    conn: &mut Tx<'_>,
    seq: i64,
    owner: &str,
    outcome: &MailOutcome,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let (status, next, error, message) = match outcome {
        MailOutcome::Sent { message } => (SENT, now_ms, None, Some(message.as_str())),
        MailOutcome::Skipped => (SKIPPED, now_ms, None, None),
        MailOutcome::Retry { at_ms, error } => (PENDING, *at_ms, Some(error.as_str()), None),
        MailOutcome::Failed { error } => (FAILED, now_ms, Some(error.as_str()), None),
    };
    let done = db::query(
        "UPDATE mails SET status = $1, next_attempt_ms = $2, last_error = COALESCE($3, last_error), \
         message = COALESCE($4, message), lease_owner = NULL, lease_until_ms = NULL, updated_at_ms = $5, \
         link_token = CASE WHEN $1 = 'Pending' THEN link_token ELSE NULL END \
         WHERE seq = $6 AND lease_owner = $7",
    )
    .bind(status)
    .bind(next)
    .bind(error)
    .bind(message)
    .bind(now_ms)
    .bind(seq)
    .bind(owner)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Sends a finished mail again now (a replay); `false` if there is no such mail or it is pending.
pub async fn retry_now(conn: &mut Tx<'_>, seq: i64, now_ms: i64) -> Result<bool, StoreError> {
    let done = db::query(
        "UPDATE mails SET status = 'Pending', next_attempt_ms = $1, updated_at_ms = $1 \
         WHERE seq = $2 AND status <> 'Pending'",
    )
    .bind(now_ms)
    .bind(seq)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

impl Store {
    /// The language a merchant's customers are written in, if it e-mails them.
    pub async fn customer_mail(&self, merchant_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT customer_mail FROM merchants WHERE merchant_id = $1")
            .bind(merchant_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(r) => r.col("customer_mail")?,
            None => None,
        })
    }

    /// The mails about a subject (a refund), oldest first.
    pub async fn mails_of(&self, subject_id: &str) -> Result<Vec<MailRow>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM {FROM} WHERE m.subject_id = $1 ORDER BY m.seq"))
            .bind(subject_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(from_row).collect()
    }

    pub async fn mail(&self, seq: i64) -> Result<Option<MailRow>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM {FROM} WHERE m.seq = $1"))
            .bind(seq)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The newest mails, newest first, optionally of one status.
    pub async fn recent_mails(&self, status: Option<&str>, limit: i64) -> Result<Vec<MailRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM {FROM} WHERE ($1 IS NULL OR m.status = $1) ORDER BY m.seq DESC LIMIT $2"
        ))
        .bind(status)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }
}
