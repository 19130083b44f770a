//! The pay-in watcher: follows token transfers into order receiving addresses from a block cursor
//! kept in the database.
//!
//! Each tick scans the blocks from the cursor to the head (at most [`MAX_RANGE`] at a time), records
//! every transfer to a watched address on first sight (the order turns `Processing`), advances the
//! cursor, then confirms the pay-ins that are deep enough (balances credited; order `Completed` or
//! `Underpaid`). The cursor moves only after the transfers of the scanned range are stored, and a
//! transfer is unique on (chain, tx hash, log index): an RPC error or a crash at any point means a
//! rescan, never a missed or a double-counted transfer.

use std::sync::Arc;
use std::time::Duration;

use ebb_chain::{Chain, Inclusion, Outcome, TokenRef};
use ebb_core::{Amount, TokenRegistry};
use ebb_store::payins::SeenPayin;
use ebb_store::Store;
use tokio::sync::watch;

use crate::payout::WorkerError;

/// The most blocks one `eth_getLogs` asks for (providers cap the range).
pub const MAX_RANGE: u64 = 1_000;

pub struct PayinWatcher {
    store: Store,
    chain: Arc<dyn Chain>,
    tokens: Vec<TokenRef>,
    interval: Duration,
}

impl PayinWatcher {
    pub fn new(store: Store, chain: Arc<dyn Chain>, registry: &TokenRegistry, interval: Duration) -> Self {
        let tokens = registry.iter().filter(|t| t.chain_id == chain.chain_id()).map(TokenRef::from).collect();
        Self { store, chain, tokens, interval }
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
        let head = self.chain.head().await?;
        // A fresh deployment starts at the head: there are no orders in older blocks.
        let from = match self.store.chain_cursor(chain_id).await? {
            Some(next) => next,
            None => head,
        };
        let mut seen = 0;
        if from <= head && !self.tokens.is_empty() {
            let to = head.min(from + MAX_RANGE - 1);
            let watched = self.store.watched_addresses(chain_id).await?;
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
                        tx_hash: t.tx_hash,
                        log_index: t.log_index,
                        block: t.block,
                        from: t.from,
                        to: t.to,
                        amount: Amount::from_base_units(t.amount),
                    };
                    if self.store.record_payin_seen(order_id, payin).await? {
                        seen += 1;
                    }
                }
            }
            self.store.set_chain_cursor(chain_id, to + 1).await?;
        } else if from > head + 1 {
            // The chain is shorter than where we were (a reorg deeper than the scan, or a reset dev chain).
            self.store.set_chain_cursor(chain_id, head + 1).await?;
        }

        let mut confirmed = 0;
        for p in self.store.unconfirmed_payins(chain_id).await? {
            if head + 1 < p.block + self.chain.confirmations() {
                continue;
            }
            match self.chain.inclusion(&p.tx_hash).await? {
                Inclusion::Included { confirmations, outcome: Outcome::Success, .. }
                    if confirmations >= self.chain.confirmations() =>
                {
                    if self.store.confirm_payin(&p.tx_id).await? {
                        confirmed += 1;
                    }
                }
                Inclusion::Included { .. } | Inclusion::Pending => {}
                Inclusion::Unknown => {
                    tracing::warn!(chain = %chain_id, tx = %p.tx_hash, "a pay-in left the chain before its confirmations");
                    self.store
                        .fail_payin(&p.tx_id, "removed from the chain by a reorg before its confirmations")
                        .await?;
                }
            }
        }
        Ok((seen, confirmed))
    }
}
