//! Refusing replays: a signature already accepted is refused while its nonce could still be valid.
//!
//! A request that may change something (any method but GET and HEAD: [`Durability::BeforeAnswer`])
//! is recorded so that the record is durable no later than anything the request writes: its replay is
//! refused even after a crash of ebb or of the database. (A replayed `POST /links/refunds`, for one,
//! would re-link the refund and hand the replayer a fresh link.) A read ([`Durability::Background`])
//! is recorded without waiting for a disk: a crash may forget the reads of its last moments, and
//! replaying one of those only reads again what its first sending read.
//!
//! "No later than the request's writes" costs no disk wait of its own:
//! - PostgreSQL ([`SharedTables`]): changes go to `seen_write_signatures` (logged), reads to `seen_signatures` (UNLOGGED),
//!   both shared by every ebb process. A change's insert commits asynchronously
//!   (`synchronous_commit = off` for that statement alone): its WAL record precedes the request's own
//!   transaction in the WAL, and that transaction's synchronous commit flushes the WAL up to its own
//!   commit record, so both are on disk together. A request that writes nothing may lose its record in
//!   a crash, and replaying it then changes nothing either. A signature covers the method, so a
//!   request's signature can only ever be in the table of its kind.
//! - SQLite ([`MemoryAndLog`]): one ebb process serves a database file, so the authority is an in-memory set of 16-byte
//!   digests of key and signature, logged to `seen_request_log` and loaded back at start. A change's
//!   digest is queued to the writer before the request runs; the writer commits its queue in order,
//!   so the digest commits with or before the request's own write. A read's digest is saved in the
//!   background every [`FLUSH_INTERVAL`].

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use sha2::{Digest as _, Sha256};
use sqlx::Row;

use crate::db;
use crate::{Backend, Store, StoreError};

/// How long a seen signature is kept: twice the ±5 minute nonce window, plus a minute of margin.
pub const RETAIN_MS: i64 = 11 * 60 * 1000;
const FLUSH_INTERVAL: Duration = Duration::from_millis(500);
const PRUNE_EVERY: u32 = 120;
/// Digests saved per INSERT statement.
const SAVE_CHUNK: usize = 500;

/// What the SQLite guard remembers of a request: 128 bits of SHA-256 over its key and signature. Two
/// different requests share one with a chance of about n²/2¹²⁹ among n remembered, nil in practice.
type RequestDigest = [u8; 16];

fn request_digest(api_key: &str, signature: &str) -> RequestDigest {
    let hash = Sha256::new().chain_update(api_key).chain_update(b"|").chain_update(signature).finalize();
    let mut digest = [0u8; 16];
    digest.copy_from_slice(&hash[..16]);
    digest
}

/// When a request's record must be on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Before the request is served: it may change something.
    BeforeAnswer,
    /// Soon: a read.
    Background,
}

impl Durability {
    /// GET and HEAD read; every other method may change something.
    pub fn of_method(method: &str) -> Self {
        if matches!(method, "GET" | "HEAD") {
            Durability::Background
        } else {
            Durability::BeforeAnswer
        }
    }
}

/// Refuses replays; its memory is the backend's (see the module's documentation), chosen once when it
/// is made.
#[derive(Clone)]
pub struct ReplayGuard {
    seen: Arc<dyn SeenSignatures>,
}

/// Where seen signatures are remembered.
trait SeenSignatures: Send + Sync {
    /// Records the signature; `Ok(false)` if it was seen before.
    fn first_use<'a>(
        &'a self,
        api_key: &'a str,
        signature: &'a str,
        now_ms: i64,
        durability: Durability,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Saves what is kept only in memory.
    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>>;
}

impl ReplayGuard {
    pub async fn new(store: Store, now_ms: i64) -> Result<Self, StoreError> {
        let seen: Arc<dyn SeenSignatures> = match store.backend() {
            Backend::Postgres => SharedTables::start(store),
            Backend::Sqlite => MemoryAndLog::start(store, now_ms).await?,
        };
        Ok(ReplayGuard { seen })
    }

    /// Records the signature; `Ok(false)` if it was seen before (a replay). With
    /// [`Durability::BeforeAnswer`] the record is on disk when this returns `Ok(true)`.
    pub async fn first_use(
        &self,
        api_key: &str,
        signature: &str,
        now_ms: i64,
        durability: Durability,
    ) -> Result<bool, StoreError> {
        self.seen.first_use(api_key, signature, now_ms, durability).await
    }

    /// Writes what is not saved yet (tests; a background task does this every [`FLUSH_INTERVAL`]).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.seen.flush().await
    }
}

/// PostgreSQL: two tables every ebb process shares.
struct SharedTables {
    store: Store,
}

impl SharedTables {
    fn start(store: Store) -> Arc<dyn SeenSignatures> {
        let tables = Arc::new(SharedTables { store });
        tokio::spawn(prune_tables(Arc::downgrade(&tables)));
        tables
    }
}

impl SeenSignatures for SharedTables {
    fn first_use<'a>(
        &'a self,
        api_key: &'a str,
        signature: &'a str,
        now_ms: i64,
        durability: Durability,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let sql = match durability {
                // set_config(…, true) lasts until the end of the statement's own transaction, whose
                // commit then does not wait for the disk (see the module's documentation).
                Durability::BeforeAnswer => {
                    "WITH async_commit AS (SELECT set_config('synchronous_commit', 'off', true)) \
                     INSERT INTO seen_write_signatures (api_key, signature, seen_at) \
                     SELECT $1, $2, $3 FROM async_commit ON CONFLICT DO NOTHING"
                }
                Durability::Background => {
                    "INSERT INTO seen_signatures (api_key, signature, seen_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
                }
            };
            let done = sqlx::query(sql).bind(api_key).bind(signature).bind(now_ms).execute(self.store.pool()).await?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
}

async fn prune_tables(tables: Weak<SharedTables>) {
    loop {
        tokio::time::sleep(FLUSH_INTERVAL * PRUNE_EVERY).await;
        let Some(tables) = tables.upgrade() else { return };
        let before = ebb_core::clock::now_ms() - RETAIN_MS;
        let pruned = tables
            .store
            .write(move |conn| {
                Box::pin(async move {
                    for sql in [
                        "DELETE FROM seen_signatures WHERE seen_at < $1",
                        "DELETE FROM seen_write_signatures WHERE seen_at < $1",
                    ] {
                        db::query(sql).bind(before).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .await;
        if let Err(e) = pruned {
            tracing::warn!(error = %e, "could not prune seen request signatures");
        }
    }
}

/// SQLite: an in-memory set, logged to `seen_request_log` and loaded back at start.
struct MemoryAndLog {
    inner: Arc<Inner>,
}

impl MemoryAndLog {
    async fn start(store: Store, now_ms: i64) -> Result<Arc<dyn SeenSignatures>, StoreError> {
        let mut memory = Memory::default();
        let rows = sqlx::query("SELECT seen_at, digest FROM seen_request_log WHERE seen_at > $1 ORDER BY seen_at")
            .bind(now_ms - RETAIN_MS)
            .fetch_all(store.pool())
            .await?;
        for r in rows {
            let (at, bytes): (i64, Vec<u8>) = (r.try_get(0)?, r.try_get(1)?);
            let digest: RequestDigest = bytes
                .try_into()
                .map_err(|_| StoreError::Internal("seen_request_log holds a digest that is not 16 bytes".into()))?;
            if memory.seen.insert(digest) {
                memory.order.push_back((at, digest));
            }
        }
        let inner = Arc::new(Inner { store, memory: Mutex::new(memory) });
        tokio::spawn(maintain(Arc::downgrade(&inner)));
        Ok(Arc::new(MemoryAndLog { inner }))
    }
}

struct Inner {
    store: Store,
    memory: Mutex<Memory>,
}

#[derive(Default)]
struct Memory {
    seen: HashSet<RequestDigest>,
    /// Insertion order, for pruning: (seen_at_ms, digest).
    order: VecDeque<(i64, RequestDigest)>,
    /// Not yet written to the log.
    unsaved: Vec<(i64, RequestDigest)>,
}

impl SeenSignatures for MemoryAndLog {
    fn first_use<'a>(
        &'a self,
        api_key: &'a str,
        signature: &'a str,
        now_ms: i64,
        durability: Durability,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let digest = request_digest(api_key, signature);
            {
                let mut m = self.inner.memory.lock().expect("replay memory lock");
                if !m.seen.insert(digest) {
                    return Ok(false);
                }
                if durability == Durability::Background {
                    m.order.push_back((now_ms, digest));
                    m.unsaved.push((now_ms, digest));
                    return Ok(true);
                }
            }
            // Queued ahead of any write the request makes (see the module's documentation); in
            // `seen` meanwhile, so a concurrent replay is refused while this one is queued.
            match enqueue_log(&self.inner.store, vec![(now_ms, digest)]).await {
                Ok(saved) => {
                    tokio::spawn(report_failure(saved));
                    self.inner.memory.lock().expect("replay memory lock").order.push_back((now_ms, digest));
                    Ok(true)
                }
                Err(e) => {
                    // Not queued, so not served: the client may send it again.
                    self.inner.memory.lock().expect("replay memory lock").seen.remove(&digest);
                    Err(e)
                }
            }
        })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(save_and_prune(&self.inner, false))
    }
}

async fn maintain(inner: Weak<Inner>) {
    let mut ticks = 0u32;
    loop {
        tokio::time::sleep(FLUSH_INTERVAL).await;
        let Some(inner) = inner.upgrade() else { return };
        ticks = ticks.wrapping_add(1);
        if let Err(e) = save_and_prune(&inner, ticks.is_multiple_of(PRUNE_EVERY)).await {
            tracing::warn!(error = %e, "could not save or prune seen request signatures");
        }
    }
}

/// Forgets (in memory) what is older than [`RETAIN_MS`], appends the unsaved digests to the SQLite
/// log, and, if `prune`, deletes the expired rows of the backend's table.
async fn save_and_prune(inner: &Inner, prune: bool) -> Result<(), StoreError> {
    let now = ebb_core::clock::now_ms();
    let unsaved = {
        let mut m = inner.memory.lock().expect("replay memory lock");
        while m.order.front().is_some_and(|(at, _)| *at < now - RETAIN_MS) {
            let (_, digest) = m.order.pop_front().expect("checked");
            m.seen.remove(&digest);
        }
        std::mem::take(&mut m.unsaved)
    };
    if unsaved.is_empty() && !prune {
        return Ok(());
    }
    write_log(&inner.store, unsaved, prune.then_some(now - RETAIN_MS)).await
}

async fn report_failure(saved: BoxFuture<'static, Result<(), StoreError>>) {
    if let Err(e) = saved.await {
        tracing::warn!(error = %e, "could not log the signatures of requests that change something; a crash now would let them be replayed");
    }
}

/// Queues the digests' append to the SQLite log (see [`Store::enqueue_write`]); the future says when
/// it is durable.
async fn enqueue_log(
    store: &Store,
    entries: Vec<(i64, RequestDigest)>,
) -> Result<BoxFuture<'static, Result<(), StoreError>>, StoreError> {
    store
        .enqueue_write(move |conn| {
            Box::pin(async move {
                append_log(conn, &entries).await?;
                Ok(())
            })
        })
        .await
}

/// Appends digests to the SQLite log in hundreds of rows per statement: at thousands of requests a
/// second, a statement per signature cost the single writer more than the requests themselves.
async fn append_log(conn: &mut db::Tx<'_>, entries: &[(i64, RequestDigest)]) -> Result<(), StoreError> {
    for chunk in entries.chunks(SAVE_CHUNK) {
        let sql = format!(
            "INSERT INTO seen_request_log (seen_at, digest) VALUES {} ON CONFLICT DO NOTHING",
            conn.backend().values(0, chunk.len(), 2)
        );
        let mut q = db::query(&sql);
        for (at, digest) in chunk {
            q = q.bind(*at).bind(digest.to_vec());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Appends digests to the SQLite log and, with `prune_before`, deletes its records older than
/// that, in one write.
async fn write_log(
    store: &Store,
    entries: Vec<(i64, RequestDigest)>,
    prune_before: Option<i64>,
) -> Result<(), StoreError> {
    store
        .write(move |conn| {
            Box::pin(async move {
                append_log(conn, &entries).await?;
                if let Some(before) = prune_before {
                    db::query("DELETE FROM seen_request_log WHERE seen_at < $1")
                        .bind(before)
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            })
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A migrated SQLite store in a fresh directory (kept while the returned `TempDir` lives), and its URL.
    async fn fresh_sqlite() -> (tempfile::TempDir, String, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = Store::sqlite_url_for_dir(dir.path());
        let store = Store::connect(&url, 2).await.unwrap();
        store.migrate().await.unwrap();
        (dir, url, store)
    }

    #[tokio::test]
    async fn a_signature_seen_before_a_restart_is_still_a_replay_after_it() {
        let (_dir, url, store) = fresh_sqlite().await;
        let now = ebb_core::clock::now_ms();
        {
            let guard = ReplayGuard::new(store.clone(), now).await.unwrap();
            assert!(guard.first_use("k1", "s1", now, Durability::Background).await.unwrap());
            assert!(
                !guard.first_use("k1", "s1", now, Durability::Background).await.unwrap(),
                "a replay in the same process"
            );
            assert!(
                guard.first_use("k2", "s1", now, Durability::Background).await.unwrap(),
                "the same signature under another key"
            );
            guard.flush().await.unwrap();
            store.close().await;
        }
        let store = Store::connect(&url, 2).await.unwrap();
        let store_again = store.clone();
        let guard = ReplayGuard::new(store, now).await.unwrap();
        assert!(!guard.first_use("k1", "s1", now, Durability::Background).await.unwrap(), "a replay after the restart");
        assert!(!guard.first_use("k2", "s1", now, Durability::Background).await.unwrap());
        assert!(guard.first_use("k1", "s2", now, Durability::Background).await.unwrap());
        // Older than the window at start: forgotten, as the nonce check refuses such requests anyway.
        let later = now + RETAIN_MS + 1;
        let guard = ReplayGuard::new(store_again, later).await.unwrap();
        assert!(guard.first_use("k1", "s1", later, Durability::Background).await.unwrap());
    }

    /// A change's record is durable no later than the request's own write: once a write queued after
    /// it has committed, a process that dies (no flush, no close) still refuses the replay when the
    /// file is opened again.
    #[tokio::test]
    async fn a_change_is_recorded_no_later_than_its_own_write() {
        let (_dir, url, store) = fresh_sqlite().await;
        let now = ebb_core::clock::now_ms();
        let guard = ReplayGuard::new(store.clone(), now).await.unwrap();
        assert!(guard.first_use("k", "change", now, Durability::BeforeAnswer).await.unwrap());
        // The request's own write, queued after the record.
        store.write(|_| Box::pin(async { Ok(()) })).await.unwrap();
        // As if the process died here: whatever sits only in memory is lost.
        let from_disk = Store::connect(&url, 2).await.unwrap();
        let after_crash = ReplayGuard::new(from_disk, now).await.unwrap();
        assert!(!after_crash.first_use("k", "change", now, Durability::BeforeAnswer).await.unwrap());
    }
}
