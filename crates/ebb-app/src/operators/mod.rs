//! The operator console's people: accounts and roles, set-up links, logins with a password and a
//! second factor, sessions, lockout, what each role may do, and the audit log (docs/CONSOLE.md).
//!
//! An operator acts through the same use cases as an API key: [`actor_of`] turns a signed-in operator
//! into an [`Actor`] whose `initiator` is `operator:<e-mail>` (so the maker-checker rule of
//! `approvals::approve` holds between operators as between keys) and whose `audit` makes the use case
//! append its audit entry in the transaction of the change.

use std::time::Duration;

use ebb_core::clock::{now_ms, now_s};
use ebb_store::keys::KeyRole;
use ebb_store::operators::{self as repo, AuditEntry, OperatorRole, OperatorRow, SessionRow};
use ebb_store::{ids, Store, StoreError, Tx};
use rand::RngCore;

use crate::{secrets, Actor, AppError, AppResult};

mod passwords;
mod totp;
use passwords::{hash_password, verify_password};
pub use totp::{base32, totp, totp_step_of, TOTP_STEP_S};

/// The shortest password an operator may choose (NIST SP 800-63B's floor is 8; money needs more).
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longer input is refused before hashing (argon2 would take it, but no one types this much).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// How sessions and logins behave (`[console]` in the configuration file).
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    /// A session unused this long ends.
    pub session_idle: Duration,
    /// A session ends this long after login, used or not.
    pub session_max: Duration,
    /// Failed logins in a row that lock an account...
    pub max_failed_logins: i64,
    /// ...for this long.
    pub lockout: Duration,
    /// How long a set-up link works.
    pub setup_ttl: Duration,
    /// The login page says the demo admin needs no second factor (`ebb dev` only).
    pub dev_notice: bool,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            session_idle: Duration::from_secs(30 * 60),
            session_max: Duration::from_secs(12 * 3600),
            max_failed_logins: 5,
            lockout: Duration::from_secs(15 * 60),
            setup_ttl: Duration::from_secs(24 * 3600),
            dev_notice: false,
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Roles

/// Something an operator does in the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// See orders, refunds, approvals, webhooks, balances, and export them as CSV.
    Read,
    /// Create refunds and refund links, cancel refunds, send a webhook delivery again.
    Support,
    /// Approve or reject refunds, decide on held pay-ins.
    Approve,
    /// Add, reset and disable operators; read and export the audit log.
    Administer,
}

impl Permission {
    pub const ALL: [Permission; 4] =
        [Permission::Read, Permission::Support, Permission::Approve, Permission::Administer];
}

/// The console's one permission table.
pub fn allows(role: OperatorRole, p: Permission) -> bool {
    use OperatorRole::*;
    match p {
        Permission::Read => true,
        Permission::Support => matches!(role, Admin | Support),
        Permission::Approve => matches!(role, Admin | Approver),
        Permission::Administer => role == Admin,
    }
}

/// What the audit log needs to know of the operator behind an [`Actor`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditTrail {
    pub operator_id: String,
    pub email: String,
    /// The operator's role, which the use cases that an API key's role cannot express (dispositions of
    /// held funds) check again.
    pub role: OperatorRole,
    /// The client address the request came from.
    pub client: String,
}

/// Appends an operator's audit entry inside the transaction of the change it records; nothing when
/// the actor is no operator (an API key or the CLI, whose changes the objects themselves record).
pub(crate) async fn audit_in(
    tx: &mut Tx<'_>,
    trail: Option<&AuditTrail>,
    action: &str,
    subject: &str,
    detail: &str,
) -> Result<(), StoreError> {
    let Some(t) = trail else { return Ok(()) };
    repo::append_audit(tx, &entry(Some(t.operator_id.clone()), &t.email, action, subject, detail, &t.client)).await
}

fn entry(
    operator_id: Option<String>,
    email: &str,
    action: &str,
    subject: &str,
    detail: &str,
    client: &str,
) -> AuditEntry {
    AuditEntry {
        seq: 0,
        at_ms: now_ms(),
        operator_id,
        email: email.to_owned(),
        action: action.to_owned(),
        subject: subject.to_owned(),
        detail: detail.to_owned(),
        client: client.to_owned(),
    }
}

/// Appends an audit entry on its own, for what changes nothing else (a login, an export).
pub async fn audit(store: &Store, trail: &AuditTrail, action: &str, subject: &str, detail: &str) -> AppResult<()> {
    let e = entry(Some(trail.operator_id.clone()), &trail.email, action, subject, detail, &trail.client);
    store.write(move |tx| Box::pin(async move { repo::append_audit(tx, &e).await })).await?;
    Ok(())
}

/// The actor a signed-in operator acts as. An operator limited to merchants acts for one of them at a
/// time (`acting_merchant`, chosen in the console); the others see every merchant.
pub fn actor_of(op: &OperatorRow, acting_merchant: Option<&str>, client: &str) -> Actor {
    let merchant = match op.merchant_ids.as_slice() {
        [] => None,
        ids => Some(acting_merchant.filter(|m| ids.iter().any(|i| i == m)).unwrap_or(&ids[0]).to_owned()),
    };
    Actor {
        merchant,
        initiator: format!("operator:{}", op.email),
        role: match op.role {
            OperatorRole::Admin | OperatorRole::Support => KeyRole::Operator,
            OperatorRole::Approver | OperatorRole::Viewer => KeyRole::Approver,
        },
        audit: Some(AuditTrail {
            operator_id: op.operator_id.clone(),
            email: op.email.clone(),
            role: op.role,
            client: client.to_owned(),
        }),
    }
}

fn totp_key(op: &OperatorRow) -> Option<Vec<u8>> {
    op.totp_secret.as_deref().and_then(|h| hex::decode(h).ok())
}

// ---------------------------------------------------------------------------------------------------
// Accounts

/// An operator just added: the set-up token goes into the link the new operator opens once.
pub struct NewOperator {
    pub operator: OperatorRow,
    pub setup_token: String,
}

fn new_totp_secret() -> String {
    let mut key = [0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut key);
    hex::encode(key)
}

/// Adds an operator, who chooses a password through the set-up link made of the returned token.
/// Admins and approvers act for the PSP and so for every merchant; support agents and viewers may be
/// limited to some.
pub async fn add(
    store: &Store,
    settings: &ConsoleSettings,
    email: &str,
    role: OperatorRole,
    merchant_ids: Vec<String>,
    created_by: &str,
) -> AppResult<NewOperator> {
    let email = crate::mails::check_address("email", email)?.to_lowercase();
    if !merchant_ids.is_empty() && matches!(role, OperatorRole::Admin | OperatorRole::Approver) {
        return Err(AppError::Invalid(format!(
            "an {role} acts for the PSP and so for every merchant; only support and viewer operators are limited \
             to merchants"
        )));
    }
    let mut merchants = merchant_ids;
    merchants.sort();
    merchants.dedup();
    for m in &merchants {
        if !store.merchant_exists(m).await? {
            return Err(AppError::not_found("merchant", m));
        }
    }
    let setup_token = secrets::generate();
    let operator = OperatorRow {
        operator_id: ids::new_id("OP"),
        email: email.clone(),
        role,
        merchant_ids: merchants,
        password_hash: None,
        totp_secret: Some(new_totp_secret()),
        totp_required: true,
        totp_last_step: None,
        setup_hash: Some(secrets::hash(&setup_token)),
        setup_expires_at: Some(now_s() + settings.setup_ttl.as_secs() as i64),
        failed_logins: 0,
        locked_until: None,
        created_by: created_by.to_owned(),
        created_at: now_s(),
        disabled_at: None,
    };
    let row = operator.clone();
    let by = created_by.to_owned();
    let inserted = store
        .write(move |tx| {
            Box::pin(async move {
                let inserted = repo::insert_operator(tx, &row).await?;
                if inserted {
                    let detail = format!("role {}, merchants {}", row.role, merchants_text(&row.merchant_ids));
                    repo::append_audit(tx, &entry(None, &by, "operator.add", &row.email, &detail, "cli")).await?;
                }
                Ok(inserted)
            })
        })
        .await?;
    if !inserted {
        return Err(AppError::InvalidState(format!("an operator with e-mail {email} exists already")));
    }
    Ok(NewOperator { operator, setup_token })
}

fn merchants_text(ids: &[String]) -> String {
    if ids.is_empty() {
        "all".into()
    } else {
        ids.join(" ")
    }
}

/// `ebb dev`'s demo admin: set up at once with `password` and no second factor (the login page says
/// so). Nothing else makes an operator without one.
pub async fn ensure_dev_admin(store: &Store, email: &str, password: &str) -> AppResult<()> {
    let hash = hash_password(password.to_owned()).await?;
    let existing = store.operator_by_email(email).await?;
    if existing.is_some() {
        let op_id = existing.map(|o| o.operator_id).unwrap_or_default();
        store
            .write(move |tx| {
                Box::pin(async move {
                    repo::set_password(tx, &op_id, &hash).await?;
                    Ok(())
                })
            })
            .await?;
        return Ok(());
    }
    let row = OperatorRow {
        operator_id: ids::new_id("OP"),
        email: email.to_owned(),
        role: OperatorRole::Admin,
        merchant_ids: Vec::new(),
        password_hash: Some(hash),
        totp_secret: None,
        totp_required: false,
        totp_last_step: None,
        setup_hash: None,
        setup_expires_at: None,
        failed_logins: 0,
        locked_until: None,
        created_by: "ebb dev".into(),
        created_at: now_s(),
        disabled_at: None,
    };
    store.write(move |tx| Box::pin(async move { repo::insert_operator(tx, &row).await })).await?;
    Ok(())
}

/// What the set-up page shows: who is being set up and the key for the authenticator app.
pub struct SetupView {
    pub email: String,
    pub role: OperatorRole,
    /// Base32, as authenticator apps take it.
    pub totp_key: String,
    /// `otpauth://totp/…`, for apps that take a link.
    pub totp_uri: String,
}

async fn operator_of_setup(store: &Store, token: &str) -> AppResult<Option<OperatorRow>> {
    if !secrets::well_formed(token) {
        return Ok(None);
    }
    let op = store.operator_by_setup(&secrets::hash(token)).await?;
    Ok(op.filter(|o| o.disabled_at.is_none() && o.setup_expires_at.is_some_and(|e| e > now_s())))
}

pub async fn setup_view(store: &Store, token: &str) -> AppResult<Option<SetupView>> {
    let Some(op) = operator_of_setup(store, token).await? else { return Ok(None) };
    let key = base32(&totp_key(&op).unwrap_or_default());
    let uri = format!("otpauth://totp/ebb:{}?secret={key}&issuer=ebb&algorithm=SHA1&digits=6&period=30", op.email);
    Ok(Some(SetupView { email: op.email, role: op.role, totp_key: key, totp_uri: uri }))
}

/// Why a set-up was refused (shown on the set-up page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetupRefusal {
    /// The link is unknown, used or expired.
    InvalidLink,
    PasswordTooShort,
    PasswordTooLong,
    PasswordsDiffer,
    WrongCode,
}

/// Chooses the password, after proving the authenticator app has the key (a current code).
pub async fn finish_setup(
    store: &Store,
    token: &str,
    password: &str,
    repeated: &str,
    code: &str,
    client: &str,
) -> AppResult<Result<OperatorRow, SetupRefusal>> {
    let Some(op) = operator_of_setup(store, token).await? else { return Ok(Err(SetupRefusal::InvalidLink)) };
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Ok(Err(SetupRefusal::PasswordTooShort));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Ok(Err(SetupRefusal::PasswordTooLong));
    }
    if password != repeated {
        return Ok(Err(SetupRefusal::PasswordsDiffer));
    }
    let step = match totp_key(&op) {
        Some(key) => match totp_step_of(&key, code, now_s()) {
            Some(s) => Some(s),
            None => return Ok(Err(SetupRefusal::WrongCode)),
        },
        None => None,
    };
    let hash = hash_password(password.to_owned()).await?;
    let (setup_hash, email, client) = (secrets::hash(token), op.email.clone(), client.to_owned());
    let done = store
        .write(move |tx| {
            Box::pin(async move {
                let id = repo::finish_setup(tx, &setup_hash, &hash, step, now_s()).await?;
                if let Some(id) = &id {
                    repo::append_audit(tx, &entry(Some(id.clone()), &email, "operator.setup", &email, "", &client))
                        .await?;
                }
                Ok(id)
            })
        })
        .await?;
    Ok(match done {
        Some(_) => Ok(op),
        None => Err(SetupRefusal::InvalidLink),
    })
}

/// A new set-up link for an operator (a forgotten password or a lost phone); its sessions end.
pub async fn reset(
    store: &Store,
    settings: &ConsoleSettings,
    by: Option<&AuditTrail>,
    operator_id: &str,
) -> AppResult<(OperatorRow, String)> {
    let op = store.operator(operator_id).await?.ok_or_else(|| AppError::not_found("operator", operator_id))?;
    if op.disabled_at.is_some() {
        return Err(AppError::InvalidState(format!("operator {} is disabled", op.email)));
    }
    if !op.totp_required {
        return Err(AppError::InvalidState(format!("{} is ebb dev's demo admin; ebb dev sets its password", op.email)));
    }
    let token = secrets::generate();
    let (hash, expires, secret) =
        (secrets::hash(&token), now_s() + settings.setup_ttl.as_secs() as i64, new_totp_secret());
    let (id, email, by) = (op.operator_id.clone(), op.email.clone(), by.cloned());
    store
        .write(move |tx| {
            Box::pin(async move {
                if !repo::reset_setup(tx, &id, &hash, expires, &secret).await? {
                    return Err(StoreError::InvalidState(format!("operator {email} is disabled")));
                }
                match &by {
                    Some(t) => audit_in(tx, Some(t), "operator.reset", &email, "").await,
                    None => repo::append_audit(tx, &entry(None, "cli", "operator.reset", &email, "", "cli")).await,
                }
            })
        })
        .await?;
    Ok((op, token))
}

/// Disables an operator: its sessions end and it can no longer log in. An admin cannot disable itself
/// (so that the last admin is not locked out by a slip).
pub async fn disable(store: &Store, by: Option<&AuditTrail>, operator_id: &str) -> AppResult<OperatorRow> {
    let op = store.operator(operator_id).await?.ok_or_else(|| AppError::not_found("operator", operator_id))?;
    if by.is_some_and(|t| t.operator_id == op.operator_id) {
        return Err(AppError::Forbidden("an operator cannot disable itself".into()));
    }
    let (id, email, by) = (op.operator_id.clone(), op.email.clone(), by.cloned());
    store
        .write(move |tx| {
            Box::pin(async move {
                repo::disable(tx, &id, now_s()).await?;
                match &by {
                    Some(t) => audit_in(tx, Some(t), "operator.disable", &email, "").await,
                    None => repo::append_audit(tx, &entry(None, "cli", "operator.disable", &email, "", "cli")).await,
                }
            })
        })
        .await?;
    Ok(op)
}

// ---------------------------------------------------------------------------------------------------
// Logins and sessions

/// Why a login was refused. The page says no more than "wrong e-mail, password or code" for
/// [`LoginRefusal::Wrong`], whichever of the three it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginRefusal {
    Wrong,
    /// Too many failed logins in a row; tried again after this time (seconds).
    Locked {
        until: i64,
    },
}

/// A session just opened: the cookie's value.
pub struct NewSession {
    pub token: String,
    pub operator: OperatorRow,
}

/// Logs an operator in: the password, then (where required) a TOTP code not used before. Every
/// attempt is in the audit log; `max_failed_logins` failures in a row lock the account for `lockout`.
pub async fn login(
    store: &Store,
    settings: &ConsoleSettings,
    email: &str,
    password: &str,
    code: &str,
    client: &str,
) -> AppResult<Result<NewSession, LoginRefusal>> {
    let email = email.trim().to_lowercase();
    let op = if email.len() <= 254 { store.operator_by_email(&email).await? } else { None };
    let op = op.filter(OperatorRow::can_log_in);
    let now = now_s();
    if let Some(until) = op.as_ref().and_then(|o| o.locked_until).filter(|u| *u > now) {
        let e = entry(op.as_ref().map(|o| o.operator_id.clone()), &email, "login.locked", &email, "", client);
        store.write(move |tx| Box::pin(async move { repo::append_audit(tx, &e).await })).await?;
        return Ok(Err(LoginRefusal::Locked { until }));
    }
    let password_ok = password.len() <= MAX_PASSWORD_BYTES
        && verify_password(password.to_owned(), op.as_ref().and_then(|o| o.password_hash.clone())).await?;
    let Some(op) = op else {
        let e = entry(None, &email, "login.failed", &email, "no such operator", client);
        store.write(move |tx| Box::pin(async move { repo::append_audit(tx, &e).await })).await?;
        return Ok(Err(LoginRefusal::Wrong));
    };
    let step = match (op.totp_required, totp_key(&op)) {
        (true, Some(key)) => totp_step_of(&key, code, now),
        (true, None) => None,
        (false, _) => Some(-1),
    };
    let id = op.operator_id.clone();
    let client_s = client.to_owned();
    if !password_ok || step.is_none() {
        let why = if !password_ok { "wrong password" } else { "wrong code" };
        let (max, until) = (settings.max_failed_logins, now + settings.lockout.as_secs() as i64);
        let locked = store
            .write(move |tx| {
                Box::pin(async move {
                    let locked = repo::record_failed_login(tx, &id, max, until).await?;
                    let action = if locked { "login.lockout" } else { "login.failed" };
                    repo::append_audit(tx, &entry(Some(id), &email, action, &email, why, &client_s)).await?;
                    Ok(locked)
                })
            })
            .await?;
        return Ok(Err(if locked { LoginRefusal::Locked { until } } else { LoginRefusal::Wrong }));
    }
    let step = step.filter(|s| *s >= 0);
    let token = secrets::generate();
    let now_ms = now_ms();
    let session = SessionRow {
        session_hash: secrets::hash(&token),
        operator_id: op.operator_id.clone(),
        acting_merchant: op.merchant_ids.first().cloned(),
        client: client.to_owned(),
        created_at_ms: now_ms,
        last_seen_ms: now_ms,
        expires_at_ms: now_ms + settings.session_max.as_millis() as i64,
    };
    let (max, until) = (settings.max_failed_logins, now + settings.lockout.as_secs() as i64);
    let idle_ms = settings.session_idle.as_millis() as i64;
    let opened = store
        .write(move |tx| {
            Box::pin(async move {
                if !repo::record_login(tx, &id, step).await? {
                    // The code was right but used already: a replay counts as a failure.
                    repo::record_failed_login(tx, &id, max, until).await?;
                    repo::append_audit(
                        tx,
                        &entry(Some(id), &email, "login.failed", &email, "code used before", &client_s),
                    )
                    .await?;
                    return Ok(false);
                }
                // Sessions end lazily when used; a login also forgets everyone's that ended unused.
                repo::prune_sessions(tx, now_ms, now_ms - idle_ms).await?;
                repo::insert_session(tx, &session).await?;
                repo::append_audit(tx, &entry(Some(id), &email, "login", &email, "", &client_s)).await?;
                Ok(true)
            })
        })
        .await?;
    if !opened {
        return Ok(Err(LoginRefusal::Wrong));
    }
    Ok(Ok(NewSession { token, operator: op }))
}

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Signed {
    pub session: SessionRow,
    pub operator: OperatorRow,
}

/// The session of a cookie, if it is open: not logged out, not past its absolute or idle expiry, its
/// operator still able to log in. Using it moves its idle expiry (written at most once a minute).
pub async fn session(store: &Store, settings: &ConsoleSettings, token: &str) -> AppResult<Option<Signed>> {
    if !secrets::well_formed(token) {
        return Ok(None);
    }
    let hash = secrets::hash(token);
    let Some((session, operator)) = store.operator_session(&hash).await? else { return Ok(None) };
    let now = now_ms();
    let idle_ms = settings.session_idle.as_millis() as i64;
    if now >= session.expires_at_ms || now - session.last_seen_ms >= idle_ms || !operator.can_log_in() {
        store.write(move |tx| Box::pin(async move { repo::delete_session(tx, &hash).await })).await?;
        return Ok(None);
    }
    if now - session.last_seen_ms >= (idle_ms / 30).min(60_000) {
        store.write(move |tx| Box::pin(async move { repo::touch_session(tx, &hash, now).await })).await?;
    }
    Ok(Some(Signed { session, operator }))
}

pub async fn logout(store: &Store, signed: &Signed, client: &str) -> AppResult<()> {
    let hash = signed.session.session_hash.clone();
    let e = entry(Some(signed.operator.operator_id.clone()), &signed.operator.email, "logout", "", "", client);
    store
        .write(move |tx| {
            Box::pin(async move {
                repo::delete_session(tx, &hash).await?;
                repo::append_audit(tx, &e).await
            })
        })
        .await?;
    Ok(())
}

/// Switches the merchant a merchant-limited operator acts for.
pub async fn act_for(store: &Store, signed: &Signed, merchant_id: &str) -> AppResult<()> {
    if !signed.operator.merchant_ids.iter().any(|m| m == merchant_id) {
        return Err(AppError::not_found("merchant", merchant_id));
    }
    let (hash, m) = (signed.session.session_hash.clone(), merchant_id.to_owned());
    store.write(move |tx| Box::pin(async move { repo::set_acting_merchant(tx, &hash, &m).await })).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_may_do_what_its_name_says() {
        use OperatorRole::*;
        let table: Vec<(OperatorRole, Vec<Permission>)> = vec![
            (Admin, Permission::ALL.to_vec()),
            (Approver, vec![Permission::Read, Permission::Approve]),
            (Support, vec![Permission::Read, Permission::Support]),
            (Viewer, vec![Permission::Read]),
        ];
        for (role, allowed) in table {
            for p in Permission::ALL {
                assert_eq!(allows(role, p), allowed.contains(&p), "{role} {p:?}");
            }
        }
    }

    #[test]
    fn a_merchant_limited_operator_acts_for_one_of_its_merchants() {
        let op = OperatorRow {
            operator_id: "OP1".into(),
            email: "a@example.com".into(),
            role: OperatorRole::Support,
            merchant_ids: vec!["M1".into(), "M2".into()],
            password_hash: None,
            totp_secret: None,
            totp_required: true,
            totp_last_step: None,
            setup_hash: None,
            setup_expires_at: None,
            failed_logins: 0,
            locked_until: None,
            created_by: "cli".into(),
            created_at: 0,
            disabled_at: None,
        };
        assert_eq!(actor_of(&op, None, "ip").merchant.as_deref(), Some("M1"));
        assert_eq!(actor_of(&op, Some("M2"), "ip").merchant.as_deref(), Some("M2"));
        assert_eq!(actor_of(&op, Some("M9"), "ip").merchant.as_deref(), Some("M1"), "not one of its merchants");
        let admin = OperatorRow { role: OperatorRole::Admin, merchant_ids: vec![], ..op };
        let a = actor_of(&admin, Some("M2"), "ip");
        assert_eq!(a.merchant, None);
        assert_eq!(a.initiator, "operator:a@example.com");
    }
}
