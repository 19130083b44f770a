-- Payouts (issue 3): signed transactions are stored before they are broadcast, nonces are allocated
-- here, and a refund that cannot be paid yet says why.

-- Why a Pending refund is not being paid out yet (hot wallet short of the token or of gas, gas above
-- the cap, chain not configured). NULL when nothing holds it.
ALTER TABLE refunds ADD COLUMN hold_reason TEXT;

ALTER TABLE payment_transactions ADD COLUMN nonce INTEGER;
-- Hex of the signed transaction, written in the same transaction that allocates its nonce and before
-- the first broadcast: after a crash the executor re-broadcasts these bytes, never signs anew.
ALTER TABLE payment_transactions ADD COLUMN raw_tx TEXT;
ALTER TABLE payment_transactions ADD COLUMN block_number INTEGER;
ALTER TABLE payment_transactions ADD COLUMN log_index INTEGER;

CREATE INDEX refunds_payable ON refunds (status, chain_id, seq);
CREATE INDEX payment_transactions_open ON payment_transactions (direction, chain_id, status);
-- One transaction per nonce of a hot wallet: a nonce can carry only one payout.
CREATE UNIQUE INDEX payment_transactions_nonce ON payment_transactions (chain_id, from_address, nonce)
    WHERE direction = 'out';
-- At most one payout in flight per refund: a second transfer for the same refund cannot be stored.
CREATE UNIQUE INDEX payment_transactions_open_leg ON payment_transactions (refund_id)
    WHERE direction = 'out' AND status IN ('Broadcasting', 'Confirming');
-- A pay-in is seen once: (chain, tx hash, log index) identifies a token transfer.
CREATE UNIQUE INDEX payment_transactions_log ON payment_transactions (chain_id, tx_hash, log_index)
    WHERE direction = 'in' AND log_index IS NOT NULL;

-- The next nonce of each hot wallet, allocated under this row's lock.
CREATE TABLE chain_nonces (
    chain_id   TEXT NOT NULL,
    address    TEXT NOT NULL,
    next_nonce INTEGER NOT NULL,
    PRIMARY KEY (chain_id, address)
);

-- The pay-in watcher's position per chain: the next block to scan.
CREATE TABLE chain_cursors (
    chain_id   TEXT PRIMARY KEY,
    next_block INTEGER NOT NULL
);
