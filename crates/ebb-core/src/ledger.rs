//! Double-entry postings. Every balance change is an [`Entry`]: postings whose amounts sum to zero
//! per token. Balances are sums of postings; only the outside world may go below zero.

use std::collections::BTreeMap;
use std::fmt;

/// A ledger account. Funds move only between these.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Account {
    /// Everything outside ebb: pay-ins come from here, completed refunds go back here.
    World,
    /// A merchant's balance.
    Merchant(String),
    /// The PSP's (developer's) balance: developer fees, and the source of `Psp` refunds.
    Psp,
    /// Funds set aside for refunds that are created but not yet paid out.
    Reserved,
    /// Pay-ins whose sender screening held them: received, credited to nobody until disposed of.
    Held,
}

impl Account {
    /// The stable key the store keeps (`merchant:M123`).
    pub fn key(&self) -> String {
        match self {
            Account::World => "world".into(),
            Account::Merchant(id) => format!("merchant:{id}"),
            Account::Psp => "psp".into(),
            Account::Reserved => "reserved".into(),
            Account::Held => "held".into(),
        }
    }

    pub fn from_key(key: &str) -> Option<Self> {
        match key {
            "world" => Some(Account::World),
            "psp" => Some(Account::Psp),
            "reserved" => Some(Account::Reserved),
            "held" => Some(Account::Held),
            _ => key.strip_prefix("merchant:").map(|id| Account::Merchant(id.to_owned())),
        }
    }

    /// Only the outside world may be overdrawn: it is the source of every pay-in.
    pub fn may_go_negative(&self) -> bool {
        matches!(self, Account::World)
    }

    /// Whether the store keeps a running balance for this account. The system accounts (`World`,
    /// `Reserved`) are touched by every pay-in or every refund of a token; a cached balance row would be
    /// one lock every such transaction waits for. Nothing needs their balance on a request path, so they
    /// are journal-only: their balance is the sum of their postings, which reconciliation computes.
    /// (`Reserved` cannot go negative anyway: it is only ever debited by the release or settlement of
    /// what a refund reserved, guarded by the refund state machine.)
    pub fn keeps_balance(&self) -> bool {
        matches!(self, Account::Merchant(_) | Account::Psp)
    }
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub account: Account,
    pub token_id: String,
    /// Positive credits the account, negative debits it. Base units.
    pub delta: i128,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("entry does not balance for token {token_id}: postings sum to {sum}")]
    Unbalanced { token_id: String, sum: i128 },
    #[error("amount too large for the ledger")]
    Overflow,
    #[error("entry has no postings")]
    Empty,
}

/// A balanced set of postings, built with [`Entry::transfer`] so it balances by construction, and
/// checked again by [`Entry::new`] for postings built by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    postings: Vec<Posting>,
}

impl Entry {
    pub fn new(postings: Vec<Posting>) -> Result<Self, LedgerError> {
        if postings.is_empty() {
            return Err(LedgerError::Empty);
        }
        let mut sums: BTreeMap<&str, i128> = BTreeMap::new();
        for p in &postings {
            let s = sums.entry(&p.token_id).or_default();
            *s = s.checked_add(p.delta).ok_or(LedgerError::Overflow)?;
        }
        if let Some((token_id, sum)) = sums.into_iter().find(|(_, s)| *s != 0) {
            return Err(LedgerError::Unbalanced { token_id: token_id.to_owned(), sum });
        }
        Ok(Self { postings: postings.into_iter().filter(|p| p.delta != 0).collect() })
    }

    /// An empty entry to which transfers are added.
    pub fn builder() -> EntryBuilder {
        EntryBuilder { postings: Vec::new() }
    }

    pub fn postings(&self) -> &[Posting] {
        &self.postings
    }
}

pub struct EntryBuilder {
    postings: Vec<Posting>,
}

impl EntryBuilder {
    /// Moves `amount` base units of `token_id` from one account to another. Zero amounts are skipped.
    pub fn transfer(mut self, from: Account, to: Account, token_id: &str, amount: u128) -> Result<Self, LedgerError> {
        if amount == 0 {
            return Ok(self);
        }
        let delta = i128::try_from(amount).map_err(|_| LedgerError::Overflow)?;
        self.postings.push(Posting { account: from, token_id: token_id.to_owned(), delta: -delta });
        self.postings.push(Posting { account: to, token_id: token_id.to_owned(), delta });
        Ok(self)
    }

    pub fn build(self) -> Result<Entry, LedgerError> {
        Entry::new(self.postings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(account: Account, token: &str, delta: i128) -> Posting {
        Posting { account, token_id: token.into(), delta }
    }

    #[test]
    fn entries_must_balance_per_token() {
        let ok = Entry::new(vec![p(Account::World, "A", -5), p(Account::Psp, "A", 5)]);
        assert!(ok.is_ok());
        // Balanced in total but not per token: refused.
        let cross = Entry::new(vec![p(Account::World, "A", -5), p(Account::Psp, "B", 5)]);
        assert_eq!(cross, Err(LedgerError::Unbalanced { token_id: "A".into(), sum: -5 }));
        assert_eq!(Entry::new(vec![]), Err(LedgerError::Empty));
    }

    #[test]
    fn transfers_balance_by_construction() {
        let e = Entry::builder()
            .transfer(Account::World, Account::Merchant("M1".into()), "T", 100)
            .unwrap()
            .transfer(Account::Merchant("M1".into()), Account::Psp, "T", 3)
            .unwrap()
            .transfer(Account::Psp, Account::Reserved, "T", 0)
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(e.postings().len(), 4);
        assert_eq!(e.postings().iter().map(|p| p.delta).sum::<i128>(), 0);
        assert!(Entry::builder().transfer(Account::World, Account::Psp, "T", u128::MAX).is_err());
    }

    #[test]
    fn account_keys_round_trip() {
        for a in [Account::World, Account::Psp, Account::Reserved, Account::Merchant("M:1".into())] {
            assert_eq!(Account::from_key(&a.key()), Some(a));
        }
        assert!(!Account::Psp.may_go_negative());
        assert!(Account::World.may_go_negative());
        assert!(!Account::Reserved.keeps_balance() && !Account::World.keeps_balance());
        assert!(Account::Psp.keeps_balance() && Account::Merchant("M".into()).keeps_balance());
    }
}
