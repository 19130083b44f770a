//! Crash points for tests: `EBB_FAILPOINTS="payout.after_store=3,payout.before_settle=1"` makes the
//! process abort (no unwinding, no cleanup: as `kill -9`) the Nth time it passes the named point. The
//! crash tests use it to stop ebb at exact places of a payout; unset, a point costs one map lookup on
//! an empty map.
//!
//! In-process tests can also run their own code at a point ([`set_hook`], reached by [`pause`]): to
//! change a refund inside the window between preparing its payout and storing it, for example.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};

/// A test's code at a point; it gets the subject (a refund id) and decides whether to act.
pub type Hook = Arc<dyn Fn(String) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Identifies a hook for [`clear_hook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HookId(u64);

/// The hooks of every point; tests running in parallel each add their own.
fn hooks() -> &'static Mutex<HashMap<String, Vec<(HookId, Hook)>>> {
    static HOOKS: OnceLock<Mutex<HashMap<String, Vec<(HookId, Hook)>>>> = OnceLock::new();
    HOOKS.get_or_init(Mutex::default)
}

/// Runs `hook` whenever a task passes the point `name`, beside any other hooks there, until
/// [`clear_hook`].
pub fn set_hook(name: &str, hook: Hook) -> HookId {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = HookId(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    hooks().lock().unwrap_or_else(|e| e.into_inner()).entry(name.to_owned()).or_default().push((id, hook));
    id
}

pub fn clear_hook(id: HookId) {
    for list in hooks().lock().unwrap_or_else(|e| e.into_inner()).values_mut() {
        list.retain(|(i, _)| *i != id);
    }
}

/// Runs every hook set for `name`, one after another, with `subject`.
pub async fn pause(name: &str, subject: &str) {
    let set: Vec<Hook> = match hooks().lock().unwrap_or_else(|e| e.into_inner()).get(name) {
        Some(list) => list.iter().map(|(_, h)| h.clone()).collect(),
        None => return,
    };
    for hook in set {
        hook(subject.to_owned()).await;
    }
}

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
