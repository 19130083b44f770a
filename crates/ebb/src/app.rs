//! Building and running the server: bind (port 0 works, the real port is recorded), serve, shut down
//! gracefully.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use ebb_api::metrics::Metrics;
use ebb_api::{AppState, Shared};
use ebb_app::{Engine, RefusedDestinations};
use ebb_chain::evm::EvmChain;
use ebb_chain::sandbox::SandboxChain;
use ebb_chain::Chain;
use ebb_core::{ChainFamily, TokenRegistry};
use ebb_store::replay::ReplayGuard;
use ebb_store::Store;
use ebb_worker::mail::{Composed, MailSettings, MailWorker};
use ebb_worker::{PayinWatcher, PayoutExecutor, WebhookDispatcher, WebhookSettings};
use ed25519_dalek::{Signer, SigningKey};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{ChainSetting, Settings, WorkerSettings};

pub struct Application {
    listener: TcpListener,
    state: AppState,
    /// Every chain ebb pays out on, configured or sandbox.
    chains: Vec<Arc<dyn Chain>>,
    /// The sandbox chains among them, by chain id (tests and the sandbox endpoints reach into these).
    sandboxes: HashMap<String, Arc<SandboxChain>>,
    workers: WorkerSettings,
    webhooks: WebhookSettings,
    /// The customer e-mail worker, when `[mail]` is configured.
    mail: Option<MailWorker>,
    /// Held while serving a SQLite database: see [`lock_sqlite`].
    _sqlite_lock: Option<std::fs::File>,
}

impl Application {
    /// Connects to the database, applies migrations and binds the listener.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let sqlite_lock = lock_sqlite(&settings.database_url)?;
        let store = Store::connect(&settings.database_url, settings.max_connections)
            .await
            .with_context(|| format!("connecting to the database ({})", redact(&settings.database_url)))?;
        store.migrate().await.context("applying database migrations")?;
        let mut app = Self::with_store(settings, store).await?;
        app._sqlite_lock = sqlite_lock;
        Ok(app)
    }

    pub async fn with_store(settings: Settings, store: Store) -> anyhow::Result<Self> {
        let listener =
            TcpListener::bind(settings.listen).await.with_context(|| format!("binding {}", settings.listen))?;
        ebb_app::approvals::load_config_policies(&store, settings.approval_policies.clone())
            .await
            .context("loading the configuration file's approval policies")?;
        let replay = ReplayGuard::new(store.clone(), ebb_api::now_ms()).await?;
        let mut links = settings.links.clone();
        if links.public_url.is_empty() {
            links.public_url = format!("http://{}", listener.local_addr().context("the bound address")?);
        }
        // The sandbox has no block explorer.
        if settings.sandbox {
            let configured: Vec<&str> = settings.chains.iter().map(|c| c.chain_id()).collect();
            links.explorers.retain(|chain, _| configured.contains(&chain.as_str()));
        }
        let registry = Arc::new(settings.registry);
        let (chains, sandboxes) = build_chains(&settings.chains, settings.sandbox, &registry, settings.workers).await?;
        let destinations = RefusedDestinations::new(&registry, chains.iter().map(|c| c.hot_wallet()));
        ebb_app::screening::ensure_shipped_ofac(&store).await.context("loading the shipped OFAC list")?;
        let screener =
            settings.screening.screener(&store, links.denylist.clone()).context("the [screening] settings")?;
        let engine =
            Engine::new(store.clone(), registry.clone(), destinations, deposit_seed(&settings.server_key), links.ttl)
                .with_sandboxes(sandboxes.clone())
                .with_screener(screener)
                .with_prices(settings.prices.prices().context("the [prices] settings")?)
                .with_customer_mail(settings.mail.is_some());
        let console = ebb_api::console::Console::new(
            settings.console.clone(),
            &links.public_url,
            links.client_ip_header.clone(),
            &settings.server_key.to_bytes(),
        );
        let shared = Shared {
            console: Arc::new(console),
            chains: chains.clone(),
            links: Arc::new(ebb_api::pages::LinkPages::new(links, &settings.server_key.to_bytes())),
            engine,
            store,
            registry,
            server_key: Arc::new(settings.server_key),
            replay,
            keys: Arc::new(ebb_api::auth::KeyCache::default()),
            metrics: Arc::new(Metrics::default()),
            sandbox: settings.sandbox,
            webhook_retries: settings.webhooks.retry_schedule.len() as i64,
        };
        let state = AppState::new(shared);
        let mail = match settings.mail {
            Some(mail) => Some(mail_worker(&state, mail).context("the [mail] settings")?),
            None => None,
        };
        Ok(Application {
            listener,
            state,
            chains,
            sandboxes,
            workers: settings.workers,
            webhooks: settings.webhooks,
            mail,
            _sqlite_lock: None,
        })
    }

    /// The HTTP routes over this application's state, without its workers or listener (the `api_body`
    /// fuzz target calls them in process).
    pub fn router(&self) -> axum::Router {
        ebb_api::router(self.state.clone())
    }

    /// The chains running on the sandbox, by chain id.
    pub fn sandbox_chains(&self) -> HashMap<String, Arc<SandboxChain>> {
        self.sandboxes.clone()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// The refund-link pages' settings (their public URL, TTL...).
    pub fn link_pages(&self) -> Arc<ebb_api::pages::LinkPages> {
        self.state.links.clone()
    }

    pub fn registry(&self) -> Arc<TokenRegistry> {
        self.state.registry.clone()
    }

    /// The use cases, as the server runs them.
    pub fn engine(&self) -> &Engine {
        &self.state.engine
    }

    /// Serves until `shutdown` completes, then finishes the requests in flight and flushes the store.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let store = self.state.store.clone();
        let (stop_workers, workers_stop) = watch::channel(false);
        let mut workers = Vec::new();
        for chain in &self.chains {
            if self.workers.run_payouts {
                let executor = PayoutExecutor::new(
                    store.clone(),
                    chain.clone(),
                    self.state.registry.clone(),
                    self.workers.payout_interval,
                )
                .bump_after(self.workers.bump_after);
                workers.push(executor.spawn(workers_stop.clone()));
            }
            if self.workers.run_watcher {
                let watcher =
                    PayinWatcher::new(store.clone(), chain.clone(), &self.state.registry, self.workers.payout_interval)
                        .count_held_in(self.state.metrics.payins_held.clone())
                        .screen_senders(self.state.engine.screener().clone());
                workers.push(watcher.spawn(workers_stop.clone()));
            }
        }
        if self.workers.run_webhooks {
            let state = self.state.clone();
            let render: ebb_worker::webhook::Renderer = Arc::new(move |d| {
                let state = state.clone();
                Box::pin(async move {
                    let (content_type, body) = ebb_api::render_delivery(&state, &d).await?;
                    Ok(ebb_worker::webhook::Rendered { content_type, body })
                })
            });
            let dispatcher =
                WebhookDispatcher::new(store.clone(), render, (*self.state.server_key).clone(), self.webhooks.clone())
                    .map_err(anyhow::Error::msg)?;
            workers.push(dispatcher.spawn(workers_stop.clone()));
        }
        if let Some(worker) = self.mail {
            workers.push(worker.spawn(workers_stop.clone()));
        }
        let app = ebb_api::router(self.state);
        // Connection info gives the refund pages the client's address for their rate limits.
        let served = axum::serve(self.listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving HTTP");
        // Workers finish the step they are in (each is one database transaction or one RPC call).
        let _ = stop_workers.send(true);
        for w in workers {
            let _ = w.await;
        }
        store.close().await;
        served
    }
}

/// The mail worker, composing with the API crate's templates.
fn mail_worker(state: &AppState, settings: MailSettings) -> anyhow::Result<MailWorker> {
    let for_mail = state.clone();
    let compose: ebb_worker::mail::Composer = Arc::new(move |m| {
        let state = for_mail.clone();
        Box::pin(async move {
            let composed = ebb_api::mail::compose(&state, &m).await?;
            Ok(composed.map(|c| Composed { subject: c.subject, text: c.text, loggable: c.loggable }))
        })
    });
    MailWorker::new(state.store.clone(), compose, settings).map_err(anyhow::Error::msg)
}

/// Connects the configured chains; with the sandbox on, every other chain of the registry gets a
/// sandbox chain.
async fn build_chains(
    configured: &[ChainSetting],
    sandbox: bool,
    registry: &TokenRegistry,
    workers: WorkerSettings,
) -> anyhow::Result<(Vec<Arc<dyn Chain>>, HashMap<String, Arc<SandboxChain>>)> {
    let mut chains: Vec<Arc<dyn Chain>> = Vec::new();
    let mut sandboxes = HashMap::new();
    let family_of = |chain_id: &str| registry.iter().find(|t| t.chain_id == chain_id).map(|t| t.family);
    for c in configured {
        match c {
            ChainSetting::Evm(cfg) => {
                let chain = EvmChain::connect(cfg.clone())
                    .await
                    .with_context(|| format!("connecting chain {} at {}", cfg.chain_id, cfg.rpc_url))?;
                tracing::info!(chain = %cfg.chain_id, hot_wallet = %chain.hot_wallet(), "EVM chain connected");
                chains.push(Arc::new(chain));
            }
            ChainSetting::Sandbox { chain_id, confirmations } => {
                let family = family_of(chain_id).unwrap_or(ChainFamily::Evm);
                let chain = SandboxChain::start(chain_id, family, workers.sandbox_block, *confirmations);
                sandboxes.insert(chain_id.clone(), chain.clone());
                chains.push(chain);
            }
        }
    }
    if sandbox {
        let mut ids: Vec<&str> = registry.iter().map(|t| t.chain_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        for id in ids {
            if configured.iter().any(|c| c.chain_id() == id) {
                continue;
            }
            let chain = SandboxChain::start(id, family_of(id).unwrap_or(ChainFamily::Evm), workers.sandbox_block, 2);
            sandboxes.insert(id.to_owned(), chain.clone());
            chains.push(chain);
        }
    }
    Ok((chains, sandboxes))
}

/// The per-order address seed: derived from the server key so `ebb dev` needs no second secret.
/// (Real chains derive receiving addresses from the hot wallet instead.)
pub(crate) fn deposit_seed(key: &SigningKey) -> [u8; 32] {
    // An Ed25519 signature is a keyed, deterministic function of the message; its S half is a fine
    // seed and reveals nothing of the key.
    let sig = key.sign(b"ebb deposit address seed v1").to_bytes();
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&sig[32..]);
    seed
}

/// One server per SQLite file: SQLite has a single writer, and the replay guard of a SQLite server lives
/// in its memory (docs/API.md), so a second server on the same file is refused at start. Management
/// commands (`ebb keys …`) do not take the lock. The lock is an OS file lock, released when the process
/// ends, however it ends.
fn lock_sqlite(database_url: &str) -> anyhow::Result<Option<std::fs::File>> {
    let Some(rest) = database_url.strip_prefix("sqlite:") else { return Ok(None) };
    let path = rest.trim_start_matches("//");
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path == ":memory:" {
        return Ok(None);
    }
    let lock_path = format!("{path}.serve-lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("opening {lock_path}"))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another ebb server is already serving {path} (lock {lock_path}); run one server per SQLite file, \
             or PostgreSQL to run several"
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("locking {lock_path}")),
    }
}

/// A database URL without its password, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}://{}:***@{}", &url[..s], &creds[..c], &url[at + 1..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords_only() {
        assert_eq!(super::redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(super::redact("sqlite:///tmp/x"), "sqlite:///tmp/x");
    }
}
