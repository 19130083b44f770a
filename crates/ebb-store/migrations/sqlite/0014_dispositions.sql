-- Dispositions of held pay-ins (Cobo's Compliance API, issue 15), every one kept: `Unfreeze`
-- (credited to the merchant), or `Refund` / `Isolate`, each a refund of type `Held` paid out by the
-- payout executor like any refund (its status gives the disposition's). What a pay-in still has in the
-- `held` account is the sum of the held postings of the pay-in and of its dispositions' refunds.
CREATE TABLE dispositions (
    seq               INTEGER PRIMARY KEY AUTOINCREMENT,
    tx_id             TEXT NOT NULL,
    disposition_type  TEXT NOT NULL,
    refund_id         TEXT,
    created_at        INTEGER NOT NULL
);
CREATE INDEX dispositions_tx ON dispositions (tx_id, seq);
