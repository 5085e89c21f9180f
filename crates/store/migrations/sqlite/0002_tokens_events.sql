-- Tokens (app-level: connection = ''; per-user connections later) and the audit log.
-- Keep in step with ../postgres/0002_tokens_events.sql.

-- One row per token. `sealed` holds the whole token set (access, refresh, extras) sealed by
-- the vault. `version` moves with every committed write; `epoch` with every lease taken, and
-- a commit must present the epoch of its lease (a fencing token).
CREATE TABLE tokens (
    connector       TEXT    NOT NULL,
    env             TEXT    NOT NULL CHECK (env IN ('live', 'dev')),
    connection      TEXT    NOT NULL,
    sealed          BLOB,
    expires_at      INTEGER,
    state           TEXT    NOT NULL,
    last_error      TEXT,
    last_refresh_at INTEGER,
    last_used_at    INTEGER,
    version         INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER NOT NULL,
    epoch           INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (connector, env, connection)
) STRICT;

CREATE TABLE events (
    id         TEXT    NOT NULL PRIMARY KEY,
    at         INTEGER NOT NULL,
    kind       TEXT    NOT NULL,
    connector  TEXT    NOT NULL,
    env        TEXT    NOT NULL,
    connection TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    outcome    TEXT    NOT NULL,
    detail     TEXT    NOT NULL
) STRICT;
CREATE INDEX events_at ON events (at);
