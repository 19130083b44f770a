-- Per-object callbacks (CoinGate's `callback_url`), delivered by the webhook dispatcher.
--
-- A callback URL is a webhook endpoint of its own body format, made the first time an object names it
-- and shared by every object that names it again in that format. It subscribes to no event type:
-- `callback_subscriptions` sends it the events of the objects that named it, and the fan-out of
-- `events::raise` reads both. Its deliveries have the retries, the attempt log and the replay of any
-- other endpoint's.
--
-- cobo: Cobo's webhook envelope (JSON); coingate_form / coingate_json: CoinGate's callback fields,
-- form-encoded or as JSON.
ALTER TABLE webhook_endpoints ADD COLUMN format TEXT NOT NULL DEFAULT 'cobo';
CREATE UNIQUE INDEX webhook_endpoints_callback_url ON webhook_endpoints (format, url) WHERE format <> 'cobo';

-- The events of `subject_id` of type `event_type` also go to `endpoint_id` (one callback URL per
-- object and type).
CREATE TABLE callback_subscriptions (
    subject_id  TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (endpoint_id),
    PRIMARY KEY (subject_id, event_type)
);

-- How a merchant's CoinGate token wants its callbacks: coingate_form (CoinGate's default) or
-- coingate_json; an order keeps the format of the token that made it, for its checkout to subscribe with.
ALTER TABLE merchant_tokens ADD COLUMN callback_format TEXT NOT NULL DEFAULT 'coingate_form';
ALTER TABLE coingate_orders ADD COLUMN callback_format TEXT NOT NULL DEFAULT 'coingate_form';

DROP VIEW webhook_delivery_view;
CREATE VIEW webhook_delivery_view AS
    SELECT d.seq, d.endpoint_id, d.event_id, d.event_type, d.subject_id, d.status, d.attempts, d.retries_left,
           d.next_attempt_ms, d.event_seq, e.kind, e.snapshot, e.created_at_ms, w.url, w.format
    FROM webhook_deliveries d
    JOIN events e ON e.seq = d.event_seq
    JOIN webhook_endpoints w ON w.endpoint_id = d.endpoint_id;

-- Customer e-mail (docs/MAIL.md). A merchant opts in with the language its customers are written in
-- (en or zh; NULL: ebb e-mails none of its customers).
ALTER TABLE merchants ADD COLUMN customer_mail TEXT;

-- The events of type `event_type` of `subject_id` are also e-mailed to `to_address` (a refund's
-- status changes, to the customer it pays).
CREATE TABLE mail_subscriptions (
    subject_id  TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    to_address  TEXT NOT NULL,
    locale      TEXT NOT NULL,
    PRIMARY KEY (subject_id, event_type, to_address)
);

-- The mail outbox: written in the transaction of what it tells, sent by the mail worker. `kind`:
-- event (an event's news, `event_seq`), address_confirmation or refund_link (a refund link's URL,
-- whose token is in `link_token` until the mail is sent or given up: only its hash is kept
-- elsewhere). Pending until Sent, Skipped (nothing to say about that change) or Failed (out of tries).
CREATE TABLE mails (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT NOT NULL,
    subject_id      TEXT NOT NULL,
    event_seq       INTEGER REFERENCES events (seq),
    to_address      TEXT NOT NULL,
    locale          TEXT NOT NULL,
    link_token      TEXT,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until_ms  INTEGER,
    last_error      TEXT,
    -- The mail as sent (headers and text, a link's token cut out).
    message         TEXT,
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    UNIQUE (event_seq, to_address)
);
CREATE INDEX mails_due ON mails (next_attempt_ms) WHERE status = 'Pending';
CREATE INDEX mails_subject ON mails (subject_id, seq);

-- A CoinGate refund whose customer confirms its address by e-mail: the address to confirm (the refund
-- has none until the customer submits it through the link).
ALTER TABLE coingate_refunds ADD COLUMN address_to_confirm TEXT;
