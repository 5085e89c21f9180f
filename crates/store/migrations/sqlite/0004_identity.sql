-- The identity provider: users, signing keys, refresh tokens. Keep in step with
-- ../postgres/0004_identity.sql.

CREATE TABLE users (
    env              TEXT    NOT NULL CHECK (env IN ('live', 'dev')),
    id               TEXT    NOT NULL,
    email            TEXT,
    attributes       TEXT    NOT NULL,
    provider         TEXT,
    provider_user_id TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (env, id)
) STRICT;
CREATE UNIQUE INDEX users_provider ON users (env, provider, provider_user_id) WHERE provider IS NOT NULL;

CREATE TABLE signing_keys (
    kid          TEXT    NOT NULL PRIMARY KEY,
    alg          TEXT    NOT NULL,
    sealed       BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,
    activates_at INTEGER NOT NULL,
    retired_at   INTEGER
) STRICT;

-- Only the SHA-256 of each refresh token.
CREATE TABLE refresh_tokens (
    hash       BLOB    NOT NULL PRIMARY KEY,
    family     TEXT    NOT NULL,
    env        TEXT    NOT NULL CHECK (env IN ('live', 'dev')),
    user_id    TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    revoked_at INTEGER,
    successor  BLOB
) STRICT;
CREATE INDEX refresh_tokens_family ON refresh_tokens (family);
CREATE INDEX refresh_tokens_user ON refresh_tokens (env, user_id);
