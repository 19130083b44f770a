-- The SQLite replay guard keeps what it has seen in memory (one ebb process serves a SQLite file) and
-- only logs it here so that a restart can load it back. The log holds a 16-byte digest of key and
-- signature, keyed by time in one b-tree: appends at the end, pruning from the front. It replaces
-- seen_signatures, whose full hex strings in a rowid table and two indexes made three b-tree inserts of
-- ~200-byte entries per request (a fifth of ebb's CPU under read load). PostgreSQL keeps
-- seen_signatures: there it is the shared authority for every process.
--
-- Signatures seen in the minutes before this upgrade are not carried over (SQL cannot compute the
-- digest): a request replayed across the upgrade within its 5-minute nonce window is accepted once.
CREATE TABLE seen_request_log (
    seen_at INTEGER NOT NULL,   -- ms
    digest  BLOB NOT NULL,      -- first 16 bytes of SHA-256 of "<api key hex>|<signature hex>"
    PRIMARY KEY (seen_at, digest)
) WITHOUT ROWID;

DROP TABLE seen_signatures;
