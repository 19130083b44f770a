//! Point reads on SQLite without a thread hand-off.
//!
//! sqlx runs every SQLite connection on a thread of its own: a query is sent there and its rows sent
//! back, two thread wake-ups per query. For a read of one row by primary key, those wake-ups cost more
//! than the read (a profile of get-refund under load: about a third of ebb's CPU in sqlx's SQLite
//! threads and the kernel switching to them). The reads that serve single objects by id therefore run
//! here instead: on the calling thread, through a plain synchronous connection to the same file.
//!
//! Blocking a runtime thread is acceptable only because these are index lookups of a few rows
//! (microseconds): WAL readers never wait for the writer. Anything that scans (lists, reports) stays on
//! the sqlx pool. Each connection is `query_only`: this path cannot write.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::StoreError;

/// Connections kept open between reads; more are opened under a burst and closed after it.
const MAX_IDLE: usize = 8;

pub(crate) struct SqliteReader {
    path: PathBuf,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
}

impl SqliteReader {
    pub(crate) fn new(path: PathBuf, busy_timeout: Duration) -> Self {
        Self { path, busy_timeout, idle: Mutex::new(Vec::new()) }
    }

    fn open(&self) -> Result<Connection, StoreError> {
        // Read-write flags without CREATE: a WAL reader needs the shared-memory file; `query_only`
        // below is what keeps this connection from writing.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        conn.busy_timeout(self.busy_timeout)?;
        conn.pragma_update(None, "query_only", "ON")?;
        Ok(conn)
    }

    /// Runs `f` on an idle connection (or a new one) on this thread.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let idle = self.idle.lock().expect("sqlite reader lock").pop();
        let conn = match idle {
            Some(c) => c,
            None => self.open()?,
        };
        let out = f(&conn);
        let mut idle = self.idle.lock().expect("sqlite reader lock");
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
        out
    }

    /// The first row `sql` finds for `id` (bound as `$1`), mapped.
    pub(crate) fn by_id<T>(
        &self,
        sql: &str,
        id: &str,
        map: impl FnOnce(&rusqlite::Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare_cached(sql)?;
            let mut rows = statement.query([id])?;
            rows.next()?.map(map).transpose()
        })
    }

    /// Calls `each` with every row `sql` finds for `id` (bound as `$1`), in order.
    pub(crate) fn each_by_id(
        &self,
        sql: &str,
        id: &str,
        mut each: impl FnMut(&rusqlite::Row<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare_cached(sql)?;
            let mut rows = statement.query([id])?;
            while let Some(row) = rows.next()? {
                each(row)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_connection_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.sqlite3");
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (n INTEGER)")
            .unwrap();
        let reader = SqliteReader::new(path, Duration::from_secs(1));
        let refused = reader.read(|c| Ok(c.execute("INSERT INTO t (n) VALUES (1)", [])?));
        assert!(matches!(refused, Err(StoreError::SqliteRead(_))), "{refused:?}");
        let n: i64 = reader.read(|c| Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?)).unwrap();
        assert_eq!(n, 0);
    }
}
