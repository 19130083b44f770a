//! The mail worker: sends the customer e-mails of the mail outbox over SMTP (docs/MAIL.md).
//!
//! Each round it leases a batch of due mails (a lease outlasts one SMTP exchange, so no other process
//! sends the same mail meanwhile), composes each (the API crate knows the templates), sends it, and
//! records what became of it: sent, skipped (nothing to tell), tried again later on the schedule, or
//! given up. A crash between sending and recording sends that mail again when its lease expires: a
//! customer may get one mail twice, never none.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ebb_app::mails;
use ebb_store::mails::{MailOutcome, MailRow};
use ebb_store::{ids, now_ms, Store};
use futures::StreamExt;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::sync::watch;

/// Waits before the 2nd, 3rd, … attempt: about three days in all, like webhooks.
pub const DEFAULT_RETRY_SCHEDULE: [Duration; 8] = [
    Duration::from_secs(60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(6 * 3600),
    Duration::from_secs(12 * 3600),
    Duration::from_secs(24 * 3600),
    Duration::from_secs(24 * 3600),
];

/// How many mails one round leases, and sends at once.
const BATCH: i64 = 32;
const CONCURRENCY: usize = 4;

#[derive(Debug, Clone)]
pub struct MailSettings {
    /// `smtp://host:port` (plain), `smtp://host:587?tls=required` (STARTTLS), `smtps://user:pass@host:465`.
    pub smtp_url: String,
    /// The sender, `Shop Refunds <refunds@shop.example>`.
    pub from: String,
    pub timeout: Duration,
    pub retry_schedule: Vec<Duration>,
    pub poll_interval: Duration,
}

impl MailSettings {
    pub fn new(smtp_url: String, from: String) -> Self {
        MailSettings {
            smtp_url,
            from,
            timeout: Duration::from_secs(30),
            retry_schedule: DEFAULT_RETRY_SCHEDULE.to_vec(),
            poll_interval: Duration::from_millis(500),
        }
    }
}

/// A mail as composed: its subject and text, and the text as the outbox keeps it (a link's token cut out).
#[derive(Debug, Clone)]
pub struct Composed {
    pub subject: String,
    pub text: String,
    pub loggable: String,
}

/// Composes a mail of the outbox; `None` when there is nothing to tell.
pub type Composer =
    Arc<dyn Fn(MailRow) -> Pin<Box<dyn Future<Output = Result<Option<Composed>, String>> + Send>> + Send + Sync>;

pub struct MailWorker {
    store: Store,
    compose: Composer,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    settings: MailSettings,
    owner: String,
}

impl MailWorker {
    pub fn new(store: Store, compose: Composer, settings: MailSettings) -> Result<Self, String> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&settings.smtp_url)
            .map_err(|e| format!("mail: smtp_url: {e}"))?
            .timeout(Some(settings.timeout))
            .build();
        let from: Mailbox = settings.from.parse().map_err(|e| format!("mail: from {:?}: {e}", settings.from))?;
        Ok(MailWorker { store, compose, transport, from, settings, owner: ids::new_id("mail") })
    }

    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(Arc::new(self).run(shutdown))
    }

    async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let lease_ms = (self.settings.timeout * 2).as_millis() as i64;
        let mut failing = false;
        while !*shutdown.borrow() {
            let leased = match mails::lease(&self.store, &self.owner, lease_ms, BATCH).await {
                Ok(l) => {
                    if failing {
                        tracing::info!("mail worker recovered");
                        failing = false;
                    }
                    l
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "mail worker cannot read its outbox; retrying");
                    }
                    failing = true;
                    Vec::new()
                }
            };
            let busy = !leased.is_empty();
            futures::stream::iter(leased)
                .for_each_concurrent(CONCURRENCY, |m| {
                    let this = self.clone();
                    async move {
                        let seq = m.seq;
                        let outcome = this.deliver(m).await;
                        match mails::record(&this.store, seq, &this.owner, outcome).await {
                            Ok(true) => {}
                            Ok(false) => tracing::warn!(seq, "a mail's lease passed to another worker mid-send"),
                            // The lease expires and the mail is sent again: once twice, never lost.
                            Err(e) => tracing::warn!(seq, error = %e, "recording a mail's outcome failed"),
                        }
                    }
                })
                .await;
            if !busy {
                tokio::select! {
                    _ = tokio::time::sleep(self.settings.poll_interval) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }

    /// One attempt at one mail; never fails, the outcome says what happened.
    async fn deliver(&self, m: MailRow) -> MailOutcome {
        let (seq, attempts, to) = (m.seq, m.attempts, m.to_address.clone());
        let composed = match (self.compose)(m).await {
            Ok(Some(c)) => c,
            Ok(None) => return MailOutcome::Skipped,
            Err(e) => return self.after_failure(seq, attempts, format!("compose: {e}")),
        };
        let to_box: Mailbox = match to.parse() {
            Ok(b) => b,
            Err(e) => return MailOutcome::Failed { error: format!("the address {to:?} is not one: {e}") },
        };
        // Base64 always: the text may be Chinese, and its lines are the template's.
        let body = match Body::new_with_encoding(composed.text.clone(), ContentTransferEncoding::Base64) {
            Ok(b) => b,
            Err(_) => return MailOutcome::Failed { error: "the text cannot be encoded".into() },
        };
        let message = Message::builder()
            .from(self.from.clone())
            .to(to_box)
            .subject(composed.subject.clone())
            .header(ContentType::TEXT_PLAIN)
            .body(body);
        let message = match message {
            Ok(msg) => msg,
            Err(e) => return MailOutcome::Failed { error: format!("building the message: {e}") },
        };
        match self.transport.send(message).await {
            Ok(_) => {
                tracing::info!(seq, "customer mail sent");
                let log =
                    format!("From: {}\nTo: {to}\nSubject: {}\n\n{}", self.from, composed.subject, composed.loggable);
                MailOutcome::Sent { message: log }
            }
            Err(e) if e.is_permanent() => {
                tracing::warn!(seq, error = %e, "the SMTP server refused a customer mail for good");
                MailOutcome::Failed { error: format!("refused: {e}") }
            }
            Err(e) => self.after_failure(seq, attempts, e.to_string()),
        }
    }

    /// The next attempt on the schedule (`attempts` were made, this one included), or given up.
    fn after_failure(&self, seq: i64, attempts: i64, error: String) -> MailOutcome {
        let schedule = &self.settings.retry_schedule;
        match usize::try_from(attempts - 1).ok().and_then(|i| schedule.get(i)) {
            Some(wait) => {
                tracing::warn!(seq, attempts, error = %error, "a customer mail was not sent; it is tried again");
                MailOutcome::Retry { at_ms: now_ms() + wait.as_millis() as i64, error }
            }
            None => {
                tracing::warn!(seq, attempts, error = %error, "a customer mail was given up");
                MailOutcome::Failed { error }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_tries_for_about_three_days() {
        let total: Duration = DEFAULT_RETRY_SCHEDULE.iter().sum();
        assert!(total >= Duration::from_secs(2 * 24 * 3600) && total <= Duration::from_secs(4 * 24 * 3600));
        assert!(DEFAULT_RETRY_SCHEDULE.windows(2).all(|w| w[0] <= w[1]));
    }
}
