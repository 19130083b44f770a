//! The outbox. Every state change of a refund, an order or a transaction raises its event inside the
//! same database transaction: if the change commits, so does its event, and one delivery row per
//! subscribed endpoint; if it rolls back, nobody hears of it. The webhook dispatcher only reads these
//! rows, so a crash between the change and the notification cannot lose the notification.
//!
//! An event stores a snapshot of its object right after the change, so a retry three days later still
//! says what happened then, and its `seq` orders the events of one subject (a refund with its payout
//! legs, an order with its pay-ins): the changes of one subject are serialised by its row lock, so a
//! later change always gets a larger `seq`.

use crate::db::{self, Tx};
use crate::{ids, StoreError};
use ebb_core::clock::now_ms;

pub const REFUND_STATUS_UPDATED: &str = "payment.refund.status.updated";
pub const REFUND_APPROVAL_UPDATED: &str = "payment.refund.approval.updated";
pub const ORDER_STATUS_UPDATED: &str = "payment.order.status.updated";
pub const TRANSACTION_CREATED: &str = "payment.transaction.created";
pub const TRANSACTION_COMPLETED: &str = "payment.transaction.completed";
pub const TRANSACTION_FAILED: &str = "payment.transaction.failed";
pub const TRANSACTION_LATE: &str = "payment.transaction.late";
pub const TRANSACTION_HELD: &str = "payment.transaction.held";
pub const CRYPTO_REFUND_UPDATED: &str = "kyt.crypto_refund.updated";
pub const KYT_SCREENING_UPDATED: &str = "compliance.kyt.screenings.status.updated";
pub const DISPOSITION_UPDATED: &str = "compliance.disposition.status.updated";
pub const KYA_SCREENING_UPDATED: &str = "compliance.kya.screenings.status.updated";

/// The event types ebb raises, with what each means (`GET /webhooks/events/definitions`).
pub const EVENT_TYPES: &[(&str, &str)] = &[
    (REFUND_STATUS_UPDATED, "A refund was created or its status changed."),
    (REFUND_APPROVAL_UPDATED, "A refund's approval changed: an approval policy began to hold it, an approver approved or rejected it, or its approvals started again after its address changed."),
    (ORDER_STATUS_UPDATED, "A pay-in order was created or its status changed."),
    (TRANSACTION_CREATED, "A payout leg was signed and stored, or a pay-in was first seen on chain."),
    (TRANSACTION_COMPLETED, "A payout or pay-in reached its confirmation depth."),
    (TRANSACTION_FAILED, "A payout reverted or could not be sent, or a pay-in left the chain in a reorg."),
    (TRANSACTION_LATE, "A pay-in reached its confirmation depth after its order was Completed or Expired; it was credited to the merchant as a late payment."),
    (TRANSACTION_HELD, "A pay-in was not credited: its sender's screening held it (Completed, funds Frozen in the held account until disposed of), or its amount is beyond the ledger's range (Rejected with the reason); it waits for the operator."),
    (KYT_SCREENING_UPDATED, "A held pay-in's KYT review or funds status changed: it was held, reviewed (decisions, manual_review) or released."),
    (DISPOSITION_UPDATED, "A disposition of a held pay-in was made (unfreeze, refund, isolate) or its payout changed status."),
    (KYA_SCREENING_UPDATED, "An address screening asked through the KYA API was answered (Screened, or Failed when a provider could not answer)."),
    (CRYPTO_REFUND_UPDATED, "A crypto refund of the KYT refund API was created, confirmed, or its payout changed status (the data is getCryptoRefund's)."),
];

pub fn is_event_type(t: &str) -> bool {
    EVENT_TYPES.iter().any(|(name, _)| *name == t)
}

/// What an event's snapshot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A [`crate::refunds::RefundRow`] with its transactions.
    Refund,
    /// An [`crate::orders::OrderRow`] with its transactions.
    Order,
    /// A [`crate::transactions::TransactionRow`].
    Transaction,
    /// A [`crate::kyt::CryptoRefundSnapshot`].
    CryptoRefund,
    /// A [`crate::dispositions::KytScreeningSnapshot`].
    KytScreening,
    /// A [`crate::dispositions::DispositionSnapshot`].
    Disposition,
    /// A [`crate::kya::KyaSnapshot`].
    KyaScreening,
    /// A test event (`POST /webhooks/events/trigger`): the snapshot is the event's `data` as sent.
    Test,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Refund => "refund",
            EventKind::Order => "order",
            EventKind::Transaction => "transaction",
            EventKind::CryptoRefund => "crypto_refund",
            EventKind::KytScreening => "kyt_screening",
            EventKind::Disposition => "disposition",
            EventKind::KyaScreening => "kya_screening",
            EventKind::Test => "test",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Every kind; `every_kind_reads_back` checks that none is missing.
    const ALL: [EventKind; 8] = [
        EventKind::Refund,
        EventKind::Order,
        EventKind::Transaction,
        EventKind::CryptoRefund,
        EventKind::KytScreening,
        EventKind::Disposition,
        EventKind::KyaScreening,
        EventKind::Test,
    ];
}

pub(crate) fn json(v: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Internal(format!("event snapshot: {e}")))
}

/// Writes an event and one delivery for each active endpoint subscribed to its type, and one for the
/// callback URL its subject named for that type (`webhooks::subscribe_callback`), and one mail for each
/// customer subscribed to them (`mails::subscribe`).
pub async fn raise(
    conn: &mut Tx<'_>,
    event_type: &str,
    kind: EventKind,
    subject_id: &str,
    snapshot: String,
) -> Result<String, StoreError> {
    let event_id = ids::new_id("E");
    let now = now_ms();
    let insert_event = "INSERT INTO events (event_id, event_type, kind, subject_id, snapshot, created_at_ms) \
                        VALUES ($1, $3, $4, $5, $6, $2)";
    // `e`: the event's row; `$2`: now; `like`: the parameter of the subscription pattern. The endpoints
    // subscribed to the type, and the callback URL the event's subject named for it, if any.
    let fan_out = |event: &str, like: &str, which: &str| {
        let columns = "e.seq, e.event_id, e.event_type, e.subject_id, 'Retrying', 0, -1, $2, $2, $2";
        format!(
            "INSERT INTO webhook_deliveries (endpoint_id, event_seq, event_id, event_type, subject_id, status, \
             attempts, retries_left, next_attempt_ms, created_at_ms, updated_at_ms) \
             SELECT w.endpoint_id, {columns} \
             FROM {event} JOIN webhook_endpoints w ON w.status = 'STATUS_ACTIVE' AND w.subscribed_events LIKE {like} \
             {which} \
             UNION ALL SELECT c.endpoint_id, {columns} \
             FROM {event} JOIN callback_subscriptions c ON c.subject_id = e.subject_id AND c.event_type = e.event_type \
             {which}"
        )
    };
    // And one mail per customer subscribed to the subject's events of this type (`mails`).
    let mail_out = |event: &str, which: &str| {
        format!(
            "INSERT INTO mails (kind, subject_id, event_seq, to_address, locale, status, attempts, next_attempt_ms, \
             created_at_ms, updated_at_ms) \
             SELECT 'event', e.subject_id, e.seq, m.to_address, m.locale, 'Pending', 0, $2, $2, $2 \
             FROM {event} JOIN mail_subscriptions m ON m.subject_id = e.subject_id AND m.event_type = e.event_type \
             {which}"
        )
    };
    let like = format!("%,{event_type},%");
    // On SQLite the event, then its deliveries (on the writer a statement is a function call); on
    // PostgreSQL, which takes one statement per round trip, the event insert is a CTE the fan-out
    // reads. The seven parameters bind either way: the SQLite insert does not use the seventh.
    let sqlite = conn.backend() == crate::Backend::Sqlite;
    let sql = if sqlite {
        insert_event.to_owned()
    } else {
        format!(
            "WITH e AS ({insert_event} RETURNING seq, event_id, event_type, subject_id), d AS ({}) {}",
            fan_out("e", "$7", ""),
            mail_out("e", "")
        )
    };
    db::query(&sql)
        .bind(&event_id)
        .bind(now)
        .bind(event_type)
        .bind(kind.as_str())
        .bind(subject_id)
        .bind(snapshot)
        .bind(&like)
        .execute(&mut *conn)
        .await?;
    if sqlite {
        db::query(&fan_out("events e", "$3", "WHERE e.event_id = $1"))
            .bind(&event_id)
            .bind(now)
            .bind(like)
            .execute(&mut *conn)
            .await?;
        db::query(&mail_out("events e", "WHERE e.event_id = $1")).bind(&event_id).bind(now).execute(&mut *conn).await?;
    }
    Ok(event_id)
}

#[cfg(test)]
mod tests {
    use super::EventKind;

    #[test]
    fn every_kind_reads_back() {
        // A new kind fails to compile here until it has a place, and then fails the test until
        // `EventKind::ALL` holds it there: a stored kind `parse` cannot read stalls its deliveries.
        let place = |k: EventKind| match k {
            EventKind::Refund => 0,
            EventKind::Order => 1,
            EventKind::Transaction => 2,
            EventKind::CryptoRefund => 3,
            EventKind::KytScreening => 4,
            EventKind::Disposition => 5,
            EventKind::KyaScreening => 6,
            EventKind::Test => 7,
        };
        for (i, k) in EventKind::ALL.into_iter().enumerate() {
            assert_eq!(place(k), i);
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(EventKind::ALL.len(), place(EventKind::Test) + 1, "Test keeps the last place");
    }
}
