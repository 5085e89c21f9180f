-- One-time sign-in codes. Keep in step with ../sqlite/0005_login_codes.sql.
CREATE TABLE login_codes (
    hash          BYTEA  NOT NULL PRIMARY KEY,
    env           TEXT   NOT NULL CHECK (env IN ('live', 'dev')),
    user_id       TEXT COLLATE "C"   NOT NULL,
    connection_id TEXT COLLATE "C"   NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    used_at       BIGINT
);
