//! Every statement the PostgreSQL backend runs, as constants: the backend's
//! primitives ([`super::tx`]) use them, and `pool-bench`'s raw-SQL ceiling
//! imports the ones of a lease cycle instead of keeping a copy.

/// `lock` variants end with ` FOR UPDATE`; `candidates` lock and skip.
pub const FIND_LEASE: &str = "SELECT id, status, holder, holder_label, ttl_ms, created_at, expires_at, ended_at, outcome, reason, details_url, answer, token_hash, request_hash \
     FROM leases WHERE id = $1";
pub const FIND_LEASE_FOR_UPDATE: &str = "SELECT id, status, holder, holder_label, ttl_ms, created_at, expires_at, ended_at, outcome, reason, details_url, answer, token_hash, request_hash \
     FROM leases WHERE id = $1 FOR UPDATE";
pub const ACTIVE_LEASE_BY_KEY: &str = "SELECT id, status, holder, holder_label, ttl_ms, created_at, expires_at, ended_at, outcome, reason, details_url, answer, token_hash, request_hash \
     FROM leases WHERE idempotency_key = $1 AND status = 'active' FOR UPDATE";
pub const LEASE_DATASETS: &str = "SELECT li.name, li.idx, d.id, d.type, d.state, d.status, d.attributes, d.data, d.secret_fields, d.entities, d.lease_id, d.error, d.created_at, d.updated_at, d.inputs, d.lifecycle \
     FROM lease_items li JOIN datasets d ON d.id = li.dataset_id WHERE li.lease_id = $1 ORDER BY li.pos";
pub const INSERT_LEASE: &str = "INSERT INTO leases (id, status, holder, holder_label, idempotency_key, ttl_ms, created_at, expires_at, token_hash, request_hash) \
     VALUES ($1, 'active', $2, $3, $4, $5, $6, $7, $8, $9)";
pub const SET_LEASE_TOKEN: &str = "UPDATE leases SET token_hash = $2 WHERE id = $1";
pub const INSERT_LEASE_ITEM: &str = "INSERT INTO lease_items (lease_id, dataset_id, name, idx, pos, on_failure) VALUES ($1, $2, $3, $4, $5, $6)";
pub const EXPIRE_LEASE: &str =
    "UPDATE leases SET status = 'expired', ended_at = $2, reason = $3 WHERE id = $1";
pub const HEARTBEAT: &str = "UPDATE leases SET expires_at = $2, ttl_ms = $3 WHERE id = $1";
pub const END_LEASE: &str = "UPDATE leases SET status = 'released', ended_at = $2, outcome = $3, reason = $4, details_url = $5, answer = $6 \
     WHERE id = $1";
pub const LEASED_BY: &str = "SELECT d.seq, d.id, d.type, d.state, d.status FROM lease_items li JOIN datasets d ON d.id = li.dataset_id \
     WHERE li.lease_id = $1 AND d.status = 'leased' AND d.lease_id = $1 ORDER BY li.pos FOR UPDATE OF d";
pub const RELEASE_ITEMS: &str = "SELECT d.seq, d.id, d.type, d.state, d.status, li.name, li.on_failure, d.reusable, d.lifecycle \
     FROM lease_items li JOIN datasets d ON d.id = li.dataset_id WHERE li.lease_id = $1 ORDER BY li.pos \
     FOR UPDATE OF d";
pub const DUE_LEASES: &str = "SELECT id, status, holder, holder_label, ttl_ms, created_at, expires_at, ended_at, outcome, reason, details_url, answer, token_hash, request_hash \
     FROM leases WHERE status = 'active' AND expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED";
pub const LIST_LEASES: &str = "SELECT id, status, holder, holder_label, ttl_ms, created_at, expires_at, ended_at, outcome, reason, details_url, answer, token_hash, request_hash \
     FROM leases ORDER BY created_at DESC LIMIT $1";
pub const LIST_LEASES_OF_STATUS: &str = "SELECT id, status, holder, holder_label, ttl_ms, created_at, expires_at, ended_at, outcome, reason, details_url, answer, token_hash, request_hash \
     FROM leases WHERE status = $1 ORDER BY created_at DESC LIMIT $2";
pub const ACTIVE_LEASE_COUNT: &str = "SELECT count(*) FROM leases WHERE status = 'active'";

pub const ENTITY_HOLDER: &str = "SELECT lease_id FROM entity_holds WHERE entity = $1";
pub const HOLD: &str =
    "INSERT INTO entity_holds (entity, lease_id, dataset_id) VALUES ($1, $2, $3)";
pub const FREE_ENTITIES: &str = "WITH gone AS (DELETE FROM entity_holds WHERE lease_id = $1 RETURNING entity) \
     INSERT INTO entity_released (entity, at) SELECT entity, $2 FROM gone \
     ON CONFLICT (entity) DO UPDATE SET at = GREATEST(entity_released.at, excluded.at)";
pub const FREE_DATASET_ENTITIES: &str = "WITH gone AS (DELETE FROM entity_holds WHERE lease_id = $1 AND dataset_id = $3 RETURNING entity) \
     INSERT INTO entity_released (entity, at) SELECT entity, $2 FROM gone \
     ON CONFLICT (entity) DO UPDATE SET at = GREATEST(entity_released.at, excluded.at)";
pub const NOT_BEFORE: &str =
    "SELECT COALESCE(max(at), 0) FROM entity_released WHERE entity = ANY($1)";

pub const PICK: &str = "SELECT seq, id, attributes, entities, updated_at FROM datasets \
     WHERE type = $1 AND state = $2 AND status = 'ready' AND seq > $3 ORDER BY seq LIMIT $4 \
     FOR UPDATE SKIP LOCKED";
pub const PICK_WITH_ATTR: &str = "SELECT d.seq, d.id, d.attributes, d.entities, d.updated_at FROM dataset_attrs a JOIN datasets d ON d.seq = a.seq \
     WHERE a.type = $1 AND a.state = $2 AND a.name = $5 AND a.value = $6 AND a.seq > $3 \
     AND d.status = 'ready' AND d.type = $1 AND d.state = $2 ORDER BY a.seq LIMIT $4 \
     FOR UPDATE OF d SKIP LOCKED";
pub const POTENTIAL_WITH: &str = "SELECT count(*) FROM dataset_attrs a JOIN datasets d ON d.seq = a.seq \
     WHERE a.type = $1 AND a.state = $2 AND a.name = $3 AND a.value = $4 \
     AND d.status IN ('ready', 'generating', 'leased')";
pub const COUNT: &str = "SELECT COALESCE(sum(n), 0)::BIGINT FROM status_counts \
     WHERE type = $1 AND state = $2 AND status = ANY($3)";
pub const LOCK_GENERATION_CAP: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";

pub const DATASET_REF: &str = "SELECT seq, id, type, state, status FROM datasets WHERE id = $1";
pub const DATASET_REF_FOR_UPDATE: &str =
    "SELECT seq, id, type, state, status FROM datasets WHERE id = $1 FOR UPDATE";
pub const DATASET: &str = "SELECT d.id, d.type, d.state, d.status, d.attributes, d.data, d.secret_fields, d.entities, d.lease_id, d.error, d.created_at, d.updated_at, d.inputs, d.lifecycle \
     FROM datasets d WHERE d.id = $1";
pub const DATASET_BY_SEQ: &str = "SELECT d.id, d.type, d.state, d.status, d.attributes, d.data, d.secret_fields, d.entities, d.lease_id, d.error, d.created_at, d.updated_at, d.inputs, d.lifecycle \
     FROM datasets d WHERE d.seq = $1";
pub const HISTORY_OF: &str = "SELECT at, from_status, to_status, lease_id, holder, reason FROM history WHERE dataset_id = $1 ORDER BY seq";
pub const INSERT_DATASET: &str = "INSERT INTO datasets (id, type, state, status, attributes, data, secret_fields, entities, reusable, \
     created_at, updated_at, generator, request, owner, lifecycle) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12, $13, $14) RETURNING seq";
pub const INSERT_ATTR: &str = "INSERT INTO dataset_attrs (type, state, name, value, seq) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";
pub const CHANGE: &str = "UPDATE datasets SET status = $1, updated_at = $2, \
     lease_id = CASE WHEN $1 = 'ready' THEN NULL ELSE COALESCE($3, lease_id) END WHERE seq = $4";
pub const HISTORY: &str = "INSERT INTO history (dataset_id, at, from_status, to_status, lease_id, holder, reason) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";
pub const SET_PART_OF: &str = "UPDATE datasets SET part_of = $2 WHERE seq = $1";
pub const PARTS_ENTITIES: &str = "SELECT entities FROM datasets WHERE part_of = $1 ORDER BY seq";
pub const OPEN_PARTS: &str = "SELECT seq, id, type, state, status FROM datasets WHERE part_of = $1 \
     AND status IN ('composed', 'generating') ORDER BY seq FOR UPDATE";
pub const SET_GENERATED: &str = "UPDATE datasets SET attributes = $2, data = $3, secret_fields = $4, entities = $5, part_of = $6, inputs = $7, owner = NULL \
     WHERE seq = $1";
pub const SET_ERROR: &str = "UPDATE datasets SET error = $2, owner = NULL WHERE seq = $1";
pub const SET_EXTENDED: &str = "UPDATE datasets SET state = $2, data = $3, secret_fields = $4, entities = $5, updated_at = $6 WHERE seq = $1";
pub const SET_ATTRS_STATE: &str = "UPDATE dataset_attrs SET state = $2 WHERE seq = $1";
/// This replica's `generating` rows and those of replicas that are gone (no
/// connection with their `application_name` is open).
pub const GENERATING_TO_FAIL: &str = "SELECT d.id FROM datasets d WHERE d.status = 'generating' AND d.pending IS NULL AND (d.owner IS NULL OR d.owner = $1 \
     OR NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.application_name = $2 || d.owner)) \
     ORDER BY d.seq";
pub const CONSUMED_BEFORE: &str = "SELECT id FROM datasets WHERE status = 'consumed' AND updated_at < $1 AND data != 'null' \
     ORDER BY seq LIMIT $2 FOR UPDATE SKIP LOCKED";
pub const ERASE_DATA: &str = "UPDATE datasets SET data = 'null', updated_at = $2 WHERE id = $1";
pub const QUARANTINED: &str = "SELECT d.id, d.type, d.state, d.status, d.attributes, d.data, d.secret_fields, d.entities, d.lease_id, d.error, d.created_at, d.updated_at, d.inputs, d.lifecycle, \
     l.details_url, l.holder FROM datasets d LEFT JOIN leases l ON l.id = d.lease_id \
     WHERE d.status = 'quarantined' ORDER BY d.seq LIMIT $1";
pub const HISTORIES: &str = "SELECT dataset_id, at, from_status, to_status, lease_id, holder, reason FROM history \
     WHERE dataset_id = ANY($1) ORDER BY seq";

/// The deltas of one transaction, keys in order, into this connection's slot
/// (see the 0002 migration: a slot per backend keeps replicas off one row).
pub const APPLY_COUNTS: &str = "INSERT INTO status_counts (type, state, status, slot, n) \
     SELECT t, s, st, pg_backend_pid() % 64, n FROM unnest($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[]) AS u (t, s, st, n) \
     ON CONFLICT (type, state, status, slot) DO UPDATE SET n = status_counts.n + excluded.n";
pub const KNOW_STATES: &str = "INSERT INTO known_states (type, state) SELECT * FROM unnest($1::TEXT[], $2::TEXT[]) \
     ON CONFLICT DO NOTHING";
pub const COUNTS: &str =
    "SELECT type, state, status, sum(n)::BIGINT FROM status_counts GROUP BY type, state, status";
pub const KNOWN_STATES: &str = "SELECT type, state FROM known_states";
pub const STOCK_SETTINGS: &str = "SELECT type, state, min_ready, max_ready FROM stock_settings";
pub const SET_STOCK: &str = "INSERT INTO stock_settings (type, state, min_ready, max_ready) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (type, state) DO UPDATE SET min_ready = excluded.min_ready, max_ready = excluded.max_ready";
/// What one `stock()` reads, in order.
pub const STOCK: [&str; 3] = [KNOWN_STATES, COUNTS, STOCK_SETTINGS];

pub const PUT_SESSION: &str = "INSERT INTO sessions (id_hash, caller_name, role, csrf, leases, last_seen_ms) \
     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id_hash) DO UPDATE SET caller_name = excluded.caller_name, \
     role = excluded.role, csrf = excluded.csrf, leases = excluded.leases, last_seen_ms = excluded.last_seen_ms";
pub const GET_SESSION: &str = "SELECT id_hash, caller_name, role, csrf, leases, last_seen_ms FROM sessions WHERE id_hash = $1 FOR UPDATE";
pub const TOUCH_SESSION: &str = "UPDATE sessions SET last_seen_ms = $2 WHERE id_hash = $1";
pub const DELETE_SESSION: &str = "DELETE FROM sessions WHERE id_hash = $1";
pub const PURGE_SESSIONS: &str = "DELETE FROM sessions WHERE last_seen_ms < $1";
pub const SET_SESSION_LEASES: &str = "UPDATE sessions SET leases = $2 WHERE id_hash = $1";

// ----- lifecycle calls
pub const SET_PENDING: &str =
    "UPDATE datasets SET pending = $2, pending_due = $3, pending_attempts = $4 WHERE seq = $1";
pub const PENDING_DUE: &str = "SELECT d.seq, d.pending, d.pending_attempts, d.id, d.type, d.state, d.status, d.attributes, d.data, d.secret_fields, d.entities, d.lease_id, d.error, d.created_at, d.updated_at, d.inputs, d.lifecycle \
     FROM datasets d WHERE d.pending IS NOT NULL AND d.pending_due <= $1 ORDER BY d.pending_due LIMIT $2 FOR UPDATE SKIP LOCKED";
pub const STALE_READY: &str = "SELECT seq, id, type, state, status, lifecycle FROM datasets \
     WHERE type = $1 AND state = $2 AND status = 'ready' AND updated_at < $3 ORDER BY seq LIMIT $4 FOR UPDATE SKIP LOCKED";
pub const LIFECYCLE_OF: &str = "SELECT lifecycle, pending FROM datasets WHERE seq = $1";
