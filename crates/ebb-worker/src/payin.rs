//! The pay-in watcher: follows token transfers into order receiving addresses from a block cursor
//! kept in the database.
//!
//! Each tick scans the blocks from the cursor to the head (at most [`MAX_RANGE`] at a time), records
//! every transfer to a watched address on first sight (the order turns `Processing`), advances the
//! cursor, then confirms the pay-ins that are deep enough (balances credited; order `Completed` or
//! `Underpaid`). The cursor moves only after the transfers of the scanned range are stored, and a
//! transfer is unique on (chain, tx hash, log index): an RPC error or a crash at any point means a
//! rescan, never a missed or a double-counted transfer.
//!
//! Each tick also stores the expiry of the chain's orders whose time has run out (raising their
//! events). A pay-in that cannot be credited is held with its reason, logged once and counted
//! (`ebb_payins_held_total`); the tick goes on with the others. Only the database or the node being
//! unreachable fails a tick.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ebb_app::payins;
use ebb_app::screening::Screener;
use ebb_chain::{Chain, Inclusion, Outcome, TokenRef};
use ebb_core::TokenRegistry;
use ebb_store::payins::SeenPayin;
use ebb_store::{Store, StoreError};
use tokio::sync::watch;

use crate::payout::WorkerError;

/// The most blocks one `eth_getLogs` asks for (providers cap the range).
pub const MAX_RANGE: u64 = 1_000;

/// The most orders one tick expires (the rest wait for the next tick).
const EXPIRE_PER_TICK: i64 = 500;
/// How far back from the head the first scan on a chain starts: well beyond the blocks a chain makes
/// between ebb's start and its watcher's first look at the head (one tick), at the cost of one scan of
/// that many blocks, once.
const FIRST_SCAN_BLOCKS: u64 = 100;

/// Whether a store error says something about this pay-in (it cannot be recorded or credited) rather
/// than about the database being unreachable or refusing statements (worth a retry of the whole tick).
fn is_about_the_payin(e: &StoreError) -> bool {
    !matches!(
        e,
        StoreError::Database(_)
            | StoreError::SqliteRead(_)
            | StoreError::Closed
            | StoreError::Unavailable(_)
            | StoreError::Migrate(_)
    )
}

pub struct PayinWatcher {
    store: Store,
    chain: Arc<dyn Chain>,
    tokens: Vec<TokenRef>,
    interval: Duration,
    held: Arc<AtomicU64>,
    /// Screens each pay-in's sender when it is first seen; `None`: senders are not screened.
    screener: Option<Arc<Screener>>,
}

impl PayinWatcher {
    pub fn new(store: Store, chain: Arc<dyn Chain>, registry: &TokenRegistry, interval: Duration) -> Self {
        let tokens = registry.iter().filter(|t| t.chain_id == chain.chain_id()).map(TokenRef::from).collect();
        Self { store, chain, tokens, interval, held: Arc::default(), screener: None }
    }

    /// Screens every pay-in's sender with `screener`: one it holds or refuses is held when it confirms.
    pub fn screen_senders(mut self, screener: Arc<Screener>) -> Self {
        self.screener = Some(screener);
        self
    }

    /// Counts the pay-ins this watcher holds in `counter` (the metrics' `ebb_payins_held_total`).
    pub fn count_held_in(mut self, counter: Arc<AtomicU64>) -> Self {
        self.held = counter;
        self
    }

    async fn hold(&self, tx_id: &str, tx_hash: &str, reason: &StoreError) -> Result<(), WorkerError> {
        let reason = reason.to_string();
        if payins::hold(&self.store, tx_id, &reason).await? {
            self.held.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(chain = %self.chain.chain_id(), tx = %tx_hash, tx_id = %tx_id, %reason,
                "a pay-in cannot be credited: held for the operator");
        }
        Ok(())
    }

    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let watcher = std::sync::Arc::new(self);
        let (chain_id, interval) = (watcher.chain.chain_id().to_owned(), watcher.interval);
        crate::run_every("pay-in watcher", chain_id, interval, shutdown, move || {
            let watcher = watcher.clone();
            async move { watcher.tick().await }
        })
    }

    /// One scan and confirmation pass; returns how many pay-ins were seen and confirmed.
    pub async fn tick(&self) -> Result<(usize, usize), WorkerError> {
        let chain_id = self.chain.chain_id();
        payins::expire_due_orders(&self.store, chain_id, EXPIRE_PER_TICK).await?;
        let head = self.chain.head().await?;
        // A fresh deployment has no orders in older blocks, but an order can be created and paid
        // before the first tick reads the head: the first scan reaches back FIRST_SCAN_BLOCKS.
        let from = match payins::cursor(&self.store, chain_id).await? {
            Some(next) => next,
            None => head.saturating_sub(FIRST_SCAN_BLOCKS),
        };
        let mut seen = 0;
        if from <= head && !self.tokens.is_empty() {
            let to = head.min(from + MAX_RANGE - 1);
            let watched = payins::watched_addresses(&self.store, chain_id).await?;
            if !watched.is_empty() {
                let transfers = self
                    .chain
                    .scan(&self.tokens, from, to, &|a: &str| watched.contains_key(&a.to_ascii_lowercase()))
                    .await?;
                for t in transfers {
                    let Some(order_id) = watched.get(&t.to.to_ascii_lowercase()) else { continue };
                    let payin = SeenPayin {
                        chain_id: chain_id.to_owned(),
                        token_id: t.token_id,
                        tx_hash: t.tx_hash.clone(),
                        log_index: t.log_index,
                        block: t.block,
                        from: t.from,
                        to: t.to,
                        amount: t.amount,
                    };
                    // The sender is screened before the write (a provider may be slow); a pay-in seen
                    // before (a rescan) is screened again and the answer dropped.
                    let screening = match &self.screener {
                        Some(s) => Some(s.screen(chain_id, &payin.from).await),
                        None => None,
                    };
                    if let Some(s) = screening.as_ref().filter(|s| s.verdict != ebb_core::screening::Verdict::Allow) {
                        tracing::warn!(chain = %chain_id, tx = %t.tx_hash, from = %payin.from, level = s.level.as_str(),
                            summary = %s.summary(), "a pay-in's sender is screened into hold: its funds will be held");
                    }
                    match payins::seen(&self.store, order_id, payin, screening).await {
                        Ok(true) => {
                            seen += 1;
                            if t.amount.is_none() {
                                self.held.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(chain = %chain_id, tx = %t.tx_hash,
                                    "a pay-in's amount is beyond the ledger's range: recorded as held for the operator");
                            }
                        }
                        Ok(false) => {}
                        Err(e) if is_about_the_payin(&e) => {
                            self.held.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(chain = %chain_id, tx = %t.tx_hash, error = %e,
                                "a pay-in could not be recorded; the scan goes on without it");
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            payins::set_cursor(&self.store, chain_id, to + 1).await?;
        } else if from > head + 1 {
            // The chain is shorter than where we were (a reorg deeper than the scan, or a reset dev chain).
            payins::set_cursor(&self.store, chain_id, head + 1).await?;
        }

        let mut confirmed = 0;
        for p in payins::unconfirmed(&self.store, chain_id).await? {
            if head + 1 < p.block + self.chain.confirmations() {
                continue;
            }
            match self.chain.inclusion(&p.tx_hash).await? {
                Inclusion::Included { confirmations, outcome: Outcome::Success, .. }
                    if confirmations >= self.chain.confirmations() =>
                {
                    match payins::confirm(&self.store, &p.tx_id).await {
                        Ok(Some(_)) => confirmed += 1,
                        Ok(None) => {}
                        Err(e) if is_about_the_payin(&e) => self.hold(&p.tx_id, &p.tx_hash, &e).await?,
                        Err(e) => return Err(e.into()),
                    }
                }
                Inclusion::Included { .. } | Inclusion::Pending => {}
                Inclusion::Unknown => {
                    tracing::warn!(chain = %chain_id, tx = %p.tx_hash, "a pay-in left the chain before its confirmations");
                    payins::fail(&self.store, &p.tx_id, "removed from the chain by a reorg before its confirmations")
                        .await?;
                }
            }
        }
        Ok((seen, confirmed))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use ebb_app::merchants::{self, NewMerchant};
    use ebb_app::orders::{self, OrderPrice, OrderRequest};
    use ebb_app::{Actor, Engine, RefusedDestinations};
    use ebb_chain::sandbox::SandboxChain;
    use ebb_core::{Amount, ChainFamily, TokenRegistry};
    use ebb_store::Store;

    use super::PayinWatcher;

    /// An order created and paid before the watcher's first look at the head (ebb just started, the
    /// watcher's first tick still waiting for the database) is seen by that first scan.
    #[tokio::test]
    async fn an_order_paid_before_the_first_scan_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&Store::sqlite_url_for_dir(dir.path()), 2).await.unwrap();
        store.migrate().await.unwrap();
        let registry = Arc::new(TokenRegistry::cobo_defaults());
        let engine = Engine::new(
            store.clone(),
            registry.clone(),
            RefusedDestinations::default(),
            [7; 32],
            Duration::from_secs(60),
        );
        let psp = Actor::psp("test");
        let new = NewMerchant {
            name: "shop".into(),
            wallet_id: String::new(),
            developer_fee_rate: "0".into(),
            wallet_setup: "Default".into(),
        };
        let merchant = merchants::create(&store, &psp, new).await.unwrap();
        let token = registry.get("ETH_USDT").unwrap().clone();
        let request = OrderRequest {
            merchant_id: merchant.merchant_id,
            merchant_order_code: None,
            psp_order_code: "early".into(),
            token,
            price: OrderPrice::Token { payable: Amount::from_base_units(10_000_000), fee: Amount::ZERO },
            amount_tolerance: Amount::ZERO,
            expires_in_s: 600,
        };
        let order = orders::create(&engine, &psp, request).await.unwrap();
        let chain = SandboxChain::start("ETH", ChainFamily::Evm, Duration::from_secs(3600), 1);
        chain.pay_from_outside(
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            &order.receive_address,
            "ETH_USDT",
            10_000_000,
        );
        for _ in 0..5 {
            chain.mine();
        }
        let watcher = PayinWatcher::new(store.clone(), chain, &registry, Duration::from_secs(1));
        let (seen, _) = watcher.tick().await.unwrap();
        assert_eq!(seen, 1, "the first scan missed a payment made before it");
        store.close().await;
    }
}
