//! Refusing replays: a signature already accepted is refused while its nonce could still be valid.
//!
//! PostgreSQL: the `seen_signatures` table is the one authority for every ebb process sharing the
//! database (an UNLOGGED table: no WAL flush per request). SQLite: one ebb process serves a database
//! file, so the authority is an in-memory set; it is written to the table in the background every
//! [`FLUSH_INTERVAL`] and loaded back at start, so a restart does not re-open the replay window
//! (except for signatures seen in the last flush interval before a crash).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use sqlx::Row;

use crate::{Backend, Store, StoreError};

/// How long a seen signature is kept: twice the ±5 minute nonce window, plus a minute of margin.
pub const RETAIN_MS: i64 = 11 * 60 * 1000;
const FLUSH_INTERVAL: Duration = Duration::from_millis(500);
const PRUNE_EVERY: u32 = 120;
/// Signatures saved per INSERT statement.
const SAVE_CHUNK: usize = 300;

#[derive(Clone)]
pub struct ReplayGuard {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    memory: Mutex<Memory>,
}

#[derive(Default)]
struct Memory {
    seen: HashSet<(String, String)>,
    /// Insertion order, for pruning: (seen_at_ms, key, signature).
    order: VecDeque<(i64, String, String)>,
    /// Not yet written to the table.
    unsaved: Vec<(i64, String, String)>,
}

impl ReplayGuard {
    pub async fn new(store: Store, now_ms: i64) -> Result<Self, StoreError> {
        let mut memory = Memory::default();
        if store.backend() == Backend::Sqlite {
            let rows = sqlx::query(
                "SELECT api_key, signature, seen_at FROM seen_signatures WHERE seen_at > $1 ORDER BY seen_at",
            )
            .bind(now_ms - RETAIN_MS)
            .fetch_all(store.pool())
            .await?;
            for r in rows {
                let (k, s, at): (String, String, i64) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
                memory.seen.insert((k.clone(), s.clone()));
                memory.order.push_back((at, k, s));
            }
        }
        let inner = Arc::new(Inner { store, memory: Mutex::new(memory) });
        tokio::spawn(maintain(Arc::downgrade(&inner)));
        Ok(ReplayGuard { inner })
    }

    /// Records the signature; `Ok(false)` if it was seen before (a replay).
    pub async fn first_use(&self, api_key: &str, signature: &str, now_ms: i64) -> Result<bool, StoreError> {
        let store = &self.inner.store;
        match store.backend() {
            Backend::Postgres => {
                let done = sqlx::query(
                    "INSERT INTO seen_signatures (api_key, signature, seen_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                )
                .bind(api_key)
                .bind(signature)
                .bind(now_ms)
                .execute(store.pool())
                .await?;
                Ok(done.rows_affected() == 1)
            }
            Backend::Sqlite => {
                let mut m = self.inner.memory.lock().expect("replay memory lock");
                if !m.seen.insert((api_key.to_owned(), signature.to_owned())) {
                    return Ok(false);
                }
                m.order.push_back((now_ms, api_key.to_owned(), signature.to_owned()));
                m.unsaved.push((now_ms, api_key.to_owned(), signature.to_owned()));
                Ok(true)
            }
        }
    }
}

async fn maintain(inner: Weak<Inner>) {
    let mut ticks = 0u32;
    loop {
        tokio::time::sleep(FLUSH_INTERVAL).await;
        let Some(inner) = inner.upgrade() else { return };
        ticks = ticks.wrapping_add(1);
        let now = crate::util::now_ms();
        let unsaved = {
            let mut m = inner.memory.lock().expect("replay memory lock");
            while m.order.front().is_some_and(|(at, _, _)| *at < now - RETAIN_MS) {
                let (_, k, s) = m.order.pop_front().expect("checked");
                m.seen.remove(&(k, s));
            }
            std::mem::take(&mut m.unsaved)
        };
        let prune = ticks.is_multiple_of(PRUNE_EVERY);
        if unsaved.is_empty() && !prune {
            continue;
        }
        let result = inner
            .store
            .write(move |conn| {
                Box::pin(async move {
                    // Hundreds of rows per statement: at thousands of requests a second, a statement per
                    // signature cost the single writer more than the requests themselves.
                    for chunk in unsaved.chunks(SAVE_CHUNK) {
                        let values: Vec<String> = (0..chunk.len())
                            .map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
                            .collect();
                        let sql = format!(
                            "INSERT INTO seen_signatures (api_key, signature, seen_at) VALUES {} ON CONFLICT DO NOTHING",
                            values.join(", ")
                        );
                        let mut q = sqlx::query(&sql);
                        for (at, k, s) in chunk {
                            q = q.bind(k.clone()).bind(s.clone()).bind(*at);
                        }
                        q.execute(&mut *conn).await?;
                    }
                    if prune {
                        sqlx::query("DELETE FROM seen_signatures WHERE seen_at < $1")
                            .bind(now - RETAIN_MS)
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not save or prune seen request signatures");
        }
    }
}
