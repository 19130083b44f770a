-- Refund links (issue 5): a one-time URL through which the customer submits the receiving address of a
-- refund. The refund exists (and its funds are reserved) from the link's creation; the link only
-- collects the address. Only a hash of the link's token is stored, so a database leak reveals no link.

CREATE TABLE refund_links (
    link_id           TEXT PRIMARY KEY,
    token_hash        TEXT NOT NULL UNIQUE,   -- hex SHA-256 of the token in the URL
    refund_id         TEXT NOT NULL REFERENCES refunds (refund_id),
    status            TEXT NOT NULL,          -- Active, Used (an address was submitted), Replaced (a newer link exists)
    default_address   TEXT NOT NULL,          -- the original payer, pre-filled; '' when unknown
    source_tx_id      TEXT,                   -- the pay-in the link was made for, when given by transaction_id
    developer_name    TEXT,
    logo_url          TEXT,
    return_url        TEXT,
    created_at_ms     INTEGER NOT NULL,
    expires_at_ms     INTEGER NOT NULL,
    opened_at_ms      INTEGER,
    submitted_at_ms   INTEGER,
    submitted_address TEXT
);
CREATE INDEX refund_links_refund ON refund_links (refund_id, status);
