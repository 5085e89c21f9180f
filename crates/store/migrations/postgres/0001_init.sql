-- Latchkey's schema on PostgreSQL. Keep in step with ../sqlite/0001_init.sql: the same tables,
-- columns and constraints, so that the one SQL text in src/sql.rs runs on both.
-- Names are COLLATE "C" so that ORDER BY name is byte order, as on SQLite, whatever the
-- database's locale.

-- Installation-wide values (the vault's salt and check value, …), written once.
CREATE TABLE meta (
    key   TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    value BYTEA NOT NULL
);

-- One row, bumped by every write to secrets, api_keys and connectors.
CREATE TABLE generation (
    id    INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    value BIGINT  NOT NULL
);
INSERT INTO generation (id, value) VALUES (1, 0);

-- Sealed secret values, one per name and environment. updated_at is Unix milliseconds.
CREATE TABLE secrets (
    name       TEXT COLLATE "C" NOT NULL,
    env        TEXT COLLATE "C" NOT NULL CHECK (env IN ('live', 'dev')),
    sealed     BYTEA  NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (name, env)
);

-- Admin and app keys: only the SHA-256 of each key. Times are Unix milliseconds.
CREATE TABLE api_keys (
    id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    name         TEXT COLLATE "C" NOT NULL,
    kind         TEXT   NOT NULL CHECK (kind IN ('admin', 'live', 'dev')),
    hash         BYTEA  NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT
);

-- Connectors created through the admin API, as JSON of the config shape.
CREATE TABLE connectors (
    name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    definition TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);
