-- The operator console's people: accounts, their sessions, and the audit log of what they did.
--
-- role: admin | approver | support | viewer. merchant_ids: NULL for every merchant, else the
-- space-separated merchants a support agent or viewer works for. A password is an argon2id PHC
-- string. totp_required is 1, or 0 for `ebb dev`'s demo admin only. A TOTP secret is 20 random bytes
-- in hex (RFC 6238: SHA-1, 30 s, 6 digits); totp_last_step is the last time step accepted, so that a
-- code works once. An account is set up through a one-time link (only the SHA-256 of its token is
-- kept, until it is used or expires).
CREATE TABLE operators (
    operator_id      TEXT PRIMARY KEY,
    email            TEXT NOT NULL UNIQUE,
    role             TEXT NOT NULL,
    merchant_ids     TEXT,
    password_hash    TEXT,
    totp_secret      TEXT,
    totp_required    BIGINT NOT NULL,
    totp_last_step   BIGINT,
    setup_hash       TEXT UNIQUE,
    setup_expires_at BIGINT,
    failed_logins    BIGINT NOT NULL DEFAULT 0,
    locked_until     BIGINT,
    created_by       TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    disabled_at      BIGINT
);

-- A signed-in browser: the SHA-256 of its cookie, until logout, idle expiry or absolute expiry
-- (milliseconds). acting_merchant: the merchant a merchant-limited operator works on now.
CREATE TABLE operator_sessions (
    session_hash    TEXT PRIMARY KEY,
    operator_id     TEXT NOT NULL REFERENCES operators (operator_id),
    acting_merchant TEXT,
    client          TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    last_seen_ms    BIGINT NOT NULL,
    expires_at_ms   BIGINT NOT NULL
);
CREATE INDEX operator_sessions_operator ON operator_sessions (operator_id);

-- Every operator action and every login, failed ones too: who (the e-mail as it was then), what, on
-- which object, when (ms), from which client address. Append-only: the database refuses to change or
-- delete a row.
CREATE TABLE audit_log (
    seq        BIGSERIAL PRIMARY KEY,
    at_ms      BIGINT NOT NULL,
    operator_id TEXT,
    email      TEXT NOT NULL,
    action     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    detail     TEXT NOT NULL,
    client     TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at_ms);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- A refund's page in the console lists the webhook deliveries of its events.
CREATE INDEX webhook_deliveries_subject ON webhook_deliveries (subject_id);
