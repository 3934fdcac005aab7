-- Stockroom pool, SQLite schema version 2: generations.
-- A generated dataset keeps the generator that made it and the request sent
-- (inputs redacted), so a failed generation can be understood later. An input
-- taken for a generation points at the dataset it became part of.

ALTER TABLE datasets ADD COLUMN generator TEXT;
ALTER TABLE datasets ADD COLUMN request TEXT;
ALTER TABLE datasets ADD COLUMN part_of TEXT;
CREATE INDEX datasets_part_of ON datasets (part_of) WHERE part_of IS NOT NULL;
CREATE INDEX datasets_generating ON datasets (status) WHERE status = 'generating';
