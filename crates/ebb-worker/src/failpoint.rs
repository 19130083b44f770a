//! Crash points for tests: `EBB_FAILPOINTS="payout.after_store=3,payout.before_settle=1"` makes the
//! process abort (no unwinding, no cleanup: as `kill -9`) the Nth time it passes the named point. The
//! crash tests use it to stop ebb at exact places of a payout; unset, a point costs one map lookup on
//! an empty map.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

fn armed() -> &'static HashMap<String, u64> {
    static ARMED: OnceLock<HashMap<String, u64>> = OnceLock::new();
    ARMED.get_or_init(|| {
        std::env::var("EBB_FAILPOINTS")
            .unwrap_or_default()
            .split(',')
            .filter_map(|item| {
                let (name, n) = item.trim().split_once('=')?;
                Some((name.to_owned(), n.parse().ok()?))
            })
            .collect()
    })
}

/// Aborts the process if `name` is armed and this is its Nth pass.
pub fn hit(name: &str) {
    let Some(&nth) = armed().get(name) else { return };
    static PASSES: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);
    let mut passes = PASSES.lock().unwrap_or_else(|e| e.into_inner());
    let count = passes.get_or_insert_with(HashMap::new).entry(name.to_owned()).or_default();
    *count += 1;
    if *count == nth {
        eprintln!("failpoint {name} (pass {nth}): aborting");
        std::process::abort();
    }
}
