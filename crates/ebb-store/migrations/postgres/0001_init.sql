-- ebb schema, PostgreSQL flavour: the same tables as the SQLite one, column for column, so one set of
-- queries serves both. Amounts are TEXT of integer base units, computed in Rust (see the SQLite file).
-- seen_signatures is UNLOGGED: losing it in a server crash only re-opens a five-minute replay window.

CREATE TABLE api_keys (
    api_key     TEXT PRIMARY KEY,          -- hex Ed25519 public key, as sent in Biz-Api-Key
    name        TEXT NOT NULL,
    merchant_id TEXT,                      -- NULL: PSP-wide; else the one merchant this key may act on
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

-- Signatures already accepted, so a byte-identical request is refused as a replay. Rows older than
-- the nonce window are pruned.
CREATE UNLOGGED TABLE seen_signatures (
    api_key   TEXT NOT NULL,
    signature TEXT NOT NULL,
    seen_at   BIGINT NOT NULL,
    PRIMARY KEY (api_key, signature)
);
CREATE INDEX seen_signatures_seen_at ON seen_signatures (seen_at);

CREATE TABLE merchants (
    seq                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id        TEXT NOT NULL UNIQUE,
    name               TEXT NOT NULL,
    wallet_id          TEXT NOT NULL,
    developer_fee_rate TEXT NOT NULL,
    wallet_setup       TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);

CREATE TABLE orders (
    seq                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id            TEXT NOT NULL UNIQUE,
    merchant_id         TEXT NOT NULL REFERENCES merchants (merchant_id),
    merchant_order_code TEXT,
    psp_order_code      TEXT NOT NULL UNIQUE,
    pricing_currency    TEXT,
    pricing_amount      TEXT,
    token_id            TEXT NOT NULL,
    chain_id            TEXT NOT NULL,
    payable_amount      TEXT NOT NULL,
    fee_amount          TEXT NOT NULL,
    fee_credited        TEXT NOT NULL,     -- developer fee already credited to the PSP from payments
    exchange_rate       TEXT NOT NULL,
    amount_tolerance    TEXT NOT NULL,
    receive_address     TEXT NOT NULL,
    status              TEXT NOT NULL,
    received_amount     TEXT NOT NULL,
    refunded_amount     TEXT NOT NULL,     -- sum of live (not failed or cancelled) refunds: the over-refund guard
    expired_at          BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX orders_merchant ON orders (merchant_id, seq);

CREATE TABLE refunds (
    seq                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    refund_id           TEXT NOT NULL UNIQUE,
    request_id          TEXT NOT NULL,
    idem_scope          TEXT NOT NULL,     -- '*' for PSP-wide keys, else the key's merchant id
    request_fingerprint TEXT NOT NULL,     -- canonical form of the creating request, for idempotency
    order_id            TEXT REFERENCES orders (order_id),
    merchant_id         TEXT REFERENCES merchants (merchant_id),
    token_id            TEXT NOT NULL,
    chain_id            TEXT NOT NULL,
    amount              TEXT NOT NULL,
    to_address          TEXT NOT NULL,     -- '' until set (PendingConfirmation)
    status              TEXT NOT NULL,
    failed_reason       TEXT,
    refund_type         TEXT NOT NULL,
    charge_merchant_fee BIGINT NOT NULL,
    merchant_fee_amount TEXT,
    initiator           TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    UNIQUE (idem_scope, request_id)
);
CREATE INDEX refunds_merchant ON refunds (merchant_id, seq);
CREATE INDEX refunds_request ON refunds (request_id);
CREATE INDEX refunds_created ON refunds (created_at);

CREATE TABLE payment_transactions (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx_id         TEXT NOT NULL UNIQUE,
    direction     TEXT NOT NULL,           -- 'in' (pay-in) or 'out' (refund payout)
    order_id      TEXT,
    refund_id     TEXT,
    tx_hash       TEXT,
    token_id      TEXT NOT NULL,
    chain_id      TEXT NOT NULL,
    from_address  TEXT NOT NULL,
    to_address    TEXT NOT NULL,
    amount        TEXT NOT NULL,
    status        TEXT NOT NULL,
    failed_reason TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX payment_transactions_order ON payment_transactions (order_id);
CREATE INDEX payment_transactions_refund ON payment_transactions (refund_id);

-- Cached balances per account and token (merchants and the PSP; 'world' and 'reserved' are journal-only,
-- see Account::keeps_balance), changed only together with their posting rows in one transaction.
CREATE TABLE balances (
    account       TEXT NOT NULL,           -- ebb_core::Account::key()
    token_id      TEXT NOT NULL,
    balance       TEXT NOT NULL,           -- signed only for 'world'
    received      TEXT NOT NULL,           -- merchant: pay-ins credited
    developer_fee TEXT NOT NULL,           -- psp: developer fees earned
    refunded      TEXT NOT NULL,           -- net amount sent into refunds from this account
    PRIMARY KEY (account, token_id)
);

-- The double-entry journal: postings of one entry share entry_id and sum to zero per token.
CREATE TABLE postings (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entry_id      TEXT NOT NULL,
    account       TEXT NOT NULL,
    token_id      TEXT NOT NULL,
    delta         TEXT NOT NULL,           -- signed base units
    balance_after TEXT NOT NULL,           -- '' for journal-only accounts (world, reserved)
    source_type   TEXT NOT NULL,           -- Cobo's balance change source type (OrderIn, RefundOut, ...)
    source_id     TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX postings_account ON postings (account, token_id, seq);
CREATE INDEX postings_entry ON postings (entry_id);
