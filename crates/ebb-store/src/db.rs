//! Statements inside a write, on either backend.
//!
//! A write's statements are written once, against [`Tx`], and run on sqlx for PostgreSQL (a pool
//! transaction) or on a plain synchronous SQLite connection that the SQLite writer's own thread owns.
//! On SQLite that makes a statement a function call: sqlx runs every SQLite connection on a thread of
//! its own, where each statement is two thread wake-ups (the request sent over, the rows sent back),
//! more than the statement itself costs the single writer (docs/ARCHITECTURE.md, decision 2).
//!
//! The API mirrors the part of sqlx's that the store used: `query(sql).bind(v)…execute(tx)`, rows read
//! by column name through [`Columns`]. Parameters are `$n` (PostgreSQL's form, which SQLite also takes)
//! or, in long multi-row lists on SQLite, anonymous `?`; either way they bind as sqlx binds them.

use std::sync::Arc;

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use sqlx::AnyConnection;

use crate::columns::{Column, Columns};
use crate::{Backend, StoreError};

/// The connection a write runs on, inside its transaction.
pub enum Tx<'c> {
    /// sqlx: PostgreSQL's pool transaction.
    Sqlx(&'c mut AnyConnection),
    /// The SQLite writer's connection, on the writer's thread.
    Sqlite(&'c mut rusqlite::Connection),
}

impl Tx<'_> {
    /// Which backend, and so which SQL dialect ([`Backend`]'s methods), this write runs on.
    pub fn backend(&self) -> Backend {
        match self {
            Tx::Sqlite(_) => Backend::Sqlite,
            Tx::Sqlx(conn) if crate::is_sqlite(conn) => Backend::Sqlite,
            Tx::Sqlx(_) => Backend::Postgres,
        }
    }
}

/// A bound parameter: the three kinds ebb stores (amounts are decimal strings, never floats).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    Int(Option<i64>),
    Text(Option<String>),
    Blob(Option<Vec<u8>>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(Some(v))
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Self {
        Arg::Text(Some(v.clone()))
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(Some(v.to_owned()))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Arg::Text(v)
    }
}
impl From<&Option<String>> for Arg {
    fn from(v: &Option<String>) -> Self {
        Arg::Text(v.clone())
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        Arg::Text(v.map(str::to_owned))
    }
}
impl From<Option<&String>> for Arg {
    fn from(v: Option<&String>) -> Self {
        Arg::Text(v.cloned())
    }
}
impl From<Vec<u8>> for Arg {
    fn from(v: Vec<u8>) -> Self {
        Arg::Blob(Some(v))
    }
}
impl From<&[u8]> for Arg {
    fn from(v: &[u8]) -> Self {
        Arg::Blob(Some(v.to_vec()))
    }
}

impl rusqlite::ToSql for Arg {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Arg::Int(Some(v)) => ValueRef::Integer(*v),
            Arg::Text(Some(v)) => ValueRef::Text(v.as_bytes()),
            Arg::Blob(Some(v)) => ValueRef::Blob(v),
            Arg::Int(None) | Arg::Text(None) | Arg::Blob(None) => ValueRef::Null,
        }))
    }
}

/// A statement with its parameters, run by one of its `execute` / `fetch_*` methods.
#[must_use = "a query does nothing until it is executed"]
pub struct Query<'q> {
    sql: &'q str,
    args: Vec<Arg>,
}

pub fn query(sql: &str) -> Query<'_> {
    Query { sql, args: Vec::new() }
}

/// What an `execute` did.
#[derive(Debug, Clone, Copy)]
pub struct Done {
    rows_affected: u64,
}

impl Done {
    pub fn rows_affected(&self) -> u64 {
        self.rows_affected
    }
}

/// A row read inside a write.
pub enum Row {
    Sqlx(sqlx::any::AnyRow),
    Sqlite(SqliteRow),
}

/// A row copied out of a SQLite statement (its statement is reset for the next use before the
/// caller reads it).
pub struct SqliteRow {
    names: Arc<[String]>,
    values: Vec<Value>,
}

impl Row {
    /// The value of the column at `index` (for single-column queries).
    pub fn at<T: Column>(&self, index: usize) -> Result<T, StoreError> {
        match self {
            Row::Sqlx(row) => Ok(sqlx::Row::try_get(row, index)?),
            Row::Sqlite(row) => row.at(index),
        }
    }
}

impl SqliteRow {
    fn at<T: Column>(&self, index: usize) -> Result<T, StoreError> {
        let value = self.values.get(index).ok_or(rusqlite::Error::InvalidColumnIndex(index))?;
        T::column_result(ValueRef::from(value)).map_err(|e| {
            StoreError::SqliteRead(match e {
                rusqlite::types::FromSqlError::InvalidType => {
                    rusqlite::Error::InvalidColumnType(index, self.names[index].clone(), value.data_type())
                }
                other => rusqlite::Error::FromSqlConversionFailure(index, value.data_type(), Box::new(other)),
            })
        })
    }
}

impl Columns for Row {
    fn col<T: Column>(&self, name: &str) -> Result<T, StoreError> {
        match self {
            Row::Sqlx(row) => row.col(name),
            Row::Sqlite(row) => {
                let index = row
                    .names
                    .iter()
                    .position(|n| n == name)
                    .ok_or_else(|| rusqlite::Error::InvalidColumnName(name.to_owned()))?;
                row.at(index)
            }
        }
    }
}

impl<'q> Query<'q> {
    pub fn bind(mut self, value: impl Into<Arg>) -> Self {
        self.args.push(value.into());
        self
    }

    pub async fn execute(self, tx: &mut Tx<'_>) -> Result<Done, StoreError> {
        match tx {
            Tx::Sqlx(conn) => {
                let done = sqlx::Executor::execute(&mut **conn, self.into_sqlx()).await?;
                Ok(Done { rows_affected: done.rows_affected() })
            }
            Tx::Sqlite(conn) => run_sqlite(conn, self.sql, &self.args, false).map(|(done, _)| done),
        }
    }

    pub async fn fetch_all(self, tx: &mut Tx<'_>) -> Result<Vec<Row>, StoreError> {
        match tx {
            Tx::Sqlx(conn) => {
                let rows = sqlx::Executor::fetch_all(&mut **conn, self.into_sqlx()).await?;
                Ok(rows.into_iter().map(Row::Sqlx).collect())
            }
            Tx::Sqlite(conn) => run_sqlite(conn, self.sql, &self.args, true)
                .map(|(_, rows)| rows.into_iter().map(Row::Sqlite).collect()),
        }
    }

    /// The first row, if any.
    pub async fn fetch_optional(self, tx: &mut Tx<'_>) -> Result<Option<Row>, StoreError> {
        match tx {
            Tx::Sqlx(conn) => Ok(sqlx::Executor::fetch_optional(&mut **conn, self.into_sqlx()).await?.map(Row::Sqlx)),
            Tx::Sqlite(conn) => {
                run_sqlite(conn, self.sql, &self.args, true).map(|(_, rows)| rows.into_iter().next().map(Row::Sqlite))
            }
        }
    }

    /// The first row; none is an error (as sqlx's `fetch_one`).
    pub async fn fetch_one(self, tx: &mut Tx<'_>) -> Result<Row, StoreError> {
        self.fetch_optional(tx).await?.ok_or(StoreError::Database(sqlx::Error::RowNotFound))
    }

    /// The first column of the first row, if there is a row.
    pub async fn fetch_optional_scalar<T: Column>(self, tx: &mut Tx<'_>) -> Result<Option<T>, StoreError> {
        self.fetch_optional(tx).await?.map(|row| row.at(0)).transpose()
    }

    /// The first column of every row.
    pub async fn fetch_all_scalars<T: Column>(self, tx: &mut Tx<'_>) -> Result<Vec<T>, StoreError> {
        self.fetch_all(tx).await?.iter().map(|row| row.at(0)).collect()
    }

    fn into_sqlx(self) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
        self.args.into_iter().fold(sqlx::query(self.sql), |q, arg| match arg {
            Arg::Int(v) => q.bind(v),
            Arg::Text(v) => q.bind(v),
            Arg::Blob(v) => q.bind(v),
        })
    }
}

/// Runs one statement on the SQLite writer's connection: prepared once and cached, parameters bound
/// the way sqlx binds them (`$n` / `?n` is argument n, each anonymous `?` the next argument), rows
/// copied out when `keep_rows`.
fn run_sqlite(
    conn: &rusqlite::Connection,
    sql: &str,
    args: &[Arg],
    keep_rows: bool,
) -> Result<(Done, Vec<SqliteRow>), StoreError> {
    // rusqlite prepares the first statement of a string and silently ignores the rest.
    if sql.trim_end().trim_end_matches(';').contains(';') {
        return Err(StoreError::Internal(format!("one statement at a time on the SQLite writer: {sql}")));
    }
    let mut statement = conn.prepare_cached(sql)?;
    let mut anonymous = 0;
    for index in 1..=statement.parameter_count() {
        let n = match statement.parameter_name(index) {
            Some(name) => name
                .strip_prefix(['$', '?'])
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| StoreError::Internal(format!("unsupported SQL parameter {name} in {sql}")))?,
            None => {
                anonymous += 1;
                anonymous
            }
        };
        // As sqlx does: a parameter without an argument stays NULL.
        if let Some(arg) = n.checked_sub(1).and_then(|i| args.get(i)) {
            statement.raw_bind_parameter(index, arg)?;
        }
    }
    let names: Option<Arc<[String]>> =
        keep_rows.then(|| statement.column_names().into_iter().map(str::to_owned).collect());
    let mut kept = Vec::new();
    let mut rows = statement.raw_query();
    while let Some(row) = rows.next()? {
        if let Some(names) = &names {
            let values = (0..names.len()).map(|i| row.get::<_, Value>(i)).collect::<Result<_, _>>()?;
            kept.push(SqliteRow { names: names.clone(), values });
        }
    }
    drop(rows);
    Ok((Done { rows_affected: conn.changes() }, kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite() -> rusqlite::Connection {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT, c BLOB)").unwrap();
        conn
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        futures::executor::block_on(f)
    }

    #[test]
    fn numbered_parameters_bind_by_number_whatever_their_order() {
        let mut conn = sqlite();
        let mut tx = Tx::Sqlite(&mut conn);
        let done = run(query("INSERT INTO t (b, a) VALUES ($2, $1)").bind(7).bind("seven").execute(&mut tx)).unwrap();
        assert_eq!(done.rows_affected(), 1);
        let row =
            run(query("SELECT a, b FROM t WHERE a = $1 AND b = $2").bind(7).bind("seven").fetch_one(&mut tx)).unwrap();
        assert_eq!(row.col::<i64>("a").unwrap(), 7);
        assert_eq!(row.col::<String>("b").unwrap(), "seven");
    }

    #[test]
    fn anonymous_parameters_bind_in_order_and_a_missing_one_is_null() {
        let mut conn = sqlite();
        let mut tx = Tx::Sqlite(&mut conn);
        let done = run(query("INSERT INTO t (a, b) VALUES (?, ?), (?, ?)")
            .bind(1)
            .bind("one")
            .bind(2)
            .bind(None::<String>)
            .execute(&mut tx))
        .unwrap();
        assert_eq!(done.rows_affected(), 2);
        let b: Vec<Option<String>> = run(query("SELECT b FROM t ORDER BY a").fetch_all_scalars(&mut tx)).unwrap();
        assert_eq!(b, vec![Some("one".to_owned()), None]);
        run(query("INSERT INTO t (a, b) VALUES ($1, $2)").bind(3).execute(&mut tx)).unwrap();
        let b: Option<Option<String>> =
            run(query("SELECT b FROM t WHERE a = $1").bind(3).fetch_optional_scalar(&mut tx)).unwrap();
        assert_eq!(b, Some(None));
    }

    #[test]
    fn rows_affected_counts_only_the_rows_a_statement_changed() {
        let mut conn = sqlite();
        let mut tx = Tx::Sqlite(&mut conn);
        run(query("INSERT INTO t (a) VALUES (1), (2)").execute(&mut tx)).unwrap();
        let none = run(query("INSERT INTO t (a) VALUES (1) ON CONFLICT DO NOTHING").execute(&mut tx)).unwrap();
        assert_eq!(none.rows_affected(), 0);
        let returned = run(query("UPDATE t SET b = 'x' WHERE a >= $1 RETURNING a").bind(1).fetch_all(&mut tx)).unwrap();
        assert_eq!(returned.len(), 2);
    }

    #[test]
    fn a_string_of_several_statements_is_refused_rather_than_cut() {
        let mut conn = sqlite();
        let mut tx = Tx::Sqlite(&mut conn);
        let refused = run(query("INSERT INTO t (a) VALUES (1); INSERT INTO t (a) VALUES (2)").execute(&mut tx));
        assert!(matches!(refused, Err(StoreError::Internal(_))), "{:?}", refused.map(|d| d.rows_affected()));
        let n: Option<i64> = run(query("SELECT count(*) FROM t;").fetch_optional_scalar(&mut tx)).unwrap();
        assert_eq!(n, Some(0));
    }

    #[test]
    fn a_column_of_the_wrong_type_is_an_error_not_a_panic() {
        let mut conn = sqlite();
        let mut tx = Tx::Sqlite(&mut conn);
        run(query("INSERT INTO t (a, b, c) VALUES (1, 'x', $1)").bind(vec![1u8, 2]).execute(&mut tx)).unwrap();
        let row = run(query("SELECT a, b, c FROM t").fetch_one(&mut tx)).unwrap();
        assert!(row.col::<i64>("b").is_err());
        assert!(row.col::<i64>("nope").is_err());
        assert_eq!(row.col::<Vec<u8>>("c").unwrap(), vec![1, 2]);
        assert!(run(query("SELECT a FROM t WHERE a = 2").fetch_one(&mut tx)).is_err());
    }
}
