-- Stockroom pool, SQLite schema version 3.
-- Every (type, state) a dataset was ever in, never forgotten, so stock lists a
-- state with zero counts (as on PostgreSQL).
CREATE TABLE known_states (
    type  TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (type, state)
) WITHOUT ROWID;
INSERT OR IGNORE INTO known_states (type, state) SELECT DISTINCT type, state FROM datasets;

-- Web page sessions, so that any replica behind a load balancer serves the page.
CREATE TABLE sessions (
    id_hash      TEXT    PRIMARY KEY,   -- hex SHA-256 of the cookie value
    caller_name  TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    csrf         TEXT    NOT NULL,
    leases       TEXT    NOT NULL,      -- JSON list of lease ids taken through the page
    last_seen_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sessions_idle ON sessions (last_seen_ms);
