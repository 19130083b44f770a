//! ebb's domain: the rules that keep money safe, with no I/O.
//!
//! Nothing here does I/O or knows about JSON or SQL. The store persists these types, the API maps them
//! to Cobo-shaped JSON; both go through the constructors here, so an invalid amount, address or status
//! change cannot be represented. The parsers of outside input live here too (the signed request's
//! headers and canonical string, `Accept-Language`, webhook URLs and the SSRF guard's address test),
//! so that crates/ebb-fuzz fuzzes them without the server's dependencies.

pub mod address;
pub mod amount;
pub mod approval;
pub mod clock;
pub mod language;
pub mod ledger;
pub mod order;
pub mod rate;
pub mod refund;
pub mod screening;
pub mod signing;
pub mod ssrf;
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
