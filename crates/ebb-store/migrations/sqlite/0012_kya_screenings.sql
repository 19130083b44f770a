-- Address screenings asked through Cobo's KYA API (`/v2/compliance/kya/screenings`), issue 15: each
-- with the request that asked for it (idempotent on request_id) and ebb's screening as JSON.
CREATE TABLE kya_screenings (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    screening_id   TEXT NOT NULL UNIQUE,
    request_id     TEXT NOT NULL UNIQUE,
    requested_by   TEXT NOT NULL,
    address        TEXT NOT NULL,
    chain_id       TEXT NOT NULL,
    note           TEXT,
    status         TEXT NOT NULL,
    screening      TEXT NOT NULL,
    created_at_ms  INTEGER NOT NULL
);
