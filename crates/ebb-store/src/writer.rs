//! Where writes run: a transaction on the pool (PostgreSQL), or the single SQLite writer with group commit.

use std::panic::AssertUnwindSafe;

use sqlx::AnyPool;
use tokio::sync::{mpsc, oneshot};

use crate::db::Tx;
use crate::{StoreError, WriteFn};

/// How many queued writes one SQLite transaction takes at most: bounds the latency a write can add to
/// the others of its batch.
const MAX_BATCH: usize = 128;
/// How many writes may wait for the SQLite writer; beyond this, callers wait to enqueue.
const QUEUE_DEPTH: usize = 4096;

#[derive(Clone)]
pub(crate) enum Writer {
    Pool(AnyPool),
    Sqlite(mpsc::Sender<Job>),
}

/// A queued write, type-erased: runs against the writer's connection and says how to answer.
pub(crate) type Job = Box<dyn for<'c> FnOnce(&'c mut Tx<'c>) -> futures::future::BoxFuture<'c, JobOutcome> + Send>;

pub(crate) struct JobOutcome {
    /// Whether the job's writes are to be kept.
    ok: bool,
    /// Tells the caller the result; gets the commit error, if the batch's commit failed.
    answer: Box<dyn FnOnce(Option<StoreError>) + Send>,
}

impl Writer {
    /// Starts the SQLite writer on a thread of its own, which owns `conn`: every SQLite write runs
    /// there, one after another, and a statement is a plain function call on that thread.
    pub(crate) fn sqlite(conn: rusqlite::Connection) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let runtime = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("ebb-sqlite-writer".into())
            .spawn(move || sqlite_writer_loop(conn, rx, runtime))
            .map_err(|e| StoreError::Internal(format!("could not start the SQLite writer thread: {e}")))?;
        Ok(Writer::Sqlite(tx))
    }

    pub(crate) async fn run<T: Send + 'static>(&self, f: WriteFn<T>) -> Result<T, StoreError> {
        self.enqueue(f).await?.await
    }

    /// Queues `f` and returns a future of its result. On SQLite the write is in the writer's queue
    /// when this returns, and the writer takes its queue in order, so the write commits in the same
    /// transaction as any write queued after it, or in an earlier one. (On the pool, where there is no
    /// queue and no such order, the returned future runs the whole transaction.)
    pub(crate) async fn enqueue<T: Send + 'static>(
        &self,
        f: WriteFn<T>,
    ) -> Result<futures::future::BoxFuture<'static, Result<T, StoreError>>, StoreError> {
        match self {
            Writer::Pool(pool) => {
                let pool = pool.clone();
                Ok(Box::pin(async move {
                    let mut transaction = pool.begin().await?;
                    let value = f(&mut Tx::Sqlx(&mut transaction)).await?;
                    transaction.commit().await?;
                    Ok(value)
                }))
            }
            Writer::Sqlite(queue) => {
                let (job, answer) = sqlite_job(f);
                queue.send(job).await.map_err(|_| StoreError::Closed)?;
                Ok(answer)
            }
        }
    }

    pub(crate) async fn close(&self) {
        if let Writer::Sqlite(queue) = self {
            // The loop ends when every sender is gone; waiting for it to drain is enough here.
            while queue.capacity() < queue.max_capacity() {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
    }
}

/// A write as the SQLite writer's job, and the future of its result.
fn sqlite_job<T: Send + 'static>(f: WriteFn<T>) -> (Job, futures::future::BoxFuture<'static, Result<T, StoreError>>) {
    let (answer_tx, answer_rx) = oneshot::channel::<Result<T, StoreError>>();
    let job: Job = Box::new(move |conn| {
        Box::pin(async move {
            match f(conn).await {
                Ok(value) => JobOutcome {
                    ok: true,
                    answer: Box::new(move |commit_error| {
                        let _ = answer_tx.send(match commit_error {
                            None => Ok(value),
                            Some(e) => Err(e),
                        });
                    }),
                },
                Err(e) => JobOutcome {
                    ok: false,
                    answer: Box::new(move |_| {
                        let _ = answer_tx.send(Err(e));
                    }),
                },
            }
        })
    });
    let answer = Box::pin(async move {
        // A dropped answer means the batch could not even begin (the database refused BEGIN).
        answer_rx.await.map_err(|_| StoreError::Unavailable("the write could not begin; see the log".into()))?
    });
    (job, answer)
}

/// Runs a statement without parameters or rows, prepared once per connection.
fn run_cached(conn: &rusqlite::Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.raw_execute().map(|_| ())
}

fn sqlite_writer_loop(mut conn: rusqlite::Connection, mut rx: mpsc::Receiver<Job>, runtime: tokio::runtime::Handle) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(job) = rx.blocking_recv() {
        batch.push(job);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        run_batch(&mut conn, batch.drain(..), &runtime);
    }
}

/// Runs `jobs` in one transaction, each inside the savepoint `job`, and answers them after the commit.
/// A job's future completes without waiting (its statements are synchronous calls); it is driven with
/// the runtime's context entered all the same, so a job that does wait on something still works.
fn run_batch(conn: &mut rusqlite::Connection, jobs: impl Iterator<Item = Job>, runtime: &tokio::runtime::Handle) {
    let mut answers: Vec<Box<dyn FnOnce(Option<StoreError>) + Send>> = Vec::new();
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        // Nothing ran; dropping the jobs answers every caller with an error.
        tracing::error!(error = %e, "sqlite writer could not begin a transaction");
        let _ = conn.execute_batch("ROLLBACK");
        return;
    }
    let fail_all = |conn: &mut rusqlite::Connection,
                    answers: Vec<Box<dyn FnOnce(Option<StoreError>) + Send>>,
                    what: &str,
                    e: rusqlite::Error| {
        tracing::error!(error = %e, "{what}; the batch is rolled back");
        let _ = conn.execute_batch("ROLLBACK");
        let msg = format!("{what}: {e}");
        // A full disk or a busy file is the database's state, not the writes' fault: the callers are
        // told to retry (503), and the pay-in watcher does not take it for a fault of a pay-in.
        let unavailable = StoreError::SqliteRead(e).is_unavailable();
        answers.into_iter().for_each(|a| {
            a(Some(if unavailable { StoreError::Unavailable(msg.clone()) } else { StoreError::Internal(msg.clone()) }))
        });
    };
    for job in jobs {
        if let Err(e) = run_cached(conn, "SAVEPOINT job") {
            return fail_all(conn, answers, "savepoint handling failed", e);
        }
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let mut tx = Tx::Sqlite(&mut *conn);
            runtime.block_on(job(&mut tx))
        }));
        let (ok, answer) = match outcome {
            Ok(o) => (o.ok, Some(o.answer)),
            Err(_) => {
                tracing::error!("a write panicked; its changes are rolled back");
                (false, None)
            }
        };
        // Keep or undo this job's changes; either way the savepoint is gone afterwards.
        let closed = if ok {
            run_cached(conn, "RELEASE job")
        } else {
            run_cached(conn, "ROLLBACK TO job").and_then(|()| run_cached(conn, "RELEASE job"))
        };
        if let Err(e) = closed {
            return fail_all(conn, answers, "savepoint handling failed", e);
        }
        match (ok, answer) {
            (true, Some(a)) => answers.push(a),
            (false, Some(a)) => a(None),
            (_, None) => {}
        }
    }
    match conn.execute_batch("COMMIT") {
        Ok(()) => answers.into_iter().for_each(|a| a(None)),
        Err(e) => fail_all(conn, answers, "sqlite commit failed", e),
    }
}

#[cfg(test)]
mod tests {
    use sqlx::{Executor, Row};

    /// The writer's own connection checkpoints (SQLite's automatic checkpoint at 1,000 pages), and the
    /// WAL must start over rather than grow with every write. 3,000 writes of 2.5 KB each write over
    /// 7.5 MB of pages; the WAL stays near its 1,000-page (4 MB) checkpoint point. (A checkpointer on a
    /// second connection with the writer's automatic checkpoint off let it grow to 50 MB here.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_starts_over_while_the_writer_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&Store::sqlite_url_for_dir(dir.path()), 2).await.unwrap();
        store.pool().execute("CREATE TABLE t (n BIGINT PRIMARY KEY, v TEXT NOT NULL)").await.unwrap();
        let wal = dir.path().join("ebb.sqlite3-wal");
        let mut largest = 0;
        for n in 0..3_000i64 {
            store
                .write(move |conn| {
                    Box::pin(async move {
                        crate::db::query("INSERT INTO t (n, v) VALUES ($1, $2)")
                            .bind(n)
                            .bind("x".repeat(2_500))
                            .execute(&mut *conn)
                            .await?;
                        Ok(())
                    })
                })
                .await
                .unwrap();
            largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
        }
        assert!(largest < 6_000_000, "the WAL grew to {largest} bytes");
        let n: i64 = sqlx::query("SELECT count(*) FROM t").fetch_one(store.pool()).await.unwrap().get(0);
        assert_eq!(n, 3_000);
    }

    use crate::{Store, StoreError};

    /// Many concurrent writes land in shared batches; the failing ones must leave no trace and must not
    /// take the others down with them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_write_rolls_back_alone_inside_a_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&Store::sqlite_url_for_dir(dir.path()), 4).await.unwrap();
        store.pool().execute("CREATE TABLE t (n BIGINT PRIMARY KEY)").await.unwrap();
        let writes = (0..200i64).map(|n| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .write(move |conn| {
                        Box::pin(async move {
                            crate::db::query("INSERT INTO t (n) VALUES ($1)").bind(n).execute(&mut *conn).await?;
                            if n % 3 == 0 {
                                return Err(StoreError::Invalid(format!("{n} refuses")));
                            }
                            Ok(n)
                        })
                    })
                    .await
            })
        });
        let results = futures::future::join_all(writes).await;
        for (n, r) in results.into_iter().enumerate() {
            match r.unwrap() {
                Ok(v) => assert!(v == n as i64 && n % 3 != 0),
                Err(StoreError::Invalid(_)) => assert_eq!(n % 3, 0),
                Err(e) => panic!("{n}: {e}"),
            }
        }
        let rows = sqlx::query("SELECT n FROM t ORDER BY n").fetch_all(store.pool()).await.unwrap();
        let kept: Vec<i64> = rows.iter().map(|r| r.get::<i64, _>(0)).collect();
        let expected: Vec<i64> = (0..200).filter(|n| n % 3 != 0).collect();
        assert_eq!(kept, expected);
    }

    /// A database that cannot grow (here `max_page_count`, as a full disk does) makes a write fail as
    /// unavailable, a 503 and a retry, not an internal error; the rows already written stay readable
    /// and the writer goes on once there is room again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_database_is_unavailable_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&Store::sqlite_url_for_dir(dir.path()), 2).await.unwrap();
        store.pool().execute("CREATE TABLE t (n BIGINT PRIMARY KEY, v TEXT NOT NULL)").await.unwrap();
        let limit = |pages: i64| {
            let store = store.clone();
            async move {
                store
                    .write(move |conn| {
                        Box::pin(async move {
                            crate::db::query(&format!("PRAGMA max_page_count = {pages}"))
                                .fetch_optional_scalar::<i64>(&mut *conn)
                                .await?;
                            Ok(())
                        })
                    })
                    .await
                    .unwrap()
            }
        };
        let insert = |n: i64| {
            let store = store.clone();
            async move {
                store
                    .write(move |conn| {
                        Box::pin(async move {
                            crate::db::query("INSERT INTO t (n, v) VALUES ($1, $2)")
                                .bind(n)
                                .bind("x".repeat(4_000))
                                .execute(&mut *conn)
                                .await?;
                            Ok(())
                        })
                    })
                    .await
            }
        };
        limit(8).await;
        let mut written = 0;
        let refused = loop {
            match insert(written).await {
                Ok(()) => written += 1,
                Err(e) => break e,
            }
            assert!(written < 100, "max_page_count never refused a write");
        };
        assert!(refused.is_unavailable(), "{refused:?}");
        let n: i64 = sqlx::query("SELECT count(*) FROM t").fetch_one(store.pool()).await.unwrap().get(0);
        assert_eq!(n, written);
        limit(1_000_000).await;
        insert(written).await.unwrap();
    }
}
