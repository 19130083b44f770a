//! Reading a stored row's columns by name, whichever path read it (sqlx on either backend, the SQLite
//! writer's connection, SQLite's point reads): one mapping per stored object serves them all.

use ebb_core::Amount;

use crate::StoreError;

/// Reading a column by name, from an sqlx row or a rusqlite row: one mapping per stored object
/// serves both read paths.
pub(crate) trait Columns {
    fn col<T: Column>(&self, name: &str) -> Result<T, StoreError>;
}

pub(crate) trait Column:
    Sized + rusqlite::types::FromSql + for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>
{
}

impl<T> Column for T where T: rusqlite::types::FromSql + for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any> {}

impl Columns for sqlx::any::AnyRow {
    fn col<T: Column>(&self, name: &str) -> Result<T, StoreError> {
        Ok(sqlx::Row::try_get(self, name)?)
    }
}

impl Columns for rusqlite::Row<'_> {
    fn col<T: Column>(&self, name: &str) -> Result<T, StoreError> {
        Ok(self.get(name)?)
    }
}

/// An amount column: a decimal string of base units.
pub(crate) fn amount(row: &impl Columns, col: &str) -> Result<Amount, StoreError> {
    Ok(Amount::from_base_units_str(&row.col::<String>(col)?)?)
}
