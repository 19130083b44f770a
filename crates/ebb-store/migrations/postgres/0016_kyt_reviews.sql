-- Reviews of held pay-ins (Cobo's `manual_review` and `decisions` calls), every one kept: the latest
-- gives the pay-in's KYT `review_status`. An approval also releases the funds (an `Unfreeze`
-- disposition in the same transaction).
CREATE TABLE kyt_reviews (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx_id          TEXT NOT NULL,
    kind           TEXT NOT NULL,
    result         TEXT NOT NULL,
    reviewer       TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL
);
CREATE INDEX kyt_reviews_tx ON kyt_reviews (tx_id, seq);
CREATE INDEX dispositions_refund ON dispositions (refund_id);
