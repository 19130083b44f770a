//! ebb's background work. Each worker leases rows the API wrote, talks to the outside world, and
//! records the outcome; none of them is called from a request.

pub mod failpoint;
pub mod mail;
pub mod payin;
pub mod payout;
/// The SSRF guard lives in ebb-core, beside the other checks of outside input (and its fuzz target).
pub use ebb_core::ssrf;
pub mod webhook;

pub use payin::PayinWatcher;
pub use payout::{PayoutExecutor, TickReport};
pub use webhook::{WebhookDispatcher, WebhookSettings};

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// Runs `tick` every `interval` until `shutdown` turns true. A failing tick (RPC down, database busy)
/// is logged once when the failures start and once when they stop, and retried on the next one;
/// nothing is lost, since the work lives in the database.
pub(crate) fn run_every<T, E, F, Fut>(
    what: &'static str,
    chain_id: String,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
    mut tick: F,
) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, E>> + Send,
    E: std::fmt::Display,
{
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            match tick().await {
                Ok(_) if failing => {
                    tracing::info!(chain = %chain_id, "{what} recovered");
                    failing = false;
                }
                Ok(_) => {}
                Err(e) => {
                    if !failing {
                        tracing::warn!(chain = %chain_id, error = %e, "{what} tick failed; retrying");
                    }
                    failing = true;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    })
}
