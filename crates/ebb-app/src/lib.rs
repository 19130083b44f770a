//! ebb's use cases: one function per thing ebb does (create a refund, set its address, cancel it,
//! make a refund link, open and submit it, create an order, pay one on the sandbox, ...). Each is one
//! database transaction and the only way that thing happens: the Cobo routes, the refund pages,
//! `ebb dev`, the CLI and the workers all call these, so a new surface is a dialect (parse its wire
//! format into domain values, call a use case, render the answer) and never a copy of the rules.
//!
//! What a use case takes is already typed (a [`ebb_core::Token`], an [`ebb_core::Amount`], an
//! [`ebb_core::Address`]); parsing the wire format, and naming the wire fields in errors, is the
//! surface's job. The rules that need no database are pure functions in `ebb-core`; the SQL is in
//! `ebb-store`.
//!
//! The use cases of the API, the pages and `ebb dev` take the [`Engine`]; those that need only the
//! database (management commands that run without the chains, and the workers, which hold the store)
//! take the [`Store`]. The workers' use cases return the store's errors, from which a worker tells a
//! database to retry from a refusal.

pub mod actor;
pub mod approvals;
pub mod coingate;
pub mod deliveries;
pub mod destinations;
pub mod dispositions;
mod error;
pub mod keys;
pub mod kyt;
pub mod links;
pub mod mails;
pub mod merchants;
pub mod operators;
pub mod orders;
pub mod payins;
pub mod payouts;
pub mod prices;
pub mod reconcile;
pub mod refunds;
pub mod sandbox;
pub mod screening;
pub mod secrets;
pub mod webhooks;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ebb_chain::sandbox::SandboxChain;
use ebb_core::TokenRegistry;
use ebb_store::Store;

pub use actor::Actor;
pub use destinations::RefusedDestinations;
pub use error::{AppError, AppResult};

/// Everything the use cases need, built once at start-up and shared (cheap to clone).
#[derive(Clone)]
pub struct Engine {
    store: Store,
    registry: Arc<TokenRegistry>,
    destinations: Arc<RefusedDestinations>,
    /// Seed of the per-order receiving addresses.
    deposit_seed: Arc<[u8; 32]>,
    /// The chains running on the sandbox, by chain id (empty without the sandbox).
    sandboxes: Arc<HashMap<String, Arc<SandboxChain>>>,
    /// How long a refund link stays valid.
    link_ttl: Duration,
    /// Screens refund destinations.
    screener: Arc<screening::Screener>,
    /// Exchange rates for fiat-priced orders and refunds.
    prices: Arc<prices::Prices>,
    /// A mail worker sends customer e-mail (`[mail]` is configured).
    customer_mail: bool,
}

impl Engine {
    pub fn new(
        store: Store,
        registry: Arc<TokenRegistry>,
        destinations: RefusedDestinations,
        deposit_seed: [u8; 32],
        link_ttl: Duration,
    ) -> Self {
        Engine {
            store,
            registry,
            destinations: Arc::new(destinations),
            deposit_seed: Arc::new(deposit_seed),
            sandboxes: Arc::default(),
            link_ttl,
            screener: Arc::new(screening::Screener::none()),
            prices: Arc::new(prices::Prices::none()),
            customer_mail: false,
        }
    }

    /// Customer e-mail is sent (a mail worker runs): merchants that opted in get their customers mailed.
    pub fn with_customer_mail(mut self, on: bool) -> Self {
        self.customer_mail = on;
        self
    }

    /// The language a merchant's customers are e-mailed in, if ebb sends mail and the merchant opted in.
    pub async fn customer_mail_of(&self, merchant_id: &str) -> AppResult<Option<String>> {
        if !self.customer_mail {
            return Ok(None);
        }
        Ok(self.store.customer_mail(merchant_id).await?)
    }

    /// Screens refund destinations with these providers and rules.
    pub fn with_screener(mut self, screener: screening::Screener) -> Self {
        self.screener = Arc::new(screener);
        self
    }

    /// Converts between tokens and currencies with these rate sources.
    pub fn with_prices(mut self, prices: prices::Prices) -> Self {
        self.prices = Arc::new(prices);
        self
    }

    /// The address held funds of `chain_id` are isolated to (`[screening] quarantine`), if configured.
    pub fn quarantine(&self, chain_id: &str) -> Option<&str> {
        self.screener.quarantine(chain_id)
    }

    pub fn prices(&self) -> &prices::Prices {
        &self.prices
    }

    /// Lets [`sandbox::pay_order`] pay orders on these sandbox chains.
    pub fn with_sandboxes(mut self, sandboxes: HashMap<String, Arc<SandboxChain>>) -> Self {
        self.sandboxes = Arc::new(sandboxes);
        self
    }

    /// The store, for reads (every write goes through a use case).
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn registry(&self) -> &Arc<TokenRegistry> {
        &self.registry
    }

    pub fn deposit_seed(&self) -> [u8; 32] {
        *self.deposit_seed
    }

    pub fn link_ttl(&self) -> Duration {
        self.link_ttl
    }
}
