//! What the reconciliation of the ledger with the chains reads; `ebb-app/src/reconcile.rs` compares.
//! Each read is of one chain or token and scans what it names (the journal-only accounts' postings,
//! the orders and pay-ins of a token, the payouts of a block range): the reconciliation runs when an
//! operator asks, not on a request path.

use std::collections::BTreeMap;

use crate::columns::Columns;
use crate::{Store, StoreError};

/// The journal-only accounts' balances of one token (sums of their postings, base units). `-world` is
/// everything ebb holds on chain by its ledger: pay-ins credited minus payouts made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalSums {
    pub world: i128,
    pub reserved: i128,
    pub held: i128,
}

/// A receiving address of one token and the pay-ins ebb recorded into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivingAddress {
    /// As stored on its (first) order.
    pub address: String,
    pub order_id: String,
    /// Pay-ins the ledger credited (`Completed`, held ones included).
    pub credited: u128,
    /// Pay-ins seen on chain but not in the ledger: waiting for confirmations, or rejected.
    pub uncredited: u128,
}

/// A payout transaction as ebb recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedPayout {
    pub tx_id: String,
    pub refund_id: String,
    pub tx_hash: String,
    pub token_id: String,
    pub to_address: String,
    pub amount: u128,
    /// `Broadcasting`, `Confirming`, `Completed` or `Failed`.
    pub status: String,
    pub block: Option<u64>,
}

fn base_units(s: &str) -> Result<u128, StoreError> {
    s.parse().map_err(|_| StoreError::Internal(format!("stored amount {s:?}")))
}

impl Store {
    /// The balances of `world`, `reserved` and `held` in one token.
    pub async fn journal_sums(&self, token_id: &str) -> Result<JournalSums, StoreError> {
        let rows = sqlx::query(
            "SELECT account, delta FROM postings WHERE account IN ('world', 'reserved', 'held') AND token_id = $1",
        )
        .bind(token_id)
        .fetch_all(self.pool())
        .await?;
        let mut sums = JournalSums::default();
        for r in &rows {
            let delta: String = r.col("delta")?;
            let delta: i128 = delta.parse().map_err(|_| StoreError::Internal(format!("stored delta {delta:?}")))?;
            let account: String = r.col("account")?;
            let sum = match account.as_str() {
                "world" => &mut sums.world,
                "reserved" => &mut sums.reserved,
                _ => &mut sums.held,
            };
            *sum = sum.checked_add(delta).ok_or_else(|| StoreError::Internal("journal sum overflows".into()))?;
        }
        Ok(sums)
    }

    /// Every order's receiving address for a token, with the pay-ins recorded into it (matched without
    /// regard to case), ordered by address.
    pub async fn receiving_addresses(
        &self,
        chain_id: &str,
        token_id: &str,
    ) -> Result<Vec<ReceivingAddress>, StoreError> {
        let orders = sqlx::query(
            "SELECT order_id, receive_address FROM orders WHERE chain_id = $1 AND token_id = $2 ORDER BY seq",
        )
        .bind(chain_id)
        .bind(token_id)
        .fetch_all(self.pool())
        .await?;
        let mut by_address: BTreeMap<String, ReceivingAddress> = BTreeMap::new();
        for r in &orders {
            let address: String = r.col("receive_address")?;
            by_address.entry(address.to_ascii_lowercase()).or_insert(ReceivingAddress {
                address,
                order_id: r.col("order_id")?,
                credited: 0,
                uncredited: 0,
            });
        }
        let payins = sqlx::query(
            "SELECT to_address, amount, status FROM payment_transactions \
             WHERE direction = 'in' AND chain_id = $1 AND token_id = $2 AND status <> 'Failed'",
        )
        .bind(chain_id)
        .bind(token_id)
        .fetch_all(self.pool())
        .await?;
        for r in &payins {
            let to: String = r.col("to_address")?;
            let Some(a) = by_address.get_mut(&to.to_ascii_lowercase()) else { continue };
            let amount = base_units(&r.col::<String>("amount")?)?;
            let sum = if r.col::<String>("status")? == "Completed" { &mut a.credited } else { &mut a.uncredited };
            *sum = sum.saturating_add(amount);
        }
        Ok(by_address.into_values().collect())
    }

    /// The lowest block a payout of `chain_id` was mined in, if any was.
    pub async fn first_payout_block(&self, chain_id: &str) -> Result<Option<u64>, StoreError> {
        let first: Option<i64> = sqlx::query(
            "SELECT MIN(block_number) AS first FROM payment_transactions WHERE direction = 'out' AND chain_id = $1",
        )
        .bind(chain_id)
        .fetch_one(self.pool())
        .await?
        .col("first")?;
        Ok(first.map(|b| b as u64))
    }

    /// The payouts of `chain_id` mined in block `from` or later, and those not mined yet.
    pub async fn payouts_since(&self, chain_id: &str, from: u64) -> Result<Vec<RecordedPayout>, StoreError> {
        let rows = sqlx::query(
            "SELECT tx_id, refund_id, tx_hash, token_id, to_address, amount, status, block_number \
             FROM payment_transactions WHERE direction = 'out' AND chain_id = $1 \
             AND (block_number >= $2 OR block_number IS NULL) ORDER BY seq",
        )
        .bind(chain_id)
        .bind(from as i64)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RecordedPayout {
                    tx_id: r.col("tx_id")?,
                    refund_id: r.col::<Option<String>>("refund_id")?.unwrap_or_default(),
                    tx_hash: r.col::<Option<String>>("tx_hash")?.unwrap_or_default(),
                    token_id: r.col("token_id")?,
                    to_address: r.col("to_address")?,
                    amount: base_units(&r.col::<String>("amount")?)?,
                    status: r.col("status")?,
                    block: r.col::<Option<i64>>("block_number")?.map(|b| b as u64),
                })
            })
            .collect()
    }
}
