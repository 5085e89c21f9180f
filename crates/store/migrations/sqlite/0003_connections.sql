-- Per-user connections and the browser flows that create them. Keep in step with
-- ../postgres/0003_connections.sql.

CREATE TABLE connections (
    id               TEXT    NOT NULL PRIMARY KEY,
    connector        TEXT    NOT NULL,
    env              TEXT    NOT NULL CHECK (env IN ('live', 'dev')),
    owner            TEXT    NOT NULL,
    provider_user_id TEXT,
    email            TEXT,
    scopes           TEXT,
    metadata         TEXT    NOT NULL,
    return_to        TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    UNIQUE (connector, env, owner)
) STRICT;

-- Connect sessions and OAuth states, under the SHA-256 of their random handle.
CREATE TABLE flows (
    handle_hash BLOB    NOT NULL PRIMARY KEY,
    kind        TEXT    NOT NULL CHECK (kind IN ('session', 'state')),
    connector   TEXT    NOT NULL,
    env         TEXT    NOT NULL CHECK (env IN ('live', 'dev')),
    owner       TEXT    NOT NULL,
    return_to   TEXT    NOT NULL,
    sealed      BLOB,
    binding     BLOB,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
) STRICT;
CREATE INDEX flows_expires_at ON flows (expires_at);
