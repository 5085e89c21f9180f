-- Latchkey as the authorization server of MCP clients. Keep in step with
-- ../postgres/0008_mcp_authorization.sql.

-- A refresh-token family's scope and access-token audience (NULL: unrestricted, and the
-- configured audience), kept by every refresh.
ALTER TABLE refresh_tokens ADD COLUMN scope TEXT;
ALTER TABLE refresh_tokens ADD COLUMN audience TEXT;

-- Clients registered by dynamic client registration (RFC 7591): the metadata as accepted.
CREATE TABLE oauth_clients (
    id         TEXT    NOT NULL PRIMARY KEY,
    metadata   TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

-- Single-use handles, only their SHA-256: authorization codes, app sign-in requests and the
-- grants the app's sign-in answers with.
CREATE TABLE auth_grants (
    hash       BLOB    NOT NULL PRIMARY KEY,
    kind       TEXT    NOT NULL CHECK (kind IN ('code', 'sign_in', 'grant')),
    env        TEXT    NOT NULL CHECK (env IN ('live', 'dev')),
    user_id    TEXT    NOT NULL,
    client_id  TEXT    NOT NULL,
    data       TEXT    NOT NULL,
    family     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
) STRICT;
CREATE INDEX auth_grants_expires_at ON auth_grants (expires_at);
