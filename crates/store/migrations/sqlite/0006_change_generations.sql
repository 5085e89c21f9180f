-- Per-row change generations. Keep in step with ../postgres/0006_change_generations.sql.
-- An instance that sees the store's generation move past the one it holds reads only the
-- secrets and app keys written or deleted since then, instead of the whole store.
-- `changed_gen` is the generation the row's last write bumped to; 0 for rows written before
-- this migration, which every instance reads in full when it starts.
ALTER TABLE secrets ADD COLUMN changed_gen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN changed_gen INTEGER NOT NULL DEFAULT 0;
CREATE INDEX secrets_changed_gen ON secrets (changed_gen);
CREATE INDEX api_keys_changed_gen ON api_keys (changed_gen);

-- The last delete of each secret name (every environment) and app key id.
CREATE TABLE deletions (
    kind        TEXT    NOT NULL CHECK (kind IN ('secret', 'key')),
    name        TEXT    NOT NULL,
    changed_gen INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
) STRICT;
CREATE INDEX deletions_changed_gen ON deletions (changed_gen);
