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
