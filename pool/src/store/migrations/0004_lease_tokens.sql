-- Stockroom pool, SQLite schema version 4: leases only their holder can touch
-- (docs/pool.md, "Lease tokens").
-- token_hash: hex SHA-256 of the lease token handed out with the lease (the
-- token itself is never stored). request_hash: hex SHA-256 of what the
-- request asked (holder without url, items, ttl), binding its idempotency
-- key to it. Leases from before this version have neither: only an admin can
-- release them.
ALTER TABLE leases ADD COLUMN token_hash TEXT;
ALTER TABLE leases ADD COLUMN request_hash TEXT;
