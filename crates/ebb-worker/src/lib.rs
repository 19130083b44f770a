//! ebb's background work. Each worker leases rows the API wrote, talks to the outside world, and
//! records the outcome; none of them is called from a request.

pub mod failpoint;
pub mod payin;
pub mod payout;

pub use payin::PayinWatcher;
pub use payout::{PayoutExecutor, TickReport};
