//! The command line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use ebb_store::Store;
use ebb_worker::WebhookSettings;

use crate::config::{FileConfig, Settings};
use crate::{dev, Application};

mod keys;
mod mail;
mod operators;
use keys::{keys, KeysCommand};
use mail::{mail, MailCommand};
use operators::{operators_command, OperatorsCommand};

#[derive(Parser)]
#[command(name = "ebb", version, about = "Self-hosted crypto refunds with a Cobo-compatible API")]
struct Cli {
    /// `text` or `json`.
    #[arg(long, global = true, env = "EBB_LOG_FORMAT", default_value = "text")]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

/// Where a command finds its database (and server key): a config file, a database URL, or an
/// `ebb dev` data directory (default `./.ebb`).
#[derive(Args, Clone, Default)]
struct DbArgs {
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[arg(long, global = true, env = "EBB_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run with zero configuration: SQLite and the sandbox in a data directory, demo credentials printed.
    Dev {
        #[arg(long, default_value = crate::config::DEFAULT_LISTEN)]
        listen: SocketAddr,
        #[arg(long, default_value = ".ebb")]
        data_dir: PathBuf,
        /// A PostgreSQL database (postgres://…) instead of the SQLite file in the data directory; the
        /// server key and dev.json stay in the data directory.
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Run in production mode from a config file and EBB_* environment variables.
    Serve {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Apply database migrations.
    Migrate {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Manage the API keys clients sign requests with.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Pay-in orders.
    Orders {
        #[command(subcommand)]
        command: OrdersCommand,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Manage webhook endpoints and their events.
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
        #[command(flatten)]
        db: DbArgs,
    },
    /// The approval queue: refunds an approval policy holds (approving takes a signed API call, so
    /// that every approval is made by a key and recorded under it).
    Approvals {
        #[command(subcommand)]
        command: ApprovalsCommand,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Screening: check an address as ebb would, or load a newer sanctions list.
    Screening {
        #[command(subcommand)]
        command: ScreeningCommand,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Customer e-mail: which merchants' customers ebb writes to, and the mail outbox.
    Mail {
        #[command(subcommand)]
        command: MailCommand,
        #[command(flatten)]
        db: DbArgs,
    },
    /// The operator console's people: add one (printing its set-up link), list, reset, disable.
    Operators {
        #[command(subcommand)]
        command: OperatorsCommand,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Print the OpenAPI document.
    Openapi,
}

#[derive(Subcommand)]
enum ScreeningCommand {
    /// Screens ADDRESS on a chain with the configured providers and rules, and prints the verdict.
    Check {
        address: String,
        #[arg(long)]
        chain: String,
    },
    /// Replaces the OFAC list in the database (every ebb process uses it from the next screening on):
    /// one address per line, `#` comments. The shipped list is of 2024-09-27.
    Load {
        #[arg(long)]
        file: PathBuf,
        /// The list's date, YYYY-MM-DD.
        #[arg(long)]
        date: String,
        /// Replace a list of a later date too.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum ApprovalsCommand {
    /// Refunds under an approval policy, newest first.
    List {
        /// Pending (waiting), Approved or Rejected; default: all.
        #[arg(long, value_parser = parse_approval_status)]
        status: Option<ebb_core::approval::ApprovalStatus>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// One refund's approval: its policy, the approvals so far, the decision.
    Show { refund_id: String },
}

#[derive(Subcommand)]
enum OrdersCommand {
    /// Print the private key of an order's receiving address, to move what was paid to it. Keep it
    /// secret: it spends whatever the address holds.
    DepositKey { order_id: String },
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// Register an endpoint (it receives the events raised from now on).
    Add {
        #[arg(long)]
        url: String,
        /// Comma-separated event types (default: all).
        #[arg(long)]
        events: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
        /// Also sign deliveries the Standard Webhooks way; prints the secret once.
        #[arg(long)]
        standard_webhooks: bool,
    },
    List,
    /// The events of an endpoint, newest first.
    Events {
        endpoint_id: String,
        /// Success, Retrying or Failed.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Delete the logged attempts (request and response) of finished events older than N days; the
    /// events and whether they were delivered stay.
    Prune {
        #[arg(long)]
        older_than_days: u32,
    },
    /// Send an event again now, or with --failed every failed event of the endpoint (a replay).
    Retry {
        endpoint_id: String,
        event_id: Option<String>,
        #[arg(long)]
        failed: bool,
        /// With --failed: only events raised at or after this time (ms since the epoch).
        #[arg(long)]
        since_ms: Option<i64>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Dev { listen, data_dir, database_url } => run_dev(listen, &data_dir, database_url).await,
        Command::Serve { config } => {
            let settings = FileConfig::load(config.as_deref())?.settings()?;
            let app = Application::build(settings).await?;
            tracing::info!(address = %app.local_addr(), backend = app.store().backend().name(), "ebb serving");
            app.run_until(crate::app::shutdown_signal()).await
        }
        Command::Migrate { db } => {
            let store = open_store(&db).await?;
            store.migrate().await?;
            println!("migrations applied ({})", store.backend().name());
            Ok(())
        }
        Command::Keys { command, db } => keys(command, &db).await,
        Command::Approvals { command, db } => approvals(command, &db).await,
        Command::Screening { command, db } => screening(command, &db).await,
        Command::Webhooks { command, db } => webhooks(command, &db).await,
        Command::Mail { command, db } => mail(command, &db).await,
        Command::Operators { command, db } => operators_command(command, &db).await,
        Command::Orders { command: OrdersCommand::DepositKey { order_id }, db } => deposit_key(&order_id, &db).await,
        Command::Openapi => {
            use std::io::Write;
            // `ebb openapi | head` closes the pipe early: that ends the command, it is no error.
            let mut out = std::io::stdout().lock();
            match writeln!(out, "{}", ebb_api::openapi::document_json()) {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => other.context("writing the OpenAPI document")?,
            }
            Ok(())
        }
    }
}

async fn run_dev(listen: SocketAddr, data_dir: &Path, database_url: Option<String>) -> anyhow::Result<()> {
    let server_key = dev::server_key(data_dir)?;
    let settings = Settings {
        listen,
        database_url: database_url.unwrap_or_else(|| Store::sqlite_url_for_dir(data_dir)),
        server_key: server_key.clone(),
        sandbox: true,
        max_connections: 8,
        registry: FileConfig::load(None)?.registry()?,
        chains: Vec::new(),
        workers: Default::default(),
        // A newcomer's first endpoint is on localhost: the SSRF guard is for production.
        webhooks: WebhookSettings { allow_private_addresses: true, ..Default::default() },
        links: FileConfig::load(None)?.link_settings()?,
        approval_policies: Vec::new(),
        // The sandbox's EVM chains isolate held funds at a quarantine address of their own.
        screening: ebb_app::screening::ScreeningSettings {
            quarantine: FileConfig::load(None)?
                .registry()?
                .iter()
                .filter(|t| t.family == ebb_core::ChainFamily::Evm)
                .map(|t| (t.chain_id.clone(), dev::SANDBOX_QUARANTINE.to_owned()))
                .collect(),
            ..Default::default()
        },
        prices: dev::offline_prices(&FileConfig::load(None)?.registry()?),
        // Customer e-mail only when EBB_MAIL_SMTP_URL and EBB_MAIL_FROM name an SMTP server.
        mail: FileConfig::load(None)?.mail_settings()?,
        console: ebb_app::operators::ConsoleSettings {
            dev_notice: true,
            ..FileConfig::load(None)?.console_settings()?
        },
    };
    let mail_on = settings.mail.is_some();
    let app = Application::build(settings).await?;
    let base_url = format!("http://{}/v2", app.local_addr());
    let info = dev::ensure_demo(app.store(), data_dir, &server_key, &base_url).await?;
    if mail_on {
        ebb_app::mails::set_customer_mail(app.store(), &info.merchant_id, Some("en")).await?;
    }
    println!("ebb dev is running (SQLite and the sandbox in {})", data_dir.display());
    println!();
    println!("  base_url           {}", info.base_url);
    println!("  api_key            {}", info.api_key);
    println!("  api_secret         {}", info.api_secret);
    println!("  server_public_key  {}", info.server_public_key);
    println!("  merchant_id        {}", info.merchant_id);
    println!();
    println!("  kyt_api_base_url       {}", info.kyt_api_base_url);
    println!("  kyt_api_client_id      {}", info.kyt_api_client_id);
    println!("  kyt_api_client_secret  {}", info.kyt_api_client_secret);
    println!();
    println!("  coingate_base_url      {}", info.coingate_base_url);
    println!("  coingate_api_token     {}", info.coingate_api_token);
    println!();
    println!("  console_url            {}", info.console_url);
    println!("  console_email          {}", info.console_email);
    println!("  console_password       {}   (no second factor: ebb dev only)", info.console_password);
    if mail_on {
        println!("  customer e-mail        on for the demo merchant (English), through EBB_MAIL_SMTP_URL");
    }
    println!();
    println!(
        "The same is in {}. Try: python3 scripts/tour.py {}",
        dev::dev_json_path(data_dir).display(),
        data_dir.display()
    );
    println!(
        "Webhooks: python3 scripts/webhook_receiver.py --data-dir {0}, then \
         ebb webhooks add --url http://127.0.0.1:9000/hook --data-dir {0} (docs/WEBHOOKS.md)",
        data_dir.display()
    );
    println!(
        "No approval policy holds refunds; add one with POST /v2/payments/approval_policies and approve with \
         an approver's key (ebb keys add --role approver; docs/RISK.md)."
    );
    println!("Ctrl-C stops.");
    dev::spawn_demo_link(app.engine().clone(), app.link_pages(), info.merchant_id.clone());
    app.run_until(crate::app::shutdown_signal()).await
}

/// Finds the database of a management command.
async fn open_store(db: &DbArgs) -> anyhow::Result<Store> {
    let url = if let Some(url) = &db.database_url {
        url.clone()
    } else if let Some(cfg) = &db.config {
        FileConfig::load(Some(cfg))?.database_url.context("the config file names no database_url")?
    } else {
        let dir = db.data_dir.clone().unwrap_or_else(|| PathBuf::from(".ebb"));
        if !dir.exists() {
            bail!("no database: give --config, --database-url (or EBB_DATABASE_URL), or --data-dir of an `ebb dev` data directory");
        }
        Store::sqlite_url_for_dir(&dir)
    };
    let store = Store::connect(&url, 2).await.with_context(|| format!("connecting to {}", crate::app::redact(&url)))?;
    store.migrate().await?;
    Ok(store)
}

async fn webhooks(command: WebhooksCommand, db: &DbArgs) -> anyhow::Result<()> {
    use ebb_app::webhooks::{self, check_events, check_url};
    use ebb_store::page::PageRequest;
    let store = open_store(db).await?;
    let operator = ebb_app::Actor::psp("cli");
    match command {
        WebhooksCommand::Add { url, events, description, standard_webhooks } => {
            let events: Vec<String> = match events {
                Some(list) => list.split(',').map(|e| e.trim().to_owned()).filter(|e| !e.is_empty()).collect(),
                None => ebb_store::events::EVENT_TYPES.iter().map(|(t, _)| (*t).to_owned()).collect(),
            };
            let new = ebb_store::webhooks::NewEndpoint {
                url: check_url(&url)?,
                description,
                subscribed_events: check_events(&events)?,
                signing_secret: standard_webhooks.then(ebb_core::signing::new_standard_secret),
            };
            let e = webhooks::create_endpoint(&store, &operator, new).await?;
            println!("added {}  {}  {}", e.endpoint_id, e.url, e.subscribed_events.join(","));
            if let Some(secret) = e.signing_secret {
                println!("standard webhooks secret (shown once): {secret}");
            }
        }
        WebhooksCommand::List => {
            let page = store.list_endpoints(None, None, true, &PageRequest { limit: 50, ..Default::default() }).await?;
            for e in page.items {
                let events = match e.format.is_callback() {
                    true => format!("callbacks ({})", e.format.as_str()),
                    false => e.subscribed_events.join(","),
                };
                println!(
                    "{}  {}  {}  {}{}",
                    e.endpoint_id,
                    e.status,
                    e.url,
                    events,
                    e.disabled_reason.map(|r| format!("  ({r})")).unwrap_or_default()
                );
            }
        }
        WebhooksCommand::Events { endpoint_id, status, limit } => {
            let filter = ebb_store::webhooks::DeliveryFilter { status, event_type: None };
            let page =
                store.list_deliveries(&endpoint_id, &filter, &PageRequest { limit, ..Default::default() }).await?;
            for d in page.items {
                println!(
                    "{}  {}  {}  attempts {}  seq {}",
                    d.event_id, d.event_type, d.status, d.attempts, d.event_seq
                );
            }
        }
        WebhooksCommand::Prune { older_than_days } => {
            let before = ebb_store::now_ms() - i64::from(older_than_days) * 24 * 3600 * 1000;
            let n = webhooks::prune_attempts(&store, &operator, before).await?;
            println!("deleted {n} logged attempts");
        }
        WebhooksCommand::Retry { endpoint_id, event_id, failed, since_ms } => match (event_id, failed) {
            (Some(event_id), false) => {
                let retried = webhooks::retry_delivery(&store, &operator, &endpoint_id, &event_id).await?;
                println!("{}", if retried { "queued" } else { "an attempt is in flight already" });
            }
            (None, true) => {
                let n = webhooks::retry_failed_deliveries(&store, &operator, &endpoint_id, since_ms).await?;
                println!("queued {n} failed events again");
            }
            _ => bail!("give an EVENT_ID or --failed"),
        },
    }
    Ok(())
}

/// The server key of a management command: from the config, the environment, or the `ebb dev` layout.
fn server_key(db: &DbArgs) -> anyhow::Result<ed25519_dalek::SigningKey> {
    if let Some(cfg) = &db.config {
        FileConfig::load(Some(cfg))?.server_key()
    } else if std::env::var("EBB_SERVER_KEY").is_ok() || std::env::var("EBB_SERVER_KEY_FILE").is_ok() {
        FileConfig::load(None)?.server_key()
    } else {
        let dir = db.data_dir.clone().unwrap_or_else(|| PathBuf::from(".ebb"));
        crate::config::read_key_file(&dev::server_key_path(&dir))
    }
}

async fn deposit_key(order_id: &str, db: &DbArgs) -> anyhow::Result<()> {
    let store = open_store(db).await?;
    let order = store.order(order_id).await?.with_context(|| format!("no order {order_id}"))?;
    let registry = match &db.config {
        Some(cfg) => FileConfig::load(Some(cfg))?.registry()?,
        None => FileConfig::load(None)?.registry()?,
    };
    let token = registry.get(&order.token_id).with_context(|| format!("token {} is not configured", order.token_id))?;
    let seed = crate::app::deposit_seed(&server_key(db)?);
    let key = ebb_core::address::derive_deposit_key(&seed, order_id);
    let address = ebb_core::address::address_of_key(token.family, &key);
    if !address.as_str().eq_ignore_ascii_case(&order.receive_address) {
        bail!(
            "order {order_id}'s address {} was not derived from this server key (a different key, or an order \
             created before receiving addresses had keys)",
            order.receive_address
        );
    }
    println!("order        {order_id}");
    println!("address      {}", order.receive_address);
    println!("private key  0x{}", hex::encode(key));
    Ok(())
}

async fn screening(command: ScreeningCommand, db: &DbArgs) -> anyhow::Result<()> {
    let store = open_store(db).await?;
    match command {
        ScreeningCommand::Load { file, date, force } => {
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            let addresses = ebb_app::screening::parse_list(&text);
            let source = format!("OFAC SDN list ({})", file.display());
            let meta =
                ebb_app::screening::load_list(&store, ebb_app::screening::OFAC_LIST, &date, &source, addresses, force)
                    .await?;
            println!("loaded {} addresses of the OFAC list of {}", meta.entries, meta.dated);
        }
        ScreeningCommand::Check { address, chain } => {
            let cfg = FileConfig::load(db.config.as_deref())?;
            let registry = cfg.registry()?;
            let family = registry
                .iter()
                .find(|t| t.chain_id == chain)
                .map(|t| t.family)
                .with_context(|| format!("no token of chain {chain} is configured"))?;
            let address = ebb_core::Address::parse(family, &address).with_context(|| format!("{address:?}"))?;
            ebb_app::screening::ensure_shipped_ofac(&store).await?;
            let denylist = cfg.link_settings()?.denylist;
            let screener = cfg.screening.resolve()?.screener(&store, denylist)?;
            let s = screener.screen(&chain, address.as_str()).await;
            println!("{}  on {chain}: {} risk, verdict {}", s.address, s.level.as_str(), s.verdict.as_str());
            for f in &s.findings {
                println!(
                    "  {}: {}{}{}",
                    f.provider,
                    f.level.as_str(),
                    if f.categories.is_empty() { String::new() } else { format!(" ({})", f.categories.join(", ")) },
                    f.reference.as_deref().map(|r| format!(", {r}")).unwrap_or_default()
                );
            }
            for (p, why) in &s.unavailable {
                println!("  {p}: could not answer ({why})");
            }
        }
    }
    Ok(())
}

async fn approvals(command: ApprovalsCommand, db: &DbArgs) -> anyhow::Result<()> {
    let store = open_store(db).await?;
    let registry = match &db.config {
        Some(cfg) => FileConfig::load(Some(cfg))?.registry()?,
        None => FileConfig::load(None)?.registry()?,
    };
    let amount = |r: &ebb_store::refunds::RefundRow| match registry.get(&r.token_id) {
        Some(t) => r.amount.to_decimal_string(t.decimals),
        None => format!("{} base units", r.amount),
    };
    match command {
        ApprovalsCommand::List { status, limit } => {
            let filter = ebb_store::refunds::RefundFilter {
                under_approval: true,
                approval_status: status,
                statuses: match status {
                    Some(ebb_core::approval::ApprovalStatus::Pending) => vec![ebb_core::RefundStatus::Pending],
                    _ => Vec::new(),
                },
                ..Default::default()
            };
            let limit = limit.clamp(1, ebb_store::page::MAX_LIMIT);
            let page =
                store.list_refunds(&filter, &ebb_store::page::PageRequest { limit, ..Default::default() }).await?;
            for r in page.items {
                let Some(a) = &r.approval else { continue };
                println!(
                    "{}  {}  {} {}  {}  {}/{} approvals  policy {}  refund {}",
                    r.refund_id,
                    r.merchant_id.as_deref().unwrap_or("PSP"),
                    amount(&r),
                    r.token_id,
                    a.status,
                    a.approvals.len(),
                    a.required,
                    a.policy_id,
                    r.status,
                );
            }
        }
        ApprovalsCommand::Show { refund_id } => {
            let r = store.refund(&refund_id, None).await?.with_context(|| format!("no refund {refund_id}"))?;
            println!("refund     {}  {} {}  to {}  {}", r.refund_id, amount(&r), r.token_id, r.to_address, r.status);
            println!("initiator  {}", r.initiator);
            let Some(a) = r.approval else {
                println!("approval   none (no approval policy applied)");
                return Ok(());
            };
            println!(
                "approval   {}  policy {}  {} of {} approvals",
                a.status,
                a.policy_id,
                a.approvals.len(),
                a.required
            );
            for v in &a.approvals {
                println!(
                    "  approved by {} at {}{}",
                    v.approver,
                    v.at,
                    v.comment.as_deref().map(|c| format!(": {c}")).unwrap_or_default()
                );
            }
            if let Some(v) = &a.rejection {
                println!("  rejected by {} at {}: {}", v.approver, v.at, v.comment.as_deref().unwrap_or(""));
            }
        }
    }
    Ok(())
}

fn parse_approval_status(s: &str) -> Result<ebb_core::approval::ApprovalStatus, String> {
    ebb_core::approval::ApprovalStatus::parse(s)
        .ok_or_else(|| format!("--status must be Pending, Approved or Rejected, not {s:?}"))
}
