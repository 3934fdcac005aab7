-- Stockroom pool, PostgreSQL schema version 1 (mirrors the SQLite schema 1 + 2).
-- Times are milliseconds since the Unix epoch; JSON columns hold serde_json text.
-- Counts per status are computed with count(*) over datasets_pick rather than a
-- counter table: a shared counter row would serialise every replica's writes.

CREATE TABLE datasets (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- insertion order; oldest ready first
    id            TEXT    NOT NULL UNIQUE,
    type          TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    attributes    TEXT    NOT NULL,
    data          TEXT    NOT NULL,
    secret_fields TEXT    NOT NULL,
    entities      TEXT    NOT NULL,
    reusable      BOOLEAN NOT NULL DEFAULT FALSE,
    lease_id      TEXT,
    error         TEXT,
    created_at    BIGINT  NOT NULL,
    updated_at    BIGINT  NOT NULL,
    generator     TEXT,
    request       TEXT,
    part_of       TEXT,
    -- The replica that runs a `generating` row's generation (its application_name suffix).
    owner         TEXT
);
CREATE INDEX datasets_pick ON datasets (type, state, status, seq);
CREATE INDEX datasets_lease ON datasets (lease_id);
CREATE INDEX datasets_part_of ON datasets (part_of) WHERE part_of IS NOT NULL;
CREATE INDEX datasets_generating ON datasets (status) WHERE status = 'generating';

CREATE TABLE dataset_attrs (
    type  TEXT   NOT NULL,
    state TEXT   NOT NULL,
    name  TEXT   NOT NULL,
    value TEXT   NOT NULL,
    seq   BIGINT NOT NULL REFERENCES datasets (seq),
    PRIMARY KEY (type, state, name, value, seq)
);

CREATE TABLE leases (
    id              TEXT   PRIMARY KEY,
    status          TEXT   NOT NULL,
    holder          TEXT   NOT NULL,
    holder_label    TEXT   NOT NULL,
    idempotency_key TEXT,
    ttl_ms          BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    ended_at        BIGINT,
    outcome         TEXT,
    reason          TEXT,
    details_url     TEXT,
    answer          TEXT
);
CREATE INDEX leases_due ON leases (status, expires_at);
CREATE UNIQUE INDEX leases_idempotency ON leases (idempotency_key) WHERE status = 'active' AND idempotency_key IS NOT NULL;

CREATE TABLE lease_items (
    lease_id   TEXT   NOT NULL REFERENCES leases (id),
    dataset_id TEXT   NOT NULL REFERENCES datasets (id),
    name       TEXT   NOT NULL,
    idx        BIGINT NOT NULL,
    pos        BIGINT NOT NULL,
    on_failure TEXT   NOT NULL,
    PRIMARY KEY (lease_id, dataset_id)
);

-- Entity-level isolation across every replica: the primary key is the lock.
CREATE TABLE entity_holds (
    entity     TEXT PRIMARY KEY,
    lease_id   TEXT NOT NULL,
    dataset_id TEXT NOT NULL
);
CREATE INDEX entity_holds_lease ON entity_holds (lease_id);

CREATE TABLE history (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dataset_id  TEXT   NOT NULL,
    at          BIGINT NOT NULL,
    from_status TEXT,
    to_status   TEXT   NOT NULL,
    lease_id    TEXT,
    holder      TEXT,
    reason      TEXT   NOT NULL
);
CREATE INDEX history_dataset ON history (dataset_id, seq);

CREATE TABLE stock_settings (
    type      TEXT   NOT NULL,
    state     TEXT   NOT NULL,
    min_ready BIGINT NOT NULL,
    max_ready BIGINT NOT NULL,
    PRIMARY KEY (type, state)
);

-- Every (type, state) a dataset was ever in, so stock lists a state with zero counts.
CREATE TABLE known_states (
    type  TEXT NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (type, state)
);

-- When each entity was last freed (lease released or expired). A lease is never
-- recorded as starting before the entities it takes were freed, even when its
-- request's clock reading is older than a release another replica committed.
CREATE TABLE entity_released (
    entity TEXT   PRIMARY KEY,
    at     BIGINT NOT NULL
);
