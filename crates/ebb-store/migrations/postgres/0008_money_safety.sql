-- A refund may not be sent to one of ebb's own receiving addresses: the check looks the address up.
CREATE INDEX orders_receive_address ON orders (receive_address);

-- Until when (seconds) the pay-in watcher looks at an order's receiving address: its expiry plus a
-- grace period for late payments, moved on by each credited payment (orders::LATE_PAYMENT_WATCH_S).
-- The watcher reads an index range of it, so its cost does not grow with old orders.
ALTER TABLE orders ADD COLUMN watch_until BIGINT NOT NULL DEFAULT 0;
UPDATE orders SET watch_until = GREATEST(expired_at, updated_at) + 604800;
CREATE INDEX orders_watch ON orders (chain_id, watch_until);
-- The expiry pass finds Pending orders whose time has run out.
CREATE INDEX orders_pending_expiry ON orders (chain_id, expired_at) WHERE status = 'Pending';

-- Signed requests that may change something, recorded as they are served (store/replay.rs). A logged
-- table: unlike the UNLOGGED seen_signatures (reads), it survives a crash or a failover, so a captured
-- POST stays refused as a replay for its whole nonce window.
CREATE TABLE seen_write_signatures (
    api_key   TEXT NOT NULL,
    signature TEXT NOT NULL,
    seen_at   BIGINT NOT NULL,
    PRIMARY KEY (api_key, signature)
);
CREATE INDEX seen_write_signatures_seen_at ON seen_write_signatures (seen_at);
