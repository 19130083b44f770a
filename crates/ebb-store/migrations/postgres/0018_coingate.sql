-- CoinGate's API as a second dialect (docs/COINGATE.md).
--
-- A merchant's API tokens (`Authorization: Token …`): 256-bit random values stored as SHA-256, with a
-- public handle `KT…` to list and revoke them by.
CREATE TABLE merchant_tokens (
    token_id     TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,
    merchant_id  TEXT NOT NULL REFERENCES merchants (merchant_id),
    name         TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);

-- A CoinGate order: priced and described at creation, paid in a token chosen at checkout, when its ebb
-- order (`order_id`, with the receiving address) is made in the same transaction. `seq` is the
-- integer id CoinGate's clients use.
CREATE TABLE coingate_orders (
    seq               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id       TEXT NOT NULL REFERENCES merchants (merchant_id),
    merchant_order_id TEXT,
    price_amount      TEXT NOT NULL,
    price_currency    TEXT NOT NULL,
    receive_currency  TEXT NOT NULL,
    title             TEXT,
    description       TEXT,
    callback_url      TEXT,
    cancel_url        TEXT,
    success_url       TEXT,
    token             TEXT,
    purchaser_email   TEXT,
    order_id          TEXT UNIQUE REFERENCES orders (order_id),
    created_at        BIGINT NOT NULL
);
CREATE INDEX coingate_orders_merchant ON coingate_orders (merchant_id, seq);

-- What a refund made through CoinGate's API adds to the ebb refund it is: the customer's e-mail, the
-- reason, where its callbacks go, and the address memo.
CREATE TABLE coingate_refunds (
    refund_id     TEXT PRIMARY KEY REFERENCES refunds (refund_id),
    email         TEXT,
    reason        TEXT,
    callback_url  TEXT,
    address_memo  TEXT
);
