//! The operator console's people: accounts with a role, their browser sessions, and the append-only
//! audit log (docs/CONSOLE.md). Secrets are never stored as given: passwords as argon2id strings
//! (hashed by `ebb-app`), set-up links and session cookies as their SHA-256.

use std::fmt;

use crate::columns::Columns;
use crate::db::{self, Tx};
use crate::page::{self, Filter, Page, PageRequest};
use crate::{Store, StoreError};

/// What an operator may do (the console's permission table is `ebb_app::operators::allows`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OperatorRole {
    /// Everything, and manages operators.
    Admin,
    /// Reads, approves and rejects refunds, decides on held pay-ins.
    Approver,
    /// Finds orders and refunds, creates refunds and refund links, resends links and webhooks.
    Support,
    /// Reads.
    Viewer,
}

impl OperatorRole {
    pub const ALL: [OperatorRole; 4] =
        [OperatorRole::Admin, OperatorRole::Approver, OperatorRole::Support, OperatorRole::Viewer];

    pub fn as_str(self) -> &'static str {
        match self {
            OperatorRole::Admin => "admin",
            OperatorRole::Approver => "approver",
            OperatorRole::Support => "support",
            OperatorRole::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for OperatorRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorRow {
    pub operator_id: String,
    pub email: String,
    pub role: OperatorRole,
    /// Empty: every merchant.
    pub merchant_ids: Vec<String>,
    pub password_hash: Option<String>,
    /// Hex of the 20-byte TOTP key.
    pub totp_secret: Option<String>,
    pub totp_required: bool,
    pub totp_last_step: Option<i64>,
    pub setup_hash: Option<String>,
    pub setup_expires_at: Option<i64>,
    pub failed_logins: i64,
    pub locked_until: Option<i64>,
    pub created_by: String,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
}

impl OperatorRow {
    /// Set up (a password chosen) and not disabled.
    pub fn can_log_in(&self) -> bool {
        self.password_hash.is_some() && self.disabled_at.is_none()
    }
}

const COLUMNS: &str = "operator_id, email, role, merchant_ids, password_hash, totp_secret, totp_required, \
     totp_last_step, setup_hash, setup_expires_at, failed_logins, locked_until, created_by, created_at, disabled_at";

fn from_row(row: &impl Columns) -> Result<OperatorRow, StoreError> {
    let role: String = row.col("role")?;
    let merchants: Option<String> = row.col("merchant_ids")?;
    Ok(OperatorRow {
        operator_id: row.col("operator_id")?,
        email: row.col("email")?,
        role: OperatorRole::parse(&role)
            .ok_or_else(|| StoreError::Internal(format!("stored operator role {role:?}")))?,
        merchant_ids: merchants.map(|m| m.split(' ').map(str::to_owned).collect()).unwrap_or_default(),
        password_hash: row.col("password_hash")?,
        totp_secret: row.col("totp_secret")?,
        totp_required: row.col::<i64>("totp_required")? != 0,
        totp_last_step: row.col("totp_last_step")?,
        setup_hash: row.col("setup_hash")?,
        setup_expires_at: row.col("setup_expires_at")?,
        failed_logins: row.col("failed_logins")?,
        locked_until: row.col("locked_until")?,
        created_by: row.col("created_by")?,
        created_at: row.col("created_at")?,
        disabled_at: row.col("disabled_at")?,
    })
}

fn merchants_column(ids: &[String]) -> Option<String> {
    (!ids.is_empty()).then(|| ids.join(" "))
}

/// Adds an operator; false if the e-mail address is taken.
pub async fn insert_operator(conn: &mut Tx<'_>, o: &OperatorRow) -> Result<bool, StoreError> {
    let done = db::query(&format!(
        "INSERT INTO operators ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
         ON CONFLICT (email) DO NOTHING"
    ))
    .bind(o.operator_id.as_str())
    .bind(o.email.as_str())
    .bind(o.role.as_str())
    .bind(merchants_column(&o.merchant_ids))
    .bind(o.password_hash.clone())
    .bind(o.totp_secret.clone())
    .bind(o.totp_required as i64)
    .bind(o.totp_last_step)
    .bind(o.setup_hash.clone())
    .bind(o.setup_expires_at)
    .bind(o.failed_logins)
    .bind(o.locked_until)
    .bind(o.created_by.as_str())
    .bind(o.created_at)
    .bind(o.disabled_at)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn lock_operator(conn: &mut Tx<'_>, operator_id: &str) -> Result<Option<OperatorRow>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM operators WHERE operator_id = $1{}", conn.backend().for_update());
    db::query(&sql).bind(operator_id).fetch_optional(&mut *conn).await?.as_ref().map(from_row).transpose()
}

/// Chooses the password (and keeps the TOTP key shown on the set-up page), once: the link's hash is
/// cleared in the same update. False if the link was used meanwhile or has expired.
pub async fn finish_setup(
    conn: &mut Tx<'_>,
    setup_hash: &str,
    password_hash: &str,
    totp_step: Option<i64>,
    now: i64,
) -> Result<Option<String>, StoreError> {
    db::query(
        "UPDATE operators SET password_hash = $1, totp_last_step = $2, setup_hash = NULL, setup_expires_at = NULL, \
         failed_logins = 0, locked_until = NULL \
         WHERE setup_hash = $3 AND setup_expires_at > $4 AND disabled_at IS NULL RETURNING operator_id",
    )
    .bind(password_hash)
    .bind(totp_step)
    .bind(setup_hash)
    .bind(now)
    .fetch_optional_scalar::<String>(&mut *conn)
    .await
}

/// Sets a password directly (`ebb dev`'s demo admin, whose password `dev.json` holds).
pub async fn set_password(conn: &mut Tx<'_>, operator_id: &str, password_hash: &str) -> Result<(), StoreError> {
    db::query("UPDATE operators SET password_hash = $1, failed_logins = 0, locked_until = NULL WHERE operator_id = $2")
        .bind(password_hash)
        .bind(operator_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A new set-up link (and a new TOTP key): the old password stops working until it is used.
pub async fn reset_setup(
    conn: &mut Tx<'_>,
    operator_id: &str,
    setup_hash: &str,
    expires_at: i64,
    totp_secret: &str,
) -> Result<bool, StoreError> {
    let done = db::query(
        "UPDATE operators SET password_hash = NULL, totp_secret = $1, totp_last_step = NULL, setup_hash = $2, \
         setup_expires_at = $3, failed_logins = 0, locked_until = NULL WHERE operator_id = $4 AND disabled_at IS NULL",
    )
    .bind(totp_secret)
    .bind(setup_hash)
    .bind(expires_at)
    .bind(operator_id)
    .execute(&mut *conn)
    .await?;
    delete_sessions_of(conn, operator_id).await?;
    Ok(done.rows_affected() == 1)
}

/// Counts a failed login; the `max_failures`-th in a row locks the account until `lock_until`.
/// Returns whether it is now locked.
pub async fn record_failed_login(
    conn: &mut Tx<'_>,
    operator_id: &str,
    max_failures: i64,
    lock_until: i64,
) -> Result<bool, StoreError> {
    let locked = db::query(
        "UPDATE operators SET failed_logins = CASE WHEN failed_logins + 1 >= $1 THEN 0 ELSE failed_logins + 1 END, \
         locked_until = CASE WHEN failed_logins + 1 >= $1 THEN $2 ELSE locked_until END \
         WHERE operator_id = $3 RETURNING locked_until",
    )
    .bind(max_failures)
    .bind(lock_until)
    .bind(operator_id)
    .fetch_optional_scalar::<Option<i64>>(&mut *conn)
    .await?
    .flatten();
    Ok(locked == Some(lock_until))
}

/// A login that passed: clears the failures and takes the TOTP time step, unless that step (or a
/// later one) was used already, so a code seen over a shoulder cannot be used again. False then.
pub async fn record_login(conn: &mut Tx<'_>, operator_id: &str, totp_step: Option<i64>) -> Result<bool, StoreError> {
    let done = db::query(
        "UPDATE operators SET failed_logins = 0, locked_until = NULL, totp_last_step = COALESCE($1, totp_last_step) \
         WHERE operator_id = $2 AND ($1 IS NULL OR totp_last_step IS NULL OR totp_last_step < $1)",
    )
    .bind(totp_step)
    .bind(operator_id)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn disable(conn: &mut Tx<'_>, operator_id: &str, now: i64) -> Result<bool, StoreError> {
    let done = db::query("UPDATE operators SET disabled_at = $1 WHERE operator_id = $2 AND disabled_at IS NULL")
        .bind(now)
        .bind(operator_id)
        .execute(&mut *conn)
        .await?;
    delete_sessions_of(conn, operator_id).await?;
    Ok(done.rows_affected() == 1)
}

// ---------------------------------------------------------------------------------------------------
// Sessions

#[derive(Debug, Clone)]
pub struct SessionRow {
    pub session_hash: String,
    pub operator_id: String,
    pub acting_merchant: Option<String>,
    pub client: String,
    pub created_at_ms: i64,
    pub last_seen_ms: i64,
    pub expires_at_ms: i64,
}

pub async fn insert_session(conn: &mut Tx<'_>, s: &SessionRow) -> Result<(), StoreError> {
    db::query(
        "INSERT INTO operator_sessions (session_hash, operator_id, acting_merchant, client, created_at_ms, \
         last_seen_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(s.session_hash.as_str())
    .bind(s.operator_id.as_str())
    .bind(s.acting_merchant.clone())
    .bind(s.client.as_str())
    .bind(s.created_at_ms)
    .bind(s.last_seen_ms)
    .bind(s.expires_at_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Marks a session used at `now_ms` (the idle expiry counts from here).
pub async fn touch_session(conn: &mut Tx<'_>, session_hash: &str, now_ms: i64) -> Result<(), StoreError> {
    db::query("UPDATE operator_sessions SET last_seen_ms = $1 WHERE session_hash = $2 AND last_seen_ms < $1")
        .bind(now_ms)
        .bind(session_hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn set_acting_merchant(conn: &mut Tx<'_>, session_hash: &str, merchant_id: &str) -> Result<(), StoreError> {
    db::query("UPDATE operator_sessions SET acting_merchant = $1 WHERE session_hash = $2")
        .bind(merchant_id)
        .bind(session_hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn delete_session(conn: &mut Tx<'_>, session_hash: &str) -> Result<(), StoreError> {
    db::query("DELETE FROM operator_sessions WHERE session_hash = $1").bind(session_hash).execute(&mut *conn).await?;
    Ok(())
}

async fn delete_sessions_of(conn: &mut Tx<'_>, operator_id: &str) -> Result<(), StoreError> {
    db::query("DELETE FROM operator_sessions WHERE operator_id = $1").bind(operator_id).execute(&mut *conn).await?;
    Ok(())
}

/// Forgets sessions past their absolute expiry or idle since `idle_before_ms`.
pub async fn prune_sessions(conn: &mut Tx<'_>, now_ms: i64, idle_before_ms: i64) -> Result<u64, StoreError> {
    Ok(db::query("DELETE FROM operator_sessions WHERE expires_at_ms <= $1 OR last_seen_ms < $2")
        .bind(now_ms)
        .bind(idle_before_ms)
        .execute(&mut *conn)
        .await?
        .rows_affected())
}

fn session_from_row(row: &impl Columns) -> Result<SessionRow, StoreError> {
    Ok(SessionRow {
        session_hash: row.col("session_hash")?,
        operator_id: row.col("operator_id")?,
        acting_merchant: row.col("acting_merchant")?,
        client: row.col("client")?,
        created_at_ms: row.col("created_at_ms")?,
        last_seen_ms: row.col("last_seen_ms")?,
        expires_at_ms: row.col("expires_at_ms")?,
    })
}

// ---------------------------------------------------------------------------------------------------
// The audit log

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub seq: i64,
    pub at_ms: i64,
    pub operator_id: Option<String>,
    pub email: String,
    /// `login`, `login_failed`, `refund.approve`, … (docs/CONSOLE.md lists them).
    pub action: String,
    /// The object acted on (a refund id, an operator's e-mail), or empty.
    pub subject: String,
    pub detail: String,
    pub client: String,
}

const AUDIT_COLUMNS: &str = "seq, at_ms, operator_id, email, action, subject, detail, client";

fn audit_from_row(row: &impl Columns) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        seq: row.col("seq")?,
        at_ms: row.col("at_ms")?,
        operator_id: row.col("operator_id")?,
        email: row.col("email")?,
        action: row.col("action")?,
        subject: row.col("subject")?,
        detail: row.col("detail")?,
        client: row.col("client")?,
    })
}

/// Appends to the audit log (`seq` is the database's).
pub async fn append_audit(conn: &mut Tx<'_>, e: &AuditEntry) -> Result<(), StoreError> {
    db::query(
        "INSERT INTO audit_log (at_ms, operator_id, email, action, subject, detail, client) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(e.at_ms)
    .bind(e.operator_id.clone())
    .bind(e.email.as_str())
    .bind(e.action.as_str())
    .bind(e.subject.as_str())
    .bind(e.detail.as_str())
    .bind(e.client.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub email: Option<String>,
    pub action: Option<String>,
    pub subject: Option<String>,
    pub min_at_ms: Option<i64>,
    pub max_at_ms: Option<i64>,
}

impl AuditFilter {
    fn sql(&self) -> Filter {
        let mut f = Filter::default();
        if let Some(v) = &self.email {
            f.eq("email", v);
        }
        if let Some(v) = &self.action {
            f.eq("action", v);
        }
        if let Some(v) = &self.subject {
            f.eq("subject", v);
        }
        if let Some(v) = self.min_at_ms {
            f.cmp_int("at_ms", ">=", v);
        }
        if let Some(v) = self.max_at_ms {
            f.cmp_int("at_ms", "<", v);
        }
        f
    }
}

impl Store {
    pub async fn operator(&self, operator_id: &str) -> Result<Option<OperatorRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM operators WHERE operator_id = $1");
        sqlx::query(&sql).bind(operator_id).fetch_optional(self.pool()).await?.as_ref().map(from_row).transpose()
    }

    pub async fn operator_by_email(&self, email: &str) -> Result<Option<OperatorRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM operators WHERE email = $1");
        sqlx::query(&sql).bind(email).fetch_optional(self.pool()).await?.as_ref().map(from_row).transpose()
    }

    pub async fn operator_by_setup(&self, setup_hash: &str) -> Result<Option<OperatorRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM operators WHERE setup_hash = $1");
        sqlx::query(&sql).bind(setup_hash).fetch_optional(self.pool()).await?.as_ref().map(from_row).transpose()
    }

    /// Every operator, by e-mail (a console has tens, not thousands).
    pub async fn operators(&self) -> Result<Vec<OperatorRow>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM operators ORDER BY email");
        sqlx::query(&sql).fetch_all(self.pool()).await?.iter().map(from_row).collect()
    }

    /// A session with its operator, in one read.
    pub async fn operator_session(&self, session_hash: &str) -> Result<Option<(SessionRow, OperatorRow)>, StoreError> {
        let cols: String = COLUMNS.split(", ").map(|c| format!("o.{c} AS {c}")).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT s.session_hash AS session_hash, s.acting_merchant AS acting_merchant, s.client AS client, \
             s.created_at_ms AS created_at_ms, s.last_seen_ms AS last_seen_ms, s.expires_at_ms AS expires_at_ms, \
             {cols} FROM operator_sessions s JOIN operators o ON o.operator_id = s.operator_id \
             WHERE s.session_hash = $1"
        );
        let row = sqlx::query(&sql).bind(session_hash).fetch_optional(self.pool()).await?;
        row.as_ref().map(|r| Ok((session_from_row(r)?, from_row(r)?))).transpose()
    }

    /// The audit log, newest first, paged by `seq`.
    pub async fn audit_log(
        &self,
        filter: &AuditFilter,
        page_req: &PageRequest,
    ) -> Result<Page<AuditEntry>, StoreError> {
        page::list(self.pool(), "audit_log", AUDIT_COLUMNS, &filter.sql(), page_req, audit_from_row).await
    }

    /// Up to `limit` entries after `after_seq`, oldest first: the CSV export reads the log in these
    /// batches, so a year of it never sits in memory.
    pub async fn audit_batch(
        &self,
        filter: &AuditFilter,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut f = filter.sql();
        f.cmp_int("seq", ">", after_seq);
        let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_log{} ORDER BY seq LIMIT {limit}", f.where_sql());
        f.bind_all(sqlx::query(&sql)).fetch_all(self.pool()).await?.iter().map(audit_from_row).collect()
    }
}
