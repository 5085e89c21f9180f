-- Tokens (app-level: connection = ''; per-user connections later) and the audit log.
-- Keep in step with ../sqlite/0002_tokens_events.sql.

CREATE TABLE tokens (
    connector       TEXT COLLATE "C" NOT NULL,
    env             TEXT COLLATE "C" NOT NULL CHECK (env IN ('live', 'dev')),
    connection      TEXT COLLATE "C" NOT NULL,
    sealed          BYTEA,
    expires_at      BIGINT,
    state           TEXT   NOT NULL,
    last_error      TEXT,
    last_refresh_at BIGINT,
    last_used_at    BIGINT,
    version         BIGINT NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT NOT NULL,
    epoch           BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (connector, env, connection)
);

CREATE TABLE events (
    id         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    at         BIGINT NOT NULL,
    kind       TEXT COLLATE "C" NOT NULL,
    connector  TEXT COLLATE "C" NOT NULL,
    env        TEXT   NOT NULL,
    connection TEXT COLLATE "C" NOT NULL,
    actor      TEXT   NOT NULL,
    outcome    TEXT   NOT NULL,
    detail     TEXT   NOT NULL
);
CREATE INDEX events_at ON events (at);
