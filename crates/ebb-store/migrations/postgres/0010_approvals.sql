-- Maker-checker approval of refunds (issue 15).
--
-- A policy's lists are JSON arrays of strings (empty: any); `origin` says whether the API or the
-- configuration file owns it (the file's are replaced at start-up and not changed through the API).
CREATE TABLE approval_policies (
    policy_id            TEXT PRIMARY KEY,
    name                 TEXT NOT NULL,
    token_ids            TEXT NOT NULL,
    merchant_ids         TEXT NOT NULL,
    refund_types         TEXT NOT NULL,
    sources              TEXT NOT NULL,
    min_amount           TEXT,
    new_destination_only BIGINT NOT NULL,
    approvals_required   BIGINT NOT NULL,
    origin               TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);

-- How the refund was made (`Api` or `Link`), one of the things a policy matches on.
ALTER TABLE refunds ADD COLUMN channel TEXT NOT NULL DEFAULT 'Api';
-- The refund's approval as one JSON document (policy, required, votes, status, rejection), changed only
-- under the refund's row lock; `approval_status` repeats its status for the payout executor's gate and
-- the approval queue. Both NULL: no policy applies.
ALTER TABLE refunds ADD COLUMN approval TEXT;
ALTER TABLE refunds ADD COLUMN approval_status TEXT;
CREATE INDEX refunds_approval_queue ON refunds (approval_status, seq) WHERE approval_status IS NOT NULL;
-- "A destination never paid before": refunds that reached this address.
CREATE INDEX refunds_to_address ON refunds (to_address, chain_id);
