//! ebb's view of a blockchain: send a token transfer from the hot wallet exactly once, learn its
//! outcome, and see incoming transfers.
//!
//! The payout executor splits a transfer into steps so that the signed bytes can be stored before
//! anything leaves the process: [`Chain::prepare`] (may call the node: fees, gas, a dry run),
//! [`Chain::sign`] (local, no I/O, for a nonce the store allocated), [`Chain::broadcast`] (idempotent:
//! sending the same bytes twice is harmless), [`Chain::inclusion`] (where the transaction is now).
//! Nothing here touches the database; the worker owns ordering and persistence.

pub mod evm;
pub mod sandbox;

use async_trait::async_trait;
use ebb_core::{Address, Amount};

/// A token as a chain needs it: its contract on this chain and its id in ebb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRef {
    pub token_id: String,
    pub contract: String,
}

impl From<&ebb_core::Token> for TokenRef {
    fn from(t: &ebb_core::Token) -> Self {
        Self { token_id: t.id.clone(), contract: t.contract.clone() }
    }
}

/// What the hot wallet holds right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Funds {
    /// Of the token.
    pub token: Amount,
    /// Of the chain's native coin (gas), in base units (wei on EVM).
    pub native: u128,
}

/// A transfer ready to sign: everything but the nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub token: TokenRef,
    pub to: Address,
    pub amount: Amount,
    pub gas_limit: u64,
    pub max_fee_per_gas: u128,
    pub max_priority_fee_per_gas: u128,
}

impl Prepared {
    /// The most gas this transfer can cost, in native base units.
    pub fn max_gas_cost(&self) -> u128 {
        u128::from(self.gas_limit).saturating_mul(self.max_fee_per_gas)
    }
}

/// A signed transaction: what is stored before it is broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub tx_hash: String,
    pub raw: Vec<u8>,
    pub nonce: u64,
    pub from: String,
}

/// Where a transaction is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inclusion {
    /// Neither in a block nor known to the node's mempool (never arrived, dropped, or reorged out).
    Unknown,
    /// In the node's mempool.
    Pending,
    /// In block `block`, with `confirmations` blocks on top counting its own (1 = just mined), having
    /// cost its sender `fee` in the native coin's base units (gas used × effective gas price).
    Included { block: u64, confirmations: u64, outcome: Outcome, fee: u128 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Mined but reverted: the transfer did not happen (gas was still paid).
    Reverted {
        reason: String,
    },
}

/// A token transfer (an ERC-20 `Transfer` log on EVM): into an address ebb watches, or out of the hot
/// wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenTransfer {
    pub token_id: String,
    pub tx_hash: String,
    pub log_index: u64,
    pub block: u64,
    pub from: String,
    pub to: String,
    /// `None` when the chain's integer (an ERC-20's uint256) holds more than a `u128` of base units.
    /// Such a transfer is still reported, so that it is recorded rather than silently skipped.
    pub amount: Option<Amount>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// A dry run says the transfer would revert: sending it would only burn gas.
    #[error("the transfer would revert: {0}")]
    WouldRevert(String),
    /// The network's fee is above the configured cap; the payout waits for cheaper gas.
    #[error("gas price {needed} wei is above the configured cap of {cap} wei")]
    FeeAboveCap { needed: u128, cap: u128 },
    /// The node refused the transaction for good (not a transient error).
    #[error("the node refused the transaction: {0}")]
    Rejected(String),
    /// The node is unreachable or answered with an error worth retrying.
    #[error("RPC error: {0}")]
    Rpc(String),
    #[error("{0}")]
    Config(String),
}

/// One chain ebb pays out on and watches.
#[async_trait]
pub trait Chain: Send + Sync {
    /// Cobo's chain id (`ETH`, `BASE_ETH`, ...).
    fn chain_id(&self) -> &str;
    /// The hot wallet's address, as shown in `from_address`.
    fn hot_wallet(&self) -> &str;
    /// Blocks (counting the transaction's own) before a transfer counts as final.
    fn confirmations(&self) -> u64;
    async fn funds(&self, token: &TokenRef) -> Result<Funds, ChainError>;
    /// The hot wallet's next nonce as the node sees it, counting its mempool.
    async fn pending_nonce(&self) -> Result<u64, ChainError>;
    /// The hot wallet's nonce counting only mined transactions.
    async fn mined_nonce(&self) -> Result<u64, ChainError>;
    /// How much of the `remaining` amount of a payout its next transfer carries: all of it, unless the
    /// chain splits payouts (the sandbox does for [`sandbox::PARTIAL_ADDRESS`]). A refund paid in several
    /// transfers is `Completed` when all are mined, `PartiallyCompleted` when one fails after others.
    fn leg_amount(&self, _token: &TokenRef, _to: &Address, remaining: Amount) -> Amount {
        remaining
    }
    async fn prepare(&self, token: &TokenRef, to: &Address, amount: Amount) -> Result<Prepared, ChainError>;
    /// Signs locally; no I/O, so it can run inside the database transaction that stores the result.
    fn sign(&self, prepared: &Prepared, nonce: u64) -> Result<Signed, ChainError>;
    /// A replacement for a transaction that is not being mined because its fees are now too low: the
    /// same transfer with the same nonce and fees raised to what the network asks now, and at least
    /// 12.5 % above the old ones (nodes replace a transaction only for 10 % more). `None` when the
    /// transaction still bids enough (it is only waiting), or on a chain without a fee market.
    /// `FeeAboveCap` when the replacement would have to pay more than the configured cap.
    async fn rebid(&self, _raw: &[u8]) -> Result<Option<Signed>, ChainError> {
        Ok(None)
    }
    /// Sends signed bytes. Sending bytes the node already has, or that are already mined, is not an error.
    async fn broadcast(&self, raw: &[u8]) -> Result<(), ChainError>;
    async fn inclusion(&self, tx_hash: &str) -> Result<Inclusion, ChainError>;
    /// The latest block number.
    async fn head(&self) -> Result<u64, ChainError>;
    /// What `owner` holds of the token, in base units (the reconciliation asks it of every receiving
    /// address).
    async fn token_balance(&self, token: &TokenRef, owner: &str) -> Result<Amount, ChainError>;
    /// Token transfers sent by the hot wallet in blocks `from..=to`, whoever signed them: what the
    /// reconciliation compares with the payouts ebb recorded.
    async fn sent(&self, tokens: &[TokenRef], from: u64, to: u64) -> Result<Vec<TokenTransfer>, ChainError>;
    /// Token transfers into `watched` addresses in blocks `from..=to`.
    async fn scan(
        &self,
        tokens: &[TokenRef],
        from: u64,
        to: u64,
        watched: &(dyn for<'a> Fn(&'a str) -> bool + Sync),
    ) -> Result<Vec<TokenTransfer>, ChainError>;
}
