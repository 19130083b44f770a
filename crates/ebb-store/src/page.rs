//! Cobo-style cursor pagination, newest first, and a small builder for the filters of list queries.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyPool};

use crate::columns::Columns;
use crate::StoreError;

/// Cobo's limit bounds for list calls.
pub const MAX_LIMIT: u32 = 50;
pub const DEFAULT_LIMIT: u32 = 10;

#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub limit: u32,
    /// Return objects newer than this cursor (the previous page).
    pub before: Option<String>,
    /// Return objects older than this cursor (the next page).
    pub after: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Cursor for the previous (newer) page, `""` if there is none.
    pub before: String,
    /// Cursor for the next (older) page, `""` if there is none.
    pub after: String,
    pub total_count: i64,
}

fn parse_cursor(name: &str, c: &str) -> Result<i64, StoreError> {
    c.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| StoreError::Invalid(format!("{name} is not a cursor returned by this API: {c:?}")))
}

#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Str(String),
    Int(i64),
}

/// `WHERE` clauses with numbered placeholders, valid on both backends.
#[derive(Debug, Default, Clone)]
pub(crate) struct Filter {
    clauses: Vec<String>,
    binds: Vec<Bind>,
}

impl Filter {
    fn next(&mut self, b: Bind) -> String {
        self.binds.push(b);
        format!("${}", self.binds.len())
    }

    pub(crate) fn eq(&mut self, column: &str, value: impl Into<String>) -> &mut Self {
        let p = self.next(Bind::Str(value.into()));
        self.clauses.push(format!("{column} = {p}"));
        self
    }

    pub(crate) fn not_null(&mut self, column: &str) -> &mut Self {
        self.clauses.push(format!("{column} IS NOT NULL"));
        self
    }

    pub(crate) fn is_in(&mut self, column: &str, values: &[String]) -> &mut Self {
        if values.is_empty() {
            return self;
        }
        let ps: Vec<String> = values.iter().map(|v| self.next(Bind::Str(v.clone()))).collect();
        self.clauses.push(format!("{column} IN ({})", ps.join(", ")));
        self
    }

    /// `LOWER(name) LIKE %keyword% OR id = keyword`, with LIKE's wildcards in the keyword escaped.
    pub(crate) fn name_contains_or_id(&mut self, name_col: &str, id_col: &str, keyword: &str) -> &mut Self {
        let escaped: String = keyword
            .to_lowercase()
            .chars()
            .flat_map(|c| if matches!(c, '%' | '_' | '\\') { vec!['\\', c] } else { vec![c] })
            .collect();
        let like = self.next(Bind::Str(format!("%{escaped}%")));
        let id = self.next(Bind::Str(keyword.to_owned()));
        self.clauses.push(format!("(LOWER({name_col}) LIKE {like} ESCAPE '\\' OR {id_col} = {id})"));
        self
    }

    /// A placeholder bound to `v`, for clauses built by the caller with [`Filter::clause`].
    pub(crate) fn bind_str(&mut self, v: &str) -> String {
        self.next(Bind::Str(v.to_owned()))
    }

    pub(crate) fn bind_int(&mut self, v: i64) -> String {
        self.next(Bind::Int(v))
    }

    pub(crate) fn clause(&mut self, sql: String) -> &mut Self {
        self.clauses.push(sql);
        self
    }

    /// Keeps rows whose signed text amount `delta` is positive (`true`) or negative (`false`).
    pub(crate) fn sign(&mut self, positive: bool) -> &mut Self {
        self.clauses.push(if positive { "delta NOT LIKE '-%'".into() } else { "delta LIKE '-%'".into() });
        self
    }

    pub(crate) fn cmp_int(&mut self, column: &str, op: &str, value: i64) -> &mut Self {
        let p = self.next(Bind::Int(value));
        self.clauses.push(format!("{column} {op} {p}"));
        self
    }

    pub(crate) fn where_sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }

    pub(crate) fn bind_all<'q>(&self, mut q: Query<'q, Any, AnyArguments<'q>>) -> Query<'q, Any, AnyArguments<'q>> {
        for b in &self.binds {
            q = match b {
                Bind::Str(s) => q.bind(s.clone()),
                Bind::Int(i) => q.bind(*i),
            };
        }
        q
    }
}

/// Lists `table` newest first. `columns` must include `seq`.
pub(crate) async fn list<T>(
    pool: &AnyPool,
    table: &str,
    columns: &str,
    filter: &Filter,
    page: &PageRequest,
    map: impl Fn(&sqlx::any::AnyRow) -> Result<T, StoreError>,
) -> Result<Page<T>, StoreError> {
    if page.before.is_some() && page.after.is_some() {
        return Err(StoreError::Invalid("give at most one of before and after".into()));
    }
    let limit = page.limit.clamp(1, MAX_LIMIT) as i64;
    let count_sql = format!("SELECT COUNT(*) AS n FROM {table}{}", filter.where_sql());
    let total_count: i64 = filter.bind_all(sqlx::query(&count_sql)).fetch_one(pool).await?.col("n")?;

    let mut f = filter.clone();
    let newer = page.before.is_some();
    if let Some(c) = &page.before {
        f.cmp_int("seq", ">", parse_cursor("before", c)?);
    }
    if let Some(c) = &page.after {
        f.cmp_int("seq", "<", parse_cursor("after", c)?);
    }
    let order = if newer { "ASC" } else { "DESC" };
    let sql = format!("SELECT {columns} FROM {table}{} ORDER BY seq {order} LIMIT {}", f.where_sql(), limit + 1);
    let rows = f.bind_all(sqlx::query(&sql)).fetch_all(pool).await?;
    let more = rows.len() as i64 > limit;
    let mut seqs = Vec::with_capacity(rows.len());
    let mut items = Vec::with_capacity(rows.len());
    for row in rows.iter().take(limit as usize) {
        seqs.push(row.col::<i64>("seq")?);
        items.push(map(row)?);
    }
    if newer {
        seqs.reverse();
        items.reverse();
    }
    let cursor = |s: Option<&i64>| s.map(|v| v.to_string()).unwrap_or_default();
    let (before, after) = if newer {
        (if more { cursor(seqs.first()) } else { String::new() }, cursor(seqs.last()))
    } else {
        (
            if page.after.is_some() { cursor(seqs.first()) } else { String::new() },
            if more { cursor(seqs.last()) } else { String::new() },
        )
    };
    Ok(Page { items, before, after, total_count })
}
