-- The identity provider: users, signing keys, refresh tokens. Keep in step with
-- ../sqlite/0004_identity.sql.

CREATE TABLE users (
    env              TEXT COLLATE "C"    NOT NULL CHECK (env IN ('live', 'dev')),
    id               TEXT COLLATE "C"    NOT NULL,
    email            TEXT,
    attributes       TEXT    NOT NULL,
    provider         TEXT,
    provider_user_id TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (env, id)
);
CREATE UNIQUE INDEX users_provider ON users (env, provider, provider_user_id) WHERE provider IS NOT NULL;

CREATE TABLE signing_keys (
    kid          TEXT COLLATE "C"    NOT NULL PRIMARY KEY,
    alg          TEXT    NOT NULL,
    sealed       BYTEA    NOT NULL,
    created_at   BIGINT NOT NULL,
    activates_at BIGINT NOT NULL,
    retired_at   BIGINT
);

-- Only the SHA-256 of each refresh token.
CREATE TABLE refresh_tokens (
    hash       BYTEA    NOT NULL PRIMARY KEY,
    family     TEXT COLLATE "C"    NOT NULL,
    env        TEXT COLLATE "C"    NOT NULL CHECK (env IN ('live', 'dev')),
    user_id    TEXT COLLATE "C"    NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    revoked_at BIGINT,
    successor  BYTEA
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family);
CREATE INDEX refresh_tokens_user ON refresh_tokens (env, user_id);
