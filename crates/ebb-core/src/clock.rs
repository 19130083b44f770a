//! The one clock of ebb: Unix time in seconds (refunds, orders, merchants) and milliseconds
//! (transactions, events, nonces), as Cobo's API counts them. A clock before 1970 reads as 0.

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
