-- Per-user connections and the browser flows that create them. Keep in step with
-- ../sqlite/0003_connections.sql.

CREATE TABLE connections (
    id               TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    connector        TEXT COLLATE "C" NOT NULL,
    env              TEXT COLLATE "C" NOT NULL CHECK (env IN ('live', 'dev')),
    owner            TEXT COLLATE "C" NOT NULL,
    provider_user_id TEXT,
    email            TEXT,
    scopes           TEXT,
    metadata         TEXT   NOT NULL,
    return_to        TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    UNIQUE (connector, env, owner)
);

CREATE TABLE flows (
    handle_hash BYTEA  NOT NULL PRIMARY KEY,
    kind        TEXT   NOT NULL CHECK (kind IN ('session', 'state')),
    connector   TEXT   NOT NULL,
    env         TEXT   NOT NULL CHECK (env IN ('live', 'dev')),
    owner       TEXT   NOT NULL,
    return_to   TEXT   NOT NULL,
    sealed      BYTEA,
    binding     BYTEA,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);
CREATE INDEX flows_expires_at ON flows (expires_at);
