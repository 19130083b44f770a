//! The payout executor: pays `Pending` refunds from the hot wallet, one chain per executor.
//!
//! Each tick first tracks the payouts in flight, then starts new ones:
//! - **track**: asks the chain where each open transaction is. Mined and deep enough → the refund
//!   completes and the ledger settles (or, if it reverted, fails and the funds are released). Unknown to
//!   the node (never arrived, dropped from the mempool, or reorged out) → the stored signed bytes are
//!   broadcast again; if the wallet's nonce has moved past it without it, it can never be mined, and the
//!   refund fails with its funds released. Waiting unmined for longer than `bump_after` with fees below
//!   what the network now asks → replaced by the same transfer with the same nonce and higher fees
//!   (stored before it is broadcast); every version is tracked, since any of them may be mined.
//! - **start**: for each payable refund, checks the hot wallet holds the token and the gas (counting
//!   what is already in flight), dry-runs the transfer, then lets the store allocate a nonce, sign and
//!   store the bytes and move the refund to `Processing` in one transaction, and only then broadcasts.
//!
//! A crash at any point leaves either nothing (before the store's transaction commits: the refund is
//! still `Pending`, no nonce used) or stored bytes that the next tick re-broadcasts: a second transfer
//! for the same refund is never signed. Several processes may run executors for the same chain on one
//! PostgreSQL: every step is a compare-and-set on a locked row.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ebb_app::payouts;
use ebb_chain::{Chain, ChainError, Funds, Inclusion, Outcome, Prepared, TokenRef};
use ebb_core::{Amount, TokenRegistry};
use ebb_store::payouts::{OpenLeg, PayableRefund, PreparedTransfer, SignedBytes};
use ebb_store::{Store, StoreError};
use futures::stream::{self, StreamExt};
use tokio::sync::watch;

use crate::failpoint;

/// How many payable refunds one tick looks at.
const BATCH: i64 = 256;
/// How many RPC calls (and store writes) one executor has in flight at once.
const CONCURRENCY: usize = 16;
/// How many payouts one transaction stores at most: bounds how long the first of them waits for its
/// broadcast, and how long the wallet's nonce row stays locked.
const STORE_BATCH: usize = 32;

/// A payout stored (`Some`), not stored because the refund changed or another process took it
/// (`None`), or an error.
type Stored = Result<Option<OpenLeg>, WorkerError>;

pub struct PayoutExecutor {
    store: Store,
    chain: Arc<dyn Chain>,
    registry: Arc<TokenRegistry>,
    interval: Duration,
    bump_after: Duration,
}

/// How long a payout may wait unmined before its fees are checked against the network's (default).
pub const DEFAULT_BUMP_AFTER: Duration = Duration::from_secs(60);

/// What one tick did (tests and logs).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TickReport {
    pub started: usize,
    pub completed: usize,
    pub failed: usize,
    pub held: usize,
    pub rebroadcast: usize,
    /// Payouts replaced with higher fees.
    pub replaced: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Chain(#[from] ChainError),
}

impl TickReport {
    fn add(&mut self, other: &TickReport) {
        self.started += other.started;
        self.completed += other.completed;
        self.failed += other.failed;
        self.held += other.held;
        self.rebroadcast += other.rebroadcast;
        self.replaced += other.replaced;
    }
}

impl PayoutExecutor {
    pub fn new(store: Store, chain: Arc<dyn Chain>, registry: Arc<TokenRegistry>, interval: Duration) -> Self {
        Self { store, chain, registry, interval, bump_after: DEFAULT_BUMP_AFTER }
    }

    /// How long a payout waits unmined before the executor checks whether its fees still suffice.
    pub fn bump_after(mut self, d: Duration) -> Self {
        self.bump_after = d;
        self
    }

    /// Runs ticks until `shutdown` turns true (see [`crate::run_every`]).
    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let executor = Arc::new(self);
        let (chain_id, interval) = (executor.chain.chain_id().to_owned(), executor.interval);
        crate::run_every("payout executor", chain_id, interval, shutdown, move || {
            let executor = executor.clone();
            async move { executor.tick().await }
        })
    }

    pub async fn tick(&self) -> Result<TickReport, WorkerError> {
        let mut report = TickReport::default();
        let open = payouts::open_legs(&self.store, self.chain.chain_id()).await?;
        // Open payouts are independent: ask the node about several at once. Their outcomes are separate
        // store writes, which the SQLite writer commits together.
        let tracking: Vec<_> = open.iter().map(|leg| self.track_one(leg)).collect();
        let tracked: Vec<Result<(&OpenLeg, bool, TickReport), WorkerError>> =
            stream::iter(tracking).buffer_unordered(CONCURRENCY).collect().await;
        let mut in_flight: HashMap<String, Amount> = HashMap::new();
        for t in tracked {
            let (leg, still_open, r) = t?;
            report.add(&r);
            if still_open {
                let sum = in_flight.entry(leg.token_id.clone()).or_default();
                *sum = sum.checked_add(leg.amount).unwrap_or(Amount::from_base_units(u128::MAX));
            }
        }
        self.start_new(&in_flight, &mut report).await?;
        Ok(report)
    }

    async fn track_one<'a>(&self, leg: &'a OpenLeg) -> Result<(&'a OpenLeg, bool, TickReport), WorkerError> {
        let mut r = TickReport::default();
        let still_open = self.track(leg, &mut r).await?;
        Ok((leg, still_open, r))
    }

    async fn prepare_one(
        &self,
        r: PayableRefund,
        token: TokenRef,
        amount: Amount,
    ) -> (PayableRefund, Result<Prepared, ChainError>) {
        let p = self.chain.prepare(&token, &r.to_address, amount).await;
        (r, p)
    }

    /// Signs and stores the payouts of a batch in one transaction (see [`payouts::start`]); per refund,
    /// `None` if another process took it or it changed. If the batch's transaction fails, each refund
    /// is tried alone, so that one refund's error holds up only that refund.
    async fn store_batch(&self, batch: &[(PayableRefund, Prepared)], chain_nonce: u64) -> Vec<Stored> {
        for (r, _) in batch {
            failpoint::pause("payout.before_store", &r.refund_id).await;
        }
        let stored = match self.store_starts(batch, chain_nonce).await {
            Ok(legs) => legs.into_iter().map(Ok).collect(),
            Err(e) if batch.len() > 1 => {
                tracing::warn!(error = %e, n = batch.len(), "storing a batch of payouts failed; storing them one by one");
                let mut one_by_one = Vec::with_capacity(batch.len());
                for item in batch {
                    one_by_one.push(
                        self.store_starts(std::slice::from_ref(item), chain_nonce).await.map(|mut legs| legs.remove(0)),
                    );
                }
                one_by_one
            }
            Err(e) => vec![Err(e)],
        };
        for _ in stored.iter().flatten().flatten() {
            failpoint::hit("payout.after_store");
        }
        stored
    }

    async fn store_starts(
        &self,
        batch: &[(PayableRefund, Prepared)],
        chain_nonce: u64,
    ) -> Result<Vec<Option<OpenLeg>>, WorkerError> {
        let starts = batch
            .iter()
            .map(|(r, prepared)| {
                let (chain, prepared) = (self.chain.clone(), prepared.clone());
                payouts::Start {
                    refund_id: r.refund_id.clone(),
                    transfer: PreparedTransfer {
                        token_id: prepared.token.token_id.clone(),
                        to_address: prepared.to.clone(),
                        amount: prepared.amount,
                    },
                    sign: Box::new(move |n: u64| {
                        chain
                            .sign(&prepared, n)
                            .map(|s| SignedBytes { tx_hash: s.tx_hash, raw: s.raw })
                            .map_err(|e| e.to_string())
                    }),
                }
            })
            .collect();
        Ok(payouts::start(&self.store, self.chain.chain_id(), self.chain.hot_wallet(), chain_nonce, starts).await?)
    }

    /// Broadcasts stored payouts, several at once.
    async fn broadcast_all(&self, legs: Vec<OpenLeg>) {
        let broadcasts: Vec<_> = legs.into_iter().map(|leg| self.broadcast(leg)).collect();
        stream::iter(broadcasts).buffer_unordered(CONCURRENCY).collect::<Vec<()>>().await;
    }

    /// Broadcasts a stored payout; a failure is left to the next tick, which tracks it and broadcasts
    /// it again.
    async fn broadcast(&self, leg: OpenLeg) {
        if let Err(e) = self.chain.broadcast(&leg.raw).await {
            tracing::warn!(refund = %leg.refund_id, tx = %leg.tx_hash, error = %e, "broadcast failed; will retry");
        }
        failpoint::hit("payout.after_broadcast");
    }

    /// Where a payout is: the version the chain has mined, else one in the mempool, newest first.
    async fn locate(&self, leg: &OpenLeg) -> Result<(String, Inclusion), ChainError> {
        let mut pending = None;
        for hash in leg.versions.iter().rev() {
            match self.chain.inclusion(hash).await? {
                included @ Inclusion::Included { .. } => return Ok((hash.clone(), included)),
                Inclusion::Pending if pending.is_none() => pending = Some(hash.clone()),
                _ => {}
            }
        }
        Ok(match pending {
            Some(hash) => (hash, Inclusion::Pending),
            None => (leg.tx_hash.clone(), Inclusion::Unknown),
        })
    }

    /// Replaces a payout that has waited longer than `bump_after` and bids less than the network asks
    /// now: the replacement is stored first, then broadcast.
    async fn bump_if_stuck(&self, leg: &OpenLeg, report: &mut TickReport) -> Result<(), WorkerError> {
        let waited = ebb_store::now_ms().saturating_sub(leg.signed_at_ms);
        if waited < self.bump_after.as_millis() as i64 {
            return Ok(());
        }
        let signed = match self.chain.rebid(&leg.raw).await {
            Ok(Some(signed)) => signed,
            Ok(None) => return Ok(()),
            Err(ChainError::FeeAboveCap { needed, cap }) => {
                tracing::warn!(refund = %leg.refund_id, tx = %leg.tx_hash, needed, cap,
                    "payout is underpriced and a replacement would exceed the fee cap; it waits for cheaper gas");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let bytes = SignedBytes { tx_hash: signed.tx_hash.clone(), raw: signed.raw.clone() };
        if payouts::replace(&self.store, &leg.tx_id, bytes).await? {
            tracing::info!(refund = %leg.refund_id, old = %leg.tx_hash, new = %signed.tx_hash, nonce = leg.nonce,
                "payout underpriced; replaced with higher fees");
            report.replaced += 1;
            if let Err(e) = self.chain.broadcast(&signed.raw).await {
                tracing::warn!(refund = %leg.refund_id, tx = %signed.tx_hash, error = %e, "broadcast failed; will retry");
            }
        }
        Ok(())
    }

    /// Moves one open payout along; `true` if it is still in flight afterwards.
    async fn track(&self, leg: &OpenLeg, report: &mut TickReport) -> Result<bool, WorkerError> {
        let (hash, inclusion) = self.locate(leg).await?;
        if hash != leg.tx_hash && matches!(inclusion, Inclusion::Included { .. }) {
            payouts::show_version(&self.store, &leg.tx_id, &hash).await?;
        }
        match inclusion {
            Inclusion::Included { block, confirmations, outcome, fee }
                if confirmations >= self.chain.confirmations() =>
            {
                // `false` from the store: another process decided this leg first; nothing to count.
                match outcome {
                    Outcome::Success => {
                        failpoint::hit("payout.before_settle");
                        if payouts::complete(&self.store, &leg.tx_id, block, fee).await? {
                            report.completed += 1;
                        }
                    }
                    Outcome::Reverted { reason } => {
                        tracing::warn!(refund = %leg.refund_id, tx = %leg.tx_hash, %reason, "payout reverted on chain");
                        if payouts::fail(&self.store, &leg.tx_id, &reason, Some(fee)).await? {
                            report.failed += 1;
                        }
                    }
                }
                Ok(false)
            }
            Inclusion::Included { block, .. } => {
                if leg.block_number != Some(block) {
                    payouts::mark_seen(&self.store, &leg.tx_id, Some(block)).await?;
                }
                Ok(true)
            }
            Inclusion::Pending => {
                if leg.status == ebb_core::TxStatus::Confirming {
                    payouts::mark_seen(&self.store, &leg.tx_id, None).await?;
                }
                self.bump_if_stuck(leg, report).await?;
                Ok(true)
            }
            Inclusion::Unknown => {
                if leg.status == ebb_core::TxStatus::Confirming {
                    tracing::warn!(refund = %leg.refund_id, tx = %leg.tx_hash, "payout left the chain (reorg); broadcasting it again");
                    payouts::mark_seen(&self.store, &leg.tx_id, None).await?;
                }
                report.rebroadcast += 1;
                match self.chain.broadcast(&leg.raw).await {
                    Ok(()) => {
                        self.bump_if_stuck(leg, report).await?;
                        Ok(true)
                    }
                    Err(ChainError::Rejected(why)) => {
                        // Refused for good only if the nonce is spent and these bytes are not what spent it.
                        let mined = self.chain.mined_nonce().await?;
                        if mined > leg.nonce && self.locate(leg).await?.1 == Inclusion::Unknown {
                            let reason = format!(
                                "nonce {} of the hot wallet was used by another transaction; this payout was never mined ({why})",
                                leg.nonce
                            );
                            tracing::error!(refund = %leg.refund_id, tx = %leg.tx_hash, %reason, "payout can never be mined");
                            if payouts::fail(&self.store, &leg.tx_id, &reason, None).await? {
                                report.failed += 1;
                            }
                            Ok(false)
                        } else {
                            tracing::warn!(refund = %leg.refund_id, tx = %leg.tx_hash, %why, "the node refused the payout; will retry");
                            // A node may refuse bytes whose fees fell below the base fee: outbid them.
                            self.bump_if_stuck(leg, report).await?;
                            Ok(true)
                        }
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    async fn hold(
        &self,
        refund_id: &str,
        current: Option<&str>,
        reason: String,
        report: &mut TickReport,
    ) -> Result<(), WorkerError> {
        report.held += 1;
        if current != Some(reason.as_str()) {
            tracing::warn!(chain = %self.chain.chain_id(), refund = %refund_id, %reason, "payout on hold");
            payouts::hold(&self.store, refund_id, Some(&reason)).await?;
        }
        Ok(())
    }

    async fn start_new(&self, in_flight: &HashMap<String, Amount>, report: &mut TickReport) -> Result<(), WorkerError> {
        let payable = payouts::payable(&self.store, self.chain.chain_id(), BATCH).await?;
        if payable.is_empty() {
            return Ok(());
        }
        // 1. What the wallet can still spend per token: its balance less what is in flight or taken by
        //    an earlier refund of this tick. Refunds it cannot cover wait, with the reason.
        let mut available: HashMap<String, Funds> = HashMap::new();
        let mut covered = Vec::new();
        for r in payable {
            let Some(token) = self.registry.get(&r.token_id) else {
                let reason = format!("token {} is not configured", r.token_id);
                self.hold(&r.refund_id, r.hold_reason.as_deref(), reason, report).await?;
                continue;
            };
            let token = TokenRef::from(token);
            if !available.contains_key(&r.token_id) {
                let mut f = self.chain.funds(&token).await?;
                f.token = f.token.saturating_sub(in_flight.get(&r.token_id).copied().unwrap_or_default());
                available.insert(r.token_id.clone(), f);
            }
            let funds = available.get_mut(&r.token_id).expect("inserted above");
            // This transfer's share of what is left to pay (all of it unless the chain splits payouts).
            let remaining = r.amount.saturating_sub(r.paid);
            let amount = self.chain.leg_amount(&token, &r.to_address, remaining);
            if funds.token < amount {
                let reason = format!(
                    "hot wallet {} has {} base units of {} available, needs {amount}: fund it",
                    self.chain.hot_wallet(),
                    funds.token,
                    r.token_id
                );
                self.hold(&r.refund_id, r.hold_reason.as_deref(), reason, report).await?;
                continue;
            }
            funds.token = funds.token.saturating_sub(amount);
            covered.push((r, token, amount));
        }
        // 2. Dry runs and fee estimates, several at once (RPC round trips, nothing stored).
        let preparing: Vec<_> =
            covered.into_iter().map(|(r, token, amount)| self.prepare_one(r, token, amount)).collect();
        let prepared: Vec<_> = stream::iter(preparing).buffered(CONCURRENCY).collect().await;
        // 3. Sort out what cannot go; check gas for the rest.
        let mut ready = Vec::new();
        for (r, p) in prepared {
            let prepared = match p {
                Ok(p) => p,
                Err(ChainError::WouldRevert(reason)) => {
                    tracing::warn!(refund = %r.refund_id, %reason, "payout would revert; failing the refund");
                    let reason = format!("the transfer would revert: {reason}");
                    if payouts::fail_unsent(&self.store, &r.refund_id, &reason).await? {
                        report.failed += 1;
                    }
                    continue;
                }
                Err(e @ (ChainError::FeeAboveCap { .. } | ChainError::Config(_) | ChainError::Rejected(_))) => {
                    self.hold(&r.refund_id, r.hold_reason.as_deref(), e.to_string(), report).await?;
                    continue;
                }
                Err(e @ ChainError::Rpc(_)) => return Err(e.into()),
            };
            let funds = available.get_mut(&r.token_id).expect("inserted in step 1");
            if funds.native < prepared.max_gas_cost() {
                let reason = format!(
                    "hot wallet {} has {} native base units for gas, needs up to {}: fund it",
                    self.chain.hot_wallet(),
                    funds.native,
                    prepared.max_gas_cost()
                );
                self.hold(&r.refund_id, r.hold_reason.as_deref(), reason, report).await?;
                continue;
            }
            funds.native -= prepared.max_gas_cost();
            ready.push((r, prepared));
        }
        if ready.is_empty() {
            return Ok(());
        }
        // 4. Sign and store (the store allocates the nonces), a batch per transaction, then broadcast
        //    each batch's payouts as soon as it has committed, several broadcasts at once while the
        //    next batch is stored. Batches, not a transaction per payout: the wallet's nonce row
        //    serialises its payouts, so separate transactions would each pay a commit and the lock's
        //    hand-over, and concurrent ones would hold pool connections waiting for that lock — the
        //    connections the API's requests need.
        let chain_nonce = self.chain.pending_nonce().await?;
        let mut stored_legs: Vec<OpenLeg> = Vec::new();
        let mut first_error = None;
        for batch in ready.chunks(STORE_BATCH) {
            let broadcasts = self.broadcast_all(std::mem::take(&mut stored_legs));
            let (stored, ()) = futures::join!(self.store_batch(batch, chain_nonce), broadcasts);
            for s in stored {
                match s {
                    Ok(Some(leg)) => stored_legs.push(leg),
                    Ok(None) => {}
                    Err(e) => first_error = first_error.or(Some(e)),
                }
            }
            report.started += stored_legs.len();
        }
        self.broadcast_all(stored_legs).await;
        if let Some(e) = first_error {
            return Err(e);
        }
        Ok(())
    }
}
