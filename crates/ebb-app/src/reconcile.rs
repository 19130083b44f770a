//! Reconciliation: the ledger against the chains, per chain and token, with every difference listed.
//!
//! ebb keeps custody in two kinds of address: the receiving address of each order (pay-ins stay there;
//! nothing sweeps them) and the hot wallet (which the operator funds and which pays refunds). So:
//!
//! - **Each receiving address** must hold exactly the pay-ins ebb recorded into it. More means a
//!   transfer ebb never saw (sent after the order's watch window, say); less means tokens left the
//!   address (swept by the operator with `ebb orders deposit-key`, or stolen).
//! - **Every `Transfer` out of the hot wallet** must be a payout ebb recorded, with its token, recipient
//!   and amount; every payout recorded as mined must have its `Transfer`; none recorded as failed may.
//! - **In total**, the chain must hold at least what the ledger says ebb holds: `-world` (pay-ins
//!   credited minus payouts made) plus what is on chain but not in the ledger yet (pay-ins waiting for
//!   confirmations, payouts mined but not settled). What the chain holds beyond that is the operator's
//!   float in the hot wallet; below it is a shortfall.
//!
//! A run during activity can list a transfer mined a moment before ebb recorded it; running it again
//! tells a real difference from one in flight.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ebb_chain::{Chain, TokenRef};
use ebb_core::{Token, TokenRegistry};
use ebb_store::reconcile::RecordedPayout;
use ebb_store::{Store, StoreError};
use futures::stream::{self, StreamExt};

/// How many balance calls one chain's node gets at once.
const BALANCE_CALLS_IN_FLIGHT: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DifferenceKind {
    /// A receiving address holds other than the pay-ins recorded into it.
    AddressBalance,
    /// A `Transfer` out of the hot wallet that no recorded payout made.
    UnrecordedTransfer,
    /// A payout recorded as mined without its `Transfer`.
    MissingTransfer,
    /// A payout's `Transfer` with another token, recipient or amount than recorded.
    TransferMismatch,
    /// A payout recorded as failed whose `Transfer` happened.
    FailedButTransferred,
    /// The chain holds less of a token than the ledger says ebb holds.
    Shortfall,
}

impl DifferenceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DifferenceKind::AddressBalance => "address balance",
            DifferenceKind::UnrecordedTransfer => "unrecorded transfer",
            DifferenceKind::MissingTransfer => "missing transfer",
            DifferenceKind::TransferMismatch => "transfer differs",
            DifferenceKind::FailedButTransferred => "failed but transferred",
            DifferenceKind::Shortfall => "shortfall",
        }
    }
}

/// One difference between the ledger (or ebb's records) and a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub kind: DifferenceKind,
    pub token_id: String,
    /// The address, transaction hash or token it concerns.
    pub subject: String,
    /// What ebb's records say, in base units (none: no record).
    pub recorded: Option<u128>,
    /// What the chain says, in base units (none: nothing on chain).
    pub on_chain: Option<u128>,
    pub detail: String,
}

/// One token of a chain, ledger beside chain (base units).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenReport {
    pub token_id: String,
    /// What the ledger says ebb holds: `-world`.
    pub custody: i128,
    /// Of which owed to refunds not paid yet (`reserved`) and held by screening (`held`).
    pub reserved: i128,
    pub held: i128,
    pub hot_wallet: u128,
    /// The receiving addresses' balances, summed, and how many addresses were asked.
    pub receiving: u128,
    pub addresses: usize,
    /// On chain, not in the ledger yet: pay-ins recorded but not credited, payouts mined but not settled.
    pub payins_uncredited: u128,
    pub payouts_unsettled: u128,
    /// `hot_wallet + receiving + payouts_unsettled - custody - payins_uncredited`: the operator's float
    /// when positive, a shortfall when negative.
    pub beyond_ledger: i128,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub chain_id: String,
    pub hot_wallet: String,
    pub head: Option<u64>,
    pub tokens: Vec<TokenReport>,
    /// The blocks searched for the hot wallet's transfers: from the first recorded payout to the head.
    pub blocks: Option<(u64, u64)>,
    pub payouts_checked: usize,
    pub transfers_seen: usize,
    pub differences: Vec<Difference>,
    /// The node failed to answer: the report of this chain is incomplete.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub chains: Vec<ChainReport>,
    /// `verify_ledger`'s findings: postings that do not sum to zero, cached balances off their postings.
    pub ledger_problems: Vec<String>,
    pub at_ms: i64,
}

impl Report {
    pub fn differences(&self) -> impl Iterator<Item = (&str, &Difference)> {
        self.chains.iter().flat_map(|c| c.differences.iter().map(move |d| (c.chain_id.as_str(), d)))
    }
}

/// Reconciles every chain in `chains` (each token the registry has on it).
pub async fn run(store: &Store, registry: &TokenRegistry, chains: &[Arc<dyn Chain>]) -> Result<Report, StoreError> {
    let ledger_problems = store.verify_ledger().await?;
    let mut reports = Vec::new();
    for chain in chains {
        let tokens: Vec<Token> = registry.iter().filter(|t| t.chain_id == chain.chain_id()).cloned().collect();
        let mut report = ChainReport {
            chain_id: chain.chain_id().to_owned(),
            hot_wallet: chain.hot_wallet().to_owned(),
            head: None,
            tokens: Vec::new(),
            blocks: None,
            payouts_checked: 0,
            transfers_seen: 0,
            differences: Vec::new(),
            error: None,
        };
        if let Err(e) = reconcile_chain(store, chain.as_ref(), &tokens, &mut report).await {
            match e {
                Failure::Store(e) => return Err(e),
                Failure::Chain(e) => report.error = Some(e.to_string()),
            }
        }
        reports.push(report);
    }
    Ok(Report { chains: reports, ledger_problems, at_ms: ebb_core::clock::now_ms() })
}

enum Failure {
    Store(StoreError),
    Chain(ebb_chain::ChainError),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

impl From<ebb_chain::ChainError> for Failure {
    fn from(e: ebb_chain::ChainError) -> Self {
        Failure::Chain(e)
    }
}

async fn reconcile_chain(
    store: &Store,
    chain: &dyn Chain,
    tokens: &[Token],
    report: &mut ChainReport,
) -> Result<(), Failure> {
    let refs: Vec<TokenRef> = tokens.iter().map(TokenRef::from).collect();
    let head = chain.head().await?;
    report.head = Some(head);
    // Payouts against the hot wallet's transfers, first: what is mined but not settled yet counts in the
    // totals below.
    let mut unsettled: HashMap<String, u128> = HashMap::new();
    if let Some(first) = store.first_payout_block(chain.chain_id()).await? {
        let from = first.min(head);
        report.blocks = Some((from, head));
        let records = store.payouts_since(chain.chain_id(), from).await?;
        let sent = chain.sent(&refs, from, head).await?;
        report.payouts_checked = records.len();
        report.transfers_seen = sent.len();
        for (token_id, amount) in match_transfers(&records, &sent, &mut report.differences) {
            *unsettled.entry(token_id).or_default() += amount;
        }
    }
    for (token, token_ref) in tokens.iter().zip(&refs) {
        let sums = store.journal_sums(&token.id).await?;
        let hot_wallet = chain.token_balance(token_ref, chain.hot_wallet()).await?.base_units();
        let addresses = store.receiving_addresses(chain.chain_id(), &token.id).await?;
        // Owned addresses: a stream over references would not be `Send` for every lifetime axum asks.
        let owned: Vec<String> = addresses.iter().map(|a| a.address.clone()).collect();
        let balances: Vec<Result<u128, ebb_chain::ChainError>> = stream::iter(owned)
            .map(|address| async move { chain.token_balance(token_ref, &address).await.map(|b| b.base_units()) })
            .buffered(BALANCE_CALLS_IN_FLIGHT)
            .collect()
            .await;
        let (mut receiving, mut uncredited) = (0u128, 0u128);
        for (a, balance) in addresses.iter().zip(balances) {
            let on_chain = balance?;
            let recorded = a.credited.saturating_add(a.uncredited);
            receiving = receiving.saturating_add(on_chain);
            uncredited = uncredited.saturating_add(a.uncredited);
            if on_chain != recorded {
                let detail = if on_chain > recorded {
                    "the address holds more than the pay-ins ebb recorded: a transfer ebb did not see".to_owned()
                } else {
                    "the address holds less than the pay-ins ebb recorded: tokens left it (swept?)".to_owned()
                };
                report.differences.push(Difference {
                    kind: DifferenceKind::AddressBalance,
                    token_id: token.id.clone(),
                    subject: a.address.clone(),
                    recorded: Some(recorded),
                    on_chain: Some(on_chain),
                    detail: format!("{detail} (order {})", a.order_id),
                });
            }
        }
        let custody = -sums.world;
        let unsettled = unsettled.get(&token.id).copied().unwrap_or(0);
        let beyond_ledger = i128::try_from(hot_wallet.saturating_add(receiving).saturating_add(unsettled))
            .unwrap_or(i128::MAX)
            .saturating_sub(custody)
            .saturating_sub(i128::try_from(uncredited).unwrap_or(i128::MAX));
        if beyond_ledger < 0 {
            report.differences.push(Difference {
                kind: DifferenceKind::Shortfall,
                token_id: token.id.clone(),
                subject: token.id.clone(),
                recorded: u128::try_from(custody).ok(),
                on_chain: Some(hot_wallet.saturating_add(receiving)),
                detail: format!(
                    "the hot wallet and the receiving addresses hold {} base units less than the ledger says",
                    beyond_ledger.unsigned_abs()
                ),
            });
        }
        report.tokens.push(TokenReport {
            token_id: token.id.clone(),
            custody,
            reserved: sums.reserved,
            held: sums.held,
            hot_wallet,
            receiving,
            addresses: addresses.len(),
            payins_uncredited: uncredited,
            payouts_unsettled: unsettled,
            beyond_ledger,
        });
    }
    Ok(())
}

/// Matches the hot wallet's `Transfer`s with the recorded payouts by transaction hash, adding each
/// difference; returns per token what is mined but not settled in the ledger yet.
fn match_transfers(
    records: &[RecordedPayout],
    sent: &[ebb_chain::TokenTransfer],
    differences: &mut Vec<Difference>,
) -> BTreeMap<String, u128> {
    let by_hash: HashMap<String, &RecordedPayout> =
        records.iter().filter(|r| !r.tx_hash.is_empty()).map(|r| (r.tx_hash.to_ascii_lowercase(), r)).collect();
    let mut matched: HashMap<&str, usize> = HashMap::new();
    let mut unsettled = BTreeMap::new();
    for t in sent {
        let amount = t.amount.map(|a| a.base_units());
        let Some(r) = by_hash.get(&t.tx_hash.to_ascii_lowercase()) else {
            differences.push(Difference {
                kind: DifferenceKind::UnrecordedTransfer,
                token_id: t.token_id.clone(),
                subject: t.tx_hash.clone(),
                recorded: None,
                on_chain: amount,
                detail: format!("to {} in block {}: the hot wallet sent it, ebb has no payout of it", t.to, t.block),
            });
            continue;
        };
        let seen = matched.entry(r.tx_id.as_str()).or_default();
        *seen += 1;
        let same = t.token_id == r.token_id && t.to.eq_ignore_ascii_case(&r.to_address) && amount == Some(r.amount);
        let problem = if *seen > 1 {
            Some((DifferenceKind::TransferMismatch, "a second Transfer in one payout's transaction".to_owned()))
        } else if r.status == "Failed" {
            Some((DifferenceKind::FailedButTransferred, format!("refund {} records it as failed", r.refund_id)))
        } else if !same {
            Some((
                DifferenceKind::TransferMismatch,
                format!(
                    "refund {} recorded {} to {}; the chain has {} to {}",
                    r.refund_id, r.token_id, r.to_address, t.token_id, t.to
                ),
            ))
        } else {
            None
        };
        match problem {
            Some((kind, detail)) => differences.push(Difference {
                kind,
                token_id: t.token_id.clone(),
                subject: t.tx_hash.clone(),
                recorded: Some(r.amount),
                on_chain: amount,
                detail,
            }),
            None if r.status != "Completed" => *unsettled.entry(r.token_id.clone()).or_default() += r.amount,
            None => {}
        }
    }
    for r in records {
        if matches!(r.status.as_str(), "Completed" | "Confirming") && !matched.contains_key(r.tx_id.as_str()) {
            differences.push(Difference {
                kind: DifferenceKind::MissingTransfer,
                token_id: r.token_id.clone(),
                subject: r.tx_hash.clone(),
                recorded: Some(r.amount),
                on_chain: None,
                detail: format!(
                    "refund {} records it {} in block {}; the chain has no Transfer of it",
                    r.refund_id,
                    r.status.to_ascii_lowercase(),
                    r.block.map(|b| b.to_string()).unwrap_or_default()
                ),
            });
        }
    }
    unsettled
}

#[cfg(test)]
mod tests {
    use super::*;
    use ebb_chain::TokenTransfer;
    use ebb_core::Amount;

    fn record(tx: &str, hash: &str, status: &str, amount: u128) -> RecordedPayout {
        RecordedPayout {
            tx_id: tx.into(),
            refund_id: format!("R{tx}"),
            tx_hash: hash.into(),
            token_id: "T".into(),
            to_address: "0xAb".into(),
            amount,
            status: status.into(),
            block: Some(5),
        }
    }

    fn transfer(hash: &str, to: &str, amount: u128) -> TokenTransfer {
        TokenTransfer {
            token_id: "T".into(),
            tx_hash: hash.into(),
            log_index: 0,
            block: 5,
            from: "hot".into(),
            to: to.into(),
            amount: Some(Amount::from_base_units(amount)),
        }
    }

    #[test]
    fn every_transfer_and_every_payout_is_matched_or_listed() {
        let records = [
            record("1", "0xAA", "Completed", 10),
            record("2", "0xbb", "Confirming", 20),
            record("3", "0xcc", "Completed", 30),
            record("4", "0xdd", "Failed", 40),
            record("5", "0xee", "Completed", 50),
            record("6", "", "Broadcasting", 60),
            record("7", "0x77", "Failed", 70),
        ];
        let sent = [
            transfer("0xaa", "0xab", 10), // matches, case aside
            transfer("0xbb", "0xAb", 20), // mined, not settled yet
            transfer("0xdd", "0xAb", 40), // recorded as failed
            transfer("0xee", "0xAb", 49), // amount differs
            transfer("0xff", "0xAb", 5),  // nobody recorded it
            transfer("0xaa", "0xAb", 10), // a second Transfer in one transaction
        ];
        let mut differences = Vec::new();
        let unsettled = match_transfers(&records, &sent, &mut differences);
        assert_eq!(unsettled, BTreeMap::from([("T".to_owned(), 20)]));
        let found: Vec<(DifferenceKind, &str)> = differences.iter().map(|d| (d.kind, d.subject.as_str())).collect();
        assert_eq!(
            found,
            [
                (DifferenceKind::FailedButTransferred, "0xdd"),
                (DifferenceKind::TransferMismatch, "0xee"),
                (DifferenceKind::UnrecordedTransfer, "0xff"),
                (DifferenceKind::TransferMismatch, "0xaa"),
                (DifferenceKind::MissingTransfer, "0xcc"),
            ]
        );
    }
}
