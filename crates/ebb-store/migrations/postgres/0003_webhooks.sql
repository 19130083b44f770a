-- Webhooks (issue 4): an event log written in the same transaction as every state change it reports,
-- endpoints, one delivery per (event, endpoint) with its retry state, and a log of every attempt.

CREATE TABLE webhook_endpoints (
    seq               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id       TEXT NOT NULL UNIQUE,
    url               TEXT NOT NULL,
    description       TEXT NOT NULL,
    -- The subscribed event types as ",type,type," so one LIKE finds an endpoint by type.
    subscribed_events TEXT NOT NULL,
    -- STATUS_ACTIVE or STATUS_INACTIVE.
    status            TEXT NOT NULL,
    -- Why ebb disabled the endpoint by itself (a 410 answer); NULL otherwise.
    disabled_reason   TEXT,
    -- The Standard Webhooks secret (whsec_…) when that signature is enabled; NULL otherwise.
    signing_secret    TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

-- Every event ebb ever raised, whether or not an endpoint wanted it. `seq` orders events; for one
-- subject (a refund with its payout legs, an order with its pay-ins) it increases with each change.
CREATE TABLE events (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id      TEXT NOT NULL UNIQUE,
    event_type    TEXT NOT NULL,
    -- refund | order | transaction | test: how to read `snapshot`.
    kind          TEXT NOT NULL,
    subject_id    TEXT NOT NULL,
    -- The object as it was right after the change, as JSON.
    snapshot      TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX events_subject ON events (subject_id, seq);

CREATE TABLE webhook_deliveries (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id     TEXT NOT NULL REFERENCES webhook_endpoints (endpoint_id),
    event_seq       BIGINT NOT NULL REFERENCES events (seq),
    event_id        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    subject_id      TEXT NOT NULL,
    -- Retrying (until delivered or out of tries) | Success | Failed.
    status          TEXT NOT NULL,
    attempts        BIGINT NOT NULL,
    retries_left    BIGINT NOT NULL,
    next_attempt_ms BIGINT NOT NULL,
    -- A dispatcher holds the delivery while an attempt is in flight; another may take it only after
    -- `lease_until_ms`.
    lease_owner     TEXT,
    lease_until_ms  BIGINT,
    created_at_ms   BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL,
    UNIQUE (endpoint_id, event_seq)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_ms) WHERE status = 'Retrying';
CREATE INDEX webhook_deliveries_order ON webhook_deliveries (endpoint_id, subject_id, event_seq) WHERE status = 'Retrying';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, seq);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);

CREATE TABLE webhook_attempts (
    seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    attempt_id       TEXT NOT NULL UNIQUE,
    delivery_seq     BIGINT NOT NULL REFERENCES webhook_deliveries (seq),
    created_at_ms    BIGINT NOT NULL,
    request_headers  TEXT NOT NULL,
    request_body     TEXT NOT NULL,
    response_status  BIGINT,
    response_body    TEXT,
    response_time_ms BIGINT,
    success          BIGINT NOT NULL,
    failure_reason   TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_seq, seq);

-- A delivery with its event and endpoint, for listing.
CREATE VIEW webhook_delivery_view AS
    SELECT d.seq, d.endpoint_id, d.event_id, d.event_type, d.subject_id, d.status, d.attempts, d.retries_left,
           d.next_attempt_ms, d.event_seq, e.kind, e.snapshot, e.created_at_ms, w.url
    FROM webhook_deliveries d
    JOIN events e ON e.seq = d.event_seq
    JOIN webhook_endpoints w ON w.endpoint_id = d.endpoint_id;
