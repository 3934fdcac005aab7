-- Stockroom pool, PostgreSQL schema version 3: leases only their holder can
-- touch (docs/pool.md, "Lease tokens"); the same columns as SQLite's 0004.
ALTER TABLE leases ADD COLUMN token_hash TEXT;
ALTER TABLE leases ADD COLUMN request_hash TEXT;
