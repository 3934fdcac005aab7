-- Lifecycle calls (docs/generators.md, "Lifecycle calls") and composed inputs.
-- lifecycle: the calls the dataset's state offered when it was made ("cleanup,reset,verify").
-- inputs: JSON of the datasets a composed dataset was built from, by requirement name.
-- pending: the lifecycle call owed ('cleanup', 'reset' or 'verify'), due at pending_due (ms).
ALTER TABLE datasets ADD COLUMN lifecycle TEXT NOT NULL DEFAULT '';
ALTER TABLE datasets ADD COLUMN inputs TEXT NOT NULL DEFAULT '{}';
ALTER TABLE datasets ADD COLUMN pending TEXT;
ALTER TABLE datasets ADD COLUMN pending_due BIGINT;
ALTER TABLE datasets ADD COLUMN pending_attempts BIGINT NOT NULL DEFAULT 0;
CREATE INDEX datasets_pending ON datasets (pending_due) WHERE pending IS NOT NULL;
