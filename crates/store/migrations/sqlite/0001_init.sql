-- Latchkey's schema on SQLite. Keep in step with ../postgres/0001_init.sql: the same tables,
-- columns and constraints, so that the one SQL text in src/sql.rs runs on both.
-- STRICT tables refuse a value of the wrong type instead of silently converting it, so a
-- sealed BLOB can never come back as TEXT.

-- Installation-wide values (the vault's salt and check value, …), written once.
CREATE TABLE meta (
    key   TEXT NOT NULL PRIMARY KEY,
    value BLOB NOT NULL
) STRICT;

-- One row, bumped by every write to secrets, api_keys and connectors.
CREATE TABLE generation (
    id    INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
) STRICT;
INSERT INTO generation (id, value) VALUES (1, 0);

-- Sealed secret values, one per name and environment. updated_at is Unix milliseconds.
CREATE TABLE secrets (
    name       TEXT    NOT NULL,
    env        TEXT    NOT NULL CHECK (env IN ('live', 'dev')),
    sealed     BLOB    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (name, env)
) STRICT;

-- Admin and app keys: only the SHA-256 of each key. Times are Unix milliseconds.
CREATE TABLE api_keys (
    id           TEXT    NOT NULL PRIMARY KEY,
    name         TEXT    NOT NULL,
    kind         TEXT    NOT NULL CHECK (kind IN ('admin', 'live', 'dev')),
    hash         BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
) STRICT;

-- Connectors created through the admin API, as JSON of the config shape.
CREATE TABLE connectors (
    name       TEXT    NOT NULL PRIMARY KEY,
    definition TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;
