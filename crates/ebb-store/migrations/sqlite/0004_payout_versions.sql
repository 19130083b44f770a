-- Fee bumping (issue 3): a payout stuck because its fees are too low is replaced by the same transfer
-- with the same nonce and higher fees. Every signed version is kept, since any of them may be the one
-- that gets mined; the transaction row shows the latest (or, once mined, the one that was).

CREATE TABLE payout_versions (
    tx_hash      TEXT PRIMARY KEY,
    tx_id        TEXT NOT NULL,
    raw_tx       TEXT NOT NULL,
    signed_at_ms INTEGER NOT NULL
);
CREATE INDEX payout_versions_tx ON payout_versions (tx_id, signed_at_ms);

INSERT INTO payout_versions (tx_hash, tx_id, raw_tx, signed_at_ms)
    SELECT tx_hash, tx_id, raw_tx, created_at_ms FROM payment_transactions
    WHERE direction = 'out' AND raw_tx IS NOT NULL AND tx_hash IS NOT NULL;
