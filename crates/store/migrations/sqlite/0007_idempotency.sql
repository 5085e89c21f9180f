-- `Idempotency-Key`s of the POSTs that create something. Keep in step with
-- ../postgres/0007_idempotency.sql. One row per caller (`scope`) and key: the request's
-- SHA-256 (`fingerprint`), and once answered its status and sealed body (`status` 0 while the
-- first request runs). Rows are forgotten after 24 hours.
CREATE TABLE idempotency_keys (
    scope       TEXT    NOT NULL,
    idem_key    TEXT    NOT NULL,
    fingerprint BLOB    NOT NULL,
    status      INTEGER NOT NULL,
    answer      BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (scope, idem_key)
) STRICT;
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
