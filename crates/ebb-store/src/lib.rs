//! ebb's persistence: one set of SQL for SQLite and PostgreSQL.
//!
//! Every state change is one database transaction that also writes its ledger postings, run through
//! [`Store::write`] against [`Tx`] (`db.rs`). On PostgreSQL that is a transaction on the sqlx pool,
//! with row locks (`SELECT … FOR UPDATE`) serialising the rows it touches, so many ebb processes can
//! share the database. SQLite has a single writer anyway, so ebb gives it exactly one writing
//! connection, a plain synchronous one owned by a thread of its own that runs queued writes in batches:
//! one `BEGIN IMMEDIATE … COMMIT` (one fsync) for many requests, each inside its own savepoint so one
//! request's failure rolls back only its own changes. That is group commit; a write's caller hears back
//! only after its batch is durable. Reads go through the sqlx pool on both backends, except SQLite's
//! reads of one object by id (`sqlite_read.rs`).

pub mod approvals;
pub mod balances;
pub mod coingate;
mod columns;
pub mod console;
mod db;
pub mod dispositions;
mod error;
pub mod events;
pub mod ids;
pub mod keys;
pub mod kya;
pub mod kyt;
mod ledger;
pub mod links;
pub mod mails;
pub mod merchants;
pub mod operators;
pub mod orders;
pub mod page;
pub mod payins;
pub mod payouts;
pub mod reconcile;
pub mod refunds;
pub mod replay;
pub mod screening;
mod snapshot;
mod sqlite_read;
pub mod transactions;
pub mod webhooks;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Executor};

pub use db::Tx;

pub use ebb_core::clock::{now_ms, now_s};
pub use error::StoreError;
pub use ledger::{BalanceRow, SourceType, COBO_SOURCE_TYPES};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn from_url(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    // The SQL dialect: where the two backends' statements differ, the difference is one of these,
    // reached inside a write as `tx.backend()`.

    /// ` FOR UPDATE` where the backend has row locks; SQLite's single writer already excludes others.
    pub(crate) fn for_update(self) -> &'static str {
        match self {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }

    /// The placeholders of a multi-row `VALUES` list: `rows` groups of `width` parameters, bound in
    /// order after `before` earlier ones. PostgreSQL gets `($2, $3), ($4, $5)`; SQLite gets anonymous
    /// `(?, ?), (?, ?)`, because for a named parameter (`$n`) sqlx asks SQLite its name, which SQLite
    /// finds by a linear scan of the statement's names: quadratic in a statement of hundreds of
    /// parameters (the webhook recorder's attempt inserts).
    pub(crate) fn values(self, before: usize, rows: usize, width: usize) -> String {
        values_list(self == Backend::Sqlite, before, rows, width)
    }

    /// The first parameter of a statement whose other parameters are [`Backend::values`] lists.
    pub(crate) fn first_param(self) -> &'static str {
        match self {
            Backend::Sqlite => "?",
            Backend::Postgres => "$1",
        }
    }
}

/// How long SQLite waits for another process's write lock (e.g. `ebb keys add` while serving).
const SQLITE_BUSY_TIMEOUT_MS: u64 = 5_000;

#[derive(Clone)]
pub struct Store {
    backend: Backend,
    /// Reads on both backends; writes too on PostgreSQL.
    pool: AnyPool,
    writer: writer::Writer,
    /// SQLite only: point reads on the calling thread (see `sqlite_read`).
    reader: Option<Arc<sqlite_read::SqliteReader>>,
    /// Merchants seen to exist (see [`Store::merchant_exists`]).
    known_merchants: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

pub(crate) type WriteFn<T> =
    Box<dyn for<'c> FnOnce(&'c mut Tx<'c>) -> BoxFuture<'c, Result<T, StoreError>> + Send + 'static>;

impl Store {
    /// Connects to `sqlite://PATH` (created if missing) or `postgres://…`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url).ok_or_else(|| {
            StoreError::Config(format!("unsupported database URL {url:?}: use sqlite://… or postgres://…"))
        })?;
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
            }
            _ => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url)?.disable_statement_logging();
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            // A ping before every acquire doubles the round trips of every read; a broken connection
            // shows up as an error on its next query instead, and the pool replaces it.
            .test_before_acquire(false)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        configure_sqlite(conn).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await?;
        let (writer, reader) = match backend {
            Backend::Sqlite => {
                let file = sqlx::sqlite::SqliteConnectOptions::from_str(&url)?.get_filename().to_owned();
                // The writer and the point reads open the file themselves: an in-memory database
                // exists only inside one connection, so there would be no second path to it.
                // (`sqlite::memory:` arrives here named `sqlx-in-memory-N`, which is no file either.)
                if url.contains(":memory:") || url.contains("mode=memory") || file.starts_with(":memory:") {
                    return Err(StoreError::Config(format!(
                        "{url:?} is an in-memory SQLite database; ebb needs a file (sqlite:///path/ebb.sqlite3)"
                    )));
                }
                let writer = writer::Writer::sqlite(open_sqlite_writer(&file)?)?;
                let reader =
                    Arc::new(sqlite_read::SqliteReader::new(file, Duration::from_millis(SQLITE_BUSY_TIMEOUT_MS)));
                (writer, Some(reader))
            }
            Backend::Postgres => (writer::Writer::Pool(pool.clone()), None),
        };
        Ok(Store { backend, pool, writer, reader, known_merchants: Arc::default() })
    }

    /// The SQLite file of an `ebb dev` data directory.
    pub fn sqlite_url_for_dir(dir: &Path) -> String {
        format!("sqlite://{}", dir.join("ebb.sqlite3").display())
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        match self.backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&mut *conn).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&mut *conn).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The synchronous SQLite read path for lookups by id, if this store has one.
    pub(crate) fn point_reader(&self) -> Option<&sqlite_read::SqliteReader> {
        self.reader.as_deref()
    }

    /// Runs `f` in one database transaction and returns its result once the transaction is durable.
    /// If `f` fails, none of its writes happen. `f` composes the repositories' functions (`refunds::…`,
    /// `orders::…`), which take the transaction: this is how a use case of `ebb-app` is one transaction.
    pub async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Tx<'c>) -> BoxFuture<'c, Result<T, StoreError>> + Send + 'static,
    {
        self.writer.run(Box::new(f)).await
    }

    /// Queues `f` and returns a future of its result; see [`writer::Writer::enqueue`] for the order
    /// this guarantees on SQLite.
    pub(crate) async fn enqueue_write<T, F>(
        &self,
        f: F,
    ) -> Result<BoxFuture<'static, Result<T, StoreError>>, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut Tx<'c>) -> BoxFuture<'c, Result<T, StoreError>> + Send + 'static,
    {
        self.writer.enqueue(Box::new(f)).await
    }

    /// Checks the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }
}

/// The SQLite writer's connection: the same settings as the pool's ([`SQLITE_PRAGMAS`]), and room
/// in the statement cache for every statement the writes use.
///
/// The query planner stability guarantee is on: without it SQLite marks a statement whose plan could
/// depend on a bound value (a `LIKE $n`, as the outbox fan-out has) expired at every new binding and
/// prepares it again, every time it runs: a cached statement that is parsed anew each time. The writes'
/// statements are index lookups whose plans do not depend on their values.
pub(crate) fn open_sqlite_writer(file: &Path) -> Result<rusqlite::Connection, StoreError> {
    let conn = rusqlite::Connection::open(file)?;
    conn.busy_timeout(Duration::from_millis(SQLITE_BUSY_TIMEOUT_MS))?;
    conn.execute_batch(SQLITE_PRAGMAS)?;
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

/// Every SQLite connection's settings (the writer's, the pool's). WAL lets readers run beside the
/// writer; synchronous=FULL makes every commit durable before it is acknowledged (NORMAL could lose the
/// last commits on power loss). temp_store: the writer runs every job of a group commit inside a
/// savepoint, and SQLite saves the original of each page a savepoint changes in a sub-journal, a
/// temporary file by default, a write system call per page; in memory it is a copy. The busy timeout is set per connection type.
const SQLITE_PRAGMAS: &str =
    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY";

async fn configure_sqlite(conn: &mut AnyConnection) -> Result<(), sqlx::Error> {
    conn.execute(format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}").as_str()).await?;
    conn.execute(SQLITE_PRAGMAS).await?;
    Ok(())
}

/// Whether a connection (inside a write, where only the connection is at hand) is SQLite's.
pub(crate) fn is_sqlite(conn: &AnyConnection) -> bool {
    conn.backend_name().eq_ignore_ascii_case("sqlite")
}

fn values_list(anonymous: bool, before: usize, rows: usize, width: usize) -> String {
    let groups: Vec<String> = (0..rows)
        .map(|r| {
            let params: Vec<String> = (0..width)
                .map(|c| if anonymous { "?".to_owned() } else { format!("${}", before + r * width + c + 1) })
                .collect();
            format!("({})", params.join(", "))
        })
        .collect();
    groups.join(", ")
}

#[cfg(test)]
mod connect_tests {
    use crate::{Store, StoreError};

    /// An in-memory SQLite URL is refused before anything is opened: every form, including
    /// `sqlite::memory:`, which sqlx would otherwise turn into a file named `sqlx-in-memory-1`.
    #[tokio::test]
    async fn an_in_memory_sqlite_url_is_refused_with_a_clear_error() {
        for url in ["sqlite::memory:", "sqlite:///tmp/ebb-never.sqlite3?mode=memory"] {
            match Store::connect(url, 1).await {
                Err(StoreError::Config(msg)) => assert!(msg.contains("in-memory"), "{url}: {msg}"),
                Err(e) => panic!("{url}: {e}"),
                Ok(_) => panic!("{url} was accepted"),
            }
        }
        assert!(!std::path::Path::new("sqlx-in-memory-1").exists());
    }
}

#[cfg(test)]
mod writer_connection_tests {
    use rusqlite::StatementStatus;

    /// A cached statement with `LIKE $1` must run again without being prepared again.
    #[test]
    fn the_writer_connection_does_not_prepare_a_like_statement_again_for_each_binding() {
        let dir = tempfile::tempdir().unwrap();
        let conn = super::open_sqlite_writer(&dir.path().join("w.sqlite3")).unwrap();
        conn.execute_batch("CREATE TABLE t (s TEXT)").unwrap();
        for pattern in ["%,a,%", "%,b,%", "%,a,%"] {
            let mut statement = conn.prepare_cached("SELECT count(*) FROM t WHERE s LIKE $1").unwrap();
            let n: i64 = statement.query_row([pattern], |r| r.get(0)).unwrap();
            assert_eq!(n, 0);
            assert_eq!(statement.get_status(StatementStatus::RePrepare), 0, "{pattern}");
        }
    }
}

#[cfg(test)]
mod placeholder_tests {
    use super::values_list;

    #[test]
    fn values_lists_are_anonymous_on_sqlite_and_numbered_after_earlier_parameters_on_postgres() {
        assert_eq!(values_list(true, 1, 2, 2), "(?, ?), (?, ?)");
        assert_eq!(values_list(false, 1, 2, 2), "($2, $3), ($4, $5)");
        assert_eq!(values_list(false, 0, 1, 3), "($1, $2, $3)");
    }
}
