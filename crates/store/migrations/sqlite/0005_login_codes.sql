-- One-time sign-in codes (the app's backend exchanges them for the user's tokens). Keep in
-- step with ../postgres/0005_login_codes.sql.
CREATE TABLE login_codes (
    hash          BLOB    NOT NULL PRIMARY KEY,
    env           TEXT    NOT NULL CHECK (env IN ('live', 'dev')),
    user_id       TEXT    NOT NULL,
    connection_id TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    used_at       INTEGER
) STRICT;
