-- The lease takes due deliveries in (next_attempt_ms, event_seq) order with a LIMIT. With only
-- next_attempt_ms in the index, every due row had to be read and sorted before the first could be
-- taken (all 10,000 of a backlog); with event_seq in it, the index scan stops after the first few.
-- A lease also moves next_attempt_ms to the lease's end, so deliveries in flight leave the due range.
--
-- `next_attempt_ms IS NOT NULL` (always true: the column is NOT NULL) keeps this index away from the
-- lease's subject check, `MIN(event_seq) … WHERE endpoint_id = ? AND subject_id = ? AND status =
-- 'Retrying'`, which does not imply it: before a table's first ANALYZE, PostgreSQL priced this smaller
-- index below webhook_deliveries_order for that check and scanned every due row per candidate (600
-- instead of 6,000 events/s). The lease's own `next_attempt_ms <= $now` implies it, so the lease uses it.
DROP INDEX webhook_deliveries_due;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_ms, event_seq)
    WHERE status = 'Retrying' AND next_attempt_ms IS NOT NULL;
