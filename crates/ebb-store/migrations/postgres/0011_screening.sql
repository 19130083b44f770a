-- Screening (issue 15).
--
-- Lists of addresses a screening provider reads from the database, so that every process sees a list
-- loaded at run time (`ebb screening load`): the OFAC SDN list ships with ebb and is loaded at start-up
-- when the database holds none or an older one. Addresses are stored normalised (EVM in lower case).
CREATE TABLE screening_lists (
    list_id    TEXT PRIMARY KEY,
    dated      TEXT NOT NULL,
    source     TEXT NOT NULL,
    entries    BIGINT NOT NULL,
    loaded_at  BIGINT NOT NULL
);
CREATE TABLE screening_list_entries (
    list_id  TEXT NOT NULL,
    address  TEXT NOT NULL,
    PRIMARY KEY (address, list_id)
);

-- A refund's destination screening (findings, verdict), one JSON document beside its approval.
ALTER TABLE refunds ADD COLUMN screening TEXT;
