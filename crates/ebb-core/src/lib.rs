//! ebb's domain: the rules that keep money safe, with no I/O.
//!
//! Nothing here knows about HTTP, JSON or SQL. The store persists these types, the API maps them to
//! Cobo-shaped JSON; both go through the constructors here, so an invalid amount, address or status
//! change cannot be represented.

pub mod address;
pub mod amount;
pub mod approval;
pub mod clock;
pub mod ledger;
pub mod order;
pub mod rate;
pub mod refund;
pub mod screening;
pub mod signing;
pub mod token;
pub mod transaction;

pub use address::Address;
pub use amount::{Amount, AmountError};
pub use ledger::{Account, Entry, LedgerError, Posting};
pub use order::OrderStatus;
pub use rate::{Rate, Rounding};
pub use refund::{RefundSource, RefundStatus};
pub use token::{ChainFamily, Token, TokenRegistry};
pub use transaction::{TxDirection, TxStatus};
