-- Stockroom pool, PostgreSQL schema version 2.
--
-- Datasets per (type, state, status), as SQLite keeps them: stock() no longer
-- scans every dataset. A single counter row per key would make every lease
-- of a state wait for the previous one's commit, so each key is spread over
-- 64 slots (a connection writes the slot of its backend pid) and read as a sum.
-- Each transaction adds its deltas in one statement right before it commits,
-- keys in order: the rows stay locked for the shortest time, never in
-- opposite orders.
CREATE TABLE status_counts (
    type   TEXT   NOT NULL,
    state  TEXT   NOT NULL,
    status TEXT   NOT NULL,
    slot   INT    NOT NULL,
    n      BIGINT NOT NULL,
    PRIMARY KEY (type, state, status, slot)
);
INSERT INTO status_counts (type, state, status, slot, n)
    SELECT type, state, status, 0, count(*) FROM datasets GROUP BY type, state, status;

-- Web page sessions, so that any replica behind a load balancer serves the page.
CREATE TABLE sessions (
    id_hash      TEXT   PRIMARY KEY,
    caller_name  TEXT   NOT NULL,
    role         TEXT   NOT NULL,
    csrf         TEXT   NOT NULL,
    leases       TEXT   NOT NULL,
    last_seen_ms BIGINT NOT NULL
);
CREATE INDEX sessions_idle ON sessions (last_seen_ms);
