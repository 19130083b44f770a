-- The KYT refund API (issue 15): clients that authenticate with an id and a secret for a bearer token,
-- and the crypto refunds they make of held pay-ins. Secrets and tokens are stored as SHA-256 hashes
-- (both are 256-bit random values, so a slow hash would add nothing).
CREATE TABLE api_clients (
    client_id     TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    secret_hash   TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    revoked_at    BIGINT
);

CREATE TABLE access_tokens (
    token_hash     TEXT PRIMARY KEY,
    client_id      TEXT NOT NULL REFERENCES api_clients (client_id),
    created_at_ms  BIGINT NOT NULL,
    expires_at_ms  BIGINT NOT NULL
);
CREATE INDEX access_tokens_client ON access_tokens (client_id, expires_at_ms);

-- A crypto refund of a held pay-in: made by createCryptoRefund (awaiting confirmation, no refund yet),
-- then confirmed into a `Refund` disposition whose refund (`refund_id`) the payout executor pays; its
-- status from then on is that refund's.
CREATE TABLE crypto_refunds (
    crypto_refund_id          TEXT PRIMARY KEY,
    client_id                 TEXT NOT NULL,
    client_reference          TEXT,
    original_transaction_type BIGINT NOT NULL,
    original_transaction_id   TEXT NOT NULL,
    tx_id                     TEXT NOT NULL,
    token_id                  TEXT NOT NULL,
    chain_id                  TEXT NOT NULL,
    amount                    TEXT NOT NULL,
    refund_id                 TEXT,
    refund_address            TEXT,
    created_at_ms             BIGINT NOT NULL,
    updated_at_ms             BIGINT NOT NULL
);
CREATE UNIQUE INDEX crypto_refunds_reference ON crypto_refunds (client_id, client_reference);
CREATE INDEX crypto_refunds_tx ON crypto_refunds (tx_id, created_at_ms);
CREATE UNIQUE INDEX crypto_refunds_refund ON crypto_refunds (refund_id);
