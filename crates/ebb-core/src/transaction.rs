//! A transfer on a chain as ebb records it: which way it goes and where it stands. The names are
//! Cobo's (`TransactionStatus`), stored and shown as they are.

use std::fmt;

/// A pay-in to an order's receiving address, or a payout leg of a refund from the hot wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxDirection {
    In,
    Out,
}

impl TxDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            TxDirection::In => "in",
            TxDirection::Out => "out",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [TxDirection::In, TxDirection::Out].into_iter().find(|d| d.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxStatus {
    /// Sent to the chain by someone else and not seen by ebb yet (the sandbox payment endpoint's answer).
    Pending,
    /// A payout signed and stored, being broadcast until the chain has it.
    Broadcasting,
    /// In a block (a payout) or seen (a pay-in), short of its confirmation depth.
    Confirming,
    /// At its confirmation depth; the ledger is settled.
    Completed,
    /// Did not happen: reverted, its nonce taken, or removed by a reorg.
    Failed,
    /// A pay-in ebb holds instead of crediting (its amount is beyond the ledger's range); the reason is
    /// in `failed_reason`.
    Rejected,
}

impl TxStatus {
    pub const ALL: [TxStatus; 6] = [
        TxStatus::Pending,
        TxStatus::Broadcasting,
        TxStatus::Confirming,
        TxStatus::Completed,
        TxStatus::Failed,
        TxStatus::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TxStatus::Pending => "Pending",
            TxStatus::Broadcasting => "Broadcasting",
            TxStatus::Confirming => "Confirming",
            TxStatus::Completed => "Completed",
            TxStatus::Failed => "Failed",
            TxStatus::Rejected => "Rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether the chain has yet to decide this transfer.
    pub fn is_open(self) -> bool {
        matches!(self, TxStatus::Broadcasting | TxStatus::Confirming)
    }
}

impl fmt::Display for TxStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in TxStatus::ALL {
            assert_eq!(TxStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(TxDirection::parse("in"), Some(TxDirection::In));
        assert_eq!(TxDirection::parse("IN"), None);
        assert_eq!(TxStatus::parse("Held"), None);
    }
}
