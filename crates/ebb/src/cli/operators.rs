//! `ebb operators`: the people of the operator console (docs/CONSOLE.md).

use anyhow::Context;
use clap::Subcommand;
use ebb_app::operators::{self, ConsoleSettings};
use ebb_store::operators::OperatorRole;

use super::{open_store, DbArgs};
use crate::config::FileConfig;

#[derive(Subcommand)]
pub(super) enum OperatorsCommand {
    /// Add an operator and print the one-time link where it chooses a password and gets its second
    /// factor (valid 24 hours).
    Add {
        #[arg(long)]
        email: String,
        /// admin, approver, support or viewer.
        #[arg(long, value_parser = ["admin", "approver", "support", "viewer"])]
        role: String,
        /// Limit a support agent or viewer to these merchants (repeat the flag); default every merchant.
        #[arg(long = "merchant")]
        merchants: Vec<String>,
    },
    /// List the operators.
    List,
    /// A new set-up link for an operator (a forgotten password, a lost phone); its sessions end.
    Reset { email: String },
    /// Disable an operator: its sessions end and it cannot log in.
    Disable { email: String },
}

/// Where ebb's pages are reached: the config's `public_url`, or the `ebb dev` data directory's.
fn public_url(db: &DbArgs) -> Option<String> {
    if let Some(cfg) = &db.config {
        return FileConfig::load(Some(cfg)).ok()?.public_url;
    }
    let dir = db.data_dir.clone().unwrap_or_else(|| std::path::PathBuf::from(".ebb"));
    let info: crate::dev::DevInfo =
        serde_json::from_str(&std::fs::read_to_string(crate::dev::dev_json_path(&dir)).ok()?).ok()?;
    Some(info.console_url.trim_end_matches("/console").to_owned())
}

fn print_setup_link(db: &DbArgs, email: &str, token: &str) {
    let path = format!("/console/setup?token={token}");
    match public_url(db) {
        Some(base) if !base.is_empty() => {
            println!("set-up link for {email} (once, 24 hours): {}{path}", base.trim_end_matches('/'))
        }
        _ => println!("set-up link for {email} (once, 24 hours): <ebb's public URL>{path}"),
    }
}

pub(super) async fn operators_command(command: OperatorsCommand, db: &DbArgs) -> anyhow::Result<()> {
    let store = open_store(db).await?;
    let settings = ConsoleSettings::default();
    let by_email = |email: String| {
        let store = store.clone();
        async move { store.operator_by_email(&email.to_lowercase()).await?.with_context(|| format!("no operator {email}")) }
    };
    match command {
        OperatorsCommand::Add { email, role, merchants } => {
            let role = OperatorRole::parse(&role).context("role")?;
            let new = operators::add(&store, &settings, &email, role, merchants, "cli").await?;
            println!("added {} ({})", new.operator.email, new.operator.role);
            print_setup_link(db, &new.operator.email, &new.setup_token);
        }
        OperatorsCommand::List => {
            for o in store.operators().await? {
                let state = match (o.disabled_at, &o.password_hash) {
                    (Some(_), _) => "disabled",
                    (None, None) => "waiting for set-up",
                    (None, Some(_)) => "active",
                };
                let merchants =
                    if o.merchant_ids.is_empty() { "all merchants".into() } else { o.merchant_ids.join(" ") };
                println!("{}  {}  {}  {}  {}", o.operator_id, o.email, o.role, merchants, state);
            }
        }
        OperatorsCommand::Reset { email } => {
            let op = by_email(email).await?;
            let (op, token) = operators::reset(&store, &settings, None, &op.operator_id).await?;
            print_setup_link(db, &op.email, &token);
        }
        OperatorsCommand::Disable { email } => {
            let op = by_email(email).await?;
            operators::disable(&store, None, &op.operator_id).await?;
            println!("disabled {}", op.email);
        }
    }
    Ok(())
}
