//! `ebb mail`: which merchants' customers ebb e-mails, and the mail outbox (docs/MAIL.md).

use anyhow::bail;
use clap::Subcommand;

use super::{open_store, DbArgs};

#[derive(Subcommand)]
pub(super) enum MailCommand {
    /// E-mail a merchant's customers (refund links, address confirmations, refund status) in a language,
    /// or stop: `--lang en`, `--lang zh` or `--lang off`.
    Customers {
        merchant: String,
        #[arg(long, value_parser = ["en", "zh", "off"])]
        lang: String,
    },
    /// The newest mails of the outbox, or every mail about one refund.
    List {
        /// Pending, Sent, Skipped or Failed.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        refund: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Show one mail as it was sent (a link's token cut out).
    Show { seq: i64 },
    /// Send a sent, skipped or failed mail again now.
    Retry { seq: i64 },
}

pub(super) async fn mail(command: MailCommand, db: &DbArgs) -> anyhow::Result<()> {
    let store = open_store(db).await?;
    match command {
        MailCommand::Customers { merchant, lang } => {
            let locale = (lang != "off").then_some(lang.as_str());
            ebb_app::mails::set_customer_mail(&store, &merchant, locale).await?;
            match locale {
                Some(l) => println!("{merchant}'s customers are e-mailed, in {l}"),
                None => println!("{merchant}'s customers are not e-mailed"),
            }
        }
        MailCommand::List { status, refund, limit } => {
            let mails = match refund {
                Some(r) => store.mails_of(&r).await?,
                None => store.recent_mails(status.as_deref(), limit).await?,
            };
            for m in mails {
                println!(
                    "{}  {}  {}  {}  {}  attempts {}{}",
                    m.seq,
                    m.status,
                    m.kind.as_str(),
                    m.subject_id,
                    m.to_address,
                    m.attempts,
                    m.last_error.map(|e| format!("  ({e})")).unwrap_or_default()
                );
            }
        }
        MailCommand::Show { seq } => {
            let found = store.mail(seq).await?;
            let Some(m) = found else { bail!("no mail {seq}") };
            println!("{} {} to {}, attempts {}", m.status, m.kind.as_str(), m.to_address, m.attempts);
            if let Some(e) = m.last_error {
                println!("last error: {e}");
            }
            println!();
            println!("{}", m.message.unwrap_or_else(|| "(not sent)".into()));
        }
        MailCommand::Retry { seq } => {
            let queued = ebb_app::mails::retry(&store, seq).await?;
            println!("{}", if queued { "queued" } else { "no such finished mail (a pending one is sent by itself)" });
        }
    }
    Ok(())
}
