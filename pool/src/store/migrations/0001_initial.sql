-- Stockroom pool, SQLite schema version 1.
-- Times are milliseconds since the Unix epoch; JSON columns hold serde_json text.

CREATE TABLE datasets (
    seq           INTEGER PRIMARY KEY,          -- insertion order; leasing picks the oldest ready first
    id            TEXT    NOT NULL UNIQUE,
    type          TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    attributes    TEXT    NOT NULL,
    data          TEXT    NOT NULL,
    secret_fields TEXT    NOT NULL,
    entities      TEXT    NOT NULL,
    reusable      INTEGER NOT NULL DEFAULT 0,
    lease_id      TEXT,
    error         TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
-- The lease pick: the oldest ready datasets of one type/state, O(log n) whatever the stock size.
CREATE INDEX datasets_pick ON datasets (type, state, status, seq);
CREATE INDEX datasets_lease ON datasets (lease_id);

-- One row per attribute, for `where` filters without scanning every ready dataset.
CREATE TABLE dataset_attrs (
    type  TEXT    NOT NULL,
    state TEXT    NOT NULL,
    name  TEXT    NOT NULL,
    value TEXT    NOT NULL,
    seq   INTEGER NOT NULL REFERENCES datasets (seq),
    PRIMARY KEY (type, state, name, value, seq)
) WITHOUT ROWID;

-- Datasets per type/state/status, kept in the same transaction as every status change.
CREATE TABLE status_counts (
    type   TEXT    NOT NULL,
    state  TEXT    NOT NULL,
    status TEXT    NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (type, state, status)
) WITHOUT ROWID;

CREATE TABLE leases (
    id              TEXT    PRIMARY KEY,
    status          TEXT    NOT NULL,
    holder          TEXT    NOT NULL,       -- JSON of protocol::api::Holder
    holder_label    TEXT    NOT NULL,
    idempotency_key TEXT,
    ttl_ms          INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    ended_at        INTEGER,
    outcome         TEXT,
    reason          TEXT,
    details_url     TEXT,
    answer          TEXT                    -- JSON of the release answer, replayed on a repeated release
);
CREATE INDEX leases_due ON leases (status, expires_at);
-- One active lease per idempotency key.
CREATE UNIQUE INDEX leases_idempotency ON leases (idempotency_key) WHERE status = 'active' AND idempotency_key IS NOT NULL;

CREATE TABLE lease_items (
    lease_id   TEXT    NOT NULL REFERENCES leases (id),
    dataset_id TEXT    NOT NULL REFERENCES datasets (id),
    name       TEXT    NOT NULL,
    idx        INTEGER NOT NULL,
    pos        INTEGER NOT NULL,            -- order in the lease answer
    on_failure TEXT    NOT NULL,
    PRIMARY KEY (lease_id, dataset_id)
) WITHOUT ROWID;

-- Entity-level isolation: an entity is held by at most one active lease, enforced by the key.
CREATE TABLE entity_holds (
    entity     TEXT PRIMARY KEY,
    lease_id   TEXT NOT NULL,
    dataset_id TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX entity_holds_lease ON entity_holds (lease_id);

-- Every status change of every dataset; never deleted.
CREATE TABLE history (
    seq         INTEGER PRIMARY KEY,
    dataset_id  TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    from_status TEXT,
    to_status   TEXT    NOT NULL,
    lease_id    TEXT,
    holder      TEXT,
    reason      TEXT    NOT NULL
);
CREATE INDEX history_dataset ON history (dataset_id, seq);

CREATE TABLE stock_settings (
    type      TEXT    NOT NULL,
    state     TEXT    NOT NULL,
    min_ready INTEGER NOT NULL,
    max_ready INTEGER NOT NULL,
    PRIMARY KEY (type, state)
) WITHOUT ROWID;
