-- `Idempotency-Key`s of the POSTs that create something. Keep in step with
-- ../sqlite/0007_idempotency.sql. One row per caller (`scope`) and key: the request's
-- SHA-256 (`fingerprint`), and once answered its status and sealed body (`status` 0 while the
-- first request runs). Rows are forgotten after 24 hours.
CREATE TABLE idempotency_keys (
    scope       TEXT COLLATE "C" NOT NULL,
    idem_key    TEXT COLLATE "C" NOT NULL,
    fingerprint BYTEA  NOT NULL,
    status      BIGINT NOT NULL,
    answer      BYTEA  NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (scope, idem_key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
