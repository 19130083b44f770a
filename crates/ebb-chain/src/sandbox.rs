//! An in-process chain for development and for the engine's tests, as a provider's sandbox is.
//!
//! It keeps token balances, takes signed transfers into a mempool, and mines a block every
//! `block_interval`, executing transfers in nonce order per sender. Transactions are JSON (no keys are
//! involved), hashed with SHA-256. State lives in memory: a restarted ebb gets a fresh sandbox, which
//! is what a developer wants from `ebb dev`, and the executor's restart logic (re-broadcast the stored
//! bytes) works against it just as against a real node.
//!
//! Magic destination addresses (EVM chains) let users exercise failure handling, as test card numbers
//! do: see [`REVERT_ADDRESS`], [`STUCK_ADDRESS`] and [`PARTIAL_ADDRESS`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ebb_core::{Address, Amount, ChainFamily};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Chain, ChainError, Funds, Inclusion, Outcome, Prepared, Signed, TokenRef, TokenTransfer};

/// A payout to this address is mined but reverts: the refund ends `Failed`, its funds released.
pub const REVERT_ADDRESS: &str = "0x000000000000000000000000000000000000fa11";
/// A payout to this address is accepted but never mined: the refund stays `Processing`.
pub const STUCK_ADDRESS: &str = "0x0000000000000000000000000000000000005eed";
/// A payout to this address is split in two transfers: the first (half, rounded up) is mined, the
/// second reverts: the refund ends `PartiallyCompleted`, the unpaid half released.
pub const PARTIAL_ADDRESS: &str = "0x000000000000000000000000000000000000ba1f";
pub const PARTIAL_REASON: &str = "sandbox: the recipient refuses the second transfer (magic address)";
/// What the hot wallet holds of every token until told otherwise: plenty.
pub const DEFAULT_HOT_WALLET_BALANCE: u128 = 1_000_000_000_000_000_000_000_000_000;
pub const REVERT_REASON: &str = "sandbox: the recipient refuses transfers (magic address)";
/// How many transactions' receipts and transfer logs the sandbox keeps, as a pruned node keeps recent
/// history only. ebb reads a payout's receipt and scans for pay-ins within seconds of their block; a
/// sandbox that kept everything grew by about 1 KB per transaction for as long as ebb ran (the soak's
/// finding, docs/RELIABILITY.md). Balances are state, not history, and stay.
pub const HISTORY: usize = 10_000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct SandboxTx {
    chain_id: String,
    from: String,
    nonce: u64,
    token_id: String,
    to: String,
    amount: String,
}

#[derive(Default)]
struct State {
    height: u64,
    /// (address lower-case, token id) → balance. The hot wallet's entries are created on first use.
    balances: HashMap<(String, String), u128>,
    nonces: HashMap<String, u64>,
    mempool: BTreeMap<String, SandboxTx>,
    /// tx hash → (block, outcome), for the last [`HISTORY`] transactions.
    mined: HashMap<String, (u64, Outcome)>,
    /// (block, tx hash) of `mined`'s entries in the order they were mined, oldest first: what to prune.
    mined_order: VecDeque<(u64, String)>,
    /// The executed transfers of the last [`HISTORY`] transactions, for `scan`, in block order:
    /// (block, tx hash, log index, tx).
    logs: Vec<(u64, String, u64, SandboxTx)>,
    /// Payouts to [`PARTIAL_ADDRESS`]: the second halves still to come, and those to revert, by amount.
    partial_rests: HashMap<u128, usize>,
    partial_doomed: HashMap<u128, usize>,
}

/// Takes one `amount` out of a multiset; whether there was one.
fn take_one(set: &mut HashMap<u128, usize>, amount: u128) -> bool {
    match set.get_mut(&amount) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    }
}

pub struct SandboxChain {
    chain_id: String,
    hot_wallet: String,
    confirmations: u64,
    state: Arc<Mutex<State>>,
}

fn key(address: &str) -> String {
    address.to_ascii_lowercase()
}

fn hash_of(raw: &[u8]) -> String {
    format!("0x{}", hex::encode(Sha256::digest(raw)))
}

impl SandboxChain {
    /// A sandbox for `chain_id` mining a block every `block_interval` (on the current tokio runtime,
    /// until the chain is dropped).
    pub fn start(chain_id: &str, family: ChainFamily, block_interval: Duration, confirmations: u64) -> Arc<Self> {
        let hot_wallet =
            ebb_core::address::derive_deposit_address(family, b"ebb sandbox hot wallet", chain_id).into_string();
        let chain = Arc::new(Self {
            chain_id: chain_id.to_owned(),
            hot_wallet,
            confirmations: confirmations.max(1),
            state: Arc::new(Mutex::new(State::default())),
        });
        let weak = Arc::downgrade(&chain);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(block_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(chain) => chain.mine(),
                    None => return,
                }
            }
        });
        chain
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("sandbox state")
    }

    fn balance_of(state: &State, address: &str, token_id: &str, hot_wallet: &str) -> u128 {
        match state.balances.get(&(key(address), token_id.to_owned())) {
            Some(b) => *b,
            None if key(address) == key(hot_wallet) => DEFAULT_HOT_WALLET_BALANCE,
            None => 0,
        }
    }

    /// The hot wallet's address (the `from_address` of payouts).
    pub fn hot_wallet_address(&self) -> String {
        self.hot_wallet.clone()
    }

    /// A token balance on the sandbox.
    pub fn balance(&self, address: &str, token_id: &str) -> u128 {
        Self::balance_of(&self.state(), address, token_id, &self.hot_wallet)
    }

    /// Sets a balance (tests: an empty hot wallet).
    pub fn set_balance(&self, address: &str, token_id: &str, amount: u128) {
        self.state().balances.insert((key(address), token_id.to_owned()), amount);
    }

    /// Mines one block now: executes the mempool in nonce order per sender.
    pub fn mine(&self) {
        let mut s = self.state();
        s.height += 1;
        let height = s.height;
        let mut log_index = 0;
        loop {
            // The next executable transaction: a sender's exact next nonce.
            let next = s.mempool.iter().find_map(|(hash, tx)| {
                let expected = s.nonces.get(&key(&tx.from)).copied().unwrap_or(0);
                (tx.nonce == expected && key(&tx.to) != STUCK_ADDRESS).then(|| hash.clone())
            });
            let Some(hash) = next else { break };
            let tx = s.mempool.remove(&hash).expect("found above");
            *s.nonces.entry(key(&tx.from)).or_default() += 1;
            let amount: u128 = tx.amount.parse().unwrap_or(0);
            let from_balance = Self::balance_of(&s, &tx.from, &tx.token_id, &self.hot_wallet);
            let doomed = key(&tx.to) == PARTIAL_ADDRESS && take_one(&mut s.partial_doomed, amount);
            let outcome = if key(&tx.to) == REVERT_ADDRESS {
                Outcome::Reverted { reason: REVERT_REASON.into() }
            } else if doomed {
                Outcome::Reverted { reason: PARTIAL_REASON.into() }
            } else if from_balance < amount {
                Outcome::Reverted { reason: "sandbox: transfer amount exceeds balance".into() }
            } else {
                let to_balance = Self::balance_of(&s, &tx.to, &tx.token_id, &self.hot_wallet);
                s.balances.insert((key(&tx.from), tx.token_id.clone()), from_balance - amount);
                s.balances.insert((key(&tx.to), tx.token_id.clone()), to_balance.saturating_add(amount));
                s.logs.push((height, hash.clone(), log_index, tx.clone()));
                log_index += 1;
                Outcome::Success
            };
            s.mined_order.push_back((height, hash.clone()));
            s.mined.insert(hash, (height, outcome));
        }
        Self::prune(&mut s);
        // Transactions whose nonce is already used can never be mined.
        let stale: Vec<String> = s
            .mempool
            .iter()
            .filter(|(_, tx)| tx.nonce < s.nonces.get(&key(&tx.from)).copied().unwrap_or(0))
            .map(|(h, _)| h.clone())
            .collect();
        for h in stale {
            s.mempool.remove(&h);
        }
    }

    /// Drops the receipts and logs older than the last [`HISTORY`] transactions.
    fn prune(s: &mut State) {
        if s.logs.len() > HISTORY {
            let excess = s.logs.len() - HISTORY;
            s.logs.drain(..excess);
        }
        while s.mined_order.len() > HISTORY {
            let Some((block, hash)) = s.mined_order.pop_front() else { break };
            // A transaction a reorg dropped and a later block mined again has a newer entry.
            if s.mined.get(&hash).is_some_and(|(b, _)| *b == block) {
                s.mined.remove(&hash);
            }
        }
    }

    /// Sends `amount` of a token from an outside account to `to` (a customer paying an order). The
    /// sender is credited first: the sandbox mints what outside accounts spend.
    pub fn pay_from_outside(&self, from: &str, to: &str, token_id: &str, amount: u128) -> String {
        let mut s = self.state();
        let nonce = {
            let mined = s.nonces.get(&key(from)).copied().unwrap_or(0);
            let queued = s.mempool.values().filter(|t| key(&t.from) == key(from)).count() as u64;
            mined + queued
        };
        let balance = Self::balance_of(&s, from, token_id, &self.hot_wallet);
        s.balances.insert((key(from), token_id.to_owned()), balance.saturating_add(amount));
        let tx = SandboxTx {
            chain_id: self.chain_id.clone(),
            from: from.to_owned(),
            nonce,
            token_id: token_id.to_owned(),
            to: to.to_owned(),
            amount: amount.to_string(),
        };
        let raw = serde_json::to_vec(&tx).expect("serializable");
        let hash = hash_of(&raw);
        s.mempool.insert(hash.clone(), tx);
        hash
    }

    /// Removes the last `depth` blocks: their transactions go back to the mempool (as a reorg that
    /// drops them), balances are restored.
    pub fn reorg(&self, depth: u64) {
        let mut s = self.state();
        let keep_to = s.height.saturating_sub(depth);
        let undone: Vec<(u64, String, u64, SandboxTx)> = s.logs.iter().filter(|l| l.0 > keep_to).cloned().collect();
        for (_, hash, _, tx) in undone.iter().rev() {
            let amount: u128 = tx.amount.parse().unwrap_or(0);
            let to_balance = Self::balance_of(&s, &tx.to, &tx.token_id, &self.hot_wallet);
            let from_balance = Self::balance_of(&s, &tx.from, &tx.token_id, &self.hot_wallet);
            s.balances.insert((key(&tx.to), tx.token_id.clone()), to_balance.saturating_sub(amount));
            s.balances.insert((key(&tx.from), tx.token_id.clone()), from_balance.saturating_add(amount));
            s.mined.remove(hash);
        }
        s.logs.retain(|l| l.0 <= keep_to);
        let reverted: Vec<String> = s.mined.iter().filter(|(_, (b, _))| *b > keep_to).map(|(h, _)| h.clone()).collect();
        for h in reverted {
            s.mined.remove(&h);
        }
        // Nonces are recomputed from what is still mined; the dropped transactions are gone from the
        // mempool too (a reorg that loses them), so only a re-broadcast brings them back.
        let mut nonces: HashMap<String, u64> = HashMap::new();
        for (_, _, _, tx) in &s.logs {
            let n = nonces.entry(key(&tx.from)).or_default();
            *n = (*n).max(tx.nonce + 1);
        }
        s.nonces = nonces;
        s.height = keep_to;
    }
}

#[async_trait]
impl Chain for SandboxChain {
    fn chain_id(&self) -> &str {
        &self.chain_id
    }

    fn hot_wallet(&self) -> &str {
        &self.hot_wallet
    }

    fn confirmations(&self) -> u64 {
        self.confirmations
    }

    async fn funds(&self, token: &TokenRef) -> Result<Funds, ChainError> {
        Ok(Funds { token: Amount::from_base_units(self.balance(&self.hot_wallet, &token.token_id)), native: u128::MAX })
    }

    async fn token_balance(&self, token: &TokenRef, owner: &str) -> Result<Amount, ChainError> {
        Ok(Amount::from_base_units(self.balance(owner, &token.token_id)))
    }

    async fn pending_nonce(&self) -> Result<u64, ChainError> {
        let s = self.state();
        let mined = s.nonces.get(&key(&self.hot_wallet)).copied().unwrap_or(0);
        let queued = s.mempool.values().filter(|t| key(&t.from) == key(&self.hot_wallet)).map(|t| t.nonce + 1).max();
        Ok(queued.map_or(mined, |q| q.max(mined)))
    }

    async fn mined_nonce(&self) -> Result<u64, ChainError> {
        Ok(self.state().nonces.get(&key(&self.hot_wallet)).copied().unwrap_or(0))
    }

    fn leg_amount(&self, _token: &TokenRef, to: &Address, remaining: Amount) -> Amount {
        let remaining = remaining.base_units();
        if key(to.as_str()) != PARTIAL_ADDRESS || remaining < 2 {
            return Amount::from_base_units(remaining);
        }
        let mut s = self.state();
        if take_one(&mut s.partial_rests, remaining) {
            // The second transfer of a split payout: it will revert.
            *s.partial_doomed.entry(remaining).or_default() += 1;
            return Amount::from_base_units(remaining);
        }
        let first = remaining.div_ceil(2);
        *s.partial_rests.entry(remaining - first).or_default() += 1;
        Amount::from_base_units(first)
    }

    async fn prepare(&self, token: &TokenRef, to: &Address, amount: Amount) -> Result<Prepared, ChainError> {
        Ok(Prepared {
            token: token.clone(),
            to: to.clone(),
            amount,
            gas_limit: 0,
            max_fee_per_gas: 0,
            max_priority_fee_per_gas: 0,
        })
    }

    fn sign(&self, p: &Prepared, nonce: u64) -> Result<Signed, ChainError> {
        let tx = SandboxTx {
            chain_id: self.chain_id.clone(),
            from: self.hot_wallet.clone(),
            nonce,
            token_id: p.token.token_id.clone(),
            to: p.to.as_str().to_owned(),
            amount: p.amount.base_units().to_string(),
        };
        let raw = serde_json::to_vec(&tx).map_err(|e| ChainError::Config(e.to_string()))?;
        Ok(Signed { tx_hash: hash_of(&raw), raw, nonce, from: self.hot_wallet.clone() })
    }

    async fn broadcast(&self, raw: &[u8]) -> Result<(), ChainError> {
        let tx: SandboxTx =
            serde_json::from_slice(raw).map_err(|e| ChainError::Rejected(format!("not a sandbox transaction: {e}")))?;
        if tx.chain_id != self.chain_id {
            return Err(ChainError::Rejected(format!("transaction is for chain {}", tx.chain_id)));
        }
        let hash = hash_of(raw);
        let mut s = self.state();
        if s.mined.contains_key(&hash) || s.mempool.contains_key(&hash) {
            return Ok(());
        }
        if tx.nonce < s.nonces.get(&key(&tx.from)).copied().unwrap_or(0) {
            return Err(ChainError::Rejected("nonce too low".into()));
        }
        s.mempool.insert(hash, tx);
        Ok(())
    }

    async fn inclusion(&self, tx_hash: &str) -> Result<Inclusion, ChainError> {
        let s = self.state();
        let hash = tx_hash.to_ascii_lowercase();
        Ok(match s.mined.get(&hash) {
            Some((block, outcome)) => {
                // The sandbox has no native coin: its transfers cost nothing.
                Inclusion::Included {
                    block: *block,
                    confirmations: s.height - block + 1,
                    outcome: outcome.clone(),
                    fee: 0,
                }
            }
            None if s.mempool.contains_key(&hash) => Inclusion::Pending,
            None => Inclusion::Unknown,
        })
    }

    async fn head(&self) -> Result<u64, ChainError> {
        Ok(self.state().height)
    }

    async fn sent(&self, tokens: &[TokenRef], from: u64, to: u64) -> Result<Vec<TokenTransfer>, ChainError> {
        let hot = key(&self.hot_wallet);
        Ok(self.transfers(tokens, from, to, &|t| key(&t.from) == hot))
    }

    async fn scan(
        &self,
        tokens: &[TokenRef],
        from: u64,
        to: u64,
        watched: &(dyn for<'a> Fn(&'a str) -> bool + Sync),
    ) -> Result<Vec<TokenTransfer>, ChainError> {
        Ok(self.transfers(tokens, from, to, &|t| watched(&t.to)))
    }
}

impl SandboxChain {
    /// The transfers of the tokens mined in blocks `from..=to` that `keep` keeps.
    fn transfers(
        &self,
        tokens: &[TokenRef],
        from: u64,
        to: u64,
        keep: &dyn Fn(&SandboxTx) -> bool,
    ) -> Vec<TokenTransfer> {
        let s = self.state();
        // The logs are in block order: the range is found by bisection, not by reading all of them.
        let start = s.logs.partition_point(|(block, ..)| *block < from);
        s.logs[start..]
            .iter()
            .take_while(|(block, ..)| *block <= to)
            .filter(|(_, _, _, tx)| tokens.iter().any(|t| t.token_id == tx.token_id) && keep(tx))
            .map(|(block, hash, log_index, tx)| TokenTransfer {
                token_id: tx.token_id.clone(),
                tx_hash: hash.clone(),
                log_index: *log_index,
                block: *block,
                from: tx.from.clone(),
                to: tx.to.clone(),
                amount: tx.amount.parse().ok().map(Amount::from_base_units),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> TokenRef {
        TokenRef { token_id: "ETH_USDT".into(), contract: String::new() }
    }

    async fn chain() -> Arc<SandboxChain> {
        // A long interval: the tests mine by hand.
        SandboxChain::start("ETH", ChainFamily::Evm, Duration::from_secs(3600), 2)
    }

    fn to(address: &str) -> Address {
        Address::parse(ChainFamily::Evm, address).unwrap()
    }

    const CUSTOMER: &str = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";

    /// The sandbox keeps the last HISTORY transactions' receipts and logs, however long it runs; the
    /// recent ones are still found, by receipt and by a scan of their blocks.
    #[tokio::test]
    async fn history_is_bounded_and_the_recent_part_is_kept() {
        let c = chain().await;
        let receive = "0x00000000000000000000000000000000000000aa";
        let mut hashes = Vec::new();
        for _ in 0..(HISTORY / 100 + 5) {
            for i in 0..100 {
                hashes.push(c.pay_from_outside(&format!("0x{:040x}", 0x1000 + i), receive, "ETH_USDT", 1));
            }
            c.mine();
        }
        {
            let s = c.state();
            assert_eq!((s.logs.len(), s.mined.len(), s.mined_order.len()), (HISTORY, HISTORY, HISTORY));
        }
        assert_eq!(c.inclusion(&hashes[0]).await.unwrap(), Inclusion::Unknown, "the oldest is pruned");
        let last = hashes.last().unwrap();
        assert!(matches!(c.inclusion(last).await.unwrap(), Inclusion::Included { .. }));
        let head = c.head().await.unwrap();
        let found = c.scan(&[token()], head, head, &|a| a == receive).await.unwrap();
        assert_eq!(found.len(), 100, "the last block's transfers");
        assert!(found.iter().any(|t| t.tx_hash == *last));
        let all = c.scan(&[token()], 0, head, &|a| a == receive).await.unwrap();
        assert_eq!(all.len(), HISTORY);
        assert_eq!(c.balance(receive, "ETH_USDT"), hashes.len() as u128, "balances are not history");
    }

    #[tokio::test]
    async fn a_transfer_is_mined_once_and_confirms() {
        let c = chain().await;
        let p = c.prepare(&token(), &to(CUSTOMER), Amount::from_base_units(250)).await.unwrap();
        let signed = c.sign(&p, c.pending_nonce().await.unwrap()).unwrap();
        c.broadcast(&signed.raw).await.unwrap();
        c.broadcast(&signed.raw).await.unwrap();
        assert_eq!(c.inclusion(&signed.tx_hash).await.unwrap(), Inclusion::Pending);
        c.mine();
        assert!(matches!(c.inclusion(&signed.tx_hash).await.unwrap(), Inclusion::Included { confirmations: 1, .. }));
        c.mine();
        assert!(matches!(
            c.inclusion(&signed.tx_hash).await.unwrap(),
            Inclusion::Included { confirmations: 2, outcome: Outcome::Success, .. }
        ));
        // Broadcasting the mined bytes again changes nothing.
        c.broadcast(&signed.raw).await.unwrap();
        c.mine();
        assert_eq!(c.balance(CUSTOMER, "ETH_USDT"), 250);
    }

    #[tokio::test]
    async fn the_magic_address_reverts_and_an_empty_wallet_cannot_pay() {
        let c = chain().await;
        let p = c.prepare(&token(), &to(REVERT_ADDRESS), Amount::from_base_units(1)).await.unwrap();
        let s = c.sign(&p, 0).unwrap();
        c.broadcast(&s.raw).await.unwrap();
        c.mine();
        assert!(matches!(
            c.inclusion(&s.tx_hash).await.unwrap(),
            Inclusion::Included { outcome: Outcome::Reverted { .. }, .. }
        ));
        c.set_balance(c.hot_wallet(), "ETH_USDT", 5);
        assert_eq!(c.funds(&token()).await.unwrap().token, Amount::from_base_units(5));
    }

    #[tokio::test]
    async fn a_second_transaction_with_a_used_nonce_is_refused() {
        let c = chain().await;
        let a = c.sign(&c.prepare(&token(), &to(CUSTOMER), Amount::from_base_units(1)).await.unwrap(), 0).unwrap();
        let b = c.sign(&c.prepare(&token(), &to(CUSTOMER), Amount::from_base_units(2)).await.unwrap(), 0).unwrap();
        c.broadcast(&a.raw).await.unwrap();
        c.mine();
        assert!(matches!(c.broadcast(&b.raw).await, Err(ChainError::Rejected(_))));
        assert_eq!(c.balance(CUSTOMER, "ETH_USDT"), 1);
    }

    #[tokio::test]
    async fn a_reorg_drops_a_transfer_until_it_is_broadcast_again() {
        let c = chain().await;
        let s = c.sign(&c.prepare(&token(), &to(CUSTOMER), Amount::from_base_units(7)).await.unwrap(), 0).unwrap();
        c.broadcast(&s.raw).await.unwrap();
        c.mine();
        c.reorg(1);
        assert_eq!(c.inclusion(&s.tx_hash).await.unwrap(), Inclusion::Unknown);
        assert_eq!(c.balance(CUSTOMER, "ETH_USDT"), 0);
        c.broadcast(&s.raw).await.unwrap();
        c.mine();
        assert_eq!(c.balance(CUSTOMER, "ETH_USDT"), 7);
    }

    #[tokio::test]
    async fn outside_payments_are_scanned() {
        let c = chain().await;
        let deposit = "0x1111111111111111111111111111111111111111";
        let hash = c.pay_from_outside(CUSTOMER, deposit, "ETH_USDT", 100);
        c.mine();
        let found = c.scan(&[token()], 0, 10, &|a| a.eq_ignore_ascii_case(deposit)).await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].tx_hash.as_str(), found[0].amount), (hash.as_str(), Some(Amount::from_base_units(100))));
    }
}
